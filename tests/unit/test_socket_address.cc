#include "stack/net/resolve.hh"
#include "stack/net/socket_address.hh"

#include "reactor_test.hh"

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <unordered_set>
#include <vector>

using namespace reef;
using namespace reef::net;

namespace {

// parse() must throw std::invalid_argument whose message quotes the input and contains `reason`.
template <typename Parse>
void expect_invalid(Parse parse, const std::string& input, const std::string& reason) {
    try {
        parse(input);
        ADD_FAILURE() << "'" << input << "' parsed without error";
    } catch (const std::invalid_argument& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("'" + input + "'"), std::string::npos) << what;
        EXPECT_NE(what.find(reason), std::string::npos) << "'" << input << "': " << what;
    }
}

void expect_invalid_sa(const std::string& input, const std::string& reason) {
    expect_invalid([](const std::string& s) { return socket_address::parse(s); }, input, reason);
}

void expect_invalid_inet(const std::string& input, const std::string& reason) {
    expect_invalid([](const std::string& s) { return inet_address::parse(s); }, input, reason);
}

constexpr std::size_t sun_path_offset = offsetof(::sockaddr_un, sun_path);

unsigned lo_index() { return ::if_nametoindex("lo"); }

}  // namespace

// ------------------------------------------------------------------------------------------------
// inet_address

TEST(inet_address, ipv4_round_trip) {
    auto a = inet_address::parse("198.18.0.1");
    EXPECT_TRUE(a.is_ipv4());
    EXPECT_FALSE(a.is_ipv6());
    EXPECT_EQ(a.ipv4_host_order(), 0xc6120001u);
    EXPECT_EQ(a.to_string(), "198.18.0.1");
    EXPECT_EQ(a, inet_address::from_ipv4(0xc6120001));
    EXPECT_EQ(a.size(), 4u);
    EXPECT_EQ(std::memcmp(a.data(), "\xc6\x12\x00\x01", 4), 0);
    EXPECT_FALSE(a.is_any());
    EXPECT_FALSE(a.is_loopback());
    EXPECT_TRUE(inet_address::parse("127.0.0.1").is_loopback());
    EXPECT_TRUE(inet_address::parse("127.9.8.7").is_loopback());
    EXPECT_TRUE(inet_address().is_any());
    EXPECT_EQ(inet_address().to_string(), "0.0.0.0");
    EXPECT_EQ(inet_address(inet_address::family::inet6).to_string(), "::");
    EXPECT_TRUE(inet_address(inet_address::family::inet6).is_any());
}

TEST(inet_address, ipv6_round_trip) {
    auto a = inet_address::parse("::1");
    EXPECT_TRUE(a.is_ipv6());
    EXPECT_TRUE(a.is_loopback());
    EXPECT_EQ(a.to_string(), "::1");
    EXPECT_EQ(a.size(), 16u);
    auto b = inet_address::parse("2001:db8:0:0:0:0:0:1");
    EXPECT_EQ(b.to_string(), "2001:db8::1");  // canonical form
    EXPECT_EQ(b.scope(), 0u);
    EXPECT_EQ(inet_address::parse(b.to_string()), b);
}

TEST(inet_address, scoped_ipv6) {
    auto a = inet_address::parse("fe80::1%2");
    EXPECT_EQ(a.scope(), 2u);
    EXPECT_EQ(a.to_string(), "fe80::1%2");
    EXPECT_EQ(inet_address::parse(a.to_string()), a);
    // An interface name gives its index.
    auto lo = inet_address::parse("fe80::1%lo");
    EXPECT_EQ(lo.scope(), lo_index());
    EXPECT_EQ(lo.to_string(), "fe80::1%" + std::to_string(lo_index()));
    // The scope is part of the identity.
    EXPECT_NE(inet_address::parse("fe80::1%2"), inet_address::parse("fe80::1%3"));
    EXPECT_NE(inet_address::parse("fe80::1%2"), inet_address::parse("fe80::1"));
}

TEST(inet_address, errors) {
    expect_invalid_inet("", "empty");
    expect_invalid_inet("garbage", "not an IPv4 or IPv6 address");
    expect_invalid_inet("1.2.3.256", "not an IPv4 or IPv6 address");
    expect_invalid_inet("1.2.3", "not an IPv4 or IPv6 address");
    expect_invalid_inet("1.2.3.4%1", "only allowed on IPv6");
    expect_invalid_inet("::g", "not a valid IPv6 address");
    expect_invalid_inet("fe80::1%", "empty scope");
    expect_invalid_inet("fe80::1%no-such-if0", "unknown interface 'no-such-if0'");
    expect_invalid_inet("fe80::1%99999999999", "invalid scope");
    expect_invalid_inet("fe80::1%1x", "invalid scope");
    expect_invalid_inet("1.2.3.4:80", "not a valid IPv6 address");  // a socket address, not an address
}

