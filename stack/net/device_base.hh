// device_base<Frame, Derived>: the parts of a net::device that do not depend on the hardware, written once
// for the DPDK device (Frame = rte_mbuf*) and the virtual wire (Frame = an owned heap buffer).
//
// What it does, on top of a few functions the concrete device implements (CRTP, see below):
//  - per-shard state (receive handler, packet hook, device_stats), each touched only by its shard;
//  - the receive path: a queue-owning shard's RX poller hands each frame to on_received(); the
//    frame's owner shard is found from its hash (the NIC's, else frame_flow_hash over its first
//    bytes) through the RETA; the frame is delivered in place or queued for its owner, and the
//    queues are sent in one smp::submit_to per destination shard per burst (flush_forwarded());
//  - delivery on the owner: the packet hook first, on the frame's own buffer when writable_view()
//    allows (no packet is made: a hook's in-place reply goes straight back out through
//    set_frame_len() and transmit_frame(), here or through the proxying queue owner), else on a
//    private copy; then to_packet() (zero-copy for DPDK) and the handler;
//  - the transmit path: send() on a queue-owning shard goes to transmit_local(); on a shard
//    without a queue the packet becomes a Frame there (to_frame) and Frames are proxied in batches
//    to the queue-owning shard `shard % hw_queues_count()`, which calls transmit_frame();
//  - transmit back-pressure (device::tx_room): a queue owner's room is its transmit queue
//    (Derived's tx_queued() of tx_capacity()) up to three quarters full, the last quarter being
//    the reserve for frames that cannot wait; a proxying shard's is its TX outbox, of
//    forward_limit() frames. A shard told to wait is woken (its tx-ready handler) once that queue
//    is down to half: from the device's poller (wake_tx_if_room) or when a proxied batch is
//    answered. The gap between the two marks makes each wake-up worth a burst of frames;
//  - bounded forwarding: at most forward_limit() frames per destination shard are queued or in
//    flight from one shard; beyond, frames are dropped and counted (sw_rss_dropped on RX,
//    tx_dropped on TX), so a slow shard cannot hold all of another shard's buffers;
//  - shutdown: stop_base() drops what is queued, waits for batches in flight, and from then on
//    frees (free_frame) whatever still reaches a stopped shard.
//
// Frames that cannot be delivered for any reason are released with free_frame() on the shard
// that holds them at that moment; Frame must be safe to free on any shard (rte_pktmbuf_free is;
// a heap buffer is with Reef's allocator, which returns foreign frees to their owner).
//
// Non-IP frames (no hash: ARP, LLDP...) always belong to shard 0, so that the stack sees all of
// them in one place whichever queue they arrived on.
//
// On one shard nothing is ever forwarded and no smp call is made.
//
// Lifecycle: constructed on shard 0 once smp runs; started once and stopped once (stop() before
// destruction: the flush pollers point at the device).
#pragma once

