// reef-memcached: a memcached server (text, meta and binary protocols over TCP and UDP) on every
// shard, with the cache sharded by key (apps/memcached/server.hh, storage.hh).
//
// Interface (pytests/memcached and tests/bench/run_memcached.sh depend on it): once every shard
// listens, prints on stdout
//     reef-memcached listening on <tcp address> (tcp)[ <udp address> (udp)], <N> shards
// Stops cleanly on SIGINT/SIGTERM with exit code 0 and logs "reef-memcached stopped: ...".
// Exit code 1 when it cannot listen (the message names the address), 2 for bad options.
//
// memcached's options where they exist: -p/--port, -U/--udp-port (0: off, the default as in
// memcached 1.6), -l/--listen, -m/--memory-limit (MiB, split evenly over shards), -c/--conn-limit
// (split evenly over shards), -I/--max-item-size (k/m suffixes), -t/--threads (an alias of
// --smp: one shard per memcached worker thread), plus every reef::app option (--smp, --cpuset,
// --network-stack, the DPDK options...).
//
//   --udp-fastpath (needs --dpdk-pmd): every shard's packet hook answers single-datagram UDP get
//   and set requests for keys it owns straight from the frame (apps/memcached/udp_fast_path.hh).
#include "apps/memcached/server.hh"
#include "apps/memcached/udp_fast_path.hh"
#include "ctl/agent/agent.hh"
#include "dataplane/app.hh"
#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/reactor.hh"
#include "runtime/scheduling.hh"
#include "runtime/sharded.hh"
#include "runtime/smp.hh"
#include "stack/net/socket_address.hh"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <vector>

using namespace reef;
using namespace reef::memcached;

