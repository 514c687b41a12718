#include "runtime/io/io_queue.hh"

#include "runtime/io/io_log.hh"
#include "runtime/io/io_queue_impl.hh"
#include "runtime/smp.hh"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <unistd.h>

namespace reef {

namespace io {
logger io_log("io");
}

namespace {

constexpr unsigned max_shares = 1000000;

// The process-wide class table. A slot is published by `exists` (release) after its name is set,
// so readers on other shards that see it also see the name; names never change afterwards.
struct class_entry {
    std::atomic<bool> exists{false};
    std::string name;
    std::atomic<unsigned> shares{0};
};

struct class_table {
    std::mutex m;
    std::array<class_entry, io_priority_class::max_classes> e;
    class_table() {
        e[0].name = "default";
        e[0].shares.store(io_priority_class::default_shares);
        e[0].exists.store(true);
    }
};

class_table& classes() {
    static class_table t;
    return t;
}

void check_shares(unsigned shares) {
    if (shares == 0 || shares > max_shares) {
        throw std::invalid_argument(fmt::format("I/O class shares must be from 1 to {} (got {})", max_shares, shares));
    }
}

// Which backend the first shard settled on: later shards take the same one without repeating the
// probe's log line, so the choice is announced once per process.
std::mutex g_choice_mutex;
bool g_choice_made = false;
io::backend_choice g_choice_for = io::backend_choice::auto_select;  // the option the choice answered
std::string g_chosen;

}  // namespace

io_priority_class io_priority_class::create(std::string name, unsigned shares) {
    check_shares(shares);
    if (name.empty()) {
        throw std::invalid_argument("I/O class name must not be empty");
    }
    auto& t = classes();
    std::lock_guard lk(t.m);
    unsigned free_slot = max_classes;
    for (unsigned i = 0; i < max_classes; ++i) {
        if (t.e[i].exists.load(std::memory_order_relaxed)) {
            if (t.e[i].name == name) {
                throw std::invalid_argument(fmt::format("I/O class '{}' already exists", name));
            }
        } else if (free_slot == max_classes) {
            free_slot = i;
        }
    }
    if (free_slot == max_classes) {
        throw std::runtime_error(fmt::format("cannot create I/O class '{}': all {} classes are in use", name, max_classes));
    }
    auto& e = t.e[free_slot];
    e.name = std::move(name);
    e.shares.store(shares, std::memory_order_relaxed);
    e.exists.store(true, std::memory_order_release);
    return io_priority_class(free_slot);
}

std::optional<io_priority_class> io_priority_class::find(std::string_view name) {
    auto& t = classes();
    std::lock_guard lk(t.m);
    for (unsigned i = 0; i < max_classes; ++i) {
        if (t.e[i].exists.load(std::memory_order_relaxed) && t.e[i].name == name) {
            return io_priority_class(i);
        }
    }
    return std::nullopt;
}

std::vector<io_priority_class> io_priority_class::all() {
    std::vector<io_priority_class> r;
    auto& t = classes();
    for (unsigned i = 0; i < max_classes; ++i) {
        if (t.e[i].exists.load(std::memory_order_acquire)) {
            r.push_back(io_priority_class(i));
        }
    }
    return r;
}

std::string io_priority_class::name() const {
    auto& t = classes();
    std::lock_guard lk(t.m);
    return t.e[_id].name;
}

unsigned io_priority_class::shares() const noexcept { return classes().e[_id].shares.load(std::memory_order_relaxed); }

void io_priority_class::set_shares(unsigned shares) const {
    check_shares(shares);
    classes().e[_id].shares.store(shares, std::memory_order_relaxed);
}

void set_io_class_shares(std::string_view name, unsigned shares) {
    auto pc = io_priority_class::find(name);
    if (!pc) {
        std::string known;
        for (auto c : io_priority_class::all()) {
            known += known.empty() ? c.name() : ", " + c.name();
        }
        throw std::invalid_argument(fmt::format("unknown I/O class '{}' (known: {})", name, known));
    }
    pc->set_shares(shares);
}

std::vector<io_class_stats> io_class_stats_local() {
    std::vector<io_class_stats> r;
    auto* q = io::internal::local_io_queue_if_started();
    for (auto pc : io_priority_class::all()) {
        io_class_stats s;
        if (q) {
            s = q->stats(pc.id());
        }
        s.name = pc.name();
        s.shares = pc.shares();
        r.push_back(std::move(s));
    }
    return r;
}

future<std::vector<io_class_stats>> io_class_stats_all() {
    std::vector<io_class_stats> total;
    for (unsigned shard = 0; shard < smp::count; ++shard) {
        auto part = co_await smp::submit_to(shard, [] { return io_class_stats_local(); });
        for (auto& s : part) {
            auto it = std::find_if(total.begin(), total.end(), [&](auto& t) { return t.name == s.name; });
            if (it == total.end()) {
                total.push_back(std::move(s));
                continue;
            }
            it->requests += s.requests;
            it->reads += s.reads;
            it->writes += s.writes;
            it->read_bytes += s.read_bytes;
            it->write_bytes += s.write_bytes;
            it->errors += s.errors;
            it->queue_time += s.queue_time;
            it->exec_time += s.exec_time;
            it->queued += s.queued;
            it->in_flight += s.in_flight;
        }
    }
    co_return total;
}

io_queue_info local_io_queue_info() { return io::internal::local_io_queue().info(); }

namespace io::internal {

namespace {

thread_local io_queue* t_queue = nullptr;

class io_poller final : public pollfn {
    io_queue& _q;

public:
    explicit io_poller(io_queue& q) : _q(q) {}
    bool poll() override { return _q.poll(); }
    bool pure_poll() override { return _q.pure_poll(); }
    bool try_enter_interrupt_mode() override { return _q.try_enter_interrupt_mode(); }
    void exit_interrupt_mode() override { _q.exit_interrupt_mode(); }
};

// Without an io-properties file: a model used only to weigh reads against writes and small
// requests against large ones for fairness; nothing is rate limited.
disk_properties nominal_model() {
    disk_properties d;
    d.read_iops = 100000;
    d.read_bandwidth = 1e9;
    d.write_iops = 50000;
    d.write_bandwidth = 5e8;
    d.max_in_flight = 32;
    return d;
}

}  // namespace

io_queue::io_queue() {
    auto cfg = get_io_config();
    unsigned shards = std::max(1u, smp::count);
    _rate_limited = cfg.disk.has_value();
    disk_properties whole = cfg.disk ? *cfg.disk : nominal_model();
    _model = whole;
    if (_rate_limited) {
        _model.read_iops /= shards;
        _model.read_bandwidth /= shards;
        _model.write_iops /= shards;
        _model.write_bandwidth /= shards;
        _model.max_in_flight = std::max(1u, (whole.max_in_flight + shards - 1) / shards);
    }
    _max_in_flight = _model.max_in_flight;
    _read_op_cost = 1e9 / _model.read_iops;
    _read_byte_cost = 1e9 / _model.read_bandwidth;
    _write_op_cost = 1e9 / _model.write_iops;
    _write_byte_cost = 1e9 / _model.write_bandwidth;
    // A burst of up to 5 ms of disk time, and never less than the largest single request (1 MiB
    // write), so one request can always go.
    _token_cap = std::max(5e6, cost_of(io_op::write, 1 << 20));
    _tokens = _token_cap;
    _last_refill = steady_clock_type::now();

    std::string why;
    {
        std::lock_guard lk(g_choice_mutex);
        backend_choice choice = cfg.backend;
        bool first = !g_choice_made || g_choice_for != cfg.backend;
        if (!first) {
            choice = g_chosen == "io_uring" ? backend_choice::io_uring
                     : g_chosen == "linux-aio" ? backend_choice::linux_aio
                                               : backend_choice::auto_select;
        }
        // The kernel rings are sized for the in-flight limit; a little slack for retries.
        _backend = make_io_backend(choice, _max_in_flight + 8, *this, why);
        if (first) {
            g_choice_made = true;
            g_choice_for = cfg.backend;
            g_chosen = _backend->name();
            io_log.info("{}", why);
            if (_rate_limited) {
                io_log.info("disk model from {}: read {:.0f} IOPS, {:.0f} MB/s; write {:.0f} IOPS, {:.0f} MB/s; "
                            "{} requests in flight (split over {} shards)",
                            cfg.properties_origin, whole.read_iops, whole.read_bandwidth / 1e6, whole.write_iops,
                            whole.write_bandwidth / 1e6, whole.max_in_flight, shards);
            } else {
                io_log.info("no --io-properties-file: the disk's capacity is unknown, so disk I/O is not rate-limited "
                            "and each shard keeps at most {} requests in flight (run iotune to measure the disk)",
                            _max_in_flight);
            }
        } else if (g_chosen != _backend->name()) {
            io_log.warn("shard {}: {}", this_shard_id(), why);
        }
    }

    // Only a sleeping reactor needs the eventfd: awake, the poller reads the completion ring, so
    // the descriptor must not cost an epoll_wait per loop.
    if (int fd = _backend->notify_fd(); fd >= 0) {
        engine().add_sleep_wakeup_fd(fd);
        _notify_fd = fd;
    }
    _token_timer.set_callback([this] {
        if (dispatch()) {
            _backend->flush();
        }
    });
    _poller = std::make_unique<io_poller>(*this);
    engine().register_poller(_poller.get());
}

io_queue::~io_queue() {
    engine().unregister_poller(_poller.get());
    if (_notify_fd >= 0) {
        engine().remove_sleep_wakeup_fd(_notify_fd);
    }
    _token_timer.cancel();
    // Requests at the disk own buffers the kernel is writing into: wait for them.
    _backend->drain();
    for (auto& c : _classes) {
        while (!c.q.empty()) {
            auto* r = c.q.front();
            c.q.pop_front();
            r->pr.set_exception(std::make_exception_ptr(
                std::system_error(ECANCELED, std::system_category(), "the reactor stopped before the request was sent")));
            delete r;
        }
    }
}

double io_queue::cost_of(io_op op, std::size_t bytes) const noexcept {
    return is_write(op) ? _write_op_cost + double(bytes) * _write_byte_cost
                        : _read_op_cost + double(bytes) * _read_byte_cost;
}

io_backend& io_queue::backend_for(const io_request* r) {
    if (!r->buffered) {
        return *_backend;
    }
    if (!_pool) {
        _pool = make_syscall_pool_backend(*this);
    }
    return *_pool;
}

future<std::size_t> io_queue::submit(io_op op, bool buffered, int fd, std::uint64_t pos, void* addr, std::size_t len,
                                     std::size_t bytes, io_priority_class pc) noexcept {
    io_request* r;
    try {
        r = new io_request;
    } catch (...) {
        return make_exception_future<std::size_t>(std::current_exception());
    }
    r->op = op;
    r->buffered = buffered;
    r->fd = fd;
    r->pos = pos;
    r->addr = addr;
    r->len = len;
    r->bytes = bytes;
    r->class_id = pc.id();
    r->cost = cost_of(op, bytes);
    r->queued_at = steady_clock_type::now();
    auto f = r->pr.get_future();
    auto& c = _classes[r->class_id];
    if (c.q.empty()) {
        // An idle class does not bank the time it did not use.
        c.vtime = std::max(c.vtime, _last_vtime);
    }
    c.q.push_back(r);
    ++c.st.queued;
    ++_queued;
    return f;
}

void io_queue::refill() noexcept {
    auto now = steady_clock_type::now();
    double elapsed = double(std::chrono::duration_cast<std::chrono::nanoseconds>(now - _last_refill).count());
    _last_refill = now;
    _tokens = std::min(_token_cap, _tokens + elapsed);
}

bool io_queue::dispatch() noexcept {
    if (_queued == 0 || _in_flight >= _max_in_flight) {
        return false;
    }
    if (_rate_limited) {
        refill();
    }
    bool any = false;
    auto& table = classes();
    while (_queued && _in_flight < _max_in_flight) {
        if (_rate_limited && _tokens <= 0) {
            if (!_token_timer.armed()) {
                _token_timer.arm(std::chrono::nanoseconds(std::int64_t(-_tokens) + 1000));
            }
            break;
        }
        class_state* best = nullptr;
        for (auto& c : _classes) {
            if (!c.q.empty() && (!best || c.vtime < best->vtime)) {
                best = &c;
            }
        }
        io_request* r = best->q.front();
        best->q.pop_front();
        --best->st.queued;
        --_queued;
        _last_vtime = best->vtime;
        unsigned shares = std::max(1u, table.e[r->class_id].shares.load(std::memory_order_relaxed));
        best->vtime += r->cost / shares;
        if (_rate_limited) {
            _tokens -= r->cost;
        }
        ++_in_flight;
        ++best->st.in_flight;
        r->dispatched_at = steady_clock_type::now();
        backend_for(r).submit(r);
        any = true;
    }
    return any;
}

void io_queue::complete(io_request* r, long result) noexcept {
    if ((result == -EAGAIN || result == -EINTR) && r->retries < 16) {
        ++r->retries;
        backend_for(r).submit(r);  // still counted in flight; flushed by the next poll
        return;
    }
    --_in_flight;
    auto& st = _classes[r->class_id].st;
    --st.in_flight;
    ++st.requests;
    auto now = steady_clock_type::now();
    st.queue_time += std::chrono::duration_cast<std::chrono::nanoseconds>(r->dispatched_at - r->queued_at);
    st.exec_time += std::chrono::duration_cast<std::chrono::nanoseconds>(now - r->dispatched_at);
    bool write = is_write(r->op);
    (write ? st.writes : st.reads)++;
    if (result < 0) {
        ++st.errors;
        r->pr.set_exception(std::make_exception_ptr(std::system_error(int(-result), std::system_category())));
    } else {
        (write ? st.write_bytes : st.read_bytes) += std::uint64_t(result);
        r->pr.set_value(std::size_t(result));
    }
    delete r;
}

bool io_queue::poll() noexcept {
    // Dispatch first, so that the submissions and the collection of finished requests share one
    // io_uring_enter (flush); then read what finished from the ring. Slots freed by this reap are
    // refilled by the next loop, after the waiters' continuations have run.
    bool work = dispatch();
    _backend->flush();
    work |= _backend->reap();
    return work;
}

bool io_queue::pure_poll() noexcept {
    if (_backend->has_completions()) {
        return true;
    }
    if (_queued && _in_flight < _max_in_flight) {
        if (!_rate_limited) {
            return true;
        }
        refill();
        return _tokens > 0;
    }
    return false;
}

bool io_queue::try_enter_interrupt_mode() noexcept {
    // Armed and drained first: a completion after this point writes the eventfd again and wakes
    // epoll.
    bool notified = _backend->clear_notifications();
    if (notified || pure_poll()) {
        // The reactor calls exit_interrupt_mode only for pollers that agreed to sleep.
        _backend->disarm_notifications();
        return false;
    }
    return true;
}

void io_queue::exit_interrupt_mode() noexcept { _backend->disarm_notifications(); }

io_queue_info io_queue::info() const {
    io_queue_info i;
    i.backend = _backend->name();
    i.max_in_flight = _max_in_flight;
    i.rate_limited = _rate_limited;
    if (_rate_limited) {
        i.read_iops = _model.read_iops;
        i.read_bandwidth = _model.read_bandwidth;
        i.write_iops = _model.write_iops;
        i.write_bandwidth = _model.write_bandwidth;
    }
    return i;
}

io_class_stats io_queue::stats(unsigned class_id) const { return _classes[class_id].st; }

io_queue& local_io_queue() {
    if (!t_queue) {
        auto q = std::make_unique<io_queue>();
        t_queue = q.release();
        engine().at_destroy([] {
            delete t_queue;
            t_queue = nullptr;
        });
    }
    return *t_queue;
}

io_queue* local_io_queue_if_started() noexcept { return t_queue; }

}  // namespace io::internal

}  // namespace reef
