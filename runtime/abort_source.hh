// abort_source: a one-shot cancellation signal. Code that may take long (a sleep, a semaphore wait,
// a connection loop) subscribes a callback or polls abort_requested()/check(); whoever owns the
// operation calls request_abort() once to stop it all.
//
// Single-shard: an abort_source, its subscriptions and the code that requests the abort belong to
// one shard. To abort work on another shard, submit the request_abort() call to that shard.
#pragma once

#include "runtime/clocks.hh"
#include "runtime/coroutine.hh"
#include "runtime/future.hh"
#include "runtime/sync_internal.hh"
#include "runtime/timer.hh"

#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

namespace reef {

/// The exception an abort_source carries when request_abort() is called without one.
class abort_requested_exception : public std::exception {
public:
    const char* what() const noexcept override { return "abort requested"; }
};

/// A sleep_abortable() interrupted by a plain request_abort().
class sleep_aborted : public abort_requested_exception {
public:
    const char* what() const noexcept override { return "sleep aborted"; }
};

class abort_source {
public:
    /// What a subscriber is told: the exception given to request_abort_ex(), or nullopt for a
    /// plain request_abort() (so each subscriber can fail with an exception of its own kind, e.g.
    /// sleep_aborted, semaphore_aborted).
    using abort_reason = std::optional<std::exception_ptr>;

    /// A registered abort callback. Destroying (or resetting) it unsubscribes; it may outlive its
    /// abort_source (it is then simply inert). Move-only; moving keeps the registration.
    class subscription : private internal::list_hook {
        std::function<void(const abort_reason&)> _cb;

        friend class abort_source;
        friend class internal::intrusive_list<subscription>;

        explicit subscription(std::function<void(const abort_reason&)>&& cb) noexcept : _cb(std::move(cb)) {}

    public:
        /// An empty subscription, subscribed to nothing.
        subscription() noexcept = default;
        subscription(subscription&&) noexcept = default;
        subscription& operator=(subscription&&) noexcept = default;
        ~subscription() = default;

        /// Is the callback still waiting for an abort? False once it ran or was unsubscribed.
        explicit operator bool() const noexcept { return linked(); }
        /// Unsubscribe now: the callback will not be called.
        void reset() noexcept {
            unlink();
            _cb = nullptr;
        }
    };

private:
    internal::intrusive_list<subscription> _subs;
    std::exception_ptr _ex;  // set once aborted: the given exception or abort_requested_exception
    bool _aborted = false;
    bool _custom = false;    // _ex came from request_abort_ex()

public:
    abort_source() noexcept = default;
    /// Moving keeps the subscriptions (they are relinked to the new object).
    abort_source(abort_source&&) noexcept = default;
    abort_source& operator=(abort_source&&) noexcept = default;
    abort_source(const abort_source&) = delete;
    abort_source& operator=(const abort_source&) = delete;
    /// Outstanding subscriptions become inert (their callbacks are never called).
    ~abort_source() = default;

    /// Register f to be called by request_abort(). f is `void() noexcept` or
    /// `void(const abort_source::abort_reason&) noexcept`; it runs synchronously inside
    /// request_abort(), in subscription order, and must not throw (that terminates) or destroy the
    /// abort_source. f may unsubscribe itself or others and destroy its own subscription.
    /// Returns nullopt, without calling f, if an abort was already requested.
    template <typename Func>
        requires std::is_invocable_v<Func&> || std::is_invocable_v<Func&, const abort_reason&>
    [[nodiscard]] std::optional<subscription> subscribe(Func&& f) {
        if (_aborted) {
            return std::nullopt;
        }
        std::optional<subscription> s;
        if constexpr (std::is_invocable_v<Func&, const abort_reason&>) {
            s.emplace(subscription(std::function<void(const abort_reason&)>(std::forward<Func>(f))));
        } else {
            s.emplace(subscription([f = std::forward<Func>(f)](const abort_reason&) mutable noexcept { f(); }));
        }
        _subs.push_back(*s);
        return s;
    }

    /// Abort with abort_requested_exception. Calls every subscriber once (they are unsubscribed
    /// first). A second request (plain or _ex) is ignored.
    void request_abort() noexcept { do_abort(std::make_exception_ptr(abort_requested_exception()), false); }
    /// Abort with `ex`: subscribers receive it, check() throws it.
    void request_abort_ex(std::exception_ptr ex) noexcept { do_abort(std::move(ex), true); }
    template <typename E>
        requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>)
    void request_abort_ex(E&& e) noexcept {
        request_abort_ex(std::make_exception_ptr(std::forward<E>(e)));
    }

    bool abort_requested() const noexcept { return _aborted; }
    /// Throw the abort exception (abort_requested_exception or the one given) if aborted.
    void check() const {
        if (_aborted) {
            std::rethrow_exception(_ex);
        }
    }
    /// The abort exception; null before an abort.
    const std::exception_ptr& abort_requested_exception_ptr() const noexcept { return _ex; }
    /// What subscribers were told: the exception given to request_abort_ex(), or nullopt (no abort
    /// yet, or a plain request_abort()). For waiters that arrive after the abort.
    abort_reason reason() const noexcept { return _custom ? abort_reason(_ex) : std::nullopt; }

private:
    void do_abort(std::exception_ptr ex, bool custom) noexcept {
        if (_aborted) {
            return;
        }
        _aborted = true;
        _ex = std::move(ex);
        _custom = custom;
        const abort_reason r = reason();
        while (!_subs.empty()) {
            subscription& s = _subs.pop_front();
            // Move the callback out so it may destroy its own subscription while running.
            auto cb = std::move(s._cb);
            s._cb = nullptr;
            cb(r);
        }
    }
};

namespace internal {

template <typename Clock>
struct abortable_sleeper {
    promise<> pr;
    timer<Clock> tmr;
    std::optional<abort_source::subscription> sub;

    abortable_sleeper() : tmr([this] { pr.set_value(); }) {}
    abortable_sleeper(const abortable_sleeper&) = delete;

    void on_abort(const abort_source::abort_reason& reason) noexcept {
        // If the timer already fired, the sleep is over and the abort comes too late to matter.
        if (tmr.cancel()) {
            pr.set_exception(reason ? *reason : std::make_exception_ptr(sleep_aborted()));
        }
    }
};

template <typename Clock>
future<> do_sleep_abortable(typename Clock::duration dur, abort_source& as) {
    abortable_sleeper<Clock> s;
    s.sub = as.subscribe([p = &s](const abort_source::abort_reason& r) noexcept { p->on_abort(r); });
    s.tmr.arm(dur);
    co_await s.pr.get_future();
}

}  // namespace internal

/// Resolve after `dur` on this shard, or fail as soon as `as` is aborted: with sleep_aborted
/// (an abort_requested_exception) for request_abort(), with the given exception for
/// request_abort_ex(). Fails at once if `as` is already aborted. `as` must outlive the returned
/// future. Clock is steady_clock_type or lowres_clock. One allocation (a coroutine frame).
template <typename Clock = steady_clock_type>
future<> sleep_abortable(typename Clock::duration dur, abort_source& as) noexcept {
    if (as.abort_requested()) {
        auto reason = as.reason();
        return make_exception_future<>(reason ? *reason : std::make_exception_ptr(sleep_aborted()));
    }
    return internal::do_sleep_abortable<Clock>(dur, as);
}

}  // namespace reef
