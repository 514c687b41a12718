// The network options every networked Reef program accepts, and starting the chosen stack on
// every shard. Apps never name a backend: they register these options, call
// start_network_stack() once from shard 0, and use listen()/connect()/make_udp_channel().
#pragma once

#include "runtime/future.hh"

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace reef::net {

class network_stack;

struct network_stack_options {
    /// --network-stack: "posix" (kernel sockets) or "native" (Reef's TCP/IP over a net::device).
    std::string stack = "posix";

    /// Add the options to `app` (section "Network options"). The value is validated against the
    /// registered stacks while parsing.
    void register_options(CLI::App& app);
};

/// Builds a stack instance on the calling shard.
using network_stack_factory = std::function<future<std::unique_ptr<network_stack>>(const network_stack_options&)>;

/// Make a stack selectable by name (the posix stack registers itself as "posix"; the native stack
/// as "native" when linked in). Registration happens before options are parsed (static
/// initialisation or early in main).
void register_network_stack(std::string name, network_stack_factory factory);
/// Names of the registered stacks, sorted.
std::vector<std::string> registered_network_stacks();

/// Create the stack named in `opts` on every shard (set_local_stack) and return when all are up.
/// Call from shard 0 after smp started. Throws std::invalid_argument for an unknown name.
/// Registers an at_exit hook on every shard that destroys the stack after the app's own hooks.
future<> start_network_stack(network_stack_options opts);

}  // namespace reef::net
