// The per-shard allocator (runtime/memory.hh). The tests use the explicit API, so they run in
// every build; the malloc_* tests check that malloc and operator new are the Reef allocator when
// built with -Dallocator=reef, and that they are not otherwise.
#include "smp_test.hh"

#include "runtime/future_util.hh"
#include "runtime/memory.hh"
#include "runtime/smp.hh"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <malloc.h>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t KiB = 1024;
constexpr std::size_t MiB = 1024 * KiB;

// Keeps the compiler from eliding an allocation whose result is otherwise unused.
inline void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

// Fill / check a block with a pseudo-random byte stream derived from `seed`.
void fill(void* p, std::size_t n, std::uint32_t seed) {
    auto* b = static_cast<unsigned char*>(p);
    std::uint32_t x = seed * 2654435761u + 1;
    for (std::size_t i = 0; i < n; ++i) {
        x = x * 1664525u + 1013904223u;
        b[i] = static_cast<unsigned char>(x >> 24);
    }
}

bool check(const void* p, std::size_t n, std::uint32_t seed) {
    const auto* b = static_cast<const unsigned char*>(p);
    std::uint32_t x = seed * 2654435761u + 1;
    for (std::size_t i = 0; i < n; ++i) {
        x = x * 1664525u + 1013904223u;
        if (b[i] != static_cast<unsigned char>(x >> 24)) {
            return false;
        }
    }
    return true;
}

bool aligned_to(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

struct budget_guard {
    ~budget_guard() { memory::remove_budget(); }
};

}  // namespace

TEST(memory, every_size_class) {
    struct blk {
        void* p;
        std::size_t n;
    };
    std::vector<blk> blocks;
    std::vector<std::size_t> sizes;
    for (std::size_t n = 0; n <= 2048; ++n) {
        sizes.push_back(n);
    }
    for (std::size_t n = 2049; n <= memory::max_small_size + 64; n += 61) {
        sizes.push_back(n);
    }
    sizes.push_back(memory::max_small_size);
    int arena = -1;
    for (std::size_t n : sizes) {
        void* p = memory::allocate(n);
        ASSERT_NE(p, nullptr);
        EXPECT_TRUE(aligned_to(p, 16)) << n;
        std::size_t u = memory::usable_size(p);
        EXPECT_GE(u, std::max<std::size_t>(n, 1)) << n;
        if (n > 128 && n <= memory::max_small_size) {
            // Four classes per power of two: never more than 25% (plus rounding) of slack.
            EXPECT_LE(u, n + n / 4 + 16) << n;
        }
        fill(p, n, std::uint32_t(n));
        blocks.push_back({p, n});
        arena = memory::arena_of(p);
    }
    EXPECT_EQ(arena, memory::stats().arena);
    EXPECT_GE(arena, 0);
    for (auto& b : blocks) {
        EXPECT_TRUE(check(b.p, b.n, std::uint32_t(b.n))) << b.n;
        memory::free(b.p, b.n);
    }
    // Class boundaries.
    auto usable_of = [](std::size_t n) {
        void* p = memory::allocate(n);
        std::size_t u = memory::usable_size(p);
        memory::free(p);
        return u;
    };
    EXPECT_EQ(usable_of(1), 16u);
    EXPECT_EQ(usable_of(16), 16u);
    EXPECT_EQ(usable_of(17), 32u);
    EXPECT_EQ(usable_of(128), 128u);
    EXPECT_EQ(usable_of(129), 160u);
    EXPECT_EQ(usable_of(1024), 1024u);
    EXPECT_EQ(usable_of(1025), 1280u);
    EXPECT_EQ(usable_of(16384), 16384u);
    EXPECT_EQ(usable_of(16385), 20480u);  // large: page-rounded
    EXPECT_EQ(memory::usable_size(nullptr), 0u);
    memory::free(nullptr);
    int on_stack = 0;
    EXPECT_EQ(memory::arena_of(&on_stack), -1);
}

