#include "stack/net/resolve.hh"

#include "runtime/coroutine.hh"
#include "runtime/reactor.hh"
#include "runtime/syscall_pool.hh"

#include <netdb.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace reef::net {

namespace {

class resolve_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "reef.resolve"; }
    std::string message(int ev) const override { return ::gai_strerror(ev); }
};

[[noreturn]] void throw_resolve_error(const std::string& host, int eai) {
    if (eai == EAI_SYSTEM) {
        throw std::system_error(errno, std::system_category(), "resolve(" + host + ")");
    }
    throw std::system_error(eai, resolve_category(), "resolve(" + host + ")");
}

int to_af(std::optional<inet_address::family> f) { return f ? static_cast<int>(*f) : AF_UNSPEC; }

// A numeric address needs no lookup. Only strings that could be one are tried, so names do not
// pay for an exception.
std::optional<inet_address> numeric(const std::string& host) {
    bool maybe = !host.empty() &&
                 (host.find(':') != std::string::npos ||
                  std::all_of(host.begin(), host.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; }));
    if (!maybe) {
        return std::nullopt;
    }
    try {
        return inet_address::parse(host);
    } catch (const std::invalid_argument&) {
        return std::nullopt;  // let getaddrinfo decide (it accepts forms like "127.1")
    }
}

// On a syscall pool thread.
std::vector<inet_address> blocking_lookup(const std::string& host, int af) {
    ::addrinfo hints{};
    hints.ai_family = af;
    hints.ai_socktype = SOCK_STREAM;  // one entry per address rather than one per socket type
    // No AI_ADDRCONFIG: it ignores loopback, so "localhost" would fail on a host whose only
    // interface is lo (containers, network namespaces).
    ::addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0) {
        throw_resolve_error(host, rc);
    }
    std::vector<inet_address> out;
    for (auto* ai = res; ai; ai = ai->ai_next) {
        std::optional<inet_address> a;
        if (ai->ai_family == AF_INET) {
            a = inet_address(reinterpret_cast<const ::sockaddr_in*>(ai->ai_addr)->sin_addr);
        } else if (ai->ai_family == AF_INET6) {
            auto* sin6 = reinterpret_cast<const ::sockaddr_in6*>(ai->ai_addr);
            a = inet_address(sin6->sin6_addr, sin6->sin6_scope_id);
        }
        if (a && std::find(out.begin(), out.end(), *a) == out.end()) {
            out.push_back(*a);
        }
    }
    ::freeaddrinfo(res);
    if (out.empty()) {
        throw_resolve_error(host, EAI_NODATA);
    }
    return out;
}

future<std::vector<inet_address>> lookup(std::string host, std::optional<inet_address::family> f) {
    if (host.empty()) {
        throw_resolve_error(host, EAI_NONAME);
    }
    if (auto a = numeric(host)) {
        if (f && a->get_family() != *f) {
            throw_resolve_error(host, EAI_ADDRFAMILY);
        }
        co_return std::vector<inet_address>{*a};
    }
    // The lambda is built outside the co_await expression (GCC 12 bug with captures there).
    auto fut = engine().run_blocking([host = std::move(host), af = to_af(f)] { return blocking_lookup(host, af); });
    co_return co_await std::move(fut);
}

future<inet_address> first(std::string host, std::optional<inet_address::family> f) {
    auto fut = lookup(std::move(host), f);
    auto all = co_await std::move(fut);
    co_return all.front();
}

}  // namespace

const std::error_category& resolve_category() noexcept {
    static const resolve_category_impl cat;
    return cat;
}

future<inet_address> resolve(std::string host) { return first(std::move(host), std::nullopt); }

future<inet_address> resolve(std::string host, inet_address::family f) { return first(std::move(host), f); }

future<std::vector<inet_address>> resolve_all(std::string host) { return lookup(std::move(host), std::nullopt); }

}  // namespace reef::net
