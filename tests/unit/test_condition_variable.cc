#include "reactor_test.hh"
#include "runtime/condition_variable.hh"
#include "runtime/thread.hh"
#include "sync_test_util.hh"

#include <chrono>
#include <memory>
#include <stdexcept>
#include <vector>

using namespace reef;
using reef::testing::custom_error;
using reef::testing::fails_with;
using namespace std::chrono_literals;
using reef::testing::delay;
using reef::testing::settle;
using reef::testing::yield_once;

REEF_TEST(condition_variable, signal_wakes_exactly_one_in_order) {
    condition_variable cv;
    std::vector<int> woken;
    std::vector<future<>> fs;
    for (int i = 0; i < 3; ++i) {
        fs.push_back(cv.wait().then([&woken, i] { woken.push_back(i); }));
    }
    co_await settle();
    EXPECT_TRUE(woken.empty());
    cv.signal();
    co_await settle();
    EXPECT_EQ(woken, (std::vector<int>{0}));
    cv.signal();
    co_await settle();
    EXPECT_EQ(woken, (std::vector<int>{0, 1}));
    EXPECT_TRUE(cv.has_waiters());
    cv.signal();
    for (auto& f : fs) {
        co_await std::move(f);
    }
    EXPECT_EQ(woken, (std::vector<int>{0, 1, 2}));
    EXPECT_FALSE(cv.has_waiters());
}

REEF_TEST(condition_variable, broadcast_wakes_all) {
    condition_variable cv;
    int woken = 0;
    std::vector<future<>> fs;
    for (int i = 0; i < 4; ++i) {
        fs.push_back(cv.wait().then([&] { ++woken; }));
    }
    cv.broadcast();
    EXPECT_FALSE(cv.has_waiters());
    for (auto& f : fs) {
        co_await std::move(f);
    }
    EXPECT_EQ(woken, 4);
}

REEF_TEST(condition_variable, signal_without_waiters_is_not_remembered) {
    condition_variable cv;
    cv.signal();
    cv.broadcast();
    auto f = cv.wait();
    co_await settle();
    EXPECT_FALSE(f.available());
    cv.signal();
    co_await std::move(f);
}

REEF_TEST(condition_variable, awaited_from_coroutines) {
    condition_variable cv;
    int stage = 0;
    auto waiter = [&]() -> future<> {
        co_await cv.wait();
        stage = 1;
        co_await cv.wait();
        stage = 2;
    };
    auto f = waiter();
    co_await yield_once();
    EXPECT_EQ(stage, 0);
    cv.signal();
    co_await settle();
    EXPECT_EQ(stage, 1);
    cv.broadcast();
    co_await std::move(f);
    EXPECT_EQ(stage, 2);
}

REEF_TEST(condition_variable, wait_with_predicate) {
    condition_variable cv;
    int value = 0;
    int checks = 0;
    // Ready at once, no waiting, if the predicate already holds.
    auto ready = cv.wait([&] { return true; });
    EXPECT_TRUE(ready.available());
    co_await std::move(ready);

    auto f = cv.wait([&] {
        ++checks;
        return value >= 3;
    });
    EXPECT_FALSE(f.available());
    for (int i = 1; i <= 3; ++i) {
        value = i;
        cv.signal();
        co_await settle(3);
    }
    co_await std::move(f);
    EXPECT_EQ(value, 3);
    EXPECT_EQ(checks, 4);  // once up front, then after each of the 3 wakeups
    EXPECT_FALSE(cv.has_waiters());
}

REEF_TEST(condition_variable, predicate_exception_fails_wait) {
    condition_variable cv;
    bool throw_now = false;
    auto f = cv.wait([&]() -> bool {
        if (throw_now) {
            throw custom_error();
        }
        return false;
    });
    throw_now = true;
    cv.signal();
    EXPECT_TRUE(co_await fails_with<custom_error>(std::move(f)));
    EXPECT_TRUE(co_await fails_with<custom_error>(cv.wait([]() -> bool { throw custom_error(); })));
}

REEF_TEST(condition_variable, timeout) {
    condition_variable cv;
    auto start = steady_clock_type::now();
    auto f = cv.wait(10ms);
    auto other = cv.wait();
    EXPECT_TRUE(co_await fails_with<condition_variable_timed_out>(std::move(f)));
    EXPECT_GE(steady_clock_type::now() - start, 10ms);
    // The expired waiter is gone: the signal goes to the remaining one.
    cv.signal();
    co_await std::move(other);
    EXPECT_FALSE(cv.has_waiters());
}

REEF_TEST(condition_variable, signalled_before_timeout) {
    condition_variable cv;
    auto f = cv.wait(steady_clock_type::now() + 20ms);
    cv.signal();
    co_await std::move(f);
    co_await delay(40ms);  // the cancelled timer must not fire into a dead waiter
    EXPECT_FALSE(cv.has_waiters());
}

REEF_TEST(condition_variable, timeout_with_predicate) {
    condition_variable cv;
    bool flag = false;
    auto start = steady_clock_type::now();
    auto f = cv.wait(30ms, [&] { return flag; });
    co_await delay(5ms);
    cv.signal();  // wakes it, predicate still false: waits again, for the remaining time only
    EXPECT_TRUE(co_await fails_with<condition_variable_timed_out>(std::move(f)));
    auto elapsed = steady_clock_type::now() - start;
    EXPECT_GE(elapsed, 30ms);
    EXPECT_LT(elapsed, 10s);

    auto g = cv.wait(10s, [&] { return flag; });
    flag = true;
    cv.broadcast();
    co_await std::move(g);
}

REEF_TEST(condition_variable, broken_fails_waiters_and_later_waits) {
    condition_variable cv;
    auto f1 = cv.wait();
    auto f2 = cv.wait(10s);
    cv.broken();
    EXPECT_FALSE(cv.has_waiters());
    EXPECT_TRUE(co_await fails_with<broken_condition_variable>(std::move(f1)));
    EXPECT_TRUE(co_await fails_with<broken_condition_variable>(std::move(f2)));
    EXPECT_TRUE(co_await fails_with<broken_condition_variable>(cv.wait()));
    EXPECT_TRUE(co_await fails_with<broken_condition_variable>(cv.wait([] { return false; })));
    co_await cv.wait([] { return true; });  // a predicate that holds needs no waiting
}

REEF_TEST(condition_variable, broken_with_custom_exception_and_destruction) {
    condition_variable cv;
    auto f = cv.wait();
    cv.broken(std::make_exception_ptr(custom_error()));
    EXPECT_TRUE(co_await fails_with<custom_error>(std::move(f)));

    auto cv2 = std::make_unique<condition_variable>();
    auto g = cv2->wait();
    cv2.reset();
    EXPECT_TRUE(co_await fails_with<broken_condition_variable>(std::move(g)));
}

REEF_TEST(condition_variable, wait_in_thread) {
    condition_variable cv;
    bool ready = false;
    auto t = async([&] {
        cv.wait([&] { return ready; }).get();
        return 9;
    });
    co_await yield_once();
    ready = true;
    cv.signal();
    EXPECT_EQ(co_await std::move(t), 9);
}

REEF_TEST(condition_variable, huge_timeout_means_no_timeout) {
    condition_variable cv;
    auto f = cv.wait(condition_variable::duration::max());
    co_await delay(2ms);
    EXPECT_FALSE(f.available());  // an overflowing deadline would have expired at once
    cv.signal();
    co_await std::move(f);
}
