#include "reactor_test.hh"
#include "runtime/misuse.hh"
#include "runtime/thread.hh"
#include "runtime/timer.hh"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;

namespace {

future<> delay(steady_clock_type::duration d) {
    promise<> pr;
    timer<> t([&pr] { pr.set_value(); });
    t.arm(d);
    co_await pr.get_future();
}

struct test_error : std::runtime_error {
    int code;
    explicit test_error(int c) : std::runtime_error("test_error " + std::to_string(c)), code(c) {}
};

}  // namespace

REEF_TEST(thread, get_suspends_only_the_thread) {
    promise<int> pr;
    std::vector<std::string> events;
    thread th([&] {
        events.push_back("thread: waiting");
        int v = pr.get_future().get();
        events.push_back("thread: got " + std::to_string(v));
    });
    // The thread starts at the next task batch and suspends in get(); the reactor goes on.
    co_await delay(1ms);
    events.push_back("reactor: still running");
    pr.set_value(42);
    co_await th.join();
    EXPECT_THAT(events, ::testing::ElementsAre("thread: waiting", "reactor: still running", "thread: got 42"));
}

REEF_TEST(thread, get_of_ready_future_does_not_suspend) {
    int steps = 0;
    co_await async([&] {
        int v = make_ready_future<int>(5).get();
        steps += v;
        make_ready_future<>().get();
        ++steps;
    });
    EXPECT_EQ(steps, 6);
}

REEF_TEST(thread, get_of_exceptional_future_throws_in_the_thread) {
    bool caught = false;
    co_await async([&] {
        promise<> pr;
        auto f = pr.get_future();
        pr.set_exception(test_error(3));
        try {
            f.get();
        } catch (const test_error& e) {
            caught = e.code == 3;
        }
    });
    EXPECT_TRUE(caught);
}

REEF_TEST(thread, yield_alternates_threads) {
    std::string trace;
    thread a([&] {
        for (int i = 0; i < 3; ++i) {
            trace += 'a';
            thread::yield();
        }
    });
    thread b([&] {
        for (int i = 0; i < 3; ++i) {
            trace += 'b';
            thread::yield();
        }
    });
    co_await a.join();
    co_await b.join();
    EXPECT_EQ(trace, "ababab");
}

REEF_TEST(thread, maybe_yield_lets_a_timer_fire) {
    bool fired = false;
    timer<> t([&] { fired = true; });
    t.arm(2ms);
    int yields_needed = co_await async([&] {
        // Without maybe_yield the loop would keep the reactor from ever expiring the timer.
        auto deadline = steady_clock_type::now() + 10s;
        int spins = 0;
        while (!fired && steady_clock_type::now() < deadline) {
            ++spins;
            thread::maybe_yield();
        }
        return spins;
    });
    EXPECT_TRUE(fired);
    EXPECT_GT(yields_needed, 0);
}

REEF_TEST(thread, should_yield_follows_need_preempt) {
    bool saw_preempt = false;
    co_await async([&] {
        EXPECT_TRUE(thread::running_in_thread());
        auto deadline = steady_clock_type::now() + 10s;
        while (!thread::should_yield() && steady_clock_type::now() < deadline) {
        }
        saw_preempt = thread::should_yield() && need_preempt();
        thread::yield();
    });
    EXPECT_TRUE(saw_preempt);
    EXPECT_FALSE(thread::running_in_thread());
}

REEF_TEST(thread, exception_comes_through_join) {
    thread th([] { throw test_error(7); });
    int code = 0;
    try {
        co_await th.join();
    } catch (const test_error& e) {
        code = e.code;
    }
    EXPECT_EQ(code, 7);
}

REEF_TEST(thread, exception_after_suspension_comes_through_join) {
    thread th([] {
        delay(1ms).get();
        throw test_error(8);
    });
    auto f = th.join().then_wrapped([](future<>&& f) {
        try {
            f.get();
        } catch (const test_error& e) {
            return e.code;
        }
        return 0;
    });
    EXPECT_EQ(co_await std::move(f), 8);
}

REEF_TEST(thread, async_returns_values) {
    int v = co_await async([](int a, int b) { return a * b; }, 6, 7);
    EXPECT_EQ(v, 42);
    std::string s = co_await async([] {
        delay(1ms).get();
        return std::string("after sleeping");
    });
    EXPECT_EQ(s, "after sleeping");
    auto moved = co_await async([](std::unique_ptr<int> p) { return p; }, std::make_unique<int>(9));
    REEF_ASSERT(moved != nullptr);
    EXPECT_EQ(*moved, 9);
}

REEF_TEST(thread, async_propagates_exceptions) {
    auto f = async([]() -> int { throw test_error(11); });
    int code = 0;
    try {
        (void)co_await std::move(f);
    } catch (const test_error& e) {
        code = e.code;
    }
    EXPECT_EQ(code, 11);
    bool void_failed = false;
    try {
        co_await async([] {
            delay(1ms).get();
            throw std::out_of_range("late");
        });
    } catch (const std::out_of_range&) {
        void_failed = true;
    }
    EXPECT_TRUE(void_failed);
}

