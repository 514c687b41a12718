// dpdk_device: a net::device over one DPDK ethdev port.
//
// Queues and shards: the port gets min(shards, max RX queues, max TX queues) queue pairs; shard i
// owns queue pair i and polls it from a reactor poller (RX burst -> device_base's receive path,
// then the shard's pending TX frames in one rte_eth_tx_burst). Shards without a queue get frames
// through software RSS and send through a queue owner (device_base).
//
// Memory: each shard has its own mbuf pool on its NUMA node (with a per-lcore cache: every shard
// thread is an lcore, see eal.hh) and a small pool of data-less mbufs that carry zero-copy TX
// fragments. Queue i's RX descriptors are filled from shard i's pool.
//
// RSS: when the port hashes (flow_type_rss_offloads), it is configured with Reef's key
// (net::default_rss_key when the port takes a 40-byte key, else the port's own key, read back)
// and IPv4/IPv6 TCP/UDP hash types; its RETA, when it has one, is programmed from the device's
// software RETA (net::build_reta over the same number of entries) so that the NIC delivers a
// flow on its owner's queue whenever the owner has one; entries of shards without a queue go to
// queue `shard % queues`, which forwards. A frame whose mbuf carries RTE_MBUF_F_RX_RSS_HASH is
// steered by that hash; others are hashed in software with the same key.
//
// Receive, zero-copy: each mbuf segment becomes a packet fragment; the packet's deleter calls
// rte_pktmbuf_free (thread-safe, so a forwarded frame is freed by its owner shard into the pool
// it came from). Frames shorter than an Ethernet header (rx_dropped_runt), whose segment lengths
// or IPv4/IPv6 length field disagree with the frame (rx_dropped_bad_length), with more than
// max_rx_segments segments (rx_dropped_chain), or that the port's checksum offload flagged bad
// (dpdk_shard_stats::rx_bad_csum) are counted on the polling shard and dropped.
//
// Transmit: a packet becomes an mbuf chain on the sending shard. Fragments of at least
// zero_copy_threshold bytes are attached without copying (rte_pktmbuf_attach_extbuf) when the
// port may read that memory: any memory for a virtual device (vdev bus: the PMD copies or uses
// virtual addresses), only DPDK-registered memory (rte_mem_virt2memseg_list) for a PCI device,
// which DMAs, and only the first memseg list for a memif zero-copy client (zero-copy=yes: it
// passes offsets into that one region to its peer). Smaller fragments and the rest are copied into mbufs of the sender's pool (headers
// are usually small, so they end up copied together in the first mbuf). The packet's deleter runs
// on the sending shard once the PMD freed every attached mbuf: the free callback (which may run
// on any thread: the PMD's TX completion on the queue's shard, or a peer port's RX side) queues a
// completion to the sending shard, whose poller runs it. Frames proxied from a shard without a
// queue are always copied there (their sender has no poller to run completions). A plan longer
// than the port's segment limit (features().max_tx_fragments) is copied whole into as few mbufs
// as fit (dpdk_shard_stats::tx_linearized); if even that is too long the frame is dropped.
// Checksums: offloaded (RTE_MBUF_F_TX_*_CKSUM, pseudo-header written as the PMD expects) when the
// port offers every one the packet asks for, else computed in software (net::fill_checksums);
// TSO (RTE_MBUF_F_TX_TCP_SEG) only when the port offers it (features().tx_tso), else frames
// larger than the MTU are dropped. TX frames wait in a per-shard buffer (at most tx_ring) and go
// out in bursts from the poller (or as soon as a burst is full); beyond that buffer they are
// dropped (tx_dropped), as on a full NIC ring. That buffer is what device::tx_room reports on
// (device_base): it fills only while the port's ring is full (rte_eth_tx_burst sends short), so
// a sender that honours tx_room stops there, and the poller wakes it as the ring drains.
//
// Lifecycle: construct on shard 0 with the EAL running and smp started; start() once (a memif
// client port waits there up to 30 s for its server's socket); stop()
// once before destruction: pollers stop, TX buffers and frames in flight between shards are
// freed, the port is stopped and closed (a closed port cannot be used again in this process),
// zero-copy completions are run (waiting up to a second for a peer to free what it holds), and
// the pools are freed if every mbuf came back; a pool some mbuf is still out of (a packet the app
// kept, a frame in another port's ring) is kept until destruction and then leaked with a warning
// rather than freed under its user.
#pragma once

