#include "stack/net/toeplitz.hh"

#include "stack/net/ethernet.hh"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace reef::net {

namespace {

// The 32 key bits starting at bit `pos` (bit 0 = MSB of key[0]); missing bits are zero.
std::uint32_t key_window(std::span<const std::uint8_t> key, std::size_t pos) noexcept {
    std::uint64_t v = 0;
    std::size_t byte = pos / 8;
    for (std::size_t i = 0; i < 5; ++i) {
        v = (v << 8) | (byte + i < key.size() ? key[byte + i] : 0);
    }
    return static_cast<std::uint32_t>(v >> (8 - pos % 8));
}

}  // namespace

std::uint32_t toeplitz_hash(std::span<const std::uint8_t> key, std::span<const std::uint8_t> data) noexcept {
    std::uint32_t result = 0;
    for (std::size_t i = 0; i < data.size(); ++i) {
        std::uint8_t b = data[i];
        for (unsigned bit = 0; bit < 8; ++bit) {
            if (b & (0x80u >> bit)) {
                result ^= key_window(key, i * 8 + bit);
            }
        }
    }
    return result;
}

toeplitz::toeplitz(std::span<const std::uint8_t> key) : _key(key.begin(), key.end()) {
    if (_key.size() < 4) {
        throw std::invalid_argument("toeplitz: RSS key of " + std::to_string(_key.size()) +
                                    " bytes, at least 4 needed");
    }
    std::size_t positions = _key.size();
    _table.assign(positions * 256, 0);
    for (std::size_t i = 0; i < positions; ++i) {
        std::uint32_t* t = &_table[i * 256];
        std::uint32_t w[8];
        for (unsigned bit = 0; bit < 8; ++bit) {
            w[bit] = key_window(_key, i * 8 + bit);
        }
        // Each value is a smaller value plus its lowest set bit (bit 7 of the value = input bit 0).
        for (unsigned v = 1; v < 256; ++v) {
            unsigned low = static_cast<unsigned>(__builtin_ctz(v));
            t[v] = t[v & (v - 1)] ^ w[7 - low];
        }
    }
}

toeplitz::toeplitz() : toeplitz(std::span<const std::uint8_t>(default_rss_key)) {}

std::uint32_t toeplitz::hash(std::span<const std::uint8_t> data) const noexcept {
    std::size_t n = std::min(data.size(), _key.size());
    std::uint32_t result = 0;
    const std::uint32_t* t = _table.data();
    for (std::size_t i = 0; i < n; ++i, t += 256) {
        result ^= t[data[i]];
    }
    return result;
}

namespace {

constexpr std::uint8_t proto_tcp = 6;
constexpr std::uint8_t proto_udp = 17;

using eth::load_be16;

}  // namespace

std::optional<std::uint32_t> frame_flow_hash(const toeplitz& t, const char* frame, std::size_t len) noexcept {
    auto* p = reinterpret_cast<const unsigned char*>(frame);
    std::size_t off;
    std::uint16_t type;
    if (!eth::l3_offset(frame, len, off, type)) {
        return std::nullopt;
    }
    // src addr, dst addr, src port, dst port: at most 16 + 16 + 2 + 2 bytes.
    std::uint8_t tuple[36];
    std::size_t alen;
    std::size_t l4;
    std::uint8_t proto;
    bool ports;
    if (type == eth::type_ipv4) {
        if (len < off + 20) {
            return std::nullopt;
        }
        const unsigned char* ip = p + off;
        std::size_t ihl = (ip[0] & 0x0f) * 4u;
        if ((ip[0] >> 4) != 4 || ihl < 20 || len < off + ihl) {
            return std::nullopt;
        }
        alen = 4;
        std::memcpy(tuple, ip + 12, 8);
        proto = ip[9];
        std::uint16_t frag = load_be16(ip + 6);
        bool fragment = (frag & 0x3fff) != 0;  // MF set or a non-zero offset
        ports = !fragment;
        l4 = off + ihl;
    } else if (type == eth::type_ipv6) {
        if (len < off + 40) {
            return std::nullopt;
        }
        const unsigned char* ip = p + off;
        if ((ip[0] >> 4) != 6) {
            return std::nullopt;
        }
        alen = 16;
        std::memcpy(tuple, ip + 8, 32);
        proto = ip[6];
        l4 = off + 40;
        ports = true;
        // Skip extension headers that do not change the flow; bounded so a chain cannot loop long.
        for (int i = 0; i < 8 && (proto == 0 || proto == 43 || proto == 60); ++i) {
            if (len < l4 + 8) {
                ports = false;
                break;
            }
            std::uint8_t next = p[l4];
            l4 += (p[l4 + 1] + 1u) * 8u;
            proto = next;
        }
        if (proto == 44) {
            ports = false;  // fragment header
        }
    } else {
        return std::nullopt;
    }
    std::size_t n = 2 * alen;
    if (ports && (proto == proto_tcp || proto == proto_udp) && len >= l4 + 4) {
        std::memcpy(tuple + n, p + l4, 4);
        n += 4;
    }
    return t.hash(std::span<const std::uint8_t>(tuple, n));
}

}  // namespace reef::net
