// The Internet checksum's inner loop (stack/net/checksum.cc): the portable 64-bit loop (the
// baseline, what checksummer used before) against the AVX2 one, over the sizes the native stack
// checksums (a small segment, a full 1500-MTU TCP payload, a jumbo frame, a 64 KiB TSO-sized run).
// Run by tests/perf/run_checksum.sh, which writes the ratio to a results file.
#include "stack/net/checksum.hh"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

namespace {

std::vector<unsigned char> data(std::size_t n) {
    std::vector<unsigned char> v(n + 64);
    std::mt19937 rng(1);
    for (auto& c : v) {
        c = static_cast<unsigned char>(rng());
    }
    return v;
}

template <std::uint64_t (*Sum)(const unsigned char*, std::size_t)>
void bm_sum(benchmark::State& state) {
    auto n = std::size_t(state.range(0));
    auto v = data(n);
    for (auto _ : state) {
        benchmark::DoNotOptimize(Sum(v.data() + 2, n));  // a frame's payload is rarely 32-aligned
    }
    state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(n));
}

void bm_checksummer(benchmark::State& state) {
    auto n = std::size_t(state.range(0));
    auto v = data(n);
    for (auto _ : state) {
        reef::net::checksummer c;
        c.add(v.data() + 2, n);
        benchmark::DoNotOptimize(c.folded_sum());
    }
    state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(n));
}

void sizes(benchmark::internal::Benchmark* b) {
    for (int n : {64, 256, 1448, 9000, 65536}) {
        b->Arg(n);
    }
}

}  // namespace

BENCHMARK_TEMPLATE(bm_sum, reef::net::detail::checksum_raw_sum_scalar)->Name("checksum/scalar")->Apply(sizes);
BENCHMARK_TEMPLATE(bm_sum, reef::net::detail::checksum_raw_sum_avx2)->Name("checksum/avx2")->Apply(sizes);
BENCHMARK(bm_checksummer)->Name("checksum/checksummer")->Apply(sizes);

BENCHMARK_MAIN();
