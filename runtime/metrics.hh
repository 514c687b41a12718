// Metrics: counters, gauges and histograms registered per shard, collected across shards on
// demand, and formatted as Prometheus text.
//
//     class cache {
//         std::uint64_t _hits = 0;
//         metrics::histogram _latency{metrics::exponential_buckets(1e-6, 2, 20)};
//         metrics::metric_groups _metrics;
//     public:
//         cache() {
//             _metrics.add_group("cache", {
//                 metrics::make_counter("hits_total", "Lookups that found the key", _hits),
//                 metrics::make_gauge("items", "Items stored", [this] { return double(size()); },
//                                     {{"kind", "lru"}}),
//                 metrics::make_histogram("latency_seconds", "Lookup latency", _latency),
//             });
//         }
//     };
//
// A metric is a name ("cache_hits_total": group + "_" + name), a type, a help text, labels and a
// function that reads its value. Nothing is copied or counted by the registry on the hot path:
// the code that owns the value keeps updating its own variable, and the registry reads it only
// when someone collects. Every sample carries a "shard" label added by the registry.
//
// Contract:
//  - Single-shard registration: a metric_groups object registers its metrics on the shard that
//    calls add_group(), and must be destroyed (or clear()ed) on that shard; destruction
//    unregisters them. The read functions run on that shard, during collection, so they may read
//    the owner's state without synchronisation; they must not block or throw (a throwing reader
//    makes collection fail with its exception).
//  - Names follow Prometheus: [a-zA-Z_:][a-zA-Z0-9_:]*; label names [a-zA-Z_][a-zA-Z0-9_]*, not
//    "shard" (reserved) nor "__"-prefixed, and for histograms not "le". A bad name, a name
//    registered twice with the same labels on one shard, or a name registered with another type
//    or help text than an existing one on the same shard throws std::invalid_argument naming it;
//    add_group() then registers nothing of that group.
//  - Collection: collect_local() on the calling shard; collect() on every shard through
//    smp::submit_to (no locks), merged into families sorted by name, samples sorted by labels.
#pragma once

#include "runtime/future.hh"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace reef::metrics {

enum class metric_type { counter, gauge, histogram };

/// "counter", "gauge", "histogram".
std::string_view to_string(metric_type t) noexcept;

/// Label name/value pairs. The registry keeps them sorted by name.
using labels = std::vector<std::pair<std::string, std::string>>;

/// A histogram's state at collection: `bounds` are the buckets' upper bounds (ascending, the
/// +Inf bucket implied), `buckets[i]` counts observations <= bounds[i] (cumulative, as Prometheus
/// wants), `count` all observations (the +Inf bucket), `sum` their sum.
struct histogram_value {
    std::vector<double> bounds;
    std::vector<std::uint64_t> buckets;
    std::uint64_t count = 0;
    double sum = 0;
};

/// A histogram with fixed buckets, updated by its owner on its shard (no atomics).
class histogram {
    std::vector<double> _bounds;
    std::vector<std::uint64_t> _counts;  // per bucket, not cumulative; last one is +Inf
    double _sum = 0;

public:
    /// `upper_bounds` must be finite, strictly ascending and non-empty (std::invalid_argument).
    explicit histogram(std::vector<double> upper_bounds);
    /// Count `v` in the first bucket whose bound is >= v (the +Inf bucket if none) and add it to
    /// the sum. NaN is counted in the +Inf bucket and left out of the sum.
    void observe(double v) noexcept;
    /// The cumulative view (see histogram_value).
    histogram_value value() const;
    const std::vector<double>& bounds() const noexcept { return _bounds; }
};

/// `count` bounds: start, start*factor, ... (start > 0, factor > 1; else std::invalid_argument).
std::vector<double> exponential_buckets(double start, double factor, unsigned count);
/// `count` bounds: start, start+width, ... (width > 0; else std::invalid_argument).
std::vector<double> linear_buckets(double start, double width, unsigned count);

/// What a reader returns: a number, or (for histograms) a histogram_value.
struct metric_value {
    double value = 0;
    std::optional<histogram_value> hist;
};

/// One metric to register: see the make_* functions. `read` gives one sample with `extra_labels`;
/// `read_many` (make_dynamic) gives any number of samples, each with labels of its own, for sets
/// that change at run time (scheduling groups, connections by state).
struct metric_definition {
    std::string name;
    std::string help;
    metric_type type = metric_type::gauge;
    labels extra_labels;
    std::function<metric_value()> read;
    std::function<std::vector<std::pair<labels, metric_value>>()> read_many;
};

