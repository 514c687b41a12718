// app_template: the skeleton of a runtime-only Reef program. It owns the command line (the standard
// runtime options of runtime/options.hh plus the app's own), starts the shards (--smp, --cpuset),
// runs the app's main coroutine on shard 0 and turns the outcome into the process exit code:
//
//     int main(int argc, char** argv) {
//         reef::app_template app("greeter", "Says hello");
//         std::string who = "world";
//         app.options().add_option("--who", who, "Whom to greet")->capture_default_str();
//         return app.run(argc, argv, [&]() -> reef::future<int> {
//             fmt::print("hello {}\n", who);
//             co_return 0;
//         });
//     }
//
// The full process bootstrap (reef::app: shards, memory, network stack, DPDK, control agent) lives
// in dataplane/ and builds on this class; app_template is what a runtime-only program needs.
#pragma once

#include "runtime/future.hh"
#include "runtime/options.hh"
#include "runtime/reactor.hh"
#include "runtime/smp.hh"

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace reef {

class app_template {
    CLI::App _app;
    runtime_options _opts;
    std::vector<std::function<void(smp_options&, reactor_config&)>> _before_start;
    std::vector<std::function<void()>> _after_stop;

public:
    /// `name` is the program name shown in --help and error messages; `description` its first
    /// help line. The standard runtime options are registered here.
    app_template(std::string name, std::string description);
    app_template(const app_template&) = delete;
    app_template& operator=(const app_template&) = delete;

    /// The CLI11 app: add the program's own options (and their validators) before run(). Their
    /// values are read through the variables they are bound to, once main runs.
    CLI::App& options() noexcept { return _app; }

    /// The standard runtime options: their defaults before run(), the parsed values once main runs.
    const runtime_options& configuration() const noexcept { return _opts; }

    /// Run `hook` after the options are parsed and before the shards start, on the thread that
    /// becomes shard 0, with the shard and reactor configuration about to be used (it may amend
    /// them, e.g. chain a shard_init). A hook that throws std::exception stops the program:
    /// its message is printed and run() returns 2. Hooks run in the order they were added.
    /// This is how the dataplane bootstrap starts DPDK's EAL on the main thread.
    void add_before_start(std::function<void(smp_options&, reactor_config&)> hook);
    /// Run `hook` after the shards have stopped (in reverse order of adding), e.g. to release
    /// process-wide resources started by a before-start hook. Runs even when main failed.
    void add_after_stop(std::function<void()> hook);

    /// Parse the command line, start the shards (the calling thread becomes shard 0), then run
    /// `main` on shard 0. Too many shards or a cpuset naming missing CPUs: message, exit code 2.
    ///
    /// Returns:
    ///  - 0 after printing every option with its default, for --help;
    ///  - 2 after printing CLI11's error (which names the option) on stderr, for an unknown
    ///    option, a malformed or out-of-range value, or a missing required option;
    ///  - main's value when its future resolves (the reactor then runs its at_exit hooks);
    ///  - 1 if main throws or its future fails (the exception is logged);
    ///  - 0 when SIGINT or SIGTERM stops the reactor first (at_exit hooks run; main's future is
    ///    abandoned, so main should register an at_exit hook to finish its work).
    ///
    /// Log levels given with --log-level are applied before the reactor starts. The reactor must
    /// not already exist on this thread; `main` is called on it, once.
    int run(int argc, char** argv, std::function<future<int>()> main);
};

}  // namespace reef
