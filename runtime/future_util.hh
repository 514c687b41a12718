// Composing futures: object lifetimes (do_with), loops (repeat, do_until, keep_doing), fan-out
// (parallel_for_each, max_concurrent_for_each, map_reduce), joins (when_all, when_all_succeed),
// and time (with_timeout, sleep).
//
// Contract, for everything here:
//  - Single-shard: call these on a reactor thread; the returned future resolves on the same shard.
//    (A utility that finds everything ready does not touch the reactor, and only the looping ones
//    and the time ones need one to make progress.)
//  - Never throws: a failure (an exception thrown by a callback, a failed future, bad_alloc) comes
//    out as an exceptional returned future.
//  - When everything involved is already ready, nothing is allocated, except by do_with (always
//    allocates its objects), by range versions given an rvalue container (kept alive in a
//    do_with), and by the iterator/range when_all and when_all_succeed (they build a vector).
//    Otherwise waiting costs one allocation for the operation's state (plus the vector of pending
//    futures for parallel_for_each and map_reduce, and one small worker per concurrent element for
//    max_concurrent_for_each); the state hooks itself directly on the futures it waits for, with
//    no then() continuation per future.
//  - Callbacks are called as lvalues and may be moved into that state once the operation has to
//    wait. A callback's coroutine lambda therefore must not use its captures after its first
//    suspension (do_with excepted: it keeps its function alive): wrap it in coroutine::lambda
//    (see coroutine.hh), or pass state as parameters.
//  - Loops (repeat, do_until, keep_doing, max_concurrent_for_each) run ready iterations in a plain
//    loop, without growing the stack, and yield to the reactor when need_preempt() is set.
#pragma once

#include "runtime/clocks.hh"
#include "runtime/future.hh"
#include "runtime/task.hh"
#include "runtime/task_alloc.hh"
#include "runtime/timer.hh"

#include <chrono>
#include <cstddef>
#include <exception>
#include <iterator>
#include <ranges>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace reef {

/// What the action of repeat() returns: run again (no) or stop (yes).
enum class stop_iteration : bool { no = false, yes = true };

/// The exception with_timeout() fails with when the deadline passes before the future resolves.
class timed_out_error : public std::exception {
public:
    const char* what() const noexcept override { return "timed out"; }
};

namespace internal {

// Keep the first exception seen in `ex`; consume f without reporting anything else it holds.
template <typename T>
void absorb_ready(std::exception_ptr& ex, future<T>& f) noexcept {
    if (f.failed() && !ex) {
        ex = f.get_exception();
    } else {
        f.ignore_ready_future();
    }
}

inline void keep_first(std::exception_ptr& ex, std::exception_ptr e) noexcept {
    if (!ex) {
        ex = std::move(e);
    }
}

template <typename Clock>
inline constexpr bool is_reactor_clock_v =
    std::is_same_v<Clock, steady_clock_type> || std::is_same_v<Clock, lowres_clock>;

}  // namespace internal

// ------------------------------------------------------------------------------------------------
// do_with

namespace internal {

// The one allocation of a do_with(): the objects, the function (kept alive so that a coroutine
// lambda's captures stay valid), and the task that runs when the function's future resolves.
template <typename Result, typename Func, typename... T>
class do_with_state final : public task, public task_pool_allocated {
public:
    std::tuple<T...> _objects;
    Func _func;
    Result _f;
    typename Result::promise_type _pr;

    template <typename F, typename... A>
    explicit do_with_state(F&& f, A&&... a) : _objects(std::forward<A>(a)...), _func(std::forward<F>(f)) {}

    void run_and_dispose() noexcept override {
        // The result goes to the waiter (scheduled, not run) before the objects are destroyed.
        _f.forward_to(std::move(_pr));
        delete this;
    }
};

template <typename Tuple, std::size_t... I>
auto do_with_impl(Tuple&& args, std::index_sequence<I...>) noexcept {
    constexpr std::size_t last = sizeof...(I);
    using Func = std::decay_t<std::tuple_element_t<last, std::remove_reference_t<Tuple>>>;
    using Result = futurize_t<std::invoke_result_t<Func&, std::decay_t<std::tuple_element_t<I, std::remove_reference_t<Tuple>>>&...>>;
    using State = do_with_state<Result, Func, std::decay_t<std::tuple_element_t<I, std::remove_reference_t<Tuple>>>...>;
    State* s;
    try {
        s = new State(std::get<last>(std::move(args)), std::get<I>(std::move(args))...);
    } catch (...) {
        return make_exception_future<typename Result::value_type>(std::current_exception());
    }
    Result f = std::apply([s](auto&... objs) { return futurize_invoke(s->_func, objs...); }, s->_objects);
    if (f.available()) {
        delete s;
        return f;
    }
    s->_f = std::move(f);
    Result ret = s->_pr.get_future();
    s->_f.set_coroutine(*s);
    return ret;
}

}  // namespace internal

