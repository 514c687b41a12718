#include "reactor_test.hh"
#include "runtime/gate.hh"
#include "sync_test_util.hh"

#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

using namespace reef;
using reef::testing::custom_error;
using reef::testing::fails_with;
using namespace std::chrono_literals;
using reef::testing::delay;
using reef::testing::settle;
using reef::testing::yield_once;

REEF_TEST(gate, close_without_holders_resolves_at_once) {
    gate g;
    EXPECT_FALSE(g.is_closed());
    auto f = g.close();
    EXPECT_TRUE(g.is_closed());
    co_await std::move(f);
}

REEF_TEST(gate, close_waits_for_last_leave) {
    gate g;
    g.enter();
    g.enter();
    EXPECT_EQ(g.get_count(), 2u);
    bool closed = false;
    auto f = g.close().then([&] { closed = true; });
    co_await settle();
    EXPECT_FALSE(closed);
    g.leave();
    co_await settle();
    EXPECT_FALSE(closed);  // one holder is still inside
    EXPECT_EQ(g.get_count(), 1u);
    g.leave();
    co_await std::move(f);
    EXPECT_TRUE(closed);
    EXPECT_EQ(g.get_count(), 0u);
}

REEF_TEST(gate, enter_after_close_throws) {
    gate g;
    g.enter();
    auto f = g.close();
    EXPECT_THROW(g.enter(), gate_closed_exception);
    EXPECT_FALSE(g.try_enter());
    EXPECT_THROW(g.check(), gate_closed_exception);
    EXPECT_THROW((void)g.hold(), gate_closed_exception);
    EXPECT_FALSE(g.try_hold().has_value());
    EXPECT_EQ(g.get_count(), 1u);  // failed entries did not count
    g.leave();
    co_await std::move(f);
}

REEF_TEST(gate, holder_raii_copy_and_move) {
    gate g;
    std::optional<gate::holder> h1 = g.hold();
    EXPECT_EQ(g.get_count(), 1u);
    auto f = g.close();
    // Copying a holder after close is allowed: the original keeps the gate open.
    std::optional<gate::holder> h2 = *h1;
    EXPECT_EQ(g.get_count(), 2u);
    gate::holder h3 = std::move(*h2);
    EXPECT_FALSE(*h2);
    EXPECT_TRUE(h3);
    EXPECT_EQ(g.get_count(), 2u);
    h2.reset();
    EXPECT_EQ(g.get_count(), 2u);
    h1.reset();
    co_await settle();
    EXPECT_FALSE(f.available());
    h3.release();
    EXPECT_EQ(g.get_count(), 0u);
    co_await std::move(f);
}

REEF_TEST(gate, try_hold_and_holder_constructor) {
    gate g;
    {
        auto h = g.try_hold();
        REEF_ASSERT(h.has_value());
        gate::holder h2(g);
        EXPECT_EQ(g.get_count(), 2u);
        gate::holder empty;
        EXPECT_FALSE(empty);
        empty = h2;  // copy-assign enters once more
        EXPECT_EQ(g.get_count(), 3u);
    }
    EXPECT_EQ(g.get_count(), 0u);
    co_await g.close();
}

REEF_TEST(gate, with_gate_holds_until_future_resolves) {
    gate g;
    promise<int> p;
    auto f = with_gate(g, [&] { return p.get_future(); });
    EXPECT_EQ(g.get_count(), 1u);
    bool closed = false;
    auto c = g.close().then([&] { closed = true; });
    co_await settle();
    EXPECT_FALSE(closed);
    p.set_value(5);
    EXPECT_EQ(co_await std::move(f), 5);
    co_await std::move(c);
    EXPECT_TRUE(closed);
}

REEF_TEST(gate, with_gate_leaves_on_exception) {
    gate g;
    EXPECT_TRUE(co_await fails_with<custom_error>(with_gate(g, []() -> int { throw custom_error(); })));
    EXPECT_EQ(g.get_count(), 0u);
    EXPECT_TRUE(co_await fails_with<custom_error>(with_gate(g, []() -> future<> {
        co_await yield_once();
        throw custom_error();
    })));
    EXPECT_EQ(g.get_count(), 0u);
    co_await g.close();
}

REEF_TEST(gate, with_gate_keeps_coroutine_lambda_alive) {
    gate g;
    auto value = std::make_unique<int>(6);
    // Named future: GCC 12 destroys a capturing lambda temporary twice inside a co_await expression.
    auto f = with_gate(g, [v = std::move(value)]() -> future<int> {
        co_await yield_once();
        co_await delay(1ms);
        co_return *v * 7;
    });
    EXPECT_EQ(co_await std::move(f), 42);
    EXPECT_EQ(g.get_count(), 0u);
    co_await g.close();
}

REEF_TEST(gate, with_gate_on_closed_gate_throws_try_with_gate_fails) {
    gate g;
    co_await g.close();
    bool called = false;
    EXPECT_THROW((void)with_gate(g, [&] { called = true; }), gate_closed_exception);
    auto f = try_with_gate(g, [&] { called = true; });
    EXPECT_TRUE(f.failed());
    EXPECT_TRUE(co_await fails_with<gate_closed_exception>(std::move(f)));
    EXPECT_FALSE(called);
}

REEF_TEST(gate, try_with_gate_runs_when_open) {
    gate g;
    int v = co_await try_with_gate(g, [&] {
        EXPECT_EQ(g.get_count(), 1u);
        return 3;
    });
    EXPECT_EQ(v, 3);
    EXPECT_EQ(g.get_count(), 0u);
    co_await g.close();
}

REEF_TEST(gate, close_waits_for_many_background_operations) {
    gate g;
    int finished = 0;
    std::vector<future<>> ops;
    for (int i = 0; i < 5; ++i) {
        ops.push_back(with_gate(g, [&finished, i]() -> future<> {
            for (int k = 0; k <= i; ++k) {
                co_await yield_once();
            }
            ++finished;
        }));
    }
    co_await g.close();
    EXPECT_EQ(finished, 5);  // close resolved only after all of them
    for (auto& f : ops) {
        co_await std::move(f);
    }
}
