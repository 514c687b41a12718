#include "runtime/reactor.hh"

#include "runtime/backtrace.hh"
#include "runtime/coarse_clock.hh"
#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/pollable_fd.hh"
#include "runtime/syscall_pool.hh"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <execinfo.h>
#include <stdexcept>
#include <string>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <system_error>
#include <time.h>
#include <unistd.h>

namespace reef {

static logger rlog("reactor");

template <>
internal::timer_set<steady_clock_type>& reactor::timers<steady_clock_type>() noexcept {
    return _timers;
}
template <>
internal::timer_set<lowres_clock>& reactor::timers<lowres_clock>() noexcept {
    return _lowres_timers;
}

namespace internal {

void report_ignored_exception(const std::exception_ptr& ex) noexcept {
    try {
        std::rethrow_exception(ex);
    } catch (const std::exception& e) {
        rlog.warn("exceptional future ignored: {}", e.what());
    } catch (...) {
        rlog.warn("exceptional future ignored: unknown exception");
    }
}

template <>
timer_set<steady_clock_type>& local_timers<steady_clock_type>() noexcept {
    return engine().timers<steady_clock_type>();
}
template <>
timer_set<lowres_clock>& local_timers<lowres_clock>() noexcept {
    return engine().timers<lowres_clock>();
}

}  // namespace internal

void schedule(task* t) noexcept { engine().add_task(t); }
void schedule_urgent(task* t) noexcept { engine().add_urgent_task(t); }

idle_policy parse_idle_policy(const std::string& s) {
    if (s == "poll") return idle_policy::poll;
    if (s == "sleep") return idle_policy::sleep;
    if (s == "adaptive") return idle_policy::adaptive;
    throw std::invalid_argument("invalid idle policy '" + s + "' (expected poll, sleep or adaptive)");
}

const char* to_string(idle_policy p) noexcept {
    switch (p) {
    case idle_policy::poll: return "poll";
    case idle_policy::sleep: return "sleep";
    case idle_policy::adaptive: return "adaptive";
    }
    return "?";
}

namespace {

// Read once: how far this poll's coarse time may be behind the precise clock (expire_timers).
const std::chrono::nanoseconds coarse_lag = coarse_clock_lag();

int quota_signal() { return SIGRTMIN + 2; }

void quota_signal_handler(int) {
    internal::preempt_requested = true;
    if (auto* r = internal::local_engine) {
        r->on_quota_tick();
    }
}

// Signals registered with reactor::handle_signal: the handler only records the signal and wakes
// the reactor that owns it; the work runs later on that reactor.
std::atomic<std::uint64_t> g_pending_signals{0};
std::atomic<reactor*> g_signal_reactor{nullptr};

// Signals 1..64 map to bits 0..63 (1 << 64 would be undefined).
// Readiness events taken from epoll per call.
constexpr int epoll_batch = 128;
// epoll data of add_sleep_wakeup_fd descriptors: never a pollable_fd_state address (those are
// aligned) nor null (the reactor's own wake-up eventfd).
constexpr std::uint64_t sleep_wakeup_tag = 1;

constexpr std::uint64_t signal_bit(int signo) noexcept { return std::uint64_t(1) << (signo - 1); }

void forwarding_signal_handler(int signo) {
    g_pending_signals.fetch_or(signal_bit(signo), std::memory_order_relaxed);
    if (auto* r = g_signal_reactor.load(std::memory_order_relaxed)) {
        r->wakeup();
    }
}

std::system_error errno_error(const char* what) { return std::system_error(errno, std::system_category(), what); }

}  // namespace

reactor::reactor(unsigned id, reactor_config cfg) : _id(id), _cfg(cfg) {
    if (internal::local_engine) {
        throw std::logic_error("a reactor already runs on this thread");
    }
    _epollfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (_epollfd < 0) {
        throw errno_error("epoll_create1");
    }
    _wakefd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (_wakefd < 0) {
        int e = errno;
        ::close(_epollfd);
        throw std::system_error(e, std::system_category(), "eventfd");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the wake-up eventfd; registered descriptors carry their state
    ::epoll_ctl(_epollfd, EPOLL_CTL_ADD, _wakefd, &ev);

    // backtrace() loads libgcc's unwinder on first use; do it here, not in a signal handler.
    void* warm[4];
    (void)::backtrace(warm, 4);

    struct sigaction sa{};
    sa.sa_handler = quota_signal_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(quota_signal(), &sa, nullptr);

    sigevent sev{};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = quota_signal();
    sev._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));
    timer_t t;
    if (::timer_create(CLOCK_MONOTONIC, &sev, &t) != 0) {
        int e = errno;
        ::close(_wakefd);
        ::close(_epollfd);
        throw std::system_error(e, std::system_category(), "timer_create (task quota timer)");
    }
    _quota_timer = t;

