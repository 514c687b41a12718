#include "reactor_test.hh"
#include "runtime/queue.hh"
#include "sync_test_util.hh"

#include <memory>
#include <stdexcept>
#include <vector>

using namespace reef;
using reef::testing::custom_error;
using reef::testing::fails_with;
using reef::testing::settle;
using reef::testing::yield_once;

TEST(queue, push_pop_fifo_and_capacity) {
    queue<int> q(2);
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.max_size(), 2u);
    EXPECT_TRUE(q.push(1));
    EXPECT_TRUE(q.push(2));
    EXPECT_TRUE(q.full());
    int three = 3;
    EXPECT_FALSE(q.push(std::move(three)));
    EXPECT_EQ(q.size(), 2u);
    EXPECT_EQ(q.front(), 1);
    EXPECT_EQ(q.pop(), 1);
    EXPECT_EQ(q.pop(), 2);
    EXPECT_TRUE(q.empty());
}

TEST(queue, rejected_push_leaves_item_untouched) {
    queue<std::unique_ptr<int>> q(1);
    EXPECT_TRUE(q.push(std::make_unique<int>(1)));
    auto p = std::make_unique<int>(2);
    EXPECT_FALSE(q.push(std::move(p)));
    ASSERT_TRUE(p);
    EXPECT_EQ(*p, 2);
}

REEF_TEST(queue, pop_eventually_waits_for_item) {
    queue<int> q(4);
    auto f = q.pop_eventually();
    auto g = q.pop_eventually();
    EXPECT_TRUE(q.has_blocked_consumer());
    co_await settle(3);
    EXPECT_FALSE(f.available());
    EXPECT_TRUE(q.push(10));
    EXPECT_TRUE(q.push(20));
    EXPECT_TRUE(q.empty());  // handed straight to the waiting consumers, in order
    EXPECT_EQ(co_await std::move(f), 10);
    EXPECT_EQ(co_await std::move(g), 20);
    EXPECT_TRUE(q.push(30));
    auto h = q.pop_eventually();
    EXPECT_TRUE(h.available());
    EXPECT_EQ(co_await std::move(h), 30);
}

REEF_TEST(queue, push_eventually_waits_for_room) {
    queue<int> q(1);
    co_await q.push_eventually(1);  // room: ready at once
    auto f2 = q.push_eventually(2);
    auto f3 = q.push_eventually(3);
    EXPECT_TRUE(q.has_blocked_producer());
    co_await settle(3);
    EXPECT_FALSE(f2.available());
    EXPECT_FALSE(q.push(4));  // must not overtake waiting producers
    EXPECT_EQ(q.pop(), 1);
    co_await std::move(f2);   // admitted as soon as room appeared
    EXPECT_EQ(q.size(), 1u);
    EXPECT_FALSE(f3.available());
    auto v = co_await q.pop_eventually();
    EXPECT_EQ(v, 2);
    co_await std::move(f3);
    EXPECT_EQ(q.pop(), 3);
    EXPECT_FALSE(q.has_blocked_producer());
    EXPECT_TRUE(q.push(4));
}

REEF_TEST(queue, producer_consumer_back_pressure) {
    queue<int> q(3);
    int max_size = 0;
    auto producer = [&]() -> future<> {
        for (int i = 0; i < 100; ++i) {
            co_await q.push_eventually(int(i));
            max_size = std::max(max_size, int(q.size()));
        }
    };
    auto consumer = [&]() -> future<std::vector<int>> {
        std::vector<int> got;
        while (got.size() < 100) {
            got.push_back(co_await q.pop_eventually());
            if (got.size() % 7 == 0) {
                co_await yield_once();
            }
        }
        co_return got;
    };
    auto p = producer();
    auto got = co_await consumer();
    co_await std::move(p);
    REEF_ASSERT(got.size() == 100u);
    for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(got[i], i);
    }
    EXPECT_LE(max_size, 3);
    EXPECT_TRUE(q.empty());
}

