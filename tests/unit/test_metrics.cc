#include "runtime/metrics.hh"

#include "runtime/scheduling.hh"
#include "runtime/smp.hh"
#include "tests/unit/reactor_test.hh"
#include "tests/unit/smp_test.hh"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace reef;
using namespace reef::metrics;

namespace {

const metric_family* find(const std::vector<metric_family>& fams, std::string_view name) {
    for (auto& f : fams) {
        if (f.name == name) {
            return &f;
        }
    }
    return nullptr;
}

std::string label(const sample& s, std::string_view name) {
    for (auto& [n, v] : s.lbls) {
        if (n == name) {
            return v;
        }
    }
    return "<none>";
}

}  // namespace

TEST(metrics_histogram, buckets_are_cumulative_and_inf_catches_the_rest) {
    histogram h({1, 2, 5});
    for (double v : {0.5, 1.0, 1.5, 4.0, 7.0, std::numeric_limits<double>::quiet_NaN()}) {
        h.observe(v);
    }
    auto v = h.value();
    ASSERT_EQ(v.buckets.size(), 3u);
    EXPECT_EQ(v.buckets[0], 2u);  // 0.5 and 1.0 (bounds are inclusive)
    EXPECT_EQ(v.buckets[1], 3u);
    EXPECT_EQ(v.buckets[2], 4u);
    EXPECT_EQ(v.count, 6u);
    EXPECT_EQ(v.sum, 14.0);  // NaN is counted, not summed
}

