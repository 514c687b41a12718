#include "reactor_test.hh"

#include "runtime/future_util.hh"
#include "runtime/scheduling.hh"
#include "runtime/timer.hh"

#include <chrono>
#include <stdexcept>

using namespace reef;
using namespace std::chrono_literals;

namespace {

void busy_for(std::chrono::microseconds d) {
    auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
    }
}

// CPU-bound work in `sg` until *stop: 20 us chunks, yielding when the quota is used up.
future<> spin(scheduling_group sg, const bool* stop) {
    return with_scheduling_group(sg, [stop]() -> future<> {
        while (!*stop) {
            busy_for(20us);
            co_await coroutine::maybe_yield();
        }
    });
}

double runtime_ratio(scheduling_group a, scheduling_group b, std::chrono::nanoseconds a0, std::chrono::nanoseconds b0) {
    auto ra = scheduling_group_stats(a).runtime - a0;
    auto rb = scheduling_group_stats(b).runtime - b0;
    return double(ra.count()) / double(rb.count());
}

}  // namespace

REEF_TEST(scheduling, cpu_splits_by_shares_and_follows_changes) {
    auto a = co_await create_scheduling_group("light", 100);
    auto b = co_await create_scheduling_group("heavy", 300);
    bool stop = false;
    auto fa = spin(a, &stop);
    auto fb = spin(b, &stop);

    co_await sleep(1200ms);
    double r = runtime_ratio(a, b, {}, {});
    EXPECT_NEAR(r, 1.0 / 3.0, 0.1 / 3.0) << "light:heavy CPU with shares 100:300";

    // Reverse the shares while both keep running: the split follows.
    auto a0 = scheduling_group_stats(a).runtime;
    auto b0 = scheduling_group_stats(b).runtime;
    co_await set_scheduling_group_shares(a, 300);
    co_await set_scheduling_group_shares(b, 100);
    co_await sleep(1200ms);
    double r2 = runtime_ratio(a, b, a0, b0);
    EXPECT_NEAR(r2, 3.0, 0.3) << "after set_shares(300, 100)";

    stop = true;
    co_await std::move(fa);
    co_await std::move(fb);
    EXPECT_GT(scheduling_group_stats(a).tasks_processed, 0u);
    EXPECT_GT(scheduling_group_stats(b).longest_wait.count(), 0);
    co_await destroy_scheduling_group(a);
    co_await destroy_scheduling_group(b);
    EXPECT_FALSE(find_scheduling_group("light"));
}

REEF_TEST(scheduling, continuations_inherit_the_group) {
    auto g = co_await create_scheduling_group("inherit", 200);
    EXPECT_EQ(scheduling_group_name(g), "inherit");
    EXPECT_EQ(scheduling_group_shares(g), 200);
    EXPECT_EQ(find_scheduling_group("inherit"), g);
    std::vector<unsigned> seen;
    co_await with_scheduling_group(g, [&seen]() -> future<> {
        seen.push_back(current_scheduling_group().id());
        co_await sleep(1ms);  // resumed by a timer callback: still in g
        seen.push_back(current_scheduling_group().id());
        promise<> p;
        auto f = p.get_future().then([&seen] { seen.push_back(current_scheduling_group().id()); });
        p.set_value();
        co_await std::move(f);
    });
    EXPECT_EQ(seen, (std::vector<unsigned>{g.id(), g.id(), g.id()}));
    EXPECT_EQ(current_scheduling_group(), scheduling_group());
    co_await destroy_scheduling_group(g);
}

REEF_TEST(scheduling, bad_requests) {
    EXPECT_THROW(co_await create_scheduling_group("zero", 0), std::invalid_argument);
    EXPECT_THROW(co_await create_scheduling_group("", 10), std::invalid_argument);
    auto g = co_await create_scheduling_group("dup", 10);
    EXPECT_THROW(co_await create_scheduling_group("dup", 10), std::invalid_argument);
    EXPECT_THROW(co_await set_scheduling_group_shares(g, -1), std::invalid_argument);
    EXPECT_THROW(co_await destroy_scheduling_group(scheduling_group()), std::invalid_argument);
    // Fill every id, then one more fails with a clear error.
    std::vector<scheduling_group> made{g};
    for (;;) {
        try {
            made.push_back(co_await create_scheduling_group("g" + std::to_string(made.size()), 10));
        } catch (const std::runtime_error& e) {
            EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
            break;
        }
    }
    EXPECT_EQ(made.size(), max_scheduling_groups - 1);
    for (auto s : made) {
        co_await destroy_scheduling_group(s);
    }
    EXPECT_EQ(all_scheduling_groups().size(), 1u);
}
