// cache_shard: stores, lookups, expiry rules, cas, arithmetic, flush, LRU eviction under the LSA
// budget, chunked values, and the periodic sweep. Time is passed explicitly (no sleeping).
#include "apps/memcached/storage.hh"

#include <gtest/gtest.h>

#include <array>
#include <map>
#include <string>

using namespace reef::memcached;

namespace {

constexpr std::uint32_t t0 = 100;

struct cache_fixture {
    cache_shard c{4 << 20, 1 << 20};
    store_result set(std::string_view k, std::string_view v, std::uint32_t exp = 0, std::uint32_t flags = 0,
                     store_mode m = store_mode::set, std::uint64_t cas = 0, std::uint32_t now = t0) {
        return c.store(m, k, key_hash(k), flags, exp, v, now, cas);
    }
    std::optional<item_info> get(std::string_view k, std::uint32_t now = t0) {
        return c.get(k, key_hash(k), now, true);
    }
};

}  // namespace

TEST(memcached_storage, expiry_follows_memcacheds_rules) {
    const std::int64_t start = 1'700'000'000;
    EXPECT_EQ(to_expiry(0, t0, start), 0u);
    EXPECT_EQ(to_expiry(-1, t0, start), 1u);
    EXPECT_EQ(to_expiry(10, t0, start), t0 + 10);
    EXPECT_EQ(to_expiry(max_relative_exptime, t0, start), t0 + max_relative_exptime);
    // Above 30 days: a unix time; before the server started: already expired.
    EXPECT_EQ(to_expiry(max_relative_exptime + 1, t0, start), 1u);
    EXPECT_EQ(to_expiry(start + 500, t0, start), 500u);
}

TEST(memcached_storage, set_get_replace_add_append_prepend) {
    cache_fixture f;
    EXPECT_FALSE(f.get("k"));
    EXPECT_EQ(f.set("k", "v1", 0, 7).status, store_status::stored);
    auto it = f.get("k");
    ASSERT_TRUE(it);
    EXPECT_EQ(it->value, "v1");
    EXPECT_EQ(it->flags, 7u);
    EXPECT_EQ(f.set("k", "x", 0, 0, store_mode::add).status, store_status::not_stored);
    EXPECT_EQ(f.set("n", "x", 0, 0, store_mode::replace).status, store_status::not_stored);
    EXPECT_EQ(f.set("n", "x", 0, 0, store_mode::append).status, store_status::not_stored);
    EXPECT_EQ(f.set("k", "-end", 0, 99, store_mode::append).status, store_status::stored);
    EXPECT_EQ(f.set("k", "start-", 0, 99, store_mode::prepend).status, store_status::stored);
    it = f.get("k");
    ASSERT_TRUE(it);
    EXPECT_EQ(it->value, "start-v1-end");
    EXPECT_EQ(it->flags, 7u) << "append/prepend keep the flags";
    EXPECT_EQ(f.set("k", "r", 0, 1, store_mode::replace).status, store_status::stored);
    EXPECT_EQ(f.get("k")->value, "r");
    EXPECT_EQ(f.c.stats().curr_items, 1u);
    EXPECT_EQ(f.c.stats().bytes, 2u);
}

TEST(memcached_storage, cas_conflicts) {
    cache_fixture f;
    EXPECT_EQ(f.set("k", "a", 0, 0, store_mode::cas, 5).status, store_status::not_found);
    auto s = f.set("k", "a");
    auto cas = f.get("k")->cas;
    EXPECT_EQ(cas, s.cas);
    EXPECT_EQ(f.set("k", "b", 0, 0, store_mode::cas, cas + 1).status, store_status::exists);
    auto s2 = f.set("k", "b", 0, 0, store_mode::cas, cas);
    EXPECT_EQ(s2.status, store_status::stored);
    EXPECT_NE(s2.cas, cas);
    EXPECT_EQ(f.set("k", "c", 0, 0, store_mode::cas, cas).status, store_status::exists);
    EXPECT_EQ(f.c.stats().cas_badval, 2u);
    EXPECT_EQ(f.c.stats().cas_hits, 1u);
    EXPECT_EQ(f.c.stats().cas_misses, 1u);
}

