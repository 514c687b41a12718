#include "smp_test.hh"

#include "runtime/smp.hh"
#include "runtime/timer.hh"

#include <csignal>
#include <stdexcept>
#include <unistd.h>
#include <string>
#include <vector>

using namespace reef;

REEF_SMP_TEST(smp, runs_on_the_target_shard, 2) {
    EXPECT_EQ(smp::count, 2u);
    EXPECT_EQ(this_shard_id(), 0u);
    unsigned where = co_await smp::submit_to(1, [] { return this_shard_id(); });
    EXPECT_EQ(where, 1u);
    // To the own shard: runs inline, no message.
    auto sent_before = smp::queue(0, 1).get_stats().sent;
    unsigned here = co_await smp::submit_to(0, [] { return this_shard_id(); });
    EXPECT_EQ(here, 0u);
    EXPECT_EQ(smp::queue(0, 1).get_stats().sent, sent_before);
}

REEF_SMP_TEST(smp, preserves_order_per_pair, 2) {
    // The vector lives on shard 1 (only shard 1 touches it).
    static std::vector<int>* seen;
    co_await smp::submit_to(1, [] { seen = new std::vector<int>(); });
    std::vector<future<>> fs;
    for (int i = 0; i < 10000; ++i) {
        fs.push_back(smp::submit_to(1, [i] { seen->push_back(i); }));
    }
    for (auto& f : fs) {
        co_await std::move(f);
    }
    bool ordered = co_await smp::submit_to(1, [] {
        bool ok = seen->size() == 10000;
        for (int i = 0; ok && i < 10000; ++i) {
            ok = (*seen)[i] == i;
        }
        delete seen;
        return ok;
    });
    EXPECT_TRUE(ordered);
}

REEF_SMP_TEST(smp, exceptions_come_back, 2) {
    try {
        co_await smp::submit_to(1, []() -> int { throw std::runtime_error("boom on shard " + std::to_string(this_shard_id())); });
        ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "boom on shard 1");
    }
    // An exceptional future returned by the remote function, too.
    auto f = smp::submit_to(1, [] { return make_exception_future<int>(std::logic_error("remote future failed")); });
    try {
        co_await std::move(f);
        ADD_FAILURE() << "no exception";
    } catch (const std::logic_error& e) {
        EXPECT_STREQ(e.what(), "remote future failed");
    }
}

REEF_SMP_TEST(smp, remote_futures_are_awaited, 2) {
    // The remote function returns an unready future; its value arrives when it resolves there.
    int v = co_await smp::submit_to(1, [] {
        auto pr = std::make_unique<promise<int>>();
        auto f = pr->get_future();
        auto* t = new timer<>();
        t->set_callback([t, p = pr.release()] {
            p->set_value(42);
            delete p;
            // The timer is not periodic: deleting it from its own callback is safe.
            delete t;
        });
        t->arm(std::chrono::milliseconds(5));
        return f;
    });
    EXPECT_EQ(v, 42);
}

REEF_SMP_TEST(smp, back_pressure_when_the_ring_is_full, 2) {
    // Far more requests than the ring holds, none awaited until all are sent: the surplus waits
    // on the sending shard, nothing is dropped.
    constexpr int n = 20000;
    auto blocked_before = smp::queue(0, 1).get_stats().blocked;
    std::vector<future<int>> fs;
    fs.reserve(n);
    for (int i = 0; i < n; ++i) {
        fs.push_back(smp::submit_to(1, [i] { return i; }));
    }
    EXPECT_GT(smp::queue(0, 1).get_stats().blocked, blocked_before);
    EXPECT_LE(smp::queue(0, 1).inflight(), 1024u);
    long sum = 0;
    for (auto& f : fs) {
        sum += co_await std::move(f);
    }
    EXPECT_EQ(sum, long(n) * (n - 1) / 2);
    EXPECT_EQ(smp::queue(0, 1).inflight(), 0u);
}

REEF_SMP_TEST(smp, both_directions_and_nested, 2) {
    // Shard 1 calls back into shard 0 while serving shard 0's request.
    int v = co_await smp::submit_to(1, [] {
        return smp::submit_to(0, [] { return int(this_shard_id()) + 10; }).then([](int x) { return x + int(this_shard_id()); });
    });
    EXPECT_EQ(v, 11);
}

REEF_SMP_TEST(smp, invoke_on_all_and_others, 2) {
    static std::atomic<unsigned> mask{0};
    mask = 0;
    co_await smp::invoke_on_all([] { mask.fetch_or(1u << this_shard_id()); });
    EXPECT_EQ(mask.load(), 3u);
    mask = 0;
    co_await smp::invoke_on_others([] { mask.fetch_or(1u << this_shard_id()); });
    EXPECT_EQ(mask.load(), 2u);
}

REEF_SMP_TEST(smp, wakes_a_sleeping_shard, 2) {
    // Shard 1 sleeps (idle policy sleep) between requests; each request must wake it.
    for (int i = 0; i < 200; ++i) {
        co_await smp::submit_to(1, [] {});
        if (i % 50 == 0) {
            promise<> pr;
            timer<> t([&] { pr.set_value(); });
            t.arm(std::chrono::milliseconds(3));
            co_await pr.get_future();
        }
    }
    auto sleeps = co_await smp::submit_to(1, [] { return engine().get_stats().sleeps; });
    EXPECT_GT(sleeps, 0u);
}

