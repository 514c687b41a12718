// Ethernet framing shared by everything that parses frames in place (RSS hashing, checksums,
// the DPDK device, packet hooks, and the native stack): ethertypes, header sizes, big-endian
// loads and the L3 offset of a frame with at most one VLAN tag.
#pragma once

#include <cstddef>
#include <cstdint>

namespace reef::net::eth {

inline constexpr std::size_t header_len = 14;    ///< destination MAC, source MAC, ethertype
inline constexpr std::size_t vlan_tag_len = 4;   ///< 802.1Q / 802.1ad tag

inline constexpr std::uint16_t type_ipv4 = 0x0800;
inline constexpr std::uint16_t type_arp = 0x0806;
inline constexpr std::uint16_t type_ipv6 = 0x86dd;
inline constexpr std::uint16_t type_vlan = 0x8100;  ///< 802.1Q
inline constexpr std::uint16_t type_qinq = 0x88a8;  ///< 802.1ad

/// The big-endian 16-bit value at p (no alignment needed).
inline std::uint16_t load_be16(const void* p) noexcept {
    auto* b = static_cast<const unsigned char*>(p);
    return static_cast<std::uint16_t>((b[0] << 8) | b[1]);
}

/// The L3 header's offset and ethertype in a frame whose first `len` bytes are at `head`
/// (one VLAN tag skipped). False when those bytes end before the ethertype does.
inline bool l3_offset(const char* head, std::size_t len, std::size_t& l3, std::uint16_t& type) noexcept {
    if (len < header_len) {
        return false;
    }
    type = load_be16(head + 12);
    l3 = header_len;
    if (type == type_vlan || type == type_qinq) {
        if (len < header_len + vlan_tag_len) {
            return false;
        }
        type = load_be16(head + 16);
        l3 = header_len + vlan_tag_len;
    }
    return true;
}

}  // namespace reef::net::eth
