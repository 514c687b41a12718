#include "stack/net/socket_address.hh"

#include <arpa/inet.h>
#include <net/if.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <utility>

namespace reef::net {

namespace {

constexpr std::size_t sun_path_offset = offsetof(::sockaddr_un, sun_path);
constexpr std::size_t sun_path_size = sizeof(::sockaddr_un::sun_path);

// Parsing helpers report what is wrong through `err` instead of throwing, so socket_address::parse
// can wrap the reason in a message quoting its own (larger) input.

std::optional<std::uint32_t> parse_decimal(std::string_view s, std::uint64_t max) {
    if (s.empty() || s.size() > 10) {
        return std::nullopt;
    }
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v > max) {
        return std::nullopt;
    }
    return static_cast<std::uint32_t>(v);
}

std::optional<inet_address> parse_inet(std::string_view s, std::string& err) {
    if (s.empty()) {
        err = "empty address";
        return std::nullopt;
    }
    if (s.find(':') == std::string_view::npos) {
        if (s.find('%') != std::string_view::npos) {
            err = "a scope (%...) is only allowed on IPv6 addresses";
            return std::nullopt;
        }
        std::string z(s);  // inet_pton wants a NUL-terminated string
        ::in_addr a;
        if (::inet_pton(AF_INET, z.c_str(), &a) != 1) {
            err = "not an IPv4 or IPv6 address";
            return std::nullopt;
        }
        return inet_address(a);
    }
    std::string_view addr = s;
    std::uint32_t scope = 0;
    if (auto pct = s.find('%'); pct != std::string_view::npos) {
        addr = s.substr(0, pct);
        std::string_view sc = s.substr(pct + 1);
        if (sc.empty()) {
            err = "empty scope after '%'";
            return std::nullopt;
        }
        if (sc.front() >= '0' && sc.front() <= '9') {
            auto v = parse_decimal(sc, UINT32_MAX);
            if (!v) {
                err = fmt::format("invalid scope '{}' (an interface name or index 0-4294967295)", sc);
                return std::nullopt;
            }
            scope = *v;
        } else {
            std::string name(sc);
            scope = ::if_nametoindex(name.c_str());
            if (scope == 0) {
                err = fmt::format("unknown interface '{}'", sc);
                return std::nullopt;
            }
        }
    }
    std::string z(addr);
    ::in6_addr a6;
    if (::inet_pton(AF_INET6, z.c_str(), &a6) != 1) {
        err = "not a valid IPv6 address";
        return std::nullopt;
    }
    return inet_address(a6, scope);
}

std::optional<socket_address> parse_unix(std::string_view path, std::string& err) {
    if (path.empty()) {
        err = "empty unix socket path";
        return std::nullopt;
    }
    socket_address sa;
    ::sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::size_t len;
    if (path.front() == '@') {
        // Abstract namespace: a leading NUL, then exactly the name's bytes (no terminator; the
        // length tells the kernel where the name ends, and NULs inside it are part of the name).
        std::string_view name = path.substr(1);
        if (name.empty()) {
            err = "empty abstract unix socket name";
            return std::nullopt;
        }
        if (name.size() > sun_path_size - 1) {
            err = fmt::format("abstract unix socket name too long ({} bytes, max {})", name.size(), sun_path_size - 1);
            return std::nullopt;
        }
        un.sun_path[0] = '\0';
        std::memcpy(un.sun_path + 1, name.data(), name.size());
        len = sun_path_offset + 1 + name.size();
    } else {
        if (path.find('\0') != std::string_view::npos) {
            err = "unix socket path contains a NUL byte";
            return std::nullopt;
        }
        // The path and its terminating NUL must fit.
        if (path.size() > sun_path_size - 1) {
            err = fmt::format("unix socket path too long ({} bytes, max {})", path.size(), sun_path_size - 1);
            return std::nullopt;
        }
        std::memcpy(un.sun_path, path.data(), path.size());
        len = sun_path_offset + path.size() + 1;
    }
    return socket_address(reinterpret_cast<const ::sockaddr*>(&un), static_cast<::socklen_t>(len));
}

std::optional<std::uint16_t> parse_port(std::string_view s, std::string& err) {
    if (s.empty()) {
        err = "missing port after ':'";
        return std::nullopt;
    }
    if (!std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        err = fmt::format("port '{}' is not a number 0-65535", s);
        return std::nullopt;
    }
    // Leading zeros are harmless ("080" is 80); more than ten digits is out of range anyway.
    auto v = parse_decimal(s, 65535);
    if (!v) {
        err = "port out of range 0-65535";
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(*v);
}

std::optional<socket_address> parse_socket_address(std::string_view s, std::string& err) {
    if (s.empty()) {
        err = "empty address";
        return std::nullopt;
    }
    if (s.starts_with("unix:")) {
        return parse_unix(s.substr(5), err);
    }
    std::string_view host, port;
    if (s.front() == '[') {
        auto close = s.find(']');
        if (close == std::string_view::npos) {
            err = "missing ']' after an IPv6 address";
            return std::nullopt;
        }
        host = s.substr(1, close - 1);
        std::string_view rest = s.substr(close + 1);
        if (rest.empty()) {
            err = "missing port (expected [address]:port)";
            return std::nullopt;
        }
        if (rest.front() != ':') {
            err = "expected ':' and a port after ']'";
            return std::nullopt;
        }
        port = rest.substr(1);
        auto a = parse_inet(host, err);
        if (!a) {
            return std::nullopt;
        }
        if (!a->is_ipv6()) {
            err = "brackets are only for IPv6 addresses";
            return std::nullopt;
        }
        auto p = parse_port(port, err);
        if (!p) {
            return std::nullopt;
        }
        return socket_address(*a, *p);
    }
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) {
        err = "missing port (expected address:port)";
        return std::nullopt;
    }
    if (s.find(':') != colon) {
        err = "an IPv6 address with a port must be in brackets, e.g. [::1]:80";
        return std::nullopt;
    }
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    auto a = parse_inet(host, err);
    if (!a) {
        return std::nullopt;
    }
    auto p = parse_port(port, err);
    if (!p) {
        return std::nullopt;
    }
    return socket_address(*a, *p);
}

}  // namespace

