// The reactor: one per shard thread. It runs ready tasks until the task quota expires, then polls
// (timers, signals, registered pollers: smp rings, network queues, disk completions), and when
// there is nothing to do it follows the idle policy (keep polling, or sleep until woken).
//
// Everything here is single-threaded except wakeup(), which any thread (or a signal handler) may
// call to end the reactor's sleep.
#pragma once

#include "runtime/circular_buffer.hh"
#include "runtime/clocks.hh"
#include "runtime/future.hh"
#include "runtime/task.hh"
#include "runtime/timer.hh"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace reef {

enum class idle_policy {
    poll,      // never sleep: lowest latency, one core at 100%
    sleep,     // sleep as soon as there is nothing to do
    adaptive,  // keep polling for idle_poll, then sleep
};

/// "poll", "sleep" or "adaptive"; throws std::invalid_argument naming the bad value.
idle_policy parse_idle_policy(const std::string& s);
const char* to_string(idle_policy p) noexcept;

/// A reactor's tunables. Every one of them can also be changed while the reactor runs.
struct reactor_config {
    std::chrono::microseconds task_quota{500};
    idle_policy idle = idle_policy::adaptive;
    std::chrono::microseconds idle_poll{200};
    std::chrono::milliseconds stall_threshold{25};
    /// SIGINT and SIGTERM make the reactor exit(0) gracefully (at_exit hooks run).
    bool handle_termination_signals = true;
    /// Threads in the syscall pool (run_blocking).
    unsigned blocking_threads = 1;
};

/// Something polled by the reactor on every loop iteration.
class pollfn {
public:
    virtual ~pollfn() = default;
    /// Do any available work; return true if there was some.
    virtual bool poll() = 0;
    /// Report whether poll() would find work, without doing it (checked just before sleeping).
    virtual bool pure_poll() = 0;
    /// About to sleep: arrange to be woken by an event (e.g. ask producers to call wakeup()).
    /// Return false to veto sleeping.
    virtual bool try_enter_interrupt_mode() { return true; }
    /// Woke up: go back to plain polling.
    virtual void exit_interrupt_mode() {}
};

namespace internal {
class syscall_pool;
struct pollable_fd_state;
}

class reactor {
public:
    struct stats {
        std::uint64_t tasks_processed = 0;
        std::uint64_t polls = 0;
        std::uint64_t sleeps = 0;
        std::uint64_t timers_fired = 0;
        std::uint64_t stalls = 0;
        std::uint64_t quota_violations = 0;  // task batches that ran past 2x the quota
        std::chrono::nanoseconds idle_time{0};  // time spent asleep
        // Time spent awake in loop rounds that found nothing to do. A busy-polling shard
        // (idle_policy::poll, a NIC queue that vetoes sleeping) shows 100% CPU whatever its load;
        // its real load is 1 - (idle_time + idle_poll_time) / elapsed ("reactor utilization").
        std::chrono::nanoseconds idle_poll_time{0};
        std::uint64_t fd_polls = 0;    // non-blocking epoll_wait calls for registered descriptors
        std::uint64_t fd_events = 0;   // readiness events delivered to descriptors
    };

    /// Create the reactor for the calling thread (which must not have one).
    explicit reactor(unsigned id, reactor_config cfg = {});
    ~reactor();
    reactor(const reactor&) = delete;
    reactor& operator=(const reactor&) = delete;

    /// Run the loop until exit() has finished; returns the exit code.
    int run();
    /// Start a graceful stop: at_exit hooks run (last registered first), then run() returns
    /// `code`. Calling it again while stopping does nothing.
    void exit(int code) noexcept;
    bool stopping() const noexcept { return _stopping; }
    /// Register a hook run by exit(). Hooks run sequentially; a failing hook is logged and the
    /// others still run.
    void at_exit(std::function<future<>()> hook);
    /// Run `fn` (on this thread) when the reactor is destroyed, before anything else is torn
    /// down, so a per-shard service the reactor does not know (the disk I/O queue) can unregister
    /// its pollers and descriptors. Last registered runs first; `fn` must not throw.
    void at_destroy(std::function<void()> fn);

