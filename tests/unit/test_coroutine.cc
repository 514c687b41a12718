// C++20 coroutines over reef::future: co_await of ready and unready futures, co_return of values
// and futures, exceptions in both directions, nesting, long loops without stack growth,
// maybe_yield and preemption, coroutine::lambda capture lifetime, misuse.
#include "reactor_test.hh"
#include "runtime/coroutine.hh"
#include "runtime/misuse.hh"
#include "runtime/timer.hh"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;

namespace {

struct tracked {
    static inline int live = 0;
    int value;
    std::vector<std::string>* events = nullptr;

    explicit tracked(int v, std::vector<std::string>* ev = nullptr) : value(v), events(ev) { ++live; }
    tracked(const tracked& x) : value(x.value), events(x.events) { ++live; }
    tracked(tracked&& x) noexcept : value(x.value), events(x.events) { ++live; }
    ~tracked() {
        --live;
        if (events) {
            events->push_back("destroyed " + std::to_string(value));
        }
    }
};

class custom_error : public std::runtime_error {
public:
    int code;
    explicit custom_error(int c) : std::runtime_error("custom " + std::to_string(c)), code(c) {}
};

class misuse_throws {
    bool _old = abort_on_misuse();

public:
    misuse_throws() { set_abort_on_misuse(false); }
    ~misuse_throws() { set_abort_on_misuse(_old); }
};

// A future that becomes ready with v only after the tasks queued before it have run.
template <typename T>
future<T> later(T v) {
    promise<T> p;
    auto f = p.get_future();
    schedule(make_task([p = std::move(p), v = std::move(v)]() mutable { p.set_value(std::move(v)); }));
    return f;
}
future<> later() {
    promise<> p;
    auto f = p.get_future();
    schedule(make_task([p = std::move(p)]() mutable { p.set_value(); }));
    return f;
}

future<int> add_ready(int a, int b) {
    int x = co_await make_ready_future<int>(a);
    int y = co_await make_ready_future<int>(b);
    co_return x + y;
}

future<int> add_later(int a, int b) {
    int x = co_await later(a);
    int y = co_await later(b);
    co_return x + y;
}

future<int> throws_before_suspending() {
    throw custom_error(1);
    co_return 0;
}

future<int> throws_after_suspending() {
    co_await later();
    throw custom_error(2);
    co_return 0;
}

future<> void_coroutine(int& out) {
    co_await later();
    out = 5;
}

future<> void_coroutine_with_co_return(int& out, bool early) {
    if (early) {
        out = 1;
        co_return;
    }
    co_await later();
    out = 2;
}

future<int> nested_level3(int v) {
    co_return co_await later(v) + 1;
}
future<int> nested_level2(int v) {
    int r = co_await nested_level3(v);
    co_return r * 2;
}
future<int> nested_level1(int v) {
    auto a = nested_level2(v);
    auto b = nested_level2(v + 1);
    co_return co_await std::move(a) + co_await std::move(b);
}

future<int> nested_thrower(int depth) {
    if (depth == 0) {
        co_await later();
        throw custom_error(depth);
    }
    co_return co_await nested_thrower(depth - 1);
}

future<int> recursive_sum(int n) {
    if (n == 0) {
        co_return co_await later(0);
    }
    co_return n + co_await recursive_sum(n - 1);
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Ready paths run synchronously (no reactor needed)

TEST(coroutine, ready_awaits_complete_synchronously) {
    auto f = add_ready(2, 3);
    ASSERT_TRUE(f.available());
    EXPECT_EQ(f.get(), 5);
}

TEST(coroutine, exception_before_first_suspension_goes_into_the_future) {
    future<int> f = make_ready_future<int>(0);
    EXPECT_NO_THROW(f = throws_before_suspending());
    ASSERT_TRUE(f.available());
    EXPECT_THROW(f.get(), custom_error);
}

TEST(coroutine, awaiting_a_failed_future_rethrows_the_original_type) {
    auto f = []() -> future<int> {
        try {
            co_await make_exception_future<int>(custom_error(42));
        } catch (const custom_error& e) {
            co_return e.code;
        }
        co_return -1;
    }();
    EXPECT_EQ(f.get(), 42);
}

TEST(coroutine, maybe_yield_without_preemption_does_not_suspend) {
    auto f = []() -> future<int> {
        int n = 0;
        for (int i = 0; i < 100; ++i) {
            co_await coroutine::maybe_yield();
            ++n;
        }
        co_return n;
    }();
    ASSERT_TRUE(f.available());
    EXPECT_EQ(f.get(), 100);
}

TEST(coroutine, co_return_of_a_ready_future) {
    auto f = []() -> future<std::string> { co_return make_ready_future<std::string>("fwd"); }();
    EXPECT_EQ(f.get(), "fwd");
    auto g = []() -> future<int> { co_return make_exception_future<int>(custom_error(3)); }();
    EXPECT_THROW(g.get(), custom_error);
}

TEST(coroutine, move_only_values) {
    auto f = []() -> future<std::unique_ptr<int>> {
        auto p = co_await make_ready_future<std::unique_ptr<int>>(std::make_unique<int>(6));
        *p += 1;
        co_return p;
    }();
    EXPECT_EQ(*f.get(), 7);
}

// ------------------------------------------------------------------------------------------------
// Unready paths

REEF_TEST(coroutine, await_unready_future) {
    promise<int> p;
    bool resumed = false;
    // Named, so the closure (and the references it captured) outlives the suspension.
    auto body = [&]() -> future<int> {
        int v = co_await p.get_future();
        resumed = true;
        co_return v * 3;
    };
    auto f = body();
    EXPECT_FALSE(f.available());
    p.set_value(4);
    EXPECT_FALSE(resumed);  // resumed by the reactor, not inside set_value
    EXPECT_EQ(co_await std::move(f), 12);
    EXPECT_TRUE(resumed);
}

REEF_TEST(coroutine, await_mixed_ready_and_unready) {
    EXPECT_EQ(co_await add_later(20, 22), 42);
    EXPECT_EQ(co_await add_ready(1, 1), 2);
}

REEF_TEST(coroutine, co_return_of_an_unready_future) {
    promise<int> p;
    auto f = [&]() -> future<int> { co_return p.get_future(); }();
    EXPECT_FALSE(f.available());
    p.set_value(9);
    EXPECT_EQ(co_await std::move(f), 9);

    promise<int> q;
    auto g = [&]() -> future<int> { co_return q.get_future(); }();
    q.set_exception(custom_error(4));
    EXPECT_THROW(co_await std::move(g), custom_error);
}

REEF_TEST(coroutine, exception_after_suspension) {
    auto f = throws_after_suspending();
    EXPECT_FALSE(f.available());
    try {
        co_await std::move(f);
        ADD_FAILURE() << "no exception";
    } catch (const custom_error& e) {
        EXPECT_EQ(e.code, 2);
    }
}

REEF_TEST(coroutine, exception_from_unready_future_into_coroutine) {
    promise<int> p;
    auto f = [](future<int> in) -> future<std::string> {
        try {
            co_await std::move(in);
        } catch (const custom_error& e) {
            co_return "caught " + std::to_string(e.code);
        }
        co_return "not caught";
    }(p.get_future());
    p.set_exception(custom_error(8));
    EXPECT_EQ(co_await std::move(f), "caught 8");
}

REEF_TEST(coroutine, exception_propagates_through_nested_coroutines) {
    try {
        co_await nested_thrower(10);
        ADD_FAILURE() << "no exception";
    } catch (const custom_error& e) {
        EXPECT_EQ(e.code, 0);
    }
}

REEF_TEST(coroutine, nested_coroutines) {
    // level1(5) = level2(5) + level2(6) = (5 + 1) * 2 + (6 + 1) * 2
    EXPECT_EQ(co_await nested_level1(5), 26);
}

REEF_TEST(coroutine, deep_recursion_of_unready_coroutines) {
    EXPECT_EQ(co_await recursive_sum(2000), 2000 * 2001 / 2);
}

REEF_TEST(coroutine, void_coroutines) {
    int out = 0;
    co_await void_coroutine(out);
    EXPECT_EQ(out, 5);
    auto f = void_coroutine_with_co_return(out, true);
    EXPECT_TRUE(f.available());
    co_await std::move(f);
    EXPECT_EQ(out, 1);
    co_await void_coroutine_with_co_return(out, false);
    EXPECT_EQ(out, 2);
    auto failing = []() -> future<> {
        co_await later();
        throw custom_error(5);
    }();
    EXPECT_THROW(co_await std::move(failing), custom_error);
}

REEF_TEST(coroutine, coroutine_as_continuation_is_flattened) {
    promise<int> p;
    auto f = p.get_future().then([](int v) -> future<int> {
        co_await later();
        co_return v + 1;
    });
    static_assert(std::is_same_v<decltype(f), future<int>>);
    p.set_value(1);
    EXPECT_EQ(co_await std::move(f), 2);
}

REEF_TEST(coroutine, broken_promise_into_coroutine) {
    auto p = std::make_unique<promise<int>>();
    auto f = [&]() -> future<int> { co_return co_await p->get_future(); }();
    schedule(make_task([&] { p.reset(); }));
    EXPECT_THROW(co_await std::move(f), broken_promise);
}

// ------------------------------------------------------------------------------------------------
// Long loops: no stack growth, preemption

REEF_TEST(coroutine, million_ready_awaits_in_a_loop) {
    // When the task quota runs out a ready await suspends and resumes from the reactor; either
    // way nothing nests, so a million iterations use constant stack.
    std::int64_t sum = 0;
    for (int i = 0; i < 1000000; ++i) {
        sum += co_await make_ready_future<int>(i & 7);
    }
    std::int64_t expected = 0;
    for (int i = 0; i < 1000000; ++i) {
        expected += i & 7;
    }
    EXPECT_EQ(sum, expected);
}

REEF_TEST(coroutine, many_ready_coroutine_calls_in_a_loop) {
    std::int64_t sum = 0;
    for (int i = 0; i < 300000; ++i) {
        sum += co_await add_ready(i, 1);
    }
    EXPECT_EQ(sum, std::int64_t(300000) * 299999 / 2 + 300000);
}

REEF_TEST(coroutine, many_unready_awaits_in_a_loop) {
    int sum = 0;
    for (int i = 0; i < 100000; ++i) {
        sum += co_await later(1);
    }
    EXPECT_EQ(sum, 100000);
}

REEF_TEST(coroutine, maybe_yield_lets_a_timer_fire) {
    bool fired = false;
    timer<> t([&] { fired = true; });
    t.arm(1ms);
    // Without yielding, this loop would never end: the timer only fires between task batches.
    // A generous deadline turns a regression into a failure instead of a hang.
    auto deadline = std::chrono::steady_clock::now() + 30s;
    std::uint64_t iterations = 0;
    while (!fired && std::chrono::steady_clock::now() < deadline) {
        ++iterations;
        co_await coroutine::maybe_yield();
    }
    EXPECT_TRUE(fired);
    EXPECT_GT(iterations, 0u);
}

REEF_TEST(coroutine, maybe_yield_lets_other_tasks_run) {
    int other = 0;
    schedule(make_task([&] { ++other; }));
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (other == 0 && std::chrono::steady_clock::now() < deadline) {
        co_await coroutine::maybe_yield();
    }
    EXPECT_EQ(other, 1);
}

// ------------------------------------------------------------------------------------------------
// Lifetimes

REEF_TEST(coroutine, locals_destroyed_before_the_waiter_resumes) {
    std::vector<std::string> ev;
    auto f = [&]() -> future<int> {
        tracked local(1, &ev);
        co_await later();
        co_return local.value;
    }();
    EXPECT_EQ(co_await std::move(f), 1);
    ev.push_back("waiter resumed");
    EXPECT_EQ(ev, (std::vector<std::string>{"destroyed 1", "waiter resumed"}));
}

REEF_TEST(coroutine, parameters_are_copied_into_the_frame) {
    auto f = [](std::string s, tracked t) -> future<std::string> {
        co_await later();
        co_return s + std::to_string(t.value);
    }(std::string(100, 'p'), tracked(3));  // both temporaries die at the end of this statement
    auto r = co_await std::move(f);
    EXPECT_EQ(r, std::string(100, 'p') + "3");
}

REEF_TEST(coroutine, lambda_wrapper_keeps_captures_alive_across_suspension) {
    tracked::live = 0;
    int live_at_resume = -1;
    promise<> start;
    // then() destroys its function right after calling it, i.e. at the coroutine's first
    // suspension; the wrapper's copy in the coroutine frame must carry the captures past it.
    // The string owns heap memory, so a use after free would also be caught by ASan.
    auto f = start.get_future().then(coroutine::lambda(
        [t = tracked(7), h = std::string(200, 'h'), &live_at_resume]() -> future<std::string> {
            co_await later();
            co_await later();
            live_at_resume = tracked::live;
            co_return h + std::to_string(t.value);
        }));
    start.set_value();
    auto r = co_await std::move(f);
    EXPECT_EQ(r, std::string(200, 'h') + "7");
    EXPECT_EQ(live_at_resume, 1);  // only the frame's copy is left, and it is alive
    EXPECT_EQ(tracked::live, 0);   // and destroyed once the coroutine finished
}

REEF_TEST(coroutine, lambda_wrapper_forwards_arguments_and_exceptions) {
    auto add = coroutine::lambda([base = 10](int x) -> future<int> {
        co_await later();
        if (x < 0) {
            throw custom_error(x);
        }
        co_return base + x;
    });
    EXPECT_EQ(co_await add(5), 15);
    EXPECT_EQ(co_await add(6), 16);  // callable more than once: each call copies the lambda
    EXPECT_THROW(co_await add(-1), custom_error);
}

// ------------------------------------------------------------------------------------------------
// Misuse

TEST(coroutine_misuse, co_await_twice_throws) {
    misuse_throws mode;
    auto f = []() -> future<int> {
        auto g = make_ready_future<int>(1);
        int a = co_await std::move(g);
        int b = co_await std::move(g);
        co_return a + b;
    }();
    ASSERT_TRUE(f.available());
    EXPECT_THROW(f.get(), misuse_error);
}

TEST(coroutine_misuse_death, co_await_twice_aborts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            set_abort_on_misuse(true);
            auto f = []() -> future<int> {
                auto g = make_ready_future<int>(1);
                int a = co_await std::move(g);
                int b = co_await std::move(g);
                co_return a + b;
            }();
            f.ignore_ready_future();
        },
        "API misuse: future consumed twice .co_await");
}
