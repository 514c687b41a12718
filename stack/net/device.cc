#include "stack/net/device.hh"

#include "stack/net/toeplitz.hh"

#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace reef::net {

namespace {

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

}  // namespace

ethernet_address ethernet_address::parse(std::string_view s) {
    // Exactly six groups of two hex digits separated by ':' (or all by '-').
    ethernet_address a;
    auto fail = [&] {
        throw std::invalid_argument("invalid MAC address '" + std::string(s) +
                                    "': expected 6 hex bytes like 02:00:00:00:00:01");
    };
    if (s.size() != 17) {
        fail();
    }
    char sep = s[2];
    if (sep != ':' && sep != '-') {
        fail();
    }
    for (std::size_t i = 0; i < 6; ++i) {
        std::size_t at = i * 3;
        int hi = hex_value(s[at]);
        int lo = hex_value(s[at + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[at + 2] != sep)) {
            fail();
        }
        a.mac[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    return a;
}

std::string ethernet_address::to_string() const {
    char buf[18];
    std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    return buf;
}

bool ethernet_address::is_broadcast() const noexcept {
    for (auto b : mac) {
        if (b != 0xff) {
            return false;
        }
    }
    return true;
}

std::uint32_t device::flow_hash(const void* src_addr, const void* dst_addr, std::size_t addr_len,
                                std::uint16_t src_port, std::uint16_t dst_port) const noexcept {
    std::uint8_t tuple[36];
    std::size_t alen = addr_len > 16 ? 16 : addr_len;
    std::memcpy(tuple, src_addr, alen);
    std::memcpy(tuple + alen, dst_addr, alen);
    std::size_t n = 2 * alen;
    tuple[n++] = static_cast<std::uint8_t>(src_port >> 8);
    tuple[n++] = static_cast<std::uint8_t>(src_port);
    tuple[n++] = static_cast<std::uint8_t>(dst_port >> 8);
    tuple[n++] = static_cast<std::uint8_t>(dst_port);
    return toeplitz_hash(rss().key, std::span<const std::uint8_t>(tuple, n));
}

}  // namespace reef::net