    _batch_lowres_now = lowres_clock::now();
    init_scheduling_group(0, "main", 1000);
    internal::local_engine = this;
    internal::log_shard_id = int(id);
    _start_time = steady_clock_type::now();

    if (_cfg.handle_termination_signals) {
        handle_signal(SIGINT, [this] {
            rlog.info("SIGINT received, shutting down");
            exit(0);
        });
        handle_signal(SIGTERM, [this] {
            rlog.info("SIGTERM received, shutting down");
            exit(0);
        });
    }
}

reactor::~reactor() {
    while (!_destroy_hooks.empty()) {
        auto hook = std::move(_destroy_hooks.back());
        _destroy_hooks.pop_back();
        hook();
    }
    arm_quota_timer(false);
    ::timer_delete(static_cast<timer_t>(_quota_timer));
    _syscall_pool.reset();
    for (int s = 1; s < int(_signal_handlers.size()); ++s) {
        if (_signal_handlers[s]) {
            ::signal(s, SIG_DFL);
        }
    }
    reactor* self = this;
    g_signal_reactor.compare_exchange_strong(self, nullptr);
    // Timers still armed belong to objects that outlive the reactor; disarm them so their
    // destructors do not reach for a dead reactor.
    while (auto* t = _timers.pop_expired(steady_clock_type::time_point::max())) {
        t->cancel_after_removal();
    }
    while (auto* t = _lowres_timers.pop_expired(lowres_clock::time_point::max())) {
        t->cancel_after_removal();
    }
    ::close(_wakefd);
    ::close(_epollfd);
    internal::local_engine = nullptr;
    internal::log_shard_id = -1;
    // The quota timer is gone: a flag it raised during the last batch would otherwise make ready
    // futures on this thread take the scheduling path with no reactor to schedule on.
    internal::preempt_requested = false;
}

void reactor::activate(task_queue& q, unsigned id) noexcept {
    q.active = true;
    _active_mask |= std::uint32_t(1) << id;
    // A group that slept does not bank CPU time: it resumes at the current minimum.
    q.vruntime = std::max(q.vruntime, _min_vruntime);
    // The time of the last poll or task batch (at most a quota old): precise enough for
    // longest_wait, and no clock read per activation (nearly every task, in a ping-pong).
    q.activated_at = _batch_lowres_now;
}

void reactor::add_task(task* t) noexcept {
    unsigned id = t->group().id();
    auto& q = _queues[id];
    q.q.push_back(t);
    if (!q.active) {
        activate(q, id);
    }
}

void reactor::add_urgent_task(task* t) noexcept {
    unsigned id = t->group().id();
    auto& q = _queues[id];
    q.q.push_front(t);
    if (!q.active) {
        activate(q, id);
    }
}

unsigned reactor::pick_next_group() const noexcept {
    std::uint32_t m = _active_mask;
    unsigned best = unsigned(__builtin_ctz(m));
    m &= m - 1;
    while (m) {
        unsigned i = unsigned(__builtin_ctz(m));
        m &= m - 1;
        if (_queues[i].vruntime < _queues[best].vruntime) {
            best = i;
        }
    }
    return best;
}

