// LSA: objects keep their contents across compactions (reached through handles or through a table
// the migrator updates), compaction raises occupancy, eviction keeps the region under its budget,
// std::bad_alloc when nothing can be evicted, handles are reused, typed objects move correctly.
#include "runtime/lsa.hh"

#include "runtime/misuse.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <list>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

using namespace reef;
using lsa::region;

namespace {

constexpr std::size_t MiB = 1024 * 1024;

std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Byte i of object `id`'s contents.
unsigned char pattern(std::uint64_t id, std::size_t i) {
    return static_cast<unsigned char>(mix(id * 4099 + i / 8) >> (i % 8 * 8));
}

void fill(void* p, std::size_t n, std::uint64_t id) {
    auto* b = static_cast<unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) {
        b[i] = pattern(id, i);
    }
}

bool intact(const void* p, std::size_t n, std::uint64_t id) {
    auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) {
        if (b[i] != pattern(id, i)) {
            return false;
        }
    }
    return true;
}

// Objects reached through a pointer table, like a hash table's slots: the first 8 bytes hold the
// object's id (its slot), the rest the id's pattern. The migrator moves the bytes and fixes the slot.
struct table_migrator final : lsa::migrator {
    std::vector<void*>& table;
    std::size_t moves = 0;
    explicit table_migrator(std::vector<void*>& t) : table(t) {}
    void migrate(void* src, void* dst, std::size_t size) noexcept override {
        std::memcpy(dst, src, size);
        std::uint64_t id;
        std::memcpy(&id, dst, sizeof(id));
        table[id] = dst;
        ++moves;
    }
};

// A model of the live objects of one region, of both kinds.
struct workload {
    region& r;
    std::vector<void*> table;  // id -> address, for migrator objects
    table_migrator mig{table};
    struct object {
        std::uint64_t id;
        std::size_t size;
        lsa::handle h;  // default: a migrator object
    };
    std::vector<object> live;
    std::size_t live_bytes = 0;
    std::uint64_t next_id = 0;

    explicit workload(region& reg) : r(reg) {}

    void* address(const object& o) const { return o.h ? r.get(o.h) : table[o.id]; }

    void allocate(std::size_t size, bool with_handle) {
        std::uint64_t id = next_id++;
        table.push_back(nullptr);
        if (with_handle) {
            lsa::handle h = r.alloc_handle(size);
            fill(r.get(h), size, id);
            live.push_back({id, size, h});
        } else {
            size = std::max<std::size_t>(size, 8);
            void* p = r.alloc(mig, size);
            std::memcpy(p, &id, sizeof(id));
            fill(static_cast<char*>(p) + 8, size - 8, id);
            table[id] = p;
            live.push_back({id, size, {}});
        }
        live_bytes += live.back().size;
    }
    void free_at(std::size_t i) {
        object o = live[i];
        live[i] = live.back();
        live.pop_back();
        live_bytes -= o.size;
        if (o.h) {
            r.free(o.h);
        } else {
            r.free(table[o.id]);
            table[o.id] = nullptr;
        }
    }
    // Number of objects whose contents do not match their pattern.
    std::size_t corrupted() const {
        std::size_t bad = 0;
        for (auto& o : live) {
            auto* p = static_cast<const char*>(address(o));
            bool ok;
            if (o.h) {
                ok = intact(p, o.size, o.id);
            } else {
                std::uint64_t id;
                std::memcpy(&id, p, sizeof(id));
                ok = id == o.id && intact(p + 8, o.size - 8, o.id);
            }
            bad += !ok;
        }
        return bad;
    }
};

}  // namespace

