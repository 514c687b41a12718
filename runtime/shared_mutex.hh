// shared_mutex: a reader-writer lock for fibers on one shard. Any number of shared (reader)
// holders, or one exclusive (writer) holder.
//
// Contract:
//  - Single-shard, no atomics. Waiters are woken by scheduling their continuation, never inline.
//  - Fair, first-in first-out: a request waits if anyone waits before it, so a writer waiting
//    behind readers is not starved by readers arriving after it (they queue behind the writer).
//    When the lock frees up, the head of the queue gets it: a writer alone, or the run of
//    consecutive readers at the head, together.
//  - The lock is granted to a waiter when it is woken (not when it runs), so nobody can slip in
//    between. The fast path (lock free, nobody waiting) returns a ready future and allocates
//    nothing; waiters live in a ring buffer (no allocation per waiter once it has grown).
//  - Unlocking what is not locked is misuse. Destroying a shared_mutex with waiters gives them
//    broken_promise.
#pragma once

#include "runtime/circular_buffer.hh"
#include "runtime/coroutine.hh"
#include "runtime/future.hh"
#include "runtime/misuse.hh"
#include "runtime/sync_internal.hh"

#include <cstddef>
#include <type_traits>
#include <utility>

namespace reef {

class shared_mutex {
    struct waiter {
        promise<> pr;
        bool exclusive;
    };

    std::size_t _readers = 0;
    bool _writer = false;
    circular_buffer<waiter> _waiters;

    void wake() noexcept {
        while (!_waiters.empty()) {
            waiter& w = _waiters.front();
            if (w.exclusive) {
                if (_readers || _writer) {
                    break;
                }
                _writer = true;
                w.pr.set_value();
                _waiters.pop_front();
                break;
            }
            if (_writer) {
                break;
            }
            ++_readers;
            w.pr.set_value();
            _waiters.pop_front();
        }
    }
    future<> enqueue(bool exclusive) noexcept {
        try {
            return _waiters.emplace_back(waiter{promise<>(), exclusive}).pr.get_future();
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
    }

public:
    shared_mutex() noexcept = default;
    shared_mutex(const shared_mutex&) = delete;
    shared_mutex& operator=(const shared_mutex&) = delete;

    /// Take the lock exclusively: resolves when no reader or writer holds it and every earlier
    /// request was served.
    future<> lock() noexcept {
        if (try_lock()) {
            return make_ready_future<>();
        }
        return enqueue(true);
    }
    /// Take the exclusive lock now if it is free and nobody waits; returns whether it did.
    bool try_lock() noexcept {
        if (_readers || _writer || !_waiters.empty()) {
            return false;
        }
        _writer = true;
        return true;
    }
    /// Release the exclusive lock and serve the queue.
    void unlock() {
        if (!_writer) {
            report_misuse("shared_mutex::unlock() without the exclusive lock held");
        }
        _writer = false;
        wake();
    }

    /// Take the lock shared: resolves when no writer holds it and every earlier request was
    /// served.
    future<> lock_shared() noexcept {
        if (try_lock_shared()) {
            return make_ready_future<>();
        }
        return enqueue(false);
    }
    /// Take the shared lock now if no writer holds it and nobody waits; returns whether it did.
    bool try_lock_shared() noexcept {
        if (_writer || !_waiters.empty()) {
            return false;
        }
        ++_readers;
        return true;
    }
    /// Release one shared hold; the last reader out serves the queue.
    void unlock_shared() {
        if (_readers == 0) {
            report_misuse("shared_mutex::unlock_shared() without a shared lock held");
        }
        if (--_readers == 0) {
            wake();
        }
    }

    /// Is the exclusive lock held?
    bool locked() const noexcept { return _writer; }
    /// Number of shared holders.
    std::size_t shared_holders() const noexcept { return _readers; }
    /// Number of requests waiting.
    std::size_t waiters() const noexcept { return _waiters.size(); }
};

namespace internal {

struct exclusive_unlocker {
    shared_mutex* m;
    explicit exclusive_unlocker(shared_mutex& sm) noexcept : m(&sm) {}
    exclusive_unlocker(exclusive_unlocker&& x) noexcept : m(std::exchange(x.m, nullptr)) {}
    ~exclusive_unlocker() {
        if (m) {
            m->unlock();
        }
    }
};

struct shared_unlocker {
    shared_mutex* m;
    explicit shared_unlocker(shared_mutex& sm) noexcept : m(&sm) {}
    shared_unlocker(shared_unlocker&& x) noexcept : m(std::exchange(x.m, nullptr)) {}
    ~shared_unlocker() {
        if (m) {
            m->unlock_shared();
        }
    }
};

template <typename Func>
futurize_t<std::invoke_result_t<Func&>> run_locked(shared_mutex& sm, Func func) {
    co_await sm.lock();
    exclusive_unlocker held(sm);
    co_return co_await futurize_invoke(func);
}

template <typename Func>
futurize_t<std::invoke_result_t<Func&>> run_shared(shared_mutex& sm, Func func) {
    co_await sm.lock_shared();
    shared_unlocker held(sm);
    co_return co_await futurize_invoke(func);
}

}  // namespace internal

/// Take sm exclusively, run func() (returning a value or a future) and unlock when func's future
/// resolves, whatever its outcome (exceptions included). func is moved into the operation and
/// lives until its future resolves, so a coroutine lambda's captures stay valid. One task-pool
/// allocation (a coroutine frame).
template <typename Func>
futurize_t<std::invoke_result_t<std::decay_t<Func>&>> with_lock(shared_mutex& sm, Func&& func) {
    return internal::run_locked(sm, std::decay_t<Func>(std::forward<Func>(func)));
}

/// As with_lock, holding sm shared.
template <typename Func>
futurize_t<std::invoke_result_t<std::decay_t<Func>&>> with_shared(shared_mutex& sm, Func&& func) {
    return internal::run_shared(sm, std::decay_t<Func>(std::forward<Func>(func)));
}

}  // namespace reef
