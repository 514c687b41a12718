#include "reactor_test.hh"
#include "runtime/syscall_pool.hh"
#include "runtime/timer.hh"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;

namespace {

struct blocking_error : std::runtime_error {
    int code;
    explicit blocking_error(int c) : std::runtime_error("blocking_error"), code(c) {}
};

reactor_config config_with(idle_policy p, unsigned blocking_threads) {
    auto cfg = reef::testing::test_reactor_config();
    cfg.idle = p;
    cfg.blocking_threads = blocking_threads;
    return cfg;
}

future<> delay(steady_clock_type::duration d) {
    promise<> pr;
    timer<> t([&pr] { pr.set_value(); });
    t.arm(d);
    co_await pr.get_future();
}

double ms_since(steady_clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(steady_clock_type::now() - t0).count();
}

}  // namespace

REEF_TEST(syscall_pool, returns_values) {
    int v = co_await run_blocking([] { return 42; });
    EXPECT_EQ(v, 42);
    auto s = co_await run_blocking([] { return std::string(1000, 'x'); });
    EXPECT_EQ(s.size(), 1000u);
    auto p = co_await run_blocking([] { return std::make_unique<int>(5); });
    REEF_ASSERT(p != nullptr);
    EXPECT_EQ(*p, 5);
    // The function really runs on another thread, not on the reactor's.
    auto reactor_thread = std::this_thread::get_id();
    auto pool_thread = co_await run_blocking([] { return std::this_thread::get_id(); });
    EXPECT_NE(pool_thread, reactor_thread);
}

REEF_TEST(syscall_pool, propagates_exceptions_with_their_type) {
    int code = 0;
    try {
        (void)co_await run_blocking([]() -> int { throw blocking_error(17); });
    } catch (const blocking_error& e) {
        code = e.code;
    }
    EXPECT_EQ(code, 17);

    int err = 0;
    try {
        co_await run_blocking([] {
            if (::close(-1) != 0) {
                throw std::system_error(errno, std::system_category(), "close");
            }
        });
    } catch (const std::system_error& e) {
        err = e.code().value();
    }
    EXPECT_EQ(err, EBADF);
}

REEF_TEST(syscall_pool, void_functions) {
    std::atomic<int> calls{0};
    co_await run_blocking([&] { calls.fetch_add(1); });
    co_await engine().run_blocking([&] { calls.fetch_add(1); });
    EXPECT_EQ(calls.load(), 2);
}

REEF_TEST(syscall_pool, thousand_concurrent_calls_complete) {
    constexpr int n = 1000;
    std::vector<future<int>> futures;
    futures.reserve(n);
    for (int i = 0; i < n; ++i) {
        futures.push_back(run_blocking([i] { return i * 2; }));
    }
    long sum = 0;
    int completed = 0;
    for (int i = 0; i < n; ++i) {
        int v = co_await std::move(futures[i]);
        EXPECT_EQ(v, i * 2);
        sum += v;
        ++completed;
    }
    EXPECT_EQ(completed, n);
    EXPECT_EQ(sum, long(n) * (n - 1));
}

TEST(syscall_pool, sleeping_reactor_is_woken_by_a_completion) {
    reef::testing::run_in_reactor(
        []() -> future<> {
            // Nothing else is armed: without the pool's wakeup the reactor would sleep until this
            // watchdog, 10 s away, instead of returning as soon as the call completes.
            timer<> watchdog([] {});
            watchdog.arm(10s);
            auto sleeps_before = engine().get_stats().sleeps;
            auto t0 = steady_clock_type::now();
            co_await run_blocking([] { std::this_thread::sleep_for(50ms); });
            double elapsed = ms_since(t0);
            EXPECT_GE(elapsed, 49.0);
            EXPECT_LT(elapsed, 3000.0);
            EXPECT_GT(engine().get_stats().sleeps, sleeps_before);  // it did sleep while waiting
        },
        config_with(idle_policy::sleep, 1));
}

TEST(syscall_pool, blocking_threads_run_calls_concurrently) {
    reef::testing::run_in_reactor(
        []() -> future<> {
            co_await run_blocking([] {});
            EXPECT_EQ(engine().syscall_pool().threads(), 4u);
            auto t0 = steady_clock_type::now();
            std::vector<future<>> naps;
            for (int i = 0; i < 4; ++i) {
                naps.push_back(run_blocking([] { std::this_thread::sleep_for(250ms); }));
            }
            for (auto& f : naps) {
                co_await std::move(f);
            }
            double elapsed = ms_since(t0);
            EXPECT_GE(elapsed, 249.0);
            EXPECT_LT(elapsed, 750.0);  // one after the other would take 1000 ms
        },
        config_with(idle_policy::sleep, 4));
}

TEST(syscall_pool, one_blocking_thread_serializes_calls) {
    reef::testing::run_in_reactor(
        []() -> future<> {
            auto t0 = steady_clock_type::now();
            auto a = run_blocking([] { std::this_thread::sleep_for(100ms); });
            auto b = run_blocking([] { std::this_thread::sleep_for(100ms); });
            co_await std::move(a);
            co_await std::move(b);
            EXPECT_GE(ms_since(t0), 199.0);
            EXPECT_EQ(engine().syscall_pool().threads(), 1u);
        },
        config_with(idle_policy::sleep, 1));
}

TEST(syscall_pool, reactor_keeps_running_tasks_during_a_blocking_call) {
    reef::testing::run_in_reactor(
        []() -> future<> {
            int ticks = 0;
            timer<> t([&] { ++ticks; });
            t.arm_periodic(5ms);
            co_await run_blocking([] { std::this_thread::sleep_for(100ms); });
            t.cancel();
            EXPECT_GE(ticks, 5);  // ~20 expected; the reactor was never blocked
        },
        config_with(idle_policy::adaptive, 1));
}

TEST(syscall_pool, reactor_exit_waits_for_a_running_call) {
    // main returns while a blocking call runs: the reactor's destruction waits for the pool
    // thread, and the call's outcome reaches its waiter instead of vanishing.
    std::atomic<bool> started{false};
    std::atomic<bool> finished{false};
    int outcome = 0;
    int code = run_reactor(reef::testing::test_reactor_config(), [&]() -> future<int> {
        (void)run_blocking([&] {
            started.store(true);
            std::this_thread::sleep_for(50ms);
            finished.store(true);
            return 1;
        }).then_wrapped([&](future<int>&& f) {
            try {
                outcome = f.get();
            } catch (const broken_promise&) {
                outcome = -1;
            }
        });
        while (!started.load()) {
            co_await delay(1ms);
        }
        co_return 3;
    });
    EXPECT_EQ(code, 3);
    EXPECT_TRUE(finished.load());
    EXPECT_EQ(outcome, 1);
}
