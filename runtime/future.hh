// future<T> and promise<T>: single-shard, allocation-light asynchronous values.
//
// Contract, for every type here:
//  - Single-threaded. A promise and its future belong to the shard that created them; resolving a
//    promise from another thread is undefined (use smp::submit_to to come back to the owner).
//  - A ready future allocates nothing. then() on an unready future allocates one continuation
//    (from a per-thread pool); co_await of an unready future allocates nothing.
//  - Values are moved: then()'s continuation receives T&&; get() moves the value out. A future is
//    consumed by then/then_wrapped/finally/get/forward_to/co_await; using it again is misuse
//    (misuse.hh: abort, or misuse_error; the noexcept operations, then/then_wrapped/finally/
//    handle_exception/forward_to, deliver that misuse_error in the future or promise they resolve).
//  - Exceptions travel inside the future. A continuation that throws produces an exceptional
//    future. An exceptional future destroyed without anyone looking at it is logged
//    ("exceptional future ignored") so errors are never lost silently.
//  - A promise destroyed without a value resolves its future with broken_promise.
#pragma once

#include "runtime/misuse.hh"
#include "runtime/preempt.hh"
#include "runtime/task.hh"
#include "runtime/task_alloc.hh"

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace reef {

template <typename T = void>
class future;
template <typename T = void>
class promise;

/// The value a future receives when its promise is destroyed without being resolved.
class broken_promise : public std::logic_error {
public:
    broken_promise() : std::logic_error("broken promise") {}
};

template <typename T>
struct is_future : std::false_type {};
template <typename T>
struct is_future<future<T>> : std::true_type {};
template <typename T>
inline constexpr bool is_future_v = is_future<T>::value;

template <typename T>
struct futurize;
/// The future type a function returning R is turned into: future<R>, future<> for void, or R
/// itself when R is already a future.
template <typename T>
using futurize_t = typename futurize<T>::type;

namespace internal {

struct monostate {};
template <typename T>
using value_or_monostate = std::conditional_t<std::is_void_v<T>, monostate, T>;

/// Logs an exceptional future that was destroyed unobserved. Never throws.
void report_ignored_exception(const std::exception_ptr& ex) noexcept;

struct ready_tag {};
struct exception_tag {};

template <typename T>
class future_state {
public:
    using value_type = value_or_monostate<T>;
    static_assert(std::is_nothrow_move_constructible_v<value_type>,
                  "future<T> requires T to be nothrow move-constructible");

    enum class status : std::uint8_t { invalid, pending, result, exception };

private:
    status _st;
    union {
        value_type _v;
        std::exception_ptr _ex;
    };

#pragma GCC diagnostic push
    // Same false positive as in take_value(): with -fsanitize GCC 12 loses track of _st when
    // promise::move_from() assigns over a fresh (pending) _local_state, and reports _ex here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
    void destroy() noexcept {
        if constexpr (!std::is_trivially_destructible_v<value_type>) {
            if (_st == status::result) {
                _v.~value_type();
                return;
            }
        }
        if (_st == status::exception) {
            report_ignored_exception(_ex);
            _ex.~exception_ptr();
        }
    }
#pragma GCC diagnostic pop
#pragma GCC diagnostic push
    // Same false positive: with -fsanitize, moving a promise's fresh (pending) _local_state into
    // its future (promise::get_future) reports the never-written union as read here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
    void move_from(future_state&& x) noexcept {
        _st = x._st;
        if (_st == status::result) {
            new (&_v) value_type(std::move(x._v));
            x._v.~value_type();
        } else if (_st == status::exception) {
            new (&_ex) std::exception_ptr(std::move(x._ex));
            x._ex.~exception_ptr();
        }
        x._st = status::invalid;
    }
#pragma GCC diagnostic pop

public:
    future_state() noexcept : _st(status::pending) {}
    template <typename... A>
    explicit future_state(ready_tag, A&&... a) noexcept(std::is_nothrow_constructible_v<value_type, A&&...>)
        : _st(status::result) {
        new (&_v) value_type(std::forward<A>(a)...);
    }
    future_state(exception_tag, std::exception_ptr&& ex) noexcept : _st(status::exception) {
        new (&_ex) std::exception_ptr(std::move(ex));
    }
    future_state(future_state&& x) noexcept { move_from(std::move(x)); }
    future_state& operator=(future_state&& x) noexcept {
        if (this != &x) {
            destroy();
            move_from(std::move(x));
        }
        return *this;
    }
    ~future_state() { destroy(); }

    status state() const noexcept { return _st; }
    bool valid() const noexcept { return _st != status::invalid; }
    bool available() const noexcept { return _st >= status::result; }
    bool failed() const noexcept { return _st == status::exception; }

    template <typename... A>
    void set(A&&... a) noexcept(std::is_nothrow_constructible_v<value_type, A&&...>) {
        new (&_v) value_type(std::forward<A>(a)...);
        _st = status::result;
    }
    void set_exception(std::exception_ptr&& ex) noexcept {
        new (&_ex) std::exception_ptr(std::move(ex));
        _st = status::exception;
    }
    /// Moves the value out; the state becomes invalid (consumed).
#pragma GCC diagnostic push
    // GCC cannot follow _st through move_from() and the union, and after inlining a
    // then_wrapped() continuation that calls get() it reports _v as maybe uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
    value_type take_value() noexcept {
        value_type v(std::move(_v));
        _v.~value_type();
        _st = status::invalid;
        return v;
    }
#pragma GCC diagnostic pop
    /// Moves the exception out; the state becomes invalid (consumed, so it is not reported).
    std::exception_ptr take_exception() noexcept {
        std::exception_ptr ex(std::move(_ex));
        _ex.~exception_ptr();
        _st = status::invalid;
        return ex;
    }
    const std::exception_ptr& peek_exception() const noexcept { return _ex; }
    /// Drops a ready state without reporting an exception it may hold.
    void ignore() noexcept {
        if (_st == status::exception) {
            _ex.~exception_ptr();
            _st = status::invalid;
        } else if (_st == status::result) {
            _v.~value_type();
            _st = status::invalid;
        }
    }
    void mark_invalid() noexcept { _st = status::invalid; }  // only for a pending state
};

/// The part of promise<T> that does not depend on T; reef::thread and coroutines use it to hang
/// a task on a pending promise.
class promise_base {
protected:
    task* _task = nullptr;      // run when the value arrives
    bool _resolved = false;     // set_value/set_exception was called
    bool _future_taken = false; // get_future was called

public:
    void set_task(task* t) noexcept { _task = t; }
};

template <typename T>
struct call_with_value {
    template <typename Func>
    static decltype(auto) call(Func& f, value_or_monostate<T>&& v) {
        return std::invoke(f, std::move(v));
    }
};
template <>
struct call_with_value<void> {
    template <typename Func>
    static decltype(auto) call(Func& f, monostate&&) {
        return std::invoke(f);
    }
};

template <typename Func, typename T>
struct then_result {
    using type = std::invoke_result_t<Func, T&&>;
};
template <typename Func>
struct then_result<Func, void> {
    using type = std::invoke_result_t<Func>;
};

void thread_wait(promise_base& pr);  // suspends the current reef::thread; defined in thread.cc
bool in_thread() noexcept;

}  // namespace internal

template <typename T, typename... A>
future<T> make_ready_future(A&&... value) noexcept;
template <typename T = void>
future<T> make_exception_future(std::exception_ptr ex) noexcept;
template <typename T = void, typename E>
    requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>)
