// future<T> / promise<T>: value and exception propagation through every combinator, flattening,
// destruction order, broken promises, promise/future moves while pending, the "ignored exceptional
// future" report, and misuse (both the throwing and the aborting mode).
#include "reactor_test.hh"
#include "runtime/future.hh"
#include "runtime/log.hh"
#include "runtime/misuse.hh"
#include "runtime/thread.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

using namespace reef;

// Count allocations made by this thread, to check that ready futures allocate nothing. (noinline:
// GCC would otherwise see free() applied to what it knows came from operator new, and warn.)
namespace {
thread_local std::size_t t_allocations = 0;
}
[[gnu::noinline]] void* operator new(std::size_t n) {
    ++t_allocations;
    if (void* p = std::malloc(n ? n : 1)) {
        return p;
    }
    throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

// Counts live instances so tests can check that every captured or stored object is destroyed.
struct tracked {
    static inline int live = 0;
    static inline int destroyed = 0;
    int value;
    std::vector<std::string>* events = nullptr;

    explicit tracked(int v, std::vector<std::string>* ev = nullptr) : value(v), events(ev) { ++live; }
    tracked(const tracked& x) : value(x.value), events(x.events) { ++live; }
    tracked(tracked&& x) noexcept : value(x.value), events(x.events) { ++live; }
    ~tracked() {
        --live;
        ++destroyed;
        if (events) {
            events->push_back("destroyed " + std::to_string(value));
        }
    }
};

// Captures the log lines written while it exists.
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
    int count(std::string_view needle) {
        std::lock_guard g(_m);
        int n = 0;
        for (auto& l : _lines) {
            n += l.find(needle) != std::string::npos;
        }
        return n;
    }
    std::vector<std::string> lines() {
        std::lock_guard g(_m);
        return _lines;
    }
};

// Switches misuse reporting to throwing for one test and restores the previous mode.
class misuse_throws {
    bool _old = abort_on_misuse();

public:
    misuse_throws() { set_abort_on_misuse(false); }
    ~misuse_throws() { set_abort_on_misuse(_old); }
};

class custom_error : public std::runtime_error {
public:
    int code;
    explicit custom_error(int c) : std::runtime_error("custom " + std::to_string(c)), code(c) {}
};
class derived_error : public custom_error {
public:
    explicit derived_error(int c) : custom_error(c) {}
};

// Lets the tasks queued so far (and what they queue in turn, `rounds` deep) run first.
future<> yield_rounds(int rounds = 10) {
    for (int i = 0; i < rounds; ++i) {
        promise<> p;
        auto f = p.get_future();
        schedule(make_task([p = std::move(p)]() mutable { p.set_value(); }));
        co_await std::move(f);
    }
}

void use_threadsafe_death_tests() { GTEST_FLAG_SET(death_test_style, "threadsafe"); }

}  // namespace

// ------------------------------------------------------------------------------------------------
// Ready futures (no reactor needed)

TEST(future, ready_future_holds_value) {
    auto f = make_ready_future<int>(42);
    EXPECT_TRUE(f.valid());
    EXPECT_TRUE(f.available());
    EXPECT_FALSE(f.failed());
    EXPECT_EQ(f.get(), 42);
    EXPECT_FALSE(f.valid());
}

TEST(future, ready_void_future) {
    auto f = make_ready_future<>();
    EXPECT_TRUE(f.available());
    EXPECT_NO_THROW(f.get());
}

TEST(future, exception_future_rethrows_original_type) {
    auto f = make_exception_future<int>(custom_error(7));
    EXPECT_TRUE(f.available());
    EXPECT_TRUE(f.failed());
    try {
        f.get();
        ADD_FAILURE() << "get() did not throw";
    } catch (const custom_error& e) {
        EXPECT_EQ(e.code, 7);
    }
    EXPECT_FALSE(f.valid());
}

TEST(future, exception_future_from_exception_ptr) {
    auto f = make_exception_future<>(std::make_exception_ptr(std::out_of_range("oor")));
    EXPECT_THROW(f.get(), std::out_of_range);
}

TEST(future, ready_then_runs_inline) {
    int x = 0;
    auto f = make_ready_future<int>(41).then([&](int v) {
        x = v + 1;
        return x;
    });
    EXPECT_TRUE(f.available());
    EXPECT_EQ(x, 42);
    EXPECT_EQ(f.get(), 42);
}