#include "dataplane/dpdk_options.hh"
#include "runtime/reactor.hh"
#include "runtime/timer.hh"
#include "stack/net/device_base.hh"

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace reef::dpdk {

/// How to run the port (from dpdk_options, or set directly by tests).
struct dpdk_device_config {
    std::uint16_t port_id = 0;
    unsigned rx_ring = 1024;
    unsigned tx_ring = 1024;
    unsigned mbufs_per_shard = 8191;
    float hw_queue_weight = 1.0f;
    unsigned idle_wakeup_us = 250;
    /// Fragments at least this long are sent zero-copy (when the port may read their memory).
    std::size_t zero_copy_threshold = 512;
    /// Let the port hash and steer flows (when it can). Off: one software hash for every frame.
    bool use_hw_rss = true;
    /// Use the port's checksum/TSO offloads (when it has them). Off: software checksums.
    bool use_hw_offloads = true;

    /// The options' values, with the port --dpdk-port-index names (find_port: throws eal_error
    /// when there is none).
    static dpdk_device_config from_options(const dpdk_options& opts);
};

/// DPDK-specific counters of one shard, beside net::device_stats.
struct dpdk_shard_stats {
    std::uint64_t rx_bursts = 0;           ///< RX bursts that returned frames
    std::uint64_t rx_bad_csum = 0;         ///< dropped: the port's checksum offload flagged them bad
    std::uint64_t tx_bursts = 0;           ///< rte_eth_tx_burst calls that sent something
    std::uint64_t tx_ring_full = 0;        ///< bursts that left frames behind (sent later)
    std::uint64_t tx_no_mbuf = 0;          ///< dropped: the shard's pool was empty
    std::uint64_t tx_zero_copy_frags = 0;  ///< fragments attached without copying
    std::uint64_t tx_copied_bytes = 0;     ///< bytes copied into mbufs
    std::uint64_t tx_linearized = 0;       ///< frames copied whole: too many fragments for the port
    std::uint64_t tx_bad_offload = 0;      ///< dropped: headers the checksum/TSO code could not parse
    std::uint64_t tx_in_place = 0;         ///< received frames sent back in their own mbuf (no copy)
};

/// One extended statistic of the port (rte_eth_xstats).
struct xstat {
    std::string name;
    std::uint64_t value;
};

class dpdk_device final : public net::device_base<rte_mbuf*, dpdk_device> {
public:
    /// Most segments a received frame may have.
    static constexpr unsigned max_rx_segments = 32;
    /// Frames per RX and TX burst.
    static constexpr unsigned burst = 32;

    /// On shard 0, with the EAL running and smp started. Reads the port's capabilities and sizes
    /// the queues; configures nothing yet. Throws eal_error when the port does not exist.
    explicit dpdk_device(dpdk_device_config cfg);
    ~dpdk_device() override;

    // ---- net::device (any shard)
    std::string_view name() const noexcept override { return _name; }
    net::ethernet_address hw_address() const noexcept override { return _mac; }
    const net::hw_features& features() const noexcept override { return _features; }
    unsigned hw_queues_count() const noexcept override { return _queues; }
    /// Current link state (rte_eth_link_get_nowait).
    net::link_status get_link_status() const override;

    /// Shard 0: create the pools (each on its shard), configure and start the port, program RSS,
    /// start the pollers. Throws eal_error (saying what the port refused) and leaves the device
    /// stopped.
    future<> start() override;
    /// Shard 0: see the lifecycle above. Resolves when every shard is done.
    future<> stop() override;

    // ---- for metrics and the control plane
    std::uint16_t port_id() const noexcept { return _cfg.port_id; }
    /// The PMD's name (e.g. "net_ring").
    const std::string& driver_name() const noexcept { return _driver; }
    /// The port's basic counters (rte_eth_stats_get); zeroes if the PMD fails. Any shard.
    rte_eth_stats port_stats() const;
    /// The port's extended counters, name and value. Any shard.
    std::vector<xstat> xstats() const;
    /// This shard's DPDK-specific counters.
    const dpdk_shard_stats& local_dpdk_stats() const noexcept;
    /// mbufs of this device's pools that are out (in rings, packets, caches excluded), all shards
    /// together. Any shard; a snapshot while traffic flows.
    std::size_t mbufs_in_use() const noexcept;

protected:
    friend class net::device_base<rte_mbuf*, dpdk_device>;
    // ---- device_base
    bool nic_hash(rte_mbuf* const& m, std::uint32_t& h) const noexcept;
    std::span<const char> frame_head(rte_mbuf* const& m) const noexcept;
    std::size_t frame_size(rte_mbuf* const& m) const noexcept;
    net::packet to_packet(rte_mbuf*&& m);
    bool writable_view(rte_mbuf*& m, net::hook_frame& v) noexcept;
    void set_frame_len(rte_mbuf*& m, std::size_t len) noexcept;
    std::optional<rte_mbuf*> to_frame(net::packet&& p) noexcept;
    void transmit_local(net::packet&& p) noexcept;
    void transmit_frame(rte_mbuf*&& m) noexcept;
    void free_frame(rte_mbuf*&& m) noexcept;
    std::size_t tx_queued() const noexcept;
    std::size_t tx_capacity() const noexcept { return _cfg.tx_ring; }

public:
    struct rx_owner;  // (public for the pool sizing in the .cc)

private:
    struct completion;
    struct completion_queues_head;
    struct completion_queues;
    class queue_poller;
    struct shard_part;

    dpdk_device_config _cfg;
    std::string _name;
    std::string _driver;
    net::ethernet_address _mac;
    net::hw_features _features;
    unsigned _queues = 1;
    bool _vdev = false;    // the port cannot DMA: any memory may go zero-copy
    bool _memif_client = false;  // a net_memif port in the client role (start waits for its server)
    static constexpr std::chrono::seconds memif_connect_wait{30};
    // A memif zero-copy client: only memory of this memseg list may go zero-copy (may_zero_copy).
    const rte_memseg_list* _zc_region = nullptr;
    bool _hw_rss = false;  // the port hashes; mbufs may carry RTE_MBUF_F_RX_RSS_HASH
    bool _rx_csum_checked = false;
    std::uint64_t _tx_offloads = 0;
    std::uint16_t _reta_size = 0;
    bool _started = false;
    bool _port_started = false;
    bool _closed = false;
    std::vector<std::unique_ptr<shard_part>> _shards;
    // Zero-copy completions travel through here; leaked (never freed) if some are still out at
    // destruction, so that a late free callback finds valid memory.
    completion_queues* _completions = nullptr;

    shard_part& local_part() noexcept;
    const shard_part& local_part() const noexcept;

    future<> create_pools();
    future<> configure_port();
    void start_pollers();
    bool poll_queue() noexcept;
    bool rx_frame_ok(rte_mbuf* m, net::device_stats& st, dpdk_shard_stats& ds) const noexcept;
    unsigned flush_tx() noexcept;
    void queue_tx(shard_part& part, rte_mbuf* m) noexcept;
    bool run_completions() noexcept;
    rte_mbuf* build_mbuf(net::packet&& p, bool allow_zero_copy) noexcept;
    bool prepare_offloads(net::packet& p, rte_mbuf* head_template, std::uint64_t& ol_flags, std::uint16_t& l2,
                          std::uint16_t& l3, std::uint16_t& l4) noexcept;
    bool may_zero_copy(const char* addr) const noexcept;
    static rte_mbuf* rx_owner_mbuf(const net::packet& p) noexcept;
    void free_pools(bool final) noexcept;
    static void ext_free_cb(void* addr, void* opaque);
};

/// The device the options describe (dpdk_device_config::from_options): on shard 0 after
/// start_eal and smp start.
std::unique_ptr<dpdk_device> make_dpdk_device(const dpdk_options& opts);

}  // namespace reef::dpdk