// boost::hash_combine's mixing.
static void hash_combine(std::size_t& seed, std::size_t v) noexcept {
    seed ^= v + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2);
}

// The name of a unix address without allocating: (abstract?, its bytes). An unnamed socket gives
// (false, ""). A pathname stops at its terminator, which the kernel may or may not count in the
// length, so both forms of the same path compare equal.
static std::pair<bool, std::string_view> unix_name(const socket_address& a) noexcept {
    const auto& un = reinterpret_cast<const ::sockaddr_un&>(*a.as_posix_sockaddr());
    if (!a.is_unix() || a.length() <= sun_path_offset) {
        return {false, {}};
    }
    std::size_t n = std::min<std::size_t>(a.length() - sun_path_offset, sun_path_size);
    if (un.sun_path[0] == '\0') {
        return {true, std::string_view(un.sun_path + 1, n - 1)};
    }
    return {false, std::string_view(un.sun_path, ::strnlen(un.sun_path, n))};
}

// ------------------------------------------------------------------------------------------------
// inet_address

// Every constructor zeroes the whole union first, so the bytes past an IPv4 address are defined
// (comparisons and hashes only look at size() bytes, but copies of the union stay clean).
inet_address::inet_address() noexcept : _in6{} {}

inet_address::inet_address(family f) noexcept : _family(f), _in6{} {}

inet_address::inet_address(const ::in_addr& a) noexcept : _family(family::inet), _in6{} { _in = a; }

inet_address::inet_address(const ::in6_addr& a, std::uint32_t scope) noexcept
    : _family(family::inet6), _in6(a), _scope(scope) {}

inet_address inet_address::from_ipv4(std::uint32_t host_order) noexcept {
    ::in_addr a;
    a.s_addr = htonl(host_order);
    return inet_address(a);
}

inet_address inet_address::parse(std::string_view s) {
    std::string err;
    auto a = parse_inet(s, err);
    if (!a) {
        throw std::invalid_argument(fmt::format("invalid address '{}': {}", s, err));
    }
    return *a;
}

std::uint32_t inet_address::ipv4_host_order() const noexcept { return ntohl(_in.s_addr); }

bool inet_address::is_any() const noexcept {
    return is_ipv4() ? _in.s_addr == htonl(INADDR_ANY) : IN6_IS_ADDR_UNSPECIFIED(&_in6);
}

bool inet_address::is_loopback() const noexcept {
    return is_ipv4() ? (ipv4_host_order() >> 24) == 127 : IN6_IS_ADDR_LOOPBACK(&_in6);
}

std::string inet_address::to_string() const {
    char buf[INET6_ADDRSTRLEN];
    ::inet_ntop(static_cast<int>(_family), data(), buf, sizeof(buf));
    if (is_ipv6() && _scope) {
        return fmt::format("{}%{}", buf, _scope);
    }
    return buf;
}

