// Helpers for the synchronization-primitive tests (test_semaphore, test_gate, ...): letting
// scheduled continuations run, and waiting without depending on the code under test.
#pragma once

#include "runtime/clocks.hh"
#include "runtime/coroutine.hh"
#include "runtime/future.hh"
#include "runtime/reactor.hh"
#include "runtime/timer.hh"

#include <chrono>
#include <memory>
#include <stdexcept>

namespace reef::testing {

namespace internal_test {
struct yield_task final : task {
    promise<> pr;
    void run_and_dispose() noexcept override {
        pr.set_value();
        delete this;
    }
};
}  // namespace internal_test

/// An exception type of the tests' own, to check that exactly it travels through.
struct custom_error : std::runtime_error {
    custom_error() : std::runtime_error("custom") {}
};

/// Resolves to whether f fails with an E (false for a value or another exception).
template <typename E, typename T>
future<bool> fails_with(future<T> f) {
    try {
        co_await std::move(f);
    } catch (const E&) {
        co_return true;
    } catch (...) {
        co_return false;
    }
    co_return false;
}

/// Resolves after every task queued before the call has run (one trip through the run queue).
inline future<> yield_once() {
    auto* t = new internal_test::yield_task;
    auto f = t->pr.get_future();
    schedule(t);
    return f;
}

/// Let chains of continuations settle: several trips through the run queue.
inline future<> settle(int rounds = 20) {
    for (int i = 0; i < rounds; ++i) {
        co_await yield_once();
    }
}

/// Resolves after `d` (a plain timer; independent of the primitives under test).
inline future<> delay(steady_clock_type::duration d) {
    promise<> p;
    timer<> t([&p] { p.set_value(); });
    t.arm(d);
    co_await p.get_future();
}

}  // namespace reef::testing