future<T> make_exception_future(E&& ex) noexcept;

/// The producer side of a future<T>. Move-only. Resolve it once with set_value or set_exception;
/// destroying it unresolved gives the future broken_promise. Resolving a promise whose future was
/// dropped is allowed and does nothing.
template <typename T>
class promise : public internal::promise_base {
    using state_type = internal::future_state<T>;
    future<T>* _future = nullptr;   // the future object, while it exists and waits
    state_type* _state = nullptr;   // where the result goes; nullptr when nobody listens
    state_type _local_state;        // holds a result set before get_future()

    friend class future<T>;

    void make_ready(bool urgent) noexcept {
        if (_task) {
            if (urgent) {
                schedule_urgent(_task);
            } else {
                schedule(_task);
            }
            _task = nullptr;
        }
        if (_future) {
            _future->_promise = nullptr;
            _future = nullptr;
        }
        _state = nullptr;
    }
    void check_unresolved() {
        if (_resolved) {
            report_misuse("promise resolved twice (set_value/set_exception called again)");
        }
        _resolved = true;
    }
    void abandon() noexcept {
        if (_state && _state->state() == state_type::status::pending && (_future || _task)) {
            _state->set_exception(std::make_exception_ptr(broken_promise()));
            make_ready(false);
        } else if (_future) {
            _future->_promise = nullptr;
        }
        _future = nullptr;
        _state = nullptr;
        _task = nullptr;
    }
    void move_from(promise&& x) noexcept {
        _task = std::exchange(x._task, nullptr);
        _resolved = x._resolved;
        _future_taken = x._future_taken;
        _future = std::exchange(x._future, nullptr);
        // _local_state holds the result until get_future() takes it, even after _state was
        // cleared by resolving the promise: it moves whatever _state points to.
        _local_state = std::move(x._local_state);
        _state = x._state == &x._local_state ? &_local_state : x._state;
        x._state = nullptr;
        if (_future) {
            _future->_promise = this;
        }
    }

public:
    using value_type = T;

