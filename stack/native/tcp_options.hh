// TCP options (RFC 9293 3.2): MSS, window scale and timestamps (RFC 7323), SACK-permitted and SACK
// blocks (RFC 2018). Parsing rejects any option whose length byte lies (shorter than 2, past the
// header's end, or wrong for a known kind): the caller drops such a segment and counts it
// (RFC 9293 3.2 and RFC 7323 3.2 leave a malformed option to be treated as an error).
#pragma once

#include "stack/native/tcp_header.hh"

#include <cstddef>
#include <cstdint>
#include <optional>

namespace reef::net {

namespace tcp_option_kind {
inline constexpr std::uint8_t eol = 0;
inline constexpr std::uint8_t nop = 1;
inline constexpr std::uint8_t mss = 2;
inline constexpr std::uint8_t window_scale = 3;
inline constexpr std::uint8_t sack_permitted = 4;
inline constexpr std::uint8_t sack = 5;
inline constexpr std::uint8_t timestamps = 8;
}  // namespace tcp_option_kind

/// The largest shift RFC 7323 2.3 allows; larger values are used as 14.
inline constexpr std::uint8_t tcp_max_wscale = 14;

/// One SACK block: bytes [left, right) received out of order.
struct tcp_sack_block {
    tcp_seq left;
    tcp_seq right;
};

/// The options of one segment, decoded (or to be encoded).
struct tcp_options {
    std::optional<std::uint16_t> mss;
    std::optional<std::uint8_t> wscale;
    bool sack_permitted = false;
    bool has_timestamps = false;
    std::uint32_t tsval = 0;
    std::uint32_t tsecr = 0;
    std::uint8_t nr_sack = 0;
    tcp_sack_block sack[4];
};

/// Decode the `len` option bytes at p. Returns false for a malformed option list (see the file
/// comment); `out` is then unspecified. Unknown kinds are skipped by their length. Options that are
/// only meaningful on a SYN (MSS, window scale, SACK-permitted) are reported wherever they appear;
/// the caller ignores them on other segments (RFC 7323 2.2, RFC 2018 2).
bool parse_tcp_options(const char* p, std::size_t len, tcp_options& out) noexcept;

/// Bytes write_tcp_options() would write for `o` (a multiple of 4, at most 40; SACK blocks that
/// would not fit are left out, see write_tcp_options).
std::size_t tcp_options_length(const tcp_options& o) noexcept;

/// Encode `o` at p (room for tcp_options_length(o) bytes), NOP-padded to a 32-bit boundary.
/// Order: MSS, SACK-permitted + timestamps, window scale, SACK blocks; only as many SACK blocks as
/// fit in the 40 option bytes (3 beside timestamps, 4 without). Returns the bytes written.
std::size_t write_tcp_options(char* p, const tcp_options& o) noexcept;

}  // namespace reef::net
