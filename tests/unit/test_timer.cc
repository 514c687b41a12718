#include "reactor_test.hh"
#include "runtime/coarse_clock.hh"
#include "runtime/future_util.hh"
#include "runtime/reactor.hh"
#include "runtime/timer.hh"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;

namespace {

double ms_since(steady_clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(steady_clock_type::now() - t0).count();
}

}  // namespace

REEF_TEST(timer, arm_fires_once_at_its_time) {
    int fired = 0;
    steady_clock_type::time_point when;
    timer<> t([&] {
        ++fired;
        when = steady_clock_type::now();
    });
    auto t0 = steady_clock_type::now();
    t.arm(10ms);
    EXPECT_TRUE(t.armed());
    EXPECT_GE(t.get_timeout(), t0 + 10ms);
    co_await sleep(40ms);
    EXPECT_EQ(fired, 1);
    EXPECT_FALSE(t.armed());
    EXPECT_GE(when - t0, 10ms);  // never early
}

REEF_TEST(timer, arm_in_the_past_fires_promptly) {
    bool fired = false;
    timer<> t([&] { fired = true; });
    t.arm(steady_clock_type::now() - 1s);
    co_await sleep(1ms);
    EXPECT_TRUE(fired);
}

REEF_TEST(timer, cancelled_timer_never_fires) {
    int fired = 0;
    timer<> t([&] { ++fired; });
    t.arm(5ms);
    EXPECT_TRUE(t.cancel());
    EXPECT_FALSE(t.armed());
    EXPECT_FALSE(t.cancel());  // not armed any more
    co_await sleep(30ms);
    EXPECT_EQ(fired, 0);
}

REEF_TEST(timer, rearm_earlier_fires_once_at_the_new_time) {
    int fired = 0;
    timer<> t([&] { ++fired; });
    auto t0 = steady_clock_type::now();
    t.arm(10s);
    t.rearm(steady_clock_type::now() + 5ms);
    co_await sleep(30ms);
    EXPECT_EQ(fired, 1);
    EXPECT_LT(ms_since(t0), 5000.0);
}

REEF_TEST(timer, rearm_later_does_not_fire_at_the_old_time) {
    int fired = 0;
    timer<> t([&] { ++fired; });
    t.arm(5ms);
    t.rearm(steady_clock_type::now() + 300ms);
    co_await sleep(20ms);
    EXPECT_EQ(fired, 0);
    EXPECT_TRUE(t.armed());
    co_await sleep(400ms);
    EXPECT_EQ(fired, 1);
}

REEF_TEST(timer, rearm_from_its_own_callback) {
    int fired = 0;
    timer<> t;
    t.set_callback([&] {
        if (++fired < 3) {
            t.arm(1ms);
        }
    });
    t.arm(1ms);
    co_await sleep(50ms);
    EXPECT_EQ(fired, 3);
    EXPECT_FALSE(t.armed());
}

REEF_TEST(timer, periodic_fires_repeatedly_until_cancelled) {
    int fired = 0;
    timer<> t([&] { ++fired; });
    auto t0 = steady_clock_type::now();
    t.arm_periodic(5ms);
    while (fired < 5 && ms_since(t0) < 5000) {
        co_await sleep(1ms);
    }
    EXPECT_GE(fired, 5);
    EXPECT_GE(ms_since(t0), 24.0);  // 5 periods, none early
    EXPECT_TRUE(t.armed());         // a periodic timer stays armed
    t.cancel();
    int at_cancel = fired;
    co_await sleep(20ms);
    EXPECT_EQ(fired, at_cancel);
}

REEF_TEST(timer, periodic_cancelled_from_its_callback) {
    int fired = 0;
    timer<> t;
    t.set_callback([&] {
        if (++fired == 3) {
            t.cancel();
        }
    });
    t.arm_periodic(2ms);
    co_await sleep(40ms);
    EXPECT_EQ(fired, 3);
    EXPECT_FALSE(t.armed());
}

REEF_TEST(timer, lowres_timer_fires) {
    int fired = 0;
    timer<lowres_clock> t([&] { ++fired; });
    auto t0 = lowres_clock::now();
    t.arm(10ms);
    auto deadline = steady_clock_type::now() + 5s;
    while (fired == 0 && steady_clock_type::now() < deadline) {
        co_await sleep(1ms);
    }
    EXPECT_EQ(fired, 1);
    EXPECT_GE(lowres_clock::now() - t0, 10ms);

    int periodic = 0;
    timer<lowres_clock> p([&] { ++periodic; });
    p.arm_periodic(5ms);
    deadline = steady_clock_type::now() + 5s;
    while (periodic < 3 && steady_clock_type::now() < deadline) {
        co_await sleep(1ms);
    }
    EXPECT_GE(periodic, 3);
    p.cancel();
}

REEF_TEST(timer, lowres_timer_cancel) {
    int fired = 0;
    timer<lowres_clock> t([&] { ++fired; });
    t.arm(5ms);
    t.cancel();
    co_await sleep(30ms);
    EXPECT_EQ(fired, 0);
}

