// reef-echo: a TCP and UDP echo server on every shard, on either network stack.
//
// Interface (pytests/test_echo.py and tests/bench/run_echo.sh depend on it): once every shard
// listens, prints on stdout
//     reef-echo listening on <tcp address> (tcp) <udp address> (udp), <N> shards
// ("(tcp+tls)" with --tls-cert; the UDP part is left out with --udp-port 0). Stops cleanly on
// SIGINT/SIGTERM with exit code 0 and logs "reef-echo stopped: ..." with its counters. Exit code
// 1 when it cannot listen (the message names the address), 2 for bad options.
//
// It runs on reef::app (dataplane/app.hh), so it takes --network-stack and, in builds with DPDK,
// every DPDK option. With --dpdk-pmd the DPDK port is started, but TCP and the UDP channel still
// listen on the posix (kernel) stack until the native stack exists; what reaches the DPDK port is
// answered only by the UDP fast path:
//   --udp-fast-path (needs --dpdk-pmd): every shard's packet hook answers UDP echo requests to the
//   UDP port (and to --address when it is not the any address) by rewriting each request frame
//   into its reply (apps/echo/udp_fast_path.hh); everything else passes on. At exit it logs
//       reef-echo fast path: <A> frames answered, <M> malformed, <P> passed on
//   and with --dpdk-pmd, one line per shard with the device's counters:
//       reef-echo shard <i>: rx <n> tx <n> hooked <n> forwarded <n> received-forwarded <n> ...
#include "apps/echo/echo_server.hh"
#include "apps/echo/udp_fast_path.hh"
#include "dataplane/app.hh"
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
    std::size_t sink_ack = 0;
    bool zero_copy = false;
    bool udp_fast_path = false;
};

struct state {
    sharded<echo_server> servers;
    sharded<udp_fast_path> fast_path;
    bool fast_path_running = false;
    bool running = false;
    bool sink = false;  // --sink-ack: TCP bytes are received, not echoed
    promise<> stopped;
};

// The device's counters of every shard, and the fast path's totals, in the exit log.
future<> log_dataplane_stats(state& st) {
    if (st.fast_path_running) {
        auto totals = co_await st.fast_path.map_reduce0([](udp_fast_path& f) { return f.stats(); }, fast_path_stats(),
                                                        [](fast_path_stats a, const fast_path_stats& b) {
                                                            a.answered += b.answered;
                                                            a.malformed += b.malformed;
                                                            a.passed += b.passed;
                                                            return a;
                                                        });
        mlog.info("reef-echo fast path: {} frames answered, {} malformed, {} passed on", totals.answered,
                  totals.malformed, totals.passed);
    }
    if (!app::device()) {
        co_return;
    }
    for (unsigned shard = 0; shard < smp::count; ++shard) {
        auto f = smp::submit_to(shard, [] { return app::device()->local_stats(); });
        net::device_stats s = co_await std::move(f);
        // rx/hooked count frames delivered on this shard, forwarded those it polled for another
        // shard; tx counts frames sent on this shard's queue, tx-proxied those it handed to a
        // queue owner; tx-blocked how often the device told the stack to wait for room.
        mlog.info(
            "reef-echo shard {}: rx {} tx {} hooked {} forwarded {} received-forwarded {} tx-proxied {} "
            "tx-dropped {} rss-dropped {} runt {} bad-length {} chain {} no-handler {} tx-blocked {}",
            shard, s.rx_packets, s.tx_packets, s.rx_hooked, s.sw_rss_forwarded, s.sw_rss_received, s.tx_proxied,
            s.tx_dropped, s.sw_rss_dropped, s.rx_dropped_runt, s.rx_dropped_bad_length, s.rx_dropped_chain,
            s.rx_dropped_no_handler, s.tx_blocked);
    }
}

// SIGINT/SIGTERM (or the end of main): stop every shard's server, log the counters, then let
// main's coroutine finish.
future<> stop_on_exit(state& st) {
    auto& servers = st.servers;
    if (st.fast_path_running) {
        // First, so that no frame is answered after the counters are read.
        co_await st.fast_path.invoke_on_all([](udp_fast_path& f) { f.uninstall(); });
        co_await log_dataplane_stats(st);
        st.fast_path_running = false;
        co_await st.fast_path.stop();
    } else {
        co_await log_dataplane_stats(st);
    }
    if (st.running) {
        st.running = false;
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
            "reef-echo stopped: {} connections ({} ended with an error), {} bytes {}, {} datagrams echoed "
            "({} errors)",
            totals.connections, totals.connection_errors, totals.bytes, st.sink ? "received (sink)" : "echoed",
            totals.datagrams, totals.datagram_errors);
    }
    st.stopped.set_value();
}

