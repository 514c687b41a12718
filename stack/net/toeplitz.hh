// Toeplitz hashing: the receive-side-scaling (RSS) hash NICs compute over a flow's addresses and
// ports, so that software (software RSS, a connect() choosing a local port) can predict which
// queue and shard a flow lands on.
//
// Definition (Microsoft RSS specification, also what DPDK's rte_softrss computes): for every bit
// of the input, most significant bit of the first byte first, when the bit is set the result is
// XORed with the 32 key bits that start at that bit's position in the key. A key of K bytes thus
// fully covers inputs of up to K - 4 bytes (36 for the usual 40-byte key, enough for an IPv6
// 4-tuple), the most a NIC or rte_softrss accepts. Longer inputs are hashed as if the key went on
// with zero bits: the last 4 bytes of a K-byte input contribute partly, bytes from K on nothing.
//
// Input layout used by NICs and by frame_flow_hash: source address, destination address, then
// for TCP/UDP source port, destination port, all in network byte order as they appear in the
// packet. Direction matters: the key is not symmetric, so a reply's hash differs from the
// request's.
//
// Thread-safety: everything here is pure; a `toeplitz` object is immutable after construction
// and may be shared by all shards.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace reef::net {

/// The 40-byte key Intel drivers and DPDK's testpmd use by default: the key of the Microsoft RSS
/// verification suite.
inline constexpr std::array<std::uint8_t, 40> default_rss_key = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
};

/// The Toeplitz hash of `data` under `key`, bit by bit (no table): for one-off hashes. A key
/// shorter than 4 bytes is padded with zero bits.
std::uint32_t toeplitz_hash(std::span<const std::uint8_t> key, std::span<const std::uint8_t> data) noexcept;

/// A Toeplitz hasher for one key with a precomputed table: one lookup and XOR per input byte.
/// Same results as toeplitz_hash for every input. Building it allocates about key-size KiB;
/// hashing allocates nothing.
class toeplitz {
    std::vector<std::uint8_t> _key;
    // _table[i * 256 + b]: the contribution of byte value b at input position i < key size (later
    // positions meet only the zero bits past the key).
    std::vector<std::uint32_t> _table;

public:
    /// Throws std::invalid_argument if the key is shorter than 4 bytes.
    explicit toeplitz(std::span<const std::uint8_t> key);
    /// The default_rss_key.
    toeplitz();

    const std::vector<std::uint8_t>& key() const noexcept { return _key; }
    /// Longest input fully covered by key bits (key size - 4).
    std::size_t max_input() const noexcept { return _key.size() - 4; }

    std::uint32_t hash(std::span<const std::uint8_t> data) const noexcept;
};

/// The hash a NIC computes for an Ethernet frame (only its first `len` bytes at `frame` are
/// read; they must hold the headers):
///  - Ethernet II, optionally with one VLAN tag (0x8100 or 0x88a8);
///  - IPv4 TCP or UDP, not a fragment: 4-tuple (src addr, dst addr, src port, dst port);
///  - IPv4 fragments (any: first ones too, since a NIC cannot tell the flow of the later ones and
///    all fragments of a datagram must meet on one shard for reassembly), other protocols, or a
///    TCP/UDP header cut short: 2-tuple (src addr, dst addr);
///  - IPv6 likewise, after skipping hop-by-hop, routing and destination-options extension headers
///    (a fragment header gives the 2-tuple);
///  - nullopt for anything else: non-IP ethertypes (ARP...), frames too short for their IP header,
///    IPv4 with a bad version or header length.
std::optional<std::uint32_t> frame_flow_hash(const toeplitz& t, const char* frame, std::size_t len) noexcept;

}  // namespace reef::net