bool operator==(const inet_address& a, const inet_address& b) noexcept {
    return a._family == b._family && a._scope == b._scope && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

std::strong_ordering operator<=>(const inet_address& a, const inet_address& b) noexcept {
    if (auto c = a._family <=> b._family; c != 0) {
        return c;
    }
    if (int c = std::memcmp(a.data(), b.data(), a.size()); c != 0) {
        return c < 0 ? std::strong_ordering::less : std::strong_ordering::greater;
    }
    return a._scope <=> b._scope;
}

// ------------------------------------------------------------------------------------------------
// socket_address

socket_address::socket_address() noexcept : _storage{}, _len(sizeof(::sockaddr_in)) { _in.sin_family = AF_INET; }

socket_address::socket_address(const inet_address& a, std::uint16_t port) noexcept : _storage{} {
    if (a.is_ipv4()) {
        _in.sin_family = AF_INET;
        _in.sin_port = htons(port);
        _in.sin_addr = a.as_in_addr();
        _len = sizeof(::sockaddr_in);
    } else {
        _in6.sin6_family = AF_INET6;
        _in6.sin6_port = htons(port);
        _in6.sin6_addr = a.as_in6_addr();
        _in6.sin6_scope_id = a.scope();
        _len = sizeof(::sockaddr_in6);
    }
}

socket_address::socket_address(std::uint16_t port, inet_address::family f) noexcept
    : socket_address(inet_address(f), port) {}

socket_address::socket_address(const ::sockaddr_in& sa) noexcept : _storage{}, _len(sizeof(::sockaddr_in)) { _in = sa; }

socket_address::socket_address(const ::sockaddr_in6& sa) noexcept : _storage{}, _len(sizeof(::sockaddr_in6)) {
    _in6 = sa;
}

socket_address::socket_address(const ::sockaddr* sa, ::socklen_t len) : _storage{}, _len(len) {
    if (len < sizeof(::sa_family_t) || len > sizeof(::sockaddr_storage)) {
        throw std::invalid_argument(fmt::format("socket_address: invalid sockaddr length {}", len));
    }
    std::size_t need = 0;
    switch (sa->sa_family) {
    case AF_INET: need = sizeof(::sockaddr_in); break;
    case AF_INET6: need = sizeof(::sockaddr_in6); break;
    case AF_UNIX: need = sizeof(::sa_family_t); break;  // unnamed sockets have no path at all
    default: throw std::invalid_argument(fmt::format("socket_address: unsupported address family {}", sa->sa_family));
    }
    if (len < need) {
        throw std::invalid_argument(
            fmt::format("socket_address: sockaddr of family {} too short ({} bytes)", sa->sa_family, len));
    }
    std::memcpy(&_storage, sa, len);
}

socket_address socket_address::unix_path(std::string_view path) {
    std::string err;
    auto sa = parse_unix(path, err);
    if (!sa) {
        throw std::invalid_argument(fmt::format("invalid unix socket path '{}': {}", path, err));
    }
    return *sa;
}

socket_address socket_address::parse(std::string_view s) {
    std::string err;
    auto sa = parse_socket_address(s, err);
    if (!sa) {
        throw std::invalid_argument(fmt::format("invalid socket address '{}': {}", s, err));
    }
    return *sa;
}

std::uint16_t socket_address::port() const noexcept {
    switch (family()) {
    case AF_INET: return ntohs(_in.sin_port);
    case AF_INET6: return ntohs(_in6.sin6_port);
    default: return 0;
    }
}

void socket_address::set_port(std::uint16_t port) noexcept {
    if (is_ipv4()) {
        _in.sin_port = htons(port);
    } else if (is_ipv6()) {
        _in6.sin6_port = htons(port);
    }
}

inet_address socket_address::addr() const noexcept {
    if (is_ipv4()) {
        return inet_address(_in.sin_addr);
    }
    if (is_ipv6()) {
        return inet_address(_in6.sin6_addr, _in6.sin6_scope_id);
    }
    return inet_address();
}

std::string socket_address::path() const {
    auto [abstract, name] = unix_name(*this);
    // Built piecewise: `"@" + std::string(name)` trips GCC 12's -Wrestrict false positive at -O3.
    std::string p;
    p.reserve(name.size() + 1);
    if (abstract) {
        p.push_back('@');
    }
    p.append(name);
    return p;
}

bool socket_address::is_unspecified() const noexcept {
    if (is_unix()) {
        return _len <= sun_path_offset;
    }
    return port() == 0 && addr().is_any();
}

std::string socket_address::to_string() const {
    switch (family()) {
    case AF_INET: return fmt::format("{}:{}", addr().to_string(), port());
    case AF_INET6: return fmt::format("[{}]:{}", addr().to_string(), port());
    case AF_UNIX: return "unix:" + path();
    default: return fmt::format("(address family {})", family());
    }
}

bool operator==(const socket_address& a, const socket_address& b) noexcept {
    if (a.family() != b.family()) {
        return false;
    }
    if (a.is_unix()) {
        return unix_name(a) == unix_name(b);
    }
    return a.port() == b.port() && a.addr() == b.addr();
}

std::ostream& operator<<(std::ostream& os, const inet_address& a) { return os << a.to_string(); }
std::ostream& operator<<(std::ostream& os, const socket_address& a) { return os << a.to_string(); }

}  // namespace reef::net

std::size_t std::hash<reef::net::inet_address>::operator()(const reef::net::inet_address& a) const noexcept {
    std::size_t h = static_cast<std::size_t>(a.get_family());
    reef::net::hash_combine(h, std::hash<std::string_view>()({static_cast<const char*>(a.data()), a.size()}));
    reef::net::hash_combine(h, a.scope());
    return h;
}

std::size_t std::hash<reef::net::socket_address>::operator()(const reef::net::socket_address& a) const noexcept {
    std::size_t h = static_cast<std::size_t>(a.family());
    if (a.is_unix()) {
        auto [abstract, name] = reef::net::unix_name(a);
        reef::net::hash_combine(h, abstract);
        reef::net::hash_combine(h, std::hash<std::string_view>()(name));
    } else {
        reef::net::hash_combine(h, std::hash<reef::net::inet_address>()(a.addr()));
        reef::net::hash_combine(h, a.port());
    }
    return h;
}
