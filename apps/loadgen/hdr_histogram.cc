#include "apps/loadgen/hdr_histogram.hh"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

namespace reef::loadgen {

hdr_histogram::hdr_histogram(std::uint64_t lowest_discernible, std::uint64_t highest_trackable,
                             unsigned significant_digits)
    : _lowest(lowest_discernible), _highest(highest_trackable), _digits(significant_digits) {
    if (lowest_discernible < 1) {
        throw std::invalid_argument("hdr_histogram: lowest_discernible must be >= 1");
    }
    if (highest_trackable < 2 * lowest_discernible) {
        throw std::invalid_argument("hdr_histogram: highest_trackable must be >= 2 * lowest_discernible");
    }
    if (significant_digits < 1 || significant_digits > 5) {
        throw std::invalid_argument("hdr_histogram: significant_digits must be 1..5, not " +
                                    std::to_string(significant_digits));
    }
    // Enough linear sub-buckets that one unit is below 10^-digits of the smallest value of a
    // bucket's upper half (the half that is not covered by the bucket before it).
    std::uint64_t resolution = 2;
    for (unsigned i = 0; i < significant_digits; ++i) {
        resolution *= 10;
    }
    unsigned sub_bucket_magnitude = unsigned(std::bit_width(resolution - 1));  // ceil(log2)
    _unit_magnitude = unsigned(std::bit_width(lowest_discernible) - 1);        // floor(log2)
    _sub_bucket_half_magnitude = sub_bucket_magnitude - 1;
    _sub_bucket_count = std::uint64_t(1) << sub_bucket_magnitude;
    _sub_bucket_half = _sub_bucket_count / 2;
    if (_unit_magnitude + sub_bucket_magnitude > 62) {
        throw std::invalid_argument("hdr_histogram: lowest_discernible too large for the precision asked");
    }
    _sub_bucket_mask = (_sub_bucket_count - 1) << _unit_magnitude;

    // Buckets until the first value that does not fit is above highest_trackable.
    std::uint64_t smallest_untrackable = _sub_bucket_count << _unit_magnitude;
    _bucket_count = 1;
    while (smallest_untrackable <= highest_trackable) {
        if (smallest_untrackable > (UINT64_MAX >> 2)) {
            ++_bucket_count;
            break;
        }
        smallest_untrackable <<= 1;
        ++_bucket_count;
    }
    // Bucket 0 uses all its sub-buckets; every later bucket only its upper half (its lower half
    // is the previous bucket's range at half the resolution).
    _counts.assign(std::size_t(_bucket_count + 1) * _sub_bucket_half, 0);
}

unsigned hdr_histogram::bucket_index(std::uint64_t v) const noexcept {
    return unsigned(std::bit_width(v | _sub_bucket_mask)) - (_unit_magnitude + _sub_bucket_half_magnitude + 1);
}

std::size_t hdr_histogram::counts_index(std::uint64_t v) const noexcept {
    unsigned b = bucket_index(v);
    std::uint64_t sb = v >> (b + _unit_magnitude);
    return (std::size_t(b + 1) << _sub_bucket_half_magnitude) + std::size_t(sb - _sub_bucket_half);
}

std::uint64_t hdr_histogram::value_at_index(std::size_t i) const noexcept {
    std::int64_t b = std::int64_t(i >> _sub_bucket_half_magnitude) - 1;
    std::uint64_t sb = (i & (_sub_bucket_half - 1)) + _sub_bucket_half;
    if (b < 0) {
        sb -= _sub_bucket_half;
        b = 0;
    }
    return sb << (unsigned(b) + _unit_magnitude);
}

std::uint64_t hdr_histogram::slot_width(std::size_t i) const noexcept {
    std::int64_t b = std::max<std::int64_t>(std::int64_t(i >> _sub_bucket_half_magnitude) - 1, 0);
    return std::uint64_t(1) << (unsigned(b) + _unit_magnitude);
}

std::uint64_t hdr_histogram::lowest_equivalent(std::uint64_t v) const noexcept {
    return value_at_index(counts_index(std::min(v, _highest)));
}

std::uint64_t hdr_histogram::highest_equivalent(std::uint64_t v) const noexcept {
    std::size_t i = counts_index(std::min(v, _highest));
    return value_at_index(i) + slot_width(i) - 1;
}

void hdr_histogram::record(std::uint64_t v, std::uint64_t count) noexcept {
    if (count == 0) {
        return;
    }
    _min = std::min(_min, v);
    _max = std::max(_max, v);
    _sum += static_cast<long double>(v) * count;
    _total += count;
    if (v > _highest) {
        _saturated += count;
        v = _highest;
    }
    _counts[counts_index(v)] += count;
}

void hdr_histogram::merge(const hdr_histogram& other) {
    if (other._lowest != _lowest || other._highest != _highest || other._digits != _digits) {
        throw std::invalid_argument("hdr_histogram::merge: histograms of different ranges or precision");
    }
    for (std::size_t i = 0; i < _counts.size(); ++i) {
        _counts[i] += other._counts[i];
    }
    if (other._total) {
        _min = std::min(_min, other._min);
        _max = std::max(_max, other._max);
    }
    _total += other._total;
    _saturated += other._saturated;
    _sum += other._sum;
}

void hdr_histogram::reset() noexcept {
    std::fill(_counts.begin(), _counts.end(), 0);
    _total = 0;
    _saturated = 0;
    _min = UINT64_MAX;
    _max = 0;
    _sum = 0;
}

std::uint64_t hdr_histogram::value_at_percentile(double percentile) const noexcept {
    if (_total == 0) {
        return 0;
    }
    if (!(percentile < 100.0)) {  // also NaN
        return _max;
    }
    percentile = std::max(percentile, 0.0);
    // The rank of the value asked for, 1-based; the small epsilon keeps e.g. 99.9% of 1000 at 999
    // despite the binary rounding of 99.9.
    double want = std::ceil(percentile / 100.0 * double(_total) - 1e-9);
    std::uint64_t rank = std::max<std::uint64_t>(1, std::uint64_t(want));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < _counts.size(); ++i) {
        seen += _counts[i];
        if (seen >= rank) {
            return std::min(value_at_index(i) + slot_width(i) - 1, _max);
        }
    }
    return _max;
}

}  // namespace reef::loadgen