TEST(future, ready_then_changes_type_and_void) {
    std::string seen;
    auto f = make_ready_future<int>(5).then([](int v) { return std::to_string(v); }).then([&](std::string s) {
        seen = std::move(s);
    });
    static_assert(std::is_same_v<decltype(f), future<>>);
    EXPECT_TRUE(f.available());
    EXPECT_FALSE(f.failed());
    f.get();
    EXPECT_EQ(seen, "5");
}

TEST(future, move_only_values) {
    auto f = make_ready_future<std::unique_ptr<int>>(std::make_unique<int>(3)).then([](std::unique_ptr<int> p) {
        *p += 1;
        return p;
    });
    EXPECT_EQ(*f.get(), 4);
}

TEST(future, ready_then_flattens_returned_future) {
    auto f = make_ready_future<int>(1).then([](int v) { return make_ready_future<int>(v + 1); });
    static_assert(std::is_same_v<decltype(f), future<int>>);
    EXPECT_EQ(f.get(), 2);
}

TEST(future, ready_paths_do_not_allocate) {
    std::size_t before = t_allocations;
    int out = 0;
    auto f = make_ready_future<int>(1)
                 .then([](int v) { return v + 1; })
                 .then([](int v) { return make_ready_future<int>(v * 10); })
                 .then_wrapped([](future<int>&& f) { return f.get() + 1; })
                 .finally([&] { ++out; })
                 .handle_exception([](std::exception_ptr) { return 0; })
                 .handle_exception_type([](const std::out_of_range&) { return 0; });
    out += f.get();
    promise<long> p;
    p.set_value(5);
    out += int(p.get_future().get());
    make_ready_future<int>(2).discard_result().get();
    std::size_t allocations = t_allocations - before;
    EXPECT_EQ(allocations, 0u);
    EXPECT_EQ(out, 1 + 21 + 5);
}

TEST(future, exception_skips_then_and_propagates) {
    int calls = 0;
    auto f = make_exception_future<int>(custom_error(1))
                 .then([&](int v) {
                     ++calls;
                     return v;
                 })
                 .then([&](int) { ++calls; })
                 .then([&] { ++calls; });
    EXPECT_EQ(calls, 0);
    EXPECT_THROW(f.get(), custom_error);
}

TEST(future, exception_thrown_in_ready_continuation) {
    auto f = make_ready_future<int>(1).then([](int) -> int { throw custom_error(2); });
    EXPECT_TRUE(f.failed());
    EXPECT_THROW(f.get(), custom_error);
}

TEST(future, then_returning_failed_future_propagates) {
    auto f = make_ready_future<>().then([] { return make_exception_future<int>(custom_error(3)); });
    static_assert(std::is_same_v<decltype(f), future<int>>);
    EXPECT_THROW(f.get(), custom_error);
}

TEST(future, then_wrapped_sees_value_and_exception) {
    auto a = make_ready_future<int>(9).then_wrapped([](future<int>&& f) {
        EXPECT_FALSE(f.failed());
        return f.get() * 2;
    });
    EXPECT_EQ(a.get(), 18);
    auto b = make_exception_future<int>(custom_error(4)).then_wrapped([](future<int>&& f) {
        EXPECT_TRUE(f.failed());
        try {
            f.get();
        } catch (const custom_error& e) {
            return e.code;
        }
        return -1;
    });
    EXPECT_EQ(b.get(), 4);
}

TEST(future, then_wrapped_throwing_gives_exception) {
    auto f = make_ready_future<int>(1).then_wrapped([](future<int>&& f) -> int {
        f.ignore_ready_future();
        throw custom_error(5);
    });
    EXPECT_THROW(f.get(), custom_error);
}

TEST(future, discard_result_keeps_outcome) {
    auto a = make_ready_future<int>(1).discard_result();
    static_assert(std::is_same_v<decltype(a), future<>>);
    EXPECT_TRUE(a.available());
    EXPECT_FALSE(a.failed());
    a.get();
    auto b = make_exception_future<int>(custom_error(6)).discard_result();
    EXPECT_THROW(b.get(), custom_error);
    auto c = make_ready_future<>().discard_result();
    c.get();
}

TEST(future, get_exception_consumes) {
    auto f = make_exception_future<int>(custom_error(8));
    auto ex = f.get_exception();
    EXPECT_FALSE(f.valid());
    EXPECT_THROW(std::rethrow_exception(ex), custom_error);
}