REEF_TEST(timer, expire_in_order_of_their_deadlines) {
    std::vector<int> order;
    std::vector<std::unique_ptr<timer<>>> timers;
    auto base = steady_clock_type::now() + 5ms;
    // Armed out of order, spaced 2 ms apart.
    for (int i : {7, 2, 9, 0, 4, 1, 8, 3, 6, 5}) {
        auto t = std::make_unique<timer<>>([&order, i] { order.push_back(i); });
        t->arm(base + i * 2ms);
        timers.push_back(std::move(t));
    }
    co_await sleep(80ms);
    EXPECT_THAT(order, ::testing::ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
}

REEF_TEST(timer, many_timers_fire_in_deadline_order_and_cancelled_ones_never) {
    constexpr int n = 2000;
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> offset_us(0, 30000);
    struct rec {
        steady_clock_type::time_point deadline;
        std::unique_ptr<timer<>> t;
    };
    std::vector<rec> recs(n);
    std::vector<steady_clock_type::time_point> fired;
    std::vector<int> fired_ids;
    auto base = steady_clock_type::now() + 2ms;
    for (int i = 0; i < n; ++i) {
        recs[i].deadline = base + std::chrono::microseconds(offset_us(rng));
        recs[i].t = std::make_unique<timer<>>([&, i] {
            fired.push_back(recs[i].deadline);
            fired_ids.push_back(i);
        });
        recs[i].t->arm(recs[i].deadline);
    }
    // Cancel every third one, some by destruction.
    for (int i = 0; i < n; i += 3) {
        if (i % 2) {
            recs[i].t->cancel();
        } else {
            recs[i].t.reset();
        }
    }
    co_await sleep(60ms);
    EXPECT_EQ(fired.size(), size_t(n - (n + 2) / 3));
    EXPECT_TRUE(std::is_sorted(fired.begin(), fired.end()));
    for (int id : fired_ids) {
        EXPECT_NE(id % 3, 0) << "cancelled timer " << id << " fired";
    }
}

REEF_TEST(timer, destruction_cancels) {
    int fired = 0;
    {
        timer<> t([&] { ++fired; });
        t.arm(5ms);
    }
    {
        timer<lowres_clock> t([&] { ++fired; });
        t.arm(5ms);
    }
    co_await sleep(30ms);
    EXPECT_EQ(fired, 0);
}

REEF_TEST(timer, callback_runs_in_the_timers_scheduling_group) {
    unsigned seen = 99;
    timer<> t(scheduling_group(5), [&] { seen = current_scheduling_group().id(); });
    EXPECT_EQ(t.group().id(), 5u);
    t.arm(1ms);
    co_await sleep(10ms);
    EXPECT_EQ(seen, 5u);
    EXPECT_EQ(current_scheduling_group().id(), 0u);
}

// The reactor skips the precise clock read in rounds that run no task while the earliest timer
// lies beyond what the coarse clock's lag could hide; that rests on this bound.
TEST(coarse_clock, is_never_ahead_of_the_precise_clock_and_lags_it_by_at_most_the_bound) {
    const auto lag = coarse_clock_lag();
    EXPECT_GT(lag, 0ns);
    EXPECT_LE(lag, 100ms);
    for (int i = 0; i < 100000; ++i) {
        auto c1 = coarse_steady_now();
        auto p = steady_clock_type::now();
        auto c2 = coarse_steady_now();  // read after p: its true time is later than p's
        ASSERT_LE(c1, p);
        ASSERT_GE(c2 + lag, p);
    }
}

// A poller that always finds work keeps the reactor in rounds without tasks, where timers are
// checked against the coarse time first: a timer beyond the lag must still fire, never early.
REEF_TEST(timer, fires_on_time_while_a_busy_poller_keeps_rounds_free_of_tasks) {
    struct busy_poller final : pollfn {
        bool poll() override { return true; }
        bool pure_poll() override { return true; }
    };
    poller busy(std::make_unique<busy_poller>());
    const auto delay = std::chrono::duration_cast<std::chrono::nanoseconds>(3 * coarse_clock_lag() + 5ms);
    int fired = 0;
    steady_clock_type::time_point when{};
    timer<> t([&] {
        ++fired;
        when = steady_clock_type::now();
    });
    auto t0 = steady_clock_type::now();
    t.arm(delay);
    co_await sleep(delay + 300ms);
    EXPECT_EQ(fired, 1);
    EXPECT_GE(when - t0, delay);  // never early
    EXPECT_LT(when - t0, delay + 300ms);
}

REEF_TEST(timer, fired_timers_are_counted) {
    auto before = engine().get_stats().timers_fired;
    int fired = 0;
    timer<> a([&] { ++fired; });
    timer<> b([&] { ++fired; });
    a.arm(1ms);
    b.arm(2ms);
    co_await sleep(20ms);
    EXPECT_EQ(fired, 2);
    // a, b and sleep()'s own timer.
    EXPECT_EQ(engine().get_stats().timers_fired - before, 3u);
}

TEST(timer, armed_timer_outliving_its_reactor_is_disarmed) {
    timer<> t([] {});
    reef::testing::run_in_reactor([&]() -> future<> {
        t.arm(10s);
        co_return;
    });
    EXPECT_FALSE(t.armed());  // and its destructor does not reach for the dead reactor
}
