#include "reactor_test.hh"
#include "runtime/shared_mutex.hh"
#include "sync_test_util.hh"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace reef;
using reef::testing::custom_error;
using reef::testing::fails_with;
using reef::testing::settle;
using reef::testing::yield_once;

TEST(shared_mutex, try_lock_rules) {
    shared_mutex m;
    EXPECT_TRUE(m.try_lock_shared());
    EXPECT_TRUE(m.try_lock_shared());
    EXPECT_EQ(m.shared_holders(), 2u);
    EXPECT_FALSE(m.try_lock());
    m.unlock_shared();
    m.unlock_shared();
    EXPECT_TRUE(m.try_lock());
    EXPECT_TRUE(m.locked());
    EXPECT_FALSE(m.try_lock());
    EXPECT_FALSE(m.try_lock_shared());
    m.unlock();
    EXPECT_FALSE(m.locked());
}

REEF_TEST(shared_mutex, readers_run_concurrently) {
    shared_mutex m;
    int inside = 0, max_inside = 0;
    std::vector<future<>> fs;
    for (int i = 0; i < 4; ++i) {
        fs.push_back(with_shared(m, [&]() -> future<> {
            ++inside;
            max_inside = std::max(max_inside, inside);
            co_await yield_once();
            co_await yield_once();
            --inside;
        }));
    }
    for (auto& f : fs) {
        co_await std::move(f);
    }
    EXPECT_EQ(max_inside, 4);
    EXPECT_EQ(m.shared_holders(), 0u);
}

REEF_TEST(shared_mutex, writer_is_exclusive) {
    shared_mutex m;
    int readers = 0, writers = 0;
    bool violated = false;
    auto check = [&] {
        if (writers > 1 || (writers == 1 && readers > 0)) {
            violated = true;
        }
    };
    std::vector<future<>> fs;
    for (int i = 0; i < 12; ++i) {
        if (i % 3 == 0) {
            fs.push_back(with_lock(m, [&]() -> future<> {
                ++writers;
                check();
                co_await yield_once();
                check();
                --writers;
            }));
        } else {
            fs.push_back(with_shared(m, [&]() -> future<> {
                ++readers;
                check();
                co_await yield_once();
                check();
                --readers;
            }));
        }
    }
    for (auto& f : fs) {
        co_await std::move(f);
    }
    EXPECT_FALSE(violated);
    EXPECT_FALSE(m.locked());
    EXPECT_EQ(m.shared_holders(), 0u);
}

REEF_TEST(shared_mutex, fifo_writer_not_starved_by_readers) {
    shared_mutex m;
    std::vector<std::string> order;
    co_await m.lock_shared();  // a reader holds the lock
    auto w = m.lock().then([&] { order.push_back("w"); });
    // Readers arriving after the writer queue behind it, even though only readers hold the lock.
    EXPECT_FALSE(m.try_lock_shared());
    auto r1 = m.lock_shared().then([&] { order.push_back("r1"); });
    auto r2 = m.lock_shared().then([&] { order.push_back("r2"); });
    EXPECT_EQ(m.waiters(), 3u);
    co_await settle();
    EXPECT_TRUE(order.empty());
    m.unlock_shared();
    co_await settle();
    EXPECT_EQ(order, (std::vector<std::string>{"w"}));  // readers still wait for the writer
    EXPECT_TRUE(m.locked());
    m.unlock();
    co_await settle();
    EXPECT_EQ(order, (std::vector<std::string>{"w", "r1", "r2"}));
    EXPECT_EQ(m.shared_holders(), 2u);  // woken together
    EXPECT_EQ(m.waiters(), 0u);
    co_await std::move(w);
    co_await std::move(r1);
    co_await std::move(r2);
    m.unlock_shared();
    m.unlock_shared();
}

REEF_TEST(shared_mutex, writer_gets_in_despite_continuous_readers) {
    shared_mutex m;
    bool stop = false;
    int reads = 0;
    // Overlapping readers: there is always at least one reader holding the lock.
    auto reader = [&]() -> future<> {
        while (!stop) {
            co_await m.lock_shared();
            ++reads;
            co_await yield_once();
            m.unlock_shared();
        }
    };
    auto r1 = reader();
    auto r2 = reader();
    auto r3 = reader();
    co_await settle(10);
    int reads_before = reads;
    bool wrote = false;
    auto w = with_lock(m, [&] {
        wrote = true;
        EXPECT_EQ(m.shared_holders(), 0u);
    });
    // Readers keep cycling; the writer must get in after the readers ahead of it leave, not
    // wait for a gap that never comes.
    co_await settle(20);
    EXPECT_TRUE(wrote);
    EXPECT_GT(reads_before, 0);
    EXPECT_GT(reads, reads_before);  // and readers continue afterwards
    stop = true;
    co_await std::move(w);
    co_await std::move(r1);
    co_await std::move(r2);
    co_await std::move(r3);
}

REEF_TEST(shared_mutex, with_lock_releases_on_exception_and_returns_values) {
    shared_mutex m;
    EXPECT_TRUE(co_await fails_with<custom_error>(with_lock(m, []() -> int { throw custom_error(); })));
    EXPECT_FALSE(m.locked());
    EXPECT_TRUE(co_await fails_with<custom_error>(with_shared(m, []() -> future<> {
        co_await yield_once();
        throw custom_error();
    })));
    EXPECT_EQ(m.shared_holders(), 0u);
    int v = co_await with_lock(m, [] { return 4; });
    EXPECT_EQ(v, 4);
    auto p = std::make_unique<int>(8);
    // Named future: GCC 12 destroys a capturing lambda temporary twice inside a co_await expression.
    auto f = with_shared(m, [p = std::move(p)]() -> future<int> {
        co_await yield_once();
        co_return *p;
    });
    EXPECT_EQ(co_await std::move(f), 8);
    EXPECT_TRUE(m.try_lock());
    m.unlock();
}

REEF_TEST(shared_mutex, writers_serialized_in_order) {
    shared_mutex m;
    std::vector<int> order;
    std::vector<future<>> fs;
    for (int i = 0; i < 5; ++i) {
        fs.push_back(with_lock(m, [&order, i]() -> future<> {
            order.push_back(i);
            co_await yield_once();
            order.push_back(i);
        }));
    }
    for (auto& f : fs) {
        co_await std::move(f);
    }
    EXPECT_EQ(order, (std::vector<int>{0, 0, 1, 1, 2, 2, 3, 3, 4, 4}));
}