TEST(lsa, randomized_allocate_free_compact_keeps_contents) {
    region r(16 * MiB);
    workload w(r);
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<std::size_t> small(1, 2000);
    std::uniform_int_distribution<std::size_t> large(2001, 40000);
    std::size_t compactions = 0;
    for (int step = 0; step < 60000; ++step) {
        unsigned dice = rng() % 100;
        // Keep the live set between roughly 20% and 60% of the budget so allocation never needs evicting.
        bool must_free = w.live_bytes > 10 * MiB;
        bool may_free = w.live_bytes > 3 * MiB;
        if (must_free || (may_free && dice < 48)) {
            w.free_at(rng() % w.live.size());
        } else {
            std::size_t size = dice < 96 ? small(rng) : large(rng);
            w.allocate(size, rng() % 2 == 0);
        }
        if (step % 5000 == 4999) {
            switch ((step / 5000) % 3) {
            case 0: compactions += r.compact(); break;
            case 1: compactions += r.compact_segment_if_below(0.8); break;
            case 2: EXPECT_TRUE(r.compact_all()); break;
            }
            ASSERT_EQ(w.corrupted(), 0u) << "after step " << step;
        }
    }
    EXPECT_TRUE(r.compact_all(0.99));
    auto st = r.statistics();
    EXPECT_EQ(w.corrupted(), 0u);
    EXPECT_GT(st.segments_compacted, 10u);
    EXPECT_GT(st.bytes_moved, 1 * MiB);
    EXPECT_GT(w.mig.moves, 0u);
    EXPECT_EQ(st.objects_live, w.live.size());
    EXPECT_EQ(st.bytes_allocated, w.live_bytes);
    EXPECT_EQ(st.allocations - st.frees, w.live.size());
    EXPECT_LE(st.segments_total * region::segment_size, r.budget());
    while (!w.live.empty()) {
        w.free_at(w.live.size() - 1);
    }
    st = r.statistics();
    EXPECT_EQ(st.bytes_allocated, 0u);
    EXPECT_EQ(st.segments_in_use, 1u);  // the open segment, rewound
}

TEST(lsa, allocation_at_budget_compacts_instead_of_failing) {
    // Live data never exceed ~45% of the budget, yet far more than the budget is allocated in total:
    // allocations at the budget must compact (move objects) rather than throw.
    region r(4 * MiB);
    workload w(r);
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<std::size_t> size(50, 2000);
    std::size_t allocated = 0;
    while (allocated < 64 * MiB) {
        if (w.live_bytes > 1800 * 1024) {
            w.free_at(rng() % w.live.size());
        }
        std::size_t s = size(rng);
        w.allocate(s, rng() % 2 == 0);
        allocated += s;
    }
    auto st = r.statistics();
    EXPECT_GT(st.segments_compacted, 0u);
    EXPECT_GT(st.bytes_moved, 0u);
    EXPECT_EQ(st.objects_evicted, 0u);
    EXPECT_LE(st.segments_total * region::segment_size, r.budget());
    EXPECT_EQ(w.corrupted(), 0u);
}

TEST(lsa, compaction_moves_objects_and_raises_occupancy) {
    region r(32 * MiB);
    workload w(r);
    std::mt19937_64 rng(3);
    std::uniform_int_distribution<std::size_t> size(50, 2000);
    while (w.live_bytes < 24 * MiB) {
        w.allocate(size(rng), rng() % 2 == 0);
    }
    // Free 60% at random: every segment is left with holes.
    for (std::size_t n = w.live.size() * 6 / 10; n > 0; --n) {
        w.free_at(rng() % w.live.size());
    }
    std::vector<void*> before;
    for (auto& o : w.live) {
        before.push_back(w.address(o));
    }
    auto st0 = r.statistics();
    EXPECT_LT(st0.occupancy, 0.5);

    EXPECT_TRUE(r.compact_all());
    auto st1 = r.statistics();
    EXPECT_GE(st1.occupancy, 0.9);
    EXPECT_LT(st1.segments_in_use, st0.segments_in_use / 2 + 2);
    EXPECT_GT(st1.segments_free, st0.segments_free);
    EXPECT_GT(st1.bytes_moved, st0.bytes_moved);
    EXPECT_EQ(st1.bytes_allocated, st0.bytes_allocated);
    std::size_t moved = 0;
    for (std::size_t i = 0; i < w.live.size(); ++i) {
        moved += w.address(w.live[i]) != before[i];
    }
    EXPECT_GT(moved, w.live.size() / 2);
    EXPECT_EQ(w.corrupted(), 0u);

    // The freed segments can be given back to the system; the reserve stays.
    std::size_t free_segments = st1.segments_free;
    std::size_t released = r.reclaim(SIZE_MAX / 2);
    EXPECT_GE(released, (free_segments - 1) * region::segment_size);
    auto st2 = r.statistics();
    EXPECT_EQ(st2.segments_free, 1u);
    EXPECT_EQ(st2.segments_released * region::segment_size, released);
    EXPECT_EQ(st2.segments_total, st2.segments_in_use + 1);
    EXPECT_EQ(w.corrupted(), 0u);
}

