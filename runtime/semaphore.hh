// semaphore: a counter of units that fibers wait on, for limiting concurrency (at most N requests
// in flight) and for mutual exclusion (a semaphore of 1 unit).
//
// Contract:
//  - Single-shard, no atomics: a semaphore, its waiters and everyone who signals it live on one
//    shard. Waiters are woken by scheduling their continuation (never inline in signal()).
//  - Fair: waiters are served strictly first-in, first-out. A waiter that wants more units than
//    are available blocks the ones behind it, even if they want fewer (no starvation of large
//    requests); wait() does not overtake waiters either, even when enough units are available.
//  - The fast path (units available, nobody waiting) returns a ready future and allocates nothing.
//    A waiter costs one node from the task pool, holding its promise, timer and abort
//    subscription; it is unlinked in O(1) when it times out or is aborted.
//  - A waiter that times out or is aborted leaves the queue at once, and if it was blocking the
//    head, the waiters behind it are served from the units already available.
//  - broken() fails every waiter and every later wait with broken_semaphore (or the given
//    exception); signal() is then ignored. Destroying a semaphore with waiters breaks them.
#pragma once

#include "runtime/abort_source.hh"
#include "runtime/clocks.hh"
#include "runtime/coroutine.hh"
#include "runtime/future.hh"
#include "runtime/sync_internal.hh"
#include "runtime/task_alloc.hh"
#include "runtime/timer.hh"

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <sys/types.h>
#include <type_traits>
#include <utility>

namespace reef {

/// A semaphore wait whose timeout expired before it got its units.
class semaphore_timed_out : public std::exception {
public:
    const char* what() const noexcept override { return "semaphore timed out"; }
};

/// A wait on a semaphore that was broken().
class broken_semaphore : public std::exception {
public:
    const char* what() const noexcept override { return "semaphore broken"; }
};

/// A semaphore wait whose abort_source was aborted by a plain request_abort().
class semaphore_aborted : public abort_requested_exception {
public:
    const char* what() const noexcept override { return "semaphore wait aborted"; }
};

/// The exceptions a semaphore fails waits with. A custom factory provides static timeout() and
/// broken() (and optionally aborted()) returning exception objects, e.g. to name the semaphore.
struct semaphore_default_exception_factory {
    static semaphore_timed_out timeout() noexcept { return {}; }
    static broken_semaphore broken() noexcept { return {}; }
    static semaphore_aborted aborted() noexcept { return {}; }
};

/// A counting semaphore (see the file comment for the contract). ExceptionFactory supplies the
/// exceptions waits fail with; Clock (steady_clock_type or lowres_clock) measures timed waits.
template <typename ExceptionFactory, typename Clock = steady_clock_type>
class basic_semaphore {
public:
    using clock = Clock;
    using duration = typename Clock::duration;
    using time_point = typename Clock::time_point;

private:
    // One waiter. Allocated from the task pool; owned by the semaphore while linked.
    struct entry : internal::list_hook, internal::task_pool_allocated {
        basic_semaphore* sem;
        std::size_t nr;
        promise<> pr;
        timer<Clock> tmr;
        std::optional<abort_source::subscription> sub;

        entry(basic_semaphore* s, std::size_t n) noexcept : sem(s), nr(n) {}
    };

    ssize_t _count;
    std::size_t _nr_waiters = 0;
    internal::intrusive_list<entry> _wait_list;
    std::exception_ptr _ex;  // set by broken()

    bool has_available_units(std::size_t nr) const noexcept { return _count >= 0 && std::size_t(_count) >= nr; }
    bool may_proceed(std::size_t nr) const noexcept { return has_available_units(nr) && _wait_list.empty(); }

    // now + d, saturating so that a huge d means "no timeout" rather than overflow.
    static time_point deadline(duration d) noexcept {
        auto now = Clock::now();
        return d >= time_point::max() - now ? time_point::max() : now + d;
    }
    static std::exception_ptr timeout_exception() noexcept {
        return std::make_exception_ptr(ExceptionFactory::timeout());
    }
    static std::exception_ptr aborted_exception() noexcept {
        if constexpr (requires { ExceptionFactory::aborted(); }) {
            return std::make_exception_ptr(ExceptionFactory::aborted());
        } else {
            return std::make_exception_ptr(semaphore_aborted());
        }
    }