TEST(inet_address, ordering_and_hash) {
    auto a = inet_address::parse("10.0.0.1");
    auto b = inet_address::parse("10.0.0.2");
    auto c = inet_address::parse("::1");
    EXPECT_LT(a, b);
    EXPECT_LT(b, c);  // IPv4 before IPv6
    EXPECT_LT(inet_address::parse("fe80::1%1"), inet_address::parse("fe80::1%2"));
    EXPECT_EQ(a <=> inet_address::parse("10.0.0.1"), std::strong_ordering::equal);
    // v4-mapped IPv6 is another address than the IPv4 one.
    EXPECT_NE(inet_address::parse("::ffff:10.0.0.1"), a);
    std::hash<inet_address> h;
    EXPECT_EQ(h(a), h(inet_address::parse("10.0.0.1")));
    std::unordered_set<inet_address> set = {
        a, b, c, inet_address::parse("fe80::1%1"), inet_address::parse("fe80::1%2"), inet_address::parse("10.0.0.1")};
    EXPECT_EQ(set.size(), 5u);
    EXPECT_TRUE(set.contains(inet_address::from_ipv4(0x0a000002)));
}

TEST(inet_address, formatting) {
    auto a = inet_address::parse("fe80::1%7");
    std::ostringstream os;
    os << a;
    EXPECT_EQ(os.str(), "fe80::1%7");
    EXPECT_EQ(fmt::format("<{}>", a), "<fe80::1%7>");
}

// ------------------------------------------------------------------------------------------------
// socket_address

TEST(socket_address, ipv4_round_trip) {
    auto sa = socket_address::parse("1.2.3.4:80");
    EXPECT_TRUE(sa.is_ipv4());
    EXPECT_EQ(sa.family(), AF_INET);
    EXPECT_EQ(sa.port(), 80);
    EXPECT_EQ(sa.addr(), inet_address::parse("1.2.3.4"));
    EXPECT_EQ(sa.to_string(), "1.2.3.4:80");
    EXPECT_EQ(sa.length(), sizeof(::sockaddr_in));
    EXPECT_EQ(sa.as_posix_sockaddr_in().sin_port, htons(80));
    EXPECT_EQ(socket_address::parse(sa.to_string()), sa);
    EXPECT_EQ(socket_address::parse("0.0.0.0:0").port(), 0);
    EXPECT_EQ(socket_address::parse("1.2.3.4:65535").port(), 65535);
    EXPECT_EQ(socket_address::parse("1.2.3.4:080").port(), 80);
    EXPECT_EQ(sa.path(), "");
}

TEST(socket_address, ipv6_round_trip) {
    auto sa = socket_address::parse("[::1]:8080");
    EXPECT_TRUE(sa.is_ipv6());
    EXPECT_EQ(sa.port(), 8080);
    EXPECT_EQ(sa.to_string(), "[::1]:8080");
    EXPECT_EQ(sa.length(), sizeof(::sockaddr_in6));
    EXPECT_TRUE(sa.addr().is_loopback());
    EXPECT_EQ(socket_address::parse(sa.to_string()), sa);

    auto scoped = socket_address::parse("[fe80::1%3]:443");
    EXPECT_EQ(scoped.addr().scope(), 3u);
    EXPECT_EQ(scoped.as_posix_sockaddr_in6().sin6_scope_id, 3u);
    EXPECT_EQ(scoped.to_string(), "[fe80::1%3]:443");
    EXPECT_EQ(socket_address::parse(scoped.to_string()), scoped);
    auto named = socket_address::parse("[fe80::1%lo]:443");
    EXPECT_EQ(named.addr().scope(), lo_index());
    EXPECT_EQ(named.to_string(), "[fe80::1%" + std::to_string(lo_index()) + "]:443");
}

