#include "reactor_test.hh"
#include "runtime/semaphore.hh"
#include "sync_test_util.hh"

#include <chrono>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <vector>

using namespace reef;
using reef::testing::custom_error;
using reef::testing::fails_with;
using namespace std::chrono_literals;
using reef::testing::delay;
using reef::testing::settle;
using reef::testing::yield_once;

// Count allocations on this thread, to check the no-allocation paths. (GCC warns that the
// replacement operator delete frees what the replacement operator new malloc'ed: it is not wrong.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
namespace {
thread_local std::size_t allocations = 0;
}
void* operator new(std::size_t n) {
    ++allocations;
    if (void* p = std::malloc(n ? n : 1)) {
        return p;
    }
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop


REEF_TEST(semaphore, ready_path_does_not_allocate) {
    semaphore s(3);
    auto before = allocations;
    auto f = s.wait(2);
    bool tried = s.try_wait(1);
    EXPECT_EQ(allocations, before);
    EXPECT_TRUE(f.available());
    EXPECT_FALSE(f.failed());
    EXPECT_TRUE(tried);
    EXPECT_EQ(s.available_units(), 0);
    co_await std::move(f);
    s.signal(3);
    EXPECT_EQ(s.available_units(), 3);
}

REEF_TEST(semaphore, waiter_costs_one_allocation) {
    semaphore s(0);
    abort_source as;
    // Beyond its one node, a waiter must not allocate: no std::function spill for the timer or
    // abort callbacks, no list growth. Warm up first: the reactor's timer heap grows on first use.
    co_await s.wait(1ms).handle_exception([](std::exception_ptr) {});
    auto before = allocations;
    auto f1 = s.wait();
    EXPECT_LE(allocations - before, 1u);  // the node (0 if the task pool recycles one)
    before = allocations;
    auto f2 = s.wait(10s);
    EXPECT_LE(allocations - before, 1u);  // the node (0 if the task pool recycles one)
    before = allocations;
    auto f3 = s.wait(as);
    EXPECT_LE(allocations - before, 1u);  // the node (0 if the task pool recycles one)
    EXPECT_EQ(s.waiters(), 3u);
    s.signal(3);
    co_await std::move(f1);
    co_await std::move(f2);
    co_await std::move(f3);
    EXPECT_EQ(s.waiters(), 0u);
}

REEF_TEST(semaphore, wait_blocks_until_signal) {
    semaphore s(0);
    auto f = s.wait();
    EXPECT_FALSE(f.available());
    EXPECT_EQ(s.waiters(), 1u);
    co_await settle(3);
    EXPECT_FALSE(f.available());
    s.signal();
    EXPECT_EQ(s.waiters(), 0u);
    EXPECT_EQ(s.available_units(), 0);  // the unit went to the waiter
    co_await std::move(f);
}

REEF_TEST(semaphore, fifo_order_and_large_waiter_blocks_small_ones) {
    semaphore s(0);
    std::vector<int> order;
    auto f1 = s.wait(3).then([&] { order.push_back(1); });
    auto f2 = s.wait(1).then([&] { order.push_back(2); });
    auto f3 = s.wait(1).then([&] { order.push_back(3); });
    s.signal(2);  // enough for 2 and 3, but 1 is at the head and needs 3
    co_await settle();
    EXPECT_TRUE(order.empty());
    EXPECT_EQ(s.available_units(), 2);
    EXPECT_FALSE(s.try_wait(1));  // would overtake waiters
    s.signal(1);                  // 3 units: waiter 1 takes them all
    co_await settle();
    EXPECT_EQ(order, (std::vector<int>{1}));
    s.signal(2);
    co_await settle();
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(s.available_units(), 0);
    s.signal(10);  // lets a broken implementation finish instead of hanging
    co_await std::move(f1);
    co_await std::move(f2);
    co_await std::move(f3);
}

REEF_TEST(semaphore, new_wait_does_not_overtake_waiters) {
    semaphore s(1);
    auto f1 = s.wait(2);
    EXPECT_FALSE(f1.available());
    auto f2 = s.wait(1);  // a unit is available, but f1 waits first
    EXPECT_FALSE(f2.available());
    s.signal(1);
    co_await settle(3);
    EXPECT_TRUE(f1.available());
    EXPECT_FALSE(f2.available());
    s.signal(1);
    co_await settle(3);
    EXPECT_TRUE(f2.available());
    EXPECT_EQ(s.available_units(), 0);
    s.signal(10);  // lets a broken implementation finish instead of hanging
    co_await std::move(f1);
    co_await std::move(f2);
}

REEF_TEST(semaphore, timeout_fails_and_removes_waiter) {
    semaphore s(0);
    auto start = steady_clock_type::now();
    auto timed = s.wait(20ms);
    auto other = s.wait(1);
    EXPECT_EQ(s.waiters(), 2u);
    EXPECT_TRUE(co_await fails_with<semaphore_timed_out>(std::move(timed)));
    EXPECT_GE(steady_clock_type::now() - start, 20ms);
    EXPECT_EQ(s.waiters(), 1u);
    // The unit goes to the remaining waiter, not to the expired one.
    s.signal(1);
    co_await std::move(other);
    EXPECT_EQ(s.available_units(), 0);
    EXPECT_EQ(s.waiters(), 0u);
}

REEF_TEST(semaphore, timeout_of_head_waiter_lets_next_proceed) {
    semaphore s(1);
    auto big = s.wait(steady_clock_type::now() + 5ms, 5);  // blocks the head
    auto small = s.wait(1);
    EXPECT_FALSE(small.available());
    EXPECT_TRUE(co_await fails_with<semaphore_timed_out>(std::move(big)));
    // The available unit was handed to the next waiter as soon as the head left.
    co_await settle(3);
    EXPECT_TRUE(small.available());
    EXPECT_EQ(s.available_units(), 0);
    EXPECT_EQ(s.waiters(), 0u);
    s.signal();  // lets a broken implementation finish instead of hanging
    co_await std::move(small);
}

REEF_TEST(semaphore, satisfied_before_timeout_does_not_fail_later) {
    semaphore s(0);
    auto f = s.wait(30ms);
    s.signal();
    co_await std::move(f);
    co_await delay(50ms);  // the timer must have been cancelled
    EXPECT_EQ(s.available_units(), 0);
    EXPECT_EQ(s.waiters(), 0u);
}

REEF_TEST(semaphore, lowres_clock_timeout) {
    basic_semaphore<semaphore_default_exception_factory, lowres_clock> s(0);
    EXPECT_TRUE(co_await fails_with<semaphore_timed_out>(s.wait(10ms)));
    EXPECT_EQ(s.waiters(), 0u);
}

REEF_TEST(semaphore, abort_fails_waiter) {
    semaphore s(0);
    abort_source as;
    auto f = s.wait(as, 1);
    auto other = s.wait(1);
    co_await yield_once();
    EXPECT_FALSE(f.available());
    as.request_abort();
    EXPECT_EQ(s.waiters(), 1u);
    EXPECT_TRUE(co_await fails_with<semaphore_aborted>(std::move(f)));
    s.signal();
    co_await std::move(other);
}

REEF_TEST(semaphore, abort_with_custom_exception_and_already_aborted) {
    semaphore s(0);
    abort_source as;
    auto f = s.wait(as, 2);
    as.request_abort_ex(custom_error());
    EXPECT_TRUE(co_await fails_with<custom_error>(std::move(f)));
    // Already aborted: fails at once, even though units are available.
    s.signal(5);
    auto g = s.wait(as, 1);
    EXPECT_TRUE(g.available());
    EXPECT_TRUE(co_await fails_with<custom_error>(std::move(g)));
    EXPECT_EQ(s.available_units(), 5);
    abort_source plain;
    plain.request_abort();
    EXPECT_TRUE(co_await fails_with<abort_requested_exception>(s.wait(plain, 1)));
}

REEF_TEST(semaphore, abort_of_head_waiter_lets_next_proceed) {
    semaphore s(2);
    abort_source as;
    auto big = s.wait(as, 10);
    auto small = s.wait(2);
    as.request_abort();
    EXPECT_TRUE(co_await fails_with<abort_requested_exception>(std::move(big)));
    co_await settle(3);
    EXPECT_TRUE(small.available());
    EXPECT_EQ(s.available_units(), 0);
    s.signal(2);  // lets a broken implementation finish instead of hanging
    co_await std::move(small);
}

REEF_TEST(semaphore, abort_source_destroyed_after_wait_is_granted) {
    semaphore s(0);
    auto as = std::make_unique<abort_source>();
    auto f = s.wait(*as, 1);
    s.signal();
    co_await std::move(f);
    as->request_abort();  // no waiter left to fail
    as.reset();
    EXPECT_EQ(s.available_units(), 0);
}

REEF_TEST(semaphore, broken_fails_waiters_and_later_waits) {
    semaphore s(0);
    auto f1 = s.wait();
    auto f2 = s.wait(10s, 2);
    s.broken();
    EXPECT_EQ(s.waiters(), 0u);
    EXPECT_TRUE(s.is_broken());
    EXPECT_TRUE(co_await fails_with<broken_semaphore>(std::move(f1)));
    EXPECT_TRUE(co_await fails_with<broken_semaphore>(std::move(f2)));
    s.signal(10);  // ignored
    EXPECT_TRUE(co_await fails_with<broken_semaphore>(s.wait()));
    EXPECT_FALSE(s.try_wait());
}

REEF_TEST(semaphore, broken_with_custom_exception) {
    semaphore s(0);
    auto f = s.wait();
    s.broken(custom_error());
    EXPECT_TRUE(co_await fails_with<custom_error>(std::move(f)));
    EXPECT_TRUE(co_await fails_with<custom_error>(s.wait()));
}

REEF_TEST(semaphore, destroying_semaphore_breaks_waiters) {
    auto s = std::make_unique<semaphore>(0);
    auto f = s->wait();
    s.reset();
    EXPECT_TRUE(co_await fails_with<broken_semaphore>(std::move(f)));
}

REEF_TEST(semaphore, consume_can_go_negative) {
    semaphore s(2);
    s.consume(5);
    EXPECT_EQ(s.available_units(), -3);
    EXPECT_EQ(s.current(), 0u);
    auto f = s.wait(1);
    s.signal(3);
    EXPECT_FALSE(f.available());  // back to 0: still not enough
    s.signal(1);
    co_await std::move(f);
    EXPECT_EQ(s.available_units(), 0);
}

REEF_TEST(semaphore, units_return_on_destruction) {
    semaphore s(5);
    {
        auto u = co_await get_units(s, 3);
        EXPECT_EQ(u.count(), 3u);
        EXPECT_EQ(s.available_units(), 2);
        auto u2 = std::move(u);
        EXPECT_EQ(u.count(), 0u);
        EXPECT_EQ(s.available_units(), 2);
    }
    EXPECT_EQ(s.available_units(), 5);
}

REEF_TEST(semaphore, units_wake_waiter_when_destroyed) {
    semaphore s(1);
    auto u = co_await get_units(s, 1);
    auto f = get_units(s, 1);
    EXPECT_FALSE(f.available());
    { auto drop = std::move(u); }
    auto u2 = co_await std::move(f);
    EXPECT_EQ(u2.count(), 1u);
    EXPECT_EQ(s.available_units(), 0);
}

REEF_TEST(semaphore, units_return_split_adopt_release) {
    semaphore s(10);
    auto u = co_await get_units(s, 6);
    EXPECT_EQ(u.return_units(2), 4u);
    EXPECT_EQ(s.available_units(), 6);
    EXPECT_THROW(u.return_units(5), std::invalid_argument);
    EXPECT_EQ(u.count(), 4u);

    auto part = u.split(3);
    EXPECT_EQ(part.count(), 3u);
    EXPECT_EQ(u.count(), 1u);
    EXPECT_THROW((void)u.split(2), std::invalid_argument);

    u.adopt(std::move(part));
    EXPECT_EQ(u.count(), 4u);
    EXPECT_EQ(part.count(), 0u);

    semaphore other(3);
    auto foreign = co_await get_units(other, 1);
    EXPECT_THROW(u.adopt(std::move(foreign)), std::invalid_argument);
    EXPECT_EQ(foreign.count(), 1u);

    auto n = u.release();
    EXPECT_EQ(n, 4u);
    EXPECT_FALSE(u);
    EXPECT_EQ(s.available_units(), 6);  // released units are not returned
    s.signal(n);
    EXPECT_EQ(s.available_units(), 10);
}

REEF_TEST(semaphore, try_get_units_and_consume_units) {
    semaphore s(2);
    {
        auto u = try_get_units(s, 2);
        REEF_ASSERT(u.has_value());
        EXPECT_EQ(s.available_units(), 0);
        EXPECT_FALSE(try_get_units(s, 1).has_value());
        auto c = consume_units(s, 3);
        EXPECT_EQ(s.available_units(), -3);
    }
    EXPECT_EQ(s.available_units(), 2);
}

REEF_TEST(semaphore, get_units_with_timeout_and_abort) {
    semaphore s(0);
    EXPECT_TRUE(co_await fails_with<semaphore_timed_out>(get_units(s, 1, 5ms)));
    abort_source as;
    auto f = get_units(s, 1, as);
    as.request_abort();
    EXPECT_TRUE(co_await fails_with<semaphore_aborted>(std::move(f)));
    EXPECT_EQ(s.available_units(), 0);
}

REEF_TEST(semaphore, with_semaphore_limits_concurrency) {
    semaphore s(2);
    int running = 0, max_running = 0, done = 0;
    std::vector<future<>> fs;
    for (int i = 0; i < 6; ++i) {
        fs.push_back(with_semaphore(s, 1, [&]() -> future<> {
            ++running;
            max_running = std::max(max_running, running);
            co_await yield_once();
            co_await yield_once();
            --running;
            ++done;
        }));
    }
    for (auto& f : fs) {
        co_await std::move(f);
    }
    EXPECT_EQ(done, 6);
    EXPECT_EQ(max_running, 2);
    EXPECT_EQ(s.available_units(), 2);
}

REEF_TEST(semaphore, with_semaphore_returns_value_and_keeps_captures_alive) {
    semaphore s(1);
    auto big = std::make_unique<int>(41);
    // A coroutine lambda with captures passed as a temporary: its captures must survive
    // suspension. (The future is named, not awaited in the same expression: GCC 12 destroys a
    // lambda temporary with non-trivial captures twice when it appears inside a co_await
    // expression.)
    auto f = with_semaphore(s, 1, [p = std::move(big)]() -> future<int> {
        co_await yield_once();
        co_await yield_once();
        co_return *p + 1;
    });
    int v = co_await std::move(f);
    EXPECT_EQ(v, 42);
    EXPECT_EQ(s.available_units(), 1);
    int w = co_await with_semaphore(s, 1, [] { return 7; });
    EXPECT_EQ(w, 7);
}

REEF_TEST(semaphore, with_semaphore_returns_units_on_exception) {
    semaphore s(3);
    EXPECT_TRUE(co_await fails_with<custom_error>(with_semaphore(s, 2, []() -> int { throw custom_error(); })));
    EXPECT_EQ(s.available_units(), 3);
    EXPECT_TRUE(co_await fails_with<custom_error>(with_semaphore(s, 3, []() -> future<> {
        co_await yield_once();
        throw custom_error();
    })));
    EXPECT_EQ(s.available_units(), 3);
    EXPECT_TRUE(co_await fails_with<custom_error>(
        with_semaphore(s, 1, [] { return make_exception_future<>(custom_error()); })));
    EXPECT_EQ(s.available_units(), 3);
}

REEF_TEST(semaphore, with_semaphore_timeout_does_not_call_func) {
    semaphore s(0);
    bool called = false;
    EXPECT_TRUE(co_await fails_with<semaphore_timed_out>(with_semaphore(s, 1, 5ms, [&] { called = true; })));
    EXPECT_FALSE(called);
    s.signal();
    co_await with_semaphore(s, 1, steady_clock_type::now() + 1s, [&] { called = true; });
    EXPECT_TRUE(called);
    EXPECT_EQ(s.available_units(), 1);
}

REEF_TEST(semaphore, with_semaphore_on_broken_semaphore_does_not_call_func) {
    semaphore s(1);
    s.broken();
    bool called = false;
    EXPECT_TRUE(co_await fails_with<broken_semaphore>(with_semaphore(s, 1, [&] { called = true; })));
    EXPECT_FALSE(called);
}

namespace {
struct named_factory {
    static std::runtime_error timeout() { return std::runtime_error("named: timeout"); }
    static std::logic_error broken() { return std::logic_error("named: broken"); }
};
}  // namespace

REEF_TEST(semaphore, custom_exception_factory) {
    basic_semaphore<named_factory> s(0);
    EXPECT_TRUE(co_await fails_with<std::runtime_error>(s.wait(2ms)));
    abort_source as;
    auto f = s.wait(as);
    as.request_abort();
    EXPECT_TRUE(co_await fails_with<semaphore_aborted>(std::move(f)));  // no aborted() given
    s.broken();
    EXPECT_TRUE(co_await fails_with<std::logic_error>(s.wait()));
}

REEF_TEST(semaphore, huge_timeout_means_no_timeout) {
    semaphore s(0);
    auto f = s.wait(steady_clock_type::duration::max());
    co_await delay(2ms);
    EXPECT_FALSE(f.available());  // an overflowing deadline would have expired at once
    s.signal();
    co_await std::move(f);
}
