// future_util.hh: do_with, repeat, do_until, keep_doing, parallel_for_each, max_concurrent_for_each,
// map_reduce, when_all, when_all_succeed, with_timeout, sleep. Results, exception propagation,
// concurrency limits, timeouts, long loops without stack growth, and no allocation on ready paths.
#include "reactor_test.hh"
#include "runtime/future_util.hh"
#include "runtime/log.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <list>
#include <memory>
#include <mutex>
#include <numeric>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;

// Count allocations made by this thread, to check that ready paths allocate nothing. (noinline:
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
};

// A future resolved with v by a task queued now: ready only after the reactor ran that task.
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
// Ready after n task hops (n == 0: ready now).
future<> hops(int n) {
    if (n == 0) {
        return make_ready_future<>();
    }
    return later().then([n] { return hops(n - 1); });
}

template <typename T>
int error_code(future<T>& f) {
    try {
        f.get();
    } catch (const custom_error& e) {
        return e.code;
    } catch (...) {
        return -2;
    }
    return -1;
}

// The code of the custom_error f fails with (-1: no exception, -2: another exception).
template <typename T>
future<int> code_of(future<T> f) {
    try {
        co_await std::move(f);
    } catch (const custom_error& e) {
        co_return e.code;
    } catch (...) {
        co_return -2;
    }
    co_return -1;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// do_with

REEF_TEST(future_util, do_with_objects_live_until_future_resolves) {
    tracked::live = 0;
    std::vector<std::string> ev;
    auto f = do_with(tracked(1, &ev), std::string("abc"), [&](tracked& t, std::string& s) {
        return later().then([&] {
            ev.push_back("work sees " + std::to_string(t.value) + s);
            return s.size() + std::size_t(t.value);
        });
    });
    ev.clear();  // temporaries moved into do_with
    EXPECT_EQ(tracked::live, 1);
    auto r = co_await std::move(f);
    ev.push_back("waiter");
    EXPECT_EQ(r, 4u);
    EXPECT_EQ(ev, (std::vector<std::string>{"work sees 1abc", "destroyed 1", "waiter"}));
    EXPECT_EQ(tracked::live, 0);
}

TEST(future_util, do_with_ready_result_destroys_objects_at_once) {
    tracked::live = 0;
    int seen = 0;
    auto f = do_with(tracked(5), 10, [&](tracked& t, int& x) {
        seen = t.value + x;
        x = 0;
        return make_ready_future<int>(seen);
    });
    EXPECT_EQ(tracked::live, 0);
    ASSERT_TRUE(f.available());
    EXPECT_EQ(f.get(), 15);
}

TEST(future_util, do_with_copies_lvalues) {
    std::string original = "keep";
    auto f = do_with(original, [](std::string& s) {
        s += "-changed";
        return s;
    });
    EXPECT_EQ(f.get(), "keep-changed");
    EXPECT_EQ(original, "keep");
}

TEST(future_util, do_with_func_throwing_gives_exception_and_frees_objects) {
    tracked::live = 0;
    auto f = do_with(tracked(1), [](tracked&) -> future<> { throw custom_error(3); });
    EXPECT_EQ(tracked::live, 0);
    EXPECT_EQ(error_code(f), 3);
}

REEF_TEST(future_util, do_with_failed_future_propagates) {
    tracked::live = 0;
    auto f = do_with(tracked(1), [](tracked&) {
        return later().then([] { return make_exception_future<int>(custom_error(4)); });
    });
    EXPECT_THROW(co_await std::move(f), custom_error);
    EXPECT_EQ(tracked::live, 0);
}

REEF_TEST(future_util, do_with_keeps_coroutine_lambda_captures_alive) {
    // do_with keeps its function alive with the objects, so a coroutine lambda's captures are
    // still valid after it suspends (the heap-owning string would trip ASan otherwise).
    auto f = do_with(std::string("obj"), [tag = std::string(100, 't')](std::string& s) -> future<std::size_t> {
        co_await later();
        co_await later();
        co_return s.size() + tag.size();
    });
    EXPECT_EQ(co_await std::move(f), 103u);
}

REEF_TEST(future_util, do_with_void_result) {
    int out = 0;
    co_await do_with(7, [&](int& x) { return later().then([&] { out = x; }); });
    EXPECT_EQ(out, 7);
}

// ------------------------------------------------------------------------------------------------
// repeat

TEST(future_util, repeat_ready_iterations_run_inline) {
    int n = 0;
    auto f = repeat([&] { return ++n == 10 ? stop_iteration::yes : stop_iteration::no; });
    ASSERT_TRUE(f.available());
    f.get();
    EXPECT_EQ(n, 10);
}

REEF_TEST(future_util, repeat_a_million_ready_iterations) {
    // Plain values and ready futures; preemption moves the loop to the reactor now and then, so
    // this also checks that the action (and its state) survives that move.
    int outside = 0;
    co_await repeat([&outside, n = 0]() mutable {
        ++outside;
        return ++n == 1000000 ? stop_iteration::yes : stop_iteration::no;
    });
    EXPECT_EQ(outside, 1000000);
    int m = 0;
    co_await repeat([&] {
        return make_ready_future<stop_iteration>(++m == 1000000 ? stop_iteration::yes : stop_iteration::no);
    });
    EXPECT_EQ(m, 1000000);
}

REEF_TEST(future_util, repeat_unready_iterations) {
    int n = 0;
    co_await repeat([&] {
        return later(++n).then([](int v) { return v == 1000 ? stop_iteration::yes : stop_iteration::no; });
    });
    EXPECT_EQ(n, 1000);
}

REEF_TEST(future_util, repeat_stops_on_exception) {
    int n = 0;
    auto f = repeat([&]() -> stop_iteration {
        if (++n == 5) {
            throw custom_error(5);
        }
        return stop_iteration::no;
    });
    EXPECT_EQ(error_code(f), 5);
    EXPECT_EQ(n, 5);
    int m = 0;
    auto g = repeat([&] {
        ++m;
        return later().then([&] {
            return m == 3 ? make_exception_future<stop_iteration>(custom_error(3))
                          : make_ready_future<stop_iteration>(stop_iteration::no);
        });
    });
    EXPECT_THROW(co_await std::move(g), custom_error);
    EXPECT_EQ(m, 3);
}

REEF_TEST(future_util, repeat_yields_to_timers) {
    bool fired = false;
    timer<> t([&] { fired = true; });
    t.arm(1ms);
    auto deadline = std::chrono::steady_clock::now() + 30s;  // a failure, not a hang, if it never yields
    co_await repeat([&] {
        return fired || std::chrono::steady_clock::now() > deadline ? stop_iteration::yes : stop_iteration::no;
    });
    EXPECT_TRUE(fired);
}

// ------------------------------------------------------------------------------------------------
// do_until, keep_doing

TEST(future_util, do_until_checks_condition_first) {
    int calls = 0;
    auto f = do_until([] { return true; }, [&] { ++calls; });
    ASSERT_TRUE(f.available());
    f.get();
    EXPECT_EQ(calls, 0);
}

REEF_TEST(future_util, do_until_counts) {
    int n = 0;
    co_await do_until([&] { return n == 1000; }, [&] { return later().then([&] { ++n; }); });
    EXPECT_EQ(n, 1000);
    int m = 0;
    co_await do_until([&] { return m == 1000000; }, [&] { ++m; });
    EXPECT_EQ(m, 1000000);
}

REEF_TEST(future_util, do_until_exceptions) {
    int n = 0;
    auto f = do_until([&] { return n == 100; }, [&] {
        if (++n == 7) {
            throw custom_error(7);
        }
        return later();
    });
    EXPECT_THROW(co_await std::move(f), custom_error);
    EXPECT_EQ(n, 7);
    int m = 0;
    auto g = do_until(
        [&]() -> bool {
            if (m == 4) {
                throw custom_error(40);
            }
            return false;
        },
        [&] { return later().then([&] { ++m; }); });
    EXPECT_THROW(co_await std::move(g), custom_error);
    EXPECT_EQ(m, 4);
}

REEF_TEST(future_util, do_until_yields_to_timers) {
    bool fired = false;
    timer<> t([&] { fired = true; });
    t.arm(1ms);
    auto deadline = std::chrono::steady_clock::now() + 30s;
    int n = 0;
    co_await do_until([&] { return fired || std::chrono::steady_clock::now() > deadline; }, [&] { ++n; });
    EXPECT_TRUE(fired);
    EXPECT_GT(n, 0);
}

REEF_TEST(future_util, keep_doing_until_exception) {
    int n = 0;
    auto f = keep_doing([&] {
        ++n;
        if (n == 50000) {
            return make_exception_future<>(custom_error(50));
        }
        return n % 100 == 0 ? later() : make_ready_future<>();
    });
    EXPECT_EQ(co_await code_of(std::move(f)), 50);
    EXPECT_EQ(n, 50000);
    int m = 0;
    auto g = keep_doing([&] {
        if (++m == 3) {
            throw custom_error(3);
        }
    });
    EXPECT_EQ(error_code(g), 3);
}

// ------------------------------------------------------------------------------------------------
// parallel_for_each

REEF_TEST(future_util, parallel_for_each_runs_all_concurrently) {
    std::vector<promise<>> ps(10);
    std::vector<int> idx(10);
    std::iota(idx.begin(), idx.end(), 0);
    int started = 0, finished = 0;
    auto f = parallel_for_each(idx, [&](int i) {
        ++started;
        return ps[i].get_future().then([&] { ++finished; });
    });
    EXPECT_EQ(started, 10);  // every call made before anything resolved
    EXPECT_FALSE(f.available());
    for (int i = 9; i >= 1; --i) {
        ps[i].set_value();
    }
    co_await later();
    co_await later();
    EXPECT_EQ(finished, 9);
    EXPECT_FALSE(f.available());  // still waiting for element 0
    ps[0].set_value();
    co_await std::move(f);
    EXPECT_EQ(finished, 10);
}

TEST(future_util, parallel_for_each_all_ready) {
    std::vector<int> v{1, 2, 3};
    int sum = 0;
    auto f = parallel_for_each(v, [&](int& x) { sum += x; });
    ASSERT_TRUE(f.available());
    f.get();
    EXPECT_EQ(sum, 6);
    auto g = parallel_for_each(std::vector<int>{}, [](int) {});
    ASSERT_TRUE(g.available());
    g.get();
}

REEF_TEST(future_util, parallel_for_each_exception_after_all_completed) {
    log_capture logs;
    promise<> slow;
    bool slow_done = false;
    std::vector<int> v{0, 1, 2, 3};
    auto f = parallel_for_each(v, [&](int i) -> future<> {
        switch (i) {
        case 0: return slow.get_future().then([&] { slow_done = true; });
        case 1: throw custom_error(1);
        case 2: return later().then([] { return make_exception_future<>(custom_error(2)); });
        default: return later();
        }
    });
    co_await later();
    co_await later();
    EXPECT_FALSE(f.available());  // failures are known, but element 0 is still running
    slow.set_value();
    int code = co_await code_of(std::move(f));
    EXPECT_TRUE(slow_done);
    EXPECT_TRUE(code == 1 || code == 2) << code;
    EXPECT_EQ(logs.count("exceptional future ignored"), 0);  // the other exception is dropped quietly
}

REEF_TEST(future_util, parallel_for_each_keeps_rvalue_container_alive) {
    std::size_t total = 0;
    // (Built outside the co_await expression: GCC 12 rejects an initializer list inside one.)
    std::vector<std::string> v{std::string(100, 'a'), std::string(200, 'b')};
    co_await parallel_for_each(std::move(v), [&](std::string& s) {
        return later().then([&s, &total] { total += s.size(); });
    });
    EXPECT_EQ(total, 300u);
}

REEF_TEST(future_util, parallel_for_each_over_views_and_iterators) {
    int sum = 0;
    co_await parallel_for_each(std::views::iota(1, 11), [&](int i) { return later().then([&sum, i] { sum += i; }); });
    EXPECT_EQ(sum, 55);
    std::list<int> l{1, 2, 3};
    co_await parallel_for_each(l.begin(), l.end(), [&](int& x) { return later().then([&x] { x *= 2; }); });
    EXPECT_EQ(l, (std::list<int>{2, 4, 6}));
}

// ------------------------------------------------------------------------------------------------
// max_concurrent_for_each

REEF_TEST(future_util, max_concurrent_for_each_respects_the_limit) {
    std::vector<int> items(300);
    std::iota(items.begin(), items.end(), 0);
    int in_flight = 0, max_seen = 0, done = 0;
    co_await max_concurrent_for_each(items, 7, [&](int i) {
        ++in_flight;
        max_seen = std::max(max_seen, in_flight);
        // Varied latencies, some ready at once: completions come out of order.
        return hops((i * 7919) % 6).then([&] {
            --in_flight;
            ++done;
        });
    });
    EXPECT_EQ(done, 300);
    EXPECT_EQ(in_flight, 0);
    EXPECT_EQ(max_seen, 7);
}

REEF_TEST(future_util, max_concurrent_for_each_limit_one_is_sequential) {
    std::vector<int> order;
    int in_flight = 0;
    bool overlapped = false;
    co_await max_concurrent_for_each(std::views::iota(0, 20), 1, [&](int i) {
        overlapped |= ++in_flight > 1;
        return hops(2 - i % 3).then([&, i] {
            --in_flight;
            order.push_back(i);
        });
    });
    EXPECT_FALSE(overlapped);
    std::vector<int> expected(20);
    std::iota(expected.begin(), expected.end(), 0);
    EXPECT_EQ(order, expected);
}

REEF_TEST(future_util, max_concurrent_for_each_limit_above_size) {
    std::vector<promise<>> ps(5);
    int started = 0;
    auto f = max_concurrent_for_each(std::views::iota(0, 5), 100, [&](int i) {
        ++started;
        return ps[i].get_future();
    });
    EXPECT_EQ(started, 5);
    for (auto& p : ps) {
        p.set_value();
    }
    co_await std::move(f);
}

REEF_TEST(future_util, max_concurrent_for_each_processes_all_despite_failures) {
    log_capture logs;
    int processed = 0;
    auto f = max_concurrent_for_each(std::views::iota(0, 50), 4, [&](int i) -> future<> {
        ++processed;
        if (i == 3) {
            throw custom_error(3);
        }
        if (i == 10) {
            return later().then([] { return make_exception_future<>(custom_error(10)); });
        }
        return hops(i % 3);
    });
    EXPECT_EQ(co_await code_of(std::move(f)), 3);
    EXPECT_EQ(processed, 50);  // the first failure observed
    EXPECT_EQ(logs.count("exceptional future ignored"), 0);
}

TEST(future_util, max_concurrent_for_each_ready_and_zero_limit) {
    int sum = 0;
    std::vector<int> v{1, 2, 3, 4};
    auto f = max_concurrent_for_each(v, 2, [&](int x) { sum += x; });
    ASSERT_TRUE(f.available());
    f.get();
    EXPECT_EQ(sum, 10);
    auto g = max_concurrent_for_each(v, 0, [&](int) {});
    EXPECT_THROW(g.get(), std::invalid_argument);
}

REEF_TEST(future_util, max_concurrent_for_each_million_ready_elements) {
    std::int64_t sum = 0;
    co_await max_concurrent_for_each(std::views::iota(0, 1000000), 3, [&](int i) { sum += i; });
    EXPECT_EQ(sum, std::int64_t(1000000) * 999999 / 2);
}

REEF_TEST(future_util, max_concurrent_for_each_keeps_rvalue_container_alive) {
    std::size_t total = 0;
    std::vector<std::string> v;
    for (int i = 0; i < 20; ++i) {
        v.emplace_back(50 + i, 'x');
    }
    co_await max_concurrent_for_each(std::move(v), 3, [&](std::string& s) {
        return later().then([&s, &total] { total += s.size(); });
    });
    EXPECT_EQ(total, std::size_t(20 * 50 + 190));
}

// ------------------------------------------------------------------------------------------------
// map_reduce

TEST(future_util, map_reduce_ready) {
    std::vector<int> v{1, 2, 3, 4};
    auto f = map_reduce(v, [](int x) { return x * x; }, 0, std::plus<>());
    ASSERT_TRUE(f.available());
    EXPECT_EQ(f.get(), 30);
    auto g = map_reduce(v.begin(), v.end(), [](int x) { return make_ready_future<int>(x); }, 100, std::plus<>());
    EXPECT_EQ(g.get(), 110);
    auto e = map_reduce(std::vector<int>{}, [](int x) { return x; }, 5, std::plus<>());
    EXPECT_EQ(e.get(), 5);
}

REEF_TEST(future_util, map_reduce_concurrent_and_in_order) {
    std::vector<promise<std::string>> ps(4);
    int mapped = 0;
    auto f = map_reduce(
        std::views::iota(0, 5),
        [&](int i) -> future<std::string> {
            ++mapped;
            if (i == 2) {
                return make_ready_future<std::string>("2");  // ready in the middle
            }
            return ps[i < 2 ? i : i - 1].get_future();
        },
        std::string(">"), [](std::string acc, std::string v) { return acc + v; });
    EXPECT_EQ(mapped, 5);  // all mapped before any reduction could wait
    ps[3].set_value("4");
    ps[2].set_value("3");
    ps[0].set_value("0");
    co_await later();
    EXPECT_FALSE(f.available());
    ps[1].set_value("1");
    EXPECT_EQ(co_await std::move(f), ">01234");  // reduced in element order
}

REEF_TEST(future_util, map_reduce_failure_after_all_complete) {
    log_capture logs;
    promise<int> last;
    bool last_done = false;
    auto f = map_reduce(
        std::views::iota(0, 4),
        [&](int i) -> future<int> {
            if (i == 1) {
                return later(0).then([](int) { return make_exception_future<int>(custom_error(1)); });
            }
            if (i == 3) {
                return last.get_future().then([&](int v) {
                    last_done = true;
                    return v;
                });
            }
            return later(i);
        },
        0, std::plus<>());
    co_await later();
    co_await later();
    EXPECT_FALSE(f.available());
    last.set_value(3);
    EXPECT_EQ(co_await code_of(std::move(f)), 1);
    EXPECT_TRUE(last_done);
    EXPECT_EQ(logs.count("exceptional future ignored"), 0);
}

REEF_TEST(future_util, map_reduce_mapper_and_reducer_exceptions) {
    auto a = map_reduce(std::views::iota(0, 3), [](int i) -> int {
        if (i == 1) {
            throw custom_error(11);
        }
        return i;
    }, 0, std::plus<>());
    EXPECT_EQ(error_code(a), 11);
    int reductions = 0;
    auto b = map_reduce(std::views::iota(0, 5), [](int i) { return later(i); }, 0, [&](int acc, int v) {
        ++reductions;
        if (v == 2) {
            throw custom_error(22);
        }
        return acc + v;
    });
    EXPECT_EQ(co_await code_of(std::move(b)), 22);
    EXPECT_EQ(reductions, 3);  // not called again after the failure
}

REEF_TEST(future_util, map_reduce_keeps_rvalue_container_alive) {
    std::vector<std::string> v{std::string(64, 'a'), std::string(128, 'b')};
    auto r = co_await map_reduce(
        std::move(v), [](std::string& s) { return later().then([&s] { return s.size(); }); }, std::size_t(0),
        std::plus<>());
    EXPECT_EQ(r, 192u);
}

// ------------------------------------------------------------------------------------------------
// when_all

REEF_TEST(future_util, when_all_mixed_ready_unready_failed) {
    log_capture logs;
    promise<std::string> p;
    promise<> q;
    auto f = when_all(make_ready_future<int>(1), p.get_future(), make_exception_future<double>(custom_error(3)),
                      q.get_future(), later(5));
    static_assert(std::is_same_v<decltype(f), future<std::tuple<future<int>, future<std::string>, future<double>,
                                                                  future<>, future<int>>>>);
    EXPECT_FALSE(f.available());
    p.set_value("two");
    co_await later();
    EXPECT_FALSE(f.available());
    q.set_exception(custom_error(4));
    auto [a, b, c, d, e] = co_await std::move(f);
    EXPECT_TRUE(a.available() && b.available() && c.available() && d.available() && e.available());
    EXPECT_EQ(a.get(), 1);
    EXPECT_EQ(b.get(), "two");
    EXPECT_EQ(error_code(c), 3);
    EXPECT_EQ(error_code(d), 4);
    EXPECT_EQ(e.get(), 5);
    EXPECT_EQ(logs.count("exceptional future ignored"), 0);
}

TEST(future_util, when_all_all_ready) {
    auto f = when_all(make_ready_future<int>(1), make_ready_future<>());
    ASSERT_TRUE(f.available());
    auto [a, b] = f.get();
    EXPECT_EQ(a.get(), 1);
    b.get();
    auto empty = when_all();
    ASSERT_TRUE(empty.available());
    empty.get();
}

REEF_TEST(future_util, when_all_failed_futures_are_reported_if_ignored) {
    log_capture logs;
    {
        auto r = co_await when_all(later(1), make_exception_future<int>(custom_error(9)));
        std::get<0>(r).get();
        // std::get<1>(r) dropped unobserved
    }
    EXPECT_EQ(logs.count("exceptional future ignored"), 1);
}

REEF_TEST(future_util, when_all_iterators_and_ranges) {
    std::vector<future<int>> v;
    promise<int> p;
    v.push_back(make_ready_future<int>(0));
    v.push_back(p.get_future());
    v.push_back(make_exception_future<int>(custom_error(2)));
    v.push_back(later(3));
    auto f = when_all(v.begin(), v.end());
    EXPECT_FALSE(v[0].valid());  // moved out
    EXPECT_FALSE(f.available());
    p.set_value(1);
    auto r = co_await std::move(f);
    REEF_ASSERT(r.size() == 4u);
    EXPECT_EQ(r[0].get(), 0);
    EXPECT_EQ(r[1].get(), 1);
    EXPECT_EQ(error_code(r[2]), 2);
    EXPECT_EQ(r[3].get(), 3);

    std::vector<future<>> w;
    w.push_back(later());
    w.push_back(make_ready_future<>());
    auto r2 = co_await when_all(std::move(w));
    EXPECT_EQ(r2.size(), 2u);
    for (auto& x : r2) {
        x.get();
    }
    std::vector<future<>> none;
    auto g = when_all(none.begin(), none.end());
    EXPECT_TRUE(g.available());
    EXPECT_TRUE(g.get().empty());
}

// ------------------------------------------------------------------------------------------------
// when_all_succeed

REEF_TEST(future_util, when_all_succeed_values_without_voids) {
    promise<std::string> p;
    auto f = when_all_succeed(later(1), later(), p.get_future(), make_ready_future<double>(2.5));
    static_assert(std::is_same_v<decltype(f), future<std::tuple<int, std::string, double>>>);
    p.set_value("s");
    auto [i, s, d] = co_await std::move(f);
    EXPECT_EQ(i, 1);
    EXPECT_EQ(s, "s");
    EXPECT_EQ(d, 2.5);
    auto voids = when_all_succeed(later(), make_ready_future<>());
    static_assert(std::is_same_v<decltype(voids), future<std::tuple<>>>);
    co_await std::move(voids);
}

TEST(future_util, when_all_succeed_ready) {
    auto f = when_all_succeed(make_ready_future<int>(1), make_ready_future<std::string>("x"));
    ASSERT_TRUE(f.available());
    EXPECT_EQ(f.get(), std::make_tuple(1, std::string("x")));
}

REEF_TEST(future_util, when_all_succeed_first_exception_after_all_complete) {
    log_capture logs;
    promise<int> first_fails_late;
    promise<> slow;
    bool slow_done = false;
    auto f = when_all_succeed(first_fails_late.get_future(), make_exception_future<int>(custom_error(2)),
                              slow.get_future().then([&] { slow_done = true; }));
    first_fails_late.set_exception(custom_error(1));
    co_await later();
    co_await later();
    EXPECT_FALSE(f.available());  // still waiting for `slow`
    slow.set_value();
    EXPECT_EQ(co_await code_of(std::move(f)), 1);
    EXPECT_TRUE(slow_done);  // argument order, not completion order
    EXPECT_EQ(logs.count("exceptional future ignored"), 0);
}

REEF_TEST(future_util, when_all_succeed_ranges) {
    std::vector<future<int>> v;
    for (int i = 0; i < 5; ++i) {
        v.push_back(i % 2 ? later(i) : make_ready_future<int>(i));
    }
    auto values = co_await when_all_succeed(std::move(v));
    EXPECT_EQ(values, (std::vector<int>{0, 1, 2, 3, 4}));

    std::vector<future<>> w;
    w.push_back(later());
    w.push_back(make_ready_future<>());
    auto fw = when_all_succeed(w.begin(), w.end());
    static_assert(std::is_same_v<decltype(fw), future<>>);
    co_await std::move(fw);

    log_capture logs;
    std::vector<future<int>> x;
    x.push_back(later(0));
    x.push_back(later(0).then([](int) { return make_exception_future<int>(custom_error(1)); }));
    x.push_back(make_exception_future<int>(custom_error(2)));
    auto fx = when_all_succeed(x);
    EXPECT_EQ(co_await code_of(std::move(fx)), 1);  // iteration order
    EXPECT_EQ(logs.count("exceptional future ignored"), 0);
}

// ------------------------------------------------------------------------------------------------
// with_timeout

REEF_TEST(future_util, with_timeout_fires) {
    log_capture logs;
    promise<int> p;
    auto f = with_timeout(steady_clock_type::now() + 5ms, p.get_future());
    try {
        co_await std::move(f);
        ADD_FAILURE() << "no timeout";
    } catch (const timed_out_error& e) {
        EXPECT_STREQ(e.what(), "timed out");
    }
    // The late result is consumed quietly.
    p.set_exception(custom_error(1));
    co_await later();
    co_await later();
    EXPECT_EQ(logs.count("exceptional future ignored"), 0);
}

REEF_TEST(future_util, with_timeout_late_value_and_broken_promise) {
    log_capture logs;
    promise<std::string> p;
    auto f = with_timeout(steady_clock_type::now() + 1ms, p.get_future());
    EXPECT_THROW(co_await std::move(f), timed_out_error);
    p.set_value("late");
    auto q = std::make_unique<promise<>>();
    auto g = with_timeout(steady_clock_type::now() + 1ms, q->get_future());
    EXPECT_THROW(co_await std::move(g), timed_out_error);
    q.reset();
    co_await later();
    co_await later();
    EXPECT_EQ(logs.count("exceptional future ignored"), 0);
}

REEF_TEST(future_util, with_timeout_does_not_fire) {
    // A deadline far in the future: the value wins, and the cancelled timer never fires later.
    auto f = with_timeout(steady_clock_type::now() + 60s, later(std::string("in time")));
    EXPECT_EQ(co_await std::move(f), "in time");
    auto g = with_timeout(steady_clock_type::now() + 60s, later(0).then([](int) {
        return make_exception_future<int>(custom_error(6));
    }));
    EXPECT_THROW(co_await std::move(g), custom_error);
    // Timers left armed by with_timeout would have to fire (and touch freed memory under ASan)
    // before this reactor exits; there must be none.
    co_await sleep(5ms);
}

REEF_TEST(future_util, with_timeout_lowres_clock) {
    promise<> p;
    auto f = with_timeout(lowres_clock::now() + 5ms, p.get_future());
    EXPECT_THROW(co_await std::move(f), timed_out_error);
    p.set_value();
    auto g = with_timeout(lowres_clock::now() + 60s, later(3));
    EXPECT_EQ(co_await std::move(g), 3);
}

TEST(future_util, with_timeout_ready_future_is_returned_as_is) {
    auto f = with_timeout(steady_clock_type::now() - 1s, make_ready_future<int>(4));
    ASSERT_TRUE(f.available());
    EXPECT_EQ(f.get(), 4);
}

// ------------------------------------------------------------------------------------------------
// sleep

REEF_TEST(future_util, sleep_waits_at_least_the_duration) {
    auto start = steady_clock_type::now();
    co_await sleep(10ms);
    EXPECT_GE(steady_clock_type::now() - start, 10ms);
    auto lstart = lowres_clock::now();
    co_await sleep<lowres_clock>(10ms);
    EXPECT_GE(lowres_clock::now() - lstart, 10ms);
}

REEF_TEST(future_util, sleeps_resolve_in_deadline_order) {
    std::vector<int> order;
    auto a = sleep(30ms).then([&] { order.push_back(30); });
    auto b = sleep(10ms).then([&] { order.push_back(10); });
    auto c = sleep(0ms).then([&] { order.push_back(0); });
    auto d = sleep(-5ms).then([&] { order.push_back(-5); });
    co_await when_all(std::move(a), std::move(b), std::move(c), std::move(d));
    REEF_ASSERT(order.size() == 4u);
    EXPECT_EQ(order[2], 10);
    EXPECT_EQ(order[3], 30);
}

// ------------------------------------------------------------------------------------------------
// No allocation when everything is ready

TEST(future_util, ready_paths_do_not_allocate) {
    std::vector<int> v{1, 2, 3, 4, 5};
    int sum = 0;
    std::size_t before = t_allocations;

    auto r1 = repeat([n = 0]() mutable { return ++n == 100 ? stop_iteration::yes : stop_iteration::no; });
    r1.get();
    auto r2 = do_until([n = 0]() mutable { return ++n == 100; }, [&] { ++sum; });
    r2.get();
    auto r3 = parallel_for_each(v, [&](int x) { sum += x; });
    r3.get();
    auto r4 = max_concurrent_for_each(v, 2, [&](int x) { return make_ready_future<>().then([&, x] { sum += x; }); });
    r4.get();
    auto r5 = map_reduce(v.begin(), v.end(), [](int x) { return make_ready_future<int>(x); }, 0, std::plus<>());
    sum += r5.get();
    auto r6 = when_all(make_ready_future<int>(1), make_ready_future<>());
    auto t6 = r6.get();
    sum += std::get<0>(t6).get();
    auto r7 = when_all_succeed(make_ready_future<int>(1), make_ready_future<>(), make_ready_future<long>(2));
    auto t7 = r7.get();
    sum += std::get<0>(t7) + int(std::get<1>(t7));
    auto r8 = with_timeout(steady_clock_type::now() + 1s, make_ready_future<int>(1));
    sum += r8.get();

    std::size_t allocations = t_allocations - before;
    EXPECT_EQ(allocations, 0u);
    EXPECT_EQ(sum, 99 + 15 + 15 + 15 + 1 + 1 + 2 + 1);
}