    promise() noexcept : _state(&_local_state) {}
    promise(promise&& x) noexcept : _local_state() { move_from(std::move(x)); }
    promise& operator=(promise&& x) noexcept {
        if (this != &x) {
            abandon();
            _local_state.ignore();
            move_from(std::move(x));
        }
        return *this;
    }
    promise(const promise&) = delete;
    promise& operator=(const promise&) = delete;
    ~promise() {
        abandon();
        _local_state.ignore();
    }

    /// The future this promise resolves. Call once; a second call is misuse.
    future<T> get_future() {
        if (_future_taken) {
            report_misuse("promise::get_future() called twice");
        }
        _future_taken = true;
        return future<T>(this);
    }

    /// Resolve with a value; the waiting continuation is scheduled (it does not run inline).
    template <typename... A>
    void set_value(A&&... a) {
        check_unresolved();
        if (_state) {
            _state->set(std::forward<A>(a)...);
            make_ready(false);
        }
    }
    /// Resolve with an exception.
    void set_exception(std::exception_ptr ex) {
        check_unresolved();
        if (_state) {
            _state->set_exception(std::move(ex));
            make_ready(false);
        }
    }
    template <typename E>
        requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>)
    void set_exception(E&& e) {
        set_exception(std::make_exception_ptr(std::forward<E>(e)));
    }

    /// Resolve from a ready state, scheduling the waiter at the front of the queue.
    void set_urgent_state(internal::future_state<T>&& st) {
        check_unresolved();
        if (_state) {
            *_state = std::move(st);
            make_ready(true);
        } else {
            st.ignore();
        }
    }
};

template <typename T>
struct futurize {
    using type = future<T>;
    using promise_type = promise<T>;
    template <typename Func, typename... A>
    static type invoke(Func&& f, A&&... a) noexcept {
        try {
            return make_ready_future<T>(std::invoke(std::forward<Func>(f), std::forward<A>(a)...));
        } catch (...) {
            return make_exception_future<T>(std::current_exception());
        }
    }
    /// Resolve pr with what the function call returns (or throws).
    template <typename Func>
    static void satisfy_with_result_of(promise<T>&& pr, Func&& f) noexcept {
        try {
            pr.set_value(f());
        } catch (...) {
            pr.set_exception(std::current_exception());
        }
    }
};
template <>
struct futurize<void> {
    using type = future<>;
    using promise_type = promise<>;
    template <typename Func, typename... A>
    static type invoke(Func&& f, A&&... a) noexcept;
    template <typename Func>
    static void satisfy_with_result_of(promise<>&& pr, Func&& f) noexcept;
};
template <typename T>
struct futurize<future<T>> {
    using type = future<T>;
    using promise_type = promise<T>;
    template <typename Func, typename... A>
    static type invoke(Func&& f, A&&... a) noexcept {
        try {
            return std::invoke(std::forward<Func>(f), std::forward<A>(a)...);
        } catch (...) {
            return make_exception_future<T>(std::current_exception());
        }
    }
    template <typename Func>
    static void satisfy_with_result_of(promise<T>&& pr, Func&& f) noexcept;
};

/// Call f(args...) and return its result as a future; an exception becomes an exceptional future.
template <typename Func, typename... A>
auto futurize_invoke(Func&& f, A&&... a) noexcept {
    using R = std::invoke_result_t<Func, A&&...>;
    return futurize<R>::invoke(std::forward<Func>(f), std::forward<A>(a)...);
}

namespace internal {

// The task that runs a then()/then_wrapped() callback once the awaited value is there.
template <typename T, typename Body>
class continuation final : public task, public task_pool_allocated {
public:
    future_state<T> _state;
    Body _body;

