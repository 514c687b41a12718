// The virtual wire: two net::devices joined back to back in memory, so that two native stacks
// (or a stack and a test playing the peer) can talk in one process without DPDK, with loss,
// duplication, reordering, corruption, latency and bandwidth limits injected deterministically.
//
//   auto w = net::make_virtual_wire({.queues = 1});
//   stack_a.attach(*w.a); stack_b.attach(*w.b);
//   co_await w.a->start(); co_await w.b->start();
//   ...
//   co_await w.a->stop(); co_await w.b->stop();
//
// Model:
//  - Each device has cfg.queues hardware queues (capped at smp::count), owned by shards
//    0..queues-1 as on a NIC. Queue q of one device is wired to queue q of the other: a frame
//    sent through queue q (on shard q) is received by the peer's queue q poller (on shard q), so
//    the wire itself never crosses shards. With fewer queues than shards, device_base's software
//    RSS and TX proxy do the cross-shard work, exactly as for a DPDK port with few queues.
//  - Delivery is asynchronous: send() only queues; the receiving device's poller hands frames to
//    its stack in bursts on a later reactor poll, never inside send().
//  - Frames are copied when they enter the wire (the sender's packet is released at once, as a
//    NIC's DMA would let it be), into one heap block that may cross shards; on the receiving side
//    the block becomes the packet's memory without a copy.
//  - Faults are decided per frame, in the order frames are sent on one queue and direction, from a
//    random generator seeded from cfg.seed, the queue and the direction: the same traffic gives
//    the same faults on every run. Timing (latency, bandwidth) depends on the clock, fault
//    decisions do not.
//  - A frame the receiving device cannot take yet (not started, stopped, or not yet due under
//    latency and bandwidth limits) waits on the wire; at most cfg.ring_size frames wait per queue
//    and direction, beyond that the sender counts tx_dropped. Those waiting frames are the
//    sender's transmit queue for device::tx_room; it is woken from its own RX poller (on the same
//    shard) once the peer has taken enough of them.
//
// Shards: build the wire on shard 0 once smp runs (as any device). start() and stop() from shard
// 0; per-shard calls as in device.hh. The capture hook runs on the shard of the queue a frame
// crosses (several shards at once when queues > 1: it must then be thread-safe).
#pragma once

#include "runtime/future.hh"
#include "stack/net/device.hh"
#include "stack/net/device_base.hh"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace reef::net {

enum class wire_direction : unsigned { a_to_b = 0, b_to_a = 1 };

/// Faults injected on one direction of the wire. Rates are probabilities per frame in [0, 1].
struct wire_faults {
    /// The frame vanishes (the sender still counts it transmitted).
    double loss = 0;
    /// A second copy is delivered right after the frame.
    double duplicate = 0;
    /// The frame is held back until reorder_distance later frames passed it, or until the wire
    /// has nothing else ready (a held frame is never stranded).
    double reorder = 0;
    unsigned reorder_distance = 3;
    /// One byte at an offset >= corrupt_from is XORed with a non-zero value.
    double corrupt = 0;
    /// 14 leaves the Ethernet header intact: the frame still reaches the stack, whose checksums
    /// must catch it.
    std::size_t corrupt_from = 14;
    /// The frame is delivered only after this many polls of the receiver.
    unsigned delay_polls = 0;
    /// The frame is delivered no earlier than this after it was sent.
    std::chrono::microseconds latency{0};
    /// Serialization delay of len*8/bps per frame, frames queued back to back per queue and
    /// direction; 0 = unlimited.
    std::uint64_t bandwidth_bps = 0;
};

struct virtual_wire_config {
    /// Hardware queues of each device (capped at smp::count; 0 means one per shard).
    unsigned queues = 1;
    std::uint16_t mtu = 1500;
    ethernet_address mac_a{{0x02, 0, 0, 0, 0, 0x01}};
    ethernet_address mac_b{{0x02, 0, 0, 0, 0, 0x02}};
    /// --hw-queue-weight: share of flows queue owners keep (see build_reta).
    float hw_queue_weight = 1.0f;
    /// Deliver frames with the RSS hash a NIC would report (exercises device_base's NIC-hash
    /// path); false leaves hashing to software, as for a NIC without RSS.
    bool nic_hash = false;
    /// Frames waiting per queue and direction before the sender drops (tx_dropped).
    std::size_t ring_size = 4096;
    /// Most frames handed to the stack per receiver poll.
    unsigned rx_burst = 32;
    /// device_base's bound on frames queued or in flight from one shard to another.
    std::size_t forward_limit = 1024;
    /// Faults of both directions at start (change them later with set_faults).
    wire_faults faults;
    std::uint64_t seed = 1;
};

/// What happened to one frame entering the wire.
struct wire_event {
    wire_direction direction;
    unsigned queue;
    /// The bytes as they travel (after corruption). Valid during the call only.
    std::span<const char> frame;
    bool lost = false;
    bool duplicated = false;
    bool corrupted = false;
    bool reordered = false;  ///< will be held back
};
using wire_capture = std::function<void(const wire_event&)>;

/// Counters of one direction (summed over queues by virtual_wire::stats).
struct wire_stats {
    std::uint64_t sent = 0;       ///< frames that entered the wire
    std::uint64_t delivered = 0;  ///< frames handed to the receiving device (duplicates included)
    std::uint64_t lost = 0;
    std::uint64_t duplicated = 0;
    std::uint64_t corrupted = 0;
    std::uint64_t reordered = 0;
    std::uint64_t dropped_full = 0;   ///< refused: cfg.ring_size frames already waiting
    std::uint64_t freed_waiting = 0;  ///< freed on the wire when the receiver stopped
};

