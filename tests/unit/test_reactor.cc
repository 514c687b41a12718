#include "reactor_test.hh"
#include "runtime/future_util.hh"
#include "runtime/log.hh"
#include "runtime/reactor.hh"
#include "runtime/timer.hh"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;

namespace {

double ms_since(steady_clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(steady_clock_type::now() - t0).count();
}

reactor_config config_with(idle_policy p) {
    auto cfg = reef::testing::test_reactor_config();
    cfg.idle = p;
    return cfg;
}

// Collects log lines for the lifetime of the object.
class log_capture {
    std::mutex _m;
    std::vector<std::string> _lines;

public:
    log_capture() {
        log_registry::set_sink([this](log_level, std::string_view line) {
            std::lock_guard g(_m);
            _lines.emplace_back(line);
        });
    }
    ~log_capture() { log_registry::set_sink(nullptr); }
    std::vector<std::string> matching(std::string_view needle) {
        std::lock_guard g(_m);
        std::vector<std::string> out;
        for (auto& l : _lines) {
            if (l.find(needle) != std::string::npos) {
                out.push_back(l);
            }
        }
        return out;
    }
};

}  // namespace

// --- run_reactor and main ---

TEST(reactor, run_reactor_returns_mains_value) {
    EXPECT_EQ(run_reactor(reef::testing::test_reactor_config(), [] { return make_ready_future<int>(17); }), 17);
    int code = run_reactor(reef::testing::test_reactor_config(), []() -> future<int> {
        co_await sleep(1ms);
        co_return 5;
    });
    EXPECT_EQ(code, 5);
}

TEST(reactor, coroutine_lambda_captures_survive_suspension) {
    std::string greeting = "hello";
    int code = run_reactor(reef::testing::test_reactor_config(), [greeting]() -> future<int> {
        co_await sleep(1ms);
        co_return int(greeting.size());
    });
    EXPECT_EQ(code, 5);
}

TEST(reactor, exception_from_main_gives_1_and_is_logged) {
    log_capture logs;
    int code = run_reactor(reef::testing::test_reactor_config(), []() -> future<int> {
        co_await sleep(1ms);
        throw std::runtime_error("main went wrong");
    });
    EXPECT_EQ(code, 1);
    EXPECT_EQ(logs.matching("main went wrong").size(), 1u);
    EXPECT_EQ(run_reactor(reef::testing::test_reactor_config(),
                          []() -> future<int> { throw std::logic_error("synchronous throw"); }),
              1);
}

TEST(reactor, engine_exists_only_while_running) {
    EXPECT_FALSE(engine_is_ready());
    bool inside = false;
    run_reactor(reef::testing::test_reactor_config(), [&] {
        inside = engine_is_ready() && engine().id() == 0;
        return make_ready_future<int>(0);
    });
    EXPECT_TRUE(inside);
    EXPECT_FALSE(engine_is_ready());
}

// --- tasks ---

REEF_TEST(reactor, tasks_run_in_order_and_urgent_first) {
    std::vector<int> order;
    schedule(make_task([&] { order.push_back(1); }));
    schedule(make_task([&] { order.push_back(2); }));
    schedule_urgent(make_task([&] { order.push_back(0); }));
    co_await sleep(1ms);
    EXPECT_THAT(order, ::testing::ElementsAre(0, 1, 2));
}

REEF_TEST(reactor, need_preempt_turns_true_in_a_busy_loop) {
    // The quota is 0.5 ms; a loop that never yields must see need_preempt() within a few quotas.
    auto t0 = steady_clock_type::now();
    auto deadline = t0 + 5s;
    while (!need_preempt() && steady_clock_type::now() < deadline) {
    }
    double elapsed = ms_since(t0);
    EXPECT_TRUE(need_preempt());
    EXPECT_LT(elapsed, 100.0);
    co_await coroutine::maybe_yield();  // suspends, since the quota is used up
}

