#include "smp_test.hh"

#include "runtime/sharded.hh"

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>

using namespace reef;

namespace {

std::atomic<int> g_constructed{0};
std::atomic<int> g_destroyed{0};
std::atomic<int> g_stopped{0};

struct counter_service {
    unsigned shard;
    int base;
    long hits = 0;
    counter_service(int b, std::string tag) : shard(this_shard_id()), base(b) {
        EXPECT_EQ(tag, "tag");
        ++g_constructed;
    }
    ~counter_service() {
        EXPECT_EQ(this_shard_id(), shard);  // destroyed on its own shard
        ++g_destroyed;
    }
    future<> stop() {
        ++g_stopped;
        return make_ready_future<>();
    }
    int value() const { return base + int(shard); }
};

struct failing_service {
    failing_service() {
        if (this_shard_id() == 1) {
            throw std::runtime_error("shard 1 refuses to start");
        }
        ++g_constructed;
    }
    ~failing_service() { ++g_destroyed; }
};

struct per_shard_param {
    unsigned param;
    explicit per_shard_param(unsigned p) : param(p) {}
};

}  // namespace

REEF_SMP_TEST(sharded, lifecycle_invoke_and_map_reduce, 2) {
    g_constructed = g_destroyed = g_stopped = 0;
    sharded<counter_service> s;
    co_await s.start(100, std::string("tag"));
    EXPECT_EQ(g_constructed.load(), 2);
    EXPECT_EQ(s.local().shard, 0u);

    int v1 = co_await s.invoke_on(1, [](counter_service& c, int add) { return c.value() + add; }, 5);
    EXPECT_EQ(v1, 106);

    co_await s.invoke_on_all([](counter_service& c) { c.hits += 10; });
    co_await s.invoke_on_others([](counter_service& c) { c.hits += 1; });
    long h1 = co_await s.invoke_on(1, [](counter_service& c) { return c.hits; });
    EXPECT_EQ(s.local().hits, 10);
    EXPECT_EQ(h1, 11);

    int sum = co_await s.map_reduce0([](counter_service& c) { return c.value(); }, 0, [](int a, int b) { return a + b; });
    EXPECT_EQ(sum, 100 + 101);

    struct max_reducer {
        int m = -1;
        void operator()(int v) { m = std::max(m, v); }
        int get() const { return m; }
    };
    int m = co_await s.map_reduce(max_reducer{}, [](counter_service& c) { return make_ready_future<int>(c.value()); });
    EXPECT_EQ(m, 101);

    co_await s.stop();
    EXPECT_EQ(g_stopped.load(), 2);
    EXPECT_EQ(g_destroyed.load(), 2);
}

REEF_SMP_TEST(sharded, sharded_parameter_per_shard, 2) {
    sharded<per_shard_param> s;
    co_await s.start(sharded_parameter([] { return this_shard_id() * 7; }));
    unsigned p1 = co_await s.invoke_on(1, [](per_shard_param& p) { return p.param; });
    EXPECT_EQ(s.local().param, 0u);
    EXPECT_EQ(p1, 7u);
    co_await s.stop();
}

REEF_SMP_TEST(sharded, start_failure_on_one_shard_cleans_up, 2) {
    g_constructed = g_destroyed = 0;
    sharded<failing_service> s;
    try {
        co_await s.start();
        ADD_FAILURE() << "start did not fail";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "shard 1 refuses to start");
    }
    EXPECT_EQ(g_constructed.load(), 1);
    EXPECT_EQ(g_destroyed.load(), 1);  // shard 0's instance was destroyed again
    EXPECT_FALSE(s.local_is_initialized());
}

namespace {
struct records_destruction {
    std::atomic<int>* where;
    explicit records_destruction(std::atomic<int>* w) : where(w) {}
    ~records_destruction() { where->store(int(this_shard_id())); }
};
}  // namespace

REEF_SMP_TEST(sharded, foreign_ptr_dies_on_its_owner, 2) {
    static std::atomic<int> died_on{-1};
    died_on = -1;
    // Made on shard 1, handed to shard 0, dropped on shard 0: destroyed back on shard 1.
    auto fp = co_await smp::submit_to(1, [] { return make_foreign(std::make_unique<records_destruction>(&died_on)); });
    EXPECT_EQ(fp.get_owner_shard(), 1u);
    EXPECT_TRUE(bool(fp));
    fp.reset();
    // The destruction message travels to shard 1; a round trip afterwards has seen it.
    co_await smp::submit_to(1, [] {});
    co_await smp::submit_to(1, [] {});
    EXPECT_EQ(died_on.load(), 1);

    // Dropped on its own shard: destroyed at once.
    died_on = -1;
    {
        auto local = make_foreign(std::make_unique<records_destruction>(&died_on));
    }
    EXPECT_EQ(died_on.load(), 0);
}