TEST(memory, large_allocations) {
    std::vector<std::size_t> sizes = {16385, 65536, 65537, MiB, 5 * MiB + 3, 64 * MiB};
    std::vector<void*> ps;
    ps.reserve(sizes.size());
    auto before = memory::stats();
    for (std::size_t n : sizes) {
        void* p = memory::allocate(n);
        EXPECT_TRUE(aligned_to(p, 64 * KiB)) << n;
        EXPECT_EQ(memory::usable_size(p), (n + 4095) / 4096 * 4096) << n;
        auto* b = static_cast<unsigned char*>(p);
        b[0] = 1;
        b[n - 1] = 2;
        ps.push_back(p);
    }
    auto during = memory::stats();
    EXPECT_EQ(during.large_allocations, before.large_allocations + sizes.size());
    EXPECT_GE(during.allocated, before.allocated + 70 * MiB);
    for (void* p : ps) {
        memory::free(p);
    }
    auto after = memory::stats();
    EXPECT_LE(after.allocated, before.allocated);
    EXPECT_LE(after.in_use, before.in_use);
    EXPECT_GE(after.free_cached, 70 * MiB);
    EXPECT_GE(memory::release_free_memory(), 70 * MiB);
}

TEST(memory, alignments) {
    for (std::size_t align = 1; align <= 4 * MiB; align *= 2) {
        for (std::size_t n : {std::size_t(1), std::size_t(24), std::size_t(100), std::size_t(4000), std::size_t(16384),
                              std::size_t(20000), std::size_t(100000)}) {
            void* p = memory::allocate_aligned(align, n);
            EXPECT_TRUE(aligned_to(p, std::max<std::size_t>(align, 16))) << align << " " << n;
            EXPECT_GE(memory::usable_size(p), n);
            fill(p, n, std::uint32_t(align + n));
            EXPECT_TRUE(check(p, n, std::uint32_t(align + n)));
            memory::free(p);
        }
    }
    EXPECT_THROW((void)memory::allocate_aligned(48, 10), std::invalid_argument);
    EXPECT_EQ(memory::try_allocate_aligned(3, 10), nullptr);
}

TEST(memory, reallocate_keeps_contents) {
    std::vector<std::size_t> steps = {1,     10,    100,  1000, 10000, 16384, 20000, 70000, MiB, 3 * MiB,
                                      100000, 17000, 5000, 50,   8,     300,   16385, 1};
    void* p = memory::reallocate(nullptr, steps[0]);
    fill(p, steps[0], 0);
    for (std::size_t i = 1; i < steps.size(); ++i) {
        void* q = memory::reallocate(p, steps[i]);
        ASSERT_NE(q, nullptr);
        EXPECT_TRUE(check(q, std::min(steps[i - 1], steps[i]), std::uint32_t(i - 1)))
            << steps[i - 1] << " -> " << steps[i];
        fill(q, steps[i], std::uint32_t(i));
        p = q;
    }
    EXPECT_EQ(memory::reallocate(p, 0), nullptr);  // frees

    // A large block shrinks in place, and grows back into the chunks it gave up.
    void* big = memory::allocate(MiB);
    fill(big, MiB, 9);
    EXPECT_EQ(memory::reallocate(big, 100 * KiB), big);
    EXPECT_EQ(memory::usable_size(big), 100 * KiB);
    EXPECT_TRUE(check(big, 100 * KiB, 9));
    EXPECT_EQ(memory::reallocate(big, MiB), big);
    EXPECT_TRUE(check(big, 100 * KiB, 9));
    memory::free(big);
}