    unsigned id() const noexcept { return _id; }
    const stats& get_stats() const noexcept { return _stats; }
    /// How many times wakeup() had to write the eventfd (the reactor was asleep). Any thread.
    std::uint64_t wakeup_writes() const noexcept { return _wakeup_writes.load(std::memory_order_relaxed); }
    const reactor_config& config() const noexcept { return _cfg; }
    void set_task_quota(std::chrono::microseconds q);
    void set_idle_policy(idle_policy p, std::chrono::microseconds idle_poll) noexcept;
    void set_stall_threshold(std::chrono::milliseconds t) noexcept;
    steady_clock_type::time_point start_time() const noexcept { return _start_time; }

    void add_task(task* t) noexcept;
    void add_urgent_task(task* t) noexcept;
    bool have_tasks() const noexcept { return _active_mask != 0; }

    /// Per scheduling group statistics on this shard.
    struct group_stats {
        std::string name;
        float shares = 0;
        std::chrono::nanoseconds runtime{0};     // CPU time spent running the group's tasks
        std::uint64_t tasks_processed = 0;
        std::size_t queue_length = 0;             // tasks waiting now
        std::chrono::nanoseconds longest_wait{0}; // longest time the group waited for the CPU
    };
    /// Make group `id` known on this shard (create_scheduling_group does it on every shard).
    void init_scheduling_group(unsigned id, std::string name, float shares);
    void destroy_scheduling_group(unsigned id);
    bool scheduling_group_exists(unsigned id) const noexcept { return id < max_scheduling_groups && _queues[id].exists; }
    /// Change a group's shares on this shard; takes effect at the next scheduling decision.
    void set_scheduling_group_shares(unsigned id, float shares);
    group_stats scheduling_group_stats(unsigned id) const;

    /// Pollers are not owned; unregister before destroying one.
    void register_poller(pollfn* p);
    void unregister_poller(pollfn* p) noexcept;

    /// Descriptors driven by the reactor's epoll (see runtime/pollable_fd.hh, which calls these).
    /// register_fd adds the descriptor edge-triggered for input, output and hang-up; throws
    /// std::system_error if epoll refuses it.
    void register_fd(internal::pollable_fd_state* s);
    /// Forget a descriptor that is about to be closed.
    void unregister_fd(internal::pollable_fd_state* s) noexcept;

    /// A descriptor that only has to end the reactor's sleep (a disk backend's completion
    /// eventfd): added edge-triggered for input, but, unlike register_fd, never polled while the
    /// reactor is awake, so it costs no system call per loop; its owner's poller finds the work
    /// itself and drains the descriptor in try_enter_interrupt_mode. Throws std::system_error if
    /// epoll refuses it. The descriptor stays the caller's (remove it before closing it).
    void add_sleep_wakeup_fd(int fd);
    void remove_sleep_wakeup_fd(int fd) noexcept;

    /// End the reactor's sleep. Thread-safe and async-signal-safe; cheap when it is not asleep.
    void wakeup() noexcept;

    /// Run `handler` on this reactor when `signo` arrives (the handler runs as a normal task-free
    /// callback on this shard, not in signal context). Replaces an earlier handler.
    void handle_signal(int signo, std::function<void()> handler);

    /// Run `func` on the syscall thread pool and return its result here. For blocking calls
    /// with no asynchronous form; never for CPU-heavy work on the hot path.
    template <typename Func>
    auto run_blocking(Func&& func) -> futurize_t<std::invoke_result_t<Func>>;

    // Internal: the signal handler's view of this reactor.
    void on_quota_tick() noexcept;
    template <typename Clock>
    internal::timer_set<Clock>& timers() noexcept;
    internal::syscall_pool& syscall_pool();

private:
    // One run queue per scheduling group. The scheduler runs the active queue with the least
    // virtual runtime (CPU time divided by shares), so CPU time splits in proportion to shares.
    struct task_queue {
        circular_buffer<task*> q;
        std::string name;
        float shares = 1000;
        bool exists = false;
        bool active = false;
        std::uint64_t vruntime = 0;  // ns * vruntime_scale / shares
        std::chrono::nanoseconds runtime{0};
        std::uint64_t tasks_processed = 0;
        std::chrono::nanoseconds longest_wait{0};
        lowres_clock::time_point activated_at{};
    };
    static constexpr std::uint64_t vruntime_scale = 1000;

