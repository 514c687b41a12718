// net::device: what the native stack sends and receives Ethernet frames through. Implemented by
// the DPDK dataplane (dataplane/dpdk_device) and, for tests, by the virtual wire
// (stack/testing/virtual_wire). Nothing here knows about DPDK.
//
// Model (one object per process, per-shard parts inside):
//  - A device has hw_queues_count() hardware queue pairs; shard i owns queue i for
//    i < hw_queues_count(). Shards without a queue receive only what software RSS forwards to
//    them and transmit through a queue-owning shard (proxy).
//  - Every received frame belongs to one shard, chosen from its flow hash (the NIC's RSS hash, or
//    the same Toeplitz hash computed in software) through the redirection table: shard_of(hash).
//    A frame polled on another shard is forwarded to its owner in batches over the smp rings.
//  - On its owner shard a frame first meets the packet hook (if set), then the receive handler
//    (the stack's L2 input).
//
// Contract:
//  - start() once from shard 0 after smp is up; then every per-shard call (set_receive_handler,
//    set_packet_hook, send, tx_room, set_tx_ready_handler, local_stats) is made on the shard it
//    concerns, only by that shard.
//  - stop() from shard 0 before the device is destroyed: pollers stop, in-flight frames are freed.
//  - Packets handed to send() are owned by the device from then on; the device frees them (on the
//    shard that sent them) once transmitted or dropped.
//  - Malformed or oversized frames on receive are counted in device_stats and dropped, never
//    passed on.
#pragma once