TEST(lsa, compact_is_bounded_and_segment_threshold_is_honoured) {
    region r(16 * MiB);
    workload w(r);
    std::mt19937_64 rng(11);
    while (w.live_bytes < 8 * MiB) {
        w.allocate(1000, true);
    }
    for (std::size_t n = w.live.size() / 2; n > 0; --n) {
        w.free_at(rng() % w.live.size());
    }
    auto st0 = r.statistics();
    EXPECT_FALSE(r.compact_segment_if_below(0.1));  // every segment is about half full
    EXPECT_EQ(r.statistics().segments_compacted, st0.segments_compacted);
    EXPECT_EQ(r.compact(0.9, 2), 2u);
    EXPECT_EQ(r.statistics().segments_compacted, st0.segments_compacted + 2);
    EXPECT_TRUE(r.compact_segment_if_below(0.9));
    EXPECT_EQ(r.statistics().segments_compacted, st0.segments_compacted + 3);
    EXPECT_EQ(w.corrupted(), 0u);
}

TEST(lsa, compaction_picks_the_sparsest_segment) {
    region r(4 * MiB);
    workload w(r);
    // Eight segments of 1000-byte objects (127 per segment); the open one is the ninth.
    constexpr std::size_t per_segment = region::segment_usable / 1024;
    while (w.live.size() < 8 * per_segment + 1) {
        w.allocate(1000, true);
    }
    auto segment_of = [&](std::size_t i) {
        return reinterpret_cast<std::uintptr_t>(w.address(w.live[i])) / region::segment_size;
    };
    std::vector<std::uintptr_t> segments;
    for (std::size_t i = 0; i < w.live.size(); i += per_segment) {
        segments.push_back(segment_of(i));
    }
    ASSERT_EQ(segments.size(), 9u);
    // Free a different share of each closed segment, round-robin so the heap reorders many times.
    const double share[8] = {0.3, 0.4, 0.5, 0.2, 0.9, 0.35, 0.45, 0.6};
    std::vector<std::vector<std::size_t>> victims(8);
    for (std::size_t i = 0; i < 8 * per_segment; ++i) {
        std::size_t seg = i / per_segment;
        if (i % per_segment < std::size_t(share[seg] * per_segment)) {
            victims[seg].push_back(w.live[i].id);
        }
    }
    for (std::size_t round = 0; round < per_segment; ++round) {
        for (auto& v : victims) {
            if (round < v.size()) {
                auto it = std::find_if(w.live.begin(), w.live.end(), [&](auto& o) { return o.id == v[round]; });
                w.free_at(std::size_t(it - w.live.begin()));
            }
        }
    }
    // Evacuations go sparsest first: segment 4 (10% live), then 7 (40%), then 2 (50%).
    for (std::size_t expected : {4, 7, 2}) {
        std::size_t before = 0;
        for (std::size_t i = 0; i < w.live.size(); ++i) {
            before += segment_of(i) == segments[expected];
        }
        ASSERT_GT(before, 0u);
        ASSERT_TRUE(r.compact_segment_if_below(1.0));
        for (std::size_t i = 0; i < w.live.size(); ++i) {
            ASSERT_NE(segment_of(i), segments[expected]) << "segment " << expected << " was not evacuated";
        }
    }
    EXPECT_EQ(w.corrupted(), 0u);
}