/// do_with(obj1, obj2, ..., func): move (or copy, for lvalues) the objects into storage that
/// lives until the future returned by func(obj1&, obj2&, ...) resolves, call func, and return its
/// outcome. func itself is kept alive just as long. The objects are destroyed after the result is
/// handed to the returned future and before that future's waiter runs. Always allocates once
/// (the objects must have a stable address). An exception from copying/moving the objects or
/// from func becomes an exceptional future (func is then not called / its objects destroyed).
template <typename... A>
    requires(sizeof...(A) >= 2)
auto do_with(A&&... args) noexcept {
    return internal::do_with_impl(std::forward_as_tuple(std::forward<A>(args)...),
                                  std::make_index_sequence<sizeof...(A) - 1>());
}

// ------------------------------------------------------------------------------------------------
// repeat, do_until, keep_doing

namespace internal {

template <typename Action>
class repeater final : public task, public task_pool_allocated {
    Action _action;
    future<stop_iteration> _f;
    promise<> _pr;

public:
    template <typename A>
    repeater(A&& action, future<stop_iteration>&& f) : _action(std::forward<A>(action)), _f(std::move(f)) {}

    future<> start() noexcept {
        auto ret = _pr.get_future();
        _f.set_coroutine(*this);
        return ret;
    }
    void run_and_dispose() noexcept override {
        for (;;) {
            if (_f.failed()) {
                _pr.set_exception(_f.get_exception());
                break;
            }
            if (_f.get() == stop_iteration::yes) {
                _pr.set_value();
                break;
            }
            _f = futurize_invoke(_action);
            if (!_f.available() || need_preempt()) {
                _f.set_coroutine(*this);
                return;
            }
        }
        delete this;
    }
};

template <typename StopCond, typename Action>
class do_until_state final : public task, public task_pool_allocated {
    StopCond _stop;
    Action _action;
    future<> _f;
    promise<> _pr;

public:
    template <typename S, typename A>
    do_until_state(S&& stop, A&& action, future<>&& f)
        : _stop(std::forward<S>(stop)), _action(std::forward<A>(action)), _f(std::move(f)) {}

    future<> start() noexcept {
        auto ret = _pr.get_future();
        _f.set_coroutine(*this);
        return ret;
    }
    void run_and_dispose() noexcept override {
        for (;;) {
            if (_f.failed()) {
                _pr.set_exception(_f.get_exception());
                break;
            }
            _f.ignore_ready_future();
            bool stop;
            try {
                stop = bool(std::invoke(_stop));
            } catch (...) {
                _pr.set_exception(std::current_exception());
                break;
            }
            if (stop) {
                _pr.set_value();
                break;
            }
            _f = futurize_invoke(_action);
            if (!_f.available() || need_preempt()) {
                _f.set_coroutine(*this);
                return;
            }
        }
        delete this;
    }
};

}  // namespace internal

/// Call action() (returning stop_iteration or future<stop_iteration>) again and again until it
/// yields stop_iteration::yes; the returned future then resolves. If action throws or its future
/// fails, the loop stops and the returned future carries that exception. Ready iterations run in a
/// loop (no stack growth, no allocation); when an iteration is not ready, or need_preempt() is set,
/// the action is moved into one task-pool allocated object that continues the loop from the
/// reactor.
template <typename Action>
future<> repeat(Action&& action) noexcept {
    using A = std::decay_t<Action>;
    static_assert(std::is_same_v<futurize_t<std::invoke_result_t<A&>>, future<stop_iteration>>,
                  "repeat(): the action must return stop_iteration or future<stop_iteration>");
    for (;;) {
        future<stop_iteration> f = futurize_invoke(action);
        if (!f.available() || need_preempt()) [[unlikely]] {
            try {
                return (new internal::repeater<A>(std::forward<Action>(action), std::move(f)))->start();
            } catch (...) {
                return make_exception_future<>(std::current_exception());
            }
        }
        if (f.failed()) {
            return make_exception_future<>(f.get_exception());
        }
        if (f.get() == stop_iteration::yes) {
            return make_ready_future<>();
        }
    }
}

