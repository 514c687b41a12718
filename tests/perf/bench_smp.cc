// Cross-shard messaging: submit_to round trips (shard 0 -> 1 -> 0) and one-way message throughput
// with many requests in flight. Both shards busy-poll (idle policy poll), as a loaded server's do.
// Prints a JSON object (one line) and a readable summary; tests/perf/run_smp.sh stores it.
#include "runtime/coroutine.hh"
#include "runtime/smp.hh"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

using namespace reef;
using clk = std::chrono::steady_clock;

namespace {

struct results {
    double rtt_median_ns = 0;
    double rtt_p99_ns = 0;
    double rtt_p999_ns = 0;
    double msgs_per_sec = 0;
    double ns_per_msg = 0;
};

future<results> measure(int rtt_samples, int throughput_msgs, int inflight) {
    results r;
    // Warm up both directions and the allocator.
    for (int i = 0; i < 10000; ++i) {
        co_await smp::submit_to(1, [] {});
    }
    std::vector<double> lat;
    lat.reserve(rtt_samples);
    for (int i = 0; i < rtt_samples; ++i) {
        auto t0 = clk::now();
        co_await smp::submit_to(1, [] {});
        lat.push_back(std::chrono::duration<double, std::nano>(clk::now() - t0).count());
    }
    std::sort(lat.begin(), lat.end());
    r.rtt_median_ns = lat[lat.size() / 2];
    r.rtt_p99_ns = lat[lat.size() * 99 / 100];
    r.rtt_p999_ns = lat[lat.size() * 999 / 1000];

    // Throughput: keep `inflight` requests outstanding; count completed messages per second.
    std::vector<future<>> window;
    window.reserve(inflight);
    auto t0 = clk::now();
    int sent = 0;
    while (sent < throughput_msgs) {
        window.clear();
        for (int i = 0; i < inflight && sent < throughput_msgs; ++i, ++sent) {
            window.push_back(smp::submit_to(1, [] {}));
        }
        for (auto& f : window) {
            co_await std::move(f);
        }
    }
    double secs = std::chrono::duration<double>(clk::now() - t0).count();
    r.msgs_per_sec = throughput_msgs / secs;
    r.ns_per_msg = secs * 1e9 / throughput_msgs;
    co_return r;
}

}  // namespace

int main(int argc, char** argv) {
    int rtt_samples = argc > 1 ? std::atoi(argv[1]) : 200000;
    int msgs = argc > 2 ? std::atoi(argv[2]) : 5000000;
    int inflight = argc > 3 ? std::atoi(argv[3]) : 1000;
    smp_options o;
    o.smp = 2;
    reactor_config cfg;
    cfg.idle = idle_policy::poll;
    results r;
    int code = smp::run(o, cfg, [&]() -> future<int> {
        r = co_await measure(rtt_samples, msgs, inflight);
        co_return 0;
    });
    fmt::print("{{\"rtt_median_ns\": {:.0f}, \"rtt_p99_ns\": {:.0f}, \"rtt_p999_ns\": {:.0f}, "
               "\"msgs_per_sec\": {:.0f}, \"ns_per_msg\": {:.1f}, \"rtt_samples\": {}, \"msgs\": {}, "
               "\"inflight\": {}}}\n",
               r.rtt_median_ns, r.rtt_p99_ns, r.rtt_p999_ns, r.msgs_per_sec, r.ns_per_msg, rtt_samples, msgs,
               inflight);
    return code;
}
