// reef-echo: a TCP and UDP echo server on every shard, on either network stack.
//
// Interface (pytests/test_echo.py and tests/bench/run_echo.sh depend on it): once every shard
// listens, prints on stdout
//     reef-echo listening on <tcp address> (tcp) <udp address> (udp), <N> shards
// ("(tcp+tls)" with --tls-cert; the UDP part is left out with --udp-port 0). Stops cleanly on
// SIGINT/SIGTERM with exit code 0 and logs "reef-echo stopped: ..." with its counters. Exit code
// 1 when it cannot listen (the message names the address), 2 for bad options.
#include "apps/echo/echo_server.hh"
#include "runtime/app_template.hh"
#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/reactor.hh"
#include "runtime/sharded.hh"
#include "runtime/smp.hh"
#include "stack/net/socket_address.hh"
#include "stack/net/stack_options.hh"

#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <optional>
#include <string>

using namespace reef;
using namespace reef::echo;

namespace {

logger mlog("reef-echo");

struct cli_values {
    std::string address = "0.0.0.0";
    unsigned port = 7;
    std::optional<unsigned> udp_port;
    std::string tls_cert;
    std::string tls_key;
};

std::string message_of(const std::exception_ptr& ex) {
    try {
        std::rethrow_exception(ex);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown error";
    }
}

// SIGINT/SIGTERM (or the end of main): stop every shard's server, log the counters, then let
// main's coroutine finish.
future<> stop_on_exit(sharded<echo_server>& servers, bool& running, promise<>& stopped) {
    if (running) {
        running = false;
        auto totals = co_await servers.map_reduce0([](echo_server& s) { return s.stats(); }, echo_stats(),
                                                   [](echo_stats a, const echo_stats& b) {
                                                       a.connections += b.connections;
                                                       a.connection_errors += b.connection_errors;
                                                       a.bytes += b.bytes;
                                                       a.datagrams += b.datagrams;
                                                       a.datagram_errors += b.datagram_errors;
                                                       return a;
                                                   });
        co_await servers.stop();
        mlog.info(
            "reef-echo stopped: {} connections ({} ended with an error), {} bytes echoed, {} datagrams echoed "
            "({} errors)",
            totals.connections, totals.connection_errors, totals.bytes, totals.datagrams, totals.datagram_errors);
    }
    stopped.set_value();
}

future<int> run(const cli_values& v, net::network_stack_options net_opts, sharded<echo_server>& servers, bool& running,
                promise<>& stopped) {
    net::inet_address addr;
    try {
        addr = net::inet_address::parse(v.address);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "reef-echo: --address: %s\n", e.what());
        co_return 2;
    }
    auto stopped_future = stopped.get_future();
    std::exception_ptr start_error;
    try {
        // (Futures are named before co_await: see the GCC 12 note in runtime/coroutine.hh.)
        auto stack_started = net::start_network_stack(std::move(net_opts));
        co_await std::move(stack_started);
        // After the stack's own hook, so that it runs first (hooks run last registered first).
        engine().at_exit([&servers, &running, &stopped] { return stop_on_exit(servers, running, stopped); });

        echo_config cfg;
        cfg.tls_cert = v.tls_cert;
        cfg.tls_key = v.tls_key;
        co_await servers.start(cfg);
        running = true;

        // Shard 0 binds first, so that port 0 becomes one port that every shard then shares.
        net::socket_address tcp(addr, std::uint16_t(v.port));
        auto listened = servers.invoke_on(0, [tcp](echo_server& s) {
            s.listen(tcp);
            return s.tcp_address();
        });
        tcp = co_await std::move(listened);
        std::optional<net::socket_address> udp;
        unsigned udp_port = v.udp_port.value_or(tcp.port());
        if (udp_port != 0) {
            net::socket_address want(addr, std::uint16_t(udp_port));
            auto bound = servers.invoke_on(0, [want](echo_server& s) {
                s.bind_udp(want);
                return *s.udp_address();
            });
            udp = co_await std::move(bound);
        }
        auto others = servers.invoke_on_others([tcp, udp](echo_server& s) {
            s.listen(tcp);
            if (udp) {
                s.bind_udp(*udp);
            }
        });
        co_await std::move(others);
        co_await servers.invoke_on_all([](echo_server& s) { s.serve(); });

        fmt::print("reef-echo listening on {} ({}){}, {} shards\n", tcp, v.tls_cert.empty() ? "tcp" : "tcp+tls",
                   udp ? fmt::format(" {} (udp)", *udp) : std::string(), smp::count);
        std::fflush(stdout);
    } catch (...) {
        start_error = std::current_exception();
    }
    if (start_error) {
        mlog.error("cannot start: {}", message_of(start_error));
        if (running) {
            running = false;
            co_await servers.stop();
        }
        co_return 1;
    }
    co_await std::move(stopped_future);
    co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
    app_template app("reef-echo",
                     "Reef echo server: every shard answers TCP connections and UDP datagrams with the bytes they "
                     "carry. Stops on SIGINT or SIGTERM.");
    cli_values v;
    net::network_stack_options net_opts;
    net_opts.register_options(app.options());
    auto& o = app.options();
    o.add_option("--address", v.address, "Local IPv4 or IPv6 address to listen on")->capture_default_str();
    o.add_option("--port", v.port, "TCP port (0: any free port, printed when listening)")
        ->check(CLI::Range(0u, 65535u))
        ->capture_default_str();
    o.add_option("--udp-port", v.udp_port, "UDP port (default: the TCP port; 0: no UDP)")
        ->check(CLI::Range(0u, 65535u));
    auto* cert =
        o.add_option("--tls-cert", v.tls_cert, "PEM certificate chain: serve TCP over TLS")->check(CLI::ExistingFile);
    auto* key = o.add_option("--tls-key", v.tls_key, "PEM private key of --tls-cert")->check(CLI::ExistingFile);
    cert->needs(key);
    key->needs(cert);

    sharded<echo_server> servers;
    bool running = false;
    promise<> stopped;
    return app.run(argc, argv, [&]() -> future<int> { return run(v, net_opts, servers, running, stopped); });
}