#include "runtime/future.hh"
#include "runtime/gate.hh"
#include "runtime/log.hh"
#include "runtime/reactor.hh"
#include "runtime/smp.hh"
#include "stack/net/device.hh"
#include "stack/net/toeplitz.hh"

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace reef::net {

extern logger device_log;

/// A redirection table of `size` entries spreading flows over `shards` shards, where shards
/// 0..queues-1 own a hardware queue (and poll it) and the others do not.
///
/// Weights (the --hw-queue-weight option): a shard without a queue has weight 1, a queue owner
/// has weight `queue_weight` (clamped to [0, 1]); each shard gets a share of the entries
/// proportional to its weight (largest remainders rounded up, earlier shards first), so a queue
/// owner, which already spends time polling and forwarding, keeps fewer flows for itself. With
/// weight 1 every shard gets size/shards entries (+1 for the first size%shards); with weight 0
/// queue owners keep no flow at all, unless every shard owns a queue (queues >= shards), where
/// weights do not matter and the spread is even. Entries are interleaved (smooth weighted
/// round-robin), so consecutive entries go to different shards; with equal weights entry i is
/// shard i % shards, the layout a NIC's default RETA has over as many queues.
/// shards == 0 or size == 0 gives an empty table (every hash then goes to shard 0).
std::vector<std::uint16_t> build_reta(unsigned shards, unsigned queues, float queue_weight = 1.0f,
                                      std::size_t size = 512);

namespace internal {
void log_callback_exception(const char* what, std::exception_ptr ex) noexcept;
}

/// Run f() on this shard from a task of its own and resolve when it has run (with its exception
/// if it threw). Register and unregister pollers this way from code that may itself run inside a
/// poller — an smp::submit_to/invoke_on_all function runs inside the receiving shard's smp poller
/// — because the reactor walks its poller list without expecting it to change meanwhile.
template <typename Func>
future<> run_as_task(Func f) {
    promise<> pr;
    auto fut = pr.get_future();
    engine().add_task(make_task([f = std::move(f), pr = std::move(pr)]() mutable noexcept {
        try {
            f();
            pr.set_value();
        } catch (...) {
            pr.set_exception(std::current_exception());
        }
    }));
    return fut;
}

template <typename Frame, typename Derived>
class device_base : public device {
    static_assert(std::is_nothrow_move_constructible_v<Frame> && std::is_nothrow_move_assignable_v<Frame>,
                  "frames are moved in noexcept paths");

public:
    /// Frames queued for one destination per smp message before a batch is sent even mid-burst.
    static constexpr std::size_t forward_batch = 64;

    /// Construct on shard 0 once smp is running (the per-shard state is sized to smp::count).
    device_base() : _shards(smp::count) { _rss.key.assign(default_rss_key.begin(), default_rss_key.end()); }
    ~device_base() override = default;

    // ---- device API (implemented here for every device)

    const rss_config& rss() const noexcept override { return _rss; }

    /// This shard's receive handler (replaces the previous one; empty to remove).
    void set_receive_handler(std::function<void(packet)> handler) override { local().handler = std::move(handler); }
    void set_packet_hook(packet_hook hook) override { local().hook = std::move(hook); }

    /// See device::send. Frames longer than features().max_frame_size, sends on a stopped shard
    /// or a device without queues, to_frame() failures and frames over forward_limit() on their
    /// way to the queue owner are dropped and counted in tx_dropped on this shard. A frame handed
    /// to the proxy counts in this shard's tx_proxied; tx_packets and tx_bytes are counted by the
    /// concrete device on the shard whose queue sends it.
    void send(packet p) override {
        auto& s = local();
        unsigned queues = self().hw_queues_count();
        if (s.stopped || queues == 0 || p.len() > self().features().max_frame_size) {
            ++s.stats.tx_dropped;
            return;
        }
        unsigned me = this_shard_id();
        if (me < queues) {
            self().transmit_local(std::move(p));
            return;
        }
        unsigned owner = me % queues;
        auto& out = s.tx_out;
        if (out.queued >= _forward_limit) {
            ++s.stats.tx_dropped;
            return;
        }
        std::optional<Frame> f = self().to_frame(std::move(p));
        if (!f) {
            ++s.stats.tx_dropped;
            return;
        }
        ++s.stats.tx_proxied;
        enqueue_out(s, out, owner, std::move(*f), 0, false, /*tx=*/true);
    }

    /// See device::tx_room. A stopped shard or a device without queues does not push back: its
    /// frames are dropped whatever the sender does.
    std::size_t tx_room() noexcept override {
        auto& s = local();
        std::size_t queued, capacity;
        if (!tx_occupancy(s, queued, capacity)) {
            return std::numeric_limits<std::size_t>::max();
        }
        std::size_t limit = capacity - capacity / 4;
        if (queued < limit) {
            return limit - queued;
        }
        if (!s.tx_waiting) {
            s.tx_waiting = true;
            ++s.stats.tx_blocked;
        }
        return 0;
    }
    void set_tx_ready_handler(std::function<void()> handler) override { local().tx_ready = std::move(handler); }

    const device_stats& local_stats() const noexcept override { return _shards[this_shard_id()].stats; }

protected:
    // ---- for the concrete device

    /// Replace the key and RETA (before start(); reta entries must be < smp::count). Throws
    /// std::invalid_argument for a key shorter than 4 bytes.
    void set_rss(rss_config cfg) {
        _toeplitz = toeplitz(cfg.key);
        _rss = std::move(cfg);
    }
    const toeplitz& hasher() const noexcept { return _toeplitz; }

    /// Bound on frames queued or in flight from one shard to one destination shard (RX forwarding
    /// and TX proxy each). Set before start().
    void set_forward_limit(std::size_t n) noexcept { _forward_limit = n ? n : 1; }
    std::size_t forward_limit() const noexcept { return _forward_limit; }

    /// Call from the queue poller after frames left this shard's transmit queue: runs the
    /// tx-ready handler if a sender waits and the queue is down to half its capacity. Cheap when
    /// nobody waits.
    void wake_tx_if_room() noexcept {
        auto& s = local();
        if (s.tx_waiting) {
            wake_tx(s);
        }
    }

    /// This shard's counters, for the concrete device to update (tx_packets, runts...).
    device_stats& stats() noexcept { return local().stats; }
    /// Has stop_base() reached this shard?
    bool stopped() const noexcept { return _shards[this_shard_id()].stopped; }

    /// Call from start() on shard 0 before traffic flows: installs, on every shard, the poller
    /// that flushes partial batches (TX proxy batches, RX batches a device did not flush).
    future<> start_base() {
        if (_shards.size() <= 1) {
            co_return;
        }
        co_await smp::invoke_on_all([this] {
            return run_as_task(
                [this] { local().flusher = std::make_unique<poller>(std::make_unique<flush_poller>(*this)); });
        });
    }

    /// Call from stop() on shard 0 once the device's own pollers are stopped on every shard (no
    /// more on_received()/transmit calls will start). Every shard stops accepting frames and
    /// drops what it had queued; then waits for its batches in flight; a batch arriving at a
    /// stopped shard is freed there. Resolves when nothing is in flight anywhere.
    future<> stop_base() {
        if (_shards.size() <= 1) {
            auto& s = _shards[0];
            s.stopped = true;
            co_return;
        }
        co_await smp::invoke_on_all([this] {
            return run_as_task([this] {
                auto& s = local();
                s.stopped = true;
                s.flusher.reset();
                for (auto& o : s.rx_out) {
                    drop_pending(o);
                }
                drop_pending(s.tx_out);
            });
        });
        co_await smp::invoke_on_all([this] { return local().inflight.close(); });
    }

    /// The RX path, on the shard that polled `f` (a queue owner): owner shard lookup, then
    /// delivery here or a place in the batch for the owner (sent by flush_forwarded() or when
    /// forward_batch frames are queued). Frames shorter than an Ethernet header are counted
    /// (rx_dropped_runt) and freed; so are frames polled after stop_base().
    void on_received(Frame&& f) noexcept {
        auto& s = local();
        if (s.stopped) {
            self().free_frame(std::move(f));
            return;
        }
        if (self().frame_size(f) < 14) {
            ++s.stats.rx_dropped_runt;
            self().free_frame(std::move(f));
            return;
        }
        // The hash travels as a value and a flag, not an optional: an optional passed by value is
        // built in memory with two narrow stores and read back whole, a store-forwarding stall
        // per frame (measured: half of the RX loop's time in the hook benchmark).
        std::uint32_t h = 0;
        bool has_h = self().nic_hash(f, h);
        if (_shards.size() == 1) {
            // One shard owns every flow: no software hash (the packet carries the NIC's, if any).
            deliver(s, std::move(f), h, has_h);
            return;
        }
        if (!has_h) {
            auto head = self().frame_head(f);
            if (auto sh = frame_flow_hash(_toeplitz, head.data(), head.size())) {
                h = *sh;
                has_h = true;
            }
        }
        unsigned owner = has_h ? shard_of(h) : 0;
        unsigned me = this_shard_id();
        if (owner == me || owner >= _shards.size()) {
            deliver(s, std::move(f), h, has_h);
            return;
        }
        auto& out = s.rx_out[owner];
        if (out.queued >= _forward_limit) {
            ++s.stats.sw_rss_dropped;
            self().free_frame(std::move(f));
            return;
        }
        ++s.stats.sw_rss_forwarded;
        enqueue_out(s, out, owner, std::move(f), h, has_h, /*tx=*/false);
    }

    /// A whole RX burst, then flush_forwarded(). Each element is moved from.
    void on_received_burst(std::span<Frame> frames) noexcept {
        for (auto& f : frames) {
            on_received(std::move(f));
        }
        flush_forwarded();
    }

    /// Send this shard's partial batches (RX forwarding and TX proxy) now: call after each RX
    /// burst. Cheap when nothing is queued.
    void flush_forwarded() noexcept {
        auto& s = local();
        if (s.pending == 0) {
            return;
        }
        for (unsigned d = 0; d < s.rx_out.size(); ++d) {
            if (!s.rx_out[d].batch.empty()) {
                submit_batch(s, s.rx_out[d], d);
            }
        }
        if (!s.tx_out.batch.empty()) {
            submit_batch(s, s.tx_out, s.tx_out.dest);
        }
    }

    // ---- what the concrete device provides
    //
    // Derived (final, with `friend` access for device_base) defines these; device_base calls them
    // through static_cast<Derived&>, so the per-frame calls are direct and inlinable instead of
    // virtual (the packet hook's fast path makes several per frame).
    //
    //   bool nic_hash(const Frame& f, std::uint32_t& h) const noexcept;
    //       The flow hash the NIC reported for f, if any, in h (used instead of hashing in
    //       software). A default (no hash) is below. (Not an optional: returned through memory it
    //       costs a store-forwarding stall per frame.)
    //   std::span<const char> frame_head(const Frame& f) const noexcept;
    //       The frame's first contiguous bytes (at least the headers when the frame has them: for
    //       a chain, its first segment).
    //   std::size_t frame_size(const Frame& f) const noexcept;
    //       Total length of the frame.
    //   packet to_packet(Frame&& f);
    //       On the owner shard: the frame as a packet, owning it (zero-copy where possible). May
    //       throw std::bad_alloc, having released the frame.
    //   bool writable_view(Frame& f, hook_frame& v) noexcept;
    //       For the packet hook: fill v's data, len and room with the frame's own buffer and
    //       return true when it is one contiguous buffer nobody else references (so the hook may
    //       write it); false otherwise (the hook then gets a copy).
    //   void set_frame_len(Frame& f, std::size_t len) noexcept;
    //       Make f a frame of its first len bytes (len <= the room writable_view gave), ready to
    //       be transmitted as it is (transmit_frame, here or on the proxying shard).
    //   std::optional<Frame> to_frame(packet&& p) noexcept;
    //       On a shard without a queue: the packet as a frame that may cross shards (the packet
    //       is consumed). nullopt when no frame could be had (pool empty): the base counts
    //       tx_dropped.
    //   void transmit_local(packet&& p) noexcept;
    //       On a queue-owning shard: queue a packet of this shard for transmission on its queue.
    //       Counts tx_packets/tx_bytes, or tx_dropped if the queue is full.
    //   void transmit_frame(Frame&& f) noexcept;
    //       On a queue-owning shard: queue a frame another shard proxied here (same counting).
    //   std::size_t tx_queued() const noexcept;
    //   std::size_t tx_capacity() const noexcept;
    //       On a queue-owning shard: frames waiting in its transmit queue, and how many it holds
    //       before transmit_local() drops (for tx_room; call wake_tx_if_room() as it drains).
    //   void free_frame(Frame&& f) noexcept;
    //       Release a frame that will go nowhere (any shard).

    bool nic_hash(const Frame&, std::uint32_t&) const noexcept { return false; }

private:
    struct entry {
        Frame frame;
        std::uint32_t hash;
        bool has_hash;
    };
    // Frames from this shard to one destination: the batch being filled, a spare vector (the
    // previous batch comes back with the reply and is reused), and how many are queued or in
    // flight (bounded by _forward_limit).
    struct outbox {
        std::vector<entry> batch;
        std::vector<entry> spare;
        std::size_t queued = 0;
        unsigned dest = 0;
    };
    struct alignas(64) shard_state {
        std::function<void(packet)> handler;
        packet_hook hook;
        device_stats stats;
        std::vector<outbox> rx_out;  // per destination shard
        outbox tx_out;
        std::size_t pending = 0;  // frames in this shard's unsent batches
        gate inflight;            // batches sent and not yet answered
        std::unique_ptr<poller> flusher;
        std::function<void()> tx_ready;
        bool tx_waiting = false;  // tx_room() said 0 and tx_ready has not run since
        bool stopped = false;
    };

    class flush_poller final : public pollfn {
        device_base& _d;

    public:
        explicit flush_poller(device_base& d) : _d(d) {}
        bool poll() override {
            bool any = _d.local().pending != 0;
            _d.flush_forwarded();
            return any;
        }
        bool pure_poll() override { return _d.local().pending != 0; }
    };

    class shard_vector {
        std::unique_ptr<shard_state[]> _v;
        std::size_t _n;

    public:
        explicit shard_vector(std::size_t n) : _v(new shard_state[n]), _n(n) {
            for (std::size_t i = 0; i < n; ++i) {
                _v[i].rx_out.resize(n);
                for (unsigned d = 0; d < n; ++d) {
                    _v[i].rx_out[d].dest = d;
                }
            }
        }
        shard_state& operator[](std::size_t i) noexcept { return _v[i]; }
        const shard_state& operator[](std::size_t i) const noexcept { return _v[i]; }
        std::size_t size() const noexcept { return _n; }
    };

    shard_vector _shards;
    rss_config _rss;
    toeplitz _toeplitz;
    std::size_t _forward_limit = 1024;

    Derived& self() noexcept { return static_cast<Derived&>(*this); }
    const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }

    shard_state& local() noexcept {
        assert(this_shard_id() < _shards.size());
        return _shards[this_shard_id()];
    }

    // This shard's transmit queue: its own (queue owners) or its TX outbox. False when frames
    // are dropped whatever the sender does (stopped, no queues).
    bool tx_occupancy(const shard_state& s, std::size_t& queued, std::size_t& capacity) const noexcept {
        unsigned queues = self().hw_queues_count();
        if (s.stopped || queues == 0) {
            return false;
        }
        if (this_shard_id() < queues) {
            queued = self().tx_queued();
            capacity = self().tx_capacity();
        } else {
            queued = s.tx_out.queued;
            capacity = _forward_limit;
        }
        return true;
    }

    void wake_tx(shard_state& s) noexcept {
        std::size_t queued, capacity;
        if (tx_occupancy(s, queued, capacity) && queued > capacity / 2) {
            return;
        }
        s.tx_waiting = false;
        if (!s.tx_ready) {
            return;
        }
        try {
            s.tx_ready();
        } catch (...) {
            internal::log_callback_exception("tx-ready handler", std::current_exception());
        }
    }

    void enqueue_out(shard_state& s, outbox& out, unsigned dest, Frame&& f, std::uint32_t h, bool has_h,
                     bool tx) noexcept {
        out.dest = dest;
        if (out.batch.capacity() < forward_batch) {
            try {
                out.batch.reserve(forward_batch);
            } catch (...) {
                if (tx) {
                    --s.stats.tx_proxied;
                    ++s.stats.tx_dropped;
                } else {
                    --s.stats.sw_rss_forwarded;
                    ++s.stats.sw_rss_dropped;
                }
                self().free_frame(std::move(f));
                return;
            }
        }
        // Within capacity (a batch is sent as soon as it is full): cannot throw.
        out.batch.push_back(entry{std::move(f), h, has_h});
        ++out.queued;
        ++s.pending;
        if (out.batch.size() >= forward_batch) {
            submit_batch(s, out, dest);
        }
    }

    void drop_pending(outbox& out) noexcept {
        auto& s = local();
        for (auto& e : out.batch) {
            self().free_frame(std::move(e.frame));
        }
        s.pending -= out.batch.size();
        out.queued -= out.batch.size();
        out.batch.clear();
    }

    // Send out.batch to `dest` in one message. The vector travels there and back (the reply
    // carries it, emptied, to be reused as the next spare), so a steady flow allocates only the
    // message and its continuation. Failing to allocate those terminates, as for any task.
    void submit_batch(shard_state& s, outbox& out, unsigned dest) noexcept {
        std::vector<entry> batch = std::exchange(out.batch, std::move(out.spare));
        out.spare = std::vector<entry>();
        std::size_t n = batch.size();
        s.pending -= n;
        bool tx = &out == &s.tx_out;
        gate::holder h(s.inflight);
        auto f = smp::submit_to(dest, [this, b = std::move(batch), tx]() mutable noexcept {
            receive_batch(b, tx);
            b.clear();
            return std::move(b);
        });
        (void)f.then_wrapped(
            [this, &s, &out, n, tx, h = std::move(h)](future<std::vector<entry>>&& r) mutable noexcept {
                out.queued -= n;
                if (r.failed()) {
                    r.ignore_ready_future();
                } else if (auto v = r.get_value(); out.spare.capacity() == 0) {
                    out.spare = std::move(v);
                }
                if (tx && s.tx_waiting) {
                    wake_tx(s);
                }
            });
    }

    // On the destination shard.
    void receive_batch(std::vector<entry>& b, bool tx) noexcept {
        auto& s = local();
        for (auto& e : b) {
            if (s.stopped) {
                self().free_frame(std::move(e.frame));
            } else if (tx) {
                self().transmit_frame(std::move(e.frame));
            } else {
                ++s.stats.sw_rss_received;
                deliver(s, std::move(e.frame), e.hash, e.has_hash);
            }
        }
    }

    // On the owner shard: packet hook, then handler.
    void deliver(shard_state& s, Frame&& f, std::uint32_t h, bool has_h) noexcept {
        std::size_t len = self().frame_size(f);
        ++s.stats.rx_packets;
        s.stats.rx_bytes += len;
        if (s.hook) {
            hook_frame v;
            if (self().writable_view(f, v)) {
                // The zero-copy fast path: the hook works on the frame's own buffer.
                if (has_h) {
                    v.rss_hash = h;
                }
                hook_action a;
                try {
                    a = s.hook(v);
                } catch (...) {
                    internal::log_callback_exception("packet hook", std::current_exception());
                    self().free_frame(std::move(f));
                    return;
                }
                if (a == hook_action::consumed) {
                    ++s.stats.rx_hooked;
                    self().free_frame(std::move(f));
                    return;
                }
                if (a == hook_action::reply) {
                    ++s.stats.rx_hooked;
                    if (v.len > v.room || v.len < 14 || v.len > self().features().max_frame_size) {
                        ++s.stats.tx_dropped;
                        self().free_frame(std::move(f));
                        return;
                    }
                    self().set_frame_len(f, v.len);
                    send_frame(s, std::move(f));
                    return;
                }
            } else {
                deliver_hooked_copy(s, std::move(f), h, has_h);
                return;
            }
        }
        packet p;
        try {
            p = self().to_packet(std::move(f));
        } catch (...) {
            ++s.stats.rx_dropped_nomem;
            return;
        }
        if (has_h) {
            p.set_rss_hash(h);
        }
        deliver_packet(s, std::move(p));
    }

    // A frame the hook may not write (a chain, or memory someone else holds): the hook gets a
    // private linear copy; the original goes on to the handler if the hook passes.
    void deliver_hooked_copy(shard_state& s, Frame&& f, std::uint32_t h, bool has_h) noexcept {
        packet p, copy;
        try {
            p = self().to_packet(std::move(f));
            copy = packet(p.to_buffer());
        } catch (...) {
            ++s.stats.rx_dropped_nomem;
            return;
        }
        hook_frame v{copy.frag(0).base, copy.len(), copy.len(), std::nullopt};
        if (has_h) {
            v.rss_hash = h;
        }
        hook_action a;
        try {
            a = s.hook(v);
        } catch (...) {
            internal::log_callback_exception("packet hook", std::current_exception());
            return;
        }
        if (a == hook_action::pass) {
            if (has_h) {
                p.set_rss_hash(h);
            }
            deliver_packet(s, std::move(p));
            return;
        }
        ++s.stats.rx_hooked;
        if (a == hook_action::reply) {
            if (v.len > v.room || v.len < 14) {
                ++s.stats.tx_dropped;
                return;
            }
            copy.trim_back(copy.len() - v.len);
            send(std::move(copy));
        }
    }

    // A hook's in-place reply: out through this shard's queue, or the queue that proxies for it.
    void send_frame(shard_state& s, Frame&& f) noexcept {
        unsigned queues = self().hw_queues_count();
        unsigned me = this_shard_id();
        if (s.stopped || queues == 0) {
            ++s.stats.tx_dropped;
            self().free_frame(std::move(f));
            return;
        }
        if (me < queues) {
            self().transmit_frame(std::move(f));
            return;
        }
        auto& out = s.tx_out;
        if (out.queued >= _forward_limit) {
            ++s.stats.tx_dropped;
            self().free_frame(std::move(f));
            return;
        }
        ++s.stats.tx_proxied;
        enqueue_out(s, out, me % queues, std::move(f), 0, false, /*tx=*/true);
    }

    void deliver_packet(shard_state& s, packet&& p) noexcept {
        if (!s.handler) {
            ++s.stats.rx_dropped_no_handler;
            return;
        }
        try {
            s.handler(std::move(p));
        } catch (...) {
            internal::log_callback_exception("receive handler", std::current_exception());
        }
    }
};

}  // namespace reef::net
