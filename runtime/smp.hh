// Shards and the messages between them.
//
// A Reef process runs smp::count shards, one reactor thread each (shard 0 is the main thread).
// Shards share nothing mutable; the only way to run code on another shard is
// smp::submit_to(shard, func), which moves func to that shard, runs it there, and returns its
// result (or exception) to the caller's shard as a future. Each ordered pair of shards has its own
// single-producer/single-consumer rings, drained in batches by each reactor's poller; a sleeping
// shard is woken by an eventfd, a polling one costs no system call.
#pragma once

#include "runtime/circular_buffer.hh"
#include "runtime/coroutine.hh"
#include "runtime/future.hh"
#include "runtime/reactor.hh"
#include "runtime/spsc_ring.hh"

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace reef {

/// The calling shard's id, 0 .. smp::count-1.
inline unsigned this_shard_id() noexcept { return engine().id(); }

/// How many shards to run and where.
struct smp_options {
    /// Number of shards; 0 means one per CPU of the cpuset.
    unsigned smp = 0;
    /// CPUs to run on (the process's allowed CPUs when empty).
    std::vector<unsigned> cpuset;
    /// Pin each shard's thread to its CPU.
    bool thread_affinity = true;
    /// Called on each shard (with its id) once its reactor exists, before main() runs. If it
    /// throws on any shard, smp::run stops the shards that started and rethrows that exception.
    std::function<void(unsigned shard)> shard_init;
};

/// Parse a CPU list such as "0-3,8,10-11". Throws std::invalid_argument naming the bad part.
std::vector<unsigned> parse_cpuset(const std::string& s);
/// The CPUs this process may run on (sched_getaffinity).
std::vector<unsigned> available_cpus();
/// Check options against the machine: returns the CPU of each shard, or throws
/// std::invalid_argument saying what is wrong (too many shards, CPUs that do not exist).
std::vector<unsigned> resolve_shard_cpus(const smp_options& opts);

namespace internal {

class smp_message_queue;
reactor* smp_target_reactor(unsigned shard) noexcept;

// A cross-shard call: allocated and freed on the sending shard, run on the receiving one.
class smp_work_item {
public:
    smp_message_queue* _queue = nullptr;
    virtual ~smp_work_item() = default;
    virtual void process() noexcept = 0;   // on the receiving shard; ends with _queue->respond(this)
    virtual void complete() noexcept = 0;  // on the sending shard; resolves the promise, deletes
};

/// The channel from one shard to another: requests one way, responses back.
class smp_message_queue {
public:
    struct stats {
        std::uint64_t sent = 0;       // requests sent (sender side)
        std::uint64_t received = 0;   // requests run (receiver side)
        std::uint64_t completed = 0;  // responses processed (sender side)
        std::uint64_t blocked = 0;    // requests that waited for ring room (back-pressure)
    };

    smp_message_queue(unsigned from, unsigned to, std::size_t capacity);
    ~smp_message_queue();

    unsigned from() const noexcept { return _from; }
    unsigned to() const noexcept { return _to; }

    // ---- sending shard ----
    template <typename Func>
    futurize_t<std::invoke_result_t<Func>> submit(Func&& func);
    /// Publish queued requests and wake the receiver if it sleeps. True if anything was sent.
    bool flush_requests() noexcept;
    /// Complete responses that came back. True if any did.
    bool process_completions() noexcept;
    bool has_completions() noexcept { return _responses.consumer_has_items(); }
    bool has_unflushed_requests() const noexcept { return _unpublished_requests != 0; }
    std::size_t inflight() const noexcept { return _inflight; }

    // ---- receiving shard ----
    /// Run incoming requests. True if any ran.
    bool process_incoming() noexcept;
    /// A request finished: queue its response (the ring always has room: in-flight is bounded).
    void respond(smp_work_item* item) noexcept;
    /// Publish queued responses and wake the sender if it sleeps.
    bool flush_responses() noexcept;
    bool has_incoming() noexcept { return _requests.consumer_has_items(); }
    bool has_unflushed_responses() const noexcept { return _unpublished_responses != 0; }

    const stats& get_stats() const noexcept { return _stats; }

private:
    static constexpr std::size_t batch = 32;

    unsigned _from;
    unsigned _to;
    spsc_ring<smp_work_item*> _requests;   // from -> to
    spsc_ring<smp_work_item*> _responses;  // to -> from
    // Sender-side state (only the `from` shard touches it).
    std::size_t _inflight = 0;
    std::size_t _max_inflight;
    std::size_t _unpublished_requests = 0;
    circular_buffer<smp_work_item*> _blocked;  // waiting for in-flight room
    // Receiver-side state (only the `to` shard touches it).
    std::size_t _unpublished_responses = 0;
    stats _stats;

    void enqueue(smp_work_item* item) noexcept;
};

template <typename Func>
class async_work_item final : public smp_work_item {
    using futurator = futurize<std::invoke_result_t<Func>>;
    using future_type = typename futurator::type;
    using value_type = typename future_type::value_type;

    Func _func;
    std::optional<value_or_monostate<value_type>> _result;
    std::exception_ptr _ex;
    promise<value_type> _pr;

    void take(future_type&& f) noexcept {
        if (f.failed()) {
            _ex = f.get_exception();
        } else {
            _result.emplace(f.get_value());
        }
    }

public:
    template <typename F>
    explicit async_work_item(F&& func) : _func(std::forward<F>(func)) {}
    future_type get_future() { return _pr.get_future(); }

    void process() noexcept override {
        auto f = futurator::invoke(_func);
        if (f.available()) {
            take(std::move(f));
            _queue->respond(this);
            return;
        }
        (void)f.then_wrapped([this](future_type&& r) noexcept {
            take(std::move(r));
            _queue->respond(this);
        });
    }
    void complete() noexcept override {
        if (_ex) {
            _pr.set_exception(std::move(_ex));
        } else if constexpr (std::is_void_v<value_type>) {
            _pr.set_value();
        } else {
            _pr.set_value(std::move(*_result));
        }
        delete this;
    }
};

template <typename Func>
futurize_t<std::invoke_result_t<Func>> smp_message_queue::submit(Func&& func) {
    auto* item = new async_work_item<std::decay_t<Func>>(std::forward<Func>(func));
    item->_queue = this;
    auto fut = item->get_future();
    ++_stats.sent;
    if (_inflight < _max_inflight) {
        ++_inflight;
        enqueue(item);
    } else {
        ++_stats.blocked;
        _blocked.push_back(item);
    }
    return fut;
}

}  // namespace internal

class smp {
public:
    /// Number of shards in this process (1 before smp::run starts more).
    static inline unsigned count = 1;

    /// Start smp_options.smp shards (validated with resolve_shard_cpus; a bad configuration
    /// throws std::invalid_argument before any thread starts), run main() on shard 0 and return
    /// its exit code once every shard has stopped. SIGINT/SIGTERM on shard 0 (with
    /// cfg.handle_termination_signals) stop all shards gracefully. If a shard fails to start,
    /// the started ones are stopped and the error is rethrown.
    static int run(const smp_options& opts, reactor_config cfg, std::function<future<int>()> main);

    /// Run func on `shard` and return its result here. Runs inline (no message) when `shard` is
    /// the caller's own. func is moved to the target shard, kept alive until the future it returns
    /// has resolved (so a coroutine lambda may capture), and destroyed on the caller's shard after
    /// the result came back. Requests from one shard to another run in submission order.
    template <typename Func>
    static futurize_t<std::invoke_result_t<Func>> submit_to(unsigned shard, Func&& func) {
        unsigned self = this_shard_id();
        if (shard == self) {
            if constexpr (is_future_v<std::invoke_result_t<Func>>) {
                // Keep func (and so a coroutine lambda's captures) alive until its future
                // resolves, as the cross-shard path does.
                auto holder = std::make_unique<std::decay_t<Func>>(std::forward<Func>(func));
                auto f = futurize_invoke(*holder);
                if (f.available()) {
                    return f;
                }
                return f.finally([h = std::move(holder)] {});
            } else {
                return futurize_invoke(std::forward<Func>(func));
            }
        }
        return queue(self, shard).submit(std::forward<Func>(func));
    }

    /// Run a copy of func on every shard; resolves when all are done (an exception from any is
    /// passed on after all finished).
    template <typename Func>
    static future<> invoke_on_all(Func func);
    /// Same, on every shard but the caller's.
    template <typename Func>
    static future<> invoke_on_others(Func func);

    static internal::smp_message_queue& queue(unsigned from, unsigned to) noexcept {
        return *_queues[from * count + to];
    }
    /// The CPU each shard runs on (empty when not pinned).
    static const std::vector<unsigned>& shard_cpus() noexcept { return _cpus; }

private:
    static inline std::vector<std::unique_ptr<internal::smp_message_queue>> _queues;
    static inline std::vector<unsigned> _cpus;
    template <typename Func>
    static future<> invoke_on_set(Func func, bool include_self);
};

template <typename Func>
future<> smp::invoke_on_set(Func func, bool include_self) {
    std::vector<future<>> fs;
    fs.reserve(count);
    unsigned self = this_shard_id();
    for (unsigned s = 0; s < count; ++s) {
        if (s == self && !include_self) {
            continue;
        }
        fs.push_back(submit_to(s, [func]() mutable { return futurize_invoke(func).discard_result(); }));
    }
    std::exception_ptr ex;
    for (auto& f : fs) {
        co_await std::move(f).then_wrapped([&ex](future<>&& r) {
            if (r.failed()) {
                auto e = r.get_exception();
                if (!ex) {
                    ex = std::move(e);
                }
            }
        });
    }
    if (ex) {
        std::rethrow_exception(ex);
    }
}

template <typename Func>
future<> smp::invoke_on_all(Func func) {
    return invoke_on_set(std::move(func), true);
}

template <typename Func>
future<> smp::invoke_on_others(Func func) {
    return invoke_on_set(std::move(func), false);
}

}  // namespace reef