TEST(future, ignored_exceptional_future_is_logged) {
    log_capture logs;
    { (void)make_exception_future<int>(std::runtime_error("boom-ignored")); }
    EXPECT_EQ(logs.count("exceptional future ignored"), 1);
    EXPECT_EQ(logs.count("boom-ignored"), 1);
    {
        promise<> p;
        auto f = p.get_future();
        p.set_exception(std::runtime_error("boom-from-promise"));
    }
    EXPECT_EQ(logs.count("boom-from-promise"), 1);
}

TEST(future, consumed_or_explicitly_ignored_exception_is_not_logged) {
    log_capture logs;
    { EXPECT_THROW(make_exception_future<int>(std::runtime_error("x1")).get(), std::runtime_error); }
    { make_exception_future<int>(std::runtime_error("x2")).ignore_ready_future(); }
    {
        auto f = make_exception_future<int>(std::runtime_error("x3")).handle_exception([](std::exception_ptr) {
            return 1;
        });
        EXPECT_EQ(f.get(), 1);
    }
    {
        // The promise was dropped without get_future(): nobody could ever see the exception.
        promise<> p;
        p.set_exception(std::runtime_error("x4"));
    }
    EXPECT_EQ(logs.count("exceptional future ignored"), 0) << fmt::format("{}", fmt::join(logs.lines(), ""));
}

TEST(future, ignored_non_std_exception_is_logged) {
    log_capture logs;
    { (void)make_exception_future<>(std::make_exception_ptr(17)); }
    EXPECT_EQ(logs.count("exceptional future ignored: unknown exception"), 1);
}

// ------------------------------------------------------------------------------------------------
// finally, handle_exception, handle_exception_type (ready paths)

TEST(future, finally_runs_on_value_and_passes_it_on) {
    std::vector<std::string> ev;
    auto f = make_ready_future<int>(3)
                 .then([&](int v) {
                     ev.push_back("value");
                     return v;
                 })
                 .finally([&] { ev.push_back("finally"); });
    EXPECT_EQ(f.get(), 3);
    EXPECT_EQ(ev, (std::vector<std::string>{"value", "finally"}));
}

TEST(future, finally_runs_on_exception_and_passes_it_on) {
    bool ran = false;
    auto f = make_exception_future<int>(custom_error(1)).finally([&] { ran = true; });
    EXPECT_TRUE(ran);
    EXPECT_THROW(f.get(), custom_error);
}

TEST(future, finally_failure_replaces_result) {
    auto a = make_ready_future<int>(1).finally([] { throw std::out_of_range("fin"); });
    EXPECT_THROW(a.get(), std::out_of_range);
    log_capture logs;
    auto b = make_exception_future<int>(custom_error(2)).finally([] {
        return make_exception_future<>(std::out_of_range("fin2"));
    });
    EXPECT_THROW(b.get(), std::out_of_range);
    // The dropped original exception is dropped deliberately, not reported as ignored.
    EXPECT_EQ(logs.count("exceptional future ignored"), 0);
}

TEST(future, handle_exception_recovers) {
    std::exception_ptr seen;
    auto f = make_exception_future<int>(custom_error(3)).handle_exception([&](std::exception_ptr ex) {
        seen = ex;
        return 99;
    });
    EXPECT_EQ(f.get(), 99);
    EXPECT_THROW(std::rethrow_exception(seen), custom_error);
}

TEST(future, handle_exception_not_called_on_success) {
    bool called = false;
    auto f = make_ready_future<int>(5).handle_exception([&](std::exception_ptr) {
        called = true;
        return 0;
    });
    EXPECT_EQ(f.get(), 5);
    EXPECT_FALSE(called);
}

TEST(future, handle_exception_may_return_future_or_rethrow) {
    auto a = make_exception_future<int>(custom_error(1)).handle_exception([](std::exception_ptr) {
        return make_ready_future<int>(7);
    });
    EXPECT_EQ(a.get(), 7);
    auto b = make_exception_future<int>(custom_error(1)).handle_exception([](std::exception_ptr) -> int {
        throw std::out_of_range("again");
    });
    EXPECT_THROW(b.get(), std::out_of_range);
    auto c = make_exception_future<>(custom_error(1)).handle_exception([](std::exception_ptr) {});
    EXPECT_FALSE(c.failed());
    c.get();
}