TEST(memory, frees_give_memory_back) {
    std::vector<void*> ps;
    ps.reserve(100000);
    auto before = memory::stats();
    for (int i = 0; i < 100000; ++i) {
        ps.push_back(memory::allocate(64));
    }
    auto during = memory::stats();
    EXPECT_GE(during.allocated, before.allocated + 100000 * 64);
    EXPECT_GE(during.in_use + 64 * KiB, before.in_use + 100000 * 64);  // a span may have been half used
    for (void* p : ps) {
        memory::free(p);
    }
    auto after = memory::stats();
    // Empty spans go back to the chunk allocator (the class's current span stays).
    EXPECT_LE(after.allocated, before.allocated + 64);
    EXPECT_LE(after.in_use, before.in_use + 64 * KiB);
}

TEST(memory, configure_rejects_too_little_memory) {
    budget_guard g;
    try {
        memory::configure(16 * MiB, 1);
        ADD_FAILURE() << "16 MiB for one shard was accepted";
    } catch (const std::invalid_argument& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("16 MiB per shard"), std::string::npos) << msg;
        EXPECT_NE(msg.find("minimum of 32 MiB"), std::string::npos) << msg;
        EXPECT_NE(msg.find("--memory"), std::string::npos) << msg;
    }
    EXPECT_THROW(memory::configure(100 * MiB, 4), std::invalid_argument);  // 25 MiB each
    EXPECT_THROW(memory::configure(MiB * 1024, 0), std::invalid_argument);
    EXPECT_EQ(memory::shard_budget(), 0u);  // a rejected configuration changes nothing
    memory::configure(64 * MiB, 2);
    EXPECT_EQ(memory::shard_budget(), 32 * MiB);
    memory::remove_budget();
    EXPECT_EQ(memory::shard_budget(), 0u);
}

TEST(memory, budget_reclaims_then_throws) {
    budget_guard g;
    std::vector<void*> held;
    held.reserve(256);  // no allocation from the vector while the budget is tight
    memory::configure(64 * MiB, 1);
    const std::size_t budget = memory::shard_budget();
    ASSERT_EQ(budget, 64 * MiB);
    // Fill to 2 MiB under the budget with 1 MiB blocks (enough room left for small allocations).
    while (memory::stats().in_use + MiB + 2 * MiB <= budget) {
        void* p = memory::allocate(MiB);
        fill(p, 64, std::uint32_t(held.size()));
        held.push_back(p);
    }
    ASSERT_GE(held.size(), 40u);

    std::size_t calls = 0;
    std::size_t last_wanted = 0;
    auto reg = memory::register_reclaimer([&](std::size_t wanted) {
        ++calls;
        last_wanted = wanted;
        std::size_t freed = 0;
        while (freed < wanted && held.size() > 20) {
            memory::free(held.back());
            held.pop_back();
            freed += MiB;
        }
        return freed;
    });
    auto before = memory::stats();
    void* four = memory::allocate(4 * MiB);  // 2 MiB over: the reclaimer makes room
    EXPECT_GE(calls, 1u);
    EXPECT_GE(last_wanted, 1 * MiB);
    auto after = memory::stats();
    EXPECT_GT(after.reclaims, before.reclaims);
    EXPECT_GE(after.reclaimed_bytes, before.reclaimed_bytes + 2 * MiB);
    EXPECT_LE(after.in_use, budget);

    // Nothing more to reclaim: the allocation fails, after asking.
    reg.unregister();
    std::size_t useless_calls = 0;
    auto useless = memory::register_reclaimer([&](std::size_t) {
        ++useless_calls;
        return std::size_t(0);
    });
    auto before_fail = memory::stats();
    EXPECT_THROW((void)memory::allocate(budget), std::bad_alloc);
    EXPECT_GE(useless_calls, 1u);
    EXPECT_EQ(memory::try_allocate(budget), nullptr);
    EXPECT_THROW((void)memory::reallocate(four, budget), std::bad_alloc);  // `four` is left untouched
    auto after_fail = memory::stats();
    EXPECT_EQ(after_fail.failed_allocations, before_fail.failed_allocations + 3);
    EXPECT_EQ(after_fail.in_use, before_fail.in_use);

    // A reclaimer that throws counts as freeing nothing.
    auto thrower = memory::register_reclaimer([](std::size_t) -> std::size_t { throw std::runtime_error("no"); });
    EXPECT_THROW((void)memory::allocate(budget), std::bad_alloc);

    // Memory is intact and usable again once something is freed.
    for (std::size_t i = 0; i < held.size(); ++i) {
        EXPECT_TRUE(check(held[i], 64, std::uint32_t(i))) << i;
    }
    memory::free(four);
    for (int i = 0; i < 8; ++i) {
        memory::free(held.back());
        held.pop_back();
    }
    void* again = memory::allocate(8 * MiB);
    fill(again, 8 * MiB, 5);
    EXPECT_TRUE(check(again, 8 * MiB, 5));
    memory::free(again);
    for (void* p : held) {
        memory::free(p);
    }
}