TEST(smp, single_shard) {
    reef::testing::run_on_shards(1, []() -> future<> {
        EXPECT_EQ(smp::count, 1u);
        int v = co_await smp::submit_to(0, [] { return 5; });
        EXPECT_EQ(v, 5);
    });
}

TEST(smp, main_exit_code_and_shutdown) {
    smp_options o;
    o.smp = 2;
    o.thread_affinity = false;
    reactor_config cfg;
    cfg.handle_termination_signals = false;
    int code = smp::run(o, cfg, []() -> future<int> {
        co_await smp::submit_to(1, [] {});
        co_return 7;
    });
    EXPECT_EQ(code, 7);
    EXPECT_EQ(smp::count, 1u);
}

TEST(smp, sigterm_stops_all_shards) {
    smp_options o;
    o.smp = 2;
    o.thread_affinity = false;
    reactor_config cfg;
    cfg.handle_termination_signals = true;
    static bool shard1_hook_ran;
    shard1_hook_ran = false;
    int code = smp::run(o, cfg, []() -> future<int> {
        co_await smp::submit_to(1, [] {
            engine().at_exit([] {
                shard1_hook_ran = true;
                return make_ready_future<>();
            });
        });
        // Wait until the shutdown (started by the signal) releases us.
        promise<> released;
        engine().at_exit([&released] {
            released.set_value();
            return make_ready_future<>();
        });
        ::kill(::getpid(), SIGTERM);
        co_await released.get_future();
        co_return 3;
    });
    EXPECT_EQ(code, 0);
    EXPECT_TRUE(shard1_hook_ran);
}

TEST(smp, cpuset_parsing) {
    EXPECT_EQ(parse_cpuset("0"), (std::vector<unsigned>{0}));
    EXPECT_EQ(parse_cpuset("0-2,5,7-8"), (std::vector<unsigned>{0, 1, 2, 5, 7, 8}));
    EXPECT_EQ(parse_cpuset("3,1,1"), (std::vector<unsigned>{1, 3}));
    for (const char* bad : {"", "a", "1-", "-1", "3-1", "1,,2", "1 2"}) {
        EXPECT_THROW(parse_cpuset(bad), std::invalid_argument) << bad;
    }
}

TEST(smp, rejects_more_shards_than_cpus) {
    smp_options o;
    o.smp = unsigned(available_cpus().size()) + 1;
    try {
        resolve_shard_cpus(o);
        ADD_FAILURE() << "no error";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("--smp"), std::string::npos) << e.what();
    }
    smp_options c;
    c.cpuset = {4000};
    try {
        resolve_shard_cpus(c);
        ADD_FAILURE() << "no error";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("4000"), std::string::npos) << e.what();
    }
    EXPECT_THROW(smp::run(o, reactor_config{}, [] { return make_ready_future<int>(0); }), std::invalid_argument);
}

TEST(smp, polling_shards_are_not_woken_by_system_calls) {
    smp_options o;
    o.smp = 2;
    o.thread_affinity = false;
    reactor_config cfg;
    cfg.handle_termination_signals = false;
    cfg.idle = idle_policy::poll;
    std::uint64_t writes_to_1 = 1, writes_to_0 = 1;
    smp::run(o, cfg, [&]() -> future<int> {
        auto before = co_await smp::submit_to(1, [] { return engine().wakeup_writes(); });
        auto before0 = engine().wakeup_writes();
        for (int i = 0; i < 2000; ++i) {
            co_await smp::submit_to(1, [] {});
        }
        writes_to_1 = co_await smp::submit_to(1, [] { return engine().wakeup_writes(); }) - before;
        writes_to_0 = engine().wakeup_writes() - before0;
        co_return 0;
    });
    EXPECT_EQ(writes_to_1, 0u);
    EXPECT_EQ(writes_to_0, 0u);
}

TEST(smp, a_shard_failing_to_start_stops_all_with_its_error) {
    smp_options o;
    o.smp = 2;
    o.thread_affinity = false;
    o.shard_init = [](unsigned shard) {
        if (shard == 1) {
            throw std::runtime_error("shard 1: cannot open device");
        }
    };
    reactor_config cfg;
    cfg.handle_termination_signals = false;
    bool main_ran = false;
    try {
        smp::run(o, cfg, [&] {
            main_ran = true;
            return make_ready_future<int>(0);
        });
        ADD_FAILURE() << "smp::run did not fail";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "shard 1: cannot open device");
    }
    EXPECT_FALSE(main_ran);
    EXPECT_EQ(smp::count, 1u);
    // The failure on shard 0 itself, too.
    o.shard_init = [](unsigned shard) {
        if (shard == 0) {
            throw std::runtime_error("shard 0 refuses");
        }
    };
    EXPECT_THROW(smp::run(o, cfg, [] { return make_ready_future<int>(0); }), std::runtime_error);
    // And the next run works normally.
    o.shard_init = nullptr;
    EXPECT_EQ(smp::run(o, cfg, [] { return make_ready_future<int>(4); }), 4);
}

REEF_SMP_TEST(smp, submit_to_takes_an_lvalue_function, 2) {
    std::string tag = "copied";
    auto f = [tag] { return tag + " to shard " + std::to_string(this_shard_id()); };
    auto r = co_await smp::submit_to(1, f);
    EXPECT_EQ(r, "copied to shard 1");
    // The caller's function object is still usable: it was copied, not moved from.
    EXPECT_EQ(f(), "copied to shard 0");
}
