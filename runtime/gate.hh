// gate: tracks operations in progress so that a service can stop cleanly. Each operation enters
// the gate (usually through a gate::holder or with_gate) and leaves when done; close() forbids
// new entries and resolves when the last operation has left. Typical use: a server's stop()
// closes the gate of its connection handlers and waits for the future before freeing state.
//
// Single-shard, no atomics. Not movable: holders point at the gate.
#pragma once

#include "runtime/future.hh"
#include "runtime/misuse.hh"
#include "runtime/sync_internal.hh"

#include <cstddef>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace reef {

/// Thrown by gate::enter() (and what try_with_gate returns) once the gate is closed.
class gate_closed_exception : public std::exception {
public:
    const char* what() const noexcept override { return "gate closed"; }
};

class gate {
    std::size_t _count = 0;
    std::optional<promise<>> _stopped;  // engaged once close() was called

public:
    /// RAII presence in a gate: leaves it when destroyed (or release()d). Copying enters the gate
    /// again on behalf of the copy (allowed even after close(): the original is still inside, so
    /// close() has not resolved yet). Moving transfers the presence.
    class holder {
        gate* _g = nullptr;

        friend class gate;
        struct adopt_tag {};
        holder(gate& g, adopt_tag) noexcept : _g(&g) {}

    public:
        /// Holds nothing.
        holder() noexcept = default;
        /// Enter `g`; throws gate_closed_exception if it is closed.
        explicit holder(gate& g) : _g(&g) { g.enter(); }
        holder(const holder& x) noexcept : _g(x._g) {
            if (_g) {
                ++_g->_count;
            }
        }
        holder(holder&& x) noexcept : _g(std::exchange(x._g, nullptr)) {}
        holder& operator=(const holder& x) noexcept {
            if (this != &x) {
                holder tmp(x);
                *this = std::move(tmp);
            }
            return *this;
        }
        holder& operator=(holder&& x) noexcept {
            if (this != &x) {
                release();
                _g = std::exchange(x._g, nullptr);
            }
            return *this;
        }
        ~holder() { release(); }

        /// Leave the gate now (if held).
        void release() noexcept {
            if (auto* g = std::exchange(_g, nullptr)) {
                g->leave();
            }
        }
        explicit operator bool() const noexcept { return _g != nullptr; }
    };

    gate() noexcept = default;
    gate(const gate&) = delete;
    gate& operator=(const gate&) = delete;
    /// Destroying a gate that operations are still inside is misuse (they would leave a dead
    /// gate): close() it and wait for the future first.
    ~gate() {
        if (_count) {
            report_misuse("gate destroyed while operations are inside it (close() it and wait first)");
        }
    }

    /// Register an operation. Throws gate_closed_exception once close() was called.
    void enter() {
        if (_stopped) {
            throw gate_closed_exception();
        }
        ++_count;
    }
    /// enter() without exceptions: returns false if the gate is closed.
    bool try_enter() noexcept {
        if (_stopped) {
            return false;
        }
        ++_count;
        return true;
    }
    /// End an operation registered by enter()/try_enter(). The last leave() after close() resolves
    /// close()'s future (its waiter is scheduled, not run inline). Leaving more often than entering
    /// is misuse.
    void leave() noexcept {
        if (_count == 0) [[unlikely]] {
            report_misuse("gate::leave() without a matching enter()");
        }
        if (--_count == 0 && _stopped) {
            _stopped->set_value();
        }
    }
    /// Throw gate_closed_exception if the gate is closed: for long operations that want to stop
    /// early once shutdown has begun.
    void check() const {
        if (_stopped) {
            throw gate_closed_exception();
        }
    }
    /// enter() and return a holder that leaves on destruction.
    holder hold() {
        enter();
        return holder(*this, holder::adopt_tag{});
    }
    /// try_enter() as a holder; nullopt if the gate is closed.
    std::optional<holder> try_hold() noexcept {
        if (!try_enter()) {
            return std::nullopt;
        }
        return holder(*this, holder::adopt_tag{});
    }

    /// Close the gate: later enter() calls throw. The future resolves once every operation inside
    /// has left (at once if none is). Calling close() twice is misuse.
    future<> close() {
        if (_stopped) {
            report_misuse("gate::close() called twice");
        }
        _stopped.emplace();
        auto f = _stopped->get_future();
        if (_count == 0) {
            _stopped->set_value();
        }
        return f;
    }

    bool is_closed() const noexcept { return _stopped.has_value(); }
    /// Operations currently inside.
    std::size_t get_count() const noexcept { return _count; }
};

/// Enter g, run func() (returning a value or a future) and leave g when func's future resolves,
/// whatever the outcome. Throws gate_closed_exception (without calling func) if g is closed: use
/// try_with_gate for an exceptional future instead. func is moved into the operation and lives
/// until its future resolves, so a coroutine lambda's captures stay valid. One task-pool
/// allocation (the frame keeping func and the holder).
template <typename Func>
futurize_t<std::invoke_result_t<std::decay_t<Func>&>> with_gate(gate& g, Func&& func) {
    auto h = g.hold();
    return internal::invoke_holding(std::move(h), std::decay_t<Func>(std::forward<Func>(func)));
}

/// As with_gate, but a closed gate gives an exceptional future (gate_closed_exception) instead of
/// a throw.
template <typename Func>
futurize_t<std::invoke_result_t<std::decay_t<Func>&>> try_with_gate(gate& g, Func&& func) noexcept {
    using result = futurize_t<std::invoke_result_t<std::decay_t<Func>&>>;
    using value = typename result::value_type;
    auto h = g.try_hold();
    if (!h) {
        return make_exception_future<value>(gate_closed_exception());
    }
    try {
        return internal::invoke_holding(std::move(*h), std::decay_t<Func>(std::forward<Func>(func)));
    } catch (...) {
        return make_exception_future<value>(std::current_exception());
    }
}

}  // namespace reef