// Exiting threads leave their arenas behind; frees into such an arena are kept for its next owner.
TEST(memory, thread_exit_and_frees_to_a_dead_arena) {
    std::vector<void*> ps;
    int dead_arena = -1;
    std::uint64_t dead_cross = 0;
    std::thread([&] {
        for (int i = 0; i < 1000; ++i) {
            ps.push_back(memory::allocate(64 + i % 200));
        }
        ps.push_back(memory::allocate(MiB));
        dead_arena = memory::stats().arena;
        dead_cross = memory::stats().cross_shard_frees;
    }).join();
    ASSERT_GE(dead_arena, 0);
    auto before = memory::stats();
    for (void* p : ps) {
        EXPECT_EQ(memory::arena_of(p), dead_arena);
        memory::free(p);
    }
    EXPECT_EQ(memory::stats().remote_frees_sent, before.remote_frees_sent + ps.size());
    memory::drain_remote_frees();  // publishes any frees this thread batched

    // Orphaned arenas are handed out lowest index first; keep threads alive until one gets it.
    std::latch release(1);
    std::vector<std::thread> keepers;
    bool found = false;
    for (int attempt = 0; attempt < 64 && !found; ++attempt) {
        int got = -1;
        std::uint64_t cross = 0;
        std::latch reported(1);
        keepers.emplace_back([&] {
            memory::free(memory::allocate(16));
            got = memory::stats().arena;
            memory::drain_remote_frees();
            cross = memory::stats().cross_shard_frees;
            reported.count_down();
            release.wait();
        });
        reported.wait();
        if (got == dead_arena) {
            found = true;
            EXPECT_GE(cross, dead_cross + ps.size());
        }
    }
    release.count_down();
    for (auto& t : keepers) {
        t.join();
    }
    EXPECT_TRUE(found);
}

// More threads than private arenas: the rest share the locked fallback arena.
TEST(memory, more_threads_than_arenas) {
    constexpr int threads = 80;
    std::latch all_started(threads);
    std::vector<std::vector<void*>> handed(threads);
    std::atomic<int> shared_users{0};
    std::atomic<int> errors{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
        ts.emplace_back([&, t] {
            void* first = memory::allocate(32);
            all_started.arrive_and_wait();  // every thread holds an arena (or the shared one) now
            if (memory::stats().arena < 0) {
                ++shared_users;
            }
            std::mt19937 rng{unsigned(t)};
            std::vector<std::pair<void*, std::size_t>> mine;
            for (int i = 0; i < 300; ++i) {
                std::size_t n = 1 + rng() % (i % 10 == 0 ? 100000 : 600);
                void* p = memory::allocate(n);
                fill(p, n, std::uint32_t(t * 1000 + i));
                mine.emplace_back(p, n);
            }
            for (std::size_t i = 0; i < mine.size(); ++i) {
                if (!check(mine[i].first, mine[i].second, std::uint32_t(t * 1000 + int(i)))) {
                    ++errors;
                }
                if (i % 2) {
                    memory::free(mine[i].first);
                } else {
                    handed[t].push_back(mine[i].first);  // freed by the main thread
                }
            }
            memory::free(first);
        });
    }
    for (auto& t : ts) {
        t.join();
    }
    EXPECT_EQ(errors.load(), 0);
    EXPECT_GE(shared_users.load(), 1);
    for (auto& v : handed) {
        for (void* p : v) {
            memory::free(p);
        }
    }
}

