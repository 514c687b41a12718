#include "reactor_test.hh"
#include "runtime/thread.hh"
#include "runtime/syscall_pool.hh"
#include "runtime/timer.hh"

using namespace reef;

TEST(future, ready_then_runs_inline) {
    int x = 0;
    auto f = make_ready_future<int>(41).then([&](int v) { x = v + 1; return x; });
    EXPECT_TRUE(f.available());
    EXPECT_EQ(x, 42);
    f.ignore_ready_future();
}

REEF_TEST(future, unready_chain) {
    promise<int> p;
    auto f = p.get_future().then([](int v) { return v * 2; }).then([](int v) { return make_ready_future<int>(v + 1); });
    EXPECT_FALSE(f.available());
    p.set_value(20);
    int v = co_await std::move(f);
    EXPECT_EQ(v, 41);
}

REEF_TEST(future, timer_and_thread) {
    promise<> p;
    timer<> t([&] { p.set_value(); });
    t.arm(std::chrono::milliseconds(5));
    co_await p.get_future();
    int r = co_await async([] {
        promise<int> q;
        timer<> t2([&] { q.set_value(7); });
        t2.arm(std::chrono::milliseconds(1));
        return q.get_future().get() + 1;
    });
    EXPECT_EQ(r, 8);
    int b = co_await run_blocking([] { return 5; });
    EXPECT_EQ(b, 5);
}
