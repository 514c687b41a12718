// reef-loadgen: a TCP/UDP load generator on Reef. Every shard opens --connections connections to
// --server and keeps --pipeline requests in flight on each, built and checked by a pluggable
// request generator (--generator, "echo" by default). After --warmup seconds it measures for
// --duration seconds (or until --requests requests were sent), then prints the throughput, the
// errors and the latency percentiles, merged over all shards: a human summary, or with --json one
// JSON line on stdout (see docs/echo-loadgen.md for the fields).
//
// Exit code: 0 when every measured request was answered correctly and no connection failed;
// 1 otherwise (the messages are printed on stderr, and the figures still on stdout); 2 for bad
// options.
#include "apps/loadgen/loadgen.hh"
#include "apps/loadgen/request_generator.hh"
#include "dataplane/app.hh"
#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/reactor.hh"
#include "runtime/sharded.hh"
#include "runtime/smp.hh"
#include "stack/net/stack_options.hh"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

using namespace reef;
using namespace reef::loadgen;

namespace {

logger mlog("reef-loadgen");

struct cli_values {
    std::string server;
    std::string protocol = "tcp";
    unsigned connections = 8;
    std::size_t request_size = 64;
    unsigned pipeline = 1;
    double duration_s = 10;
    std::uint64_t requests = 0;
    double warmup_s = 0;
    double timeout_s = 2;
    std::string generator = "echo";
    bool tls = false;
    std::string tls_ca;
    std::string tls_server_name;
    bool json = false;
};

struct summary {
    load_stats stats;
    double duration_s = 0;
    unsigned shards = 0;
};

double us(std::uint64_t ns) { return double(ns) / 1000.0; }

nlohmann::json to_json(const summary& s, const load_config& cfg) {
    const auto& h = s.stats.latency_ns;
    double d = s.duration_s;
    nlohmann::json j;
    j["requests"] = s.stats.requests;
    j["duration_s"] = d;
    j["rps"] = d > 0 ? double(s.stats.requests) / d : 0.0;
    j["bytes_per_s"] = d > 0 ? double(s.stats.bytes_sent + s.stats.bytes_received) / d : 0.0;
    j["bytes_sent"] = s.stats.bytes_sent;
    j["bytes_received"] = s.stats.bytes_received;
    j["errors"] = s.stats.errors();
    j["mismatches"] = s.stats.mismatches;
    j["timeouts"] = s.stats.timeouts;
    j["connection_errors"] = s.stats.connection_errors;
    auto msgs = nlohmann::json::array();
    for (auto& [m, n] : s.stats.error_messages) {
        msgs.push_back({{"message", m}, {"count", n}});
    }
    j["error_messages"] = msgs;
    j["latency_us"] = {
        {"min", us(h.min())},
        {"mean", h.mean() / 1000.0},
        {"p50", us(h.value_at_percentile(50))},
        {"p90", us(h.value_at_percentile(90))},
        {"p99", us(h.value_at_percentile(99))},
        {"p999", us(h.value_at_percentile(99.9))},
        {"max", us(h.max())},
    };
    j["shards"] = s.shards;
    j["connections"] = std::uint64_t(cfg.connections) * s.shards;
    j["connections_per_shard"] = cfg.connections;
    j["connections_up"] = s.stats.connections_up;
    j["pipeline"] = cfg.pipeline;
    j["request_size"] = cfg.request_size;
    j["protocol"] = cfg.proto == protocol::tcp ? "tcp" : "udp";
    j["tls"] = cfg.tls;
    j["generator"] = cfg.generator;
    j["server"] = cfg.server.to_string();
    j["warmup_s"] = cfg.warmup_s;
    return j;
}

void print_human(const summary& s, const load_config& cfg) {
    const auto& st = s.stats;
    const auto& h = st.latency_ns;
    double d = s.duration_s;
    fmt::print("reef-loadgen: {} over {}{} to {}: {} shard(s) x {} connection(s), pipeline {}, {}-byte requests\n",
               cfg.generator, cfg.proto == protocol::tcp ? "tcp" : "udp", cfg.tls ? "+tls" : "", cfg.server, s.shards,
               cfg.connections, cfg.pipeline, cfg.request_size);
    fmt::print("  measured     {:.3f} s (after {:g} s warmup)\n", d, cfg.warmup_s);
    fmt::print("  requests     {} ({:.1f}/s)\n", st.requests, d > 0 ? double(st.requests) / d : 0.0);
    fmt::print("  bytes        {:.2f} MB/s ({} sent, {} received)\n",
               d > 0 ? double(st.bytes_sent + st.bytes_received) / d / 1e6 : 0.0, st.bytes_sent, st.bytes_received);
    fmt::print("  errors       {} (mismatches {}, timeouts {}, connection errors {}; {} of {} connections up)\n",
               st.errors(), st.mismatches, st.timeouts, st.connection_errors, st.connections_up, st.connections);
    fmt::print(
        "  latency us   p50 {:.1f}  p90 {:.1f}  p99 {:.1f}  p99.9 {:.1f}  max {:.1f}  (min {:.1f}, mean {:.1f})\n",
        us(h.value_at_percentile(50)), us(h.value_at_percentile(90)), us(h.value_at_percentile(99)),
        us(h.value_at_percentile(99.9)), us(h.max()), us(h.min()), h.mean() / 1000.0);
}

// Turns the checked command line into the engine's configuration; throws std::invalid_argument
// for combinations CLI11 cannot check alone.
load_config make_config(const cli_values& v, const generator_factory& g) {
    load_config cfg;
    cfg.server_text = v.server;
    cfg.proto = v.protocol == "udp" ? protocol::udp : protocol::tcp;
    cfg.connections = v.connections;
    cfg.request_size = v.request_size;
    cfg.pipeline = v.pipeline;
    cfg.duration_s = v.duration_s;
    cfg.requests = v.requests;
    cfg.warmup_s = v.warmup_s;
    cfg.timeout_s = v.timeout_s;
    cfg.generator = v.generator;
    cfg.tls = v.tls;
    cfg.tls_ca = v.tls_ca;
    cfg.tls_server_name = v.tls_server_name;
    if (cfg.proto == protocol::udp) {
        if (!g.supports_udp) {
            throw std::invalid_argument("--generator " + g.name + " does not support --protocol udp");
        }
        if (cfg.tls) {
            throw std::invalid_argument("--tls works with --protocol tcp only");
        }
        if (cfg.request_size < g.min_request_size_udp) {
            throw std::invalid_argument(fmt::format("--request-size: the {} generator needs at least {} bytes over UDP",
                                                    g.name, g.min_request_size_udp));
        }
        if (cfg.request_size > 65507) {
            throw std::invalid_argument("--request-size: at most 65507 bytes over UDP");
        }
    } else if (cfg.request_size < g.min_request_size_tcp) {
        throw std::invalid_argument(
            fmt::format("--request-size: the {} generator needs at least {} bytes", g.name, g.min_request_size_tcp));
    }
    return cfg;
}

future<> stop_on_exit(sharded<load_client>& clients, bool& clients_running, promise<>& finished) {
    if (clients_running) {
        co_await clients.invoke_on_all([](load_client& c) { return c.stop(); });
    }
    co_await finished.get_future();
}

// The run on shard 0. `finished` tells the SIGINT/SIGTERM hook that the run is over.
future<int> run(const cli_values& v, sharded<load_client>& clients, bool& clients_running, promise<>& finished) {
    int code = 0;
    std::exception_ptr failure;
    try {
        const generator_factory* g = find_generator(v.generator);
        load_config cfg;
        try {
            cfg = make_config(v, *g);
            // Calls whose arguments are temporaries with destructors are named before co_await
            // (the GCC 12 bug described in runtime/coroutine.hh).
            auto resolved = resolve_server(v.server);
            cfg.server = co_await std::move(resolved);
        } catch (const std::invalid_argument& e) {
            std::fprintf(stderr, "reef-loadgen: %s\n", e.what());
            finished.set_value();
            co_return 2;
        }
        // reef::app started the network stack (posix, or native over a DPDK port) before this runs.
        // SIGINT/SIGTERM: stop sending; the run collects the answers still due, prints what it
        // measured, and the hook returns once it has. Registered after the stack's own hook, so it
        // runs before the stack is destroyed (hooks run last registered first).
        engine().at_exit(
            [&clients, &clients_running, &finished] { return stop_on_exit(clients, clients_running, finished); });
        co_await clients.start(cfg);
        clients_running = true;

        co_await clients.invoke_on_all([](load_client& c) { return c.connect(); });
        // Said on stderr so that a harness can time its own window from here (the warmup starts
        // now; connecting may have waited for the server).
        mlog.info("connections set up; warming up for {:g} s", v.warmup_s);
        auto start = steady_clock_type::now();
        auto measure_start =
            start + std::chrono::duration_cast<steady_clock_type::duration>(std::chrono::duration<double>(v.warmup_s));
        std::optional<steady_clock_type::time_point> measure_end;
        if (v.requests == 0) {
            measure_end = measure_start + std::chrono::duration_cast<steady_clock_type::duration>(
                                              std::chrono::duration<double>(v.duration_s));
        }
        auto ran = clients.invoke_on_all(
            [measure_start, measure_end](load_client& c) { return c.run(measure_start, measure_end); });
        co_await std::move(ran);

        summary s;
        s.shards = smp::count;
        auto merged = clients.map_reduce0([](load_client& c) { return c.stats(); }, load_stats(),
                                          [](load_stats acc, load_stats x) {
                                              acc.merge(x);
                                              return acc;
                                          });
        s.stats = co_await std::move(merged);
        clients_running = false;
        co_await clients.stop();
        if (s.stats.window_end && *s.stats.window_end > measure_start) {
            s.duration_s = std::chrono::duration<double>(*s.stats.window_end - measure_start).count();
        }

        if (v.json) {
            fmt::print("{}\n", to_json(s, cfg).dump());
        } else {
            print_human(s, cfg);
        }
        std::fflush(stdout);
        for (auto& [m, n] : s.stats.error_messages) {
            std::fprintf(stderr, "reef-loadgen: error: %s%s\n", m.c_str(),
                         n > 1 ? fmt::format(" ({} times)", n).c_str() : "");
        }
        if (s.stats.timeouts) {
            std::fprintf(stderr, "reef-loadgen: error: %llu request(s) had no answer within %g s\n",
                         static_cast<unsigned long long>(s.stats.timeouts), cfg.timeout_s);
        }
        if (s.stats.mismatches) {
            std::fprintf(stderr, "reef-loadgen: error: %llu wrong answer(s)\n",
                         static_cast<unsigned long long>(s.stats.mismatches));
        }
        if (s.stats.errors() || s.stats.requests == 0) {
            if (s.stats.requests == 0) {
                std::fprintf(stderr, "reef-loadgen: error: no request was answered\n");
            }
            code = 1;
        }
    } catch (...) {
        failure = std::current_exception();
    }
    if (failure) {
        mlog.error("{}", exception_message(failure));
        code = 1;
        if (clients_running) {
            clients_running = false;
            co_await clients.stop();
        }
    }
    finished.set_value();
    co_return code;
}

}  // namespace

