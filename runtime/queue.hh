// queue<T>: a bounded FIFO between producer and consumer fibers on one shard, with back-pressure
// both ways: consumers wait for items (pop_eventually), producers wait for room (push_eventually).
//
// Contract:
//  - Single-shard, no atomics. Waiters are woken by scheduling their continuation, never inline.
//  - Fair: items come out in push order; waiting consumers get items in the order they started
//    waiting (an item pushed while a consumer waits is handed to it directly), and waiting
//    producers' items enter the queue in the order they started waiting (push() does not overtake
//    them).
//  - No allocation per item or waiter once the internal ring buffers have grown to the working
//    size; T must be nothrow move-constructible (as future<T> requires).
//  - abort(ex) drops the queued items, fails every waiter with ex, and makes every later call
//    (push, pop, front, push_eventually, pop_eventually, not_empty, not_full) fail with ex.
#pragma once

#include "runtime/circular_buffer.hh"
#include "runtime/future.hh"
#include "runtime/misuse.hh"

#include <cstddef>
#include <exception>
#include <type_traits>
#include <utility>

namespace reef {

template <typename T>
class queue {
    static_assert(std::is_nothrow_move_constructible_v<T>, "queue<T> requires T to be nothrow move-constructible");

    struct pending_push {
        T item;
        promise<> pr;
    };

    circular_buffer<T> _q;
    std::size_t _max;
    std::exception_ptr _ex;                         // set by abort()
    circular_buffer<promise<T>> _pop_waiters;        // only while the queue is empty
    circular_buffer<pending_push> _push_waiters;     // only while the queue is full
    circular_buffer<promise<>> _not_empty_waiters;
    circular_buffer<promise<>> _not_full_waiters;

    void check_aborted() const {
        if (_ex) [[unlikely]] {
            std::rethrow_exception(_ex);
        }
    }
    static void resolve_all(circular_buffer<promise<>>& waiters) noexcept {
        while (!waiters.empty()) {
            waiters.front().set_value();
            waiters.pop_front();
        }
    }
    // An item enters: a waiting consumer takes it directly, otherwise it is queued.
    void deliver(T&& item) noexcept {
        if (!_pop_waiters.empty()) {
            _pop_waiters.front().set_value(std::move(item));
            _pop_waiters.pop_front();
            return;
        }
        _q.emplace_back(std::move(item));
        resolve_all(_not_empty_waiters);
    }
    // Room appeared: admit waiting producers' items in order, then tell not_full() waiters.
    void on_room() noexcept {
        while (!_push_waiters.empty() && _q.size() < _max) {
            auto& p = _push_waiters.front();
            p.pr.set_value();
            deliver(std::move(p.item));
            _push_waiters.pop_front();
        }
        if (_q.size() < _max) {
            resolve_all(_not_full_waiters);
        }
    }

public:
    /// A queue holding at most `max_size` items. With 0, push() always fails and every item goes
    /// through a waiting consumer (a rendezvous).
    explicit queue(std::size_t max_size) : _max(max_size) {}
    queue(const queue&) = delete;
    queue& operator=(const queue&) = delete;
    /// Waiters left behind fail with broken_promise.
    ~queue() = default;

    /// Append `item` if there is room and no producer is waiting before us; otherwise return false
    /// and leave `item` untouched. Wakes a waiting consumer. Throws the abort exception if aborted.
    bool push(T&& item) {
        check_aborted();
        // Waiting producers exist only while the queue is full (room admits them at once), so
        // the size check also keeps push() from overtaking them. A waiting consumer implies an
        // empty queue; only a zero-size queue can be full with one.
        if (_q.size() >= _max && _pop_waiters.empty()) {
            return false;
        }
        deliver(std::move(item));
        return true;
    }

    /// Remove and return the oldest item. The queue must not be empty (misuse otherwise). Admits
    /// a waiting producer's item. Throws the abort exception if aborted.
    T pop() {
        check_aborted();
        if (_q.empty()) {
            report_misuse("queue::pop() on an empty queue (use pop_eventually() or check empty())");
        }
        T item(std::move(_q.front()));
        _q.pop_front();
        on_room();
        return item;
    }

