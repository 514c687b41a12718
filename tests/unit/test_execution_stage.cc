#include "reactor_test.hh"

#include "runtime/execution_stage.hh"
#include "runtime/reactor.hh"
#include "runtime/scheduling.hh"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

using namespace reef;

REEF_TEST(execution_stage, calls_run_in_one_batch_in_order) {
    // A batch yields when the task quota runs out (tested below). On a loaded machine, or under
    // ASan, 100 calls can outlast the default 0.5 ms quota and come out as two batches: a long
    // quota keeps this test about batching alone.
    const auto quota = engine().config().task_quota;
    engine().set_task_quota(std::chrono::seconds(10));
    std::vector<int> order;
    auto stage = make_execution_stage("double", [&order](int x) {
        order.push_back(x);
        return x * 2;
    });
    std::vector<future<int>> fs;
    for (int i = 0; i < 100; ++i) {
        fs.push_back(stage(i));
    }
    EXPECT_TRUE(order.empty());  // queued, not run inline
    int sum = 0;
    for (auto& f : fs) {
        sum += co_await std::move(f);
    }
    EXPECT_EQ(sum, 2 * 4950);
    REEF_ASSERT(order.size() == 100u);
    for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(order[i], i);
    }
    EXPECT_EQ(stage.get_stats().calls, 100u);
    EXPECT_EQ(stage.get_stats().batches, 1u);
    EXPECT_DOUBLE_EQ(stage.get_stats().average_batch(), 100.0);
    EXPECT_EQ(stage.name(), "double");
    engine().set_task_quota(quota);
}

REEF_TEST(execution_stage, flush_runs_before_work_queued_after_the_call) {
    auto stage = make_execution_stage("s", [](int x) { return x; });
    auto f = stage(7);
    bool ready_when_later_task_ran = false;
    promise<> done;
    schedule(make_task([&] {
        ready_when_later_task_ran = f.available();
        done.set_value();
    }));
    co_await done.get_future();
    EXPECT_TRUE(ready_when_later_task_ran);
    EXPECT_EQ(co_await std::move(f), 7);
}

REEF_TEST(execution_stage, exceptions_and_futures_per_call) {
    auto stage = make_execution_stage("maybe", [](int x) -> future<std::string> {
        if (x < 0) {
            throw std::invalid_argument("negative");
        }
        return make_ready_future<std::string>(std::to_string(x));
    });
    auto good = stage(5);
    auto bad = stage(-1);
    EXPECT_EQ(co_await std::move(good), "5");
    EXPECT_THROW(co_await std::move(bad), std::invalid_argument);
}

REEF_TEST(execution_stage, groups_batch_separately_and_in_their_group) {
    auto g = co_await create_scheduling_group("stage-group", 100);
    std::vector<unsigned> groups;
    auto stage = make_execution_stage("where", [&groups](int) { groups.push_back(current_scheduling_group().id()); });
    auto f1 = stage(1);
    auto f2 = with_scheduling_group(g, [&stage] { return stage(2); });
    co_await std::move(f1);
    co_await std::move(f2);
    REEF_ASSERT(groups.size() == 2u);
    EXPECT_EQ(stage.get_stats().batches, 2u);
    std::sort(groups.begin(), groups.end());
    EXPECT_EQ(groups, (std::vector<unsigned>{0, g.id()}));
    co_await destroy_scheduling_group(g);
}

REEF_TEST(execution_stage, long_batches_yield_at_the_quota) {
    auto slow = make_execution_stage("slow", [](int x) {
        auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
        while (std::chrono::steady_clock::now() < end) {
        }
        return x;
    });
    std::vector<future<int>> fs;
    for (int i = 0; i < 50; ++i) {
        fs.push_back(slow(i));
    }
    for (auto& f : fs) {
        co_await std::move(f);
    }
    // 50 x 200 us = 10 ms of work with a 0.5 ms quota: the flush gave the reactor back.
    EXPECT_GT(slow.get_stats().batches, 5u);
    EXPECT_EQ(slow.get_stats().calls_executed, 50u);
}

REEF_TEST(execution_stage, a_long_run_queue_does_not_delay_the_batch_past_the_quota) {
    int fillers_run = 0;
    int fillers_before_flush = -1;
    auto stage = make_execution_stage("bounded", [&](int) { fillers_before_flush = fillers_run; });
    // 200 tasks of 50 us each (10 ms, 20 quotas of work) queued ahead of the batch's flush task.
    promise<> all_done;
    int remaining = 200;
    for (int i = 0; i < 200; ++i) {
        schedule(make_task([&] {
            auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
            while (std::chrono::steady_clock::now() < end) {
            }
            ++fillers_run;
            if (--remaining == 0) {
                all_done.set_value();
            }
        }));
    }
    auto f = stage(1);
    co_await std::move(f);
    co_await all_done.get_future();
    // The batch ran when the first quota ended (about 10 fillers in), not after all 200.
    EXPECT_GE(fillers_before_flush, 0);
    EXPECT_LT(fillers_before_flush, 100);
}
