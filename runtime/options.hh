// The standard runtime options every Reef program accepts, declared in one place.
//
// Each group below holds the options of one subsystem: its fields carry the defaults, and its
// register_options() adds every option to a CLI11 app with its help text and its validators, in a
// help section of its own. A group turns its parsed values into the configuration its subsystem
// takes (reactor_options -> reactor_config). runtime_options gathers the groups; a subsystem that
// gains command-line options (shards and memory, disk I/O, the network stack) adds its group there,
// and app_template and the dataplane bootstrap pick it up without change.
//
// Validation happens while CLI11 parses, so a bad value is reported by CLI11 with the option's name
// ("--task-quota-ms: Value 0 not in range ...") and app_template turns it into exit code 2.
#pragma once

#include "runtime/log.hh"
#include "runtime/reactor.hh"
#include "runtime/smp.hh"

#include <CLI/CLI.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace reef {

/// Options of the reactor that runs on each shard. The defaults are reactor_config's, so a
/// program that parses an empty command line runs the same reactor as one built from
/// reactor_config{}.
struct reactor_options {
    double task_quota_ms;         ///< --task-quota-ms: longest task batch before polling (ms)
    std::string idle_policy;      ///< --idle-policy: poll, sleep or adaptive
    unsigned idle_poll_us;        ///< --idle-poll-us: adaptive policy's polling time before sleeping
    unsigned stall_threshold_ms;  ///< --stall-threshold-ms: report a task batch running longer
    unsigned blocking_threads;    ///< --blocking-threads: syscall pool threads for run_blocking

    reactor_options();

    /// Add the options to `app` (section "Reactor options"), bound to the fields above.
    /// Call once per app; the fields must outlive the app's parsing.
    void register_options(CLI::App& app);

    /// The reactor configuration the current values describe. Throws std::invalid_argument if a
    /// value is out of range (only possible when a field was set directly rather than parsed).
    reactor_config to_reactor_config() const;
};

/// One `--log-level` value: a level for every logger (`logger` empty) or for one named logger.
struct log_level_setting {
    std::string logger;
    log_level level;
};

/// Parse "LEVEL" or "LOGGER=LEVEL". Throws std::invalid_argument naming the bad value: a level
/// parse_log_level() rejects, an empty logger name, or (when `known_loggers_only`) a logger name
/// that no registered logger has.
log_level_setting parse_log_level_setting(std::string_view s, bool known_loggers_only = true);

/// Logging options.
struct log_options {
    /// --log-level, repeatable, values also separated by commas: "LEVEL" sets every logger,
    /// "LOGGER=LEVEL" one logger. Validated at parse time (levels and logger names).
    std::vector<std::string> log_levels;

    /// Add the options to `app` (section "Logging options").
    void register_options(CLI::App& app);

    /// Apply the parsed levels: every "LEVEL" first (the last one wins, and it also becomes the
    /// level of loggers created later), then every "LOGGER=LEVEL" in order, so a per-logger
    /// setting is never undone by a global one wherever it appears on the command line.
    /// Throws std::invalid_argument on a bad value (only when the list was filled in directly).
    void apply() const;
};

/// Shards: how many, on which CPUs.
struct smp_cli_options {
    unsigned smp = 0;             ///< --smp: number of shards (0: one per CPU of the cpuset)
    std::string cpuset;           ///< --cpuset: CPUs to run on, e.g. "0-3,8" (default: all allowed)
    bool thread_affinity = true;  ///< --thread-affinity: pin each shard to its CPU

    /// Add the options to `app` (section "Shard options").
    void register_options(CLI::App& app);

    /// The smp configuration, checked against this machine: throws std::invalid_argument naming
    /// the problem (a malformed cpuset, CPUs that do not exist or are not allowed, more shards
    /// than CPUs).
    smp_options to_smp_options() const;
};

/// Parse a byte size: a whole number with an optional binary suffix K, M, G or T (e.g. "512M",
/// "4G"). Throws std::invalid_argument naming the bad value.
std::size_t parse_memory_size(const std::string& s);

/// Memory: how much the shards may use.
struct memory_cli_options {
    std::string memory;  ///< --memory: total for all shards, split evenly (default: no limit)

    /// Add the option to `app` (section "Memory options").
    void register_options(CLI::App& app);

    /// Apply the budget to the allocator for `shards` shards (memory::configure). Throws
    /// std::invalid_argument naming the value when it is malformed or below the per-shard minimum.
    /// Does nothing when --memory was not given.
    void apply(unsigned shards) const;
};

/// Disk I/O: which kernel interface carries it and what the disk can take. Both options take
/// effect through io::set_io_config() while the command line is parsed, so every shard's disk
/// queue (created on its first disk request) uses them.
struct io_cli_options {
    std::string reactor_backend = "auto";  ///< --reactor-backend: io_uring, linux-aio or auto
    std::string io_properties_file;        ///< --io-properties-file: the disk model iotune wrote

    /// Add the options to `app` (section "Disk I/O options"). A malformed properties file is a
    /// parse error naming the line and the field (so start-up fails with exit code 2).
    void register_options(CLI::App& app);

    /// Parse the current values and install them with io::set_io_config(). Throws
    /// std::invalid_argument (bad backend name) or io::io_properties_error.
    void apply() const;
};

/// Every standard runtime option. Register them all on an app with register_options(), parse,
/// then read the groups.
struct runtime_options {
    reactor_options reactor;
    smp_cli_options smp;
    memory_cli_options memory;
    log_options log;
    io_cli_options io;

    void register_options(CLI::App& app);
};

}  // namespace reef
