#include "reactor_test.hh"
#include "runtime/abort_source.hh"
#include "sync_test_util.hh"

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;
using reef::testing::delay;
using reef::testing::settle;
using reef::testing::yield_once;

namespace {

struct custom_error : std::runtime_error {
    custom_error() : std::runtime_error("custom") {}
};

}  // namespace

TEST(abort_source, starts_unaborted_and_check_passes) {
    abort_source as;
    EXPECT_FALSE(as.abort_requested());
    EXPECT_NO_THROW(as.check());
    EXPECT_FALSE(as.abort_requested_exception_ptr());
    EXPECT_FALSE(as.reason());
}

TEST(abort_source, request_abort_calls_subscribers_in_order_once) {
    abort_source as;
    std::vector<int> calls;
    auto s1 = as.subscribe([&]() noexcept { calls.push_back(1); });
    auto s2 = as.subscribe([&](const abort_source::abort_reason& r) noexcept {
        EXPECT_FALSE(r.has_value());  // plain request_abort()
        calls.push_back(2);
    });
    ASSERT_TRUE(s1 && *s1);
    ASSERT_TRUE(s2 && *s2);
    as.request_abort();
    EXPECT_EQ(calls, (std::vector<int>{1, 2}));
    EXPECT_TRUE(as.abort_requested());
    EXPECT_THROW(as.check(), abort_requested_exception);
    // Subscriptions ran and are now inactive; a second request does nothing.
    EXPECT_FALSE(*s1);
    EXPECT_FALSE(*s2);
    as.request_abort();
    as.request_abort_ex(custom_error());
    EXPECT_EQ(calls.size(), 2u);
    EXPECT_THROW(as.check(), abort_requested_exception);
}

TEST(abort_source, request_abort_ex_passes_exception) {
    abort_source as;
    std::exception_ptr seen;
    auto s = as.subscribe([&](const abort_source::abort_reason& r) noexcept {
        ASSERT_TRUE(r.has_value());
        seen = *r;
    });
    as.request_abort_ex(custom_error());
    ASSERT_TRUE(seen);
    EXPECT_THROW(std::rethrow_exception(seen), custom_error);
    EXPECT_THROW(as.check(), custom_error);
    ASSERT_TRUE(as.reason().has_value());
}

TEST(abort_source, destroyed_subscription_is_not_called) {
    abort_source as;
    int calls = 0;
    {
        auto s = as.subscribe([&]() noexcept { ++calls; });
        ASSERT_TRUE(s);
    }
    auto s2 = as.subscribe([&]() noexcept { calls += 10; });
    s2->reset();
    EXPECT_FALSE(*s2);
    as.request_abort();
    EXPECT_EQ(calls, 0);
}

TEST(abort_source, subscribe_after_abort_returns_empty) {
    abort_source as;
    as.request_abort();
    bool called = false;
    auto s = as.subscribe([&]() noexcept { called = true; });
    EXPECT_FALSE(s.has_value());
    EXPECT_FALSE(called);
}

TEST(abort_source, moved_subscription_stays_registered) {
    abort_source as;
    int calls = 0;
    auto s = as.subscribe([&]() noexcept { ++calls; });
    abort_source::subscription moved = std::move(*s);
    EXPECT_FALSE(*s);
    EXPECT_TRUE(moved);
    s.reset();  // destroying the moved-from one must not unsubscribe the new one
    as.request_abort();
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(moved);
}

TEST(abort_source, moved_source_keeps_subscriptions) {
    abort_source as;
    int calls = 0;
    auto s = as.subscribe([&]() noexcept { ++calls; });
    abort_source as2(std::move(as));
    as2.request_abort();
    EXPECT_EQ(calls, 1);
}

TEST(abort_source, callback_may_destroy_own_and_other_subscriptions) {
    abort_source as;
    std::optional<abort_source::subscription> s1, s2, s3;
    std::vector<int> calls;
    s1 = as.subscribe([&]() noexcept {
        calls.push_back(1);
        s1.reset();  // its own subscription
        s2.reset();  // a later one: must not be called
    });
    s2 = as.subscribe([&]() noexcept { calls.push_back(2); });
    s3 = as.subscribe([&]() noexcept {
        calls.push_back(3);
        // Subscribing during the abort sees the source as aborted already.
        EXPECT_FALSE(as.subscribe([]() noexcept {}).has_value());
    });
    as.request_abort();
    EXPECT_EQ(calls, (std::vector<int>{1, 3}));
}

TEST(abort_source, subscription_outliving_source_is_inert) {
    std::optional<abort_source::subscription> s;
    {
        abort_source as;
        s = as.subscribe([]() noexcept { ADD_FAILURE() << "must not be called"; });
        ASSERT_TRUE(s);
    }
    EXPECT_FALSE(*s);
    s.reset();
}

REEF_TEST(abort_source, sleep_abortable_completes) {
    abort_source as;
    auto start = steady_clock_type::now();
    co_await sleep_abortable(5ms, as);
    EXPECT_GE(steady_clock_type::now() - start, 5ms);
}

REEF_TEST(abort_source, sleep_abortable_aborted) {
    abort_source as;
    auto start = steady_clock_type::now();
    auto f = sleep_abortable(10s, as);
    co_await settle(3);
    EXPECT_FALSE(f.available());
    as.request_abort();
    bool caught = false;
    try {
        co_await std::move(f);
    } catch (const sleep_aborted&) {
        caught = true;
    }
    EXPECT_TRUE(caught);
    EXPECT_LT(steady_clock_type::now() - start, 5s);
}

REEF_TEST(abort_source, sleep_abortable_aborted_with_custom_exception) {
    abort_source as;
    auto f = sleep_abortable<lowres_clock>(10s, as);
    co_await yield_once();
    as.request_abort_ex(custom_error());
    bool caught = false;
    try {
        co_await std::move(f);
    } catch (const custom_error&) {
        caught = true;
    }
    EXPECT_TRUE(caught);
}

REEF_TEST(abort_source, sleep_abortable_on_aborted_source_fails_at_once) {
    abort_source as;
    as.request_abort();
    auto f = sleep_abortable(10s, as);
    EXPECT_TRUE(f.available());
    EXPECT_TRUE(f.failed());
    bool caught = false;
    try {
        co_await std::move(f);
    } catch (const abort_requested_exception&) {
        caught = true;
    }
    EXPECT_TRUE(caught);
}

REEF_TEST(abort_source, abort_after_sleep_finished_is_harmless) {
    abort_source as;
    co_await sleep_abortable(1ms, as);
    as.request_abort();  // the finished sleep's subscription is gone
    co_await settle(2);
}