void reactor::init_scheduling_group(unsigned id, std::string name, float shares) {
    if (id >= max_scheduling_groups) {
        throw std::invalid_argument("scheduling group id out of range");
    }
    if (!(shares > 0)) {
        throw std::invalid_argument("scheduling group shares must be positive");
    }
    auto& q = _queues[id];
    q.name = std::move(name);
    q.shares = shares;
    q.exists = true;
    q.vruntime = _min_vruntime;
    q.runtime = {};
    q.tasks_processed = 0;
    q.longest_wait = {};
}

void reactor::destroy_scheduling_group(unsigned id) {
    if (id == 0 || id >= max_scheduling_groups || !_queues[id].exists) {
        throw std::invalid_argument("no such scheduling group (or the main group, which cannot be destroyed)");
    }
    if (!_queues[id].q.empty()) {
        throw std::logic_error("scheduling group '" + _queues[id].name + "' still has tasks");
    }
    _queues[id].exists = false;
}

void reactor::set_scheduling_group_shares(unsigned id, float shares) {
    if (id >= max_scheduling_groups || !_queues[id].exists) {
        throw std::invalid_argument("no such scheduling group");
    }
    if (!(shares > 0)) {
        throw std::invalid_argument("scheduling group shares must be positive");
    }
    _queues[id].shares = shares;
}

reactor::group_stats reactor::scheduling_group_stats(unsigned id) const {
    if (id >= max_scheduling_groups || !_queues[id].exists) {
        throw std::invalid_argument("no such scheduling group");
    }
    auto& q = _queues[id];
    return group_stats{q.name, q.shares, q.runtime, q.tasks_processed, q.q.size(), q.longest_wait};
}

void reactor::register_poller(pollfn* p) { _pollers.push_back(p); }

void reactor::unregister_poller(pollfn* p) noexcept {
    _pollers.erase(std::remove(_pollers.begin(), _pollers.end(), p), _pollers.end());
}

poller::poller(std::unique_ptr<pollfn> fn) : _fn(std::move(fn)) { engine().register_poller(_fn.get()); }

poller::~poller() {
    if (_fn && engine_is_ready()) {
        engine().unregister_poller(_fn.get());
    }
}

void reactor::wakeup() noexcept {
    // Orders the caller's publication of work before the read of _sleeping (pairs with the
    // seq_cst store in sleep_now); without it a store-buffered publish could miss a sleeper.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (_sleeping.load(std::memory_order_relaxed)) {
        _wakeup_writes.fetch_add(1, std::memory_order_relaxed);  // only on the system-call path
        std::uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(_wakefd, &one, sizeof(one));
    }
}

void reactor::handle_signal(int signo, std::function<void()> handler) {
    if (signo <= 0 || signo >= int(_signal_handlers.size())) {
        throw std::invalid_argument("handle_signal: bad signal number " + std::to_string(signo));
    }
    _signal_handlers[signo] = std::move(handler);
    g_signal_reactor.store(this, std::memory_order_relaxed);
    struct sigaction sa{};
    sa.sa_handler = forwarding_signal_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(signo, &sa, nullptr) != 0) {
        throw errno_error("sigaction");
    }
}

bool reactor::check_signals() {
    // Only the reactor that registered handlers consumes pending signals; another shard taking
    // the bits would drop them.
    if (g_pending_signals.load(std::memory_order_relaxed) == 0 ||
        g_signal_reactor.load(std::memory_order_relaxed) != this) {
        return false;
    }
    std::uint64_t pending = g_pending_signals.exchange(0, std::memory_order_relaxed);
    for (int s = 1; s < int(_signal_handlers.size()); ++s) {
        if ((pending & signal_bit(s)) && _signal_handlers[s]) {
            _signal_handlers[s]();
        }
    }
    return true;
}

void reactor::at_exit(std::function<future<>()> hook) { _exit_hooks.push_back(std::move(hook)); }

void reactor::at_destroy(std::function<void()> fn) { _destroy_hooks.push_back(std::move(fn)); }