TEST(metrics_histogram, rejects_bad_bounds) {
    EXPECT_THROW(histogram({}), std::invalid_argument);
    EXPECT_THROW(histogram({1, 1}), std::invalid_argument);
    EXPECT_THROW(histogram({2, 1}), std::invalid_argument);
    EXPECT_THROW(histogram({1, std::numeric_limits<double>::infinity()}), std::invalid_argument);
    EXPECT_THROW(exponential_buckets(0, 2, 3), std::invalid_argument);
    EXPECT_THROW(exponential_buckets(1, 1, 3), std::invalid_argument);
    EXPECT_THROW(linear_buckets(0, 0, 3), std::invalid_argument);
    EXPECT_EQ(exponential_buckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
    EXPECT_EQ(linear_buckets(10, 5, 3), (std::vector<double>{10, 15, 20}));
}

REEF_TEST(metrics, values_follow_the_variables_they_read) {
    std::uint64_t hits = 0;
    double temp = 1.5;
    metric_groups mg;
    mg.add_group("t1", {
                           make_counter("hits_total", "Hits", hits),
                           make_gauge("temp", "Temperature", temp, {{"room", "a"}}),
                       });
    hits = 7;
    temp = -2.25;
    auto fams = collect_local("t1_");
    REEF_ASSERT(fams.size() == 2);
    auto* h = find(fams, "t1_hits_total");
    REEF_ASSERT(h && h->samples.size() == 1);
    EXPECT_EQ(h->type, metric_type::counter);
    EXPECT_EQ(h->samples[0].value.value, 7);
    EXPECT_EQ(label(h->samples[0], "shard"), "0");
    auto* t = find(fams, "t1_temp");
    REEF_ASSERT(t && t->samples.size() == 1);
    EXPECT_EQ(t->samples[0].value.value, -2.25);
    EXPECT_EQ(label(t->samples[0], "room"), "a");
    hits = 8;
    EXPECT_EQ(find(collect_local("t1_"), "t1_hits_total")->samples[0].value.value, 8);
    co_return;
}

REEF_TEST(metrics, destroying_the_registration_unregisters) {
    {
        metric_groups mg;
        mg.add_group("t2", {make_gauge("g", "G", [] { return 1.0; })});
        EXPECT_EQ(collect_local("t2_").size(), 1u);
        metric_groups moved = std::move(mg);
        EXPECT_EQ(moved.size(), 1u);
        EXPECT_EQ(collect_local("t2_").size(), 1u);
    }
    EXPECT_TRUE(collect_local("t2_").empty());
    // The name is free again, with another type even.
    metric_groups again;
    again.add_group("t2", {make_counter("g", "other", [] { return 2.0; })});
    EXPECT_EQ(collect_local("t2_")[0].type, metric_type::counter);
    co_return;
}

REEF_TEST(metrics, bad_registrations_are_refused_whole) {
    metric_groups mg;
    mg.add_group("t3", {make_gauge("a", "A", [] { return 1.0; }, {{"k", "1"}})});
    metric_groups other;
    // Same name and labels: refused; the valid definition before it is not registered either.
    EXPECT_THROW(other.add_group("t3", {make_gauge("b", "B", [] { return 1.0; }),
                                        make_gauge("a", "A", [] { return 1.0; }, {{"k", "1"}})}),
                 std::invalid_argument);
    EXPECT_EQ(other.size(), 0u);
    EXPECT_EQ(collect_local("t3_").size(), 1u);
    // Same name, other labels: fine.
    other.add_group("t3", {make_gauge("a", "A", [] { return 2.0; }, {{"k", "2"}})});
    EXPECT_EQ(collect_local("t3_a")[0].samples.size(), 2u);
    // Same name, another type or help: refused.
    EXPECT_THROW(other.add_group("t3", {make_counter("a", "A", [] { return 1.0; }, {{"k", "3"}})}),
                 std::invalid_argument);
    EXPECT_THROW(other.add_group("t3", {make_gauge("a", "other help", [] { return 1.0; }, {{"k", "3"}})}),
                 std::invalid_argument);
    // Names.
    EXPECT_THROW(other.add_group("t3", {make_gauge("bad-name", "x", [] { return 1.0; })}), std::invalid_argument);
    EXPECT_THROW(other.add_group("3t", {make_gauge("x", "x", [] { return 1.0; })}), std::invalid_argument);
    EXPECT_THROW(other.add_group("t3", {make_gauge("c", "x", [] { return 1.0; }, {{"shard", "1"}})}),
                 std::invalid_argument);
    EXPECT_THROW(other.add_group("t3", {make_gauge("c", "x", [] { return 1.0; }, {{"__x", "1"}})}),
                 std::invalid_argument);
    EXPECT_THROW(other.add_group("t3", {make_gauge("c", "x", [] { return 1.0; }, {{"a b", "1"}})}),
                 std::invalid_argument);
    EXPECT_THROW(other.add_group("t3", {make_gauge("c", "x", [] { return 1.0; }, {{"k", "1"}, {"k", "2"}})}),
                 std::invalid_argument);
    histogram h({1});
    EXPECT_THROW(other.add_group("t3", {make_histogram("h", "x", h, {{"le", "1"}})}), std::invalid_argument);
    EXPECT_EQ(other.size(), 1u);
    co_return;
}

REEF_TEST(metrics, prefix_filter_and_dynamic_label_sets) {
    int n = 1;
    metric_groups mg;
    mg.add_group(
        "t4", {
                  make_dynamic(
                      "conns", "Connections by state", metric_type::gauge,
                      [&n] {
                          std::vector<std::pair<labels, metric_value>> out;
                          for (int i = 0; i < n; ++i) {
                              out.emplace_back(labels{{"state", "s" + std::to_string(i)}}, metric_value{double(i), {}});
                          }
                          return out;
                      }),
              });
    mg.add_group("t4x", {make_gauge("other", "O", [] { return 0.0; })});
    EXPECT_EQ(collect_local("t4_").size(), 1u);
    EXPECT_EQ(collect_local("t4").size(), 2u);
    EXPECT_EQ(collect_local("t4_conns")[0].samples.size(), 1u);
    n = 3;
    auto fams = collect_local("t4_conns");
    REEF_ASSERT(fams[0].samples.size() == 3);
    EXPECT_EQ(label(fams[0].samples[2], "state"), "s2");
    EXPECT_EQ(fams[0].samples[2].value.value, 2);
    co_return;
}

REEF_TEST(metrics, prometheus_text) {
    histogram h({0.5, 1});
    h.observe(0.25);
    h.observe(0.75);
    h.observe(3);
    metric_groups mg;
    mg.add_group("t5", {
                           make_counter("requests_total", "Requests \\ served\nper shard", [] { return 42.0; },
                                        {{"path", "a\"b\\c\nd"}}),
                           make_gauge("ratio", "A ratio", [] { return 0.125; }),
                           make_histogram("latency_seconds", "Latency", h),
                       });
    auto text = to_prometheus(collect_local("t5_"));
    EXPECT_EQ(text,
              "# HELP t5_latency_seconds Latency\n"
              "# TYPE t5_latency_seconds histogram\n"
              "t5_latency_seconds_bucket{shard=\"0\",le=\"0.5\"} 1\n"
              "t5_latency_seconds_bucket{shard=\"0\",le=\"1\"} 2\n"
              "t5_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 3\n"
              "t5_latency_seconds_sum{shard=\"0\"} 4\n"
              "t5_latency_seconds_count{shard=\"0\"} 3\n"
              "# HELP t5_ratio A ratio\n"
              "# TYPE t5_ratio gauge\n"
              "t5_ratio{shard=\"0\"} 0.125\n"
              "# HELP t5_requests_total Requests \\\\ served\\nper shard\n"
              "# TYPE t5_requests_total counter\n"
              "t5_requests_total{path=\"a\\\"b\\\\c\\nd\",shard=\"0\"} 42\n");
    co_return;
}

namespace {
// One registration per shard for the cross-shard test (each shard counts its own shard id + 1).
thread_local std::unique_ptr<metric_groups> per_shard_metrics;
thread_local std::uint64_t per_shard_count = 0;
}  // namespace

REEF_SMP_TEST(metrics_smp, collect_merges_every_shard, 2) {
    co_await smp::invoke_on_all([] {
        per_shard_count = this_shard_id() + 1;
        per_shard_metrics = std::make_unique<metric_groups>();
        per_shard_metrics->add_group("t6", {make_counter("events_total", "Events", per_shard_count)});
    });
    auto fams = co_await collect("t6_");
    REEF_ASSERT(fams.size() == 1);
    REEF_ASSERT(fams[0].samples.size() == 2);
    for (unsigned s = 0; s < 2; ++s) {
        EXPECT_EQ(label(fams[0].samples[s], "shard"), std::to_string(s));
        EXPECT_EQ(fams[0].samples[s].value.value, s + 1);
    }
    // Values follow events on their own shard.
    co_await smp::submit_to(1, [] { per_shard_count = 100; });
    fams = co_await collect("t6_");
    EXPECT_EQ(fams[0].samples[1].value.value, 100);
    co_await smp::invoke_on_all([] { per_shard_metrics.reset(); });
    fams = co_await collect("t6_");
    EXPECT_TRUE(fams.empty());
}

REEF_SMP_TEST(metrics_smp, runtime_metrics_are_registered_on_every_shard, 2) {
    co_await register_runtime_metrics();
    co_await register_runtime_metrics();  // a second call does nothing (no duplicate error)
    auto sg = co_await create_scheduling_group("metrics_test_group", 250);
    // Some cross-shard traffic, so the smp counters move.
    for (int i = 0; i < 10; ++i) {
        co_await smp::submit_to(1, [] {});
    }
    auto fams = co_await collect("reef_");
    auto* tasks = find(fams, "reef_reactor_tasks_processed_total");
    REEF_ASSERT(tasks && tasks->samples.size() == 2);
    EXPECT_GT(tasks->samples[0].value.value, 0);
    // Samples are ordered by their labels, then by shard: {to="0"} (shard 1) before {to="1"}.
    auto* sent = find(fams, "reef_smp_messages_sent_total");
    REEF_ASSERT(sent && sent->samples.size() == 2);
    EXPECT_EQ(label(sent->samples[1], "to"), "1");
    EXPECT_EQ(label(sent->samples[1], "shard"), "0");
    EXPECT_GE(sent->samples[1].value.value, 10);
    auto* recv = find(fams, "reef_smp_messages_received_total");
    REEF_ASSERT(recv && recv->samples.size() == 2);
    EXPECT_EQ(label(recv->samples[0], "from"), "0");
    EXPECT_EQ(label(recv->samples[0], "shard"), "1");
    EXPECT_GE(recv->samples[0].value.value, 10);
    auto* shares = find(fams, "reef_scheduler_shares");
    REEF_ASSERT(shares);
    bool found = false;
    for (auto& s : shares->samples) {
        if (label(s, "group") == "metrics_test_group") {
            EXPECT_EQ(s.value.value, 250);
            found = true;
        }
    }
    EXPECT_TRUE(found);
    EXPECT_TRUE(find(fams, "reef_memory_allocated_bytes"));
    EXPECT_TRUE(find(fams, "reef_reactor_uptime_seconds"));
    // The formatter takes everything the runtime registers.
    auto text = to_prometheus(fams);
    EXPECT_NE(text.find("reef_scheduler_shares{group=\"metrics_test_group\",shard=\"1\"} 250\n"), std::string::npos);
    co_await destroy_scheduling_group(sg);
}
