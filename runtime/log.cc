#include "runtime/log.hh"

#include <fmt/chrono.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <unistd.h>

namespace reef {

namespace {

struct registry {
    std::mutex mutex;
    std::multimap<std::string, logger*, std::less<>> loggers;
    bool has_default = false;
    log_level default_level = log_level::info;
    std::function<void(log_level, std::string_view)> sink;
};

registry& reg() {
    static registry* r = new registry();  // never destroyed: loggers outlive static destruction order
    return *r;
}

}  // namespace

log_level parse_log_level(std::string_view s) {
    std::string l(s);
    std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
    if (l == "error") return log_level::error;
    if (l == "warn" || l == "warning") return log_level::warn;
    if (l == "info") return log_level::info;
    if (l == "debug") return log_level::debug;
    if (l == "trace") return log_level::trace;
    throw std::invalid_argument(fmt::format("invalid log level '{}' (expected error, warn, info, debug or trace)", s));
}

std::string_view to_string(log_level l) noexcept {
    switch (l) {
    case log_level::error: return "error";
    case log_level::warn: return "warn";
    case log_level::info: return "info";
    case log_level::debug: return "debug";
    case log_level::trace: return "trace";
    }
    return "?";
}

logger::logger(std::string name) : _name(std::move(name)) {
    auto& r = reg();
    std::lock_guard g(r.mutex);
    if (r.has_default) {
        _level.store(r.default_level, std::memory_order_relaxed);
    }
    r.loggers.emplace(_name, this);
}

logger::~logger() {
    auto& r = reg();
    std::lock_guard g(r.mutex);
    auto [b, e] = r.loggers.equal_range(_name);
    for (auto it = b; it != e; ++it) {
        if (it->second == this) {
            r.loggers.erase(it);
            break;
        }
    }
}

void logger::do_log(log_level l, fmt::string_view f, fmt::format_args args) noexcept {
    try {
        static constexpr const char* names[] = {"ERROR", "WARN ", "INFO ", "DEBUG", "TRACE"};
        fmt::memory_buffer buf;
        auto now = std::chrono::system_clock::now();
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
        fmt::format_to(std::back_inserter(buf), "{:%Y-%m-%d %H:%M:%S}.{:03d} {} ",
                       fmt::gmtime(std::chrono::system_clock::to_time_t(now)), ms, names[int(l)]);
        if (internal::log_shard_id >= 0) {
            fmt::format_to(std::back_inserter(buf), "[shard {}] ", internal::log_shard_id);
        }
        fmt::format_to(std::back_inserter(buf), "{} - ", _name);
        fmt::vformat_to(std::back_inserter(buf), f, args);
        buf.push_back('\n');
        auto& r = reg();
        std::function<void(log_level, std::string_view)> sink;
        {
            std::lock_guard g(r.mutex);
            sink = r.sink;
        }
        if (sink) {
            sink(l, std::string_view(buf.data(), buf.size()));
            return;
        }
        // One write per line keeps lines from different shards whole.
        const char* p = buf.data();
        size_t left = buf.size();
        while (left > 0) {
            ssize_t n = ::write(STDERR_FILENO, p, left);
            if (n <= 0) {
                break;
            }
            p += n;
            left -= size_t(n);
        }
    } catch (...) {
        // Logging must never take the process down (a format error, an allocation failure).
    }
}

namespace log_registry {

bool set_level(std::string_view name, log_level l) {
    auto& r = reg();
    std::lock_guard g(r.mutex);
    auto [b, e] = r.loggers.equal_range(name);
    bool found = b != e;
    for (auto it = b; it != e; ++it) {
        it->second->set_level(l);
    }
    return found;
}

void set_all(log_level l) {
    auto& r = reg();
    std::lock_guard g(r.mutex);
    r.has_default = true;
    r.default_level = l;
    for (auto& [n, lg] : r.loggers) {
        lg->set_level(l);
    }
}

std::vector<std::pair<std::string, log_level>> list() {
    auto& r = reg();
    std::lock_guard g(r.mutex);
    std::vector<std::pair<std::string, log_level>> out;
    for (auto& [n, lg] : r.loggers) {
        if (out.empty() || out.back().first != n) {
            out.emplace_back(n, lg->level());
        }
    }
    return out;
}

void set_sink(std::function<void(log_level, std::string_view)> sink) {
    auto& r = reg();
    std::lock_guard g(r.mutex);
    r.sink = std::move(sink);
}

}  // namespace log_registry

std::string exception_message(const std::exception_ptr& ex) {
    if (!ex) {
        return "no error";
    }
    try {
        std::rethrow_exception(ex);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown error";
    }
}

}  // namespace reef
