#include "stack/net/stack_options.hh"

#include "runtime/coroutine.hh"
#include "runtime/reactor.hh"
#include "runtime/smp.hh"
#include "stack/net/api.hh"
#include "stack/posix/posix_stack.hh"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>

namespace reef::net {

namespace {

// Written before shards start (registration, option parsing) and only read afterwards, from
// every shard; the mutex covers registrations made while shards run.
struct stack_registry {
    std::mutex mutex;
    std::map<std::string, network_stack_factory> factories;

    stack_registry() {
        factories.emplace("posix", [](const network_stack_options&) {
            return make_ready_future<std::unique_ptr<network_stack>>(make_posix_stack());
        });
    }
};

stack_registry& registry() {
    static stack_registry r;
    return r;
}

network_stack_factory find_factory(const std::string& name) {
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.factories.find(name);
    if (it == r.factories.end()) {
        std::string known;
        for (auto& [n, f] : r.factories) {
            known += known.empty() ? n : ", " + n;
        }
        throw std::invalid_argument(fmt::format("unknown network stack '{}' (known: {})", name, known));
    }
    return it->second;
}

// One shard's part of start_network_stack (a function, not a coroutine lambda: its parameters
// live in the coroutine frame).
future<> start_local_stack(network_stack_factory factory, network_stack_options opts) {
    auto stack = co_await factory(opts);
    set_local_stack(std::move(stack));
    // Registered now, so it runs after the hooks the app registers later (hooks run last
    // first): the app closes its sockets before the stack goes.
    engine().at_exit([] {
        return local_stack().stop().then_wrapped([](future<> f) {
            f.ignore_ready_future();
            reset_local_stack();
        });
    });
}

}  // namespace

void register_network_stack(std::string name, network_stack_factory factory) {
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    r.factories[std::move(name)] = std::move(factory);
}

std::vector<std::string> registered_network_stacks() {
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    std::vector<std::string> names;
    for (auto& [n, f] : r.factories) {
        names.push_back(n);
    }
    return names;
}

void network_stack_options::register_options(CLI::App& app) {
    app.add_option("--network-stack", stack,
                   "Network stack: posix (kernel sockets) or native (Reef's TCP/IP over DPDK or a test device)")
        ->group("Network options")
        ->capture_default_str()
        ->check([](const std::string& v) -> std::string {
            auto names = registered_network_stacks();
            if (std::find(names.begin(), names.end(), v) != names.end()) {
                return {};
            }
            return fmt::format("unknown network stack '{}' (known: {})", v, fmt::join(names, ", "));
        });
}

future<> start_network_stack(network_stack_options opts) {
    auto factory = find_factory(opts.stack);  // throws before any shard changes
    // Named first: GCC 12 destroys a temporary closure with non-trivial captures inside a
    // co_await expression twice (runtime/coroutine.hh).
    auto started = smp::invoke_on_all([factory, opts] { return start_local_stack(factory, opts); });
    co_await std::move(started);
}

}  // namespace reef::net