REEF_TEST(thread, many_threads_interleave) {
    constexpr int n = 200;
    constexpr int rounds = 10;
    std::vector<int> progress(n, 0);
    int running = 0;
    int max_running = 0;
    std::vector<thread> threads;
    threads.reserve(n);
    for (int i = 0; i < n; ++i) {
        threads.emplace_back([&, i] {
            ++running;
            max_running = std::max(max_running, running);
            for (int r = 0; r < rounds; ++r) {
                ++progress[i];
                if (r % 2) {
                    thread::yield();
                } else {
                    delay(std::chrono::microseconds(100 * (i % 5))).get();
                }
            }
            --running;
        });
    }
    for (auto& t : threads) {
        co_await t.join();
    }
    EXPECT_EQ(max_running, n);  // every thread was suspended at once, none blocked the others
    for (int i = 0; i < n; ++i) {
        EXPECT_EQ(progress[i], rounds) << "thread " << i;
    }
}

REEF_TEST(thread, attributes_scheduling_group_is_kept) {
    const scheduling_group sg(3);
    std::vector<unsigned> seen;
    thread_attributes attr;
    attr.sched_group = sg;
    attr.stack_size = 64 * 1024;
    thread th(attr, [&] {
        seen.push_back(current_scheduling_group().id());
        delay(1ms).get();
        seen.push_back(current_scheduling_group().id());
        thread::yield();
        seen.push_back(current_scheduling_group().id());
        // Continuations created in the thread inherit its group.
        make_ready_future<>().then([&] { seen.push_back(current_scheduling_group().id()); }).get();
        promise<> pr;
        auto f = pr.get_future().then([&] { seen.push_back(current_scheduling_group().id()); });
        pr.set_value();
        f.get();
        // By default a thread takes the group of the code that creates it.
        seen.push_back(async([] { return current_scheduling_group().id(); }).get());
    });
    co_await th.join();
    EXPECT_THAT(seen, ::testing::ElementsAre(3u, 3u, 3u, 3u, 3u, 3u));
    EXPECT_EQ(current_scheduling_group().id(), 0u);
}

TEST(thread, get_outside_a_thread_throws_when_misuse_does_not_abort) {
    reef::testing::run_in_reactor([]() -> future<> {
        bool was_aborting = abort_on_misuse();
        set_abort_on_misuse(false);
        promise<int> pr;
        auto f = pr.get_future();
        std::string what;
        try {
            (void)f.get();
        } catch (const misuse_error& e) {
            what = e.what();
        }
        set_abort_on_misuse(was_aborting);
        EXPECT_THAT(what, ::testing::HasSubstr("outside a reef::thread"));
        // The future was left untouched and still works.
        pr.set_value(1);
        EXPECT_EQ(co_await std::move(f), 1);
    });
}

TEST(thread_death, get_outside_a_thread_aborts_with_the_reason) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            set_abort_on_misuse(true);
            reef::testing::run_in_reactor([]() -> future<> {
                promise<int> pr;
                (void)pr.get_future().get();
                co_return;
            });
        },
        "API misuse: future::get\\(\\) on an unready future outside a reef::thread");
}

TEST(thread_death, yield_outside_a_thread_aborts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            set_abort_on_misuse(true);
            thread::yield();
        },
        "yield\\(\\) outside a reef::thread");
}

// Stack overflow: the thread recurses until it runs off the bottom of its stack. The guard page
// below the stack turns that into SIGSEGV at an address just under the stack, which the handler
// (on its own signal stack, since the thread's is used up) checks and reports.
namespace {

std::uintptr_t g_stack_top_estimate;
std::size_t g_stack_size;
volatile std::uint64_t g_depth_limit = ~std::uint64_t(0);

void guard_page_handler(int, siginfo_t* si, void*) {
    auto page = std::uintptr_t(::sysconf(_SC_PAGESIZE));
    auto addr = reinterpret_cast<std::uintptr_t>(si->si_addr);
    // The real stack bottom is within a page or so of top - size; the guard page lies below it.
    auto bottom = g_stack_top_estimate - g_stack_size;
    bool in_guard = addr + 2 * page >= bottom && addr < bottom + 2 * page;
    const char* msg = in_guard ? "fault in the guard page\n" : "fault elsewhere\n";
    [[maybe_unused]] auto r = ::write(STDERR_FILENO, msg, __builtin_strlen(msg));
    ::_exit(in_guard ? 3 : 4);
}

[[gnu::noinline]] std::uint64_t recurse(std::uint64_t depth) {
    volatile char frame[1024];
    frame[0] = char(depth);
    frame[sizeof(frame) - 1] = char(depth);
    if (depth >= g_depth_limit) {
        return frame[0];
    }
    return recurse(depth + 1) + frame[sizeof(frame) - 1];
}

void overflow_a_thread_stack() {
    static char altstack[64 * 1024];
    stack_t ss{};
    ss.ss_sp = altstack;
    ss.ss_size = sizeof(altstack);
    ::sigaltstack(&ss, nullptr);
    struct sigaction sa{};
    sa.sa_sigaction = guard_page_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGSEGV, &sa, nullptr);
    ::sigaction(SIGBUS, &sa, nullptr);

    reef::testing::run_in_reactor([]() -> future<> {
        thread_attributes attr;
        attr.stack_size = 64 * 1024;
        g_stack_size = attr.stack_size;
        co_await async(attr, [] {
            volatile char marker = 0;
            g_stack_top_estimate = reinterpret_cast<std::uintptr_t>(&marker);
            (void)recurse(0);
        });
    });
}

}  // namespace

TEST(thread_death, stack_overflow_hits_the_guard_page) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(overflow_a_thread_stack(), ::testing::ExitedWithCode(3), "fault in the guard page");
}