TEST(future, handle_exception_type_matches_type_and_base) {
    auto a = make_exception_future<int>(custom_error(4)).handle_exception_type([](const custom_error& e) {
        return e.code;
    });
    EXPECT_EQ(a.get(), 4);
    auto b = make_exception_future<int>(derived_error(5)).handle_exception_type([](custom_error& e) {
        return e.code * 10;
    });
    EXPECT_EQ(b.get(), 50);
}

TEST(future, handle_exception_type_passes_other_types_through) {
    bool called = false;
    auto f = make_exception_future<int>(std::out_of_range("other")).handle_exception_type([&](const custom_error&) {
        called = true;
        return 0;
    });
    EXPECT_FALSE(called);
    EXPECT_THROW(f.get(), std::out_of_range);
    auto g = make_ready_future<int>(2).handle_exception_type([](const custom_error&) { return 0; });
    EXPECT_EQ(g.get(), 2);
}

// ------------------------------------------------------------------------------------------------
// Unready futures (reactor)

REEF_TEST(future, unready_then_runs_as_a_task_after_set_value) {
    promise<int> p;
    bool ran = false;
    auto f = p.get_future().then([&](int v) {
        ran = true;
        return v + 1;
    });
    EXPECT_FALSE(f.available());
    p.set_value(1);
    EXPECT_FALSE(ran);  // set_value schedules the continuation, it does not run it inline
    EXPECT_EQ(co_await std::move(f), 2);
    EXPECT_TRUE(ran);
}

REEF_TEST(future, unready_chain_value_and_flattening) {
    promise<int> p;
    promise<int> inner;
    auto f = p.get_future()
                 .then([](int v) { return v * 2; })
                 .then([&](int v) { return inner.get_future().then([v](int w) { return v + w; }); })
                 .then([](int v) { return make_ready_future<std::string>(std::to_string(v)); });
    static_assert(std::is_same_v<decltype(f), future<std::string>>);
    p.set_value(20);
    co_await yield_rounds();
    EXPECT_FALSE(f.available());
    inner.set_value(2);
    EXPECT_EQ(co_await std::move(f), "42");
}

REEF_TEST(future, nested_flattening_of_unready_futures) {
    promise<> a, b, c;
    auto f = a.get_future().then([&] {
        return b.get_future().then([&] { return c.get_future().then([] { return 7; }); });
    });
    static_assert(std::is_same_v<decltype(f), future<int>>);
    a.set_value();
    b.set_value();
    c.set_value();
    EXPECT_EQ(co_await std::move(f), 7);
}

REEF_TEST(future, unready_exception_propagates_and_skips) {
    promise<int> p;
    int calls = 0;
    auto f = p.get_future()
                 .then([&](int v) {
                     ++calls;
                     return v;
                 })
                 .then([&](int) { ++calls; });
    p.set_exception(custom_error(9));
    try {
        co_await std::move(f);
        ADD_FAILURE() << "no exception";
    } catch (const custom_error& e) {
        EXPECT_EQ(e.code, 9);
    }
    EXPECT_EQ(calls, 0);
}

REEF_TEST(future, exception_thrown_in_unready_continuation) {
    promise<> p;
    auto f = p.get_future().then([]() -> int { throw custom_error(10); });
    p.set_value();
    EXPECT_THROW(co_await std::move(f), custom_error);
}

REEF_TEST(future, unready_then_wrapped_finally_handle_exception) {
    std::vector<std::string> ev;
    promise<int> p;
    auto f = p.get_future()
                 .then_wrapped([&](future<int>&& r) {
                     ev.push_back("wrapped");
                     return r.get() + 1;
                 })
                 .then([](int) -> int { throw custom_error(11); })
                 .finally([&] { ev.push_back("finally"); })
                 .handle_exception_type([&](const custom_error& e) {
                     ev.push_back("handled");
                     return e.code;
                 });
    p.set_value(1);
    EXPECT_EQ(co_await std::move(f), 11);
    EXPECT_EQ(ev, (std::vector<std::string>{"wrapped", "finally", "handled"}));
}

REEF_TEST(future, finally_waits_for_its_future) {
    std::vector<std::string> ev;
    promise<> gate;
    promise<int> p;
    auto f = p.get_future().finally([&] {
        ev.push_back("finally start");
        return gate.get_future().then([&] { ev.push_back("finally done"); });
    });
    p.set_value(5);
    co_await yield_rounds();
    EXPECT_FALSE(f.available());
    gate.set_value();
    EXPECT_EQ(co_await std::move(f), 5);
    EXPECT_EQ(ev, (std::vector<std::string>{"finally start", "finally done"}));
}

