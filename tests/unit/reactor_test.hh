// Running futures-based tests inside a fresh reactor.
//
//   REEF_TEST(semaphore, waits) {
//       semaphore s(0);
//       ...
//       co_await s.wait();
//       EXPECT_EQ(...);
//   }
//
// The body is a coroutine returning future<>; it runs in a new reactor on the test's thread and
// the test fails if it throws or its future fails. ASSERT_* macros `return;`, which a coroutine
// cannot do: use EXPECT_* (or REEF_ASSERT, which co_returns).
#pragma once

#include "runtime/coroutine.hh"
#include "runtime/reactor.hh"

#include <gtest/gtest.h>

#include <exception>
#include <functional>

namespace reef::testing {

inline reactor_config test_reactor_config() {
    reactor_config cfg;
    cfg.handle_termination_signals = false;
    cfg.idle = idle_policy::sleep;  // do not burn the CI machine's two cores while waiting
    return cfg;
}

/// Run f() to completion in a new reactor on this thread; rethrows its exception.
inline void run_in_reactor(std::function<future<>()> f, reactor_config cfg = test_reactor_config()) {
    std::exception_ptr ex;
    run_reactor(cfg, [&]() -> future<int> {
        return futurize_invoke(f).then_wrapped([&](future<>&& fut) {
            if (fut.failed()) {
                ex = fut.get_exception();
            }
            return 0;
        });
    });
    if (ex) {
        std::rethrow_exception(ex);
    }
}

}  // namespace reef::testing

#define REEF_TEST(suite, name)                                                        \
    static ::reef::future<> reef_test_body_##suite##_##name();                        \
    TEST(suite, name) { ::reef::testing::run_in_reactor(&reef_test_body_##suite##_##name); } \
    static ::reef::future<> reef_test_body_##suite##_##name()

#define REEF_ASSERT(cond)                                     \
    do {                                                      \
        if (!(cond)) {                                        \
            ADD_FAILURE() << "REEF_ASSERT failed: " #cond;    \
            co_return;                                        \
        }                                                     \
    } while (0)

/// GTEST_SKIP for coroutine test bodies: records the skip with its reason and co_returns.
#define REEF_SKIP(reason)                                                                   \
    do {                                                                                    \
        GTEST_MESSAGE_("Skipped", ::testing::TestPartResult::kSkip) << reason;              \
        co_return;                                                                          \
    } while (0)
