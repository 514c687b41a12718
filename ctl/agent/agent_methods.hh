// The agent's built-in methods (runtime.*, shards.*, ports.*, metrics.get, log.*, sched.groups.*,
// io.classes.*, stack.connections, reef.*), separate from the socket server in agent.cc so that
// they can be called directly (tests) and read as one list. docs/control-protocol.md documents
// each one's params and result.
#pragma once

#include "ctl/agent/agent.hh"
#include "ctl/protocol/protocol.hh"
#include "runtime/clocks.hh"
#include "runtime/future.hh"

#include <string>
#include <vector>

namespace reef::ctl {

class agent_methods {
    const agent_config& _cfg;

public:
    /// `cfg` must outlive this object.
    explicit agent_methods(const agent_config& cfg) : _cfg(cfg) {}

    /// Run built-in method `method` with `params` (null when absent) on shard 0. Throws rpc_error:
    /// method_not_found for an unknown method, invalid_params for bad params (naming the
    /// parameter), not_found/unavailable/unsupported as documented per method.
    future<json> call(const std::string& method, const json& params);

    /// The built-in methods' names, sorted.
    static std::vector<std::string> names();
};

/// Register the network stack's and the port's metrics (reef_net_*, reef_port_*) and the
/// runtime's (metrics::register_runtime_metrics) on every shard; stop_agent_metrics() removes the
/// agent's. Shard 0.
future<> start_agent_metrics(net::device* dev);
future<> stop_agent_metrics();

}  // namespace reef::ctl