REEF_TEST(future, discard_result_on_unready) {
    promise<int> p;
    auto f = p.get_future().discard_result();
    p.set_value(3);
    co_await std::move(f);
    promise<int> q;
    auto g = q.get_future().discard_result();
    q.set_exception(custom_error(1));
    EXPECT_THROW(co_await std::move(g), custom_error);
}

REEF_TEST(future, long_unready_chain_does_not_recurse) {
    // Each link forwards to the next through a fresh promise: resolution must not nest calls.
    constexpr int n = 20000;
    std::vector<promise<>> ps(n);
    future<int> f = make_ready_future<int>(0);
    for (int i = 0; i < n; ++i) {
        f = std::move(f).then([&ps, i](int v) { return ps[i].get_future().then([v] { return v + 1; }); });
    }
    for (auto& p : ps) {
        p.set_value();
    }
    EXPECT_EQ(co_await std::move(f), n);
}

// ------------------------------------------------------------------------------------------------
// forward_to

TEST(future, forward_to_ready) {
    promise<int> p;
    auto f = p.get_future();
    make_ready_future<int>(12).forward_to(std::move(p));
    EXPECT_TRUE(f.available());
    EXPECT_EQ(f.get(), 12);
    promise<int> q;
    auto g = q.get_future();
    make_exception_future<int>(custom_error(1)).forward_to(std::move(q));
    EXPECT_THROW(g.get(), custom_error);
}

REEF_TEST(future, forward_to_unready) {
    promise<int> src;
    promise<int> dst;
    auto out = dst.get_future();
    src.get_future().forward_to(std::move(dst));
    EXPECT_FALSE(out.available());
    src.set_value(77);
    EXPECT_EQ(co_await std::move(out), 77);

    promise<int> src2;
    promise<int> dst2;
    auto out2 = dst2.get_future().then([](int v) { return v * 2; });
    src2.get_future().forward_to(std::move(dst2));
    src2.set_exception(custom_error(3));
    EXPECT_THROW(co_await std::move(out2), custom_error);
}

REEF_TEST(future, forward_to_then_source_promise_broken) {
    auto src = std::make_unique<promise<int>>();
    promise<int> dst;
    auto out = dst.get_future();
    src->get_future().forward_to(std::move(dst));
    src.reset();
    EXPECT_THROW(co_await std::move(out), broken_promise);
}

// ------------------------------------------------------------------------------------------------
// Destruction order and leaks

REEF_TEST(future, continuation_captures_destroyed_after_running) {
    std::vector<std::string> ev;
    tracked::live = 0;
    {
        promise<int> p;
        auto f = p.get_future().then([t = tracked(1, &ev), &ev](int v) {
            ev.push_back("run " + std::to_string(t.value));
            return v;
        });
        // Moves of the capture were destroyed on the way; the continuation's copy is alive.
        ev.clear();
        EXPECT_EQ(tracked::live, 1);
        p.set_value(4);
        EXPECT_EQ(co_await std::move(f), 4);
    }
    EXPECT_EQ(ev, (std::vector<std::string>{"run 1", "destroyed 1"}));
    EXPECT_EQ(tracked::live, 0);
}

REEF_TEST(future, values_and_captures_do_not_leak) {
    tracked::live = 0;
    {
        promise<tracked> p;
        auto f = p.get_future()
                     .then([t = tracked(2)](tracked x) { return tracked(x.value + t.value); })
                     .then([](tracked x) -> tracked { throw custom_error(x.value); })
                     .then([t = tracked(3)](tracked x) { return x; })
                     .handle_exception([t = tracked(4)](std::exception_ptr) { return tracked(0); })
                     .finally([t = tracked(5)] {});
        p.set_value(tracked(1));
        auto r = co_await std::move(f);
        EXPECT_EQ(r.value, 0);
    }
    EXPECT_EQ(tracked::live, 0);
    {
        // Continuations attached to a promise that is destroyed unresolved are freed too.
        auto p = std::make_unique<promise<tracked>>();
        auto f = p->get_future().then([t = tracked(6)](tracked x) { return x; });
        p.reset();
        EXPECT_THROW(co_await std::move(f), broken_promise);
    }
    EXPECT_EQ(tracked::live, 0);
    {
        // A ready value stored in a future that is dropped is destroyed with it.
        auto f = make_ready_future<tracked>(tracked(7));
    }
    EXPECT_EQ(tracked::live, 0);
}