TEST(memcached_storage, lazy_expiry_touch_and_gat) {
    cache_fixture f;
    f.set("a", "1", t0 + 10);
    f.set("b", "2", 1);  // already expired (negative exptime)
    EXPECT_FALSE(f.get("b"));
    EXPECT_TRUE(f.get("a", t0 + 9));
    EXPECT_FALSE(f.get("a", t0 + 10));
    EXPECT_EQ(f.c.stats().get_expired, 2u);
    EXPECT_EQ(f.c.stats().curr_items, 0u);
    f.set("c", "3", t0 + 5);
    EXPECT_TRUE(f.c.touch("c", key_hash("c"), t0 + 50, t0));
    EXPECT_TRUE(f.get("c", t0 + 20));
    auto g = f.c.get("c", key_hash("c"), t0, true, std::uint32_t(0));
    ASSERT_TRUE(g);
    EXPECT_TRUE(f.get("c", t0 + 100000)) << "gat with 0 makes it never expire";
    EXPECT_FALSE(f.c.touch("zz", key_hash("zz"), 0, t0));
}

TEST(memcached_storage, incr_decr_edges) {
    cache_fixture f;
    EXPECT_EQ(f.c.arith("n", key_hash("n"), true, 1, t0).status, arith_status::not_found);
    f.set("n", "18446744073709551615");
    auto r = f.c.arith("n", key_hash("n"), true, 2, t0);
    EXPECT_EQ(r.status, arith_status::ok);
    EXPECT_EQ(r.value, 1u) << "incr wraps at 2^64";
    r = f.c.arith("n", key_hash("n"), false, 5, t0);
    EXPECT_EQ(r.value, 0u) << "decr stops at 0";
    f.set("n", "10");
    r = f.c.arith("n", key_hash("n"), false, 1, t0);
    EXPECT_EQ(r.value, 9u);
    EXPECT_EQ(f.get("n")->value, "9");
    f.set("s", "abc");
    EXPECT_EQ(f.c.arith("s", key_hash("s"), true, 1, t0).status, arith_status::non_numeric);
    f.set("big", "184467440737095516150");
    EXPECT_EQ(f.c.arith("big", key_hash("big"), true, 1, t0).status, arith_status::non_numeric);
    r = f.c.arith("auto", key_hash("auto"), true, 1, t0, 0, std::uint32_t(0), 42);
    EXPECT_EQ(r.status, arith_status::ok);
    EXPECT_EQ(r.value, 42u);
    EXPECT_TRUE(r.created);
}

TEST(memcached_storage, flush_invalidates_earlier_items_only) {
    cache_fixture f;
    f.set("a", "1");
    f.set("b", "2");
    f.c.flush_all();
    f.set("c", "3");
    EXPECT_FALSE(f.get("a"));
    EXPECT_TRUE(f.get("c"));
    EXPECT_EQ(f.c.stats().get_flushed, 1u);
    EXPECT_EQ(f.c.sweep(t0, 1 << 20), 1u) << "the sweep frees b";
    EXPECT_EQ(f.c.stats().curr_items, 1u);
}

// Items keep a 16-bit flush generation: after 65536 flushes the counter comes back to values that
// unswept items still carry. No flushed item may come back to life then.
TEST(memcached_storage, flushed_items_stay_dead_when_the_generation_wraps) {
    cache_fixture f;
    f.set("before-first-flush", "1");
    f.c.flush_all();
    f.set("one-flush-old", "2");  // stored at generation 1, never swept
    for (int i = 0; i < 65534; ++i) {
        f.c.flush_all();
    }
    f.set("before-wrap", "3");  // the last generation before the counter wraps
    EXPECT_EQ(f.c.stats().curr_items, 3u) << "nothing swept so far";
    f.c.flush_all();  // 65536th flush: the counter is back at 0
    EXPECT_EQ(f.c.stats().curr_items, 0u) << "every item predates this flush";
    f.set("after-wrap", "4");
    f.c.flush_all();  // generation 1 again: "one-flush-old" carried it
    EXPECT_FALSE(f.get("before-first-flush"));
    EXPECT_FALSE(f.get("one-flush-old"));
    EXPECT_FALSE(f.get("before-wrap"));
    EXPECT_FALSE(f.get("after-wrap"));
    f.set("live", "5");
    ASSERT_TRUE(f.get("live"));
    EXPECT_EQ(f.get("live")->value, "5");
}