namespace {

logger mlog("reef-memcached");

struct cli_values {
    std::string address = "0.0.0.0";
    unsigned port = 11211;
    unsigned udp_port = 0;
    std::size_t memory_mb = 64;
    std::size_t connections = 1024;
    std::string max_item = "1m";
    bool udp_fastpath = false;
};

struct state {
    sharded<memcached_server> servers;
    sharded<udp_fast_path> fast_path;
    bool fast_path_running = false;
    bool running = false;
    promise<> stopped;
    std::vector<ctl::app_method_registration> methods;
};

// The control plane's app.* methods (docs/memcached.md lists them): shard 0.
void register_ctl_methods(state& st) {
    st.methods.push_back(ctl::register_app_method("app.stats", [&st](ctl::json p) -> future<ctl::json> {
        ctl::params_view v(p, "app.stats");
        v.allow_only({"group", "per_shard"});
        std::string group = v.opt_string("group").value_or("");
        bool per_shard = v.opt_boolean("per_shard").value_or(false);
        auto lines = co_await st.servers.local().gather_stats(group);
        if (!lines) {
            throw ctl::rpc_error(ctl::error_code::invalid_params,
                                 "app.stats: unknown group '" + group + "' (\"\", settings, items, slabs)");
        }
        ctl::json stats = ctl::json::object();
        for (auto& l : *lines) {
            // Numbers as numbers, the rest (version, rusage) as strings.
            char* end = nullptr;
            errno = 0;
            unsigned long long n = std::strtoull(l.value.c_str(), &end, 10);
            if (!l.value.empty() && end && *end == '\0' && errno == 0 && l.value[0] != '-') {
                stats[l.name] = n;
            } else {
                stats[l.name] = l.value;
            }
        }
        ctl::json result = {{"stats", std::move(stats)}};
        if (per_shard) {
            ctl::json shards = ctl::json::array();
            for (unsigned s = 0; s < smp::count; ++s) {
                auto f = st.servers.invoke_on(s, [](memcached_server& srv) { return srv.report(); });
                shard_report r = co_await std::move(f);
                shards.push_back({{"shard", s},
                                  {"curr_items", r.cache.curr_items},
                                  {"bytes", r.cache.bytes},
                                  {"get_hits", r.cache.get_hits},
                                  {"get_misses", r.cache.get_misses},
                                  {"cmd_set", r.cache.cmd_set},
                                  {"evictions", r.cache.evictions},
                                  {"curr_connections", r.server.curr_connections},
                                  {"forwarded_ops", r.server.forwarded_ops},
                                  {"lsa_segments_in_use", r.region.segments_in_use},
                                  {"memory_limit", r.memory_limit}});
            }
            result["shards"] = std::move(shards);
        }
        co_return result;
    }));
    st.methods.push_back(ctl::register_app_method("app.flush", [&st](ctl::json p) -> future<ctl::json> {
        ctl::params_view v(p, "app.flush");
        v.allow_only({"delay"});
        std::int64_t delay = v.opt_integer("delay", 0, max_relative_exptime).value_or(0);
        co_await st.servers.invoke_on_all([delay](memcached_server& s) { s.flush(delay); });
        co_return ctl::json{{"flushed", true}, {"delay", delay}};
    }));
}

// memcached's -I: bytes with an optional k/m suffix.
std::optional<std::size_t> parse_size(const std::string& s) {
    if (s.empty()) {
        return std::nullopt;
    }
    std::size_t mult = 1, end = s.size();
    char last = s.back();
    if (last == 'k' || last == 'K') {
        mult = 1024;
        --end;
    } else if (last == 'm' || last == 'M') {
        mult = 1024 * 1024;
        --end;
    }
    if (end == 0) {
        return std::nullopt;
    }
    std::size_t v = 0;
    for (std::size_t i = 0; i < end; ++i) {
        if (s[i] < '0' || s[i] > '9' || v > (std::size_t(1) << 40)) {
            return std::nullopt;
        }
        v = v * 10 + std::size_t(s[i] - '0');
    }
    return v * mult;
}

future<> stop_on_exit(state& st) {
    st.methods.clear();
    if (st.fast_path_running) {
        st.fast_path_running = false;
        // First, so that no frame is answered after the counters are read.
        co_await st.fast_path.invoke_on_all([](udp_fast_path& f) { f.uninstall(); });
        auto fp = co_await st.fast_path.map_reduce0([](udp_fast_path& f) { return f.stats(); }, fast_path_stats(),
                                                    [](fast_path_stats a, const fast_path_stats& b) {
                                                        a.answered += b.answered;
                                                        a.malformed += b.malformed;
                                                        a.passed += b.passed;
                                                        return a;
                                                    });
        mlog.info("reef-memcached fast path: {} requests answered, {} malformed, {} passed on", fp.answered,
                  fp.malformed, fp.passed);
        co_await st.fast_path.stop();
    }
    if (st.running) {
        st.running = false;
        auto total = co_await st.servers.map_reduce0([](memcached_server& s) { return s.report(); }, shard_report(),
                                                     [](shard_report a, const shard_report& b) {
                                                         a.cache += b.cache;
                                                         a.server += b.server;
                                                         return a;
                                                     });
        co_await st.servers.stop();
        mlog.info(
            "reef-memcached stopped: {} connections, {} gets ({} hits), {} sets, {} evictions, {} items, "
            "{} UDP requests ({} bad frames), {} fast-path gets, {} fast-path sets",
            total.server.total_connections, total.cache.cmd_get, total.cache.get_hits, total.cache.cmd_set,
            total.cache.evictions, total.cache.curr_items, total.server.udp_requests, total.server.udp_bad_frames,
            total.server.fastpath_gets, total.server.fastpath_sets);
    }
    st.stopped.set_value();
}

future<int> run(const cli_values& v, const app& a, state& st) {
    auto item = parse_size(v.max_item);
    if (!item || *item < 1024 || *item > (std::size_t(1) << 30)) {
        std::fprintf(stderr, "reef-memcached: -I/--max-item-size: '%s' is not a size between 1k and 1024m\n",
                     v.max_item.c_str());
        co_return 2;
    }
    if (v.udp_fastpath && !a.dpdk_enabled()) {
        std::fprintf(stderr, "reef-memcached: --udp-fastpath needs --dpdk-pmd%s\n",
                     app::has_dpdk() ? "" : " (and this build has no DPDK)");
        co_return 2;
    }
    if (v.udp_fastpath && v.udp_port == 0) {
        std::fprintf(stderr, "reef-memcached: --udp-fastpath needs a UDP port (-U)\n");
        co_return 2;
    }
    net::inet_address addr;
    try {
        addr = net::inet_address::parse(v.address);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "reef-memcached: -l/--listen: %s\n", e.what());
        co_return 2;
    }
    server_config cfg;
    cfg.total_memory = v.memory_mb << 20;
    cfg.memory_per_shard = cfg.total_memory / smp::count;
    cfg.max_item_size = *item;
    cfg.total_connections = v.connections;
    cfg.max_connections = (v.connections + smp::count - 1) / smp::count;
    if (cfg.max_item_size > cfg.memory_per_shard / 2) {
        // memcached: "Cannot set item size limit higher than 1/2 of memory max." Here per shard.
        std::fprintf(stderr, "reef-memcached: -I %s is more than half of a shard's memory (-m %zu over %u shards)\n",
                     v.max_item.c_str(), v.memory_mb, smp::count);
        co_return 2;
    }
    auto stopped_future = st.stopped.get_future();
    std::exception_ptr start_error;
    try {
        engine().at_exit([&st] { return stop_on_exit(st); });
        auto sg = find_scheduling_group("memcached-sweep");
        if (!sg) {
            // Low shares: the sweep gets CPU only when requests leave some.
            sg = co_await create_scheduling_group("memcached-sweep", 50);
        }
        cfg.sweep_group = *sg;
        co_await st.servers.start(cfg, &st.servers);
        st.running = true;
        net::socket_address tcp(addr, std::uint16_t(v.port));
        auto listened = st.servers.invoke_on(0, [tcp](memcached_server& s) {
            s.listen(tcp);
            return s.tcp_address();
        });
        tcp = co_await std::move(listened);
        std::optional<net::socket_address> udp;
        if (v.udp_port != 0) {
            net::socket_address want(addr, std::uint16_t(v.udp_port));
            auto bound = st.servers.invoke_on(0, [want](memcached_server& s) {
                s.bind_udp(want);
                return *s.udp_address();
            });
            udp = co_await std::move(bound);
        }
        auto others = st.servers.invoke_on_others([tcp, udp](memcached_server& s) {
            s.listen(tcp);
            if (udp) {
                s.bind_udp(*udp);
            }
        });
        co_await std::move(others);
        co_await st.servers.invoke_on_all([](memcached_server& s) { s.serve(); });
        if (v.udp_fastpath) {
            std::optional<std::uint32_t> only;
            if (addr.is_ipv4() && !addr.is_any()) {
                only = addr.as_in_addr().s_addr;
            }
            co_await st.fast_path.start(udp->port(), only, &st.servers);
            st.fast_path_running = true;
            co_await st.fast_path.invoke_on_all([](udp_fast_path& f) { f.install(); });
            mlog.info("UDP fast path on port {} of {}", udp->port(), app::device()->name());
        }
        register_ctl_methods(st);
        fmt::print("reef-memcached listening on {} (tcp){}, {} shards\n", tcp,
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
            co_await st.servers.stop();
        }
        co_return 1;
    }
    co_await std::move(stopped_future);
    co_return 0;
}

