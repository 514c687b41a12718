// reef-rpc-bench: round trips per second of stack/rpc.
//
//   reef-rpc-bench --mode server --address 127.0.0.1 --port 7100 [--no-compress]
//       An RPC server on every shard with one verb, echo (the payload comes back). Prints
//       "reef-rpc-bench listening on <address>" when ready; stops on SIGINT/SIGTERM.
//   reef-rpc-bench --mode client --server 127.0.0.1:7100 --payload 64 --concurrency 32 --duration 5
//       On every shard, --connections connections each with --concurrency calls in flight, for
//       --duration seconds after a one-second warm-up; then prints one JSON line: calls, calls/s,
//       mean latency, payload, whether LZ4 was agreed, and bytes on the wire per call.
//
// The payload is text-like (words of a small vocabulary), so LZ4 has something to work with, as
// it would on real RPC arguments; --no-compress on either side turns compression off.
#include "dataplane/app.hh"
#include "runtime/coroutine.hh"
#include "runtime/future_util.hh"
#include "runtime/log.hh"
#include "runtime/smp.hh"
#include "stack/rpc/rpc.hh"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;

namespace {

logger blog("rpc-bench");

constexpr rpc::verb_id verb_echo = 1;

struct cli_values {
    std::string mode = "server";
    std::string address = "127.0.0.1";
    unsigned port = 7100;
    std::string server = "127.0.0.1:7100";
    unsigned payload = 64;
    unsigned concurrency = 32;
    unsigned connections = 1;
    double duration = 5;
    bool no_compress = false;
};

thread_local std::unique_ptr<rpc::server> shard_server;

rpc::connection_options conn_options(const cli_values& v) {
    rpc::connection_options o;
    if (v.no_compress) {
        o.features &= ~rpc::feature::lz4;
    }
    return o;
}

future<> stop_servers(bool& running, promise<>& stopped) {
    if (running) {
        running = false;
        co_await smp::invoke_on_all([]() -> future<> {
            if (shard_server) {
                co_await shard_server->stop();
                shard_server.reset();
            }
        });
    }
    stopped.set_value();
}

future<int> run_server(const cli_values& v) {
    net::socket_address sa;
    try {
        sa = net::socket_address(net::inet_address::parse(v.address), std::uint16_t(v.port));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "reef-rpc-bench: --address: %s\n", e.what());
        co_return 2;
    }
    bool running = true;
    promise<> stopped;
    auto stopped_future = stopped.get_future();
    engine().at_exit([&] { return stop_servers(running, stopped); });
    rpc::server_options so;
    static_cast<rpc::connection_options&>(so) = conn_options(v);
    so.metrics_name = "bench";
    // Shard 0 binds first: port 0 becomes one port every shard then shares.
    shard_server = std::make_unique<rpc::server>(so);
    shard_server->register_handler(verb_echo, [](temporary_buffer<char> b) { return b; });
    shard_server->listen(sa);
    sa = shard_server->local_address();
    // Futures named before co_await: GCC 12 mishandles temporaries with destructors inside it.
    auto others = smp::invoke_on_others([so, sa] {
        shard_server = std::make_unique<rpc::server>(so);
        shard_server->register_handler(verb_echo, [](temporary_buffer<char> b) { return b; });
        shard_server->listen(sa);
    });
    co_await std::move(others);
    fmt::print("reef-rpc-bench listening on {}, {} shards{}\n", sa, smp::count,
               v.no_compress ? ", compression off" : "");
    std::fflush(stdout);
    co_await std::move(stopped_future);
    co_return 0;
}

std::string make_payload(unsigned n) {
    static const char* words[] = {"reef", "shard", "frame", "verb",  "stream", "packet",  "future",  "reply",
                                  "key",  "value", "node",  "index", "42",     "timeout", "metrics", "queue"};
    std::string s;
    std::uint32_t x = 2463534242u;
    while (s.size() < n) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s += words[x % 16];
        s += (x & 0x100) ? ' ' : ',';
    }
    s.resize(n);
    return s;
}

struct shard_result {
    std::uint64_t calls = 0;
    std::uint64_t errors = 0;
    double latency_sum_us = 0;
    std::uint64_t wire_bytes = 0;  // sent + received during the measured window
    bool lz4 = false;
};

future<> caller(rpc::client& c, const temporary_buffer<char>& payload, std::chrono::steady_clock::time_point start,
                std::chrono::steady_clock::time_point end, shard_result& r) {
    for (;;) {
        auto t0 = std::chrono::steady_clock::now();
        if (t0 >= end) {
            break;
        }
        try {
            auto f = c.call<temporary_buffer<char>>(verb_echo, payload);
            auto reply = co_await std::move(f);
            if (reply.size() != payload.size()) {
                ++r.errors;
            }
        } catch (...) {
            ++r.errors;
            blog.warn("call failed: {}", exception_message(std::current_exception()));
            co_return;
        }
        if (t0 >= start) {
            ++r.calls;
            r.latency_sum_us +=
                std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
        }
    }
}

