// The control agent: the JSON-RPC server inside every dataplane (docs/control-protocol.md).
//
// It listens on a unix stream socket (reef::app's --ctl-socket; default
// /run/reef/<app>-<pid>.sock), created with mode 0660. Each connection's peer is checked with
// SO_PEERCRED: root, the socket's owner, and members of the socket's group are served; anyone
// else gets one permission_denied error line and is disconnected.
//
// Everything runs on shard 0's reactor: the listener and the connections are pollable_fds (the
// runtime's own non-blocking sockets; the stack API does not expose peer credentials), so the
// agent never blocks the shard and works whichever network stack the app uses. Methods that
// concern other shards fan out with smp::submit_to. A connection's requests are answered in order,
// one at a time; connections are independent (a silent or slow client holds only its own).
//
// Apps add their own methods under "app." (memcached: app.stats, app.flush) with
// register_app_method(), from shard 0, before or after the agent starts.
#pragma once

#include "ctl/protocol/protocol.hh"
#include "runtime/future.hh"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace reef::net {
class device;
}

namespace reef::ctl {

/// The agent's start-up settings (reef::app fills them from its options and what it started).
struct agent_config {
    /// The app's name (runtime.status; part of the default socket path).
    std::string app_name;
    /// The socket path; empty for default_socket_path(app_name).
    std::string socket_path;
    /// Longest request line; longer ones get a request_too_large error.
    std::size_t max_line = default_max_line;
    /// Connections served at once; further ones get an `unavailable` error line and are closed.
    unsigned max_connections = 256;
    /// The network stack's name ("posix", "native") for runtime.status.
    std::string stack_name;
    /// The port the dataplane drives (ports.*), or nullptr: ports.* then answer "no port".
    net::device* device = nullptr;
    /// The port's own counters (DPDK: rte_eth_stats and xstats), name and value, read on shard 0.
    /// Optional; ports.stats includes them as "hw" when set.
    std::function<std::vector<std::pair<std::string, std::uint64_t>>()> port_counters;
    /// The PMD's name for ports.list (e.g. "net_af_packet"), when known.
    std::string driver_name;
};

/// "/run/reef/<app>-<pid>.sock".
std::string default_socket_path(const std::string& app_name);

/// Start the agent on shard 0: create the socket (its directory too, 0755, when missing), register
/// the network and port metrics on every shard, and serve until stop_agent(). A stale socket file
/// at the path (nobody accepts on it) is replaced; a live one gives std::system_error(EADDRINUSE).
/// Other failures (bad path, no permission) throw std::system_error naming the path. Only one
/// agent per process.
future<> start_agent(agent_config cfg);

/// Shard 0: stop accepting, close every connection (pending replies are dropped), remove the
/// socket file and the metrics; resolves when all connections are gone. Does nothing when the
/// agent is not running.
future<> stop_agent();

/// Whether the agent runs, and its socket path (empty when not running). Shard 0.
bool agent_running() noexcept;
const std::string& agent_socket_path() noexcept;

/// An app method: receives the request's params (null when absent) and returns the result.
/// Runs on shard 0; throw rpc_error for a JSON-RPC error with its code (invalid_params for bad
/// params); any other exception is answered with `failed` and its message.
using app_method = std::function<future<json>(json params)>;

/// Keeps an app method registered; destroying it removes the method. Shard 0, move-only.
class app_method_registration {
    std::string _name;

public:
    app_method_registration() noexcept = default;
    explicit app_method_registration(std::string name) noexcept : _name(std::move(name)) {}
    app_method_registration(app_method_registration&& o) noexcept : _name(std::move(o._name)) { o._name.clear(); }
    app_method_registration& operator=(app_method_registration&& o) noexcept;
    app_method_registration(const app_method_registration&) = delete;
    app_method_registration& operator=(const app_method_registration&) = delete;
    ~app_method_registration() { unregister(); }
    void unregister() noexcept;
    const std::string& name() const noexcept { return _name; }
};

/// Register `fn` as method `name` ("app." followed by [a-z0-9_.]+), on shard 0. Throws
/// std::invalid_argument for a bad or already registered name. The registry outlives agent
/// restarts, so an app may register before the agent starts (or when it is disabled).
[[nodiscard]] app_method_registration register_app_method(std::string name, app_method fn);

/// The registered app methods' names, sorted. Shard 0.
std::vector<std::string> app_methods();

}  // namespace reef::ctl