/// Check stop_cond() (returning something convertible to bool) and, while it is false, call
/// action() (returning void or future<>) and wait for it. The condition is checked before the
/// first call too, so the action may run zero times. An exception from stop_cond or action (or a
/// failed action future) stops the loop and fails the returned future. Same looping and
/// preemption behaviour as repeat().
template <typename StopCond, typename Action>
future<> do_until(StopCond&& stop_cond, Action&& action) noexcept {
    using S = std::decay_t<StopCond>;
    using A = std::decay_t<Action>;
    static_assert(std::is_same_v<futurize_t<std::invoke_result_t<A&>>, future<>>,
                  "do_until(): the action must return void or future<>");
    for (;;) {
        try {
            if (std::invoke(stop_cond)) {
                return make_ready_future<>();
            }
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
        future<> f = futurize_invoke(action);
        if (!f.available() || need_preempt()) [[unlikely]] {
            try {
                auto* s = new internal::do_until_state<S, A>(std::forward<StopCond>(stop_cond),
                                                             std::forward<Action>(action), std::move(f));
                return s->start();
            } catch (...) {
                return make_exception_future<>(std::current_exception());
            }
        }
        if (f.failed()) {
            return f;
        }
        f.ignore_ready_future();
    }
}

/// Call action() (returning void or future<>) for ever, each call after the previous one's future
/// resolved. The returned future resolves only with the first exception (thrown or failed
/// future). Same looping and preemption behaviour as repeat().
template <typename Action>
future<> keep_doing(Action&& action) noexcept {
    return do_until([] { return false; }, std::forward<Action>(action));
}

// ------------------------------------------------------------------------------------------------
// parallel_for_each, max_concurrent_for_each, map_reduce

namespace internal {

// Waits, in order, for the futures that were not ready when parallel_for_each started them.
class parallel_for_each_state final : public task, public task_pool_allocated {
    std::vector<future<>> _pending;
    std::size_t _next = 0;
    std::exception_ptr _ex;
    promise<> _pr;

    void wait_next() noexcept {
        while (_next < _pending.size()) {
            auto& f = _pending[_next];
            if (!f.available()) {
                f.set_coroutine(*this);
                return;
            }
            absorb_ready(_ex, f);
            ++_next;
        }
        if (_ex) {
            _pr.set_exception(std::move(_ex));
        } else {
            _pr.set_value();
        }
        delete this;
    }

public:
    void add(future<>&& f) { _pending.push_back(std::move(f)); }
    /// Starts waiting; may complete (and delete this) before returning.
    future<> start(std::exception_ptr ex) noexcept {
        keep_first(_ex, std::move(ex));
        auto ret = _pr.get_future();
        wait_next();
        return ret;
    }
    void run_and_dispose() noexcept override { wait_next(); }
};

// Keeps a non-borrowed rvalue range alive for as long as the operation runs. Ranges whose
// iterators do not dangle when the range object dies (lvalues, views like iota) are used as is.
template <typename Range, typename Impl>
auto with_range(Range&& range, Impl&& impl) noexcept {
    if constexpr (std::ranges::borrowed_range<Range>) {
        return impl(std::ranges::begin(range), std::ranges::end(range));
    } else {
        return do_with(std::forward<Range>(range),
                       [impl = std::forward<Impl>(impl)](std::remove_cvref_t<Range>& r) mutable {
                           return impl(std::ranges::begin(r), std::ranges::end(r));
                       });
    }
}

}  // namespace internal

/// Call func(*it) for every element of [begin, end), all of them now (func is not called after
/// parallel_for_each returns), and return a future that resolves when every returned future
/// (func returns void or future<>) has resolved. If any call throws or fails, the returned
/// future fails with one of those exceptions (the first one observed), but only after all the
/// others completed; the other exceptions are dropped silently. Elements are passed by reference:
/// they must outlive the returned future if func's work uses them. If the iterator itself throws,
/// no more calls are made and the exception is reported after the started ones complete.
template <typename Iterator, typename Sentinel, typename Func>
    requires std::input_iterator<Iterator> && std::sentinel_for<Sentinel, Iterator>
future<> parallel_for_each(Iterator begin, Sentinel end, Func&& func) noexcept {
    static_assert(std::is_same_v<futurize_t<std::invoke_result_t<Func&, std::iter_reference_t<Iterator>>>, future<>>,
                  "parallel_for_each(): func must return void or future<>");
    internal::parallel_for_each_state* s = nullptr;
    std::exception_ptr ex;
    try {
        for (; begin != end; ++begin) {
            future<> f = futurize_invoke(func, *begin);
            if (f.available()) {
                internal::absorb_ready(ex, f);
                continue;
            }
            if (!s) {
                s = new internal::parallel_for_each_state();
            }
            s->add(std::move(f));
        }
    } catch (...) {
        internal::keep_first(ex, std::current_exception());
    }
    if (s) {
        return s->start(std::move(ex));
    }
    if (ex) {
        return make_exception_future<>(std::move(ex));
    }
    return make_ready_future<>();
}

/// parallel_for_each over a range. An rvalue container (not a view) is kept alive until the
/// returned future resolves (one allocation); lvalue ranges must outlive it.
template <std::ranges::input_range Range, typename Func>
future<> parallel_for_each(Range&& range, Func&& func) noexcept {
    return internal::with_range(std::forward<Range>(range), [func = std::forward<Func>(func)](auto b, auto e) mutable {
        return parallel_for_each(std::move(b), std::move(e), func);
    });
}

namespace internal {

template <typename Iterator, typename Sentinel, typename Func>
class max_concurrent_state {
    Iterator _it;
    Sentinel _end;
    Func _func;
    std::size_t _max;
    std::size_t _workers = 0;  // each waits for one element's future
    bool _launching = false;   // start() is still adding workers
    bool _iter_failed = false; // the iterator threw: no more elements
    std::exception_ptr _ex;
    promise<> _pr;

    class worker final : public task, public task_pool_allocated {
        max_concurrent_state* _s;
        future<> _f;

    public:
        worker(max_concurrent_state* s, future<>&& f) noexcept : _s(s), _f(std::move(f)) {}
        void hook() noexcept { _f.set_coroutine(*this); }
        void run_and_dispose() noexcept override {
            absorb_ready(_s->_ex, _f);
            if (_s->pull(_f)) {
                _f.set_coroutine(*this);
                return;
            }
            auto* s = _s;
            delete this;
            s->worker_done();
        }
    };

    // Start elements until one is not ready (it is left in f: true) or there are no more (false).
    bool pull(future<>& f) noexcept {
        try {
            while (!_iter_failed && _it != _end) {
                f = futurize_invoke(_func, *_it);
                ++_it;
                if (!f.available() || need_preempt()) {
                    return true;
                }
                absorb_ready(_ex, f);
            }
        } catch (...) {
            keep_first(_ex, std::current_exception());
            _iter_failed = true;
            // If the element's call went out before ++ threw, it is still running: wait for it.
            if (f.valid()) {
                return true;
            }
        }
        return false;
    }
    void spawn(future<>&& f) noexcept {
        try {
            auto* w = new worker(this, std::move(f));
            ++_workers;
            w->hook();
        } catch (...) {
            // Out of memory: the element's work goes on unobserved; report the failure.
            keep_first(_ex, std::current_exception());
        }
    }
    void worker_done() noexcept {
        if (--_workers == 0 && !_launching) {
            finish();
        }
    }
    void finish() noexcept {
        if (_ex) {
            _pr.set_exception(std::move(_ex));
        } else {
            _pr.set_value();
        }
        delete this;
    }

public:
    template <typename F>
    max_concurrent_state(Iterator it, Sentinel end, F&& func, std::size_t max, std::exception_ptr ex)
        : _it(std::move(it)), _end(std::move(end)), _func(std::forward<F>(func)), _max(max), _ex(std::move(ex)) {}

    /// `first` is the element's future that was not ready. May complete (and delete this) before
    /// returning.
    future<> start(future<>&& first) noexcept {
        auto ret = _pr.get_future();
        _launching = true;
        spawn(std::move(first));
        future<> f;
        while (_workers < _max && pull(f)) {
            spawn(std::move(f));
        }
        _launching = false;
        if (_workers == 0) {
            finish();
        }
        return ret;
    }
};

}  // namespace internal

/// Like parallel_for_each, but at most `max_concurrent` calls of func have unresolved futures at
/// any time: the next element is started when an earlier one's future resolves. Every element is
/// processed even after a failure; the returned future resolves after all of them, with the first
/// exception observed if any failed. max_concurrent == 0 fails with std::invalid_argument. Ready
/// elements are processed in a loop without allocating; need_preempt() makes it yield.
template <typename Iterator, typename Sentinel, typename Func>
    requires std::input_iterator<Iterator> && std::sentinel_for<Sentinel, Iterator>
future<> max_concurrent_for_each(Iterator begin, Sentinel end, std::size_t max_concurrent, Func&& func) noexcept {
    using F = std::decay_t<Func>;
    static_assert(std::is_same_v<futurize_t<std::invoke_result_t<F&, std::iter_reference_t<Iterator>>>, future<>>,
                  "max_concurrent_for_each(): func must return void or future<>");
    if (max_concurrent == 0) {
        return make_exception_future<>(std::invalid_argument("max_concurrent_for_each: max_concurrent must be > 0"));
    }
    std::exception_ptr ex;
    future<> f;
    try {
        while (begin != end) {
            f = futurize_invoke(func, *begin);
            ++begin;
            if (!f.available() || need_preempt()) [[unlikely]] {
                using State = internal::max_concurrent_state<Iterator, Sentinel, F>;
                auto* s = new State(std::move(begin), std::move(end), std::forward<Func>(func), max_concurrent,
                                    std::move(ex));
                return s->start(std::move(f));
            }
            internal::absorb_ready(ex, f);
        }
    } catch (...) {
        internal::keep_first(ex, std::current_exception());
        if (f.valid()) {
            // The last element's call went out before the iterator threw: do not lose it.
            return std::move(f).then_wrapped([ex = std::move(ex)](future<>&& last) mutable {
                internal::absorb_ready(ex, last);
                return make_exception_future<>(std::move(ex));
            });
        }
    }
    if (ex) {
        return make_exception_future<>(std::move(ex));
    }
    return make_ready_future<>();
}

/// max_concurrent_for_each over a range; an rvalue container is kept alive as in parallel_for_each.
template <std::ranges::input_range Range, typename Func>
future<> max_concurrent_for_each(Range&& range, std::size_t max_concurrent, Func&& func) noexcept {
    return internal::with_range(std::forward<Range>(range),
                                [max_concurrent, func = std::forward<Func>(func)](auto b, auto e) mutable {
                                    return max_concurrent_for_each(std::move(b), std::move(e), max_concurrent, func);
                                });
}

namespace internal {

// Reduces, in element order, the mapped futures from the first one that was not ready onwards.
template <typename V, typename Initial, typename Reducer>
class map_reduce_state final : public task, public task_pool_allocated {
    std::vector<future<V>> _pending;
    std::size_t _next = 0;
    Initial _acc;
    Reducer _reduce;
    std::exception_ptr _ex;
    promise<Initial> _pr;

    void wait_next() noexcept {
        while (_next < _pending.size()) {
            auto& f = _pending[_next];
            if (!f.available()) {
                f.set_coroutine(*this);
                return;
            }
            if (_ex || f.failed()) {
                absorb_ready(_ex, f);
            } else {
                try {
                    _acc = std::invoke(_reduce, std::move(_acc), f.get());
                } catch (...) {
                    _ex = std::current_exception();
                }
            }
            ++_next;
        }
        if (_ex) {
            _pr.set_exception(std::move(_ex));
        } else {
            _pr.set_value(std::move(_acc));
        }
        delete this;
    }

public:
    template <typename R>
    map_reduce_state(Initial&& acc, R&& reduce) : _acc(std::move(acc)), _reduce(std::forward<R>(reduce)) {}
    void add(future<V>&& f) { _pending.push_back(std::move(f)); }
    future<Initial> start(std::exception_ptr ex) noexcept {
        keep_first(_ex, std::move(ex));
        auto ret = _pr.get_future();
        wait_next();
        return ret;
    }
    void run_and_dispose() noexcept override { wait_next(); }
};

}  // namespace internal

/// Call mapper(*it) for every element now (mapper returns V or future<V>; all run concurrently),
/// and fold the results into `initial` with acc = reducer(std::move(acc), V&&), in element order,
/// as they become available. The returned future resolves after every mapped future resolved:
/// with the final accumulator, or with the first exception observed (from mapper, its future or
/// reducer); after a failure the reducer is not called again and the remaining results are
/// dropped. Initial must be move-assignable and nothrow move-constructible.
template <typename Iterator, typename Sentinel, typename Mapper, typename Initial, typename Reducer>
    requires std::input_iterator<Iterator> && std::sentinel_for<Sentinel, Iterator>
future<Initial> map_reduce(Iterator begin, Sentinel end, Mapper&& mapper, Initial initial, Reducer&& reducer) noexcept {
    using M = futurize_t<std::invoke_result_t<Mapper&, std::iter_reference_t<Iterator>>>;
    using V = typename M::value_type;
    static_assert(!std::is_void_v<V>, "map_reduce(): the mapper must produce a value");
    using State = internal::map_reduce_state<V, Initial, std::decay_t<Reducer>>;
    State* s = nullptr;
    std::exception_ptr ex;
    try {
        for (; begin != end; ++begin) {
            M f = futurize_invoke(mapper, *begin);
            if (!s && f.available()) {
                if (ex || f.failed()) {
                    internal::absorb_ready(ex, f);
                } else {
                    try {
                        initial = std::invoke(reducer, std::move(initial), f.get());
                    } catch (...) {
                        ex = std::current_exception();
                    }
                }
                continue;
            }
            if (!s) {
                s = new State(std::move(initial), std::forward<Reducer>(reducer));
            }
            s->add(std::move(f));
        }
    } catch (...) {
        internal::keep_first(ex, std::current_exception());
    }
    if (s) {
        return s->start(std::move(ex));
    }
    if (ex) {
        return make_exception_future<Initial>(std::move(ex));
    }
    return make_ready_future<Initial>(std::move(initial));
}

/// map_reduce over a range; an rvalue container is kept alive as in parallel_for_each.
template <std::ranges::input_range Range, typename Mapper, typename Initial, typename Reducer>
future<Initial> map_reduce(Range&& range, Mapper&& mapper, Initial initial, Reducer&& reducer) noexcept {
    return internal::with_range(
        std::forward<Range>(range),
        [mapper = std::forward<Mapper>(mapper), initial = std::move(initial),
         reducer = std::forward<Reducer>(reducer)](auto b, auto e) mutable {
            return map_reduce(std::move(b), std::move(e), mapper, std::move(initial), reducer);
        });
}

// ------------------------------------------------------------------------------------------------
// when_all, when_all_succeed

namespace internal {

template <typename... T>
class when_all_state final : public task, public task_pool_allocated {
    std::tuple<future<T>...> _futures;
    promise<std::tuple<future<T>...>> _pr;

    template <typename U>
    bool wait_on(future<U>& f) noexcept {
        if (f.available()) {
            return false;
        }
        f.set_coroutine(*this);
        return true;
    }
    // Hook this task on the first future not yet ready; false when all are ready.
    bool wait_next() noexcept {
        return std::apply([this](auto&... f) { return (wait_on(f) || ...); }, _futures);
    }

public:
    explicit when_all_state(future<T>&&... f) noexcept : _futures(std::move(f)...) {}
    future<std::tuple<future<T>...>> start() noexcept {
        auto ret = _pr.get_future();
        wait_next();
        return ret;
    }
    void run_and_dispose() noexcept override {
        if (wait_next()) {
            return;
        }
        _pr.set_value(std::move(_futures));
        delete this;
    }
};

template <typename T>
class when_all_vector_state final : public task, public task_pool_allocated {
    std::vector<future<T>> _futures;
    std::size_t _next = 0;
    promise<std::vector<future<T>>> _pr;

    void wait_next() noexcept {
        while (_next < _futures.size()) {
            if (!_futures[_next].available()) {
                _futures[_next].set_coroutine(*this);
                return;
            }
            ++_next;
        }
        _pr.set_value(std::move(_futures));
        delete this;
    }

public:
    explicit when_all_vector_state(std::vector<future<T>>&& f) noexcept : _futures(std::move(f)) {}
    future<std::vector<future<T>>> start() noexcept {
        auto ret = _pr.get_future();
        wait_next();
        return ret;
    }
    void run_and_dispose() noexcept override { wait_next(); }
};

template <typename T>
auto value_as_tuple(future<T>& f) {
    if constexpr (std::is_void_v<T>) {
        f.ignore_ready_future();
        return std::tuple<>();
    } else {
        return std::tuple<T>(f.get());
    }
}

template <typename T>
using value_tuple_t = std::conditional_t<std::is_void_v<T>, std::tuple<>, std::tuple<T>>;

template <typename Iterator>
using iter_future_value_t = typename std::iter_value_t<Iterator>::value_type;

}  // namespace internal

/// Wait until every future given has resolved, successfully or not, and return them all, ready,
/// in a tuple in argument order. Never fails (the exceptions stay in the futures: the caller must
/// look at them, or they are reported as ignored). No allocation when all are already ready.
template <typename... T>
future<std::tuple<future<T>...>> when_all(future<T>&&... futs) noexcept {
    using tuple_type = std::tuple<future<T>...>;
    if ((futs.available() && ...)) {
        return make_ready_future<tuple_type>(std::move(futs)...);
    }
    try {
        return (new internal::when_all_state<T...>(std::move(futs)...))->start();
    } catch (...) {
        return make_exception_future<tuple_type>(std::current_exception());
    }
}

/// Move the futures out of [begin, end) and wait until all have resolved; return them, ready, in
/// a vector in iteration order. Never fails except for bad_alloc.
template <typename Iterator, typename Sentinel>
    requires std::input_iterator<Iterator> && std::sentinel_for<Sentinel, Iterator> &&
             is_future_v<std::iter_value_t<Iterator>>
future<std::vector<std::iter_value_t<Iterator>>> when_all(Iterator begin, Sentinel end) noexcept {
    using T = internal::iter_future_value_t<Iterator>;
    using vector_type = std::vector<future<T>>;
    vector_type futs;
    bool all_ready = true;
    try {
        if constexpr (std::sized_sentinel_for<Sentinel, Iterator>) {
            futs.reserve(std::size_t(end - begin));
        }
        for (; begin != end; ++begin) {
            futs.push_back(std::move(*begin));
            all_ready = all_ready && futs.back().available();
        }
        if (all_ready) {
            return make_ready_future<vector_type>(std::move(futs));
        }
        return (new internal::when_all_vector_state<T>(std::move(futs)))->start();
    } catch (...) {
        return make_exception_future<vector_type>(std::current_exception());
    }
}

/// when_all over a range of futures (moved out of it).
template <std::ranges::input_range Range>
    requires is_future_v<std::ranges::range_value_t<Range>>
auto when_all(Range&& range) noexcept {
    return when_all(std::ranges::begin(range), std::ranges::end(range));
}

/// Wait until every future given has resolved and return their values as a tuple, in argument
/// order, leaving out future<> (void) results: when_all_succeed(future<int>, future<>,
/// future<std::string>) gives future<std::tuple<int, std::string>>. If any failed, the result
/// fails (after all resolved) with the exception of the first failed one in argument order; the
/// other exceptions are dropped silently. No allocation when all are already ready.
template <typename... T>
auto when_all_succeed(future<T>&&... futs) noexcept {
    using result_type = decltype(std::tuple_cat(std::declval<internal::value_tuple_t<T>>()...));
    return when_all(std::move(futs)...).then([](std::tuple<future<T>...>&& fs) -> future<result_type> {
        std::exception_ptr ex;
        std::apply([&](auto&... f) { ((f.failed() ? internal::absorb_ready(ex, f) : void()), ...); }, fs);
        if (ex) {
            return make_exception_future<result_type>(std::move(ex));
        }
        return make_ready_future<result_type>(
            std::apply([](auto&... f) { return std::tuple_cat(internal::value_as_tuple(f)...); }, fs));
    });
}

/// Range version of when_all_succeed: the futures are moved out of [begin, end). Gives
/// future<std::vector<T>> (values in iteration order), or future<> for future<> elements. Fails
/// with the first exception in iteration order, after all resolved.
template <typename Iterator, typename Sentinel>
    requires std::input_iterator<Iterator> && std::sentinel_for<Sentinel, Iterator> &&
             is_future_v<std::iter_value_t<Iterator>>
auto when_all_succeed(Iterator begin, Sentinel end) noexcept {
    using T = internal::iter_future_value_t<Iterator>;
    using result_type = std::conditional_t<std::is_void_v<T>, void, std::vector<T>>;
    return when_all(std::move(begin), std::move(end)).then([](std::vector<future<T>>&& fs) -> future<result_type> {
        std::exception_ptr ex;
        for (auto& f : fs) {
            if (f.failed()) {
                internal::absorb_ready(ex, f);
            }
        }
        if (ex) {
            return make_exception_future<result_type>(std::move(ex));
        }
        if constexpr (std::is_void_v<T>) {
            return make_ready_future<>();
        } else {
            std::vector<T> values;
            values.reserve(fs.size());
            for (auto& f : fs) {
                values.push_back(f.get());
            }
            return make_ready_future<result_type>(std::move(values));
        }
    });
}

/// when_all_succeed over a range of futures (moved out of it).
template <std::ranges::input_range Range>
    requires is_future_v<std::ranges::range_value_t<Range>>
auto when_all_succeed(Range&& range) noexcept {
    return when_all_succeed(std::ranges::begin(range), std::ranges::end(range));
}

// ------------------------------------------------------------------------------------------------
// with_timeout, sleep

namespace internal {

template <typename Clock, typename T>
class timeout_state final : public task, public task_pool_allocated {
    future<T> _f;
    promise<T> _pr;
    timer<Clock> _timer;

public:
    explicit timeout_state(future<T>&& f)
        : _f(std::move(f)), _timer([this] { _pr.set_exception(std::make_exception_ptr(timed_out_error())); }) {}

    future<T> start(typename Clock::time_point deadline) {
        _timer.arm(deadline);
        auto ret = _pr.get_future();
        _f.set_coroutine(*this);
        return ret;
    }
    // The original future resolved.
    void run_and_dispose() noexcept override {
        if (_timer.cancel()) {
            _f.forward_to(std::move(_pr));
        } else {
            // Too late: the caller already got timed_out_error. Whatever arrived is not an error
            // anyone can act on, so it is dropped without the "ignored exception" report.
            _f.ignore_ready_future();
        }
        delete this;
    }
};

template <typename Clock>
class sleeper final : public task, public task_pool_allocated {
    promise<> _pr;
    // Deleting the sleeper from its own timer callback would destroy the timer (and its
    // std::function) while it runs; the callback only schedules this task instead.
    timer<Clock> _timer;

public:
    sleeper() : _timer([this] { schedule(this); }) {}
    future<> start(typename Clock::duration d) {
        _timer.arm(d);
        return _pr.get_future();
    }
    void run_and_dispose() noexcept override {
        _pr.set_value();
        delete this;
    }
};

}  // namespace internal

/// Return a future with f's outcome, or failing with timed_out_error if `deadline` (on
/// steady_clock_type or lowres_clock, which decides the timer used) passes first. f keeps running
/// after a timeout; its late result (value or exception) is consumed and dropped silently. A ready
/// f is returned as is (no timer, no allocation). Otherwise one allocation holds f, the timer and
/// the promise until f resolves (so a future that never resolves keeps it for ever).
template <typename Clock, typename Duration, typename T>
future<T> with_timeout(std::chrono::time_point<Clock, Duration> deadline, future<T> f) noexcept {
    static_assert(internal::is_reactor_clock_v<Clock>, "with_timeout(): use steady_clock_type or lowres_clock");
    if (f.available()) {
        return f;
    }
    internal::timeout_state<Clock, T>* s;
    try {
        s = new internal::timeout_state<Clock, T>(std::move(f));
    } catch (...) {
        return make_exception_future<T>(std::current_exception());
    }
    try {
        return s->start(std::chrono::ceil<typename Clock::duration>(deadline));
    } catch (...) {
        delete s;  // arming the timer failed; f is not hooked yet
        return make_exception_future<T>(std::current_exception());
    }
}

/// A future that resolves after at least `d` (rounded up to the clock's tick), by a timer<Clock>
/// on this shard: steady_clock_type (default, precise) or lowres_clock (cheap, a few ms coarse).
/// A non-positive d resolves at the reactor's next timer poll. One allocation, freed when the
/// timer fires; a sleep still pending when the reactor is destroyed is never resolved.
template <typename Clock = steady_clock_type, typename Rep, typename Period>
future<> sleep(std::chrono::duration<Rep, Period> d) noexcept {
    static_assert(internal::is_reactor_clock_v<Clock>, "sleep(): use steady_clock_type or lowres_clock");
    internal::sleeper<Clock>* s;
    try {
        s = new internal::sleeper<Clock>();
    } catch (...) {
        return make_exception_future<>(std::current_exception());
    }
    try {
        return s->start(std::chrono::ceil<typename Clock::duration>(d));
    } catch (...) {
        delete s;
        return make_exception_future<>(std::current_exception());
    }
}

}  // namespace reef