TEST(socket_address, unix_round_trip) {
    auto sa = socket_address::parse("unix:/run/x.sock");
    EXPECT_TRUE(sa.is_unix());
    EXPECT_EQ(sa.path(), "/run/x.sock");
    EXPECT_EQ(sa.port(), 0);
    EXPECT_EQ(sa.to_string(), "unix:/run/x.sock");
    EXPECT_EQ(sa.length(), sun_path_offset + 11 + 1);  // the terminator is counted
    EXPECT_EQ(socket_address::parse(sa.to_string()), sa);
    EXPECT_EQ(socket_address::unix_path("/run/x.sock"), sa);
    EXPECT_FALSE(sa.is_unspecified());
}

TEST(socket_address, abstract_unix) {
    auto sa = socket_address::parse("unix:@name");
    EXPECT_TRUE(sa.is_unix());
    const auto& un = reinterpret_cast<const ::sockaddr_un&>(*sa.as_posix_sockaddr());
    EXPECT_EQ(un.sun_path[0], '\0');
    EXPECT_EQ(std::memcmp(un.sun_path + 1, "name", 4), 0);
    // Exactly the name: no terminator counted.
    EXPECT_EQ(sa.length(), sun_path_offset + 1 + 4);
    EXPECT_EQ(sa.path(), "@name");
    EXPECT_EQ(sa.to_string(), "unix:@name");
    EXPECT_EQ(socket_address::parse(sa.to_string()), sa);
    EXPECT_EQ(socket_address::unix_path("@name"), sa);
    // Abstract "@name" and the file "name" are different addresses.
    EXPECT_NE(sa, socket_address::unix_path("name"));
    EXPECT_NE(std::hash<socket_address>()(sa), std::hash<socket_address>()(socket_address::unix_path("name")));
}

TEST(socket_address, unix_length_limits) {
    constexpr std::size_t max = sizeof(::sockaddr_un::sun_path) - 1;
    std::string longest = "/" + std::string(max - 1, 'p');
    EXPECT_EQ(socket_address::unix_path(longest).path(), longest);
    EXPECT_EQ(socket_address::parse("unix:" + longest).path(), longest);
    std::string abstract = "@" + std::string(max, 'a');
    auto sa = socket_address::unix_path(abstract);
    EXPECT_EQ(sa.path(), abstract);
    EXPECT_EQ(sa.length(), sizeof(::sockaddr_un));
    expect_invalid([](const std::string& s) { return socket_address::unix_path(s); }, longest + "x", "too long");
    expect_invalid([](const std::string& s) { return socket_address::unix_path(s); }, abstract + "x", "too long");
    expect_invalid([](const std::string& s) { return socket_address::unix_path(s); }, "", "empty");
    expect_invalid([](const std::string& s) { return socket_address::unix_path(s); }, "@", "empty abstract");
    expect_invalid_sa("unix:" + longest + "x", "too long");
    expect_invalid_sa("unix:" + abstract + "x", "too long");
    EXPECT_THROW(socket_address::unix_path(std::string_view("a\0b", 3)), std::invalid_argument);
}

TEST(socket_address, parse_errors) {
    expect_invalid_sa("", "empty");
    expect_invalid_sa("garbage", "missing port");
    expect_invalid_sa("garbage:80", "not an IPv4 or IPv6 address");
    expect_invalid_sa("localhost:80", "not an IPv4 or IPv6 address");
    expect_invalid_sa("1.2.3.4", "missing port");
    expect_invalid_sa("1.2.3.4:", "missing port");
    expect_invalid_sa("1.2.3.4:http", "not a number 0-65535");
    expect_invalid_sa("1.2.3.4:-1", "not a number 0-65535");
    expect_invalid_sa("1.2.3.4: 80", "not a number 0-65535");
    expect_invalid_sa("1.2.3.4:65536", "port out of range 0-65535");
    expect_invalid_sa("1.2.3.4:99999999999999999999", "port out of range 0-65535");
    expect_invalid_sa("::1:80", "must be in brackets");
    expect_invalid_sa("fe80::1%2:80", "must be in brackets");
    expect_invalid_sa("[::1]", "missing port");
    expect_invalid_sa("[::1]:", "missing port");
    expect_invalid_sa("[::1]80", "expected ':'");
    expect_invalid_sa("[::1", "missing ']'");
    expect_invalid_sa("[1.2.3.4]:80", "only for IPv6");
    expect_invalid_sa("[zz::1]:80", "not a valid IPv6 address");
    expect_invalid_sa("[fe80::1%no-such-if0]:80", "unknown interface");
    expect_invalid_sa("[::1]:70000", "port out of range");
    expect_invalid_sa("unix:", "empty unix socket path");
    // The exact message.
    try {
        socket_address::parse("1.2.3.4:99999");
        ADD_FAILURE();
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "invalid socket address '1.2.3.4:99999': port out of range 0-65535");
    }
}

