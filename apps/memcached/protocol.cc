#include "apps/memcached/protocol.hh"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace reef::memcached {

namespace {

// ---------------------------------------------------------------------------------------------
// Small helpers

void append_uint(std::string& out, std::uint64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

void append_int(std::string& out, std::int64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// memcached's safe_strtoul & co: the whole token is a number in range (a leading '-' is refused
// for unsigned values, as memcached refuses negative flags and deltas).
template <typename T>
bool parse_number(std::string_view s, T& v) {
    if (s.empty()) {
        return false;
    }
    if constexpr (std::is_unsigned_v<T>) {
        if (s[0] == '-') {
            return false;
        }
    }
    const char* b = s.data();
    if (s[0] == '+') {
        ++b;
    }
    auto r = std::from_chars(b, s.data() + s.size(), v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Tokens of a text line: split on spaces, runs of spaces count as one (memcached's tokenizer).
void tokenize(std::string_view line, std::vector<std::string_view>& tokens, std::size_t max) {
    tokens.clear();
    const char* p = line.data();
    const char* const e = p + line.size();
    while (tokens.size() < max) {
        while (p != e && *p == ' ') {
            ++p;
        }
        if (p == e) {
            break;
        }
        const char* q = static_cast<const char*>(std::memchr(p, ' ', std::size_t(e - p)));
        if (!q) {
            q = e;
        }
        tokens.emplace_back(p, std::size_t(q - p));
        p = q;
    }
}

thread_local std::vector<std::string_view> tls_tokens;

// An error or fixed reply. In the text protocol noreply silences errors too (memcached's
// out_string), except when the connection closes.
parse_result reply_with(command& c, std::size_t consumed, std::string_view text, bool close = false) {
    c.kind = close ? cmd_kind::quit : cmd_kind::reply;
    c.immediate.assign(c.noreply && !close ? std::string_view() : text);
    c.close_after = close;
    return {parse_status::done, consumed, 0};
}

// memcached reads exptimes and flags with strtol/strtoul into 64 bits and keeps 32: a number that
// parses is accepted and truncated.
bool parse_exptime(std::string_view s, std::int32_t& v) {
    std::int64_t l;
    if (!parse_number(s, l)) {
        return false;
    }
    v = std::int32_t(std::uint32_t(std::uint64_t(l)));
    return true;
}

bool parse_flags(std::string_view s, std::uint32_t& v) {
    std::uint64_t l;
    if (!parse_number(s, l)) {
        return false;
    }
    v = std::uint32_t(l);
    return true;
}

std::uint32_t expiry_of(std::int64_t exptime, const parse_limits& lim) {
    return to_expiry(exptime, lim.now, lim.start_unix);
}

// ---------------------------------------------------------------------------------------------
// Text protocol

constexpr std::string_view bad_format = "CLIENT_ERROR bad command line format\r\n";

op& new_op(command& c, op_kind kind, std::string_view key) {
    op& o = c.ops.emplace_back();
    o.kind = kind;
    o.key = key;
    o.hash = key_hash(key);
    return o;
}

parse_result parse_storage(std::string_view buf, std::size_t consumed, const std::vector<std::string_view>& t,
                           command& c, const parse_limits& lim, store_mode mode) {
    const bool is_cas = mode == store_mode::cas;
    const std::size_t base = is_cas ? 6 : 5;
    if (t.size() != base && t.size() != base + 1) {
        return reply_with(c, consumed, "ERROR\r\n");
    }
    if (t.size() == base + 1) {
        c.noreply = t.back() == "noreply";
    }
    std::uint32_t flags;
    std::int32_t exptime, vlen;
    if (!valid_key(t[1]) || !parse_flags(t[2], flags) || !parse_exptime(t[3], exptime) || !parse_number(t[4], vlen) ||
        vlen < 0) {
        return reply_with(c, consumed, bad_format);
    }
    std::uint64_t cas_in = 0;
    if (is_cas && !parse_number(t[5], cas_in)) {
        return reply_with(c, consumed, bad_format);
    }
    const std::size_t total = std::size_t(vlen) + 2;
    if (cache_shard::item_size(t[1].size(), std::size_t(vlen)) > lim.max_item_size) {
        // memcached refuses the data block and skips it; a set also drops the old value, which
        // the server does with a store that fails as too large.
        if (mode == store_mode::set) {
            c.kind = cmd_kind::keyed;
            auto& o = new_op(c, op_kind::store, t[1]);
            o.mode = mode;
            o.value = {};
            o.refused_too_large = true;
            std::size_t have = std::min<std::size_t>(buf.size() - consumed, total);
            return {parse_status::swallow, consumed + have, total - have};
        }
        c.kind = cmd_kind::reply;
        c.immediate.assign("SERVER_ERROR object too large for cache\r\n");
        std::size_t have = std::min<std::size_t>(buf.size() - consumed, total);
        return {parse_status::swallow, consumed + have, total - have};
    }
    if (buf.size() < consumed + total) {
        return {parse_status::need_more, 0, 0};
    }
    std::string_view data = buf.substr(consumed, std::size_t(vlen));
    if (buf.substr(consumed + std::size_t(vlen), 2) != "\r\n") {
        return reply_with(c, consumed + total, "CLIENT_ERROR bad data chunk\r\n");
    }
    c.kind = cmd_kind::keyed;
    auto& o = new_op(c, op_kind::store, t[1]);
    o.mode = mode;
    o.flags = flags;
    o.expiry = expiry_of(exptime, lim);
    o.value = data;
    o.compare_cas = cas_in;
    return {parse_status::done, consumed + total, 0};
}

parse_result parse_text(std::string_view buf, command& c, const parse_limits& lim) {
    const bool is_get = buf.starts_with("get") || buf.starts_with("gat");
    const std::size_t limit = is_get ? lim.max_get_line : lim.max_line;
    std::size_t nl = buf.substr(0, limit + 1).find('\n');
    if (nl == std::string_view::npos) {
        if (buf.size() > limit) {
            return reply_with(c, buf.size(), "CLIENT_ERROR line too long\r\n", true);
        }
        return {parse_status::need_more, 0, 0};
    }
    const std::size_t consumed = nl + 1;
    std::string_view line = buf.substr(0, nl);
    if (!line.empty() && line.back() == '\r') {
        line.remove_suffix(1);
    }
    c.protocol = proto::text;
    // The most common request, a get of one key, without the tokenizer (same outcome).
    if (line.size() > 4 && line.starts_with("get ") && line[4] != ' ') {
        const std::string_view key = line.substr(4);
        if (key.size() <= max_key_length && key.find(' ') == std::string_view::npos) {
            c.name = line.substr(0, 3);
            c.kind = cmd_kind::keyed;
            c.with_cas = false;
            new_op(c, op_kind::get, key);
            return {parse_status::done, consumed, 0};
        }
    }
    auto& t = tls_tokens;
    tokenize(line, t, is_get ? SIZE_MAX : 24);
    if (t.empty()) {
        return reply_with(c, consumed, "ERROR\r\n");
    }
    const std::string_view cmd = t[0];
    c.name = cmd;
    if (cmd == "get" || cmd == "gets" || cmd == "gat" || cmd == "gats") {
        const bool gat = cmd[1] == 'a';
        const std::size_t first = gat ? 2 : 1;
        if (t.size() <= 1) {
            return reply_with(c, consumed, "ERROR\r\n");
        }
        std::optional<std::uint32_t> touch;
        if (gat) {
            std::int32_t exptime;
            if (!parse_exptime(t[1], exptime)) {
                return reply_with(c, consumed, "CLIENT_ERROR invalid exptime argument\r\n");
            }
            touch = expiry_of(exptime, lim);
            if (t.size() == 2) {
                return reply_with(c, consumed, "END\r\n");  // memcached: no keys, nothing found
            }
        }
        for (std::size_t i = first; i < t.size(); ++i) {
            if (!valid_key(t[i])) {
                c.ops.clear();
                return reply_with(c, consumed, bad_format);
            }
        }
        c.kind = cmd_kind::keyed;
        c.with_cas = cmd.back() == 's';
        for (std::size_t i = first; i < t.size(); ++i) {
            auto& o = new_op(c, op_kind::get, t[i]);
            o.touch_expiry = touch;
        }
        return {parse_status::done, consumed, 0};
    }
    if (cmd == "set") {
        return parse_storage(buf, consumed, t, c, lim, store_mode::set);
    }
    if (cmd == "add") {
        return parse_storage(buf, consumed, t, c, lim, store_mode::add);
    }
    if (cmd == "replace") {
        return parse_storage(buf, consumed, t, c, lim, store_mode::replace);
    }
    if (cmd == "append") {
        return parse_storage(buf, consumed, t, c, lim, store_mode::append);
    }
    if (cmd == "prepend") {
        return parse_storage(buf, consumed, t, c, lim, store_mode::prepend);
    }
    if (cmd == "cas") {
        return parse_storage(buf, consumed, t, c, lim, store_mode::cas);
    }
    if (cmd == "incr" || cmd == "decr") {
        if (t.size() != 3 && t.size() != 4) {
            return reply_with(c, consumed, "ERROR\r\n");
        }
        c.noreply = t.size() == 4 && t[3] == "noreply";
        if (!valid_key(t[1])) {
            return reply_with(c, consumed, bad_format);
        }
        std::uint64_t delta;
        if (!parse_number(t[2], delta)) {
            return reply_with(c, consumed, "CLIENT_ERROR invalid numeric delta argument\r\n");
        }
        c.kind = cmd_kind::keyed;
        auto& o = new_op(c, op_kind::arith, t[1]);
        o.incr = cmd[0] == 'i';
        o.delta = delta;
        return {parse_status::done, consumed, 0};
    }
    if (cmd == "delete") {
        if (t.size() < 2) {
            return reply_with(c, consumed, "ERROR\r\n");
        }
        bool ok = t.size() <= 4;
        if (ok && t.size() >= 3) {
            c.noreply = t.back() == "noreply";
            // "delete <key> 0" is accepted for old clients; any other time is not.
            std::size_t extra = t.size() - 2 - (c.noreply ? 1 : 0);
            ok = extra == 0 || (extra == 1 && t[2] == "0");
        }
        if (!ok) {
            return reply_with(c, consumed, "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
        }
        if (!valid_key(t[1])) {
            return reply_with(c, consumed, bad_format);
        }
        c.kind = cmd_kind::keyed;
        new_op(c, op_kind::remove, t[1]);
        return {parse_status::done, consumed, 0};
    }
    if (cmd == "touch") {
        if (t.size() != 3 && t.size() != 4) {
            return reply_with(c, consumed, "ERROR\r\n");
        }
        c.noreply = t.size() == 4 && t[3] == "noreply";
        if (!valid_key(t[1])) {
            return reply_with(c, consumed, bad_format);
        }
        std::int32_t exptime;
        if (!parse_number(t[2], exptime)) {
            return reply_with(c, consumed, "CLIENT_ERROR invalid exptime argument\r\n");
        }
        c.kind = cmd_kind::keyed;
        auto& o = new_op(c, op_kind::touch, t[1]);
        o.expiry = expiry_of(exptime, lim);
        return {parse_status::done, consumed, 0};
    }
    if (cmd == "flush_all") {
        if (t.size() > 3) {
            return reply_with(c, consumed, "ERROR\r\n");
        }
        c.noreply = t.size() > 1 && t.back() == "noreply";
        std::size_t nargs = t.size() - 1 - (c.noreply ? 1 : 0);
        std::int32_t delay = 0;
        if (nargs == 1 && !parse_exptime(t[1], delay)) {
            return reply_with(c, consumed, "CLIENT_ERROR invalid exptime argument\r\n");
        }
        c.kind = cmd_kind::flush_all;
        // memcached: a delay is an exptime (relative or absolute); the flush happens then.
        c.number = delay <= 0 ? 0 : std::int64_t(expiry_of(delay, lim)) - lim.now;
        return {parse_status::done, consumed, 0};
    }
    if (cmd == "version") {  // memcached ignores anything after it
        c.kind = cmd_kind::version;
        return {parse_status::done, consumed, 0};
    }
    if (cmd == "verbosity" && (t.size() == 2 || t.size() == 3)) {
        c.noreply = t.back() == "noreply";
        c.kind = cmd_kind::verbosity;
        std::uint32_t level = 0;
        if (!parse_number(t[1], level)) {
            return reply_with(c, consumed, bad_format);
        }
        c.number = level;
        return {parse_status::done, consumed, 0};
    }
    if (cmd == "stats") {
        c.kind = cmd_kind::stats;
        c.arg.clear();
        for (std::size_t i = 1; i < t.size(); ++i) {
            if (i > 1) {
                c.arg += ' ';
            }
            c.arg.append(t[i]);
        }
        return {parse_status::done, consumed, 0};
    }
    if (cmd == "shutdown") {
        return reply_with(c, consumed, "ERROR: shutdown not enabled\r\n");
    }
    if (cmd == "cache_memlimit" && (t.size() == 2 || t.size() == 3)) {
        c.noreply = t.back() == "noreply";
        std::uint32_t mb;
        if (!parse_number(t[1], mb)) {
            return reply_with(c, consumed, bad_format);
        }
        c.kind = cmd_kind::memlimit;
        c.number = std::max<std::uint32_t>(mb, 8);  // memcached's floor
        return {parse_status::done, consumed, 0};
    }
    if (cmd == "quit") {
        c.kind = cmd_kind::quit;
        c.immediate.clear();
        return {parse_status::done, consumed, 0};
    }
    return reply_with(c, consumed, "ERROR\r\n");
}

// ---------------------------------------------------------------------------------------------
// Meta protocol

bool base64_decode(std::string_view in, std::string& out) {
    auto val = [](char ch) -> int {
        if (ch >= 'A' && ch <= 'Z') return ch - 'A';
        if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
        if (ch >= '0' && ch <= '9') return ch - '0' + 52;
        if (ch == '+') return 62;
        if (ch == '/') return 63;
        return -1;
    };
    if (in.size() % 4 != 0) {
        return false;
    }
    out.clear();
    for (std::size_t i = 0; i < in.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            char ch = in[i + k];
            if (ch == '=' && i + 4 == in.size() && k >= 2) {
                v[k] = 0;
                ++pad;
            } else if (pad || (v[k] = val(ch)) < 0) {
                return false;
            }
        }
        std::uint32_t n = (std::uint32_t(v[0]) << 18) | (std::uint32_t(v[1]) << 12) | (std::uint32_t(v[2]) << 6) |
                          std::uint32_t(v[3]);
        out += char(n >> 16);
        if (pad < 2) out += char((n >> 8) & 0xff);
        if (pad < 1) out += char(n & 0xff);
    }
    return true;
}

void base64_encode(std::string_view in, std::string& out) {
    static constexpr char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        std::uint32_t n = (std::uint8_t(in[i]) << 16) | (std::uint8_t(in[i + 1]) << 8) | std::uint8_t(in[i + 2]);
        out += tbl[n >> 18];
        out += tbl[(n >> 12) & 63];
        out += tbl[(n >> 6) & 63];
        out += tbl[n & 63];
    }
    if (std::size_t rest = in.size() - i) {
        std::uint32_t n = std::uint8_t(in[i]) << 16;
        if (rest == 2) {
            n |= std::uint8_t(in[i + 1]) << 8;
        }
        out += tbl[n >> 18];
        out += tbl[(n >> 12) & 63];
        out += rest == 2 ? tbl[(n >> 6) & 63] : '=';
        out += '=';
    }
}

// The token of a meta flag ("T30" -> "30").
std::string_view flag_token(std::string_view f) { return f.substr(1); }

parse_result parse_meta(std::string_view buf, command& c, const parse_limits& lim) {
    std::size_t nl = buf.substr(0, lim.max_line + 1).find('\n');
    if (nl == std::string_view::npos) {
        if (buf.size() > lim.max_line) {
            return reply_with(c, buf.size(), "CLIENT_ERROR line too long\r\n", true);
        }
        return {parse_status::need_more, 0, 0};
    }
    std::size_t consumed = nl + 1;
    std::string_view line = buf.substr(0, nl);
    if (!line.empty() && line.back() == '\r') {
        line.remove_suffix(1);
    }
    auto& t = tls_tokens;
    tokenize(line, t, 64);
    c.protocol = proto::meta;
    const std::string_view cmd = t[0];
    c.name = cmd;
    if (cmd == "mn") {
        c.kind = cmd_kind::noop;
        return {parse_status::done, consumed, 0};
    }
    if (cmd != "mg" && cmd != "ms" && cmd != "md" && cmd != "ma" && cmd != "me") {
        return reply_with(c, consumed, "ERROR\r\n");
    }
    if (t.size() < 2) {
        return reply_with(c, consumed, cmd == "me" ? bad_format : std::string_view("ERROR\r\n"));
    }
    std::size_t first_flag = 2;
    std::int64_t datalen = -1;
    if (cmd == "ms") {
        if (t.size() < 3 || !parse_number(t[2], datalen) || datalen < 0) {
            return reply_with(c, consumed, bad_format);
        }
        first_flag = 3;
    }
    // Flags first: b changes how the key reads.
    for (std::size_t i = first_flag; i < t.size(); ++i) {
        if (t[i] == "b") {
            c.meta_base64 = true;
        } else if (t[i] == "q") {
            c.meta_quiet = true;
        }
    }
    std::string_view key = t[1];
    if (c.meta_base64) {
        if (!base64_decode(key, c.decoded_key) || c.decoded_key.empty() || c.decoded_key.size() > max_key_length) {
            return reply_with(c, consumed, bad_format);
        }
        key = c.decoded_key;
    } else if (!valid_key(key)) {
        return reply_with(c, consumed, bad_format);
    }
    const op_kind kind = cmd == "mg"   ? op_kind::get
                         : cmd == "ms" ? op_kind::store
                         : cmd == "md" ? op_kind::remove
                         : cmd == "ma" ? op_kind::arith
                                       : op_kind::peek;
    op& o = new_op(c, kind, key);
    o.meta = true;
    o.want_value = false;
    o.incr = true;
    o.delta = 1;
    bool bad = false;
    for (std::size_t i = first_flag; i < t.size() && !bad; ++i) {
        std::string_view f = t[i];
        std::string_view tok = flag_token(f);
        switch (f[0]) {
        case 'v':
            o.want_value = kind == op_kind::get;
            c.meta_flags.push_back(f);
            break;
        case 'b':
        case 'q': break;
        case 'T': {
            std::int32_t ttl;
            if (!parse_number(tok, ttl)) {
                bad = true;
                break;
            }
            if (kind == op_kind::get) {
                o.touch_expiry = expiry_of(ttl, lim);
            } else {
                o.expiry = expiry_of(ttl, lim);
                o.touch_expiry = o.expiry;  // ma: update the ttl of an existing item
            }
            break;
        }
        case 'N': {
            std::int32_t ttl;
            if (!parse_number(tok, ttl)) {
                bad = true;
                break;
            }
            if (kind == op_kind::get) {
                o.vivify = true;
            }
            o.autoviv = true;
            o.expiry = expiry_of(ttl, lim);
            break;
        }
        case 'F':
            if (!parse_number(tok, o.flags)) {
                bad = true;
            }
            break;
        case 'C':
            if (!parse_number(tok, o.compare_cas)) {
                bad = true;
            }
            break;
        case 'E':
            if (!parse_number(tok, o.explicit_cas)) {
                bad = true;
            }
            break;
        case 'J':
            if (!parse_number(tok, o.initial)) {
                bad = true;
            }
            break;
        case 'D':
            if (!parse_number(tok, o.delta)) {
                bad = true;
            }
            break;
        case 'M': {
            char m = tok.empty() ? '?' : tok[0];
            if (kind == op_kind::store) {
                switch (m) {
                case 'E':
                case 'e': o.mode = store_mode::add; break;
                case 'A':
                case 'a': o.mode = store_mode::append; break;
                case 'P':
                case 'p': o.mode = store_mode::prepend; break;
                case 'R':
                case 'r': o.mode = store_mode::replace; break;
                case 'S':
                case 's': o.mode = store_mode::set; break;
                default: bad = true;
                }
            } else if (kind == op_kind::arith) {
                switch (m) {
                case 'I':
                case 'i':
                case '+': o.incr = true; break;
                case 'D':
                case 'd':
                case '-': o.incr = false; break;
                default: bad = true;
                }
            }
            break;
        }
        case 'O':
        case 'k':
        case 'c':
        case 'f':
        case 'h':
        case 'l':
        case 's':
        case 't':
            if (f[0] != 'O' && f.size() != 1) {
                bad = true;
                break;
            }
            if (kind == op_kind::get && (f[0] == 'f' || f[0] == 's')) {
                // needs nothing more than the hit
            }
            c.meta_flags.push_back(f);
            break;
        case 'I':
        case 'S':
        case 'x':
        case 'u':
        case 'R':
        case 'P':
        case 'L': break;  // accepted and ignored (invalidation, stats, proxy hints)
        default: bad = true;
        }
    }
    if (bad) {
        c.ops.clear();
        c.meta_flags.clear();
        if (kind == op_kind::store) {
            // The data block follows anyway: skip it.
            const std::size_t total = std::size_t(datalen) + 2;
            c.kind = cmd_kind::reply;
            c.immediate.assign("CLIENT_ERROR invalid flag\r\n");
            std::size_t have = std::min<std::size_t>(buf.size() - consumed, total);
            return {parse_status::swallow, consumed + have, total - have};
        }
        return reply_with(c, consumed, "CLIENT_ERROR invalid flag\r\n");
    }
    if (kind == op_kind::store) {
        const std::size_t vlen = std::size_t(datalen);
        const std::size_t total = vlen + 2;
        if (cache_shard::item_size(key.size(), vlen) > lim.max_item_size) {
            c.ops.clear();
            c.kind = cmd_kind::reply;
            c.immediate.assign("SERVER_ERROR object too large for cache\r\n");
            std::size_t have = std::min<std::size_t>(buf.size() - consumed, total);
            return {parse_status::swallow, consumed + have, total - have};
        }
        if (buf.size() < consumed + total) {
            c.ops.clear();
            c.meta_flags.clear();
            return {parse_status::need_more, 0, 0};
        }
        if (buf.substr(consumed + vlen, 2) != "\r\n") {
            c.ops.clear();
            return reply_with(c, consumed + total, "CLIENT_ERROR bad data chunk\r\n");
        }
        c.ops[0].value = buf.substr(consumed, vlen);
        if (c.ops[0].mode == store_mode::set && c.ops[0].compare_cas != 0) {
            c.ops[0].mode = store_mode::cas;
        }
        consumed += total;
    }
    c.kind = cmd_kind::keyed;
    return {parse_status::done, consumed, 0};
}

// ---------------------------------------------------------------------------------------------
// Binary protocol

namespace bin {
constexpr std::size_t header_len = 24;
enum opcode : std::uint8_t {
    get = 0x00,
    set = 0x01,
    add = 0x02,
    replace = 0x03,
    del = 0x04,
    incr = 0x05,
    decr = 0x06,
    quit = 0x07,
    flush = 0x08,
    getq = 0x09,
    noop = 0x0a,
    version = 0x0b,
    getk = 0x0c,
    getkq = 0x0d,
    append = 0x0e,
    prepend = 0x0f,
    stat = 0x10,
    setq = 0x11,
    addq = 0x12,
    replaceq = 0x13,
    delq = 0x14,
    incrq = 0x15,
    decrq = 0x16,
    quitq = 0x17,
    flushq = 0x18,
    appendq = 0x19,
    prependq = 0x1a,
    verbosity = 0x1b,
    touch = 0x1c,
    gat = 0x1d,
    gatq = 0x1e,
    gatk = 0x23,
    gatkq = 0x24,
};
enum status : std::uint16_t {
    ok = 0,
    key_enoent = 1,
    key_eexists = 2,
    e2big = 3,
    einval = 4,
    not_stored = 5,
    delta_badval = 6,
    unknown_command = 0x81,
    enomem = 0x82,
};

std::uint16_t be16(const char* p) { return std::uint16_t((std::uint8_t(p[0]) << 8) | std::uint8_t(p[1])); }
std::uint32_t be32(const char* p) {
    return (std::uint32_t(std::uint8_t(p[0])) << 24) | (std::uint32_t(std::uint8_t(p[1])) << 16) |
           (std::uint32_t(std::uint8_t(p[2])) << 8) | std::uint8_t(p[3]);
}
std::uint64_t be64(const char* p) { return (std::uint64_t(be32(p)) << 32) | be32(p + 4); }
void put16(std::string& o, std::uint16_t v) {
    o += char(v >> 8);
    o += char(v);
}
void put32(std::string& o, std::uint32_t v) {
    put16(o, std::uint16_t(v >> 16));
    put16(o, std::uint16_t(v));
}
void put64(std::string& o, std::uint64_t v) {
    put32(o, std::uint32_t(v >> 32));
    put32(o, std::uint32_t(v));
}

void header(std::string& o, std::uint8_t opcode, std::uint16_t keylen, std::uint8_t extlen, std::uint16_t st,
            std::uint32_t bodylen, std::uint32_t opaque, std::uint64_t cas) {
    o += char(0x81);
    o += char(opcode);
    put16(o, keylen);
    o += char(extlen);
    o += char(0);
    put16(o, st);
    put32(o, bodylen);
    o.append(reinterpret_cast<const char*>(&opaque), 4);
    put64(o, cas);
}

std::string_view status_text(std::uint16_t st) {
    switch (st) {
    case key_enoent: return "Not found";
    case key_eexists: return "Data exists for key.";
    case e2big: return "Too large.";
    case einval: return "Invalid arguments";
    case not_stored: return "Not stored.";
    case delta_badval: return "Non-numeric server-side value for incr or decr";
    case unknown_command: return "Unknown command";
    case enomem: return "Out of memory";
    default: return "";
    }
}

void error(std::string& o, std::uint8_t opcode, std::uint16_t st, std::uint32_t opaque, std::string_view key = {}) {
    std::string_view text = key.empty() ? status_text(st) : std::string_view();
    header(o, opcode, std::uint16_t(key.size()), 0, st, std::uint32_t(key.size() + text.size()), opaque, 0);
    o.append(key);
    o.append(text);
}

bool is_quiet(std::uint8_t op) {
    switch (op) {
    case getq:
    case getkq:
    case setq:
    case addq:
    case replaceq:
    case delq:
    case incrq:
    case decrq:
    case quitq:
    case flushq:
    case appendq:
    case prependq:
    case gatq:
    case gatkq: return true;
    default: return false;
    }
}

const char* name_of(std::uint8_t op) {
    switch (op) {
    case get:
    case getq:
    case getk:
    case getkq: return "get";
    case set:
    case setq: return "set";
    case add:
    case addq: return "add";
    case replace:
    case replaceq: return "replace";
    case del:
    case delq: return "delete";
    case incr:
    case incrq: return "incr";
    case decr:
    case decrq: return "decr";
    case append:
    case appendq: return "append";
    case prepend:
    case prependq: return "prepend";
    case touch: return "touch";
    case gat:
    case gatq:
    case gatk:
    case gatkq: return "gat";
    default: return "binary";
    }
}
}  // namespace bin

parse_result parse_binary(std::string_view buf, command& c, const parse_limits& lim) {
    using namespace bin;
    if (buf.size() < header_len) {
        return {parse_status::need_more, 0, 0};
    }
    const char* h = buf.data();
    const std::uint8_t opc = std::uint8_t(h[1]);
    const std::uint16_t keylen = be16(h + 2);
    const std::uint8_t extlen = std::uint8_t(h[4]);
    const std::uint8_t datatype = std::uint8_t(h[5]);
    const std::uint32_t bodylen = be32(h + 8);
    std::uint32_t opaque;
    std::memcpy(&opaque, h + 12, 4);
    const std::uint64_t cas = be64(h + 16);
    c.protocol = proto::binary;
    c.opcode = opc;
    c.opaque = opaque;
    c.quiet = is_quiet(opc);
    c.name = name_of(opc);
    auto fail = [&](std::uint16_t st, std::size_t consumed, std::uint64_t swallow = 0) -> parse_result {
        c.kind = cmd_kind::reply;
        c.immediate.clear();
        error(c.immediate, opc, st, opaque);
        // memcached closes the connection after "Invalid arguments".
        c.close_after = st == einval;
        if (c.close_after) {
            c.kind = cmd_kind::quit;
        }
        if (swallow) {
            return {parse_status::swallow, consumed, swallow};
        }
        return {parse_status::done, consumed, 0};
    };
    if (std::size_t(keylen) + extlen > bodylen) {
        // The lengths contradict each other: nothing after this header can be trusted.
        // memcached answers "Unknown command" and closes.
        c.kind = cmd_kind::quit;
        c.immediate.clear();
        error(c.immediate, opc, unknown_command, opaque);
        c.close_after = true;
        return {parse_status::done, buf.size(), 0};
    }
    if (bodylen > lim.max_item_size + 2048) {
        std::size_t have = std::min<std::size_t>(buf.size() - header_len, bodylen);
        return fail(e2big, header_len + have, bodylen - have);
    }
    if (buf.size() < header_len + bodylen) {
        return {parse_status::need_more, 0, 0};
    }
    const std::size_t consumed = header_len + bodylen;
    const char* ext = h + header_len;
    std::string_view key(ext + extlen, keylen);
    std::string_view value(ext + extlen + keylen, bodylen - extlen - keylen);
    (void)datatype;  // memcached ignores it (only raw bytes exist)
    auto need = [&](bool cond) { return cond; };
    bool valid = true;
    switch (opc) {
    case get:
    case getq:
    case getk:
    case getkq: valid = need(extlen == 0 && keylen > 0 && value.empty()); break;
    case set:
    case setq:
    case add:
    case addq:
    case replace:
    case replaceq: valid = need(extlen == 8 && keylen > 0); break;
    case del:
    case delq: valid = need(extlen == 0 && keylen > 0 && value.empty()); break;
    case incr:
    case incrq:
    case decr:
    case decrq: valid = need(extlen == 20 && keylen > 0 && value.empty()); break;
    case quit:
    case quitq:
    case noop:
    case version: valid = need(extlen == 0 && keylen == 0 && bodylen == 0); break;
    case flush:
    case flushq: valid = need((extlen == 0 || extlen == 4) && keylen == 0 && value.empty()); break;
    case append:
    case appendq:
    case prepend:
    case prependq: valid = need(extlen == 0 && keylen > 0); break;
    case stat: valid = need(extlen == 0 && value.empty()); break;
    case verbosity: valid = need(extlen == 4 && keylen == 0 && value.empty()); break;
    case touch:
    case gat:
    case gatq:
    case gatk:
    case gatkq: valid = need(extlen == 4 && keylen > 0 && value.empty()); break;
    default: return fail(unknown_command, consumed);
    }
    if (!valid || (keylen > 0 && keylen > max_key_length)) {
        return fail(einval, consumed);
    }
    switch (opc) {
    case quit:
        c.kind = cmd_kind::quit;
        c.immediate.clear();
        header(c.immediate, opc, 0, 0, ok, 0, opaque, 0);
        return {parse_status::done, consumed, 0};
    case quitq:
        c.kind = cmd_kind::quit;
        c.immediate.clear();
        return {parse_status::done, consumed, 0};
    case noop: c.kind = cmd_kind::noop; return {parse_status::done, consumed, 0};
    case version: c.kind = cmd_kind::version; return {parse_status::done, consumed, 0};
    case verbosity: c.kind = cmd_kind::verbosity; return {parse_status::done, consumed, 0};
    case flush:
    case flushq: {
        c.kind = cmd_kind::flush_all;
        std::int64_t delay = extlen == 4 ? std::int64_t(be32(ext)) : 0;
        c.number = delay <= 0 ? 0 : std::int64_t(expiry_of(delay, lim)) - lim.now;
        return {parse_status::done, consumed, 0};
    }
    case stat:
        c.kind = cmd_kind::stats;
        c.arg.assign(key);
        return {parse_status::done, consumed, 0};
    default: break;
    }
    c.kind = cmd_kind::keyed;
    switch (opc) {
    case get:
    case getq:
    case getk:
    case getkq: new_op(c, op_kind::get, key); break;
    case gat:
    case gatq:
    case gatk:
    case gatkq: {
        auto& o = new_op(c, op_kind::get, key);
        o.touch_expiry = expiry_of(std::int32_t(be32(ext)), lim);
        break;
    }
    case touch: {
        auto& o = new_op(c, op_kind::touch, key);
        o.expiry = expiry_of(std::int32_t(be32(ext)), lim);
        break;
    }
    case set:
    case setq:
    case add:
    case addq:
    case replace:
    case replaceq: {
        if (cache_shard::item_size(key.size(), value.size()) > lim.max_item_size) {
            return fail(e2big, consumed);
        }
        auto& o = new_op(c, op_kind::store, key);
        o.flags = be32(ext);
        o.expiry = expiry_of(std::int32_t(be32(ext + 4)), lim);
        o.value = value;
        const bool is_set = opc == set || opc == setq, is_add = opc == add || opc == addq;
        o.mode = is_set ? store_mode::set : is_add ? store_mode::add : store_mode::replace;
        if (cas != 0) {
            o.compare_cas = cas;  // for add, memcached's answer is then "not found" or "exists"
            if (is_set) {
                o.mode = store_mode::cas;
            }
        }
        break;
    }
    case append:
    case appendq:
    case prepend:
    case prependq: {
        if (cache_shard::item_size(key.size(), value.size()) > lim.max_item_size) {
            return fail(e2big, consumed);
        }
        auto& o = new_op(c, op_kind::store, key);
        o.value = value;
        o.mode = (opc == append || opc == appendq) ? store_mode::append : store_mode::prepend;
        o.compare_cas = cas;
        break;
    }
    case del:
    case delq: {
        auto& o = new_op(c, op_kind::remove, key);
        o.compare_cas = cas;
        break;
    }
    case incr:
    case incrq:
    case decr:
    case decrq: {
        auto& o = new_op(c, op_kind::arith, key);
        o.incr = opc == incr || opc == incrq;
        o.delta = be64(ext);
        o.initial = be64(ext + 8);
        std::uint32_t exp = be32(ext + 16);
        o.autoviv = exp != 0xffffffffu;
        o.expiry = expiry_of(std::int32_t(exp), lim);
        o.compare_cas = cas;
        break;
    }
    default: break;
    }
    return {parse_status::done, consumed, 0};
}

// ---------------------------------------------------------------------------------------------
// Replies

void format_text(const command& c, const std::vector<op_result>& results, std::string& out) {
    const op& o = c.ops[0];
    const op_result& r = results[0];
    switch (o.kind) {
    case op_kind::get:
        for (std::size_t i = 0; i < c.ops.size(); ++i) {
            if (!results[i].item) {
                continue;
            }
            const item_info& it = *results[i].item;
            const std::string_view key = c.ops[i].key;
            // The header line is built on the stack and appended once: each append to `out`
            // costs a capacity check and a call. The text parser refuses keys longer than
            // max_key_length; were one to come here anyway, it is appended on its own.
            char head[sizeof "VALUE " + max_key_length + 3 * 21 + 2];
            char* p = head;
            if (key.size() <= max_key_length) [[likely]] {
                std::memcpy(p, "VALUE ", 6);
                p += 6;
                std::memcpy(p, key.data(), key.size());
                p += key.size();
            } else {
                out += "VALUE ";
                out.append(key);
            }
            *p++ = ' ';
            p = std::to_chars(p, p + 20, it.flags).ptr;
            *p++ = ' ';
            p = std::to_chars(p, p + 20, it.size).ptr;
            if (c.with_cas) {
                *p++ = ' ';
                p = std::to_chars(p, p + 20, it.cas).ptr;
            }
            *p++ = '\r';
            *p++ = '\n';
            out.reserve(out.size() + std::size_t(p - head) + it.value.size() + 7);
            out.append(head, p);
            out.append(it.value);
            out.append("\r\n", 2);
        }
        if (!c.omit_end) {
            out += "END\r\n";
        }
        return;
    case op_kind::store: {
        std::string_view s;
        switch (r.stored.status) {
        case store_status::stored: s = "STORED\r\n"; break;
        case store_status::not_stored: s = "NOT_STORED\r\n"; break;
        case store_status::exists: s = "EXISTS\r\n"; break;
        case store_status::not_found: s = "NOT_FOUND\r\n"; break;
        case store_status::too_large: s = "SERVER_ERROR object too large for cache\r\n"; break;
        case store_status::no_memory: s = "SERVER_ERROR out of memory storing object\r\n"; break;
        }
        if (!c.noreply) {
            out += s;
        }
        return;
    }
    case op_kind::arith:
        switch (r.arith.status) {
        case arith_status::ok:
            if (!c.noreply) {
                append_uint(out, r.arith.value);
                out += "\r\n";
            }
            return;
        case arith_status::not_found:
            if (!c.noreply) {
                out += "NOT_FOUND\r\n";
            }
            return;
        case arith_status::exists:
            if (!c.noreply) {
                out += "EXISTS\r\n";
            }
            return;
        case arith_status::non_numeric:
            if (!c.noreply) {
                out += "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
            }
            return;
        case arith_status::no_memory:
            if (!c.noreply) {
                out += "SERVER_ERROR out of memory\r\n";
            }
            return;
        }
        return;
    case op_kind::remove:
        if (!c.noreply) {
            out += r.deleted == delete_status::deleted ? "DELETED\r\n" : "NOT_FOUND\r\n";
        }
        return;
    case op_kind::touch:
        if (!c.noreply) {
            out += r.touched ? "TOUCHED\r\n" : "NOT_FOUND\r\n";
        }
        return;
    case op_kind::peek: return;
    }
}

// The return flags of a meta reply, in the order the client asked for them.
void meta_flags(const command& c, const op& o, const op_result& r, std::string& out) {
    for (std::string_view f : c.meta_flags) {
        const item_info* it = r.item ? &*r.item : nullptr;
        switch (f[0]) {
        case 'O':
            out += ' ';
            out.append(f);
            break;
        case 'k':
            out += " k";
            if (c.meta_base64) {
                base64_encode(o.key, out);
            } else {
                out.append(o.key);
            }
            break;
        case 'c': {
            std::uint64_t cas = it ? it->cas : o.kind == op_kind::store ? r.stored.cas : r.arith.cas;
            out += " c";
            append_uint(out, cas);
            break;
        }
        case 'f':
            if (it) {
                out += " f";
                append_uint(out, it->flags);
            }
            break;
        case 's':
            if (it) {
                out += " s";
                append_uint(out, it->size);
            }
            break;
        case 't':
            if (it) {
                out += " t";
                append_int(out, it->expiry == 0 ? -1 : std::int64_t(it->expiry) - std::int64_t(r.now));
            }
            break;
        case 'h':
            if (it) {
                out += it->fetched_before ? " h1" : " h0";
            }
            break;
        case 'l':
            if (it) {
                out += " l";
                append_uint(out, r.now > it->last_access ? r.now - it->last_access : 0);
            }
            break;
        default: break;
        }
    }
}

}  // namespace

void op::make_owned() {
    owned_key.assign(key);
    owned_value.assign(value);
    rebind();
}

void command::clear() noexcept {
    kind = cmd_kind::reply;
    protocol = proto::text;
    name = {};
    ops.clear();
    noreply = false;
    with_cas = false;
    omit_end = false;
    number = 0;
    arg.clear();
    immediate.clear();
    close_after = false;
    meta_flags.clear();
    meta_quiet = false;
    meta_base64 = false;
    decoded_key.clear();
    opcode = 0;
    opaque = 0;
    quiet = false;
}

bool valid_key(std::string_view key) noexcept {
    // Only the length: memcached 1.6 takes any other byte the tokenizer leaves in a key, and real
    // clients rely on it (memcaslap's keys start with 0x10 bytes).
    return !key.empty() && key.size() <= max_key_length;
}

op_result execute_op(cache_shard& cache, const op& o, std::uint32_t now) {
    op_result r;
    execute_op(cache, o, now, r);
    return r;
}

void execute_op(cache_shard& cache, const op& o, std::uint32_t now, op_result& r) {
    r.stored = store_result();
    r.arith = arith_result();
    r.deleted = delete_status::not_found;
    r.touched = false;
    r.vivified = false;
    r.now = now;
    if (o.kind != op_kind::get) {
        r.item.reset();
    }
    switch (o.kind) {
    case op_kind::get:
        // Into the item a previous op left engaged, so that its value string is reused.
        if (!r.item) {
            r.item.emplace();
        }
        if (!cache.get(o.key, o.hash, now, o.want_value, o.touch_expiry, *r.item)) {
            r.item.reset();
        }
        if (!r.item && o.vivify) {
            auto st = cache.store(store_mode::add, o.key, o.hash, 0, o.expiry, {}, now);
            if (st.status == store_status::stored) {
                r.item = cache.peek(o.key, o.hash, now);
                r.vivified = true;
            }
        }
        break;
    case op_kind::store:
        if (o.refused_too_large) {
            (void)cache.remove(o.key, o.hash, now);
            r.stored.status = store_status::too_large;
            break;
        }
        r.stored = cache.store(o.mode, o.key, o.hash, o.flags, o.expiry, o.value, now, o.compare_cas, o.explicit_cas);
        break;
    case op_kind::arith:
        r.arith = cache.arith(o.key, o.hash, o.incr, o.delta, now, o.compare_cas,
                              o.autoviv ? std::optional<std::uint32_t>(o.expiry) : std::nullopt, o.initial);
        if (o.meta && r.arith.status == arith_status::ok) {
            if (o.touch_expiry && !r.arith.created) {
                (void)cache.touch(o.key, o.hash, *o.touch_expiry, now);
            }
            r.item = cache.peek(o.key, o.hash, now);
        }
        break;
    case op_kind::remove: r.deleted = cache.remove(o.key, o.hash, now, o.compare_cas); break;
    case op_kind::touch:
        r.touched = cache.touch(o.key, o.hash, o.expiry, now);
        if (r.touched) {
            r.item = cache.peek(o.key, o.hash, now);  // binary touch answers with flags and cas
        }
        break;
    case op_kind::peek: r.item = cache.peek(o.key, o.hash, now); break;
    }
}

namespace {

void format_meta(const command& c, const std::vector<op_result>& results, std::string& out) {
    const op& o = c.ops[0];
    const op_result& r = results[0];
    auto line = [&](std::string_view code) {
        out.append(code);
        meta_flags(c, o, r, out);
        out += "\r\n";
    };
    auto want_v = [&] {
        return std::find(c.meta_flags.begin(), c.meta_flags.end(), std::string_view("v")) != c.meta_flags.end();
    };
    switch (o.kind) {
    case op_kind::get:
        if (!r.item) {
            if (!c.meta_quiet) {
                out += "EN\r\n";
            }
            return;
        }
        if (want_v()) {
            out += "VA ";
            append_uint(out, r.item->size);
            meta_flags(c, o, r, out);
            if (r.vivified) {
                out += " W";
            }
            out += "\r\n";
            out += r.item->value;
            out += "\r\n";
        } else {
            out += "HD";
            meta_flags(c, o, r, out);
            if (r.vivified) {
                out += " W";
            }
            out += "\r\n";
        }
        return;
    case op_kind::store:
        switch (r.stored.status) {
        case store_status::stored:
            if (!c.meta_quiet) {
                line("HD");
            }
            return;
        case store_status::not_stored: line("NS"); return;
        case store_status::exists: line("EX"); return;
        case store_status::not_found: line("NF"); return;
        case store_status::too_large: out += "SERVER_ERROR object too large for cache\r\n"; return;
        case store_status::no_memory: out += "SERVER_ERROR out of memory storing object\r\n"; return;
        }
        return;
    case op_kind::remove:
        switch (r.deleted) {
        case delete_status::deleted:
            if (!c.meta_quiet) {
                line("HD");
            }
            return;
        case delete_status::not_found: line("NF"); return;
        case delete_status::exists: line("EX"); return;
        }
        return;
    case op_kind::arith:
        switch (r.arith.status) {
        case arith_status::ok: {
            if (want_v()) {
                std::string num;
                append_uint(num, r.arith.value);
                out += "VA ";
                append_uint(out, num.size());
                meta_flags(c, o, r, out);
                out += "\r\n";
                out += num;
                out += "\r\n";
            } else if (!c.meta_quiet) {
                line("HD");
            }
            return;
        }
        case arith_status::not_found: line("NF"); return;
        case arith_status::exists: line("EX"); return;
        case arith_status::non_numeric:
            out += "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
            return;
        case arith_status::no_memory: line("NS"); return;
        }
        return;
    case op_kind::peek:
        if (!r.item) {
            out += "EN\r\n";
            return;
        }
        out += "ME ";
        out.append(o.key);
        out += " exp=";
        append_int(out, r.item->expiry == 0 ? -1 : std::int64_t(r.item->expiry) - std::int64_t(r.now));
        out += " la=";
        append_uint(out, r.now > r.item->last_access ? r.now - r.item->last_access : 0);
        out += " cas=";
        append_uint(out, r.item->cas);
        out += r.item->fetched_before ? " fetch=yes" : " fetch=no";
        out += " cls=1 size=";
        append_uint(out, cache_shard::item_size(o.key.size(), r.item->size));
        out += "\r\n";
        return;
    case op_kind::touch: return;
    }
}

void format_binary(const command& c, const std::vector<op_result>& results, std::string& out) {
    using namespace bin;
    const op& o = c.ops[0];
    const op_result& r = results[0];
    const std::uint8_t opc = c.opcode;
    switch (o.kind) {
    case op_kind::get: {
        const bool with_key = opc == getk || opc == getkq || opc == gatk || opc == gatkq;
        if (!r.item) {
            if (!c.quiet) {
                error(out, opc, key_enoent, c.opaque, with_key ? o.key : std::string_view());
            }
            return;
        }
        const std::size_t klen = with_key ? o.key.size() : 0;
        header(out, opc, std::uint16_t(klen), 4, ok, std::uint32_t(4 + klen + r.item->size), c.opaque, r.item->cas);
        put32(out, r.item->flags);
        if (with_key) {
            out.append(o.key);
        }
        out += r.item->value;
        return;
    }
    case op_kind::store:
        switch (r.stored.status) {
        case store_status::stored:
            if (!c.quiet) {
                header(out, opc, 0, 0, ok, 0, c.opaque, r.stored.cas);
            }
            return;
        case store_status::not_stored:
            error(out, opc,
                  o.mode == store_mode::add       ? key_eexists
                  : o.mode == store_mode::replace ? key_enoent
                                                  : not_stored,
                  c.opaque);
            return;
        case store_status::exists: error(out, opc, key_eexists, c.opaque); return;
        case store_status::not_found: error(out, opc, key_enoent, c.opaque); return;
        case store_status::too_large: error(out, opc, e2big, c.opaque); return;
        case store_status::no_memory: error(out, opc, enomem, c.opaque); return;
        }
        return;
    case op_kind::remove:
        switch (r.deleted) {
        case delete_status::deleted:
            if (!c.quiet) {
                header(out, opc, 0, 0, ok, 0, c.opaque, 0);
            }
            return;
        case delete_status::not_found: error(out, opc, key_enoent, c.opaque); return;
        case delete_status::exists: error(out, opc, key_eexists, c.opaque); return;
        }
        return;
    case op_kind::arith:
        switch (r.arith.status) {
        case arith_status::ok:
            if (!c.quiet) {
                header(out, opc, 0, 0, ok, 8, c.opaque, r.arith.cas);
                put64(out, r.arith.value);
            }
            return;
        case arith_status::not_found: error(out, opc, key_enoent, c.opaque); return;
        case arith_status::non_numeric: error(out, opc, delta_badval, c.opaque); return;
        case arith_status::exists: error(out, opc, key_eexists, c.opaque); return;
        case arith_status::no_memory: error(out, opc, enomem, c.opaque); return;
        }
        return;
    case op_kind::touch:
        if (!r.touched || !r.item) {
            error(out, opc, key_enoent, c.opaque);
        } else {
            header(out, opc, 0, 4, ok, 4, c.opaque, r.item->cas);
            put32(out, r.item->flags);
        }
        return;
    case op_kind::peek: return;
    }
}

}  // namespace

void format_reply(const command& c, const std::vector<op_result>& results, std::string& out) {
    switch (c.protocol) {
    case proto::text: format_text(c, results, out); return;
    case proto::meta: format_meta(c, results, out); return;
    case proto::binary: format_binary(c, results, out); return;
    }
}

void format_stats(const command& c, const std::vector<stat_line>& stats, std::string& out) {
    if (c.protocol == proto::binary) {
        for (auto& s : stats) {
            bin::header(out, bin::stat, std::uint16_t(s.name.size()), 0, bin::ok,
                        std::uint32_t(s.name.size() + s.value.size()), c.opaque, 0);
            out += s.name;
            out += s.value;
        }
        bin::header(out, bin::stat, 0, 0, bin::ok, 0, c.opaque, 0);
        return;
    }
    for (auto& s : stats) {
        out += "STAT ";
        out += s.name;
        out += ' ';
        out += s.value;
        out += "\r\n";
    }
    out += "END\r\n";
}

void format_stat_error(const command& c, std::string& out) {
    if (c.protocol == proto::binary) {
        bin::error(out, bin::stat, bin::key_enoent, c.opaque);
    } else {
        out += "ERROR\r\n";
    }
}

void format_simple(const command& c, std::string& out) {
    if (c.protocol == proto::binary) {
        if (c.quiet || c.kind == cmd_kind::verbosity) {
            return;  // memcached sends nothing for a binary verbosity
        }
        if (c.kind == cmd_kind::version) {
            bin::header(out, c.opcode, 0, 0, bin::ok, std::uint32_t(version_string.size()), c.opaque, 0);
            out.append(version_string);
        } else {
            bin::header(out, c.opcode, 0, 0, bin::ok, 0, c.opaque, 0);
        }
        return;
    }
    switch (c.kind) {
    case cmd_kind::version:
        out += "VERSION ";
        out.append(version_string);
        out += "\r\n";
        return;
    case cmd_kind::noop: out += "MN\r\n"; return;
    case cmd_kind::flush_all:
    case cmd_kind::verbosity:
    case cmd_kind::memlimit:
        if (!c.noreply) {
            out += "OK\r\n";
        }
        return;
    default: return;
    }
}

parse_result parse_request(std::string_view buf, command& c, const parse_limits& lim) {
    if (buf.empty()) {
        return {parse_status::need_more, 0, 0};
    }
    if (std::uint8_t(buf[0]) == 0x80) {
        return parse_binary(buf, c, lim);
    }
    if (buf.size() >= 3 && buf[0] == 'm' && std::strchr("gsdaen", buf[1]) && buf[1] != '\0' &&
        (buf[2] == ' ' || buf[2] == '\r' || buf[2] == '\n')) {
        return parse_meta(buf, c, lim);
    }
    if (buf.size() < 3 && buf[0] == 'm' && buf.find('\n') == std::string_view::npos) {
        return {parse_status::need_more, 0, 0};
    }
    return parse_text(buf, c, lim);
}

}  // namespace reef::memcached