/// A counter read from `fn` (a monotonic count; Prometheus names end in "_total").
metric_definition make_counter(std::string name, std::string help, std::function<double()> fn, labels l = {});
/// A counter read from the arithmetic variable `var`, which must outlive the registration.
template <typename T>
    requires std::is_arithmetic_v<T>
metric_definition make_counter(std::string name, std::string help, const T& var, labels l = {}) {
    std::function<double()> read = [p = &var] { return double(*p); };
    return make_counter(std::move(name), std::move(help), std::move(read), std::move(l));
}
template <typename T>
    requires std::is_arithmetic_v<T>
metric_definition make_counter(std::string, std::string, const T&&, labels = {}) = delete;
/// A gauge read from `fn`.
metric_definition make_gauge(std::string name, std::string help, std::function<double()> fn, labels l = {});
/// A gauge read from the arithmetic variable `var`, which must outlive the registration.
template <typename T>
    requires std::is_arithmetic_v<T>
metric_definition make_gauge(std::string name, std::string help, const T& var, labels l = {}) {
    std::function<double()> read = [p = &var] { return double(*p); };
    return make_gauge(std::move(name), std::move(help), std::move(read), std::move(l));
}
template <typename T>
    requires std::is_arithmetic_v<T>
metric_definition make_gauge(std::string, std::string, const T&&, labels = {}) = delete;
/// A histogram read from `h`, which must outlive the registration.
metric_definition make_histogram(std::string name, std::string help, const histogram& h, labels l = {});
/// A histogram read from `fn`.
metric_definition make_histogram(std::string name, std::string help, std::function<histogram_value()> fn,
                                 labels l = {});
/// A metric whose label sets are produced at collection. Each returned label set must be valid
/// (as above) and distinct; an invalid one makes collection fail with std::invalid_argument.
metric_definition make_dynamic(std::string name, std::string help, metric_type type,
                               std::function<std::vector<std::pair<labels, metric_value>>()> fn);

/// Keeps metrics registered on the shard that added them; destroying it unregisters them.
/// Move-only; must be destroyed on the shard where add_group() was called.
class metric_groups {
    std::vector<std::uint64_t> _ids;
    int _shard = -1;

public:
    metric_groups() noexcept = default;
    metric_groups(metric_groups&& o) noexcept;
    metric_groups& operator=(metric_groups&& o) noexcept;
    metric_groups(const metric_groups&) = delete;
    metric_groups& operator=(const metric_groups&) = delete;
    ~metric_groups() { clear(); }

    /// Register `defs` on this shard, each named `group` + "_" + its name (just its name when
    /// `group` is empty). All or nothing: on std::invalid_argument (see the contract above)
    /// nothing of this call is registered. Every call must be made on the same shard.
    metric_groups& add_group(std::string_view group, std::vector<metric_definition> defs);
    /// Unregister everything this object registered.
    void clear() noexcept;
    std::size_t size() const noexcept { return _ids.size(); }
};

/// One sample: labels (including "shard") and its value.
struct sample {
    labels lbls;
    metric_value value;
};

/// All samples of one metric name.
struct metric_family {
    std::string name;
    std::string help;
    metric_type type = metric_type::gauge;
    std::vector<sample> samples;
};

/// This shard's metrics whose name starts with `prefix` (all for ""), sorted by name; each sample
/// has the "shard" label. Runs the readers on this shard; a reader's exception propagates.
std::vector<metric_family> collect_local(std::string_view prefix = {});
/// Every shard's metrics starting with `prefix`, collected on each shard with smp::submit_to and
/// merged (families by name, samples by labels). Call from any shard of a running smp. When two
/// shards disagree on a family's type, the first shard's wins and the others' samples of that
/// name are dropped.
future<std::vector<metric_family>> collect(std::string prefix = {});

/// Prometheus text exposition format (version 0.0.4): HELP and TYPE lines, label values escaped,
/// histograms as _bucket{le=...} (cumulative, +Inf last), _sum and _count.
std::string to_prometheus(const std::vector<metric_family>& families);

/// Register the runtime's own metrics on every shard (reactor, scheduling groups, smp queues,
/// memory) and unregister them in an at_exit hook of each shard. Call once from shard 0 of a
/// running smp (the dataplane bootstrap does); a second call does nothing.
/// Names: reef_reactor_*, reef_scheduler_*, reef_smp_*, reef_memory_*.
future<> register_runtime_metrics();

}  // namespace reef::metrics
