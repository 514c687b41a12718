// The Internet checksum (RFC 1071) for IPv4 headers and TCP/UDP over IPv4 and IPv6, computed in
// software: by the native stack on receive, and by devices that cannot offload it on transmit.
//
// Byte order: sums are taken over 16-bit words loaded in host order and the result is returned as
// the 16-bit value to store in host order at the checksum field (memcpy it there); the one's
// complement sum is the same in either byte order (RFC 1071, 2.(B)), so no swapping is needed.
//
// Everything here is pure and allocation-free except fill_checksums, which may linearize the few
// header bytes that straddle fragments (packet::get_header).
#pragma once

#include "stack/net/packet.hh"

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace reef::net {

/// Accumulates data in pieces of any length (odd ones too: a piece that starts at an odd offset
/// is folded in with its bytes swapped, as RFC 1071 allows).
class checksummer {
    std::uint64_t _sum = 0;
    bool _odd = false;

public:
    /// Add `len` bytes.
    void add(const void* data, std::size_t len) noexcept;
    /// Add one 16-bit word given in network byte order as two bytes (hi, lo), at an even offset.
    void add_be16(std::uint16_t host_value) noexcept;
    /// The checksum of everything added: the complemented one's complement sum, ready to store.
    std::uint16_t get() const noexcept;
    /// The folded sum without complementing (0xffff for data that checks out).
    std::uint16_t folded_sum() const noexcept;
};

namespace detail {
/// The unfolded one's complement sum of [p, p + len) as checksummer::add takes it: the portable
/// loop, the AVX2 one (x86-64; the portable loop elsewhere), and whether this CPU has AVX2 (add
/// uses the AVX2 loop for pieces of 128 bytes and more when it does). For tests and benchmarks.
std::uint64_t checksum_raw_sum_scalar(const unsigned char* p, std::size_t len) noexcept;
std::uint64_t checksum_raw_sum_avx2(const unsigned char* p, std::size_t len) noexcept;
bool checksum_have_avx2() noexcept;
}  // namespace detail

/// Checksum of [data, data + len) (an IPv4 header with its checksum field zeroed, say).
std::uint16_t internet_checksum(const void* data, std::size_t len) noexcept;

/// Does an IPv4 header (ihl * 4 bytes, checksum field included; len a multiple of 4) check out?
/// Inline: every received IPv4 packet goes through it.
inline bool ipv4_header_checksum_ok(const void* hdr, std::size_t len) noexcept {
    const unsigned char* p = static_cast<const unsigned char*>(hdr);
    std::uint64_t s = 0;
    for (std::size_t i = 0; i + 4 <= len; i += 4) {
        std::uint32_t w;
        std::memcpy(&w, p + i, 4);
        s += w;
    }
    s = (s & 0xffffffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return s == 0xffff;
}

/// Add the IPv4 pseudo-header (RFC 793/768) of an L4 segment of `l4_len` bytes. src/dst point to
/// 4-byte addresses in network order.
void add_ipv4_pseudo_header(checksummer& c, const void* src, const void* dst, std::uint8_t proto,
                            std::size_t l4_len) noexcept;
/// Add the IPv6 pseudo-header (RFC 8200 8.1). src/dst point to 16-byte addresses.
void add_ipv6_pseudo_header(checksummer& c, const void* src, const void* dst, std::uint8_t proto,
                            std::size_t l4_len) noexcept;

/// Add bytes [offset, offset + len) of p (clamped to p's end), fragment by fragment.
void add_packet_range(checksummer& c, const packet& p, std::size_t offset, std::size_t len) noexcept;

/// Software transmit checksums of an Ethernet frame, as p.offload() asks: the IPv4 header
/// checksum when needs_ip_csum, the TCP or UDP checksum (over the pseudo-header, as the IP
/// header's lengths give) when needs_csum. Frames with one VLAN tag are handled. IPv6 L4 headers
/// are found at 40 + (ip_hdr_len - 40 if ip_hdr_len > 40) bytes after the Ethernet header. Clears
/// the offload flags it honoured. Returns false (changing nothing further) for a frame whose
/// headers are cut short or that is neither IPv4 nor IPv6; may throw std::bad_alloc when header
/// bytes straddle fragments and must be linearized.
bool fill_checksums(packet& p);

}  // namespace reef::net