// memcached's -t N (worker threads) is Reef's --smp N: rewritten before parsing, so that the
// runtime starts that many shards.
std::vector<std::string> rewrite_threads(int argc, char** argv) {
    std::vector<std::string> args(argv, argv + argc);
    for (std::size_t i = 1; i < args.size(); ++i) {
        if (args[i] == "--") {
            break;
        }
        if (args[i] == "-t" || args[i] == "--threads") {
            args[i] = "--smp";
        } else if (args[i].starts_with("--threads=")) {
            args[i] = "--smp=" + args[i].substr(10);
        } else if (args[i].size() > 2 && args[i].starts_with("-t") && std::isdigit(std::uint8_t(args[i][2]))) {
            args[i] = "--smp=" + args[i].substr(2);
        }
    }
    return args;
}

}  // namespace

int main(int argc, char** argv) {
    app app("reef-memcached",
            "Reef memcached: a drop-in memcached (text, meta and binary protocols, TCP and UDP), the cache "
            "sharded by key over the shards. -t N is an alias of --smp N. Stops on SIGINT or SIGTERM.");
    cli_values v;
    auto& o = app.options();
    o.add_option("-p,--port", v.port, "TCP port (0: any free port, printed when listening)")
        ->check(CLI::Range(0u, 65535u))
        ->capture_default_str();
    o.add_option("-U,--udp-port", v.udp_port, "UDP port (0: no UDP)")
        ->check(CLI::Range(0u, 65535u))
        ->capture_default_str();
    o.add_option("-l,--listen", v.address, "Local IPv4 or IPv6 address to listen on")->capture_default_str();
    o.add_option("-m,--memory-limit", v.memory_mb, "Item memory in MiB, split evenly over the shards")
        ->check(CLI::Range(std::size_t(1), std::size_t(1) << 22))
        ->capture_default_str();
    o.add_option("-c,--conn-limit", v.connections, "Maximum simultaneous connections, split evenly over the shards")
        ->check(CLI::Range(std::size_t(1), std::size_t(1) << 24))
        ->capture_default_str();
    o.add_option("-I,--max-item-size", v.max_item, "Largest item (key + value + ~56 bytes), k/m suffixes")
        ->capture_default_str();
    o.add_flag("--udp-fastpath", v.udp_fastpath,
               "Answer single-datagram UDP get/set requests for keys of the receiving shard from the DPDK "
               "port's packet hook (needs --dpdk-pmd and -U; IPv4)");

    auto args = rewrite_threads(argc, argv);
    std::vector<char*> cargv;
    for (auto& a : args) {
        cargv.push_back(a.data());
    }
    cargv.push_back(nullptr);
    state st;
    return app.run(int(args.size()), cargv.data(), [&]() -> future<int> { return run(v, app, st); });
}
