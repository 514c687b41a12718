// Loggers: one per subsystem ("reactor", "tcp", "memcached"), each with a level that can be changed
// at run time from any shard (the control plane's log.set_level). Formatting uses fmt; a message
// below the logger's level costs one relaxed load and a branch.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace reef {

enum class log_level { error, warn, info, debug, trace };

/// "error", "warn", "info", "debug", "trace" (case-insensitive; "warning" too). Throws
/// std::invalid_argument naming the bad value.
log_level parse_log_level(std::string_view s);
std::string_view to_string(log_level l) noexcept;

class logger {
    std::string _name;
    std::atomic<log_level> _level{log_level::info};

    void do_log(log_level l, fmt::string_view fmt, fmt::format_args args) noexcept;

public:
    /// Registers the logger under `name` (names should be unique; a duplicate is still usable
    /// but set_level by name reaches all loggers of that name).
    explicit logger(std::string name);
    ~logger();
    logger(const logger&) = delete;
    logger& operator=(const logger&) = delete;

    const std::string& name() const noexcept { return _name; }
    log_level level() const noexcept { return _level.load(std::memory_order_relaxed); }
    void set_level(log_level l) noexcept { _level.store(l, std::memory_order_relaxed); }
    bool is_enabled(log_level l) const noexcept { return l <= level(); }

    template <typename... A>
    void log(log_level l, fmt::format_string<A...> f, A&&... a) noexcept {
        if (is_enabled(l)) {
            do_log(l, f, fmt::make_format_args(a...));
        }
    }
    template <typename... A>
    void error(fmt::format_string<A...> f, A&&... a) noexcept { log(log_level::error, f, std::forward<A>(a)...); }
    template <typename... A>
    void warn(fmt::format_string<A...> f, A&&... a) noexcept { log(log_level::warn, f, std::forward<A>(a)...); }
    template <typename... A>
    void info(fmt::format_string<A...> f, A&&... a) noexcept { log(log_level::info, f, std::forward<A>(a)...); }
    template <typename... A>
    void debug(fmt::format_string<A...> f, A&&... a) noexcept { log(log_level::debug, f, std::forward<A>(a)...); }
    template <typename... A>
    void trace(fmt::format_string<A...> f, A&&... a) noexcept { log(log_level::trace, f, std::forward<A>(a)...); }
};

/// The process-wide set of loggers. Thread-safe; not for hot paths.
namespace log_registry {
/// Set the level of the named logger; false if there is no such logger.
bool set_level(std::string_view name, log_level l);
/// Set every logger's level (and the level of loggers created later).
void set_all(log_level l);
/// Every logger's name and level, sorted by name.
std::vector<std::pair<std::string, log_level>> list();
/// Redirect formatted lines (for tests and for the control plane's log tail). nullptr restores
/// stderr. The sink is called from whichever shard logs; it must be thread-safe.
void set_sink(std::function<void(log_level, std::string_view line)> sink);
}  // namespace log_registry

namespace internal {
// The shard id printed in each line; -1 outside a reactor thread.
inline thread_local int log_shard_id = -1;
}  // namespace internal

/// The text of an exception for a log line or an error reply: what() for std::exception,
/// "unknown error" for anything else, "no error" for a null pointer.
std::string exception_message(const std::exception_ptr& ex);

}  // namespace reef