future<> reactor::run_exit_hooks() {
    while (!_exit_hooks.empty()) {
        auto hook = std::move(_exit_hooks.back());
        _exit_hooks.pop_back();
        try {
            co_await futurize_invoke(hook);
        } catch (const std::exception& e) {
            rlog.error("at_exit hook failed: {}", e.what());
        } catch (...) {
            rlog.error("at_exit hook failed: unknown exception");
        }
    }
    _stopped = true;
}

void reactor::exit(int code) noexcept {
    if (_stopping) {
        return;
    }
    _stopping = true;
    _return_code = code;
    // Run the hooks as a task so exit() may be called from anywhere, even a destructor.
    add_task(make_task([this] { (void)run_exit_hooks(); }));
}

void reactor::set_task_quota(std::chrono::microseconds q) {
    if (q.count() <= 0) {
        throw std::invalid_argument("task quota must be positive");
    }
    _cfg.task_quota = q;
    if (_quota_timer_armed) {
        arm_quota_timer(true);
    }
}

void reactor::set_idle_policy(idle_policy p, std::chrono::microseconds idle_poll) noexcept {
    _cfg.idle = p;
    _cfg.idle_poll = idle_poll;
}

void reactor::set_stall_threshold(std::chrono::milliseconds t) noexcept { _cfg.stall_threshold = t; }

void reactor::arm_quota_timer(bool on) {
    itimerspec its{};
    if (on) {
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(_cfg.task_quota).count();
        its.it_value.tv_sec = ns / 1000000000;
        its.it_value.tv_nsec = ns % 1000000000;
        its.it_interval = its.it_value;
    }
    ::timer_settime(static_cast<timer_t>(_quota_timer), 0, &its, nullptr);
    _quota_timer_armed = on;
}

// Signal context: only plain loads and stores of this thread's state, and backtrace(), which is
// safe once warmed up (see the constructor) with glibc >= 2.35's lock-free _dl_find_object.
void reactor::on_quota_tick() noexcept {
    auto p = _progress.load(std::memory_order_relaxed);
    if (p != _stall_last_progress || _reporting_stall) {
        _stall_last_progress = p;
        _stall_ticks = 0;
        return;
    }
    ++_stall_ticks;
    auto quota_us = std::uint64_t(_cfg.task_quota.count());
    auto stalled_us = std::uint64_t(_stall_ticks) * quota_us;
    if (!_stall_captured && stalled_us >= std::uint64_t(_cfg.stall_threshold.count()) * 1000) {
        _stall_nframes = ::backtrace(_stall_frames, max_backtrace);
        _stall_ms = unsigned(stalled_us / 1000);
        _stall_captured = true;
    }
}

void reactor::report_stall() {
    // Symbolizing can take longer than the threshold (libdw reads debug information). The frames
    // are copied before the quota signal may capture again, so they are not overwritten while
    // symbolized, and the signal treats the report as progress, so it is not reported as a stall.
    _reporting_stall = true;
    void* frames[max_backtrace];
    int n = _stall_nframes;
    std::copy_n(_stall_frames, n, frames);
    unsigned ms = _stall_ms;
    _stall_captured = false;
    ++_stats.stalls;
    rlog.warn("reactor stalled for at least {} ms (threshold {} ms), backtrace:\n{}", ms,
              _cfg.stall_threshold.count(), symbolize_backtrace(frames, n));
    tick();
    _reporting_stall = false;
}

