// Building blocks shared by the synchronization primitives (abort_source, semaphore,
// condition_variable, gate, shared_mutex). Internal: the API may change without notice.
//
// The primitives keep waiters in an intrusive doubly-linked list so that a waiter costs exactly
// one node (which also holds its promise, timer and abort subscription) and can unlink itself in
// O(1) when it times out or is aborted, without searching.
#pragma once

#include "runtime/coroutine.hh"
#include "runtime/future.hh"

#include <type_traits>
#include <utility>

namespace reef::internal {

template <typename T>
class intrusive_list;

/// The links of an intrusive_list node. An unlinked hook points at itself. Destroying a linked
/// hook unlinks it; moving a linked hook puts the new object in the old one's place in the list
/// (so a list's sentinel, which is a hook too, can be moved, and so can its nodes).
class list_hook {
    list_hook* _prev;
    list_hook* _next;

    template <typename T>
    friend class intrusive_list;

    void take_place_of(list_hook& x) noexcept {
        if (!x.linked()) {
            _prev = _next = this;
            return;
        }
        _prev = x._prev;
        _next = x._next;
        _prev->_next = this;
        _next->_prev = this;
        x._prev = x._next = &x;
    }
    void link_before(list_hook& pos) noexcept {
        _prev = pos._prev;
        _next = &pos;
        _prev->_next = this;
        pos._prev = this;
    }

public:
    list_hook() noexcept : _prev(this), _next(this) {}
    list_hook(list_hook&& x) noexcept { take_place_of(x); }
    list_hook& operator=(list_hook&& x) noexcept {
        if (this != &x) {
            unlink();
            take_place_of(x);
        }
        return *this;
    }
    list_hook(const list_hook&) = delete;
    list_hook& operator=(const list_hook&) = delete;
    ~list_hook() { unlink(); }

    bool linked() const noexcept { return _next != this; }
    void unlink() noexcept {
        _prev->_next = _next;
        _next->_prev = _prev;
        _prev = _next = this;
    }
};

/// A list of T objects (T derives from list_hook) that it does not own. No size is kept, because
/// nodes may unlink themselves; users that need a count keep it.
template <typename T>
class intrusive_list {
    list_hook _head;  // sentinel: _head._next is the front

    static T& node(list_hook* h) noexcept { return static_cast<T&>(*h); }

public:
    intrusive_list() noexcept = default;
    intrusive_list(intrusive_list&&) noexcept = default;
    intrusive_list& operator=(intrusive_list&& x) noexcept {
        clear();
        _head = std::move(x._head);
        return *this;
    }
    /// Unlinks (does not destroy) the remaining nodes.
    ~intrusive_list() { clear(); }

    bool empty() const noexcept { return !_head.linked(); }
    T& front() noexcept { return node(_head._next); }
    void push_back(T& x) noexcept { static_cast<list_hook&>(x).link_before(_head); }
    /// Unlinks the front node and returns it.
    T& pop_front() noexcept {
        T& x = front();
        static_cast<list_hook&>(x).unlink();
        return x;
    }
    void clear() noexcept {
        while (!empty()) {
            pop_front();
        }
    }
};

/// Calls func() and returns its outcome as a future. func and guard are moved into a coroutine
/// frame and destroyed only after func's future resolved (and before the returned future's
/// waiter runs): so `guard` (gate holder, semaphore units, lock) is held exactly as long as the
/// work, and a coroutine lambda's captures stay alive while it runs. Costs one frame allocation
/// from the task pool.
template <typename Guard, typename Func>
futurize_t<std::invoke_result_t<Func&>> invoke_holding([[maybe_unused]] Guard guard, Func func) {
    co_return co_await futurize_invoke(func);
}

}  // namespace reef::internal