    explicit continuation(Body&& b) noexcept(std::is_nothrow_move_constructible_v<Body>)
        : _state(), _body(std::move(b)) {}
    void run_and_dispose() noexcept override {
        _body(std::move(_state));
        delete this;
    }
};

}  // namespace internal

/// A value of type T that may not be available yet. See the file comment for the contract.
template <typename T>
class [[nodiscard]] future {
    using state_type = internal::future_state<T>;
    promise<T>* _promise = nullptr;
    state_type _state;

    friend class promise<T>;
    template <typename U>
    friend class future;
    template <typename U, typename... A>
    friend future<U> make_ready_future(A&&...) noexcept;
    template <typename U>
    friend future<U> make_exception_future(std::exception_ptr) noexcept;

    explicit future(promise<T>* pr) noexcept : _promise(pr), _state(std::move(pr->_local_state)) {
        if (_state.available()) {
            _promise = nullptr;
            pr->_state = nullptr;
        } else {
            pr->_future = this;
            pr->_state = &_state;
        }
    }
    template <typename... A>
    explicit future(internal::ready_tag t, A&&... a) noexcept : _state(t, std::forward<A>(a)...) {}
    future(internal::exception_tag t, std::exception_ptr&& ex) noexcept : _state(t, std::move(ex)) {}
    explicit future(state_type&& st) noexcept : _state(std::move(st)) {}

    void detach_promise() noexcept {
        if (_promise) {
            _promise->_future = nullptr;
            _promise->_state = nullptr;
            _promise = nullptr;
        }
    }
    void check_valid(const char* op) const {
        if (!_state.valid()) [[unlikely]] {
            report_misuse(op);
        }
    }
    // For the noexcept operations: aborts in abort mode, else the misuse_error to put in a future.
    static std::exception_ptr misuse_exception(const char* op) noexcept {
        try {
            report_misuse(op);
        } catch (...) {
            return std::current_exception();
        }
    }

    // Hand the (eventual) state to a continuation and schedule it when the value is there.
    template <typename Cont>
    void schedule_continuation(Cont* c) noexcept {
        if (_state.available()) {
            c->_state = std::move(_state);
            ::reef::schedule(c);
        } else {
            _promise->_state = &c->_state;
            _promise->set_task(c);
            _promise->_future = nullptr;
            _promise = nullptr;
            _state.mark_invalid();
        }
    }

    template <typename Result, typename Func>
    Result then_slow(Func&& func) noexcept {
        using P = typename Result::promise_type;
        P pr;
        Result result = pr.get_future();
        auto body = [pr = std::move(pr), func = std::forward<Func>(func)](state_type&& st) mutable noexcept {
            if (st.failed()) {
                pr.set_exception(st.take_exception());
            } else {
                using R = typename internal::then_result<std::decay_t<Func>, T>::type;
                futurize<R>::satisfy_with_result_of(std::move(pr), [&]() -> decltype(auto) {
                    return internal::call_with_value<T>::call(func, st.take_value());
                });
            }
        };
        schedule_continuation(new internal::continuation<T, decltype(body)>(std::move(body)));
        return result;
    }

    template <typename Result, typename Func>
    Result then_wrapped_slow(Func&& func) noexcept {
        using P = typename Result::promise_type;
        P pr;
        Result result = pr.get_future();
        auto body = [pr = std::move(pr), func = std::forward<Func>(func)](state_type&& st) mutable noexcept {
            using R = std::invoke_result_t<std::decay_t<Func>, future<T>&&>;
            futurize<R>::satisfy_with_result_of(std::move(pr), [&]() -> decltype(auto) {
                return std::invoke(func, future<T>(std::move(st)));
            });
        };
        schedule_continuation(new internal::continuation<T, decltype(body)>(std::move(body)));
        return result;
    }

public:
    using value_type = T;
    using promise_type = promise<T>;

    /// A moved-from-like, invalid future; only assignment and destruction are allowed.
    future() noexcept : _state() { _state.mark_invalid(); }
    future(future&& x) noexcept : _promise(x._promise), _state(std::move(x._state)) {
        if (_promise) {
            _promise->_future = this;
            _promise->_state = &_state;
            x._promise = nullptr;
        }
    }
    future& operator=(future&& x) noexcept {
        if (this != &x) {
            detach_promise();
            _state = std::move(x._state);
            _promise = std::exchange(x._promise, nullptr);
            if (_promise) {
                _promise->_future = this;
                _promise->_state = &_state;
            }
        }
        return *this;
    }
    future(const future&) = delete;
    future& operator=(const future&) = delete;
    ~future() { detach_promise(); }