TEST(socket_address, constructors) {
    socket_address def;
    EXPECT_TRUE(def.is_ipv4());
    EXPECT_TRUE(def.is_unspecified());
    EXPECT_EQ(def.to_string(), "0.0.0.0:0");

    socket_address any6(8080, inet_address::family::inet6);
    EXPECT_EQ(any6.to_string(), "[::]:8080");
    EXPECT_FALSE(any6.is_unspecified());
    EXPECT_TRUE(socket_address(0, inet_address::family::inet6).is_unspecified());
    EXPECT_EQ(socket_address(443).to_string(), "0.0.0.0:443");

    socket_address sa(inet_address::parse("10.1.2.3"), 99);
    EXPECT_EQ(sa.to_string(), "10.1.2.3:99");
    sa.set_port(100);
    EXPECT_EQ(sa.port(), 100);

    ::sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(7);
    in.sin_addr.s_addr = htonl(0x7f000001);
    EXPECT_EQ(socket_address(in).to_string(), "127.0.0.1:7");
    EXPECT_EQ(socket_address(reinterpret_cast<const ::sockaddr*>(&in), sizeof(in)).to_string(), "127.0.0.1:7");

    ::sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(9);
    in6.sin6_addr = in6addr_loopback;
    in6.sin6_scope_id = 0;
    EXPECT_EQ(socket_address(in6).to_string(), "[::1]:9");
    EXPECT_EQ(socket_address(reinterpret_cast<const ::sockaddr*>(&in6), sizeof(in6)), socket_address(in6));
}

TEST(socket_address, from_kernel_sockaddr) {
    // An unnamed unix socket (the kernel reports just the family).
    ::sockaddr_un un{};
    un.sun_family = AF_UNIX;
    socket_address unnamed(reinterpret_cast<const ::sockaddr*>(&un), sizeof(::sa_family_t));
    EXPECT_TRUE(unnamed.is_unix());
    EXPECT_EQ(unnamed.path(), "");
    EXPECT_TRUE(unnamed.is_unspecified());
    // A pathname with and without the terminator counted is the same address.
    std::strcpy(un.sun_path, "/tmp/s");
    socket_address with_nul(reinterpret_cast<const ::sockaddr*>(&un), sun_path_offset + 7);
    socket_address without_nul(reinterpret_cast<const ::sockaddr*>(&un), sun_path_offset + 6);
    EXPECT_EQ(with_nul.path(), "/tmp/s");
    EXPECT_EQ(without_nul.path(), "/tmp/s");
    EXPECT_EQ(with_nul, without_nul);
    EXPECT_EQ(std::hash<socket_address>()(with_nul), std::hash<socket_address>()(without_nul));

    ::sockaddr_storage other{};
    other.ss_family = AF_PACKET;
    EXPECT_THROW(socket_address(reinterpret_cast<const ::sockaddr*>(&other), sizeof(other)), std::invalid_argument);
    ::sockaddr_in in{};
    in.sin_family = AF_INET;
    EXPECT_THROW(socket_address(reinterpret_cast<const ::sockaddr*>(&in), 4), std::invalid_argument);
    EXPECT_THROW(socket_address(reinterpret_cast<const ::sockaddr*>(&in), 0), std::invalid_argument);
    EXPECT_THROW(socket_address(reinterpret_cast<const ::sockaddr*>(&other), sizeof(other) + 1), std::invalid_argument);
}