REEF_TEST(future, finally_runs_after_the_value_arrives) {
    std::vector<std::string> ev;
    promise<> p;
    auto f = p.get_future().then([&] { ev.push_back("value"); }).finally([&] { ev.push_back("finally"); });
    ev.push_back("set");
    p.set_value();
    co_await std::move(f);
    EXPECT_EQ(ev, (std::vector<std::string>{"set", "value", "finally"}));
}

// ------------------------------------------------------------------------------------------------
// Broken promise

REEF_TEST(future, broken_promise_to_then) {
    auto p = std::make_unique<promise<int>>();
    bool ran = false;
    auto f = p->get_future().then([&](int v) {
        ran = true;
        return v;
    });
    p.reset();
    EXPECT_THROW(co_await std::move(f), broken_promise);
    EXPECT_FALSE(ran);
}

REEF_TEST(future, broken_promise_to_then_wrapped) {
    auto p = std::make_unique<promise<>>();
    auto f = p->get_future().then_wrapped([](future<>&& r) {
        EXPECT_TRUE(r.failed());
        EXPECT_THROW(r.get(), broken_promise);
        return 1;
    });
    p.reset();
    EXPECT_EQ(co_await std::move(f), 1);
}

REEF_TEST(future, broken_promise_to_waiting_future) {
    // The future itself is the waiter (no continuation): it becomes ready with broken_promise.
    auto p = std::make_unique<promise<int>>();
    auto f = p->get_future();
    p.reset();
    EXPECT_TRUE(f.available());
    EXPECT_THROW(f.get(), broken_promise);
    co_return;
}

REEF_TEST(future, broken_promise_to_co_await) {
    auto p = std::make_unique<promise<int>>();
    auto f = p->get_future();
    schedule(make_task([&] { p.reset(); }));
    try {
        co_await std::move(f);
        ADD_FAILURE() << "no exception";
    } catch (const broken_promise& e) {
        EXPECT_STREQ(e.what(), "broken promise");
    }
}

REEF_TEST(future, broken_promise_to_get_in_thread) {
    auto p = std::make_unique<promise<int>>();
    auto f = p->get_future();
    auto r = async([&] {
        try {
            f.get();
        } catch (const broken_promise&) {
            return 1;
        }
        return 0;
    });
    // Runs after the thread started waiting in get().
    schedule(make_task([&] { p.reset(); }));
    EXPECT_EQ(co_await std::move(r), 1);
}

REEF_TEST(future, get_in_thread_waits_for_value) {
    promise<std::string> p;
    auto f = p.get_future();
    auto r = async([&] { return f.get() + "!"; });
    schedule(make_task([&] { p.set_value("hi"); }));
    EXPECT_EQ(co_await std::move(r), "hi!");
}

// ------------------------------------------------------------------------------------------------
// Promise and future lifetimes and moves

TEST(future, promise_resolved_before_get_future) {
    promise<int> p;
    p.set_value(5);
    auto f = p.get_future();
    EXPECT_TRUE(f.available());
    EXPECT_EQ(f.get(), 5);

    promise<int> q;
    q.set_exception(custom_error(2));
    auto g = q.get_future();
    EXPECT_TRUE(g.failed());
    EXPECT_THROW(g.get(), custom_error);
}

TEST(future, promise_resolved_then_moved_before_get_future) {
    promise<int> p;
    p.set_value(6);
    promise<int> p2(std::move(p));
    auto f = p2.get_future();
    ASSERT_TRUE(f.available());
    EXPECT_EQ(f.get(), 6);

    promise<std::string> q;
    q.set_value("moved");
    promise<std::string> q2;
    q2 = std::move(q);
    auto g = q2.get_future();
    ASSERT_TRUE(g.available());
    EXPECT_EQ(g.get(), "moved");
}

TEST(future, promise_moved_before_get_future_then_resolved) {
    promise<int> p;
    promise<int> p2(std::move(p));
    auto f = p2.get_future();
    p2.set_value(8);
    EXPECT_EQ(f.get(), 8);
}

TEST(future, future_dropped_before_promise_resolves) {
    log_capture logs;
    {
        promise<int> p;
        { auto f = p.get_future(); }
        EXPECT_NO_THROW(p.set_value(1));
    }
    {
        promise<> p;
        { auto f = p.get_future(); }
        EXPECT_NO_THROW(p.set_exception(custom_error(1)));
    }
    {
        // Unresolved promise whose future is gone: destroying it must not report anything.
        promise<> p;
        { auto f = p.get_future(); }
    }
    EXPECT_EQ(logs.count("exceptional future ignored"), 0);
}

