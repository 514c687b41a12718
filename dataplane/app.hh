// reef::app: the process bootstrap every dataplane binary uses.
//
//     int main(int argc, char** argv) {
//         reef::app app("reef-echo", "Echo server");
//         std::uint16_t port = 7;
//         app.options().add_option("--port", port, "TCP/UDP port")->capture_default_str();
//         return app.run(argc, argv, [&]() -> reef::future<int> {
//             auto ss = reef::net::listen(reef::net::socket_address(port));  // any stack
//             ...
//             co_return 0;
//         });
//     }
//
// It owns the command line: the runtime options (runtime/options.hh), the network options
// (--network-stack), and, in builds with DPDK, the DPDK options (dataplane/dpdk_options.hh).
// run() then:
//  1. parses them (--help lists every option with its default; a bad value: message, exit 2);
//  2. with --dpdk-pmd, starts DPDK's EAL on the main thread and makes every shard thread an lcore
//     (a missing vdev, a wrong port index, no hugepages with --huge-dir: message, exit 2);
//  3. starts the shards; with --dpdk-pmd, creates and starts the DPDK device (device() gives it
//     to the app, e.g. for set_packet_hook); starts the network stack on every shard; starts the
//     control agent (ctl/agent/agent.hh) on --ctl-socket (default /run/reef/<app>-<pid>.sock,
//     "none" disables it; a --ctl-socket path that cannot be created fails the start, exit 1;
//     the default one only gives a warning) and the runtime's metrics;
//  4. runs main on shard 0; its value is the exit code;
//  5. on SIGINT/SIGTERM or when main returns: the app's at_exit hooks (close listeners, drain
//     gates) run first, then the stack goes, then the device stops (pollers stopped, every mbuf
//     returned), then the EAL is released; exit code 0 for a signal.
#pragma once

#include "runtime/app_template.hh"
#include "runtime/future.hh"
#include "stack/net/device.hh"
#include "stack/net/stack_options.hh"

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace reef {

namespace dpdk {
struct dpdk_options;
}

class app {
    app_template _tmpl;
    net::network_stack_options _net;
    std::unique_ptr<dpdk::dpdk_options> _dpdk;  // null in builds without DPDK
    std::string _ctl_socket;                     // --ctl-socket: "" default path, "none" disabled
    std::optional<unsigned> _metrics_port;       // --metrics-port: none = no Prometheus endpoint
    std::string _metrics_address = "0.0.0.0";    // --metrics-address
    std::string _collectd_address;               // --collectd-address: empty = no collectd export
    double _collectd_period = 10;                // --collectd-period, seconds

public:
    app(std::string name, std::string description);
    ~app();
    app(const app&) = delete;
    app& operator=(const app&) = delete;

    /// Add the program's own options here before run().
    CLI::App& options() noexcept { return _tmpl.options(); }
    const runtime_options& configuration() const noexcept { return _tmpl.configuration(); }
    const net::network_stack_options& network_options() const noexcept { return _net; }
    /// Whether this build has DPDK (the DPDK options exist).
    static bool has_dpdk() noexcept;
    /// Whether --dpdk-pmd was given (after parsing).
    bool dpdk_enabled() const noexcept;

    /// The DPDK device (with --dpdk-pmd, from main's start until shutdown), else nullptr.
    /// Valid on every shard; per-shard calls (set_packet_hook, send) on their own shard.
    static net::device* device() noexcept;

    /// Parse, start, run `main` on shard 0, shut down; returns the exit code (see above).
    int run(int argc, char** argv, std::function<future<int>()> main);
};

}  // namespace reef
