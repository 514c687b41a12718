// Hand-built Ethernet frames for device tests (no checksums: devices do not look at them).
#pragma once

#include "stack/net/device.hh"
#include "stack/net/packet.hh"

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace reef::testing {

struct frame_spec {
    net::ethernet_address src_mac{{0x02, 0, 0, 0, 0, 0x01}};
    net::ethernet_address dst_mac{{0x02, 0, 0, 0, 0, 0x02}};
    std::optional<std::uint16_t> vlan;  // one 802.1Q tag
    bool ipv6 = false;
    std::array<std::uint8_t, 16> src_ip{};  // first 4 bytes for IPv4
    std::array<std::uint8_t, 16> dst_ip{};
    std::uint8_t proto = 17;  // UDP
    std::uint16_t src_port = 0, dst_port = 0;
    std::uint16_t frag = 0;  // IPv4 flags+offset field (host order)
    std::string payload;
};

inline std::array<std::uint8_t, 16> ip4(const char* s) {
    std::array<std::uint8_t, 16> a{};
    inet_pton(AF_INET, s, a.data());
    return a;
}
inline std::array<std::uint8_t, 16> ip6(const char* s) {
    std::array<std::uint8_t, 16> a{};
    inet_pton(AF_INET6, s, a.data());
    return a;
}

inline void put16(std::string& s, std::uint16_t v) {
    s.push_back(static_cast<char>(v >> 8));
    s.push_back(static_cast<char>(v & 0xff));
}

/// The frame's bytes.
inline std::string build_frame(const frame_spec& f) {
    std::string s;
    s.append(reinterpret_cast<const char*>(f.dst_mac.mac.data()), 6);
    s.append(reinterpret_cast<const char*>(f.src_mac.mac.data()), 6);
    if (f.vlan) {
        put16(s, 0x8100);
        put16(s, *f.vlan);
    }
    std::string l4;
    if (f.proto == 6 || f.proto == 17) {
        put16(l4, f.src_port);
        put16(l4, f.dst_port);
        if (f.proto == 6) {
            l4.append(16, '\0');  // seq, ack, offset/flags, window, csum, urg
            l4[12] = 0x50;
        } else {
            put16(l4, static_cast<std::uint16_t>(8 + f.payload.size()));
            put16(l4, 0);
        }
    }
    l4 += f.payload;
    if (!f.ipv6) {
        put16(s, 0x0800);
        std::string ip(20, '\0');
        ip[0] = 0x45;
        std::uint16_t total = static_cast<std::uint16_t>(20 + l4.size());
        ip[2] = static_cast<char>(total >> 8);
        ip[3] = static_cast<char>(total);
        ip[6] = static_cast<char>(f.frag >> 8);
        ip[7] = static_cast<char>(f.frag);
        ip[8] = 64;
        ip[9] = static_cast<char>(f.proto);
        std::memcpy(&ip[12], f.src_ip.data(), 4);
        std::memcpy(&ip[16], f.dst_ip.data(), 4);
        s += ip;
    } else {
        put16(s, 0x86dd);
        std::string ip(40, '\0');
        ip[0] = 0x60;
        ip[4] = static_cast<char>(l4.size() >> 8);
        ip[5] = static_cast<char>(l4.size());
        ip[6] = static_cast<char>(f.proto);
        ip[7] = 64;
        std::memcpy(&ip[8], f.src_ip.data(), 16);
        std::memcpy(&ip[24], f.dst_ip.data(), 16);
        s += ip;
    }
    s += l4;
    return s;
}

/// An ARP request (non-IP: no flow hash).
inline std::string build_arp(const net::ethernet_address& src) {
    std::string s(6, '\xff');
    s.append(reinterpret_cast<const char*>(src.mac.data()), 6);
    put16(s, 0x0806);
    s.append(28, '\0');
    return s;
}

}  // namespace reef::testing