    // Link a fully set-up waiter (its timer or subscription is in place: nothing can throw now).
    future<> enqueue(std::unique_ptr<entry> e) noexcept {
        auto f = e->pr.get_future();
        _wait_list.push_back(*e.release());
        ++_nr_waiters;
        return f;
    }
    void remove(entry* e) noexcept {
        e->unlink();
        --_nr_waiters;
        delete e;
    }
    // Serve waiters from the head while the head's request fits.
    void wake_waiters() noexcept {
        while (!_wait_list.empty()) {
            entry& e = _wait_list.front();
            if (!has_available_units(e.nr)) {
                break;
            }
            _count -= ssize_t(e.nr);
            e.pr.set_value();
            remove(&e);
        }
    }
    // A waiter leaves early (timeout, abort): fail it, then let the ones it was blocking go.
    void fail_waiter(entry* e, std::exception_ptr ex) noexcept {
        e->pr.set_exception(std::move(ex));
        remove(e);
        wake_waiters();
    }
    void arm_timeout(entry* e, time_point timeout) {
        if (timeout == time_point::max()) {
            return;
        }
        e->tmr.set_callback([e] { e->sem->fail_waiter(e, timeout_exception()); });
        e->tmr.arm(timeout);
    }

public:
    /// A semaphore with `count` units available.
    explicit basic_semaphore(std::size_t count) noexcept : _count(ssize_t(count)) {}
    basic_semaphore(const basic_semaphore&) = delete;
    basic_semaphore& operator=(const basic_semaphore&) = delete;
    /// Remaining waiters fail with the broken() exception.
    ~basic_semaphore() {
        if (!_wait_list.empty()) {
            broken();
        }
    }

    /// Wait for `nr` units and take them. Ready at once (no allocation) if they are available and
    /// nobody waits before us. Fails with the broken exception if the semaphore is broken.
    future<> wait(std::size_t nr = 1) noexcept { return wait(time_point::max(), nr); }