#include "runtime/future.hh"
#include "stack/net/packet.hh"

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace reef::net {

/// A 48-bit MAC address.
struct ethernet_address {
    std::array<std::uint8_t, 6> mac{};

    /// "02:00:00:00:00:01"; throws std::invalid_argument quoting the input.
    static ethernet_address parse(std::string_view s);
    std::string to_string() const;
    bool is_broadcast() const noexcept;
    bool is_multicast() const noexcept { return mac[0] & 1; }
    friend bool operator==(const ethernet_address&, const ethernet_address&) = default;
};

/// What the device can do for the stack.
struct hw_features {
    bool tx_ip_csum_offload = false;   ///< fills IPv4 header checksums (offload_info::needs_ip_csum)
    bool tx_l4_csum_offload = false;   ///< fills TCP/UDP checksums (offload_info::needs_csum)
    bool rx_csum_offload = false;      ///< verifies checksums on receive (bad ones are dropped)
    bool tx_tso = false;               ///< segments TCP (offload_info::tso_seg_size)
    std::uint16_t mtu = 1500;          ///< largest L3 packet
    std::uint32_t max_frame_size = 1514;  ///< largest frame accepted for send (header + MTU, or TSO limit)
    unsigned max_tx_fragments = 32;    ///< longest fragment chain sent without linearizing
};

struct link_status {
    bool up = false;
    std::uint32_t speed_mbps = 0;
    bool full_duplex = false;
};

/// Receive-side scaling: the Toeplitz key and the redirection table (hash % reta.size() -> shard).
struct rss_config {
    std::vector<std::uint8_t> key;      ///< 40 bytes (52 on some NICs)
    std::vector<std::uint16_t> reta;    ///< entry -> shard
};

/// Counters of one shard's part of the device.
struct device_stats {
    std::uint64_t rx_packets = 0, rx_bytes = 0;
    std::uint64_t tx_packets = 0, tx_bytes = 0;
    std::uint64_t rx_dropped_runt = 0;       ///< shorter than an Ethernet header
    std::uint64_t rx_dropped_bad_length = 0; ///< length fields that disagree with the frame
    std::uint64_t rx_dropped_chain = 0;      ///< buffer chains longer than the limit
    std::uint64_t rx_dropped_no_handler = 0; ///< nobody listens on this shard yet
    std::uint64_t rx_dropped_nomem = 0;      ///< no memory to make the frame a packet
    std::uint64_t tx_dropped = 0;            ///< ring full or frame too large
    std::uint64_t tx_blocked = 0;            ///< times tx_room() told this shard's sender to wait
    std::uint64_t rx_hooked = 0;             ///< consumed by the packet hook
    std::uint64_t sw_rss_forwarded = 0;      ///< frames this shard polled and sent to their owner
    std::uint64_t sw_rss_received = 0;       ///< frames other shards forwarded here
    std::uint64_t sw_rss_dropped = 0;        ///< polled here, dropped: too many in flight to the owner
    std::uint64_t tx_proxied = 0;            ///< frames sent through another shard's queue
};

/// A received frame as the packet hook sees it: one contiguous buffer the hook may read and
/// rewrite in place. The device gives the hook the frame's own buffer when it is a single segment
/// nobody else references (the zero-copy case: an RX mbuf), else a private linear copy.
struct hook_frame {
    char* data = nullptr;   ///< the Ethernet header
    std::size_t len = 0;    ///< frame length; a `reply` may set another, up to `room`
    std::size_t room = 0;   ///< bytes usable from `data` on (>= len)
    std::optional<std::uint32_t> rss_hash;  ///< the flow hash that chose this shard, if any
};

/// What the packet hook did with a frame.
enum class hook_action {
    pass,      ///< not the hook's: the frame goes on to the receive handler (bytes unchanged)
    consumed,  ///< taken: dropped, or answered with device::send; the device releases the frame
    reply,     ///< rewritten in place into an answer of `len` bytes: the device transmits the same
               ///< buffer from this shard (no allocation, no copy where the frame was its own)
};

/// The packet filter (the seed's fast path): sees each frame on its owner shard before the stack,
/// in the order the queue gave them. Runs inside the RX poller: it must not block; an exception
/// it throws is logged and the frame dropped.
using packet_hook = std::function<hook_action(hook_frame&)>;

class device {
public:
    virtual ~device() = default;

    // ---- static properties (any shard)
    virtual std::string_view name() const noexcept = 0;
    virtual ethernet_address hw_address() const noexcept = 0;
    virtual const hw_features& features() const noexcept = 0;
    virtual unsigned hw_queues_count() const noexcept = 0;
    virtual const rss_config& rss() const noexcept = 0;
    virtual link_status get_link_status() const = 0;

    /// The shard that owns frames of flow hash `hash` (the RETA lookup).
    unsigned shard_of(std::uint32_t hash) const noexcept {
        auto& r = rss().reta;
        return r.empty() ? 0 : r[hash % r.size()];
    }
    /// The Toeplitz hash of an IPv4/IPv6 TCP/UDP tuple with this device's key (what the NIC
    /// computes; an outgoing connection picks a local port whose hash maps back to its shard).
    /// The tuple is taken as a received frame carries it: src is the remote end for a frame
    /// coming in. Addresses are addr_len (4 or 16) bytes in network byte order; ports are in host
    /// byte order. Any shard.
    std::uint32_t flow_hash(const void* src_addr, const void* dst_addr, std::size_t addr_len,
                            std::uint16_t src_port, std::uint16_t dst_port) const noexcept;

    // ---- lifecycle (shard 0)
    /// Start queues and pollers on every shard.
    virtual future<> start() = 0;
    /// Stop pollers, drain and free in-flight frames on every shard.
    virtual future<> stop() = 0;

    // ---- per shard
    /// The stack's L2 input on this shard. Frames arrive here in the order the queue gave them.
    virtual void set_receive_handler(std::function<void(packet)> handler) = 0;
    /// Install (or with an empty function, remove) this shard's packet hook.
    virtual void set_packet_hook(packet_hook hook) = 0;
    /// Queue a frame for transmission from this shard (sent in bursts by the shard's poller;
    /// through a queue-owning shard when this shard has none). Never blocks: a frame that cannot
    /// be queued is dropped and counted (tx_dropped), like a full NIC ring.
    virtual void send(packet p) = 0;
    /// Transmit back-pressure: how many more frames this shard may hand to send() now. The room
    /// stops short of the hard limit where send() drops, keeping a reserve for frames that cannot
    /// wait (ACKs, control, UDP), so a sender that honours it loses nothing to a full queue. 0
    /// means wait: the device counts the start of each wait (device_stats::tx_blocked) and calls
    /// this shard's tx-ready handler once room has freed. A device without a limit (the default)
    /// answers SIZE_MAX and never calls the handler.
    virtual std::size_t tx_room() noexcept { return std::numeric_limits<std::size_t>::max(); }
    /// This shard's tx-ready handler (replaces the previous one; empty to remove). The device
    /// calls it from its own poller after a tx_room() of 0, never from inside send() or
    /// tx_room(); it may call both. An exception it throws is logged.
    virtual void set_tx_ready_handler(std::function<void()> handler) { (void)handler; }
    /// This shard's counters.
    virtual const device_stats& local_stats() const noexcept = 0;
};

}  // namespace reef::net