TEST(lsa, eviction_keeps_region_under_budget) {
    constexpr std::size_t budget = 4 * MiB;
    region r(budget);
    struct entry {
        std::uint64_t id;
        std::size_t size;
        lsa::handle h;
    };
    std::list<entry> lru;  // front: least recently used
    std::unordered_map<std::uint64_t, std::list<entry>::iterator> index;
    std::uint64_t evicted_by_callback = 0;
    r.set_evictor([&] {
        if (lru.empty()) {
            return false;
        }
        entry e = lru.front();
        lru.pop_front();
        index.erase(e.id);
        r.free(e.h);
        ++evicted_by_callback;
        return true;
    });
    std::mt19937_64 rng(5);
    std::uniform_int_distribution<std::size_t> size(50, 2000);
    std::size_t allocated = 0;
    std::uint64_t id = 0;
    std::size_t max_live = 0;
    while (allocated < 20 * budget) {
        std::size_t s = size(rng);
        lsa::handle h = r.alloc_handle(s);
        fill(r.get(h), s, id);
        lru.push_back({id, s, h});
        index[id] = std::prev(lru.end());
        ++id;
        allocated += s;
        // Touch a recent object now and then so the order is LRU, not FIFO.
        if (id > 10 && rng() % 4 == 0) {
            auto it = index.find(id - 1 - rng() % 10);
            if (it != index.end()) {
                lru.splice(lru.end(), lru, it->second);
            }
        }
        auto st = r.statistics();
        max_live = std::max(max_live, st.bytes_allocated);
        ASSERT_LE(st.bytes_allocated, budget);
        ASSERT_LE(st.segments_total * region::segment_size, budget);
    }
    auto st = r.statistics();
    EXPECT_GT(evicted_by_callback, 0u);
    EXPECT_EQ(st.objects_evicted, evicted_by_callback);
    EXPECT_GT(st.bytes_evicted, 10 * budget);
    EXPECT_EQ(st.objects_live, lru.size());
    // Eviction only starts when compaction cannot help, so the region runs nearly full.
    EXPECT_GT(max_live, budget * 3 / 4);
    for (auto& e : lru) {
        ASSERT_TRUE(intact(r.get(e.h), e.size, e.id));
    }
}

TEST(lsa, bad_alloc_when_nothing_can_be_evicted) {
    region r(2 * region::segment_size);  // one segment to allocate into, plus the reserve
    workload w(r);
    std::size_t n = 0;
    EXPECT_THROW(
        for (;; ++n) { w.allocate(1000, n % 2 == 0); }, std::bad_alloc);
    auto st = r.statistics();
    EXPECT_EQ(st.objects_live, w.live.size());
    EXPECT_EQ(st.segments_total, 2u);
    EXPECT_EQ(w.corrupted(), 0u);

    // An evictor with nothing left (false) or one that frees nothing does not help either.
    r.set_evictor([] { return false; });
    EXPECT_THROW(w.allocate(1000, true), std::bad_alloc);
    int calls = 0;
    r.set_evictor([&] {
        ++calls;
        return true;
    });
    EXPECT_THROW(w.allocate(1000, true), std::bad_alloc);
    EXPECT_EQ(calls, 1);
    // The failed allocations left no trace: the model still matches and everything is intact.
    EXPECT_EQ(r.statistics().objects_live, w.live.size());
    EXPECT_EQ(w.corrupted(), 0u);

    // Freeing a few objects makes room again (compaction of the holes).
    r.set_evictor(nullptr);
    for (int i = 0; i < 4; ++i) {
        w.free_at(i * 7);
    }
    EXPECT_NO_THROW(w.allocate(1000, true));
    EXPECT_EQ(w.corrupted(), 0u);
}

TEST(lsa, evictor_exception_propagates_and_region_stays_consistent) {
    region r(2 * region::segment_size);
    workload w(r);
    EXPECT_THROW(
        for (;;) { w.allocate(500, false); }, std::bad_alloc);
    r.set_evictor([]() -> bool { throw std::runtime_error("evictor failed"); });
    EXPECT_THROW(w.allocate(500, false), std::runtime_error);
    r.set_evictor([&] {
        w.free_at(0);
        return true;
    });
    std::size_t count = w.live.size();
    // Threshold 1: compaction is preferred whenever it makes room, so one eviction is enough.
    r.set_eviction_threshold(1.0);
    EXPECT_NO_THROW(w.allocate(500, false));
    EXPECT_EQ(w.live.size(), count);  // one evicted, one allocated
    EXPECT_EQ(r.statistics().objects_evicted, 1u);
    EXPECT_EQ(w.corrupted(), 0u);
    // Default threshold: rather than move a nearly full segment to gain one slot, the region evicts
    // until the segment is below 85% full (~38 objects of 528 bytes), then compacts it.
    r.set_eviction_threshold(region::default_eviction_threshold);
    std::uint64_t moved = r.statistics().bytes_moved;
    EXPECT_NO_THROW(w.allocate(500, false));
    auto st = r.statistics();
    std::uint64_t evicted = st.objects_evicted - 1;
    EXPECT_GE(evicted, 30u);
    EXPECT_EQ(w.live.size(), count + 1 - evicted);
    EXPECT_GT(st.bytes_moved, moved);
    EXPECT_EQ(w.corrupted(), 0u);
    EXPECT_THROW(r.set_eviction_threshold(1.5), std::invalid_argument);
}

