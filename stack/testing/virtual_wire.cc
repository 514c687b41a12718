#include "stack/testing/virtual_wire.hh"

#include "runtime/clocks.hh"
#include "runtime/smp.hh"
#include "runtime/timer.hh"
#include "stack/net/toeplitz.hh"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <stdexcept>

namespace reef::net {

// ---- frames

namespace {
std::atomic<std::int64_t> live_frames{0};
}

struct wire_frame::block {
    std::size_t len;
    std::uint32_t hash;
    bool has_hash;
    // The bytes follow the header.
    char* bytes() noexcept { return reinterpret_cast<char*>(this + 1); }

    static block* make(std::size_t len) {
        void* p = std::malloc(sizeof(block) + len);
        if (!p) {
            throw std::bad_alloc();
        }
        live_frames.fetch_add(1, std::memory_order_relaxed);
        return new (p) block{len, 0, false};
    }
    static void destroy(block* b) noexcept {
        b->~block();
        std::free(b);
        live_frames.fetch_sub(1, std::memory_order_relaxed);
    }
};

std::int64_t virtual_wire_live_frames() noexcept { return live_frames.load(std::memory_order_relaxed); }

wire_frame wire_frame::allocate(std::size_t len) { return wire_frame(block::make(len)); }

wire_frame wire_frame::copy_of(const packet& p) {
    wire_frame f = allocate(p.len());
    char* out = f.data();
    for (auto& frag : p.fragments()) {
        std::memcpy(out, frag.base, frag.size);
        out += frag.size;
    }
    return f;
}

wire_frame wire_frame::copy_of_bytes(const char* p, std::size_t n, std::optional<std::uint32_t> h) {
    wire_frame f = allocate(n);
    if (n) {
        std::memcpy(f.data(), p, n);
    }
    if (h) {
        f.set_hash(*h);
    }
    return f;
}

char* wire_frame::data() const noexcept { return _b->bytes(); }
std::size_t wire_frame::size() const noexcept { return _b->len; }
std::optional<std::uint32_t> wire_frame::hash() const noexcept {
    return _b->has_hash ? std::optional<std::uint32_t>(_b->hash) : std::nullopt;
}
void wire_frame::set_hash(std::uint32_t h) noexcept {
    _b->hash = h;
    _b->has_hash = true;
}
void wire_frame::reset() noexcept {
    if (auto* b = std::exchange(_b, nullptr)) {
        block::destroy(b);
    }
}

void wire_frame::shrink(std::size_t n) noexcept {
    assert(_b && n <= _b->len);
    _b->len = n;
}

packet wire_frame::into_packet() && {
    block* b = std::exchange(_b, nullptr);
    deleter d;
    try {
        d = make_deleter([b] { block::destroy(b); });
    } catch (...) {
        block::destroy(b);
        throw;
    }
    // On std::bad_alloc the packet constructor releases d, which frees the block.
    return packet(fragment{b->bytes(), b->len}, std::move(d));
}

// ---- the wire

namespace internal {

// One direction of one queue. Only the queue's shard touches it: the sending device's transmit
// and the receiving device's poller both run there.
struct wire_link {
    struct waiting {
        wire_frame frame;
        std::uint64_t ready_poll;
        steady_clock_type::time_point ready_at;
        bool hold;
    };
    struct held {
        wire_frame frame;
        unsigned remaining;
    };
    std::deque<waiting> queue;
    std::vector<held> held_back;
    std::vector<wire_frame> burst;  // reused by every poll
    wire_faults faults;
    wire_stats stats;
    std::uint64_t rng = 0;
    std::uint64_t polls = 0;
    steady_clock_type::time_point next_free{};
    timer<steady_clock_type> wake{[] {}};  // only wakes the reactor; the poller does the work

    // splitmix64: tiny, and the same sequence on every platform.
    std::uint64_t next() noexcept {
        std::uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    static bool chance(std::uint64_t draw, double p) noexcept {
        return p > 0 && static_cast<double>(draw >> 11) * 0x1p-53 < p;
    }
    std::size_t waiting_count() const noexcept { return queue.size() + held_back.size(); }
};

struct alignas(64) wire_queue {
    wire_link dir[2];
};

struct wire_shared {
    virtual_wire_config cfg;
    unsigned queues;
    toeplitz hasher;
    wire_capture capture;
    std::unique_ptr<wire_queue[]> q;