TEST(reactor, task_quota_option_sets_the_quota_timer) {
    auto cfg = reef::testing::test_reactor_config();
    cfg.task_quota = 20ms;
    reef::testing::run_in_reactor(
        []() -> future<> {
            EXPECT_EQ(engine().config().task_quota, 20ms);
            co_await coroutine::maybe_yield();
            // Measure from the start of a batch: the periodic quota timer is not aligned to it,
            // but the first expiry cannot come later than one quota after the batch began.
            co_await sleep(1ms);
            auto t0 = steady_clock_type::now();
            while (!need_preempt() && ms_since(t0) < 5000) {
            }
            EXPECT_TRUE(need_preempt());
            EXPECT_LT(ms_since(t0), 500.0);
        },
        cfg);
}

REEF_TEST(reactor, long_coroutine_loop_with_maybe_yield_lets_a_timer_fire) {
    bool fired = false;
    timer<> t([&] { fired = true; });
    t.arm(2ms);
    auto deadline = steady_clock_type::now() + 10s;
    long iterations = 0;
    while (!fired && steady_clock_type::now() < deadline) {
        ++iterations;
        co_await coroutine::maybe_yield();
    }
    EXPECT_TRUE(fired);
    EXPECT_GT(iterations, 1);
}

// --- stall detector ---

[[gnu::noinline]] void reef_test_stall_busy_function(std::chrono::milliseconds d) {
    auto end = steady_clock_type::now() + d;
    while (steady_clock_type::now() < end) {
        asm volatile("" ::: "memory");
    }
}

TEST(reactor, stall_detector_logs_a_symbolized_backtrace) {
    log_capture logs;
    auto cfg = reef::testing::test_reactor_config();
    cfg.stall_threshold = 10ms;
    reef::testing::run_in_reactor(
        []() -> future<> {
            co_await sleep(1ms);
            reef_test_stall_busy_function(60ms);
            co_await sleep(1ms);
            EXPECT_EQ(engine().get_stats().stalls, 1u);
        },
        cfg);
    auto stalls = logs.matching("reactor stalled");
    ASSERT_EQ(stalls.size(), 1u);
    EXPECT_THAT(stalls[0], ::testing::HasSubstr("reef_test_stall_busy_function"));
    EXPECT_THAT(stalls[0], ::testing::HasSubstr("threshold 10 ms"));
}

TEST(reactor, no_stall_report_below_the_threshold) {
    log_capture logs;
    auto cfg = reef::testing::test_reactor_config();
    cfg.stall_threshold = 500ms;
    reef::testing::run_in_reactor(
        []() -> future<> {
            reef_test_stall_busy_function(20ms);
            co_await sleep(1ms);
            EXPECT_EQ(engine().get_stats().stalls, 0u);
        },
        cfg);
    EXPECT_TRUE(logs.matching("reactor stalled").empty());
}

// --- at_exit ---

TEST(reactor, at_exit_hooks_run_in_reverse_order_and_survive_failures) {
    log_capture logs;
    std::vector<int> order;
    int code = run_reactor(reef::testing::test_reactor_config(), [&] {
        engine().at_exit([&]() -> future<> {
            order.push_back(1);
            return make_ready_future<>();
        });
        engine().at_exit([&]() -> future<> {
            // An unready hook is waited for before the next one runs.
            co_await sleep(5ms);
            order.push_back(2);
        });
        engine().at_exit([&]() -> future<> {
            order.push_back(3);
            return make_exception_future<>(std::runtime_error("hook three failed"));
        });
        engine().at_exit([&]() -> future<> {
            order.push_back(4);
            throw std::runtime_error("hook four threw");
        });
        return make_ready_future<int>(9);
    });
    EXPECT_EQ(code, 9);
    EXPECT_THAT(order, ::testing::ElementsAre(4, 3, 2, 1));
    EXPECT_EQ(logs.matching("at_exit hook failed").size(), 2u);
    EXPECT_EQ(logs.matching("hook three failed").size(), 1u);
    EXPECT_EQ(logs.matching("hook four threw").size(), 1u);
}