TEST(socket_address, equality_and_hash) {
    auto a = socket_address::parse("10.0.0.1:80");
    EXPECT_EQ(a, socket_address::parse("10.0.0.1:80"));
    EXPECT_NE(a, socket_address::parse("10.0.0.1:81"));
    EXPECT_NE(a, socket_address::parse("10.0.0.2:80"));
    EXPECT_NE(a, socket_address::parse("[::ffff:10.0.0.1]:80"));
    EXPECT_NE(socket_address::parse("[fe80::1%1]:80"), socket_address::parse("[fe80::1%2]:80"));
    EXPECT_EQ(socket_address::parse("[fe80::1%1]:80"), socket_address::parse("[fe80::1%1]:80"));
    // flowinfo is not part of the identity.
    auto in6 = socket_address::parse("[::1]:5").as_posix_sockaddr_in6();
    in6.sin6_flowinfo = htonl(1234);
    EXPECT_EQ(socket_address(in6), socket_address::parse("[::1]:5"));
    EXPECT_EQ(std::hash<socket_address>()(socket_address(in6)),
              std::hash<socket_address>()(socket_address::parse("[::1]:5")));

    std::vector<socket_address> distinct = {
        socket_address::parse("10.0.0.1:80"),    socket_address::parse("10.0.0.1:81"),
        socket_address::parse("10.0.0.2:80"),    socket_address::parse("[::1]:80"),
        socket_address::parse("[::1]:81"),       socket_address::parse("[fe80::1%1]:80"),
        socket_address::parse("[fe80::1%2]:80"), socket_address::parse("unix:/a"),
        socket_address::parse("unix:/b"),        socket_address::parse("unix:@a"),
    };
    std::unordered_set<socket_address> set(distinct.begin(), distinct.end());
    EXPECT_EQ(set.size(), distinct.size());
    for (const auto& sa : distinct) {
        auto again = socket_address::parse(sa.to_string());
        EXPECT_EQ(again, sa) << sa;
        EXPECT_EQ(std::hash<socket_address>()(again), std::hash<socket_address>()(sa)) << sa;
        EXPECT_TRUE(set.contains(again)) << sa;
    }
}

TEST(socket_address, formatting) {
    std::ostringstream os;
    os << socket_address::parse("[::1]:80") << " " << socket_address::parse("unix:@x");
    EXPECT_EQ(os.str(), "[::1]:80 unix:@x");
    EXPECT_EQ(fmt::format("{}", socket_address::parse("1.2.3.4:5")), "1.2.3.4:5");
}

// ------------------------------------------------------------------------------------------------
// resolve

REEF_TEST(resolve, localhost_is_loopback) {
    auto a = co_await resolve("localhost");
    EXPECT_TRUE(a.is_loopback()) << a;
    auto all = co_await resolve_all("localhost");
    REEF_ASSERT(!all.empty());
    for (std::size_t i = 0; i < all.size(); ++i) {
        EXPECT_TRUE(all[i].is_loopback()) << all[i];
        for (std::size_t j = 0; j < i; ++j) {
            EXPECT_NE(all[i], all[j]);  // duplicates removed
        }
    }
    EXPECT_EQ(all.front(), a);
    auto v4 = co_await resolve("localhost", inet_address::family::inet);
    EXPECT_EQ(v4, inet_address::parse("127.0.0.1"));
}

REEF_TEST(resolve, numeric_needs_no_lookup) {
    // A numeric address resolves at once: the future is ready without a trip to the syscall pool.
    auto f = resolve("127.0.0.1");
    EXPECT_TRUE(f.available());
    auto a = co_await std::move(f);
    EXPECT_EQ(a, inet_address::parse("127.0.0.1"));
    auto g = resolve("fe80::1%lo", inet_address::family::inet6);
    EXPECT_TRUE(g.available());
    auto b = co_await std::move(g);
    EXPECT_EQ(b, inet_address::parse("fe80::1%lo"));
    auto all = co_await resolve_all("::1");
    EXPECT_EQ(all, std::vector<inet_address>{inet_address::parse("::1")});
}

REEF_TEST(resolve, failures_name_the_host) {
    std::string what;
    std::error_code code;
    try {
        co_await resolve("no-such-host.invalid");
        ADD_FAILURE() << "resolved a name that cannot exist";
    } catch (const std::system_error& e) {
        what = e.what();
        code = e.code();
    }
    EXPECT_NE(what.find("resolve(no-such-host.invalid): "), std::string::npos) << what;
    // The resolver's own reason follows (NONAME, or AGAIN without a DNS server to ask).
    if (code.category() == resolve_category()) {
        EXPECT_NE(what.find(::gai_strerror(code.value())), std::string::npos) << what;
    }

    // A numeric address of the other family.
    try {
        co_await resolve("127.0.0.1", inet_address::family::inet6);
        ADD_FAILURE();
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::error_code(EAI_ADDRFAMILY, resolve_category()));
        EXPECT_NE(std::string(e.what()).find("resolve(127.0.0.1)"), std::string::npos) << e.what();
    }

    try {
        co_await resolve_all("");
        ADD_FAILURE();
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::error_code(EAI_NONAME, resolve_category()));
    }
}