TEST(memcached_storage, sweep_frees_expired_items) {
    cache_fixture f;
    for (int i = 0; i < 1000; ++i) {
        f.set("k" + std::to_string(i), "v", i % 2 ? t0 + 5 : 0);
    }
    EXPECT_EQ(f.c.sweep(t0 + 10, 1 << 20), 500u);
    EXPECT_EQ(f.c.stats().curr_items, 500u);
    EXPECT_EQ(f.c.stats().reclaimed, 500u);
}

TEST(memcached_storage, large_values_are_chunked) {
    cache_fixture f;
    std::string v(700 * 1024, 'x');
    for (std::size_t i = 0; i < v.size(); ++i) {
        v[i] = char('a' + i % 26);
    }
    EXPECT_EQ(f.set("big", v).status, store_status::stored);
    EXPECT_EQ(f.get("big")->value, v);
    EXPECT_EQ(f.set("big", "tail", 0, 0, store_mode::append).status, store_status::stored);
    EXPECT_EQ(f.get("big")->value, v + "tail");
    EXPECT_EQ(f.set("big", "head", 0, 0, store_mode::prepend).status, store_status::stored);
    EXPECT_EQ(f.get("big")->value, "head" + v + "tail");
    std::string too(1 << 20, 'y');
    EXPECT_EQ(f.set("big", too).status, store_status::too_large);
    EXPECT_FALSE(f.get("big")) << "a set refused as too large removes the old value";
}

TEST(memcached_storage, lru_eviction_at_the_memory_limit) {
    cache_shard c(1 << 20, 256 * 1024);  // 8 LSA segments
    std::string v(1000, 'v');
    for (int i = 0; i < 5000; ++i) {
        std::string k = "key" + std::to_string(i);
        ASSERT_EQ(c.store(store_mode::set, k, key_hash(k), 0, 0, v, t0).status, store_status::stored) << i;
        if (i % 10 == 0) {
            // Keep key0 hot: the LRU must not evict it.
            ASSERT_TRUE(c.get("key0", key_hash("key0"), t0, false));
        }
    }
    EXPECT_GT(c.stats().evictions, 3000u);
    EXPECT_TRUE(c.get("key0", key_hash("key0"), t0, true));
    EXPECT_TRUE(c.get("key4999", key_hash("key4999"), t0, true));
    EXPECT_FALSE(c.get("key1", key_hash("key1"), t0, true));
    EXPECT_LE(c.region_statistics().segments_total * reef::lsa::region::segment_size, std::size_t(1 << 20));
    EXPECT_EQ(c.stats().curr_items + c.stats().evictions, 5000u);
}

TEST(memcached_storage, churn_keeps_contents_intact) {
    cache_shard c(2 << 20, 256 * 1024);
    std::map<std::string, std::string> model;
    std::uint64_t x = 12345;
    auto rnd = [&] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    };
    for (int i = 0; i < 20000; ++i) {
        std::string k = "k" + std::to_string(rnd() % 3000);
        std::string v(rnd() % 2000, char('a' + rnd() % 26));
        if (rnd() % 4 == 0) {
            c.remove(k, key_hash(k), t0);
            model.erase(k);
        } else {
            ASSERT_EQ(c.store(store_mode::set, k, key_hash(k), 0, 0, v, t0).status, store_status::stored);
            model[k] = v;
        }
    }
    // Whatever is still there (some were evicted) has the last value stored.
    std::size_t found = 0;
    for (auto& [k, v] : model) {
        auto it = c.get(k, key_hash(k), t0, true);
        if (it) {
            ++found;
            EXPECT_EQ(it->value, v) << k;
        }
    }
    EXPECT_EQ(found, c.stats().curr_items);
    EXPECT_GT(found, 0u);
}

TEST(memcached_storage, key_hash_spreads_over_shards) {
    std::array<int, 4> count{};
    for (int i = 0; i < 4000; ++i) {
        ++count[shard_of(key_hash("key:" + std::to_string(i)), 4)];
    }
    for (int n : count) {
        EXPECT_GT(n, 800);
    }
}