TEST(memory, fork_child_allocates_and_frees) {
    void* p = memory::allocate(100);
    void* m = std::malloc(100);
    escape(m);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        void* q = memory::allocate(1000);
        fill(q, 1000, 1);
        bool ok = check(q, 1000, 1);
        memory::free(q);
        memory::free(p);
        void* c = std::malloc(5000);
        escape(c);
        std::free(c);
        std::free(m);
        ::_exit(ok ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    memory::free(p);
    std::free(m);
}

namespace {

struct blk {
    void* p;
    std::size_t n;
    std::uint32_t seed;
};

std::size_t pick_size(std::mt19937& rng) {
    unsigned r = rng() % 100;
    if (r < 70) {
        return 1 + rng() % 512;
    }
    if (r < 92) {
        return 513 + rng() % (16384 - 512);
    }
    return 16385 + rng() % 300000;
}

// On `shard`: check the blocks, free half of them there (cross-shard frees) and grow the other half
// there (which moves them into that shard's arena) before freeing them. Returns the errors seen.
// Not a coroutine: GCC 12 destroys a local twice when a lambda capturing it by std::move is built
// inside a co_await expression, so the message is built here.
future<std::size_t> check_and_free_on(unsigned shard, std::vector<blk> ship) {
    return smp::submit_to(shard, [ship = std::move(ship)] {
        std::size_t e = 0;
        int here = memory::stats().arena;
        for (std::size_t i = 0; i < ship.size(); ++i) {
            const blk& b = ship[i];
            e += !check(b.p, b.n, b.seed);
            if (i % 2) {
                memory::free(b.p);
            } else {
                void* q = memory::reallocate(b.p, memory::usable_size(b.p) + 1);
                e += !check(q, b.n, b.seed);
                e += memory::arena_of(q) != here;
                memory::free(q);
            }
        }
        return e;
    });
}

// Random allocate/free/reallocate on this shard; every round ships some blocks to the other shard,
// which checks them and frees or reallocates them there. Returns the number of corrupt blocks seen.
future<std::size_t> random_workload(unsigned other, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<blk> live;
    std::size_t errors = 0;
    std::uint32_t next_seed = seed * 100000;
    for (int round = 0; round < 30; ++round) {
        for (int op = 0; op < 400; ++op) {
            unsigned r = rng() % 100;
            if (r < 45 || live.empty()) {
                std::size_t n = pick_size(rng);
                void* p = memory::allocate(n);
                fill(p, n, ++next_seed);
                live.push_back({p, n, next_seed});
            } else if (r < 75) {
                std::size_t i = rng() % live.size();
                errors += !check(live[i].p, live[i].n, live[i].seed);
                memory::free(live[i].p);
                live[i] = live.back();
                live.pop_back();
            } else {
                std::size_t i = rng() % live.size();
                std::size_t n = pick_size(rng);
                void* q = memory::reallocate(live[i].p, n);
                errors += !check(q, std::min(n, live[i].n), live[i].seed);
                fill(q, n, ++next_seed);
                live[i] = {q, n, next_seed};
            }
        }
        std::vector<blk> ship;
        for (int k = 0; k < 64 && !live.empty(); ++k) {
            ship.push_back(live.back());
            live.pop_back();
        }
        auto shipped = check_and_free_on(other, std::move(ship));
        errors += co_await std::move(shipped);
    }
    for (auto& b : live) {
        errors += !check(b.p, b.n, b.seed);
        memory::free(b.p);
    }
    co_return errors;
}

// Free the blocks on `shard`; returns how many remote frees that shard sent.
future<std::uint64_t> free_on(unsigned shard, std::vector<void*> ps) {
    return smp::submit_to(shard, [ps = std::move(ps)] {
        memory::free(memory::allocate(16));  // the shard's own arena, so its statistics count
        auto before = memory::stats().remote_frees_sent;
        for (void* p : ps) {
            memory::free(p);
        }
        return memory::stats().remote_frees_sent - before;
    });
}

// Wait (generously) until pred() holds, letting the reactor poll in between.
template <typename Pred>
future<bool> eventually(Pred pred) {
    for (int i = 0; i < 10000; ++i) {
        if (pred()) {
            co_return true;
        }
        co_await sleep(1ms);
    }
    co_return pred();
}

}  // namespace

REEF_SMP_TEST(memory, randomized_multi_shard_with_cross_shard_frees, 2) {
    memory::free(memory::allocate(16));  // make sure the shard has its arena before measuring
    auto start = memory::stats();
    auto remote = smp::submit_to(1, [] { return random_workload(0, 2); });
    std::size_t errors = co_await random_workload(1, 1);
    errors += co_await std::move(remote);
    EXPECT_EQ(errors, 0u);
    // Everything shard 0 allocated came back to it, including what shard 1 freed.
    bool back = co_await eventually([&] { return memory::stats().allocated <= start.allocated + 4 * MiB; });
    EXPECT_TRUE(back) << memory::stats().allocated << " vs " << start.allocated;
    EXPECT_GT(memory::stats().cross_shard_frees, start.cross_shard_frees);
}

// The owner takes cross-shard frees back through its poller, without any explicit call.
REEF_SMP_TEST(memory, cross_shard_frees_return_to_the_owner, 2) {
    constexpr std::size_t n = 2000;
    constexpr std::size_t size = 256;
    memory::free(memory::allocate(16));
    auto s0 = memory::stats();
    std::vector<void*> ps;
    for (std::size_t i = 0; i < n; ++i) {
        ps.push_back(memory::allocate(size));
    }
    auto s1 = memory::stats();
    EXPECT_GE(s1.allocated, s0.allocated + n * size);
    auto freed_there = free_on(1, std::move(ps));
    auto sent = co_await std::move(freed_there);
    EXPECT_EQ(sent, n);
    bool returned = co_await eventually([&] { return memory::stats().cross_shard_frees >= s1.cross_shard_frees + n; });
    EXPECT_TRUE(returned);
    auto s2 = memory::stats();
    EXPECT_LE(s2.allocated + n * size, s1.allocated + 64 * KiB);
    EXPECT_GE(s2.free_cached, s1.free_cached + n * size - 64 * KiB);
}

#ifdef REEF_ALLOCATOR_REEF

TEST(memory, malloc_is_the_reef_allocator) {
    EXPECT_TRUE(memory::is_malloc_replaced());
    auto before = memory::stats();
    void* p = std::malloc(1000);
    escape(p);
    EXPECT_EQ(memory::arena_of(p), memory::stats().arena);
    EXPECT_GE(memory::stats().allocated, before.allocated + 1000);
    EXPECT_EQ(::malloc_usable_size(p), 1024u);
    std::free(p);
    EXPECT_LE(memory::stats().allocated, before.allocated);

    auto* arr = new int[100];
    escape(arr);
    EXPECT_GE(memory::arena_of(arr), 0);
    delete[] arr;
    auto* s = new std::string(100, 'x');
    EXPECT_GE(memory::arena_of(s->data()), 0);
    delete s;
    struct alignas(256) over_aligned {
        char c[300];
    };
    auto* o = new over_aligned;
    escape(o);
    EXPECT_TRUE(aligned_to(o, 256));
    EXPECT_GE(memory::arena_of(o), 0);
    delete o;
    // libc's own allocations go through the replacement too.
    char* d = ::strdup("reef");
    EXPECT_GE(memory::arena_of(d), 0);
    std::free(d);
}

TEST(memory, malloc_family_contracts) {
    // calloc clears reused memory, small and large.
    for (std::size_t n : {std::size_t(200), std::size_t(100000)}) {
        void* dirty = std::malloc(n);
        std::memset(dirty, 0xab, n);
        std::free(dirty);
        auto* z = static_cast<unsigned char*>(std::calloc(1, n));
        bool all_zero = true;
        for (std::size_t i = 0; i < n; ++i) {
            all_zero &= z[i] == 0;
        }
        EXPECT_TRUE(all_zero) << n;
        std::free(z);
    }
    // Called through volatile pointers: the compiler must not reason about these as allocations.
    void* (*volatile calloc_fn)(std::size_t, std::size_t) = &std::calloc;
    void* (*volatile reallocarray_fn)(void*, std::size_t, std::size_t) = &::reallocarray;
    volatile std::size_t too_many = SIZE_MAX / 2;
    errno = 0;
    EXPECT_EQ(calloc_fn(too_many, 4), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    void* huge = std::malloc(too_many);
    escape(huge);
    EXPECT_EQ(huge, nullptr);
    EXPECT_EQ(errno, ENOMEM);

    void* p = nullptr;
    EXPECT_EQ(::posix_memalign(&p, 4096, 100), 0);
    EXPECT_TRUE(aligned_to(p, 4096));
    std::free(p);
    EXPECT_EQ(::posix_memalign(&p, 4, 100), EINVAL);
    EXPECT_EQ(::posix_memalign(&p, 24, 100), EINVAL);
    void* a = ::aligned_alloc(64, 100);
    EXPECT_TRUE(aligned_to(a, 64));
    std::free(a);
    void* m = ::memalign(100, 10);  // rounded up to 128
    EXPECT_TRUE(aligned_to(m, 128));
    std::free(m);
    void* v = ::valloc(10);
    EXPECT_TRUE(aligned_to(v, 4096));
    std::free(v);
    void* pv = ::pvalloc(1);
    EXPECT_TRUE(aligned_to(pv, 4096));
    EXPECT_GE(::malloc_usable_size(pv), 4096u);
    std::free(pv);
    EXPECT_EQ(::malloc_usable_size(nullptr), 0u);

    auto* r = static_cast<char*>(std::malloc(10));
    std::memcpy(r, "0123456789", 10);
    r = static_cast<char*>(std::realloc(r, 100000));
    EXPECT_EQ(std::memcmp(r, "0123456789", 10), 0);
    r = static_cast<char*>(std::realloc(r, 5));
    EXPECT_EQ(std::memcmp(r, "01234", 5), 0);
    errno = 0;
    EXPECT_EQ(reallocarray_fn(r, too_many, 4), nullptr);  // r is left untouched
    EXPECT_EQ(errno, ENOMEM);
    std::free(r);
}

TEST(memory, malloc_over_budget_fails_cleanly) {
    budget_guard g;
    memory::configure(64 * MiB, 1);
    auto before = memory::stats();
    errno = 0;
    void* p = std::malloc(100 * MiB);
    escape(p);
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_THROW(
        {
            auto* c = new char[100 * MiB];
            escape(c);
            delete[] c;
        },
        std::bad_alloc);
    auto* nt = new (std::nothrow) char[100 * MiB];
    EXPECT_EQ(nt, nullptr);
    EXPECT_EQ(memory::stats().failed_allocations, before.failed_allocations + 3);
    memory::remove_budget();
    void* ok = std::malloc(100 * MiB);
    escape(ok);
    EXPECT_NE(ok, nullptr);
    std::free(ok);
}

#else

TEST(memory, malloc_is_the_system_allocator) {
    EXPECT_FALSE(memory::is_malloc_replaced());
    void* p = std::malloc(100);
    escape(p);
    EXPECT_EQ(memory::arena_of(p), -1);
    std::free(p);
}

#endif
