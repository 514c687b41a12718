// Addresses: inet_address (an IPv4 or IPv6 host address) and socket_address (an IPv4/IPv6 address
// with a port, or a unix-domain path), with parsing, formatting and the sockaddr forms the kernel
// takes. Values, no shard affinity: copy them freely between shards.
//
// Parsing never guesses: "1.2.3.4", "::1", "fe80::1%eth0" are addresses; "1.2.3.4:80",
// "[::1]:80" are socket addresses; "unix:/run/x.sock" is a unix-domain address. Anything else is
// rejected with std::invalid_argument whose message quotes the input and says what is wrong.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <fmt/format.h>

#include <compare>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>

namespace reef::net {

/// An IPv4 or IPv6 host address. Default-constructed: IPv4 0.0.0.0 ("any").
class inet_address {
public:
    enum class family : std::uint8_t { inet = AF_INET, inet6 = AF_INET6 };

private:
    family _family = family::inet;
    union {
        ::in_addr _in;
        ::in6_addr _in6;
    };
    std::uint32_t _scope = 0;  // IPv6 scope (interface index) of link-local addresses

public:
    inet_address() noexcept;
    explicit inet_address(family f) noexcept;  // the "any" address of that family
    inet_address(const ::in_addr& a) noexcept;
    inet_address(const ::in6_addr& a, std::uint32_t scope = 0) noexcept;
    /// From a host-order IPv4 value, e.g. 0xc6120001 for 198.18.0.1.
    static inet_address from_ipv4(std::uint32_t host_order) noexcept;

    /// Parse a numeric address (no name lookup; see resolve()). IPv6 may carry a "%scope" suffix
    /// (numeric index or interface name). Throws std::invalid_argument.
    static inet_address parse(std::string_view s);

    family get_family() const noexcept { return _family; }
    bool is_ipv4() const noexcept { return _family == family::inet; }
    bool is_ipv6() const noexcept { return _family == family::inet6; }
    /// Only for is_ipv4() / is_ipv6() addresses respectively.
    const ::in_addr& as_in_addr() const noexcept { return _in; }
    const ::in6_addr& as_in6_addr() const noexcept { return _in6; }
    /// Host-order IPv4 value. Only for is_ipv4().
    std::uint32_t ipv4_host_order() const noexcept;
    std::uint32_t scope() const noexcept { return _scope; }
    bool is_any() const noexcept;
    bool is_loopback() const noexcept;
    /// Bytes of the address in network order (4 or 16).
    std::size_t size() const noexcept { return is_ipv4() ? 4 : 16; }
    const void* data() const noexcept { return is_ipv4() ? static_cast<const void*>(&_in) : &_in6; }

    /// "198.18.0.1", "::1", "fe80::1%2".
    std::string to_string() const;

    friend bool operator==(const inet_address& a, const inet_address& b) noexcept;
    friend std::strong_ordering operator<=>(const inet_address& a, const inet_address& b) noexcept;
};

/// A transport endpoint: IPv4 address + port, IPv6 address + port (+ scope), or a unix-domain
/// socket path (abstract names start with '@'). Default-constructed: IPv4 0.0.0.0:0.
class socket_address {
    union {
        ::sockaddr_storage _storage;
        ::sockaddr _sa;
        ::sockaddr_in _in;
        ::sockaddr_in6 _in6;
        ::sockaddr_un _un;
    };
    ::socklen_t _len;

public:
    socket_address() noexcept;
    socket_address(const inet_address& a, std::uint16_t port) noexcept;
    /// Any address of the family (0.0.0.0 or ::) with the given port.
    explicit socket_address(std::uint16_t port, inet_address::family f = inet_address::family::inet) noexcept;
    socket_address(const ::sockaddr_in& sa) noexcept;
    socket_address(const ::sockaddr_in6& sa) noexcept;
    /// From a kernel-filled sockaddr of `len` bytes (accept, getsockname, recvmsg). Throws
    /// std::invalid_argument for a family other than AF_INET, AF_INET6, AF_UNIX.
    socket_address(const ::sockaddr* sa, ::socklen_t len);
    /// A unix-domain address. Throws std::invalid_argument if the path is empty or too long.
    static socket_address unix_path(std::string_view path);

    /// Parse "1.2.3.4:80", "[::1]:80", "[fe80::1%eth0]:80" or "unix:/path" ("unix:@name" for the
    /// abstract namespace). The port must be 0-65535 and is required. Throws std::invalid_argument.
    static socket_address parse(std::string_view s);

    int family() const noexcept { return _sa.sa_family; }
    bool is_ipv4() const noexcept { return family() == AF_INET; }
    bool is_ipv6() const noexcept { return family() == AF_INET6; }
    bool is_unix() const noexcept { return family() == AF_UNIX; }
    /// Host-order port; 0 for unix addresses.
    std::uint16_t port() const noexcept;
    void set_port(std::uint16_t port) noexcept;
    /// The host address; only for IPv4/IPv6.
    inet_address addr() const noexcept;
    /// The path of a unix address ('@' first for an abstract name); empty otherwise.
    std::string path() const;
    /// Address 0.0.0.0/:: and port 0; for a unix address, an unnamed socket (no path).
    bool is_unspecified() const noexcept;

    const ::sockaddr* as_posix_sockaddr() const noexcept { return &_sa; }
    ::sockaddr* as_posix_sockaddr() noexcept { return &_sa; }
    const ::sockaddr_in& as_posix_sockaddr_in() const noexcept { return _in; }
    const ::sockaddr_in6& as_posix_sockaddr_in6() const noexcept { return _in6; }
    ::socklen_t length() const noexcept { return _len; }
    /// For code that fills the storage itself (recvmsg): set the length the kernel reported.
    void set_length(::socklen_t len) noexcept { _len = len; }
    static constexpr ::socklen_t max_length() noexcept { return sizeof(::sockaddr_storage); }

    /// "198.18.0.1:80", "[::1]:80", "unix:/run/x.sock".
    std::string to_string() const;

    friend bool operator==(const socket_address& a, const socket_address& b) noexcept;
};

std::ostream& operator<<(std::ostream& os, const inet_address& a);
std::ostream& operator<<(std::ostream& os, const socket_address& a);

}  // namespace reef::net

template <>
struct std::hash<reef::net::inet_address> {
    std::size_t operator()(const reef::net::inet_address& a) const noexcept;
};
template <>
struct std::hash<reef::net::socket_address> {
    std::size_t operator()(const reef::net::socket_address& a) const noexcept;
};

template <>
struct fmt::formatter<reef::net::inet_address> : fmt::formatter<std::string_view> {
    auto format(const reef::net::inet_address& a, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(a.to_string(), ctx);
    }
};
template <>
struct fmt::formatter<reef::net::socket_address> : fmt::formatter<std::string_view> {
    auto format(const reef::net::socket_address& a, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(a.to_string(), ctx);
    }
};
