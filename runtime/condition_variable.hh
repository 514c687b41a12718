// condition_variable: fibers wait until another fiber signals that some state changed.
//
// Contract:
//  - Single-shard, no atomics, no mutex: on one shard nothing runs between checking a condition
//    and calling wait(), so there is no lost-wakeup race as long as the check and the wait() call
//    happen in the same task (wait(pred) does exactly that).
//  - signal() wakes the longest-waiting fiber, broadcast() wakes all fibers waiting at the time of
//    the call. A signal with nobody waiting is not remembered.
//  - Waking schedules the waiter's continuation (it does not run inside signal()).
//  - A waiter costs one node from the task pool (promise and optional timer); the predicate forms
//    add one coroutine frame when they have to wait. wait() returns a future, so it can be
//    co_awaited from coroutines, chained with then() or get() in a reef::thread.
//  - broken() fails all waiters and all later waits with broken_condition_variable (or the given
//    exception). Destroying a condition_variable with waiters breaks them.
#pragma once

#include "runtime/clocks.hh"
#include "runtime/coroutine.hh"
#include "runtime/future.hh"
#include "runtime/sync_internal.hh"
#include "runtime/task_alloc.hh"
#include "runtime/timer.hh"

#include <concepts>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>

namespace reef {

/// A timed wait on a condition_variable expired before a signal (or before the predicate held).
class condition_variable_timed_out : public std::exception {
public:
    const char* what() const noexcept override { return "condition variable timed out"; }
};

/// A wait on a condition_variable that was broken().
class broken_condition_variable : public std::exception {
public:
    const char* what() const noexcept override { return "condition variable broken"; }
};

class condition_variable {
public:
    using clock = steady_clock_type;
    using duration = clock::duration;
    using time_point = clock::time_point;

private:
    struct waiter : internal::list_hook, internal::task_pool_allocated {
        condition_variable* cv;
        promise<> pr;
        timer<clock> tmr;

        explicit waiter(condition_variable* c) noexcept : cv(c) {}
    };

    internal::intrusive_list<waiter> _waiters;
    std::exception_ptr _ex;  // set by broken()

    // now + d, saturating so that a huge d means "no timeout" rather than overflow.
    static time_point deadline(duration d) noexcept {
        auto now = clock::now();
        return d >= time_point::max() - now ? time_point::max() : now + d;
    }
    void remove(waiter* w) noexcept {
        w->unlink();
        delete w;
    }
    void wake(waiter& w) noexcept {
        w.pr.set_value();
        remove(&w);
    }

    // Called once pred() was found false.
    template <typename Pred>
    future<> wait_for_pred(time_point timeout, Pred pred) {
        do {
            co_await wait(timeout);
        } while (!pred());
    }

public:
    condition_variable() noexcept = default;
    condition_variable(const condition_variable&) = delete;
    condition_variable& operator=(const condition_variable&) = delete;
    ~condition_variable() {
        if (!_waiters.empty()) {
            broken();
        }
    }

    /// Wait for the next signal() or broadcast(). Fails with the broken exception if broken.
    future<> wait() noexcept { return wait(time_point::max()); }

    /// Wait for a signal until `timeout`; fails with condition_variable_timed_out if none came.
    future<> wait(time_point timeout) noexcept {
        if (_ex) [[unlikely]] {
            return make_exception_future<>(_ex);
        }
        try {
            auto w = std::make_unique<waiter>(this);
            if (timeout != time_point::max()) {
                w->tmr.set_callback([w = w.get()] {
                    w->pr.set_exception(std::make_exception_ptr(condition_variable_timed_out()));
                    w->cv->remove(w);
                });
                w->tmr.arm(timeout);
            }
            // Link only once nothing can throw any more.
            auto f = w->pr.get_future();
            _waiters.push_back(*w.release());
            return f;
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
    }
    /// As wait(time_point), relative to now.
    future<> wait(duration timeout) noexcept { return wait(deadline(timeout)); }

    /// Resolve once pred() is true: pred is checked now (ready future, no allocation, if it holds)
    /// and again after each wakeup of this waiter. pred's exception fails the future. pred is
    /// moved into the wait and lives until it resolves.
    template <typename Pred>
        requires std::predicate<Pred&>
    future<> wait(Pred&& pred) noexcept {
        return wait(time_point::max(), std::forward<Pred>(pred));
    }
    /// As wait(pred), failing with condition_variable_timed_out if pred is still false at
    /// `timeout` (a wakeup that finds pred false waits again, for the remaining time only).
    template <typename Pred>
        requires std::predicate<Pred&>
    future<> wait(time_point timeout, Pred&& pred) noexcept {
        try {
            if (pred()) {
                return make_ready_future<>();
            }
            return wait_for_pred(timeout, std::decay_t<Pred>(std::forward<Pred>(pred)));
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
    }
    template <typename Pred>
        requires std::predicate<Pred&>
    future<> wait(duration timeout, Pred&& pred) noexcept {
        return wait(deadline(timeout), std::forward<Pred>(pred));
    }

    /// Wake the longest-waiting fiber, if any.
    void signal() noexcept {
        if (!_waiters.empty()) {
            wake(_waiters.front());
        }
    }
    /// Wake every fiber waiting now (fibers that start waiting as a result are not woken).
    void broadcast() noexcept {
        // Detach the current waiters first so the loop ends even if wakeups were to add waiters.
        internal::intrusive_list<waiter> woken(std::move(_waiters));
        while (!woken.empty()) {
            wake(woken.front());
        }
    }

    /// Fail all waiters and all later waits with broken_condition_variable.
    void broken() noexcept { broken(std::make_exception_ptr(broken_condition_variable())); }
    /// Fail all waiters and all later waits with `ex`.
    void broken(std::exception_ptr ex) noexcept {
        _ex = std::move(ex);
        while (!_waiters.empty()) {
            waiter& w = _waiters.front();
            w.pr.set_exception(_ex);
            remove(&w);
        }
    }

    bool has_waiters() const noexcept { return !_waiters.empty(); }
};

}  // namespace reef
