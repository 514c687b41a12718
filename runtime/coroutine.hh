// C++20 coroutines over reef::future.
//
// A function returning future<T> may co_await futures and co_return a value. The coroutine runs
// synchronously until its first suspension; exceptions thrown inside it (or by an awaited future)
// come out as an exceptional future. co_await of a ready future does not suspend unless the task
// quota has run out; co_await of an unready future allocates nothing (the frame is the task).
//
// Lambda coroutine pitfall: a lambda's captures live in the lambda object, not in the coroutine
// frame. If the lambda object dies at the coroutine's first suspension (as a temporary passed to
// then() does), the captures dangle:
//
//     fut.then([x] () -> future<> { co_await sleep(1s); use(x); });   // x dangles: BUG
//
// Wrap such lambdas in coroutine::lambda(...), which keeps the lambda alive in a frame of its own
// until the coroutine completes, or pass the values as parameters (parameters are copied into the
// frame):
//
//     fut.then(coroutine::lambda([x] () -> future<> { co_await sleep(1s); use(x); }));  // safe
//
// GCC 12 pitfall (compiler bug, seen with 12.2): inside a coroutine, a temporary closure or
// aggregate whose members need destruction, created within a co_await expression, is destroyed
// twice (double free). Name it first:
//
//     co_await do_with(v, [s = std::string("x")](auto& v) { ... });       // BUG on GCC 12
//     auto f = do_with(v, [s = std::string("x")](auto& v) { ... });       // fine
//     co_await std::move(f);
#pragma once

#include "runtime/future.hh"

#include <coroutine>

namespace reef {

namespace internal {

template <typename T, typename Derived>
class coroutine_promise_base : public task, public task_pool_allocated {
protected:
    promise<T> _pr;

public:
    future<T> get_return_object() { return _pr.get_future(); }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void unhandled_exception() noexcept { _pr.set_exception(std::current_exception()); }
    void run_and_dispose() noexcept override {
        std::coroutine_handle<Derived>::from_promise(static_cast<Derived&>(*this)).resume();
    }
};

template <typename T>
class coroutine_promise final : public coroutine_promise_base<T, coroutine_promise<T>> {
public:
    template <typename U = T>
    void return_value(U&& v) {
        this->_pr.set_value(std::forward<U>(v));
    }
    // co_return of a future: its outcome becomes the coroutine's (without an extra suspension).
    void return_value(future<T>&& f) noexcept { f.forward_to(std::move(this->_pr)); }
};

template <>
class coroutine_promise<void> final : public coroutine_promise_base<void, coroutine_promise<void>> {
public:
    void return_void() noexcept { _pr.set_value(); }
};

template <typename T>
struct future_awaiter {
    future<T> _f;

    bool await_ready() const {
        // An already consumed future has no promise to wait on: report it instead of crashing.
        if (!_f.valid()) [[unlikely]] {
            report_misuse("future consumed twice (co_await of a future already awaited)");
        }
        return _f.available() && !need_preempt();
    }
    template <typename P>
    void await_suspend(std::coroutine_handle<P> h) noexcept {
        _f.set_coroutine(h.promise());
    }
    T await_resume() { return _f.get(); }
};

}  // namespace internal

/// Await a future inside a coroutine returning future<U>. Only rvalue futures may be awaited
/// (the future is consumed).
template <typename T>
auto operator co_await(future<T>&& f) noexcept {
    return internal::future_awaiter<T>{std::move(f)};
}

namespace coroutine {

/// co_await coroutine::maybe_yield(): suspend only if the task quota is used up, letting timers,
/// pollers and other tasks run. Put it in long loops.
struct maybe_yield {
    bool await_ready() const noexcept { return !need_preempt(); }
    template <typename P>
    void await_suspend(std::coroutine_handle<P> h) noexcept {
        schedule(&h.promise());
    }
    void await_resume() const noexcept {}
};

/// Wrap a coroutine lambda so its captures live until the coroutine finishes (see file comment).
template <typename Func>
class lambda {
    Func _func;

    template <typename... A>
    static auto run(Func func, A... args) -> futurize_t<std::invoke_result_t<Func&, A...>> {
        // `func` is a parameter, so it lives in this coroutine's frame until the inner one is done.
        co_return co_await func(std::move(args)...);
    }

public:
    explicit lambda(Func&& f) : _func(std::move(f)) {}
    template <typename... A>
    auto operator()(A&&... args) const& {
        return run(_func, std::forward<A>(args)...);
    }
    template <typename... A>
    auto operator()(A&&... args) && {
        return run(std::move(_func), std::forward<A>(args)...);
    }
};

}  // namespace coroutine

}  // namespace reef

template <typename T, typename... Args>
struct std::coroutine_traits<reef::future<T>, Args...> {
    using promise_type = reef::internal::coroutine_promise<T>;
};