future<shard_result> run_client_shard(cli_values v, net::socket_address sa) {
    shard_result r;
    rpc::client_options co;
    static_cast<rpc::connection_options&>(co) = conn_options(v);
    std::vector<std::unique_ptr<rpc::client>> clients;
    for (unsigned i = 0; i < v.connections; ++i) {
        clients.push_back(std::make_unique<rpc::client>(co));
        co_await clients.back()->connect(sa);
    }
    r.lz4 = clients.front()->negotiation().has(rpc::feature::lz4);
    auto p = make_payload(v.payload);
    temporary_buffer<char> payload(p.data(), p.size());
    auto now = std::chrono::steady_clock::now();
    auto start = now + 1s;  // warm-up
    auto end = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double>(v.duration));
    std::vector<future<>> fs;
    for (auto& c : clients) {
        for (unsigned k = 0; k < v.concurrency; ++k) {
            fs.push_back(caller(*c, payload, start, end, r));
        }
    }
    // Wire bytes of the measured window only.
    co_await sleep(std::chrono::duration_cast<std::chrono::milliseconds>(start - std::chrono::steady_clock::now()));
    std::uint64_t before = 0;
    for (auto& c : clients) {
        before += c->stats().bytes_sent + c->stats().bytes_received;
    }
    co_await when_all(fs.begin(), fs.end());
    for (auto& c : clients) {
        r.wire_bytes += c->stats().bytes_sent + c->stats().bytes_received;
        co_await c->stop();
    }
    r.wire_bytes -= before;
    co_return r;
}

future<int> run_client(const cli_values& v) {
    net::socket_address sa;
    try {
        sa = net::socket_address::parse(v.server);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "reef-rpc-bench: --server: %s\n", e.what());
        co_return 2;
    }
    std::vector<shard_result> results(smp::count);
    auto all = smp::invoke_on_all([&results, &v, sa]() -> future<> {
        auto f = run_client_shard(v, sa);
        results[this_shard_id()] = co_await std::move(f);
    });
    co_await std::move(all);
    shard_result total;
    for (auto& r : results) {
        total.calls += r.calls;
        total.errors += r.errors;
        total.latency_sum_us += r.latency_sum_us;
        total.wire_bytes += r.wire_bytes;
        total.lz4 = r.lz4;
    }
    fmt::print(
        "{{\"payload\": {}, \"lz4\": {}, \"shards\": {}, \"connections\": {}, \"concurrency\": {}, \"duration_s\": {}, "
        "\"calls\": {}, \"errors\": {}, \"calls_per_s\": {:.0f}, \"mean_latency_us\": {:.1f}, "
        "\"wire_bytes_per_call\": {:.1f}}}\n",
        v.payload, total.lz4 ? "true" : "false", smp::count, v.connections, v.concurrency, v.duration, total.calls,
        total.errors, double(total.calls) / v.duration, total.calls ? total.latency_sum_us / double(total.calls) : 0.0,
        total.calls ? double(total.wire_bytes) / double(total.calls) : 0.0);
    std::fflush(stdout);
    co_return total.errors ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    app app("reef-rpc-bench",
            "Reef RPC benchmark: --mode server answers an echo verb on every shard; --mode client measures round "
            "trips per second against it and prints one JSON line.");
    cli_values v;
    auto& o = app.options();
    o.add_option("--mode", v.mode, "server or client")
        ->check(CLI::IsMember({"server", "client"}))
        ->capture_default_str();
    o.add_option("--address", v.address, "Server: local address to listen on")->capture_default_str();
    o.add_option("--port", v.port, "Server: TCP port (0: any free port, printed)")
        ->check(CLI::Range(0u, 65535u))
        ->capture_default_str();
    o.add_option("--server", v.server, "Client: the server's address:port")->capture_default_str();
    o.add_option("--payload", v.payload, "Client: bytes of each call's argument (echoed back)")
        ->check(CLI::Range(0u, 8u << 20))
        ->capture_default_str();
    o.add_option("--concurrency", v.concurrency, "Client: calls in flight per connection")
        ->check(CLI::Range(1u, 100000u))
        ->capture_default_str();
    o.add_option("--connections", v.connections, "Client: connections per shard")
        ->check(CLI::Range(1u, 10000u))
        ->capture_default_str();
    o.add_option("--duration", v.duration, "Client: measured seconds (after 1 s of warm-up)")
        ->check(CLI::Range(0.1, 3600.0))
        ->capture_default_str();
    o.add_flag("--no-compress", v.no_compress, "Do not offer LZ4 compression");
    return app.run(argc, argv, [&]() -> future<int> { return v.mode == "server" ? run_server(v) : run_client(v); });
}
