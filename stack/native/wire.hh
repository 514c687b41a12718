// Wire formats of the native stack below TCP: Ethernet, ARP, IPv4, ICMP, UDP headers as packed
// structs read and written in place (packet::get_header / prepend_header), plus the IPv4 address
// type the layers pass around. Multi-byte fields are stored in network byte order; use the
// load/store helpers, never the fields' raw values.
#pragma once

#include "stack/net/device.hh"
#include "stack/net/ethernet.hh"
#include "stack/net/socket_address.hh"

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

namespace reef::net::native {

/// An IPv4 address in host byte order (0 = unspecified). A plain value: copy it between shards.
struct ipv4_addr {
    std::uint32_t ip = 0;

    constexpr ipv4_addr() noexcept = default;
    constexpr explicit ipv4_addr(std::uint32_t host_order) noexcept : ip(host_order) {}
    /// From an inet_address; only for is_ipv4() ones.
    static ipv4_addr from(const inet_address& a) noexcept { return ipv4_addr(a.ipv4_host_order()); }
    /// "10.0.0.1"; throws std::invalid_argument quoting the input for anything else.
    static ipv4_addr parse(const std::string& s);

    inet_address to_inet() const noexcept { return inet_address::from_ipv4(ip); }
    std::string to_string() const { return to_inet().to_string(); }
    constexpr bool is_any() const noexcept { return ip == 0; }
    constexpr bool is_broadcast() const noexcept { return ip == 0xffffffffu; }
    constexpr bool is_multicast() const noexcept { return (ip >> 28) == 0xe; }
    /// The 4 bytes in network order.
    std::array<std::uint8_t, 4> bytes() const noexcept {
        return {std::uint8_t(ip >> 24), std::uint8_t(ip >> 16), std::uint8_t(ip >> 8), std::uint8_t(ip)};
    }
    friend constexpr bool operator==(ipv4_addr, ipv4_addr) noexcept = default;
    friend constexpr auto operator<=>(ipv4_addr, ipv4_addr) noexcept = default;
};

/// The interface's IPv4 configuration (the same on every shard).
struct ipv4_config {
    ipv4_addr addr;  ///< 0: none yet (DHCP in progress, or lease lost)
    ipv4_addr netmask;
    ipv4_addr gateway;  ///< 0: none
    std::uint16_t mtu = 1500;

    bool on_link(ipv4_addr a) const noexcept { return (a.ip & netmask.ip) == (addr.ip & netmask.ip); }
    ipv4_addr subnet_broadcast() const noexcept { return ipv4_addr(addr.ip | ~netmask.ip); }
    bool is_broadcast(ipv4_addr a) const noexcept {
        return a.is_broadcast() || (netmask.ip != 0xffffffffu && a == subnet_broadcast());
    }
    friend bool operator==(const ipv4_config&, const ipv4_config&) = default;
};

inline std::uint16_t load16(const void* p) noexcept { return eth::load_be16(p); }
inline std::uint32_t load32(const void* p) noexcept {
    auto* b = static_cast<const unsigned char*>(p);
    return (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) | b[3];
}
inline void store16(void* p, std::uint16_t v) noexcept {
    auto* b = static_cast<unsigned char*>(p);
    b[0] = std::uint8_t(v >> 8);
    b[1] = std::uint8_t(v);
}
inline void store32(void* p, std::uint32_t v) noexcept {
    auto* b = static_cast<unsigned char*>(p);
    b[0] = std::uint8_t(v >> 24);
    b[1] = std::uint8_t(v >> 16);
    b[2] = std::uint8_t(v >> 8);
    b[3] = std::uint8_t(v);
}
inline ipv4_addr load_ip(const void* p) noexcept { return ipv4_addr(load32(p)); }
inline void store_ip(void* p, ipv4_addr a) noexcept { store32(p, a.ip); }

/// Store a checksum computed by checksum.hh (host-order value meant to be memcpy'd in place).
inline void store_csum(void* p, std::uint16_t c) noexcept { std::memcpy(p, &c, 2); }

inline constexpr ethernet_address broadcast_mac{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

inline constexpr std::uint8_t ip_proto_icmp = 1;
inline constexpr std::uint8_t ip_proto_tcp = 6;
inline constexpr std::uint8_t ip_proto_udp = 17;

#pragma pack(push, 1)
struct eth_hdr {
    std::uint8_t dst[6];
    std::uint8_t src[6];
    std::uint8_t type[2];
};
static_assert(sizeof(eth_hdr) == 14);

/// ARP for IPv4 over Ethernet (RFC 826).
struct arp_hdr {
    std::uint8_t htype[2];  // 1
    std::uint8_t ptype[2];  // 0x0800
    std::uint8_t hlen;      // 6
    std::uint8_t plen;      // 4
    std::uint8_t op[2];     // 1 request, 2 reply
    std::uint8_t sha[6];
    std::uint8_t spa[4];
    std::uint8_t tha[6];
    std::uint8_t tpa[4];
};
static_assert(sizeof(arp_hdr) == 28);

struct ipv4_hdr {
    std::uint8_t ver_ihl;
    std::uint8_t tos;
    std::uint8_t total_len[2];
    std::uint8_t id[2];
    std::uint8_t frag[2];  // flags (reserved, DF, MF) and offset in 8-byte units
    std::uint8_t ttl;
    std::uint8_t proto;
    std::uint8_t csum[2];
    std::uint8_t src[4];
    std::uint8_t dst[4];
};
static_assert(sizeof(ipv4_hdr) == 20);

inline constexpr std::uint16_t ip_flag_df = 0x4000;
inline constexpr std::uint16_t ip_flag_mf = 0x2000;
inline constexpr std::uint16_t ip_offset_mask = 0x1fff;

struct udp_hdr {
    std::uint8_t src_port[2];
    std::uint8_t dst_port[2];
    std::uint8_t len[2];
    std::uint8_t csum[2];
};
static_assert(sizeof(udp_hdr) == 8);

struct icmp_hdr {
    std::uint8_t type;
    std::uint8_t code;
    std::uint8_t csum[2];
    std::uint8_t rest[4];  // id/seq for echo; unused/next-hop MTU for unreachable
};
static_assert(sizeof(icmp_hdr) == 8);
#pragma pack(pop)

}  // namespace reef::net::native