void reactor::run_some_tasks() {
    if (_active_mask == 0) {
        return;
    }
    internal::preempt_requested = false;
    auto batch_start = steady_clock_type::now();
    auto t0 = batch_start;
    // The coarse clock of the poll that just ran (or of the wake-up): it ticks every few ms, far
    // coarser than the time since then, and a busy loop would otherwise read it three times a round.
    const auto lowres_now = _batch_lowres_now;
    do {
        unsigned id = pick_next_group();
        task_queue& tq = _queues[id];
        _min_vruntime = tq.vruntime;
        tq.longest_wait = std::max(tq.longest_wait, std::chrono::nanoseconds(lowres_now - tq.activated_at));
        internal::current_sg = scheduling_group(id);
        while (!tq.q.empty()) {
            task* t = tq.q.front();
            tq.q.pop_front();
            tick();
            ++tq.tasks_processed;
            ++_stats.tasks_processed;
            t->run_and_dispose();
            if (need_preempt()) {
                break;
            }
        }
        auto t1 = steady_clock_type::now();
        auto ran = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0);
        t0 = t1;
        tq.runtime += ran;
        tq.vruntime += std::uint64_t(double(ran.count()) * vruntime_scale / tq.shares);
        if (tq.q.empty()) {
            tq.active = false;
            _active_mask &= ~(std::uint32_t(1) << id);
        } else {
            tq.activated_at = lowres_now;
        }
    } while (_active_mask != 0 && !need_preempt());
    internal::current_sg = scheduling_group();
    _tasks_end = t0;  // the poll that follows fires its timers by it instead of reading the clock again
    if (t0 - batch_start > 2 * _cfg.task_quota) {
        ++_stats.quota_violations;
    }
    if (_stall_captured) [[unlikely]] {
        report_stall();
    }
}

bool reactor::expire_timers(steady_clock_type::time_point now, lowres_clock::time_point lowres_now) {
    bool work = false;
    // No fresh precise reading at hand: the coarse time of this poll says whether one is needed.
    // When the earliest timer lies beyond what the coarse clock's lag could hide, nothing can have
    // expired and the round costs no clock read (a busy NIC poller runs rounds of a few hundred ns,
    // where the read alone was 10% of the shard's time in a bulk transfer).
    if (!_timers.empty() && (now != steady_clock_type::time_point{} ||
                             _timers.next().time_since_epoch() <= lowres_now.time_since_epoch() + coarse_lag)) {
        if (now == steady_clock_type::time_point{}) {
            now = steady_clock_type::now();
        }
        while (auto* t = _timers.pop_expired(now)) {
            internal::current_sg = t->group();
            ++_stats.timers_fired;
            t->fire();
            work = true;
        }
    }
    if (!_lowres_timers.empty()) {
        while (auto* t = _lowres_timers.pop_expired(lowres_now)) {
            internal::current_sg = t->group();
            ++_stats.timers_fired;
            t->fire();
            work = true;
        }
    }
    internal::current_sg = scheduling_group();
    return work;
}

void reactor::register_fd(internal::pollable_fd_state* s) {
    epoll_event ev{};
    // Edge-triggered: the descriptor is added once and never modified; readiness hints in the
    // state decide whether an operation tries the system call or waits for the next edge.
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = s;
    if (::epoll_ctl(_epollfd, EPOLL_CTL_ADD, s->fd, &ev) != 0) {
        throw errno_error("epoll_ctl(ADD)");
    }
    ++_registered_fds;
}

void reactor::unregister_fd(internal::pollable_fd_state* s) noexcept {
    // Closing the descriptor removes it from epoll; deleting it explicitly covers descriptors
    // that were dup()ed elsewhere, so no event can name a state that is gone.
    ::epoll_ctl(_epollfd, EPOLL_CTL_DEL, s->fd, nullptr);
    --_registered_fds;
}

void reactor::add_sleep_wakeup_fd(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = sleep_wakeup_tag;
    if (::epoll_ctl(_epollfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        throw errno_error("epoll_ctl(ADD) of a wake-up descriptor");
    }
}

void reactor::remove_sleep_wakeup_fd(int fd) noexcept { ::epoll_ctl(_epollfd, EPOLL_CTL_DEL, fd, nullptr); }

void reactor::dispatch_epoll_events(const void* evs, int n) noexcept {
    auto* events = static_cast<const epoll_event*>(evs);
    for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == sleep_wakeup_tag) {
            continue;  // it only ended the sleep; its poller does the work
        }
        auto* s = static_cast<internal::pollable_fd_state*>(events[i].data.ptr);
        if (!s) {
            std::uint64_t v;
            [[maybe_unused]] auto r = ::read(_wakefd, &v, sizeof(v));
            continue;
        }
        ++_stats.fd_events;
        s->on_events(events[i].events);
    }
}