future<int> run(const cli_values& v, const app& a, state& st) {
    auto& servers = st.servers;
    if (v.udp_fast_path && !a.dpdk_enabled()) {
        std::fprintf(stderr, "reef-echo: --udp-fast-path needs --dpdk-pmd%s\n",
                     app::has_dpdk() ? "" : " (and this build has no DPDK)");
        co_return 2;
    }
    net::inet_address addr;
    try {
        addr = net::inet_address::parse(v.address);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "reef-echo: --address: %s\n", e.what());
        co_return 2;
    }
    if (v.udp_fast_path && v.udp_port == 0u) {
        std::fprintf(stderr, "reef-echo: --udp-fast-path needs a UDP port (--udp-port is 0)\n");
        co_return 2;
    }
    if (v.udp_fast_path && !addr.is_ipv4() && !addr.is_any()) {
        std::fprintf(stderr, "reef-echo: --udp-fast-path answers IPv4 only: --address must be IPv4 or any\n");
        co_return 2;
    }
    auto stopped_future = st.stopped.get_future();
    std::exception_ptr start_error;
    try {
        // reef::app started the stack (and the device) before this runs, so this hook runs before
        // theirs (hooks run last registered first). (Futures are named before co_await: see the
        // GCC 12 note in runtime/coroutine.hh.)
        engine().at_exit([&st] { return stop_on_exit(st); });

        echo_config cfg;
        cfg.tls_cert = v.tls_cert;
        cfg.tls_key = v.tls_key;
        cfg.sink_ack = v.sink_ack;
        cfg.zero_copy = v.zero_copy;
        st.sink = v.sink_ack != 0;
        co_await servers.start(cfg);
        st.running = true;

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
        if (v.udp_fast_path) {
            std::optional<std::uint32_t> only;
            if (addr.is_ipv4() && !addr.is_any()) {
                only = addr.as_in_addr().s_addr;
            }
            co_await st.fast_path.start(udp->port(), only);
            st.fast_path_running = true;
            co_await st.fast_path.invoke_on_all([](udp_fast_path& f) { f.install(); });
            mlog.info("UDP fast path on {} port {} of {}", only ? v.address : std::string("any address"), udp->port(),
                      app::device()->name());
        }

        fmt::print("reef-echo listening on {} ({}){}, {} shards\n", tcp, v.tls_cert.empty() ? "tcp" : "tcp+tls",
                   udp ? fmt::format(" {} (udp)", *udp) : std::string(), smp::count);
        std::fflush(stdout);
    } catch (...) {
        start_error = std::current_exception();
    }
    if (start_error) {
        mlog.error("cannot start: {}", exception_message(start_error));
        if (st.fast_path_running) {
            st.fast_path_running = false;
            co_await st.fast_path.stop();
        }
        if (st.running) {
            st.running = false;
            co_await servers.stop();
        }
        co_return 1;
    }
    co_await std::move(stopped_future);
    co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
    app app("reef-echo",
            "Reef echo server: every shard answers TCP connections and UDP datagrams with the bytes they "
            "carry. Stops on SIGINT or SIGTERM.");
    cli_values v;
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
    o.add_option("--sink-ack", v.sink_ack,
                 "TCP as a sink for one-way bulk (reef-loadgen --generator sink): drop what arrives and answer "
                 "every BYTES bytes with the 8-byte little-endian count read so far (0: echo)")
        ->check(CLI::Range(std::size_t(0), std::size_t(1) << 40))
        ->capture_default_str();
    o.add_flag("--zero-copy", v.zero_copy,
               "Echo TCP data from the received buffers themselves instead of copying it into the output "
               "stream (on the native stack, from the received frames' memory)");
    o.add_flag("--udp-fast-path", v.udp_fast_path,
               "Answer UDP echo requests arriving on the DPDK port from the packet hook, without the stack "
               "(needs --dpdk-pmd; IPv4; --address, when not the any address, limits it to that address)");

    state st;
    return app.run(argc, argv, [&]() -> future<int> { return run(v, app, st); });
}