    /// Has the value (or exception) arrived?
    bool available() const noexcept { return _state.available(); }
    /// Has an exception arrived? (Does not consume it.)
    bool failed() const noexcept { return _state.failed(); }
    /// False once consumed (then, get, co_await, forward_to...) or moved from.
    bool valid() const noexcept { return _state.valid(); }

    /// Wait for the value and return it, or throw the exception. Inside a reef::thread an unready
    /// future suspends the thread; anywhere else an unready future is misuse.
    internal::value_or_monostate<T> get_value() {
        if (_state.state() == state_type::status::result) [[likely]] {
            return _state.take_value();
        }
        return get_value_slow();
    }
    // Out of line so the ready path above inlines into callers.
    [[gnu::noinline]] internal::value_or_monostate<T> get_value_slow() {
        wait();
        check_valid("future consumed twice (get() after then/get/co_await)");
        if (_state.failed()) {
            std::rethrow_exception(_state.take_exception());
        }
        return _state.take_value();
    }
    T get() {
        if constexpr (std::is_void_v<T>) {
            get_value();
        } else {
            return get_value();
        }
    }

    /// Inside a reef::thread: suspend the thread until the future is ready.
    void wait() {
        if (_state.available() || !_state.valid()) {
            return;
        }
        if (!internal::in_thread()) {
            report_misuse("future::get() on an unready future outside a reef::thread "
                          "(use then() or co_await, or run the code in reef::thread)");
        }
        internal::thread_wait(*_promise);
    }

    /// Take the exception out of a failed future (consumes it).
    std::exception_ptr get_exception() noexcept { return _state.take_exception(); }

    /// Drop a ready future without reporting its exception.
    void ignore_ready_future() noexcept { _state.ignore(); }

    /// Run func(T&&) when the value arrives and return a future of its result (flattened if func
    /// returns a future). An exception skips func and propagates. When the value is already here
    /// and the task quota is not exhausted, func runs immediately, without allocating.
    template <typename Func,
              typename R = typename internal::then_result<std::decay_t<Func>, T>::type,
              typename Result = futurize_t<R>>
    Result then(Func&& func) noexcept {
        // The common case first: a value is here and the quota is not used up.
        if (_state.state() == state_type::status::result && !need_preempt()) [[likely]] {
            return futurize<R>::invoke([&]() -> decltype(auto) {
                return internal::call_with_value<T>::call(func, _state.take_value());
            });
        }
        if (!_state.valid()) [[unlikely]] {
            return Result(internal::exception_tag{},
                          misuse_exception("future consumed twice (then() on a future already awaited)"));
        }
        if (_state.available() && !need_preempt()) {
            if (_state.failed()) {
                return Result(internal::exception_tag{}, _state.take_exception());
            }
            return futurize<R>::invoke([&]() -> decltype(auto) {
                return internal::call_with_value<T>::call(func, _state.take_value());
            });
        }
        return then_slow<Result>(std::forward<Func>(func));
    }

    /// Run func(future<T>&&) when the future is ready, value or exception; returns its result.
    template <typename Func, typename R = std::invoke_result_t<std::decay_t<Func>, future<T>&&>,
              typename Result = futurize_t<R>>
    Result then_wrapped(Func&& func) noexcept {
        if (!_state.valid()) [[unlikely]] {
            return Result(internal::exception_tag{},
                          misuse_exception("future consumed twice (then_wrapped() on a future already awaited)"));
        }
        if (_state.available() && !need_preempt()) {
            return futurize<R>::invoke(std::forward<Func>(func), std::move(*this));
        }
        return then_wrapped_slow<Result>(std::forward<Func>(func));
    }

    /// Run func() after the future resolves, whatever the outcome, and then pass the original
    /// result on. If func fails (throws or returns a failed future), that failure is passed on
    /// instead and the original exception, if any, is dropped.
    template <typename Func>
    future<T> finally(Func&& func) noexcept {
        return then_wrapped([func = std::forward<Func>(func)](future<T>&& result) mutable {
            return futurize_invoke(func).then_wrapped([result = std::move(result)](auto&& f) mutable {
                if (f.failed()) {
                    result.ignore_ready_future();
                    return future<T>(internal::exception_tag{}, f.get_exception());
                }
                f.ignore_ready_future();
                return std::move(result);
            });
        });
    }