    unsigned _id;
    reactor_config _cfg;
    std::array<task_queue, max_scheduling_groups> _queues;
    std::uint32_t _active_mask = 0;  // bit i: group i has tasks
    std::uint64_t _min_vruntime = 0; // vruntime of the group picked last
    lowres_clock::time_point _batch_lowres_now{};  // refreshed by every poll and wake-up
    steady_clock_type::time_point _tasks_end{};    // when the last task batch ended, until the next poll
    std::vector<pollfn*> _pollers;
    internal::timer_set<steady_clock_type> _timers;
    internal::timer_set<lowres_clock> _lowres_timers;
    std::vector<std::function<future<>()>> _exit_hooks;
    std::vector<std::function<void()>> _destroy_hooks;
    std::array<std::function<void()>, 65> _signal_handlers;
    std::unique_ptr<internal::syscall_pool> _syscall_pool;
    stats _stats;
    steady_clock_type::time_point _start_time;
    steady_clock_type::time_point _idle_since{};
    // Open idle streak: when idle_poll_time was last brought up to date; {} while the loop is busy.
    steady_clock_type::time_point _idle_poll_mark{};
    int _return_code = 0;
    bool _stopping = false;
    bool _stopped = false;

    int _epollfd = -1;
    int _wakefd = -1;
    std::size_t _registered_fds = 0;
    static constexpr unsigned fd_poll_stride = 16;
    unsigned _fd_poll_skips = 0;
    std::atomic<bool> _sleeping{false};
    std::atomic<std::uint64_t> _wakeup_writes{0};

    // Task quota timer and stall detector (POSIX timer delivering a signal to this thread).
    void* _quota_timer = nullptr;
    bool _quota_timer_armed = false;
    std::atomic<std::uint64_t> _progress{0};
    std::uint64_t _stall_last_progress = 0;
    unsigned _stall_ticks = 0;
    static constexpr int max_backtrace = 64;
    void* _stall_frames[max_backtrace];
    volatile int _stall_nframes = 0;
    volatile bool _stall_captured = false;
    volatile unsigned _stall_ms = 0;
    volatile bool _reporting_stall = false;  // report_stall() runs: not a stall of its own

    void run_some_tasks();
    void activate(task_queue& q, unsigned id) noexcept;
    unsigned pick_next_group() const noexcept;
    bool poll_once();
    bool poll_fds();
    void dispatch_epoll_events(const void* events, int n) noexcept;
    /// Fire expired timers by `now` (read here when it is the epoch: no fresh reading at hand)
    /// and `lowres_now`.
    bool expire_timers(steady_clock_type::time_point now, lowres_clock::time_point lowres_now);
    bool check_signals();
    bool pure_poll_all();
    void maybe_sleep();
    void sleep_now();
    void arm_quota_timer(bool on);
    void report_stall();
    void tick() noexcept { _progress.store(_progress.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
    future<> run_exit_hooks();
};

namespace internal {
inline thread_local reactor* local_engine = nullptr;
}

/// This shard's reactor. Only valid on a reactor thread.
inline reactor& engine() noexcept { return *internal::local_engine; }
/// Is the calling thread running a reactor?
inline bool engine_is_ready() noexcept { return internal::local_engine != nullptr; }

/// Registers a pollfn with the local reactor for its lifetime.
class poller {
    std::unique_ptr<pollfn> _fn;

public:
    explicit poller(std::unique_ptr<pollfn> fn);
    ~poller();
    poller(poller&&) noexcept = default;
    poller& operator=(poller&&) noexcept = default;
    pollfn& fn() noexcept { return *_fn; }
};

/// A task running a function once.
template <typename Func>
class lambda_task final : public task, public internal::task_pool_allocated {
    Func _func;

public:
    explicit lambda_task(Func&& f) : _func(std::move(f)) {}
    void run_and_dispose() noexcept override {
        _func();
        delete this;
    }
};
template <typename Func>
task* make_task(Func&& f) {
    return new lambda_task<std::decay_t<Func>>(std::forward<Func>(f));
}

/// Create a reactor on the calling thread, run main() on it and return when main's future
/// resolves (its value is the exit code; an exception is logged and gives 1) or when the
/// reactor is asked to exit (e.g. SIGTERM) and its hooks have run. `main` is called once and kept
/// alive until run_reactor returns, so a coroutine lambda's captures stay valid.
int run_reactor(reactor_config cfg, std::function<future<int>()> main);

}  // namespace reef

// run_blocking() is defined with the pool it uses.
#include "runtime/syscall_pool.hh"