REEF_TEST(queue, not_empty_and_not_full) {
    queue<int> q(1);
    auto ne = q.not_empty();
    EXPECT_FALSE(ne.available());
    co_await q.not_full();  // has room
    EXPECT_TRUE(q.push(1));
    co_await std::move(ne);
    co_await q.not_empty();
    auto nf = q.not_full();
    co_await settle(3);
    EXPECT_FALSE(nf.available());
    EXPECT_EQ(q.pop(), 1);
    co_await std::move(nf);
}

REEF_TEST(queue, set_max_size_admits_waiting_producers) {
    queue<int> q(1);
    EXPECT_TRUE(q.push(1));
    auto f = q.push_eventually(2);
    auto nf = q.not_full();
    q.set_max_size(3);
    co_await std::move(f);
    co_await std::move(nf);  // room left after admitting the producer
    EXPECT_EQ(q.size(), 2u);
    q.set_max_size(1);  // shrinking keeps the queued items
    EXPECT_TRUE(q.full());
    EXPECT_EQ(q.pop(), 1);
    EXPECT_TRUE(q.full());
    EXPECT_EQ(q.pop(), 2);
    EXPECT_FALSE(q.full());
}

REEF_TEST(queue, abort_fails_waiters_and_later_calls) {
    queue<int> qa(1);
    auto pop = qa.pop_eventually();
    auto ne = qa.not_empty();
    qa.abort(std::make_exception_ptr(custom_error()));
    EXPECT_TRUE(co_await fails_with<custom_error>(std::move(pop)));
    EXPECT_TRUE(co_await fails_with<custom_error>(std::move(ne)));

    queue<int> qb(1);
    EXPECT_TRUE(qb.push(1));
    auto push = qb.push_eventually(2);
    auto nf = qb.not_full();
    qb.abort(std::make_exception_ptr(custom_error()));
    EXPECT_TRUE(co_await fails_with<custom_error>(std::move(push)));
    EXPECT_TRUE(co_await fails_with<custom_error>(std::move(nf)));
    EXPECT_TRUE(qb.empty());  // items dropped

    EXPECT_THROW(qb.push(3), custom_error);
    EXPECT_THROW(qb.pop(), custom_error);
    EXPECT_TRUE(co_await fails_with<custom_error>(qb.pop_eventually()));
    EXPECT_TRUE(co_await fails_with<custom_error>(qb.push_eventually(4)));
    EXPECT_TRUE(co_await fails_with<custom_error>(qb.not_empty()));
    EXPECT_TRUE(co_await fails_with<custom_error>(qb.not_full()));
}

REEF_TEST(queue, zero_size_queue_is_a_rendezvous) {
    queue<int> q(0);
    EXPECT_FALSE(q.push(1));  // nobody waiting
    auto c = q.pop_eventually();
    EXPECT_TRUE(q.push(2));   // handed to the waiting consumer
    EXPECT_EQ(co_await std::move(c), 2);
    auto p = q.push_eventually(3);
    EXPECT_FALSE(p.available());
    EXPECT_EQ(co_await q.pop_eventually(), 3);  // taken from the waiting producer
    co_await std::move(p);
}

REEF_TEST(queue, move_only_items) {
    queue<std::unique_ptr<int>> q(1);
    auto c = q.pop_eventually();
    co_await q.push_eventually(std::make_unique<int>(5));
    auto v = co_await std::move(c);
    REEF_ASSERT(v != nullptr);
    EXPECT_EQ(*v, 5);
    EXPECT_TRUE(q.push(std::make_unique<int>(6)));
    auto w = q.pop();
    EXPECT_EQ(*w, 6);
}

REEF_TEST(queue, destroyed_queue_breaks_waiters) {
    auto q = std::make_unique<queue<int>>(1);
    auto c = q->pop_eventually();
    q.reset();
    EXPECT_TRUE(co_await fails_with<broken_promise>(std::move(c)));
}