    /// The oldest item. The queue must not be empty (misuse otherwise).
    T& front() {
        check_aborted();
        if (_q.empty()) {
            report_misuse("queue::front() on an empty queue");
        }
        return _q.front();
    }

    /// Pop an item, waiting for one if the queue is empty. Consumers are served in order. Fails
    /// with the abort exception if the queue is (or gets) aborted.
    future<T> pop_eventually() noexcept {
        if (_ex) [[unlikely]] {
            return make_exception_future<T>(_ex);
        }
        if (!_q.empty()) {
            T item(std::move(_q.front()));
            _q.pop_front();
            on_room();
            return make_ready_future<T>(std::move(item));
        }
        if (!_push_waiters.empty()) {
            // Zero-size queue: take the oldest producer's item directly.
            auto& p = _push_waiters.front();
            p.pr.set_value();
            auto f = make_ready_future<T>(std::move(p.item));
            _push_waiters.pop_front();
            return f;
        }
        try {
            return _pop_waiters.emplace_back().get_future();
        } catch (...) {
            return make_exception_future<T>(std::current_exception());
        }
    }

    /// Push `item`, waiting for room if the queue is full. The future resolves when the item has
    /// entered the queue (or reached a consumer); producers are admitted in order. If the queue is
    /// (or gets) aborted the future fails with the abort exception and the item is dropped.
    future<> push_eventually(T&& item) noexcept {
        if (_ex) [[unlikely]] {
            return make_exception_future<>(_ex);
        }
        if (push(std::move(item))) {
            return make_ready_future<>();
        }
        try {
            auto& p = _push_waiters.emplace_back(pending_push{std::move(item), promise<>()});
            return p.pr.get_future();
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
    }

    /// Resolves when the queue holds an item (at once if it does). Every not_empty() waiter is
    /// woken by the next item queued, so with several consumers the item may be gone by the time
    /// a waiter runs. An item handed directly to a pop_eventually() waiter does not wake them.
    future<> not_empty() noexcept {
        if (_ex) [[unlikely]] {
            return make_exception_future<>(_ex);
        }
        if (!_q.empty()) {
            return make_ready_future<>();
        }
        try {
            return _not_empty_waiters.emplace_back().get_future();
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
    }

    /// Resolves when the queue has room (at once if it has). Every not_full() waiter is woken when
    /// room appears after waiting producers were admitted; the room may be gone when it runs.
    future<> not_full() noexcept {
        if (_ex) [[unlikely]] {
            return make_exception_future<>(_ex);
        }
        if (_q.size() < _max) {
            return make_ready_future<>();
        }
        try {
            return _not_full_waiters.emplace_back().get_future();
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
    }

    /// Drop all items, fail all waiters and every later operation with `ex`. Calling it again
    /// replaces the exception for later operations.
    void abort(std::exception_ptr ex) noexcept {
        _ex = ex;
        _q.clear();
        while (!_pop_waiters.empty()) {
            _pop_waiters.front().set_exception(ex);
            _pop_waiters.pop_front();
        }
        while (!_push_waiters.empty()) {
            _push_waiters.front().pr.set_exception(ex);
            _push_waiters.pop_front();
        }
        for (auto* w : {&_not_empty_waiters, &_not_full_waiters}) {
            while (!w->empty()) {
                w->front().set_exception(ex);
                w->pop_front();
            }
        }
    }

    bool empty() const noexcept { return _q.empty(); }
    bool full() const noexcept { return _q.size() >= _max; }
    std::size_t size() const noexcept { return _q.size(); }
    std::size_t max_size() const noexcept { return _max; }
    /// Change the capacity. Growing it admits waiting producers; shrinking it keeps the items
    /// already queued (the queue stays full until enough are popped).
    void set_max_size(std::size_t max) noexcept {
        _max = max;
        if (!_ex) {
            on_room();
        }
    }
    /// Is a consumer waiting in pop_eventually()?
    bool has_blocked_consumer() const noexcept { return !_pop_waiters.empty(); }
    /// Is a producer waiting in push_eventually()?
    bool has_blocked_producer() const noexcept { return !_push_waiters.empty(); }
};

}  // namespace reef