bool reactor::poll_fds() {
    ++_stats.fd_polls;
    epoll_event events[epoll_batch];
    int n = ::epoll_wait(_epollfd, events, epoll_batch, 0);
    if (n <= 0) {
        return false;
    }
    dispatch_epoll_events(events, n);
    return true;
}

bool reactor::poll_once() {
    tick();
    const auto lowres_now = lowres_clock::now();
    _batch_lowres_now = lowres_now;
    ++_stats.polls;
    // The clock read that ended the task batch just before (none when no task ran) is now to the
    // timers: one read fewer per round of a busy loop.
    bool work = expire_timers(std::exchange(_tasks_end, {}), lowres_now);
    work |= check_signals();
    // By index: a poll may register or unregister pollers (every smp::submit_to function runs
    // inside the smp poller). A poller removed this round may make the next one wait a round.
    bool pollers_busy = false;
    for (std::size_t i = 0; i < _pollers.size(); ++i) {
        pollers_busy |= _pollers[i]->poll();
    }
    work |= pollers_busy;
    // epoll_wait is a system call: while registered pollers (a NIC queue, the smp rings) keep
    // finding work, descriptors are polled one round in fd_poll_stride only; a round where the
    // pollers find nothing always polls them. Kernel sockets of a busy dataplane wait at most a
    // few microseconds more; a posix-only shard (no busy poller) polls every round as before.
    if (_registered_fds && (!pollers_busy || ++_fd_poll_skips >= fd_poll_stride)) {
        _fd_poll_skips = 0;
        work |= poll_fds();
    }
    if (_stall_captured) [[unlikely]] {
        report_stall();
    }
    return work;
}

bool reactor::pure_poll_all() {
    if (have_tasks() || (g_pending_signals.load(std::memory_order_relaxed) != 0 &&
                         g_signal_reactor.load(std::memory_order_relaxed) == this)) {
        return true;
    }
    if (!_timers.empty() && _timers.next() <= steady_clock_type::now()) {
        return true;
    }
    if (!_lowres_timers.empty() && _lowres_timers.next() <= lowres_clock::now()) {
        return true;
    }
    for (std::size_t i = 0; i < _pollers.size(); ++i) {
        if (_pollers[i]->pure_poll()) {
            return true;
        }
    }
    return false;
}

void reactor::maybe_sleep() {
    if (_cfg.idle == idle_policy::poll) {
        return;
    }
    auto now = steady_clock_type::now();
    if (_idle_since == steady_clock_type::time_point{}) {
        _idle_since = now;
    }
    if (_cfg.idle == idle_policy::adaptive && now - _idle_since < _cfg.idle_poll) {
        return;
    }
    sleep_now();
    _idle_since = {};
}

