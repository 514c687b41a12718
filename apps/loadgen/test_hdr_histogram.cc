// hdr_histogram: precision, percentiles against exact order statistics, merging, saturation.
#include "apps/loadgen/hdr_histogram.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

using reef::loadgen::hdr_histogram;

namespace {

// The exact value of rank ceil(p% * n) (1-based) of sorted v, the definition the histogram follows.
std::uint64_t exact_percentile(std::vector<std::uint64_t> v, double p) {
    std::sort(v.begin(), v.end());
    auto rank = std::max<std::size_t>(1, std::size_t(std::ceil(p / 100.0 * double(v.size()) - 1e-9)));
    return v[std::min(rank, v.size()) - 1];
}

}  // namespace

TEST(hdr_histogram, rejects_bad_parameters) {
    EXPECT_THROW(hdr_histogram(0, 1000, 2), std::invalid_argument);
    EXPECT_THROW(hdr_histogram(10, 15, 2), std::invalid_argument);
    EXPECT_THROW(hdr_histogram(1, 1000, 0), std::invalid_argument);
    EXPECT_THROW(hdr_histogram(1, 1000, 6), std::invalid_argument);
}

TEST(hdr_histogram, empty) {
    auto h = hdr_histogram::for_latency_ns();
    EXPECT_EQ(h.count(), 0u);
    EXPECT_EQ(h.value_at_percentile(50), 0u);
    EXPECT_EQ(h.min(), 0u);
    EXPECT_EQ(h.max(), 0u);
    EXPECT_EQ(h.mean(), 0.0);
}

TEST(hdr_histogram, memory_is_small) {
    auto h = hdr_histogram::for_latency_ns();
    EXPECT_LT(h.slots() * sizeof(std::uint64_t), 32u * 1024);
}

// Every value keeps 2 significant digits: its slot is narrower than 1% of it (above the lowest
// discernible value), and the slot of the highest trackable value exists.
TEST(hdr_histogram, relative_precision_holds_over_the_range) {
    auto h = hdr_histogram::for_latency_ns();
    for (std::uint64_t v = 1000; v <= h.highest_trackable(); v = v * 11 / 10 + 1) {
        std::uint64_t lo = h.lowest_equivalent(v);
        std::uint64_t hi = h.highest_equivalent(v);
        ASSERT_LE(lo, v) << v;
        ASSERT_GE(hi, v) << v;
        ASSERT_LE(double(hi - lo + 1), double(v) / 100.0) << v;
    }
    h.record(h.highest_trackable());
    EXPECT_EQ(h.count(), 1u);
    EXPECT_EQ(h.saturated(), 0u);
}

TEST(hdr_histogram, small_values_are_exact_in_the_first_bucket) {
    hdr_histogram h(1, 1'000'000, 3);
    for (std::uint64_t v = 0; v < 2048; ++v) {
        ASSERT_EQ(h.lowest_equivalent(v), v);
        ASSERT_EQ(h.highest_equivalent(v), v);
    }
}

TEST(hdr_histogram, percentiles_match_exact_order_statistics_within_precision) {
    std::mt19937_64 rng(42);
    std::lognormal_distribution<double> dist(std::log(50'000.0), 0.8);  // ~50 us median, in ns
    auto h = hdr_histogram::for_latency_ns();
    std::vector<std::uint64_t> values;
    for (int i = 0; i < 100'000; ++i) {
        auto v = std::uint64_t(dist(rng)) + 1000;
        values.push_back(v);
        h.record(v);
    }
    for (double p : {0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
        std::uint64_t exact = exact_percentile(values, p);
        std::uint64_t got = h.value_at_percentile(p);
        // The histogram answers with the top of exact's slot (capped at the max).
        EXPECT_GE(got, exact) << "p" << p;
        EXPECT_LE(double(got - exact), double(exact) / 100.0) << "p" << p;
    }
    EXPECT_EQ(h.value_at_percentile(100), *std::max_element(values.begin(), values.end()));
    EXPECT_EQ(h.min(), *std::min_element(values.begin(), values.end()));
    long double sum = 0;
    for (auto v : values) {
        sum += v;
    }
    EXPECT_NEAR(h.mean(), double(sum / values.size()), 1e-6 * h.mean());
}

TEST(hdr_histogram, percentile_ranks_are_exact_for_small_counts) {
    hdr_histogram h(1, 1'000'000, 3);
    for (std::uint64_t v = 1; v <= 1000; ++v) {
        h.record(v);
    }
    EXPECT_EQ(h.value_at_percentile(50), 500u);
    EXPECT_EQ(h.value_at_percentile(99.9), 999u);
    EXPECT_EQ(h.value_at_percentile(99.95), 1000u);
    EXPECT_EQ(h.value_at_percentile(0), 1u);
    EXPECT_EQ(h.value_at_percentile(100), 1000u);
}

TEST(hdr_histogram, merge_equals_recording_everything_in_one) {
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<std::uint64_t> dist(1000, 10'000'000);
    auto a = hdr_histogram::for_latency_ns();
    auto b = hdr_histogram::for_latency_ns();
    auto all = hdr_histogram::for_latency_ns();
    for (int i = 0; i < 20'000; ++i) {
        auto v = dist(rng);
        (i % 3 ? a : b).record(v);
        all.record(v);
    }
    a.merge(b);
    EXPECT_EQ(a.count(), all.count());
    EXPECT_EQ(a.min(), all.min());
    EXPECT_EQ(a.max(), all.max());
    for (double p : {10.0, 50.0, 90.0, 99.0, 99.9}) {
        EXPECT_EQ(a.value_at_percentile(p), all.value_at_percentile(p)) << p;
    }
    // Merging an empty histogram changes nothing, including min.
    a.merge(hdr_histogram::for_latency_ns());
    EXPECT_EQ(a.min(), all.min());
    EXPECT_THROW(a.merge(hdr_histogram(1, 1000, 2)), std::invalid_argument);
}

TEST(hdr_histogram, values_above_the_range_saturate) {
    hdr_histogram h(1, 1'000'000, 2);
    h.record(5'000'000);
    h.record(10);
    EXPECT_EQ(h.count(), 2u);
    EXPECT_EQ(h.saturated(), 1u);
    EXPECT_EQ(h.max(), 5'000'000u);  // exact, not clamped
    EXPECT_EQ(h.value_at_percentile(100), 5'000'000u);
    EXPECT_GE(h.value_at_percentile(75), h.lowest_equivalent(1'000'000));
}

TEST(hdr_histogram, record_with_count_and_reset) {
    auto h = hdr_histogram::for_latency_ns();
    h.record(20'000, 99);
    h.record(900'000);
    EXPECT_EQ(h.count(), 100u);
    EXPECT_EQ(h.value_at_percentile(99), h.highest_equivalent(20'000));
    EXPECT_EQ(h.value_at_percentile(99.5), 900'000u);
    h.reset();
    EXPECT_EQ(h.count(), 0u);
    EXPECT_EQ(h.value_at_percentile(50), 0u);
    EXPECT_EQ(h.max(), 0u);
}
