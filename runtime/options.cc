#include "runtime/options.hh"

#include "runtime/io/io_properties.hh"
#include "runtime/memory.hh"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace reef {

namespace {

// Upper bounds keep conversions to std::chrono durations far from overflow and catch unit
// mistakes (a quota given in microseconds); they are well above any sensible setting.
constexpr double max_task_quota_ms = 60'000;
constexpr unsigned max_idle_poll_us = 10'000'000;
constexpr unsigned max_stall_threshold_ms = 3'600'000;
constexpr unsigned max_blocking_threads = 1024;

// The quota timer has microsecond granularity: a shorter quota would round to zero.
constexpr double min_task_quota_ms = 0.001;

}  // namespace

reactor_options::reactor_options() {
    reactor_config defaults;
    task_quota_ms = double(defaults.task_quota.count()) / 1000.0;
    idle_policy = to_string(defaults.idle);
    idle_poll_us = unsigned(defaults.idle_poll.count());
    stall_threshold_ms = unsigned(defaults.stall_threshold.count());
    blocking_threads = defaults.blocking_threads;
}

void reactor_options::register_options(CLI::App& app) {
    const char* section = "Reactor options";
    app.add_option("--task-quota-ms", task_quota_ms,
                   "Longest a batch of tasks runs before the reactor polls timers, signals and I/O "
                   "(ms); need_preempt() turns true when it is used up")
        ->check(CLI::Range(min_task_quota_ms, max_task_quota_ms))
        ->capture_default_str()
        ->group(section);
    app.add_option("--idle-policy", idle_policy,
                   "What the reactor does with nothing to run: poll (lowest latency, a core at 100%), "
                   "sleep (on epoll until woken), adaptive (poll for --idle-poll-us, then sleep)")
        ->check(CLI::IsMember({"poll", "sleep", "adaptive"}))
        ->capture_default_str()
        ->group(section);
    app.add_option("--idle-poll-us", idle_poll_us,
                   "With --idle-policy adaptive: how long (us) an idle reactor keeps polling before it sleeps")
        ->check(CLI::Range(0u, max_idle_poll_us))
        ->capture_default_str()
        ->group(section);
    app.add_option("--stall-threshold-ms", stall_threshold_ms,
                   "Log a symbolized backtrace when a task runs longer than this without returning to "
                   "the reactor (ms)")
        ->check(CLI::Range(1u, max_stall_threshold_ms))
        ->capture_default_str()
        ->group(section);
    app.add_option("--blocking-threads", blocking_threads,
                   "Threads per shard that run blocking system calls for run_blocking()")
        ->check(CLI::Range(1u, max_blocking_threads))
        ->capture_default_str()
        ->group(section);
}

reactor_config reactor_options::to_reactor_config() const {
    if (!(task_quota_ms >= min_task_quota_ms && task_quota_ms <= max_task_quota_ms)) {
        throw std::invalid_argument(fmt::format("task quota {} ms out of range", task_quota_ms));
    }
    if (stall_threshold_ms == 0 || blocking_threads == 0) {
        throw std::invalid_argument("stall threshold and blocking threads must be positive");
    }
    reactor_config cfg;
    cfg.task_quota = std::chrono::microseconds(std::llround(task_quota_ms * 1000.0));
    cfg.idle = parse_idle_policy(idle_policy);
    cfg.idle_poll = std::chrono::microseconds(idle_poll_us);
    cfg.stall_threshold = std::chrono::milliseconds(stall_threshold_ms);
    cfg.blocking_threads = blocking_threads;
    return cfg;
}

log_level_setting parse_log_level_setting(std::string_view s, bool known_loggers_only) {
    auto eq = s.find('=');
    if (eq == std::string_view::npos) {
        return {std::string(), parse_log_level(s)};
    }
    auto name = s.substr(0, eq);
    if (name.empty()) {
        throw std::invalid_argument(fmt::format("invalid log level setting '{}' (expected LEVEL or LOGGER=LEVEL)", s));
    }
    auto level = parse_log_level(s.substr(eq + 1));
    if (known_loggers_only) {
        auto loggers = log_registry::list();
        bool found = false;
        std::string names;
        for (auto& [n, l] : loggers) {
            found |= n == name;
            names += names.empty() ? n : ", " + n;
        }
        if (!found) {
            throw std::invalid_argument(fmt::format("unknown logger '{}' (known loggers: {})", name, names));
        }
    }
    return {std::string(name), level};
}

void log_options::register_options(CLI::App& app) {
    // The validator runs once per value (after the comma split), so the error names the bad one.
    CLI::Validator setting(
        [](std::string& value) -> std::string {
            try {
                (void)parse_log_level_setting(value);
            } catch (const std::invalid_argument& e) {
                return e.what();
            }
            return {};
        },
        "LEVEL|LOGGER=LEVEL");
    app.add_option("--log-level", log_levels,
                   "Log level (error, warn, info, debug, trace) for every logger (LEVEL) or for one "
                   "(LOGGER=LEVEL); repeatable, or comma-separated. Default: info")
        ->check(setting)
        ->type_size(1)
        ->allow_extra_args(false)
        ->delimiter(',')
        ->group("Logging options");
}