REEF_TEST(future, dropped_continuation_result_still_runs) {
    promise<> p;
    int ran = 0;
    (void)p.get_future().then([&] { ++ran; });
    p.set_value();
    co_await yield_rounds();
    EXPECT_EQ(ran, 1);
}

REEF_TEST(future, move_promise_while_pending) {
    promise<int> p;
    auto f = p.get_future();
    promise<int> p2(std::move(p));
    promise<int> p3;
    p3 = std::move(p2);
    auto holder = std::make_unique<promise<int>>(std::move(p3));
    EXPECT_FALSE(f.available());
    holder->set_value(31);
    EXPECT_TRUE(f.available());
    EXPECT_EQ(co_await std::move(f), 31);
}

REEF_TEST(future, move_future_while_pending) {
    promise<int> p;
    auto f = p.get_future();
    future<int> f2(std::move(f));
    EXPECT_FALSE(f.valid());
    future<int> f3;
    f3 = std::move(f2);
    std::vector<future<int>> v;
    v.push_back(std::move(f3));
    v.reserve(100);  // moves the element again
    p.set_value(32);
    EXPECT_TRUE(v[0].available());
    EXPECT_EQ(co_await std::move(v[0]), 32);
}

REEF_TEST(future, move_promise_and_continuation_while_pending) {
    promise<int> p;
    auto f = p.get_future().then([](int v) { return v + 1; });
    auto moved = std::move(p);
    auto g = std::move(f);
    schedule(make_task([pr = std::move(moved)]() mutable { pr.set_value(40); }));
    EXPECT_EQ(co_await std::move(g), 41);
}

REEF_TEST(future, move_assign_over_pending_future_detaches_it) {
    promise<int> a, b;
    auto f = a.get_future();
    f = b.get_future();  // the future of `a` is dropped: a now has no listener
    a.set_value(1);
    b.set_value(2);
    EXPECT_EQ(co_await std::move(f), 2);
}

REEF_TEST(future, move_assign_over_pending_promise_breaks_its_future) {
    promise<int> a, b;
    auto fa = a.get_future();
    auto fb = b.get_future();
    a = std::move(b);  // a's old future loses its producer
    EXPECT_TRUE(fa.available());
    EXPECT_THROW(fa.get(), broken_promise);
    a.set_value(3);
    EXPECT_EQ(co_await std::move(fb), 3);
}

// ------------------------------------------------------------------------------------------------
// or_terminate

TEST(future, or_terminate_passes_value_through) {
    EXPECT_EQ(make_ready_future<int>(4).or_terminate().get(), 4);
}

TEST(future_death, or_terminate_on_failure) {
    use_threadsafe_death_tests();
    EXPECT_DEATH({ (void)make_exception_future<int>(std::runtime_error("fatal-boom")).or_terminate(); },
                 "exceptional future ignored: fatal-boom");
}

// ------------------------------------------------------------------------------------------------
// Misuse: throwing mode

TEST(future_misuse, double_set_value_throws) {
    misuse_throws mode;
    promise<int> p;
    auto f = p.get_future();
    p.set_value(1);
    EXPECT_THROW(p.set_value(2), misuse_error);
    EXPECT_THROW(p.set_exception(custom_error(1)), misuse_error);
    EXPECT_EQ(f.get(), 1);  // the first value stands
}

// then() and friends are noexcept: the misuse_error comes in the future they return.
TEST(future_misuse, then_after_then_throws) {
    misuse_throws mode;
    auto f = make_ready_future<int>(1);
    auto g = f.then([](int v) { return v; });
    bool called = false;
    EXPECT_THROW(f.then([&](int v) {
                      called = true;
                      return v;
                  }).get(),
                 misuse_error);
    EXPECT_THROW(f.then_wrapped([&](future<int>&&) { called = true; }).get(), misuse_error);
    EXPECT_THROW(f.finally([&] { called = true; }).get(), misuse_error);
    EXPECT_THROW(f.handle_exception([&](std::exception_ptr) {
                      called = true;
                      return 0;
                  }).get(),
                 misuse_error);
    EXPECT_FALSE(called);
    EXPECT_EQ(g.get(), 1);
}

