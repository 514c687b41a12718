// hdr_histogram: a latency histogram with log-linear buckets (the HDR Histogram layout), for
// reef-loadgen's per-request latencies.
//
// Values are non-negative integers (reef-loadgen records nanoseconds). The range
// [lowest_discernible, highest_trackable] is covered by buckets whose width doubles from one
// power of two to the next, each split into 2 * 10^significant_digits (rounded up to a power of
// two) linear sub-buckets, so every recorded value is kept with a relative error below
// 10^-significant_digits. Recording is a few shifts and an increment; memory is fixed at
// construction (about 31 KiB for 1 ns .. 60 s at 2 digits).
//
// Contract: a plain value type with no shard affinity (copy it to another shard to merge it
// there); not thread-safe. Values above highest_trackable are recorded as highest_trackable and
// counted in saturated(); the exact min() and max() of what was recorded are kept beside the
// buckets.
#pragma once

#include <cstdint>
#include <vector>

namespace reef::loadgen {

class hdr_histogram {
    std::uint64_t _lowest;
    std::uint64_t _highest;
    unsigned _digits;
    unsigned _unit_magnitude;             // log2 of the lowest discernible value, rounded down
    unsigned _sub_bucket_half_magnitude;  // log2(sub-buckets) - 1
    std::uint64_t _sub_bucket_count;      // linear sub-buckets per bucket (a power of two)
    std::uint64_t _sub_bucket_half;
    std::uint64_t _sub_bucket_mask;
    unsigned _bucket_count;
    std::vector<std::uint64_t> _counts;
    std::uint64_t _total = 0;
    std::uint64_t _saturated = 0;
    std::uint64_t _min = UINT64_MAX;
    std::uint64_t _max = 0;
    long double _sum = 0;

    unsigned bucket_index(std::uint64_t v) const noexcept;
    std::size_t counts_index(std::uint64_t v) const noexcept;
    std::uint64_t value_at_index(std::size_t i) const noexcept;  // lowest value of slot i
    std::uint64_t slot_width(std::size_t i) const noexcept;

public:
    /// Track values from `lowest_discernible` (>= 1) to `highest_trackable` (>= 2 *
    /// lowest_discernible) with `significant_digits` (1..5) decimal digits of precision. Throws
    /// std::invalid_argument naming the bad parameter.
    hdr_histogram(std::uint64_t lowest_discernible, std::uint64_t highest_trackable, unsigned significant_digits);

    /// The histogram reef-loadgen uses: nanoseconds up to 60 s, 2 significant digits (so 1% or
    /// better from 1 us up: a unit of 1 ns keeps loopback latencies of a few us precise too).
    static hdr_histogram for_latency_ns() { return hdr_histogram(1, 60'000'000'000ULL, 2); }

    /// Count `v` once (or `count` times).
    void record(std::uint64_t v, std::uint64_t count = 1) noexcept;

    /// Add every count of `other`, which must have the same lowest/highest/digits (else
    /// std::invalid_argument). Merging is exact: the result is the histogram of both sets.
    void merge(const hdr_histogram& other);

    /// Forget everything recorded (the configuration stays).
    void reset() noexcept;

    /// The smallest recorded value v such that at least `percentile` percent (0..100) of the
    /// recorded values are <= v, up to the histogram's precision: the highest value equivalent to
    /// the slot holding it, capped at max(). 0 when nothing was recorded. percentile 100 gives
    /// max().
    std::uint64_t value_at_percentile(double percentile) const noexcept;

    std::uint64_t count() const noexcept { return _total; }
    /// Values that were above highest_trackable (recorded as highest_trackable).
    std::uint64_t saturated() const noexcept { return _saturated; }
    /// Exact extremes of the recorded values (before clamping); 0 when empty.
    std::uint64_t min() const noexcept { return _total ? _min : 0; }
    std::uint64_t max() const noexcept { return _max; }
    /// Exact mean of the recorded values (before clamping); 0 when empty.
    double mean() const noexcept { return _total ? double(_sum / _total) : 0.0; }

    std::uint64_t lowest_discernible() const noexcept { return _lowest; }
    std::uint64_t highest_trackable() const noexcept { return _highest; }
    unsigned significant_digits() const noexcept { return _digits; }
    /// Number of slots (bucket count x half the sub-buckets, plus one half bucket).
    std::size_t slots() const noexcept { return _counts.size(); }
    /// The lowest and highest values that land in the same slot as v (v's precision).
    std::uint64_t lowest_equivalent(std::uint64_t v) const noexcept;
    std::uint64_t highest_equivalent(std::uint64_t v) const noexcept;
};

}  // namespace reef::loadgen