TEST(lsa, handle_reuse_after_free) {
    region r(1 * MiB);
    lsa::handle a = r.alloc_handle(100);
    lsa::handle b = r.alloc_handle(200);
    EXPECT_NE(a, b);
    fill(r.get(b), 200, 2);
    r.free(a);
    lsa::handle c = r.alloc_handle(300);
    EXPECT_EQ(c.index(), a.index());
    fill(r.get(c), 300, 3);
    EXPECT_EQ(r.object_size(r.get(c)), 300u);
    EXPECT_TRUE(intact(r.get(b), 200, 2));
    EXPECT_TRUE(intact(r.get(c), 300, 3));
    r.free(b);
    r.free(c);
    EXPECT_EQ(r.alloc_handle(10).index(), c.index());  // last freed first
    EXPECT_EQ(r.alloc_handle(10).index(), b.index());
    EXPECT_EQ(r.alloc_handle(10).index(), 2u);  // table exhausted: grows
    EXPECT_FALSE(lsa::handle());
}

TEST(lsa, misuse_is_reported) {
    set_abort_on_misuse(false);
    region r(1 * MiB);
    region other(1 * MiB);
    struct : lsa::migrator {
        void migrate(void* src, void* dst, std::size_t size) noexcept override { std::memcpy(dst, src, size); }
    } m;
    lsa::handle h = r.alloc_handle(64);
    r.free(h);
    EXPECT_THROW(r.free(h), misuse_error);
    EXPECT_THROW(r.free(lsa::handle()), misuse_error);
    void* p = r.alloc(m, 64);
    void* keep = r.alloc(m, 64);  // keeps the segment open and unrewound so p's header stays dead
    r.free(p);
    EXPECT_THROW(r.free(p), misuse_error);
    void* q = other.alloc(m, 64);
    EXPECT_THROW(r.free(q), misuse_error);
    other.free(q);
    lsa::handle h2 = r.alloc_handle(64);
    EXPECT_THROW(r.free(r.get(h2)), misuse_error);  // a handle object is freed through its handle
    r.free(h2);
    r.free(keep);
    r.set_evictor([&] { return r.alloc(m, 16) != nullptr; });
    EXPECT_THROW(
        for (;;) { r.alloc(m, 1000); }, misuse_error);
    set_abort_on_misuse(true);
}

TEST(lsa, object_size_limits) {
    EXPECT_THROW(region(region::segment_size), std::invalid_argument);
    region r(1 * MiB);
    struct : lsa::migrator {
        void migrate(void* src, void* dst, std::size_t size) noexcept override { std::memcpy(dst, src, size); }
    } m;
    EXPECT_THROW(r.alloc(m, region::max_object_size + 1), std::invalid_argument);
    EXPECT_THROW(r.alloc_handle(region::max_object_size + 1), std::invalid_argument);
    EXPECT_EQ(r.statistics().allocations, 0u);
    // The largest objects fill a segment each and still move.
    std::vector<lsa::handle> hs;
    for (std::uint64_t i = 0; i < 4; ++i) {
        hs.push_back(r.alloc_handle(region::max_object_size));
        fill(r.get(hs.back()), region::max_object_size, i);
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(r.get(hs.back())) % region::object_alignment, 0u);
    }
    void* z = r.alloc(m, 0);  // zero-size objects are allowed
    r.free(z);
    r.free(hs[1]);
    r.free(hs[2]);
    for (std::uint64_t i = 0; i < 4; ++i) {
        if (i == 1 || i == 2) {
            continue;
        }
        EXPECT_TRUE(intact(r.get(hs[i]), region::max_object_size, i));
    }
}

namespace {

// A typed object referenced from outside by a back-link, fixed up by its move constructor.
struct record {
    std::string key;
    std::string value;
    record** slot;
    record(std::string k, std::string v, record** s) : key(std::move(k)), value(std::move(v)), slot(s) { *slot = this; }
    record(record&& o) noexcept : key(std::move(o.key)), value(std::move(o.value)), slot(o.slot) { *slot = this; }
    ~record() = default;
};

struct throws_on_construction {
    std::string s{"this string is long enough to live on the heap, not in the SSO buffer"};
    explicit throws_on_construction(bool fail) {
        if (fail) {
            throw std::runtime_error("construction failed");
        }
    }
};

std::string long_string(const char* prefix, int i) {
    return std::string(prefix) + std::to_string(i) + std::string(40 + i % 64, char('a' + i % 26));
}

}  // namespace