TEST(future_misuse, forward_to_after_then_throws) {
    misuse_throws mode;
    auto f = make_ready_future<int>(1);
    EXPECT_EQ(f.get(), 1);
    promise<int> p;
    auto out = p.get_future();
    f.forward_to(std::move(p));
    EXPECT_THROW(out.get(), misuse_error);
}

TEST(future_misuse, get_after_get_throws) {
    misuse_throws mode;
    auto f = make_ready_future<int>(1);
    EXPECT_EQ(f.get(), 1);
    try {
        f.get();
        ADD_FAILURE() << "no misuse_error";
    } catch (const misuse_error& e) {
        EXPECT_NE(std::string(e.what()).find("future consumed twice"), std::string::npos) << e.what();
    }
}

TEST(future_misuse, get_on_unready_future_outside_thread_throws) {
    misuse_throws mode;
    promise<int> p;
    auto f = p.get_future();
    try {
        f.get();
        ADD_FAILURE() << "no misuse_error";
    } catch (const misuse_error& e) {
        EXPECT_NE(std::string(e.what()).find("outside a reef::thread"), std::string::npos) << e.what();
    }
    // The future is still usable afterwards.
    p.set_value(2);
    EXPECT_EQ(f.get(), 2);
}

TEST(future_misuse, get_future_twice_throws) {
    misuse_throws mode;
    promise<int> p;
    auto f = p.get_future();
    EXPECT_THROW((void)p.get_future(), misuse_error);
    p.set_value(3);
    EXPECT_EQ(f.get(), 3);
}

// ------------------------------------------------------------------------------------------------
// Misuse: aborting mode

TEST(future_misuse_death, double_set_value_aborts) {
    use_threadsafe_death_tests();
    EXPECT_DEATH(
        {
            set_abort_on_misuse(true);
            promise<int> p;
            auto f = p.get_future();
            p.set_value(1);
            p.set_value(2);
        },
        "API misuse: promise resolved twice");
}

TEST(future_misuse_death, then_after_then_aborts) {
    use_threadsafe_death_tests();
    EXPECT_DEATH(
        {
            set_abort_on_misuse(true);
            auto f = make_ready_future<int>(1);
            auto g = f.then([](int v) { return v; });
            auto h = f.then([](int v) { return v; });
        },
        "API misuse: future consumed twice");
}

TEST(future_misuse_death, get_after_get_aborts) {
    use_threadsafe_death_tests();
    EXPECT_DEATH(
        {
            set_abort_on_misuse(true);
            auto f = make_ready_future<int>(1);
            (void)f.get();
            (void)f.get();
        },
        "API misuse: future consumed twice");
}

TEST(future_misuse_death, get_on_unready_future_outside_thread_aborts) {
    use_threadsafe_death_tests();
    EXPECT_DEATH(
        {
            set_abort_on_misuse(true);
            promise<int> p;
            auto f = p.get_future();
            (void)f.get();
        },
        "API misuse: future::get.. on an unready future outside a reef::thread");
}

TEST(future_misuse_death, get_future_twice_aborts) {
    use_threadsafe_death_tests();
    EXPECT_DEATH(
        {
            set_abort_on_misuse(true);
            promise<int> p;
            auto f = p.get_future();
            auto g = p.get_future();
        },
        "API misuse: promise::get_future.. called twice");
}

// After a reactor ran on this thread, plain ready-future code must still run inline: a
// preemption flag left raised would send then() to the (absent) reactor.
REEF_TEST(future, reactor_exits_with_preemption_raised) {
    // A poller that, once the reactor is stopping, spins until the quota timer raises the flag
    // (bounded, in case it never does): the reactor's very last poll leaves the flag raised.
    struct spin_when_stopping final : pollfn {
        bool poll() override {
            if (engine().stopping()) {
                auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                while (!need_preempt() && std::chrono::steady_clock::now() < until) {
                }
                EXPECT_TRUE(need_preempt());
            }
            return false;
        }
        bool pure_poll() override { return false; }
    };
    static spin_when_stopping spinner;  // outlives the reactor, which never touches it again
    engine().register_poller(&spinner);
    co_return;
}

TEST(future, no_stale_preemption_after_reactor_exit) {
    ASSERT_FALSE(need_preempt());
    auto f = make_ready_future<int>(1).then([](int v) { return v + 1; });
    EXPECT_TRUE(f.available());
    EXPECT_EQ(f.get(), 2);
}
