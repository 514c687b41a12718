// TCP wire format (RFC 9293 3.1) and sequence-number arithmetic (RFC 9293 3.4), shared by every
// native TCP file. Pure and allocation-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace reef::net {

/// A 32-bit TCP sequence number. Comparisons are modulo 2^32 (RFC 9293 3.4: a < b when the signed
/// difference b - a is positive), valid for numbers less than 2^31 apart, as the window guarantees.
struct tcp_seq {
    std::uint32_t raw = 0;

    constexpr tcp_seq() noexcept = default;
    constexpr explicit tcp_seq(std::uint32_t v) noexcept : raw(v) {}

    friend constexpr tcp_seq operator+(tcp_seq s, std::int64_t n) noexcept {
        return tcp_seq(std::uint32_t(s.raw + std::uint32_t(n)));
    }
    friend constexpr tcp_seq operator-(tcp_seq s, std::int64_t n) noexcept {
        return tcp_seq(std::uint32_t(s.raw - std::uint32_t(n)));
    }
    /// Signed distance a - b.
    friend constexpr std::int32_t operator-(tcp_seq a, tcp_seq b) noexcept { return std::int32_t(a.raw - b.raw); }
    tcp_seq& operator+=(std::int64_t n) noexcept {
        raw += std::uint32_t(n);
        return *this;
    }
    tcp_seq& operator-=(std::int64_t n) noexcept {
        raw -= std::uint32_t(n);
        return *this;
    }
    friend constexpr bool operator==(tcp_seq a, tcp_seq b) noexcept { return a.raw == b.raw; }
    friend constexpr bool operator<(tcp_seq a, tcp_seq b) noexcept { return std::int32_t(a.raw - b.raw) < 0; }
    friend constexpr bool operator>(tcp_seq a, tcp_seq b) noexcept { return std::int32_t(a.raw - b.raw) > 0; }
    friend constexpr bool operator<=(tcp_seq a, tcp_seq b) noexcept { return std::int32_t(a.raw - b.raw) <= 0; }
    friend constexpr bool operator>=(tcp_seq a, tcp_seq b) noexcept { return std::int32_t(a.raw - b.raw) >= 0; }
};

inline constexpr tcp_seq seq_max(tcp_seq a, tcp_seq b) noexcept { return a < b ? b : a; }
inline constexpr tcp_seq seq_min(tcp_seq a, tcp_seq b) noexcept { return a < b ? a : b; }
/// a <= x < b, modulo 2^32.
inline constexpr bool seq_in(tcp_seq x, tcp_seq a, tcp_seq b) noexcept { return a <= x && x < b; }

/// TCP header flags (RFC 9293 3.1; ECE/CWR of RFC 3168 are parsed but not used).
namespace tcp_flag {
inline constexpr std::uint8_t fin = 0x01;
inline constexpr std::uint8_t syn = 0x02;
inline constexpr std::uint8_t rst = 0x04;
inline constexpr std::uint8_t psh = 0x08;
inline constexpr std::uint8_t ack = 0x10;
inline constexpr std::uint8_t urg = 0x20;
inline constexpr std::uint8_t ece = 0x40;
inline constexpr std::uint8_t cwr = 0x80;
}  // namespace tcp_flag

inline constexpr std::size_t tcp_min_header_len = 20;
inline constexpr std::size_t tcp_max_header_len = 60;

inline std::uint16_t tcp_load16(const void* p) noexcept {
    auto* b = static_cast<const unsigned char*>(p);
    return std::uint16_t((b[0] << 8) | b[1]);
}
inline std::uint32_t tcp_load32(const void* p) noexcept {
    auto* b = static_cast<const unsigned char*>(p);
    return (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) | b[3];
}
inline void tcp_store16(void* p, std::uint16_t v) noexcept {
    auto* b = static_cast<unsigned char*>(p);
    b[0] = std::uint8_t(v >> 8);
    b[1] = std::uint8_t(v);
}
inline void tcp_store32(void* p, std::uint32_t v) noexcept {
    auto* b = static_cast<unsigned char*>(p);
    b[0] = std::uint8_t(v >> 24);
    b[1] = std::uint8_t(v >> 16);
    b[2] = std::uint8_t(v >> 8);
    b[3] = std::uint8_t(v);
}

/// The fixed part of a TCP header, decoded to host order.
struct tcp_header {
    std::uint16_t src_port = 0;
    std::uint16_t dst_port = 0;
    tcp_seq seq;
    tcp_seq ack;
    std::uint8_t data_offset = 5;  ///< header length in 32-bit words
    std::uint8_t flags = 0;
    std::uint16_t window = 0;  ///< unscaled, as on the wire
    std::uint16_t checksum = 0;
    std::uint16_t urgent = 0;

    bool has(std::uint8_t f) const noexcept { return flags & f; }

    /// Decode 20 bytes at p.
    static tcp_header read(const char* p) noexcept {
        tcp_header h;
        h.src_port = tcp_load16(p);
        h.dst_port = tcp_load16(p + 2);
        h.seq = tcp_seq(tcp_load32(p + 4));
        h.ack = tcp_seq(tcp_load32(p + 8));
        h.data_offset = std::uint8_t(std::uint8_t(p[12]) >> 4);
        h.flags = std::uint8_t(p[13]);
        h.window = tcp_load16(p + 14);
        std::memcpy(&h.checksum, p + 16, 2);  // kept in wire order: checksum.hh's convention
        h.urgent = tcp_load16(p + 18);
        return h;
    }
    /// Encode into 20 bytes at p (the checksum field as stored in `checksum`).
    void write(char* p) const noexcept {
        tcp_store16(p, src_port);
        tcp_store16(p + 2, dst_port);
        tcp_store32(p + 4, seq.raw);
        tcp_store32(p + 8, ack.raw);
        p[12] = char(data_offset << 4);
        p[13] = char(flags);
        tcp_store16(p + 14, window);
        std::memcpy(p + 16, &checksum, 2);
        tcp_store16(p + 18, urgent);
    }
};

}  // namespace reef::net