    wire_shared(virtual_wire_config c, unsigned nq) : cfg(std::move(c)), queues(nq), q(new wire_queue[nq]) {
        for (unsigned i = 0; i < nq; ++i) {
            for (unsigned d = 0; d < 2; ++d) {
                auto& l = q[i].dir[d];
                l.faults = cfg.faults;
                l.rng = cfg.seed * 0x2545f4914f6cdd1dull + i * 2 + d + 1;
            }
        }
    }
    wire_link& link(unsigned queue, wire_direction d) noexcept { return q[queue].dir[static_cast<unsigned>(d)]; }
};

}  // namespace internal

namespace {

void check_rate(double r, const char* name) {
    if (!(r >= 0 && r <= 1)) {
        throw std::invalid_argument(std::string("virtual wire: ") + name + " rate " + std::to_string(r) +
                                    " is outside [0, 1]");
    }
}

void check_faults(const wire_faults& f) {
    check_rate(f.loss, "loss");
    check_rate(f.duplicate, "duplicate");
    check_rate(f.reorder, "reorder");
    check_rate(f.corrupt, "corrupt");
    if (f.reorder > 0 && f.reorder_distance == 0) {
        throw std::invalid_argument("virtual wire: reorder_distance must be at least 1");
    }
}

wire_direction opposite(wire_direction d) noexcept {
    return d == wire_direction::a_to_b ? wire_direction::b_to_a : wire_direction::a_to_b;
}

}  // namespace

// ---- the device

class virtual_wire_device::rx_poller final : public pollfn {
    virtual_wire_device& _d;

public:
    explicit rx_poller(virtual_wire_device& d) : _d(d) {}
    bool poll() override { return _d.poll_rx(); }
    bool pure_poll() override { return _d.rx_ready(); }
};

virtual_wire_device::virtual_wire_device(std::shared_ptr<internal::wire_shared> w, wire_direction tx,
                                         ethernet_address mac, std::string name)
    : _wire(std::move(w)), _tx(tx), _mac(mac), _name(std::move(name)), _pollers(smp::count) {
    _features.mtu = _wire->cfg.mtu;
    _features.max_frame_size = _wire->cfg.mtu + 14u;
    rss_config rss;
    rss.key.assign(default_rss_key.begin(), default_rss_key.end());
    rss.reta = build_reta(smp::count, _wire->queues, _wire->cfg.hw_queue_weight);
    set_rss(std::move(rss));
    set_forward_limit(_wire->cfg.forward_limit);
}

virtual_wire_device::~virtual_wire_device() { assert(!_started && "virtual_wire_device destroyed without stop()"); }

unsigned virtual_wire_device::hw_queues_count() const noexcept { return _wire->queues; }

link_status virtual_wire_device::get_link_status() const {
    link_status s;
    s.up = true;
    s.full_duplex = true;
    auto bps = _wire->cfg.faults.bandwidth_bps;
    s.speed_mbps = bps ? static_cast<std::uint32_t>(std::max<std::uint64_t>(1, bps / 1000000)) : 100000;
    return s;
}

future<> virtual_wire_device::start() {
    co_await start_base();
    co_await smp::invoke_on_all([this] {
        return run_as_task([this] {
            unsigned s = this_shard_id();
            if (s < _wire->queues) {
                _pollers[s] = std::make_unique<poller>(std::make_unique<rx_poller>(*this));
            }
        });
    });
    _started = true;
}

future<> virtual_wire_device::stop() {
    if (!_started) {
        co_return;
    }
    co_await smp::invoke_on_all([this] { return run_as_task([this] { stop_queue(); }); });
    co_await stop_base();
    _started = false;
}

void virtual_wire_device::stop_queue() noexcept {
    unsigned s = this_shard_id();
    if (s >= _wire->queues) {
        return;
    }
    _pollers[s].reset();
    auto& l = _wire->link(s, opposite(_tx));
    l.wake.cancel();
    l.stats.freed_waiting += l.waiting_count();
    l.queue.clear();
    l.held_back.clear();
    l.burst.clear();
}

std::optional<wire_frame> virtual_wire_device::to_frame(packet&& p) noexcept {
    try {
        return wire_frame::copy_of(p);
    } catch (...) {
        return std::nullopt;
    }
}

void virtual_wire_device::transmit_local(packet&& p) noexcept {
    wire_frame f;
    try {
        f = wire_frame::copy_of(p);
    } catch (...) {
        ++stats().tx_dropped;
        return;
    }
    p.reset();
    put_on_wire(std::move(f));
}

void virtual_wire_device::transmit_frame(wire_frame&& f) noexcept { put_on_wire(std::move(f)); }

std::size_t virtual_wire_device::tx_queued() const noexcept {
    return _wire->link(this_shard_id(), _tx).waiting_count();
}

std::size_t virtual_wire_device::tx_capacity() const noexcept { return _wire->cfg.ring_size; }

void virtual_wire_device::put_on_wire(wire_frame&& f) noexcept {
    unsigned q = this_shard_id();
    assert(q < _wire->queues);
    auto& l = _wire->link(q, _tx);
    auto& st = stats();
    auto& cfg = _wire->cfg;
    if (l.waiting_count() >= cfg.ring_size) {
        ++l.stats.dropped_full;
        ++st.tx_dropped;
        f.reset();
        return;
    }
    ++st.tx_packets;
    st.tx_bytes += f.size();
    ++l.stats.sent;

    // Every frame consumes the same draws whatever happens to it, so that changing one rate does
    // not move the other faults to different frames.
    const wire_faults& fl = l.faults;
    std::uint64_t d_loss = l.next(), d_dup = l.next(), d_reorder = l.next(), d_corrupt = l.next();
    std::uint64_t d_offset = l.next(), d_mask = l.next();
    wire_event ev{_tx, q, {}, false, false, false, false};
    ev.lost = internal::wire_link::chance(d_loss, fl.loss);
    if (!ev.lost) {
        ev.duplicated = internal::wire_link::chance(d_dup, fl.duplicate);
        ev.reordered = internal::wire_link::chance(d_reorder, fl.reorder);
        if (internal::wire_link::chance(d_corrupt, fl.corrupt) && f.size() > fl.corrupt_from) {
            std::size_t off = fl.corrupt_from + d_offset % (f.size() - fl.corrupt_from);
            f.data()[off] ^= static_cast<char>(1 + d_mask % 255);
            ev.corrupted = true;
        }
    }
    ev.frame = {f.data(), f.size()};
    if (_wire->capture) {
        try {
            _wire->capture(ev);
        } catch (...) {
            internal::log_callback_exception("virtual wire capture", std::current_exception());
        }
    }
    if (ev.lost) {
        ++l.stats.lost;
        f.reset();
        return;
    }
    l.stats.corrupted += ev.corrupted;
    if (cfg.nic_hash) {
        // What an RSS NIC would report: the hash of the bytes as received.
        if (auto h = frame_flow_hash(_wire->hasher, f.data(), f.size())) {
            f.set_hash(*h);
        }
    }
    std::uint64_t ready_poll = l.polls + fl.delay_polls;
    auto ready_at = steady_clock_type::time_point::min();
    if (fl.latency.count() > 0 || fl.bandwidth_bps > 0) {
        auto now = steady_clock_type::now();
        auto start = now;
        if (fl.bandwidth_bps > 0) {
            start = std::max(now, l.next_free);
            auto ser = std::chrono::nanoseconds(f.size() * 8 * 1000000000ull / fl.bandwidth_bps);
            l.next_free = start + ser;
            start = l.next_free;
        }
        ready_at = start + fl.latency;
    }
    try {
        std::optional<wire_frame> dup;
        if (ev.duplicated) {
            dup = f.copy();
        }
        l.queue.push_back({std::move(f), ready_poll, ready_at, ev.reordered});
        if (dup) {
            l.queue.push_back({std::move(*dup), ready_poll, ready_at, false});
            ++l.stats.duplicated;
        }
    } catch (...) {
        // No memory for the queue entry: the frame is lost like in a full ring (the deque keeps
        // what it had on failure).
        ++l.stats.dropped_full;
        return;
    }
    l.stats.reordered += ev.reordered;
}

bool virtual_wire_device::rx_ready() const noexcept {
    unsigned q = this_shard_id();
    auto& l = _wire->link(q, opposite(_tx));
    if (!l.held_back.empty()) {
        return true;
    }
    if (l.queue.empty()) {
        return false;
    }
    auto at = l.queue.front().ready_at;
    return at == steady_clock_type::time_point::min() || at <= steady_clock_type::now();
}

bool virtual_wire_device::poll_rx() {
    // The peer's poller, on this shard too, takes our frames off the wire.
    wake_tx_if_room();
    unsigned q = this_shard_id();
    auto& l = _wire->link(q, opposite(_tx));
    ++l.polls;
    if (l.queue.empty() && l.held_back.empty()) {
        return false;
    }
    auto now = steady_clock_type::time_point::min();
    bool have_now = false;
    auto ready = [&](const internal::wire_link::waiting& w) {
        if (w.ready_poll > l.polls) {
            return false;
        }
        if (w.ready_at == steady_clock_type::time_point::min()) {
            return true;
        }
        if (!have_now) {
            now = steady_clock_type::now();
            have_now = true;
        }
        return w.ready_at <= now;
    };
    auto& burst = l.burst;
    unsigned max = _wire->cfg.rx_burst;
    while (burst.size() < max && !l.queue.empty() && ready(l.queue.front())) {
        auto& w = l.queue.front();
        wire_frame f = std::move(w.frame);
        bool hold = w.hold;
        l.queue.pop_front();
        if (hold) {
            l.held_back.push_back({std::move(f), std::max(1u, l.faults.reorder_distance)});
            continue;
        }
        burst.push_back(std::move(f));
        // One frame passed the held ones.
        for (std::size_t i = 0; i < l.held_back.size();) {
            if (--l.held_back[i].remaining == 0) {
                burst.push_back(std::move(l.held_back[i].frame));
                l.held_back.erase(l.held_back.begin() + static_cast<std::ptrdiff_t>(i));
            } else {
                ++i;
            }
        }
    }
    bool more = !l.queue.empty() && ready(l.queue.front());
    if (!more) {
        // Nothing else is ready to overtake them: let held frames go rather than strand them.
        for (auto& h : l.held_back) {
            burst.push_back(std::move(h.frame));
        }
        l.held_back.clear();
    }
    if (!l.queue.empty() && !more) {
        auto at = l.queue.front().ready_at;
        if (at != steady_clock_type::time_point::min() && (!l.wake.armed() || l.wake.get_timeout() != at)) {
            l.wake.arm(at);
        }
    }
    if (burst.empty()) {
        return false;
    }
    l.stats.delivered += burst.size();
    on_received_burst(std::span<wire_frame>(burst));
    burst.clear();
    return true;
}

// ---- the pair

void virtual_wire::set_capture(wire_capture fn) { shared->capture = std::move(fn); }

future<> virtual_wire::set_faults(wire_direction d, wire_faults f) {
    check_faults(f);
    auto sh = shared;
    return smp::invoke_on_all([sh, d, f] {
        unsigned s = this_shard_id();
        if (s < sh->queues) {
            sh->link(s, d).faults = f;
        }
    });
}

future<wire_stats> virtual_wire::stats(wire_direction d) {
    auto sh = shared;
    wire_stats total;
    for (unsigned s = 0; s < sh->queues; ++s) {
        // Named first: GCC 12 destroys a temporary closure inside co_await twice.
        auto f = smp::submit_to(s, [sh, s, d] { return sh->link(s, d).stats; });
        wire_stats one = co_await std::move(f);
        total.sent += one.sent;
        total.delivered += one.delivered;
        total.lost += one.lost;
        total.duplicated += one.duplicated;
        total.corrupted += one.corrupted;
        total.reordered += one.reordered;
        total.dropped_full += one.dropped_full;
        total.freed_waiting += one.freed_waiting;
    }
    co_return total;
}

virtual_wire make_virtual_wire(virtual_wire_config cfg) {
    if (cfg.mtu < 68 || cfg.mtu > 65000) {
        throw std::invalid_argument("virtual wire: MTU " + std::to_string(cfg.mtu) + " is outside [68, 65000]");
    }
    if (cfg.ring_size == 0 || cfg.rx_burst == 0) {
        throw std::invalid_argument("virtual wire: ring_size and rx_burst must be at least 1");
    }
    if (cfg.mac_a == cfg.mac_b) {
        throw std::invalid_argument("virtual wire: both ends have MAC " + cfg.mac_a.to_string());
    }
    check_faults(cfg.faults);
    unsigned queues = cfg.queues == 0 ? smp::count : std::min(cfg.queues, smp::count);
    auto mac_a = cfg.mac_a, mac_b = cfg.mac_b;
    auto sh = std::make_shared<internal::wire_shared>(std::move(cfg), queues);
    virtual_wire w;
    w.shared = sh;
    w.a = std::make_unique<virtual_wire_device>(sh, wire_direction::a_to_b, mac_a, "vwire-a");
    w.b = std::make_unique<virtual_wire_device>(sh, wire_direction::b_to_a, mac_b, "vwire-b");
    return w;
}

}  // namespace reef::net