void log_options::apply() const {
    std::vector<log_level_setting> settings;
    settings.reserve(log_levels.size());
    for (auto& s : log_levels) {
        settings.push_back(parse_log_level_setting(s));
    }
    for (auto& s : settings) {
        if (s.logger.empty()) {
            log_registry::set_all(s.level);
        }
    }
    for (auto& s : settings) {
        if (!s.logger.empty()) {
            log_registry::set_level(s.logger, s.level);
        }
    }
}

void smp_cli_options::register_options(CLI::App& app) {
    const char* section = "Shard options";
    app.add_option("--smp", smp, "Number of shards (reactor threads); 0 means one per CPU of the cpuset")
        ->capture_default_str()
        ->check(CLI::Range(0u, 4096u))
        ->group(section);
    app.add_option("--cpuset", cpuset, "CPUs to run shards on, e.g. 0-3,8 (default: every CPU this process may use)")
        ->check([](const std::string& v) -> std::string {
            try {
                parse_cpuset(v);
                return {};
            } catch (const std::invalid_argument& e) {
                return e.what();
            }
        })
        ->group(section);
    app.add_option("--thread-affinity", thread_affinity, "Pin each shard's thread to its CPU")
        ->capture_default_str()
        ->group(section);
}

smp_options smp_cli_options::to_smp_options() const {
    smp_options o;
    o.smp = smp;
    if (!cpuset.empty()) {
        o.cpuset = parse_cpuset(cpuset);
    }
    o.thread_affinity = thread_affinity;
    resolve_shard_cpus(o);  // throws with a message naming the option
    return o;
}

std::size_t parse_memory_size(const std::string& s) {
    auto bad = [&] {
        return std::invalid_argument(fmt::format("invalid memory size '{}' (expected a number with an optional K, M, G "
                                                 "or T suffix, e.g. 512M)", s));
    };
    std::size_t i = 0;
    std::size_t v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        if (v > (SIZE_MAX - 9) / 10) {
            throw bad();
        }
        v = v * 10 + std::size_t(s[i] - '0');
        ++i;
    }
    if (i == 0) {
        throw bad();
    }
    unsigned shift = 0;
    if (i < s.size()) {
        switch (s[i]) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        default: throw bad();
        }
        ++i;
        if (i < s.size() && (s[i] == 'i' || s[i] == 'I')) {
            ++i;
        }
        if (i < s.size() && (s[i] == 'b' || s[i] == 'B')) {
            ++i;
        }
    }
    if (i != s.size() || (shift && v > (SIZE_MAX >> shift))) {
        throw bad();
    }
    return v << shift;
}

void memory_cli_options::register_options(CLI::App& app) {
    app.add_option("--memory", memory,
                   "Memory for all shards together, split evenly, e.g. 4G (default: no limit); an allocation over a "
                   "shard's share first asks caches to give memory back, then fails")
        ->check([](const std::string& v) -> std::string {
            try {
                parse_memory_size(v);
                return {};
            } catch (const std::invalid_argument& e) {
                return e.what();
            }
        })
        ->group("Memory options");
}

void memory_cli_options::apply(unsigned shards) const {
    if (memory.empty()) {
        return;
    }
    try {
        memory::configure(parse_memory_size(memory), shards);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(fmt::format("--memory {}: {}", memory, e.what()));
    }
}

void io_cli_options::register_options(CLI::App& app) {
    const char* section = "Disk I/O options";
    // Installed while parsing (each option's callback), so the shards started next see them.
    app.add_option_function<std::string>(
           "--reactor-backend",
           [this](const std::string& v) {
               reactor_backend = v;
               apply();
           },
           "Kernel interface for disk I/O: io_uring, linux-aio, or auto (io_uring where the kernel allows it, "
           "else linux-aio). A backend that cannot start falls back to the next, with a log line")
        ->check(CLI::IsMember({"io_uring", "linux-aio", "auto"}))
        ->default_str(reactor_backend)
        ->group(section);
    app.add_option_function<std::string>(
           "--io-properties-file",
           [this](const std::string& v) {
               io_properties_file = v;
               apply();
           },
           "The disk's measured capacity (YAML or JSON, as apps/iotune writes it); the I/O scheduler limits "
           "dispatch to it. Without it: no rate limit, 32 requests in flight per shard")
        ->check([](const std::string& v) -> std::string {
            try {
                (void)io::load_io_properties(v);
                return {};
            } catch (const std::exception& e) {
                return e.what();
            }
        })
        ->group(section);
}

void io_cli_options::apply() const {
    io::io_config cfg;
    cfg.backend = io::parse_backend_choice(reactor_backend);
    if (!io_properties_file.empty()) {
        cfg.disk = io::load_io_properties(io_properties_file);
        cfg.properties_origin = io_properties_file;
    }
    io::set_io_config(std::move(cfg));
}

void runtime_options::register_options(CLI::App& app) {
    reactor.register_options(app);
    smp.register_options(app);
    memory.register_options(app);
    log.register_options(app);
    io.register_options(app);
}

}  // namespace reef
