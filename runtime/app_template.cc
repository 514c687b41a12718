#include "runtime/app_template.hh"

#include "runtime/log.hh"
#include "runtime/reactor.hh"
#include "runtime/smp.hh"

#include <exception>
#include <iostream>
#include <utility>

namespace reef {

static logger applog("app");

app_template::app_template(std::string name, std::string description)
    : _app(std::move(description), std::move(name)) {
    _opts.register_options(_app);
}

int app_template::run(int argc, char** argv, std::function<future<int>()> main) {
    try {
        _app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version are "errors" with exit code 0: CLI11 prints the text on stdout.
        // Every real error is printed by CLI11 (with the option's name) on stderr and becomes the
        // usage-error exit code 2, whatever CLI11's own code for the error kind is.
        int code = _app.exit(e, std::cout, std::cerr);
        return code == 0 ? 0 : 2;
    }
    reactor_config cfg;
    smp_options smp_opts;
    try {
        _opts.log.apply();
        cfg = _opts.reactor.to_reactor_config();
        // Checked against the machine here, not by CLI11: "--smp 64" is well-formed but too many.
        smp_opts = _opts.smp.to_smp_options();
        _opts.memory.apply(unsigned(resolve_shard_cpus(smp_opts).size()));
    } catch (const std::exception& e) {
        std::cerr << _app.get_name() << ": " << e.what() << "\n";
        return 2;
    }
    cfg.handle_termination_signals = true;
    std::size_t started = 0;
    auto run_after_stop = [&] {
        for (std::size_t i = _after_stop.size(); i-- > 0;) {
            _after_stop[i]();
        }
    };
    try {
        for (; started < _before_start.size(); ++started) {
            _before_start[started](smp_opts, cfg);
        }
    } catch (const std::exception& e) {
        std::cerr << _app.get_name() << ": " << e.what() << "\n";
        run_after_stop();
        return 2;
    }
    int code;
    try {
        code = smp::run(smp_opts, cfg, std::move(main));
    } catch (const std::exception& e) {
        // A shard could not start (no epoll, no POSIX timer, a reactor already on this thread).
        applog.error("{}: cannot start: {}", _app.get_name(), e.what());
        code = 1;
    }
    run_after_stop();
    return code;
}

void app_template::add_before_start(std::function<void(smp_options&, reactor_config&)> hook) {
    _before_start.push_back(std::move(hook));
}

void app_template::add_after_stop(std::function<void()> hook) { _after_stop.push_back(std::move(hook)); }

}  // namespace reef