void reactor::sleep_now() {
    std::size_t entered = 0;
    for (; entered < _pollers.size(); ++entered) {
        if (!_pollers[entered]->try_enter_interrupt_mode()) {
            break;
        }
    }
    if (entered == _pollers.size()) {
        _sleeping.store(true, std::memory_order_seq_cst);
        // Re-check after announcing sleep: a producer that saw _sleeping == false has already
        // made its work visible to pure_poll.
        if (!pure_poll_all()) {
            timespec ts{};
            timespec* timeout = nullptr;
            auto now = steady_clock_type::now();
            std::chrono::nanoseconds wait = std::chrono::nanoseconds::max();
            if (!_timers.empty()) {
                wait = std::max(std::chrono::nanoseconds(0), _timers.next() - now);
            }
            if (!_lowres_timers.empty()) {
                // The coarse clock ticks every few ms; sleeping to the exact point is pointless.
                auto lw = std::max(std::chrono::nanoseconds(0), _lowres_timers.next() - lowres_clock::now());
                wait = std::min(wait, lw);
            }
            if (wait != std::chrono::nanoseconds::max()) {
                ts.tv_sec = wait.count() / 1000000000;
                ts.tv_nsec = wait.count() % 1000000000;
                timeout = &ts;
            }
            // Asleep is idle_time's: the polling that led here ends now, so no time counts twice.
            if (_idle_poll_mark != steady_clock_type::time_point{}) {
                _stats.idle_poll_time += now - _idle_poll_mark;
                _idle_poll_mark = {};
            }
            // The quota timer keeps running into the sleep: a reactor that sleeps and wakes many
            // times per quota (a server between requests) then pays no timer_settime calls. If
            // the timer fires while we sleep, its signal ends the wait (EINTR); only then is it
            // stopped, and the loop comes back here to sleep without it. It is restarted after a
            // sleep it did not run through.
            ++_stats.sleeps;
            epoll_event events[epoll_batch];
            int n = ::epoll_pwait2(_epollfd, events, epoll_batch, timeout, nullptr);
            if (n < 0 && errno == EINTR && _quota_timer_armed) {
                arm_quota_timer(false);
            } else if (!_quota_timer_armed) {
                arm_quota_timer(true);
            }
            dispatch_epoll_events(events, n);
            _stats.idle_time += steady_clock_type::now() - now;
            _batch_lowres_now = lowres_clock::now();  // the tasks the wake-up queued run by it
        }
        _sleeping.store(false, std::memory_order_relaxed);
    }
    for (std::size_t i = 0; i < entered; ++i) {
        _pollers[i]->exit_interrupt_mode();
    }
}

int reactor::run() {
    arm_quota_timer(true);
    while (!_stopped) {
        // idle_poll_time: the clock is read only inside an idle streak (once per round) and once
        // when one starts, so a busy loop pays nothing for it. Bringing the counter up to date at
        // the top of each idle round keeps it current for a reader, and a round that turns out
        // busy has had nothing of its own added.
        if (_idle_poll_mark != steady_clock_type::time_point{}) {
            auto now = steady_clock_type::now();
            _stats.idle_poll_time += now - _idle_poll_mark;
            _idle_poll_mark = now;
        }
        bool ran = have_tasks();
        run_some_tasks();
        if (_stopped) {
            break;
        }
        bool work = poll_once();
        if (work || have_tasks()) {
            _idle_poll_mark = {};
            _idle_since = {};
            if (!_quota_timer_armed) [[unlikely]] {
                arm_quota_timer(true);  // stopped during an idle sleep (see sleep_now)
            }
            continue;
        }
        if (ran) {
            _idle_poll_mark = {};
        } else if (_idle_poll_mark == steady_clock_type::time_point{}) {
            _idle_poll_mark = steady_clock_type::now();
        }
        maybe_sleep();
    }
    // The syscall pool stops first: its threads finish the calls they are running, and those
    // results (or broken_promise for calls never started) reach their waiters in the drain below
    // instead of being queued on a reactor that is being destroyed.
    _syscall_pool.reset();
    // Let work queued by the exit hooks (promises resolved on the way out) finish, so nothing is
    // left half-done in the queues.
    for (int rounds = 0; rounds < 1000 && (have_tasks() || poll_once()); ++rounds) {
        run_some_tasks();
    }
    arm_quota_timer(false);
    return _return_code;
}

int run_reactor(reactor_config cfg, std::function<future<int>()> main) {
    reactor r(0, cfg);
    // `main` stays in this frame until the reactor is gone: when it is a coroutine lambda, its
    // captures live in it and are used after the coroutine's first suspension.
    r.add_task(make_task([&r, &main] {
        (void)futurize_invoke(main).then_wrapped([&r](future<int>&& f) {
            int code = 1;
            try {
                code = f.get();
            } catch (const std::exception& e) {
                rlog.error("main failed: {}", e.what());
            } catch (...) {
                rlog.error("main failed: unknown exception");
            }
            r.exit(code);
        });
    }));
    return r.run();
}

}  // namespace reef