namespace internal {
struct wire_shared;
}

/// A frame on the wire: one heap block (header and bytes) that any shard may free. Move-only.
class wire_frame {
    struct block;
    block* _b = nullptr;
    explicit wire_frame(block* b) noexcept : _b(b) {}

public:
    wire_frame() noexcept = default;
    wire_frame(wire_frame&& x) noexcept : _b(std::exchange(x._b, nullptr)) {}
    wire_frame& operator=(wire_frame&& x) noexcept {
        if (this != &x) {
            reset();
            _b = std::exchange(x._b, nullptr);
        }
        return *this;
    }
    ~wire_frame() { reset(); }

    /// `len` uninitialized bytes. Throws std::bad_alloc.
    static wire_frame allocate(std::size_t len);
    /// A copy of p's bytes. Throws std::bad_alloc.
    static wire_frame copy_of(const packet& p);
    wire_frame copy() const { return copy_of_bytes(data(), size(), hash()); }

    char* data() const noexcept;
    std::size_t size() const noexcept;
    std::optional<std::uint32_t> hash() const noexcept;
    void set_hash(std::uint32_t h) noexcept;
    /// Keep the first n bytes (n <= size()).
    void shrink(std::size_t n) noexcept;
    explicit operator bool() const noexcept { return _b != nullptr; }
    void reset() noexcept;
    /// The bytes as a packet owning the block (no copy). Throws std::bad_alloc, freeing it.
    packet into_packet() &&;

private:
    static wire_frame copy_of_bytes(const char* p, std::size_t n, std::optional<std::uint32_t> h);
};

/// One end of a virtual wire. Everything device.hh promises, plus the per-queue wire behaviour
/// described at the top of this file.
class virtual_wire_device final : public device_base<wire_frame, virtual_wire_device> {
public:
    virtual_wire_device(std::shared_ptr<internal::wire_shared> w, wire_direction tx, ethernet_address mac,
                        std::string name);
    ~virtual_wire_device() override;

    std::string_view name() const noexcept override { return _name; }
    ethernet_address hw_address() const noexcept override { return _mac; }
    const hw_features& features() const noexcept override { return _features; }
    unsigned hw_queues_count() const noexcept override;
    link_status get_link_status() const override;
    /// Starts the RX pollers of shards 0..queues-1 (frames already waiting are then delivered).
    future<> start() override;
    /// Stops the pollers, frees the frames waiting for this device on the wire, then stops
    /// forwarding (device_base::stop_base). Frames this device sent stay on the wire for the peer.
    future<> stop() override;

protected:
    friend class device_base<wire_frame, virtual_wire_device>;
    bool nic_hash(const wire_frame& f, std::uint32_t& h) const noexcept {
        auto v = f.hash();
        h = v.value_or(0);
        return v.has_value();
    }
    std::span<const char> frame_head(const wire_frame& f) const noexcept { return {f.data(), f.size()}; }
    std::size_t frame_size(const wire_frame& f) const noexcept { return f.size(); }
    packet to_packet(wire_frame&& f) { return std::move(f).into_packet(); }
    // A wire frame is one block of its own: always writable in place, never longer.
    bool writable_view(wire_frame& f, hook_frame& v) noexcept {
        v.data = f.data();
        v.len = v.room = f.size();
        return true;
    }
    void set_frame_len(wire_frame& f, std::size_t len) noexcept { f.shrink(len); }
    std::optional<wire_frame> to_frame(packet&& p) noexcept;
    void transmit_local(packet&& p) noexcept;
    void transmit_frame(wire_frame&& f) noexcept;
    void free_frame(wire_frame&& f) noexcept { f.reset(); }
    std::size_t tx_queued() const noexcept;
    std::size_t tx_capacity() const noexcept;

private:
    class rx_poller;
    friend class rx_poller;

    std::shared_ptr<internal::wire_shared> _wire;
    wire_direction _tx;
    ethernet_address _mac;
    std::string _name;
    hw_features _features;
    // Per shard (only that shard touches its element): the RX poller, on queue-owning shards.
    std::vector<std::unique_ptr<poller>> _pollers;
    bool _started = false;

    void put_on_wire(wire_frame&& f) noexcept;
    void stop_queue() noexcept;
    bool poll_rx();
    bool rx_ready() const noexcept;
};

/// The pair, and the controls of the wire between them. Destroy the devices after stop().
struct virtual_wire {
    std::unique_ptr<virtual_wire_device> a;
    std::unique_ptr<virtual_wire_device> b;

    /// Record every frame entering the wire (see wire_event); empty to stop. Call before traffic
    /// flows (it is read by every queue's shard without synchronization).
    void set_capture(wire_capture fn);
    /// Change the faults of one direction on every queue (from shard 0, while running).
    future<> set_faults(wire_direction d, wire_faults f);
    /// One direction's counters summed over all queues (from shard 0).
    future<wire_stats> stats(wire_direction d);

    std::shared_ptr<internal::wire_shared> shared;
};

/// Two devices joined back to back (a's queue q to b's queue q). Call on shard 0 once smp runs.
/// Throws std::invalid_argument for an MTU below 68 or above 65000, ring_size or rx_burst 0, a
/// rate outside [0, 1], or identical MACs.
virtual_wire make_virtual_wire(virtual_wire_config cfg = {});

/// Frames allocated by any virtual wire and not yet freed, process-wide (for leak tests: it
/// returns to its earlier value once every packet, wire and device holding frames is gone).
std::int64_t virtual_wire_live_frames() noexcept;

}  // namespace reef::net