TEST(reactor, exit_twice_keeps_the_first_code) {
    int hooks = 0;
    int code = run_reactor(reef::testing::test_reactor_config(), [&]() -> future<int> {
        engine().at_exit([&] {
            ++hooks;
            return make_ready_future<>();
        });
        engine().exit(4);
        EXPECT_TRUE(engine().stopping());
        engine().exit(5);
        co_return 6;
    });
    EXPECT_EQ(code, 4);
    EXPECT_EQ(hooks, 1);
}

// --- signals ---

namespace {

// main raises `signo` and waits on a promise that only the at_exit hook resolves: run_reactor
// can only return through the signal's graceful stop.
int stop_with_signal(int signo, bool use_kill, std::vector<std::string>& events) {
    reactor_config cfg = reef::testing::test_reactor_config();
    cfg.handle_termination_signals = true;
    promise<int> never_by_itself;
    return run_reactor(cfg, [&]() -> future<int> {
        engine().at_exit([&] {
            events.push_back("hook");
            never_by_itself.set_value(42);  // main's late value must not replace the exit code
            return make_ready_future<>();
        });
        if (use_kill) {
            ::kill(::getpid(), signo);
        } else {
            ::raise(signo);
        }
        events.push_back("signal sent");
        int v = co_await never_by_itself.get_future();
        events.push_back("main resumed");
        co_return v;
    });
}

}  // namespace

TEST(reactor, sigterm_via_raise_stops_gracefully_with_0) {
    log_capture logs;
    std::vector<std::string> events;
    EXPECT_EQ(stop_with_signal(SIGTERM, false, events), 0);
    EXPECT_THAT(events, ::testing::ElementsAre("signal sent", "hook", "main resumed"));
    EXPECT_EQ(logs.matching("SIGTERM received").size(), 1u);
}

TEST(reactor, sigterm_via_kill_stops_gracefully_with_0) {
    std::vector<std::string> events;
    EXPECT_EQ(stop_with_signal(SIGTERM, true, events), 0);
    EXPECT_THAT(events, ::testing::ElementsAre("signal sent", "hook", "main resumed"));
}

TEST(reactor, sigint_stops_gracefully_with_0) {
    log_capture logs;
    std::vector<std::string> events;
    EXPECT_EQ(stop_with_signal(SIGINT, false, events), 0);
    EXPECT_THAT(events, ::testing::ElementsAre("signal sent", "hook", "main resumed"));
    EXPECT_EQ(logs.matching("SIGINT received").size(), 1u);
}

REEF_TEST(reactor, handle_signal_runs_the_handler_on_the_reactor) {
    int calls = 0;
    engine().handle_signal(SIGUSR1, [&] { ++calls; });
    ::raise(SIGUSR1);
    EXPECT_EQ(calls, 0);  // not in signal context: the handler waits for the reactor's poll
    auto deadline = steady_clock_type::now() + 5s;
    while (calls == 0 && steady_clock_type::now() < deadline) {
        co_await sleep(1ms);
    }
    EXPECT_EQ(calls, 1);
    EXPECT_THROW(engine().handle_signal(0, [] {}), std::invalid_argument);
}

// --- idle policies, pollers and wakeup ---

TEST(reactor, sleep_policy_sleeps_and_still_fires_timers) {
    reef::testing::run_in_reactor(
        []() -> future<> {
            auto before = engine().get_stats();
            auto t0 = steady_clock_type::now();
            co_await sleep(20ms);
            double elapsed = ms_since(t0);
            auto after = engine().get_stats();
            EXPECT_GE(elapsed, 19.0);
            EXPECT_LT(elapsed, 2000.0);
            EXPECT_GT(after.sleeps, before.sleeps);
            EXPECT_GT(after.idle_time, before.idle_time);
            EXPECT_LT(after.polls - before.polls, 1000u);  // it slept instead of spinning
        },
        config_with(idle_policy::sleep));
}