    /// On exception, call func(std::exception_ptr) and return its result (T or future<T>).
    template <typename Func>
    future<T> handle_exception(Func&& func) noexcept {
        return then_wrapped([func = std::forward<Func>(func)](future<T>&& f) mutable -> future<T> {
            if (!f.failed()) {
                return std::move(f);
            }
            return futurize_invoke(func, f.get_exception());
        });
    }

    /// On an exception of type E (func takes E& or const E&), call func; others pass through.
    template <typename Func>
    future<T> handle_exception_type(Func&& func) noexcept {
        using E = std::decay_t<typename function_first_arg<std::decay_t<Func>>::type>;
        return then_wrapped([func = std::forward<Func>(func)](future<T>&& f) mutable -> future<T> {
            if (!f.failed()) {
                return std::move(f);
            }
            auto ex = f.get_exception();
            try {
                std::rethrow_exception(ex);
            } catch (E& e) {
                return futurize_invoke(func, e);
            } catch (...) {
                return future<T>(internal::exception_tag{}, std::move(ex));
            }
        });
    }

    /// Drop the value, keep the outcome.
    future<> discard_result() noexcept {
        if constexpr (std::is_void_v<T>) {
            return std::move(*this);
        } else {
            return then([](T&&) {});
        }
    }

    /// Terminate the process if the future fails: for results that must never fail.
    future<T> or_terminate() noexcept {
        return then_wrapped([](future<T>&& f) {
            if (f.failed()) {
                internal::report_ignored_exception(f._state.peek_exception());
                std::terminate();
            }
            return std::move(f);
        });
    }

    /// Resolve pr with this future's outcome, now or when it arrives; no allocation.
    void forward_to(promise<T>&& pr) noexcept {
        if (_state.available()) {
            pr.set_urgent_state(std::move(_state));
            return;
        }
        if (!_state.valid()) [[unlikely]] {
            pr.set_exception(misuse_exception("future consumed twice (forward_to)"));
            return;
        }
        // Make the upstream promise resolve pr's target directly: it takes over pr's links.
        promise<T>* up = _promise;
        up->_future = nullptr;
        up->_state = nullptr;
        _promise = nullptr;
        _state.mark_invalid();
        *up = std::move(pr);
    }

    /// co_await support: resume task t when the value is there (at once if it already is).
    void set_coroutine(task& t) noexcept {
        if (_state.available()) {
            ::reef::schedule(&t);
        } else {
            _promise->set_task(&t);
        }
    }

private:
    template <typename F>
    struct function_first_arg : function_first_arg<decltype(&F::operator())> {};
    template <typename R, typename C, typename A>
    struct function_first_arg<R (C::*)(A) const> {
        using type = A;
    };
    template <typename R, typename C, typename A>
    struct function_first_arg<R (C::*)(A)> {
        using type = A;
    };
    template <typename R, typename A>
    struct function_first_arg<R (*)(A)> {
        using type = A;
    };
};

/// A future that already holds a value.
template <typename T = void, typename... A>
inline future<T> make_ready_future(A&&... value) noexcept {
    return future<T>(internal::ready_tag{}, std::forward<A>(value)...);
}

/// A future that already holds an exception.
template <typename T>
inline future<T> make_exception_future(std::exception_ptr ex) noexcept {
    return future<T>(internal::exception_tag{}, std::move(ex));
}
template <typename T, typename E>
    requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>)
inline future<T> make_exception_future(E&& ex) noexcept {
    return make_exception_future<T>(std::make_exception_ptr(std::forward<E>(ex)));
}

template <typename Func, typename... A>
inline future<> futurize<void>::invoke(Func&& f, A&&... a) noexcept {
    try {
        std::invoke(std::forward<Func>(f), std::forward<A>(a)...);
        return make_ready_future<>();
    } catch (...) {
        return make_exception_future<>(std::current_exception());
    }
}
template <typename Func>
inline void futurize<void>::satisfy_with_result_of(promise<>&& pr, Func&& f) noexcept {
    try {
        f();
        pr.set_value();
    } catch (...) {
        pr.set_exception(std::current_exception());
    }
}
template <typename T>
template <typename Func>
inline void futurize<future<T>>::satisfy_with_result_of(promise<T>&& pr, Func&& f) noexcept {
    try {
        f().forward_to(std::move(pr));
    } catch (...) {
        pr.set_exception(std::current_exception());
    }
}

}  // namespace reef