TEST(lsa, typed_objects_with_strings_move_correctly) {
    region r(8 * MiB);
    constexpr int n = 20000;
    std::vector<record*> slots(n, nullptr);
    std::vector<lsa::handle> handles(n);
    for (int i = 0; i < n; ++i) {
        r.make<record>(long_string("k", i), long_string("v", i), &slots[i]);
        handles[i] = r.make_handle<std::string>(long_string("h", i));
    }
    // Destroy two thirds, compact everything, then check the survivors through their links.
    for (int i = 0; i < n; ++i) {
        if (i % 3 != 0) {
            r.destroy(slots[i]);
            slots[i] = nullptr;
            r.destroy<std::string>(handles[i]);
            handles[i] = {};
        }
    }
    std::vector<record*> before(slots);
    auto st0 = r.statistics();
    EXPECT_TRUE(r.compact_all());
    auto st1 = r.statistics();
    EXPECT_GT(st1.segments_compacted, st0.segments_compacted);
    // Occupancy counts payload only; these objects are small, so the 16-byte header and rounding to
    // 16 bytes weigh (a record takes 96 bytes). Live data must fill 90% of what the objects take.
    auto footprint = [](std::size_t n) { return 16 + (n + 15) / 16 * 16; };
    double payload_share = double(sizeof(record) + sizeof(std::string)) /
                           double(footprint(sizeof(record)) + footprint(sizeof(std::string)));
    EXPECT_GE(st1.occupancy, 0.9 * payload_share);
    EXPECT_LE(st1.segments_in_use, st0.segments_in_use / 3 + 2);
    int moved = 0;
    for (int i = 0; i < n; i += 3) {
        ASSERT_NE(slots[i], nullptr);
        moved += slots[i] != before[i];
        EXPECT_EQ(slots[i]->key, long_string("k", i));
        EXPECT_EQ(slots[i]->value, long_string("v", i));
        EXPECT_EQ(slots[i]->slot, &slots[i]);
        EXPECT_EQ(*r.get<std::string>(handles[i]), long_string("h", i));
    }
    EXPECT_GT(moved, 0);
    // A throwing constructor leaves nothing allocated.
    auto live = r.statistics().objects_live;
    EXPECT_THROW(r.make<throws_on_construction>(true), std::runtime_error);
    EXPECT_THROW(r.make_handle<throws_on_construction>(true), std::runtime_error);
    EXPECT_EQ(r.statistics().objects_live, live);
    r.destroy(r.make<throws_on_construction>(false));
    for (int i = 0; i < n; i += 3) {
        r.destroy(slots[i]);
        r.destroy<std::string>(handles[i]);
    }
    EXPECT_EQ(r.statistics().objects_live, 0u);
}

TEST(lsa, typed_objects_are_evicted_and_counted) {
    region r(1 * MiB);
    std::vector<record*> slots(100000, nullptr);
    // Records move, so the eviction order holds their (stable) slots, not their addresses.
    std::list<record**> fifo;
    r.set_evictor([&] {
        if (fifo.empty()) {
            return false;
        }
        record** slot = fifo.front();
        fifo.pop_front();
        record* rec = *slot;
        *slot = nullptr;
        r.destroy(rec);
        return true;
    });
    for (int i = 0; i < 100000; ++i) {
        r.make<record>(long_string("k", i), long_string("v", i), &slots[i]);
        fifo.push_back(&slots[i]);
    }
    auto st = r.statistics();
    EXPECT_GT(st.objects_evicted, 85000u);
    EXPECT_EQ(st.objects_evicted, st.frees);
    EXPECT_EQ(st.bytes_evicted, st.objects_evicted * sizeof(record));
    EXPECT_LE(st.segments_total * region::segment_size, r.budget());
    for (record** slot : fifo) {
        int i = int(slot - slots.data());
        ASSERT_EQ((*slot)->key, long_string("k", i));
    }
    while (!fifo.empty()) {
        r.destroy(*fifo.front());
        fifo.pop_front();
    }
}

