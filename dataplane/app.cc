#include "dataplane/app.hh"

#include "ctl/agent/agent.hh"
#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/metrics.hh"
#include "runtime/metrics_collectd.hh"
#include "runtime/reactor.hh"
#include "runtime/smp.hh"
#include "stack/http/server.hh"
#include "stack/native/native_stack.hh"
#include "stack/native/tcp_config_options.hh"
#include "stack/net/api.hh"

#ifdef REEF_HAVE_DPDK
#include "dataplane/dpdk_device.hh"
#include "dataplane/dpdk_options.hh"
#include "dataplane/eal.hh"
#endif

#include <cmath>
#include <system_error>

namespace reef {

namespace {

logger blog("bootstrap");

// The process's device: created on shard 0, read by every shard (a pointer published before the
// app's main runs and cleared after every shard stopped using it).
net::device* g_device = nullptr;
std::unique_ptr<net::device> g_device_owner;

// The native stack's options (--host-ipv4-addr...), parsed with the others; its factory builds
// each shard's stack over g_device, which exists by the time start_network_stack runs.
net::native_options g_native_options;
net::tcp_config g_tcp_config;  // --tcp-*

future<std::unique_ptr<net::network_stack>> make_native_over_device(const net::network_stack_options&) {
    if (!g_device) {
        throw std::invalid_argument("--network-stack native needs a device: add --dpdk-pmd (and --vdev for a "
                                    "virtual port)");
    }
    net::check_tcp_config(g_tcp_config);
    auto s = co_await net::make_native_stack(*g_device, g_native_options, g_tcp_config);
    co_return std::unique_ptr<net::network_stack>(std::move(s));
}

// --metrics-port: an HTTP server on every shard whose one route collects every shard's metrics.
thread_local std::unique_ptr<http::server> g_metrics_server;

// This shard's metrics server: the route collects every shard's metrics (metrics::collect).
net::socket_address listen_metrics_local(net::socket_address sa) {
    http::router r;
    r.add("GET", "/metrics", [](http::request&) -> future<http::reply> {
        auto families = co_await metrics::collect();
        co_return http::reply(200, metrics::to_prometheus(families), "text/plain; version=0.0.4; charset=utf-8");
    });
    g_metrics_server = std::make_unique<http::server>(std::move(r));
    g_metrics_server->listen(sa);
    return g_metrics_server->local_address();
}

// Every shard listens: on the native stack a connection belongs to the shard its flow hashes to,
// and a shard without a listener would reset it. Shard 0 binds first so that port 0 resolves to
// one port for all.
future<> start_metrics_endpoint(net::socket_address sa) {
    auto bound = listen_metrics_local(sa);
    auto others = smp::invoke_on_others([bound] { listen_metrics_local(bound); });
    co_await std::move(others);
    blog.info("metrics at http://{}/metrics", bound);
    engine().at_exit([] {
        return smp::invoke_on_all([]() -> future<> {
            if (g_metrics_server) {
                co_await g_metrics_server->stop();
                g_metrics_server.reset();
            }
        });
    });
}

}  // namespace

app::app(std::string name, std::string description) : _tmpl(std::move(name), std::move(description)) {
    _net.register_options(_tmpl.options());
    net::register_network_stack("native", make_native_over_device);
    g_native_options.register_options(_tmpl.options());
    net::register_tcp_options(_tmpl.options(), g_tcp_config);
    _tmpl.options()
        .add_option("--ctl-socket", _ctl_socket,
                    "Control socket path (JSON-RPC, see docs/control-protocol.md); default "
                    "/run/reef/<app>-<pid>.sock; \"none\" disables the control agent")
        ->group("Control options");
    _tmpl.options()
        .add_option("--metrics-port", _metrics_port,
                    "Serve every shard's metrics in Prometheus text format at http://ADDRESS:PORT/metrics "
                    "(on the app's network stack, every shard listening; 0: any free port, logged); none by default")
        ->check(CLI::Range(0u, 65535u))
        ->group("Control options");
    _tmpl.options()
        .add_option("--metrics-address", _metrics_address, "Address of the --metrics-port endpoint")
        ->capture_default_str()
        ->group("Control options");
    _tmpl.options()
        .add_option("--collectd-address", _collectd_address,
                    "Push every shard's metrics to collectd's network plugin at HOST:PORT (UDP, binary "
                    "protocol, through the kernel); none by default")
        ->group("Control options");
    _tmpl.options()
        .add_option("--collectd-period", _collectd_period, "Seconds between two collectd pushes")
        ->check(CLI::PositiveNumber)
        ->capture_default_str()
        ->group("Control options");
#ifdef REEF_HAVE_DPDK
    _dpdk = std::make_unique<dpdk::dpdk_options>();
    _dpdk->register_options(_tmpl.options());
#endif
}

app::~app() = default;

bool app::has_dpdk() noexcept {
#ifdef REEF_HAVE_DPDK
    return true;
#else
    return false;
#endif
}

bool app::dpdk_enabled() const noexcept {
#ifdef REEF_HAVE_DPDK
    return _dpdk && _dpdk->enabled;
#else
    return false;
#endif
}

net::device* app::device() noexcept { return g_device; }

int app::run(int argc, char** argv, std::function<future<int>()> main) {
#ifdef REEF_HAVE_DPDK
    _tmpl.add_before_start([this](smp_options& smp, reactor_config&) {
        if (!_dpdk->enabled) {
            return;
        }
        _dpdk->validate();
        dpdk::start_eal(*_dpdk, smp);
        dpdk::add_shard_init(smp);
    });
    _tmpl.add_after_stop([] { dpdk::stop_eal(); });
#endif
    return _tmpl.run(argc, argv, [this, main = std::move(main)]() -> future<int> {
#ifdef REEF_HAVE_DPDK
        if (_dpdk->enabled) {
            g_device_owner = dpdk::make_dpdk_device(*_dpdk);
            co_await g_device_owner->start();
            g_device = g_device_owner.get();
            blog.info("DPDK port {} ({}) started with {} queue(s) for {} shard(s)", g_device->name(),
                      g_device->hw_address().to_string(), g_device->hw_queues_count(), smp::count);
            // Registered before the stack's hooks and the app's, so it runs after them on shard 0
            // (hooks run last registered first): stop pollers, return every mbuf, free the device.
            // Other shards' own hooks run later still; a send on a stopped device is dropped.
            engine().at_exit([]() -> future<> {
                co_await g_device_owner->stop();
                g_device = nullptr;
                g_device_owner.reset();
            });
        }
#endif
        co_await net::start_network_stack(_net);
        if (_ctl_socket != "none") {
            ctl::agent_config acfg;
            acfg.app_name = _tmpl.options().get_name();
            acfg.socket_path = _ctl_socket;
            acfg.stack_name = _net.stack;
            acfg.device = g_device;
#ifdef REEF_HAVE_DPDK
            if (auto* d = dynamic_cast<dpdk::dpdk_device*>(g_device)) {
                acfg.driver_name = d->driver_name();
                acfg.port_counters = [d] {
                    auto st = d->port_stats();
                    std::vector<std::pair<std::string, std::uint64_t>> v = {
                        {"ipackets", st.ipackets}, {"opackets", st.opackets}, {"ibytes", st.ibytes},
                        {"obytes", st.obytes},     {"imissed", st.imissed},   {"ierrors", st.ierrors},
                        {"oerrors", st.oerrors},   {"rx_nombuf", st.rx_nombuf}};
                    for (auto& x : d->xstats()) {
                        v.emplace_back(std::move(x.name), x.value);
                    }
                    return v;
                };
            }
#endif
            std::exception_ptr agent_error;
            try {
                co_await ctl::start_agent(std::move(acfg));
            } catch (const std::system_error&) {
                agent_error = std::current_exception();
            }
            if (agent_error && !_ctl_socket.empty()) {
                std::rethrow_exception(agent_error);  // the path the user asked for: fail the start
            }
            if (agent_error) {
                // The default place (/run/reef) may not be writable for this user: serve anyway.
                blog.warn("control agent not started: {} (give --ctl-socket PATH, or none)",
                          exception_message(agent_error));
                co_await metrics::register_runtime_metrics();
            } else {
                // Registered after the stack's and the device's hooks: the agent stops before them.
                engine().at_exit([] { return ctl::stop_agent(); });
            }
        } else {
            co_await metrics::register_runtime_metrics();
        }
        if (_metrics_port) {
            auto started = start_metrics_endpoint(net::socket_address(net::inet_address::parse(_metrics_address),
                                                                      std::uint16_t(*_metrics_port)));
            co_await std::move(started);
        }
        if (!_collectd_address.empty()) {
            metrics::collectd_options copts;
            copts.address = _collectd_address;
            copts.period = std::chrono::milliseconds(std::llround(_collectd_period * 1000));
            copts.instance = _tmpl.options().get_name();
            auto started = metrics::start_collectd_export(std::move(copts));
            co_await std::move(started);  // a bad address fails the start, naming it
            engine().at_exit([] { return metrics::stop_collectd_export(); });
        }
        co_return co_await main();
    });
}

}  // namespace reef