int main(int argc, char** argv) {
    register_builtin_generators();
    app app("reef-loadgen",
            "Reef load generator: connections on every shard send requests to --server and check the "
            "answers; prints throughput, errors and latency percentiles.");
    cli_values v;
    auto& o = app.options();
    o.add_option("--server", v.server, "Server to load, ADDRESS:PORT (e.g. 127.0.0.1:7, [::1]:7, localhost:7)")
        ->required();
    o.add_option("--protocol", v.protocol, "tcp or udp")->check(CLI::IsMember({"tcp", "udp"}))->capture_default_str();
    o.add_option("--connections", v.connections, "Connections per shard (UDP: channels per shard)")
        ->check(CLI::Range(1u, 100000u))
        ->capture_default_str();
    o.add_option("--request-size", v.request_size, "Bytes per request")
        ->check(CLI::Range(std::size_t(1), std::size_t(16) << 20))
        ->capture_default_str();
    o.add_option("--pipeline", v.pipeline, "Requests in flight per connection")
        ->check(CLI::Range(1u, 65536u))
        ->capture_default_str();
    auto* duration = o.add_option("--duration", v.duration_s, "Seconds to measure (after the warmup)")
                         ->check(CLI::Range(0.001, 1e7))
                         ->capture_default_str();
    o.add_option("--requests", v.requests, "Measure this many requests in total over all shards instead of a duration")
        ->check(CLI::Range(std::uint64_t(1), std::uint64_t(1) << 62))
        ->excludes(duration);
    o.add_option("--warmup", v.warmup_s, "Seconds of load before measuring")
        ->check(CLI::Range(0.0, 1e6))
        ->capture_default_str();
    o.add_option("--timeout", v.timeout_s,
                 "Seconds to wait for a connection or an answer: a UDP request not answered in time is lost, a TCP "
                 "connection fails")
        ->check(CLI::Range(0.001, 1e6))
        ->capture_default_str();
    auto names = generator_names();
    std::string gen_help = "Request generator:";
    for (auto& n : names) {
        gen_help += " " + n + " (" + find_generator(n)->description + ")";
    }
    o.add_option("--generator", v.generator, gen_help)->check(CLI::IsMember(names))->capture_default_str();
    for (auto& n : names) {
        if (auto& reg = find_generator(n)->register_options) {
            reg(o);
        }
    }
    auto* tls = o.add_flag("--tls", v.tls, "Connect with TLS (TCP only)");
    o.add_option("--tls-ca", v.tls_ca,
                 "PEM file of CAs trusted to sign the server's certificate (default: the "
                 "system's CA store)")
        ->needs(tls)
        ->check(CLI::ExistingFile);
    o.add_option("--tls-server-name", v.tls_server_name,
                 "Name sent as SNI and checked against the server's certificate (default: the host of --server)")
        ->needs(tls);
    o.add_flag("--json", v.json, "Print the results as one JSON line");

    sharded<load_client> clients;
    bool clients_running = false;
    promise<> finished;
    int code = app.run(argc, argv, [&]() -> future<int> { return run(v, clients, clients_running, finished); });
    return code;
}