TEST(lsa, reclaim_compacts_then_evicts_and_respects_the_lock) {
    region r(16 * MiB);
    workload w(r);
    std::mt19937_64 rng(9);
    std::uniform_int_distribution<std::size_t> size(50, 2000);
    while (w.live_bytes < 12 * MiB) {
        w.allocate(size(rng), true);
    }
    for (std::size_t n = w.live.size() / 2; n > 0; --n) {
        w.free_at(rng() % w.live.size());
    }
    auto st0 = r.statistics();
    {
        region::reclaim_lock lock(r);
        std::size_t released = r.reclaim(4 * MiB);
        EXPECT_EQ(released, (st0.segments_free - 1) * region::segment_size);  // only free segments
        EXPECT_EQ(r.statistics().segments_compacted, st0.segments_compacted);
    }
    // Unlocked: compaction of the half-empty segments gives memory back, with nothing evicted.
    std::size_t released = r.reclaim(4 * MiB);
    EXPECT_GE(released, 4 * MiB);
    auto st1 = r.statistics();
    EXPECT_GT(st1.segments_compacted, st0.segments_compacted);
    EXPECT_EQ(st1.objects_evicted, 0u);
    EXPECT_EQ(w.corrupted(), 0u);

    // Once everything is packed, reclaim has to evict.
    EXPECT_TRUE(r.compact_all());
    r.set_evictor([&] {
        if (w.live.empty()) {
            return false;
        }
        w.free_at(0);
        return true;
    });
    std::size_t before = r.statistics().segments_total;
    released = r.reclaim(4 * MiB);
    EXPECT_GE(released, 4 * MiB);
    EXPECT_EQ(r.statistics().segments_total, before - released / region::segment_size);
    EXPECT_GT(r.statistics().objects_evicted, 0u);
    EXPECT_EQ(w.corrupted(), 0u);
    // Evicting everything shrinks the region to its reserve segment.
    r.reclaim(SIZE_MAX / 2);
    EXPECT_TRUE(w.live.empty());
    EXPECT_EQ(r.statistics().segments_total, 1u);
    w.allocate(100, true);  // and it still works afterwards
    EXPECT_EQ(w.corrupted(), 0u);
}

TEST(lsa, reclaim_from_inside_the_evictor_moves_nothing) {
    // The evictor may allocate from the system allocator, which may ask the region for memory while
    // the evictor holds addresses of region objects: such a reclaim only releases free segments.
    region r(2 * region::segment_size);
    workload w(r);
    EXPECT_THROW(
        for (;;) { w.allocate(1000, false); }, std::bad_alloc);
    std::uint64_t compacted_inside = 0;
    std::size_t released_inside = 0;
    r.set_evictor([&] {
        auto before = r.statistics().segments_compacted;
        released_inside += r.reclaim(SIZE_MAX / 2);
        compacted_inside += r.statistics().segments_compacted - before;
        if (w.live.empty()) {
            return false;
        }
        w.free_at(w.live.size() - 1);
        return true;
    });
    w.allocate(1000, false);
    EXPECT_GT(r.statistics().objects_evicted, 0u);
    EXPECT_EQ(compacted_inside, 0u);
    EXPECT_EQ(released_inside, 0u);  // the only free segment is the reserve
    EXPECT_EQ(w.corrupted(), 0u);
}

TEST(lsa, set_budget_shrinks_and_grows) {
    region r(8 * MiB);
    workload w(r);
    std::mt19937_64 rng(13);
    while (w.live_bytes < 6 * MiB) {
        w.allocate(1000, rng() % 2 == 0);
    }
    EXPECT_THROW(r.set_budget(100), std::invalid_argument);
    EXPECT_EQ(r.budget(), 8 * MiB);
    r.set_evictor([&] {
        if (w.live.empty()) {
            return false;
        }
        w.free_at(0);
        return true;
    });
    r.set_budget(2 * MiB);
    auto st = r.statistics();
    EXPECT_EQ(r.budget(), 2 * MiB);
    EXPECT_LE(st.segments_total * region::segment_size, 2 * MiB);
    EXPECT_LE(st.bytes_allocated, 2 * MiB);
    EXPECT_GT(st.objects_evicted, 0u);
    EXPECT_EQ(w.corrupted(), 0u);
    // Growing the budget lets the live set grow again without evicting.
    r.set_budget(16 * MiB);
    auto evicted = st.objects_evicted;
    while (w.live_bytes < 12 * MiB) {
        w.allocate(1000, rng() % 2 == 0);
    }
    EXPECT_EQ(r.statistics().objects_evicted, evicted);
    EXPECT_EQ(w.corrupted(), 0u);
}