    /// As wait(nr), but fails with ExceptionFactory::timeout() (semaphore_timed_out) if the units
    /// are not granted by `timeout`; the waiter then leaves the queue.
    future<> wait(time_point timeout, std::size_t nr = 1) noexcept {
        if (_ex) [[unlikely]] {
            return make_exception_future<>(_ex);
        }
        if (may_proceed(nr)) [[likely]] {
            _count -= ssize_t(nr);
            return make_ready_future<>();
        }
        try {
            auto e = std::make_unique<entry>(this, nr);
            arm_timeout(e.get(), timeout);
            return enqueue(std::move(e));
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
    }

    /// As wait(time_point, nr) with a timeout relative to now.
    future<> wait(duration timeout, std::size_t nr = 1) noexcept { return wait(deadline(timeout), nr); }

    /// As wait(nr), but fails if `as` is aborted before the units are granted: with the exception
    /// given to request_abort_ex(), or ExceptionFactory::aborted() (semaphore_aborted) for a plain
    /// request_abort(). Fails at once if `as` is already aborted. `as` must outlive the wait.
    future<> wait(abort_source& as, std::size_t nr = 1) noexcept {
        if (as.abort_requested()) {
            auto reason = as.reason();
            return make_exception_future<>(reason ? *reason : aborted_exception());
        }
        if (_ex) [[unlikely]] {
            return make_exception_future<>(_ex);
        }
        if (may_proceed(nr)) {
            _count -= ssize_t(nr);
            return make_ready_future<>();
        }
        try {
            auto e = std::make_unique<entry>(this, nr);
            e->sub = as.subscribe([e = e.get()](const abort_source::abort_reason& r) noexcept {
                e->sem->fail_waiter(e, r ? *r : aborted_exception());
            });
            return enqueue(std::move(e));
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
    }

    /// Take `nr` units now if they are available and nobody waits; returns whether it did.
    bool try_wait(std::size_t nr = 1) noexcept {
        if (may_proceed(nr)) {
            _count -= ssize_t(nr);
            return true;
        }
        return false;
    }

    /// Return `nr` units and serve waiters in order. Ignored on a broken semaphore.
    void signal(std::size_t nr = 1) noexcept {
        if (_ex) {
            return;
        }
        _count += ssize_t(nr);
        wake_waiters();
    }

    /// Take `nr` units without waiting, even if that drives the count negative (for work that
    /// must proceed but should still be accounted, e.g. memory already received). Waiters are
    /// not served until signals bring the count back up.
    void consume(std::size_t nr = 1) noexcept {
        if (_ex) {
            return;
        }
        _count -= ssize_t(nr);
    }

    /// Units available now; negative after consume() beyond the count.
    ssize_t available_units() const noexcept { return _count; }
    /// available_units(), or 0 if it is negative.
    std::size_t current() const noexcept { return _count > 0 ? std::size_t(_count) : 0; }
    /// Number of fibers waiting.
    std::size_t waiters() const noexcept { return _nr_waiters; }

    /// Fail all waiters and all later waits with ExceptionFactory::broken() (broken_semaphore).
    void broken() noexcept { broken(std::make_exception_ptr(ExceptionFactory::broken())); }
    template <typename Exception>
        requires(!std::is_same_v<std::decay_t<Exception>, std::exception_ptr>)
    void broken(const Exception& ex) noexcept {
        broken(std::make_exception_ptr(ex));
    }
    /// Fail all waiters and all later waits with `ex`.
    void broken(std::exception_ptr ex) noexcept {
        _ex = std::move(ex);
        _count = 0;
        while (!_wait_list.empty()) {
            entry& e = _wait_list.front();
            e.pr.set_exception(_ex);
            remove(&e);
        }
    }
    bool is_broken() const noexcept { return bool(_ex); }
};

using semaphore = basic_semaphore<semaphore_default_exception_factory>;

/// Units taken from a semaphore, returned to it when destroyed (RAII). Move-only. The semaphore
/// must outlive the units.
template <typename ExceptionFactory = semaphore_default_exception_factory, typename Clock = steady_clock_type>
class semaphore_units {
    using sem_type = basic_semaphore<ExceptionFactory, Clock>;
    sem_type* _sem = nullptr;
    std::size_t _n = 0;

public:
    semaphore_units() noexcept = default;
    /// Adopt `n` units already taken from `sem` (by wait/try_wait/consume).
    semaphore_units(sem_type& sem, std::size_t n) noexcept : _sem(&sem), _n(n) {}
    semaphore_units(semaphore_units&& x) noexcept : _sem(x._sem), _n(std::exchange(x._n, 0)) {}
    semaphore_units& operator=(semaphore_units&& x) noexcept {
        if (this != &x) {
            return_all();
            _sem = x._sem;
            _n = std::exchange(x._n, 0);
        }
        return *this;
    }
    semaphore_units(const semaphore_units&) = delete;
    semaphore_units& operator=(const semaphore_units&) = delete;
    ~semaphore_units() { return_all(); }

    /// Return `units` of the held units now; returns how many are still held. Throws
    /// std::invalid_argument (returning nothing) if more are asked than held.
    std::size_t return_units(std::size_t units) {
        if (units > _n) {
            throw std::invalid_argument("semaphore_units::return_units: returning more units than held");
        }
        _n -= units;
        if (units) {
            _sem->signal(units);
        }
        return _n;
    }
    /// Return everything held.
    void return_all() noexcept {
        if (_n) {
            _sem->signal(std::exchange(_n, 0));
        }
    }
    /// Stop managing the units without returning them; returns how many there were.
    std::size_t release() noexcept { return std::exchange(_n, 0); }
    /// Move `units` of the held units into a new semaphore_units object. Throws
    /// std::invalid_argument (changing nothing) if more are asked than held.
    semaphore_units split(std::size_t units) {
        if (units > _n) {
            throw std::invalid_argument("semaphore_units::split: splitting more units than held");
        }
        _n -= units;
        return semaphore_units(*_sem, units);
    }
    /// Take over other's units (which must come from the same semaphore; otherwise throws
    /// std::invalid_argument and changes nothing).
    void adopt(semaphore_units&& other) {
        if (other._n == 0) {
            return;
        }
        if (_n != 0 && other._sem != _sem) {
            throw std::invalid_argument("semaphore_units::adopt: units of another semaphore");
        }
        _sem = other._sem;
        _n += std::exchange(other._n, 0);
    }
    std::size_t count() const noexcept { return _n; }
    explicit operator bool() const noexcept { return _n != 0; }
};

/// Wait for `units` and return them as RAII semaphore_units. Fails as sem.wait(units) does.
template <typename EF, typename Clock>
future<semaphore_units<EF, Clock>> get_units(basic_semaphore<EF, Clock>& sem, std::size_t units) noexcept {
    return sem.wait(units).then([&sem, units] { return semaphore_units<EF, Clock>(sem, units); });
}
template <typename EF, typename Clock>
future<semaphore_units<EF, Clock>> get_units(basic_semaphore<EF, Clock>& sem, std::size_t units,
                                             typename Clock::time_point timeout) noexcept {
    return sem.wait(timeout, units).then([&sem, units] { return semaphore_units<EF, Clock>(sem, units); });
}
template <typename EF, typename Clock>
future<semaphore_units<EF, Clock>> get_units(basic_semaphore<EF, Clock>& sem, std::size_t units,
                                             typename Clock::duration timeout) noexcept {
    return sem.wait(timeout, units).then([&sem, units] { return semaphore_units<EF, Clock>(sem, units); });
}
template <typename EF, typename Clock>
future<semaphore_units<EF, Clock>> get_units(basic_semaphore<EF, Clock>& sem, std::size_t units,
                                             abort_source& as) noexcept {
    return sem.wait(as, units).then([&sem, units] { return semaphore_units<EF, Clock>(sem, units); });
}

/// Take `units` now if sem.try_wait(units) allows; nullopt otherwise.
template <typename EF, typename Clock>
std::optional<semaphore_units<EF, Clock>> try_get_units(basic_semaphore<EF, Clock>& sem, std::size_t units) noexcept {
    if (!sem.try_wait(units)) {
        return std::nullopt;
    }
    return semaphore_units<EF, Clock>(sem, units);
}

/// Take `units` at once with sem.consume(units) (the count may go negative).
template <typename EF, typename Clock>
semaphore_units<EF, Clock> consume_units(basic_semaphore<EF, Clock>& sem, std::size_t units) noexcept {
    sem.consume(units);
    return semaphore_units<EF, Clock>(sem, units);
}

namespace internal {

template <typename EF, typename Clock, typename Func>
futurize_t<std::invoke_result_t<Func&>> run_with_units(basic_semaphore<EF, Clock>& sem, std::size_t units,
                                                       future<> acquired, Func func) {
    co_await std::move(acquired);
    semaphore_units<EF, Clock> held(sem, units);
    co_return co_await futurize_invoke(func);
}

}  // namespace internal

/// Take `units` from sem, run func() (which may return a value or a future), and give the units
/// back when func's future resolves, whatever its outcome. If the wait fails (broken semaphore)
/// func is not called and the failure is returned. func is moved into the operation and lives
/// until its future resolves, so a coroutine lambda's captures stay valid.
template <typename EF, typename Clock, typename Func>
futurize_t<std::invoke_result_t<std::decay_t<Func>&>> with_semaphore(basic_semaphore<EF, Clock>& sem, std::size_t units,
                                                       Func&& func) {
    return internal::run_with_units(sem, units, sem.wait(units), std::forward<Func>(func));
}
/// As with_semaphore(sem, units, func), failing with the semaphore's timeout exception (and not
/// calling func) if the units are not granted by `timeout`.
template <typename EF, typename Clock, typename Func>
futurize_t<std::invoke_result_t<std::decay_t<Func>&>> with_semaphore(basic_semaphore<EF, Clock>& sem, std::size_t units,
                                                       typename Clock::time_point timeout, Func&& func) {
    return internal::run_with_units(sem, units, sem.wait(timeout, units), std::forward<Func>(func));
}
template <typename EF, typename Clock, typename Func>
futurize_t<std::invoke_result_t<std::decay_t<Func>&>> with_semaphore(basic_semaphore<EF, Clock>& sem, std::size_t units,
                                                       typename Clock::duration timeout, Func&& func) {
    return internal::run_with_units(sem, units, sem.wait(timeout, units), std::forward<Func>(func));
}

}  // namespace reef
