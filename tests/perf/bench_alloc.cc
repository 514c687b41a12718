// Allocator microbenchmarks (issue 3): small malloc/free pairs, 16-512 B of random sizes from a
// fixed seed, allocated in batches and freed in a shuffled order so both the allocation and the
// free paths are measured beyond any per-size cache; on one shard, and across shards (shard 0
// allocates, shard 1 frees). Each case runs with Reef's allocator (the explicit reef::memory API)
// and with glibc's (__libc_malloc/__libc_free, so the baseline is glibc's even in a build whose
// malloc is Reef's), in the same binary. tests/perf/run_alloc.sh runs it and prints the ratios.
//
// Counters: "pairs" is the rate of malloc/free pairs; time per pair is 1/pairs.
#include "runtime/memory.hh"
#include "runtime/smp.hh"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

extern "C" {
void* __libc_malloc(std::size_t n);
void __libc_free(void* p);
}

using namespace reef;

namespace {

constexpr std::size_t batch = 256;
constexpr std::size_t table = 8192;  // sizes cycle through this many entries

struct workload {
    std::vector<std::uint32_t> sizes;       // table entries, 16..512
    std::vector<std::uint32_t> free_order;  // a permutation of 0..batch-1
};

const workload& small_workload() {
    static const workload w = [] {
        workload w;
        std::mt19937 rng(20250526);
        std::uniform_int_distribution<std::uint32_t> size(16, 512);
        for (std::size_t i = 0; i < table; ++i) {
            w.sizes.push_back(size(rng));
        }
        w.free_order.resize(batch);
        std::iota(w.free_order.begin(), w.free_order.end(), 0u);
        std::shuffle(w.free_order.begin(), w.free_order.end(), rng);
        return w;
    }();
    return w;
}

struct reef_alloc {
    static void* alloc(std::size_t n) { return memory::allocate(n); }
    static void release(void* p) { memory::free(p); }
};

struct glibc_alloc {
    static void* alloc(std::size_t n) { return __libc_malloc(n); }
    static void release(void* p) { __libc_free(p); }
};

// Allocate one batch (touching each block, as a user would) starting at table entry `at`.
template <typename Alloc>
inline void alloc_batch(void** ptrs, const workload& w, std::size_t at) {
    for (std::size_t i = 0; i < batch; ++i) {
        auto* p = static_cast<char*>(Alloc::alloc(w.sizes[(at + i) % table]));
        p[0] = char(i);
        ptrs[i] = p;
    }
}

template <typename Alloc>
inline void free_batch(void** ptrs, const workload& w) {
    for (std::size_t i = 0; i < batch; ++i) {
        Alloc::release(ptrs[w.free_order[i]]);
    }
}

template <typename Alloc>
void small_pairs(benchmark::State& state) {
    const auto& w = small_workload();
    void* ptrs[batch];
    std::size_t at = 0;
    // Warm up: the first batches fill the allocator's caches, which is not what is measured.
    for (int i = 0; i < 64; ++i) {
        alloc_batch<Alloc>(ptrs, w, at);
        free_batch<Alloc>(ptrs, w);
        at += batch;
    }
    for (auto _ : state) {
        alloc_batch<Alloc>(ptrs, w, at);
        benchmark::DoNotOptimize(ptrs);
        free_batch<Alloc>(ptrs, w);
        benchmark::ClobberMemory();
        at += batch;
    }
    state.counters["pairs"] = benchmark::Counter(double(state.iterations() * batch), benchmark::Counter::kIsRate);
}

// Shard 0 allocates blocks and sends them to shard 1, which frees them: one message carries
// `per_message` blocks (so the message latency, which on a loaded machine is the scheduler's, is
// spread thin), and `depth` messages are in flight so both shards work at the same time.
template <typename Alloc>
void cross_shard_free(benchmark::State& state) {
    constexpr std::size_t depth = 4;
    constexpr std::size_t per_message = 16;  // batches
    smp_options o;
    o.smp = 2;
    o.thread_affinity = false;
    reactor_config cfg;
    cfg.handle_termination_signals = false;
    cfg.idle = idle_policy::adaptive;
    smp::run(o, cfg, [&state]() -> future<int> {
        const auto& w = small_workload();
        std::vector<std::vector<void*>> slots(depth, std::vector<void*>(batch * per_message));
        std::vector<future<>> inflight;
        for (std::size_t i = 0; i < depth; ++i) {
            inflight.push_back(make_ready_future());
        }
        std::size_t at = 0;
        std::size_t k = 0;
        auto send = [&](std::size_t slot) {
            void** ptrs = slots[slot].data();
            for (std::size_t b = 0; b < per_message; ++b) {
                alloc_batch<Alloc>(ptrs + b * batch, w, at);
                at += batch;
            }
            return smp::submit_to(1, [ptrs, &w] {
                for (std::size_t b = 0; b < per_message; ++b) {
                    free_batch<Alloc>(ptrs + b * batch, w);
                }
            });
        };
        for (int i = 0; i < 16; ++i, ++k) {  // warm up both allocators' caches
            co_await std::move(inflight[k % depth]);
            inflight[k % depth] = send(k % depth);
        }
        for (auto _ : state) {
            co_await std::move(inflight[k % depth]);
            inflight[k % depth] = send(k % depth);
            ++k;
        }
        for (auto& f : inflight) {
            co_await std::move(f);
        }
        co_return 0;
    });
    state.counters["pairs"] =
        benchmark::Counter(double(state.iterations() * batch * per_message), benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::RegisterBenchmark("small_pairs/reef", small_pairs<reef_alloc>);
    benchmark::RegisterBenchmark("small_pairs/glibc", small_pairs<glibc_alloc>);
    benchmark::RegisterBenchmark("cross_shard_free/reef", cross_shard_free<reef_alloc>)->UseRealTime();
    benchmark::RegisterBenchmark("cross_shard_free/glibc", cross_shard_free<glibc_alloc>)->UseRealTime();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    benchmark::AddCustomContext("batch", std::to_string(batch));
    benchmark::AddCustomContext("malloc_is_reef", memory::is_malloc_replaced() ? "yes" : "no");
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
