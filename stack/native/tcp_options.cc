// TCP option parsing and encoding; see tcp_options.hh.
#include "stack/native/tcp_options.hh"

#include <algorithm>

namespace reef::net {

bool parse_tcp_options(const char* p, std::size_t len, tcp_options& out) noexcept {
    out = tcp_options{};
    std::size_t i = 0;
    while (i < len) {
        auto kind = std::uint8_t(p[i]);
        if (kind == tcp_option_kind::eol) {
            break;
        }
        if (kind == tcp_option_kind::nop) {
            ++i;
            continue;
        }
        if (i + 1 >= len) {
            return false;  // a kind without its length byte
        }
        std::size_t olen = std::uint8_t(p[i + 1]);
        if (olen < 2 || i + olen > len) {
            return false;
        }
        const char* v = p + i + 2;
        switch (kind) {
        case tcp_option_kind::mss:
            if (olen != 4) {
                return false;
            }
            out.mss = tcp_load16(v);
            break;
        case tcp_option_kind::window_scale:
            if (olen != 3) {
                return false;
            }
            // RFC 7323 2.3: a shift above 14 is logged and used as 14.
            out.wscale = std::min<std::uint8_t>(std::uint8_t(v[0]), tcp_max_wscale);
            break;
        case tcp_option_kind::sack_permitted:
            if (olen != 2) {
                return false;
            }
            out.sack_permitted = true;
            break;
        case tcp_option_kind::sack: {
            // RFC 2018 3: 8n + 2 bytes, n >= 1 (at most 4 fit in 40 option bytes).
            if (olen < 10 || (olen - 2) % 8 != 0) {
                return false;
            }
            std::size_t n = (olen - 2) / 8;
            out.nr_sack = std::uint8_t(std::min<std::size_t>(n, 4));
            for (std::size_t b = 0; b < out.nr_sack; ++b) {
                out.sack[b].left = tcp_seq(tcp_load32(v + 8 * b));
                out.sack[b].right = tcp_seq(tcp_load32(v + 8 * b + 4));
            }
            break;
        }
        case tcp_option_kind::timestamps:
            if (olen != 10) {
                return false;
            }
            out.has_timestamps = true;
            out.tsval = tcp_load32(v);
            out.tsecr = tcp_load32(v + 4);
            break;
        default: break;  // unknown: skipped by its length (RFC 9293 3.1, MUST-6)
        }
        i += olen;
    }
    return true;
}

namespace {

std::size_t sack_blocks_that_fit(const tcp_options& o, std::size_t used) noexcept {
    if (!o.nr_sack || used + 4 + 8 > 40) {
        return 0;
    }
    return std::min<std::size_t>(o.nr_sack, (40 - used - 4) / 8);
}

std::size_t fixed_length(const tcp_options& o) noexcept {
    std::size_t n = 0;
    if (o.mss) {
        n += 4;
    }
    if (o.has_timestamps) {
        n += 12;
    } else if (o.sack_permitted) {
        n += 4;
    }
    if (o.wscale) {
        n += 4;
    }
    return n;
}

}  // namespace

std::size_t tcp_options_length(const tcp_options& o) noexcept {
    std::size_t n = fixed_length(o);
    std::size_t blocks = sack_blocks_that_fit(o, n);
    return blocks ? n + 4 + 8 * blocks : n;
}

std::size_t write_tcp_options(char* p, const tcp_options& o) noexcept {
    std::size_t fixed = fixed_length(o);
    char* start = p;
    if (o.mss) {
        p[0] = char(tcp_option_kind::mss);
        p[1] = 4;
        tcp_store16(p + 2, *o.mss);
        p += 4;
    }
    if (o.has_timestamps) {
        if (o.sack_permitted) {
            p[0] = char(tcp_option_kind::sack_permitted);
            p[1] = 2;
        } else {
            p[0] = p[1] = char(tcp_option_kind::nop);
        }
        p[2] = char(tcp_option_kind::timestamps);
        p[3] = 10;
        tcp_store32(p + 4, o.tsval);
        tcp_store32(p + 8, o.tsecr);
        p += 12;
    } else if (o.sack_permitted) {
        p[0] = p[1] = char(tcp_option_kind::nop);
        p[2] = char(tcp_option_kind::sack_permitted);
        p[3] = 2;
        p += 4;
    }
    if (o.wscale) {
        p[0] = char(tcp_option_kind::nop);
        p[1] = char(tcp_option_kind::window_scale);
        p[2] = 3;
        p[3] = char(std::min<std::uint8_t>(*o.wscale, tcp_max_wscale));
        p += 4;
    }
    std::size_t blocks = sack_blocks_that_fit(o, fixed);
    if (blocks) {
        p[0] = p[1] = char(tcp_option_kind::nop);
        p[2] = char(tcp_option_kind::sack);
        p[3] = char(2 + 8 * blocks);
        p += 4;
        for (std::size_t b = 0; b < blocks; ++b) {
            tcp_store32(p, o.sack[b].left.raw);
            tcp_store32(p + 4, o.sack[b].right.raw);
            p += 8;
        }
    }
    return std::size_t(p - start);
}

}  // namespace reef::net