TEST(reactor, poll_policy_never_sleeps) {
    reef::testing::run_in_reactor(
        []() -> future<> {
            auto t0 = steady_clock_type::now();
            co_await sleep(20ms);
            EXPECT_GE(ms_since(t0), 19.0);
            EXPECT_EQ(engine().get_stats().sleeps, 0u);
            EXPECT_GT(engine().get_stats().polls, 10u);
        },
        config_with(idle_policy::poll));
}

namespace {
double ms_between(std::chrono::nanoseconds a, std::chrono::nanoseconds b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

TEST(reactor, idle_poll_time_counts_empty_polling_and_not_work) {
    reef::testing::run_in_reactor(
        []() -> future<> {
            // Idle: waiting for a timer with nothing else to do is empty polling, never sleep.
            auto before = engine().get_stats();
            auto t0 = steady_clock_type::now();
            co_await sleep(50ms);
            double idle_wall = ms_since(t0);
            auto mid = engine().get_stats();
            EXPECT_EQ(mid.idle_time, before.idle_time);
            EXPECT_GE(ms_between(before.idle_poll_time, mid.idle_poll_time), 30.0);
            EXPECT_LE(ms_between(before.idle_poll_time, mid.idle_poll_time), idle_wall);

            // Busy: tasks re-queuing themselves for 50 ms leave the loop no empty round.
            promise<> done;
            auto deadline = steady_clock_type::now() + 50ms;
            std::uint64_t steps = 0;
            std::function<void()> step = [&] {
                ++steps;
                if (steady_clock_type::now() >= deadline) {
                    done.set_value();
                    return;
                }
                schedule(make_task([&] { step(); }));
            };
            step();
            auto f = done.get_future();
            co_await std::move(f);
            auto after = engine().get_stats();
            EXPECT_GT(steps, 100u);
            EXPECT_GT(after.polls, mid.polls);  // the quota made it poll in between
            EXPECT_LT(ms_between(mid.idle_poll_time, after.idle_poll_time), 10.0);
        },
        config_with(idle_policy::poll));
}

TEST(reactor, idle_poll_time_leaves_sleep_to_idle_time) {
    reef::testing::run_in_reactor(
        []() -> future<> {
            auto before = engine().get_stats();
            co_await sleep(50ms);
            auto after = engine().get_stats();
            EXPECT_GE(ms_between(before.idle_time, after.idle_time), 30.0);
            EXPECT_LT(ms_between(before.idle_poll_time, after.idle_poll_time), 10.0);
        },
        config_with(idle_policy::sleep));
}

TEST(reactor, adaptive_policy_polls_before_sleeping) {
    auto cfg = config_with(idle_policy::adaptive);
    cfg.idle_poll = 10s;  // longer than the test: it must never get to sleep
    reef::testing::run_in_reactor(
        []() -> future<> {
            co_await sleep(20ms);
            EXPECT_EQ(engine().get_stats().sleeps, 0u);
            // Switching at run time: with no polling time it sleeps at once.
            engine().set_idle_policy(idle_policy::adaptive, 0us);
            co_await sleep(20ms);
            EXPECT_GT(engine().get_stats().sleeps, 0u);
        },
        cfg);
}

namespace {

// A poller fed by another thread: the pattern of smp rings and NIC queues.
struct flag_poller final : pollfn {
    std::atomic<bool> flag{false};
    promise<> seen;
    bool done = false;
    bool poll() override {
        if (!done && flag.load(std::memory_order_acquire)) {
            done = true;
            seen.set_value();
            return true;
        }
        return false;
    }
    bool pure_poll() override { return !done && flag.load(std::memory_order_acquire); }
};

}  // namespace

TEST(reactor, wakeup_from_another_thread_ends_the_sleep) {
    reef::testing::run_in_reactor(
        []() -> future<> {
            auto p = std::make_unique<flag_poller>();
            auto* fp = p.get();
            poller registered(std::move(p));
            timer<> watchdog([] {});
            watchdog.arm(10s);  // without the wakeup the reactor would sleep until this
            auto fut = fp->seen.get_future();
            reactor* r = &engine();
            auto t0 = steady_clock_type::now();
            std::thread producer([fp, r] {
                std::this_thread::sleep_for(30ms);
                fp->flag.store(true, std::memory_order_release);
                r->wakeup();
            });
            co_await std::move(fut);
            producer.join();
            EXPECT_LT(ms_since(t0), 3000.0);
            EXPECT_GT(engine().get_stats().sleeps, 0u);
        },
        config_with(idle_policy::sleep));
}

TEST(reactor, pollers_run_every_iteration_until_unregistered) {
    struct counting_poller final : pollfn {
        int* count;
        explicit counting_poller(int* c) : count(c) {}
        bool poll() override {
            ++*count;
            return false;
        }
        bool pure_poll() override { return false; }
    };
    reef::testing::run_in_reactor(
        []() -> future<> {
            int count = 0;
            {
                poller p(std::make_unique<counting_poller>(&count));
                co_await sleep(5ms);
            }
            int after_unregister = count;
            EXPECT_GT(after_unregister, 0);
            co_await sleep(5ms);
            EXPECT_EQ(count, after_unregister);
        },
        config_with(idle_policy::poll));
}

TEST(reactor, set_task_quota_rejects_non_positive) {
    reef::testing::run_in_reactor([]() -> future<> {
        EXPECT_THROW(engine().set_task_quota(0us), std::invalid_argument);
        engine().set_task_quota(2ms);
        EXPECT_EQ(engine().config().task_quota, 2ms);
        co_return;
    });
}

TEST(reactor, parse_idle_policy_names_the_bad_value) {
    EXPECT_EQ(parse_idle_policy("poll"), idle_policy::poll);
    EXPECT_EQ(parse_idle_policy("sleep"), idle_policy::sleep);
    EXPECT_EQ(parse_idle_policy("adaptive"), idle_policy::adaptive);
    try {
        parse_idle_policy("spin");
        ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
        EXPECT_THAT(e.what(), ::testing::HasSubstr("'spin'"));
    }
    EXPECT_STREQ(to_string(idle_policy::adaptive), "adaptive");
}

TEST(reactor, a_poll_may_register_and_unregister_pollers) {
    // A poller whose poll() adds many pollers (forcing the list to reallocate) and removes one
    // registered earlier: the reactor's walk over its pollers must survive both.
    struct counting final : pollfn {
        int n = 0;
        bool poll() override { return ++n, false; }
        bool pure_poll() override { return false; }
    };
    struct churning final : pollfn {
        std::vector<std::unique_ptr<poller>>* added;
        std::unique_ptr<poller>* victim;
        bool done = false;
        bool poll() override {
            if (!done) {
                done = true;
                for (int i = 0; i < 64; ++i) {
                    added->push_back(std::make_unique<poller>(std::make_unique<counting>()));
                }
                victim->reset();
            }
            return false;
        }
        bool pure_poll() override { return false; }
    };
    reef::testing::run_in_reactor(
        []() -> future<> {
            std::vector<std::unique_ptr<poller>> added;
            auto victim = std::make_unique<poller>(std::make_unique<counting>());
            auto c = std::make_unique<churning>();
            c->added = &added;
            c->victim = &victim;
            auto* cp = c.get();
            poller churner(std::move(c));
            auto after = std::make_unique<poller>(std::make_unique<counting>());
            co_await sleep(5ms);
            EXPECT_TRUE(cp->done);
            EXPECT_EQ(victim, nullptr);
            REEF_ASSERT(added.size() == 64u);
            // Every poller added from inside a poll runs from the next round on.
            for (auto& p : added) {
                EXPECT_GT(static_cast<counting&>(p->fn()).n, 0);
            }
            EXPECT_GT(static_cast<counting&>(after->fn()).n, 0);
        },
        config_with(idle_policy::poll));
}
