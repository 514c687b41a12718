// The per-shard TCP: segment validation and demultiplexing, listeners (RFC 9293 3.10.7.2) with a
// bounded SYN backlog and SYN cookies, RSTs for closed ports (RFC 9293 3.10.7.1), ISNs (RFC 6528),
// local port choice, ICMP errors.
#include "stack/native/tcp.hh"

#include "runtime/coroutine.hh"
#include "runtime/future_util.hh"
#include "runtime/log.hh"
#include "runtime/reactor.hh"
#include "runtime/smp.hh"
#include "stack/native/tcp_connection.hh"
#include "stack/net/checksum.hh"

#include <fmt/format.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace reef::net {

namespace native {
extern logger native_log;  // interface.cc
}

namespace {

// SipHash-2-4 (Aumasson and Bernstein): the keyed pseudo-random function RFC 6528 asks for.
std::uint64_t rotl(std::uint64_t x, int b) noexcept { return (x << b) | (x >> (64 - b)); }

std::uint64_t siphash24(const std::uint64_t key[2], const void* data, std::size_t len) noexcept {
    std::uint64_t v0 = 0x736f6d6570736575ULL ^ key[0];
    std::uint64_t v1 = 0x646f72616e646f6dULL ^ key[1];
    std::uint64_t v2 = 0x6c7967656e657261ULL ^ key[0];
    std::uint64_t v3 = 0x7465646279746573ULL ^ key[1];
    auto round = [&] {
        v0 += v1;
        v1 = rotl(v1, 13);
        v1 ^= v0;
        v0 = rotl(v0, 32);
        v2 += v3;
        v3 = rotl(v3, 16);
        v3 ^= v2;
        v0 += v3;
        v3 = rotl(v3, 21);
        v3 ^= v0;
        v2 += v1;
        v1 = rotl(v1, 17);
        v1 ^= v2;
        v2 = rotl(v2, 32);
    };
    auto* p = static_cast<const unsigned char*>(data);
    std::size_t full = len / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) {
        std::uint64_t m = 0;
        for (int b = 0; b < 8; ++b) {
            m |= std::uint64_t(p[i + std::size_t(b)]) << (8 * b);
        }
        v3 ^= m;
        round();
        round();
        v0 ^= m;
    }
    std::uint64_t last = std::uint64_t(len & 0xff) << 56;
    for (std::size_t i = full; i < len; ++i) {
        last |= std::uint64_t(p[i]) << (8 * (i - full));
    }
    v3 ^= last;
    round();
    round();
    v0 ^= last;
    v2 ^= 0xff;
    round();
    round();
    round();
    round();
    return v0 ^ v1 ^ v2 ^ v3;
}

// MSS values a SYN cookie can carry (3 bits): the common ones, so little is lost by rounding down.
constexpr std::array<std::uint16_t, 8> cookie_mss = {536, 1200, 1360, 1400, 1440, 1460, 4312, 8960};

constexpr std::uint32_t cookie_opt_bits = 5;  // in TSval: window shift (4 bits, 15 = none), SACK (1)

}  // namespace

std::size_t tcp::tuple_hash::operator()(const four_tuple& t) const noexcept {
    std::uint64_t a = (std::uint64_t(t.local_addr) << 32) | t.remote_addr;
    std::uint64_t b = (std::uint64_t(t.local_port) << 16) | t.remote_port;
    std::uint64_t h = a * 0x9e3779b97f4a7c15ULL ^ (b + 0x632be59bd9b4e019ULL);
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return std::size_t(h ^ (h >> 32));
}

tcp::tcp(tcp_lower& lower, tcp_config cfg) : _lower(lower), _cfg(cfg), _start(std::chrono::steady_clock::now()) {
    if (_cfg.ephemeral_port_min == 0 || _cfg.ephemeral_port_min > _cfg.ephemeral_port_max) {
        throw std::invalid_argument("tcp_config: bad ephemeral port range");
    }
    std::random_device rd;
    if (_cfg.secret) {
        _secret[0] = _cfg.secret;
        _secret[1] = _cfg.secret * 0x9e3779b97f4a7c15ULL + 1;
        _rng.seed(_cfg.secret);
    } else {
        _secret[0] = (std::uint64_t(rd()) << 32) | rd();
        _secret[1] = (std::uint64_t(rd()) << 32) | rd();
        _rng.seed((std::uint64_t(rd()) << 32) | rd());
    }
}

tcp::~tcp() {
    // First, while everything a connection's destructor may touch is still here.
    _tx_waiters.clear();
    _acks_owed.clear();
    _ack_poller.reset();
    for (auto& [k, l] : _listeners) {
        l->detach();
    }
    _listeners.clear();
    auto conns = std::move(_conns);
    _conns.clear();
    for (auto& [t, c] : conns) {
        c->detach();
    }
}

future<> tcp::shutdown(std::chrono::milliseconds drain) {
    for (auto& [k, l] : _listeners) {
        l->abort_accept();
    }
    auto delivering = [this] {
        return std::any_of(_conns.begin(), _conns.end(), [](auto& kv) {
            auto st = kv.second->state();
            return st == tcp_state::fin_wait_1 || st == tcp_state::closing || st == tcp_state::last_ack;
        });
    };
    auto deadline = std::chrono::steady_clock::now() + drain;
    while (delivering() && std::chrono::steady_clock::now() < deadline) {
        co_await sleep(std::chrono::milliseconds(5));
    }
    // abort() unlinks the connection from _conns: walk a copy.
    std::vector<lw_shared_ptr<tcp_connection>> open;
    for (auto& [t, c] : _conns) {
        if (c->state() != tcp_state::time_wait && c->state() != tcp_state::closed) {
            open.push_back(c);
        }
    }
    for (auto& c : open) {
        c->abort();
    }
}

std::size_t tcp::time_wait_count() const noexcept {
    return std::size_t(std::count_if(_conns.begin(), _conns.end(),
                                     [](auto& kv) { return kv.second->state() == tcp_state::time_wait; }));
}

std::vector<tcp_connection_snapshot> tcp::connections() const {
    std::vector<tcp_connection_snapshot> out;
    out.reserve(_conns.size());
    for (auto& [t, c] : _conns) {
        out.push_back(tcp_connection_snapshot{c->local_address(), c->remote_address(), c->info()});
    }
    return out;
}

std::uint64_t tcp::keyed_hash(const void* data, std::size_t len) const noexcept {
    return siphash24(_secret, data, len);
}

std::uint32_t tcp::ts_now() const noexcept {
    return std::uint32_t(std::chrono::duration_cast<std::chrono::milliseconds>(now() - _start).count() + 1);
}

std::uint32_t tcp::ts_offset(const four_tuple& t) const noexcept {
    std::uint32_t buf[4] = {t.local_addr, t.remote_addr, (std::uint32_t(t.local_port) << 16) | t.remote_port, 0x7473};
    return std::uint32_t(keyed_hash(buf, sizeof(buf)));
}

// RFC 6528 3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey), M a 4 us timer.
tcp_seq tcp::initial_sequence(const four_tuple& t) const noexcept {
    std::uint32_t buf[3] = {t.local_addr, t.remote_addr, (std::uint32_t(t.local_port) << 16) | t.remote_port};
    auto f = std::uint32_t(keyed_hash(buf, sizeof(buf)));
    auto m = std::uint32_t(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count() /
        4);
    return tcp_seq(m + f);
}

bool tcp::challenge_ack_allowed() noexcept {
    auto sec = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - _start).count();
    if (sec != _challenge_second) {
        _challenge_second = sec;
        _challenge_count = 0;
    }
    return ++_challenge_count <= _cfg.challenge_ack_limit;
}

void tcp::forget(const four_tuple& t, const tcp_connection* c) noexcept {
    auto it = _conns.find(t);
    if (it != _conns.end() && it->second.get() == c) {
        _conns.erase(it);
    }
}

void tcp::unlisten(tcp_listener* l) noexcept {
    for (auto it = _listeners.begin(); it != _listeners.end(); ++it) {
        if (it->second == l) {
            _listeners.erase(it);
            return;
        }
    }
}

tcp_listener* tcp::find_listener(tcp_ipv4 addr, std::uint16_t port) noexcept {
    auto it = _listeners.find(listen_key{addr, port});
    if (it == _listeners.end()) {
        it = _listeners.find(listen_key{0, port});
    }
    return it == _listeners.end() ? nullptr : it->second;
}

// ------------------------------------------------------------------------------------------------
// Sockets

server_socket tcp::listen(socket_address sa, listen_options opts, tcp_socket_options extra) {
    if (!sa.is_ipv4()) {
        throw std::system_error(EAFNOSUPPORT, std::system_category(), fmt::format("listen on {}", sa));
    }
    tcp_ipv4 addr = sa.addr().ipv4_host_order();
    std::uint16_t port = sa.port() ? sa.port() : pick_listen_port(addr);
    if (!port || _listeners.count(listen_key{addr, port})) {
        throw std::system_error(port ? EADDRINUSE : EADDRNOTAVAIL, std::system_category(),
                                fmt::format("listen on {}", sa));
    }
    auto l = std::make_unique<tcp_listener>(*this, addr, port, opts, extra);
    _listeners.emplace(listen_key{addr, port}, l.get());
    return server_socket(std::move(l));
}

std::uint16_t tcp::pick_listen_port(tcp_ipv4 addr) {
    unsigned range = unsigned(_cfg.ephemeral_port_max - _cfg.ephemeral_port_min) + 1;
    unsigned start = unsigned(_rng() % range);
    for (unsigned i = 0; i < range; ++i) {
        auto port = std::uint16_t(_cfg.ephemeral_port_min + (start + i) % range);
        if (!_listeners.count(listen_key{addr, port}) && !_listeners.count(listen_key{0, port})) {
            return port;
        }
    }
    return 0;
}

// The flow hash decides the shard (tcp.hh): choose a port whose tuple comes back here.
std::uint16_t tcp::pick_local_port(tcp_ipv4 local, tcp_ipv4 remote, std::uint16_t remote_port) {
    unsigned range = unsigned(_cfg.ephemeral_port_max - _cfg.ephemeral_port_min) + 1;
    unsigned start = unsigned(_rng() % range);
    unsigned self = this_shard_id();
    for (unsigned i = 0; i < range; ++i) {
        auto port = std::uint16_t(_cfg.ephemeral_port_min + (start + i) % range);
        if (_lower.shard_of_flow(remote, remote_port, local, port) != self) {
            continue;
        }
        if (_conns.count(four_tuple{local, remote, port, remote_port}) || find_listener(local, port)) {
            continue;
        }
        return port;
    }
    return 0;
}

future<connected_socket> tcp::connect(socket_address remote, socket_address local, tcp_socket_options extra) {
    auto fail = [&](int err) {
        return make_exception_future<connected_socket>(
            std::system_error(err, std::system_category(), fmt::format("connect to {}", remote)));
    };
    if (!remote.is_ipv4() || !(local.is_ipv4() || local.is_unspecified())) {
        return fail(EAFNOSUPPORT);
    }
    four_tuple t;
    t.remote_addr = remote.addr().ipv4_host_order();
    t.remote_port = remote.port();
    if (!t.remote_port || !t.remote_addr) {
        return fail(EINVAL);
    }
    t.local_addr = local.is_ipv4() ? local.addr().ipv4_host_order() : 0;
    if (!t.local_addr) {
        t.local_addr = _lower.source_address_for(t.remote_addr);
        if (!t.local_addr) {
            return fail(ENETUNREACH);
        }
    }
    t.local_port = local.is_ipv4() ? local.port() : 0;
    if (!t.local_port) {
        t.local_port = pick_local_port(t.local_addr, t.remote_addr, t.remote_port);
        if (!t.local_port) {
            return fail(EADDRNOTAVAIL);
        }
    } else if (_conns.count(t)) {
        return fail(EADDRINUSE);  // TIME_WAIT included (RFC 9293 3.10.1)
    }
    lw_shared_ptr<tcp_connection> c;
    try {
        c = make_lw_shared<tcp_connection>(*this, t, extra);
        _conns.emplace(t, c);
    } catch (...) {
        return make_exception_future<connected_socket>(std::current_exception());
    }
    auto f = c->connect();
    return f.then([c] { return make_tcp_socket(c); });
}

// ------------------------------------------------------------------------------------------------
// Input

void tcp::received(tcp_ipv4 src, tcp_ipv4 dst, packet p, bool checksum_verified) {
    time_scope ts(*this);
    std::size_t total = p.len();
    const char* fixed = p.get_header(0, tcp_min_header_len);
    if (!fixed) {
        ++_stats.drop_bad_header;
        return;
    }
    std::size_t hlen = std::size_t(std::uint8_t(fixed[12]) >> 4) * 4;
    if (hlen < tcp_min_header_len || hlen > total) {
        ++_stats.drop_bad_header;
        return;
    }
    if (!checksum_verified) {
        checksummer c;
        std::uint32_t s = htonl(src), d = htonl(dst);
        add_ipv4_pseudo_header(c, &s, &d, IPPROTO_TCP, total);
        add_packet_range(c, p, 0, total);
        if (c.folded_sum() != 0xffff) {
            ++_stats.drop_bad_checksum;
            return;
        }
    }
    const char* hdr = p.get_header(0, hlen);
    if (!hdr) {
        ++_stats.drop_bad_header;
        return;
    }
    tcp_segment seg;
    seg.h = tcp_header::read(hdr);
    if (!parse_tcp_options(hdr + tcp_min_header_len, hlen - tcp_min_header_len, seg.opts)) {
        ++_stats.drop_bad_options;
        return;
    }
    auto f = seg.h.flags;
    // Illegal combinations: SYN+FIN, SYN+RST (no RFC state accepts them; scanners send them) and a
    // segment with no control bit at all (every segment after the first SYN carries ACK).
    if (((f & tcp_flag::syn) && (f & (tcp_flag::fin | tcp_flag::rst))) ||
        !(f & (tcp_flag::syn | tcp_flag::ack | tcp_flag::rst | tcp_flag::fin))) {
        ++_stats.drop_bad_flags;
        return;
    }
    if (!seg.h.src_port || !seg.h.dst_port || !src) {
        ++_stats.drop_bad_header;
        return;
    }
    ++_stats.segments_in;
    p.trim_front(hlen);
    seg.payload = std::move(p);

    four_tuple t{dst, src, seg.h.dst_port, seg.h.src_port};
    auto it = _conns.find(t);
    if (it != _conns.end()) {
        auto c = it->second;
        if (c->state() == tcp_state::time_wait && seg.h.has(tcp_flag::syn) && !seg.h.has(tcp_flag::ack) &&
            c->time_wait_accepts_syn(seg)) {
            if (auto* l = find_listener(dst, seg.h.dst_port)) {
                // RFC 9293 3.10.7.4 / RFC 6191: a new incarnation may take over TIME-WAIT.
                ++_stats.time_wait_reused;
                c->to_closed(nullptr);
                listen_input(*l, t, seg);
                return;
            }
        }
        c->input(std::move(seg));
        return;
    }
    if (auto* l = find_listener(dst, seg.h.dst_port)) {
        listen_input(*l, t, seg);
        return;
    }
    ++_stats.drop_no_socket;
    if (!seg.h.has(tcp_flag::rst)) {
        send_reset(dst, src, seg.h, seg.seg_len());
    }
}

// RFC 9293 3.10.7.2 LISTEN.
void tcp::listen_input(tcp_listener& l, const four_tuple& t, tcp_segment& seg) {
    const auto& h = seg.h;
    if (h.has(tcp_flag::rst)) {
        return;
    }
    if (h.has(tcp_flag::ack)) {
        if (_cfg.syn_cookies && !h.has(tcp_flag::syn) && accept_syn_cookie(l, t, seg)) {
            return;
        }
        ++_stats.drop_listen_bad;
        send_reset(t.local_addr, t.remote_addr, h, seg.seg_len());
        return;
    }
    if (!h.has(tcp_flag::syn)) {
        ++_stats.drop_listen_bad;
        return;
    }
    if (l.accept_queue_full()) {
        // Nobody accepts: a SYN-ACK would only make the peer send data we cannot take.
        ++_stats.listen_overflows;
        return;
    }
    if (l.syn_backlog_full()) {
        if (_cfg.syn_cookies) {
            send_syn_cookie(l, t, seg);
        } else {
            ++_stats.listen_overflows;
        }
        return;
    }
    auto c = make_lw_shared<tcp_connection>(*this, t, l.socket_options());
    _conns.emplace(t, c);
    c->accept_syn(l, seg);
}

std::uint32_t tcp::cookie_counter() const noexcept {
    return std::uint32_t(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - _start).count() / 64);
}

std::uint32_t tcp::cookie_hash(const four_tuple& t, std::uint32_t counter, std::uint32_t peer_isn) const noexcept {
    std::uint32_t buf[6] = {t.local_addr, t.remote_addr, (std::uint32_t(t.local_port) << 16) | t.remote_port,
                            counter,      peer_isn,      0x636b};
    return std::uint32_t(keyed_hash(buf, sizeof(buf)));
}

// SYN cookie (the listener's SYN backlog is full): the ISN encodes a keyed hash of the tuple, the
// peer's ISN and a 64-second counter (upper 27 bits), the counter's low 2 bits and the MSS index
// (3 bits), so that no state is kept. Window scale and SACK-permitted ride in the low bits of our
// TSval when the peer uses timestamps; without them the connection runs without those options.
void tcp::send_syn_cookie(tcp_listener& l, const four_tuple& t, const tcp_segment& syn) {
    std::uint32_t counter = cookie_counter();
    std::uint16_t peer_mss = syn.opts.mss.value_or(536);
    std::uint32_t idx = 0;
    for (std::uint32_t i = 0; i < cookie_mss.size(); ++i) {
        if (cookie_mss[i] <= peer_mss) {
            idx = i;
        }
    }
    std::uint32_t isn = (cookie_hash(t, counter, syn.h.seq.raw) & ~0x1fu) | ((counter & 3) << 3) | idx;
    std::size_t rcvbuf =
        l.socket_options().recv_buffer_size ? l.socket_options().recv_buffer_size : _cfg.recv_buffer_size;
    tcp_header h;
    h.src_port = t.local_port;
    h.dst_port = t.remote_port;
    h.seq = tcp_seq(isn);
    h.ack = syn.h.seq + 1;
    h.flags = tcp_flag::syn | tcp_flag::ack;
    h.window = std::uint16_t(std::min<std::size_t>(rcvbuf, 65535));
    tcp_options o;
    o.mss = std::uint16_t(std::min<std::uint32_t>(_lower.mss_for(t.remote_addr), 65535));
    if (_cfg.timestamps && syn.opts.has_timestamps) {
        bool ws = _cfg.window_scaling && syn.opts.wscale;
        bool sack = _cfg.sack && syn.opts.sack_permitted;
        if (ws) {
            o.wscale = tcp_wscale_for(rcvbuf);
        }
        o.sack_permitted = sack;
        o.has_timestamps = true;
        std::uint32_t now = ts_now() + ts_offset(t);
        std::uint32_t bits = (ws ? *syn.opts.wscale : 0xfu) | (sack ? 0x10u : 0u);
        std::uint32_t v = (now & ~((1u << cookie_opt_bits) - 1)) | bits;
        if (std::int32_t(v - now) > 0) {
            v -= 1u << cookie_opt_bits;  // never ahead of the clock later segments use (PAWS)
        }
        o.tsval = v;
        o.tsecr = syn.opts.tsval;
    }
    ++_stats.syn_cookies_sent;
    send_raw(t.local_addr, t.remote_addr, h, o);
}

bool tcp::accept_syn_cookie(tcp_listener& l, const four_tuple& t, tcp_segment& seg) {
    std::uint32_t cookie = seg.h.ack.raw - 1;
    std::uint32_t peer_isn = seg.h.seq.raw - 1;
    std::uint32_t counter = cookie_counter();
    bool ok = false;
    for (std::uint32_t c : {counter, counter - 1}) {
        if (((cookie >> 3) & 3) == (c & 3) && (cookie_hash(t, c, peer_isn) & ~0x1fu) == (cookie & ~0x1fu)) {
            ok = true;
            break;
        }
    }
    if (!ok) {
        ++_stats.syn_cookies_failed;
        return false;
    }
    if (l.accept_queue_full()) {
        ++_stats.listen_overflows;
        return true;  // dropped: the peer retransmits, by then there may be room
    }
    std::optional<std::uint8_t> wscale;
    bool sack = false;
    bool ts = seg.opts.has_timestamps && _cfg.timestamps;
    if (ts) {
        std::uint32_t bits = seg.opts.tsecr & ((1u << cookie_opt_bits) - 1);
        if ((bits & 0xf) != 0xf) {
            wscale = std::uint8_t(std::min<std::uint32_t>(bits & 0xf, tcp_max_wscale));
        }
        sack = bits & 0x10;
    }
    ++_stats.syn_cookies_accepted;
    auto c = make_lw_shared<tcp_connection>(*this, t, l.socket_options());
    _conns.emplace(t, c);
    c->accept_cookie(l, tcp_seq(cookie), tcp_seq(peer_isn), cookie_mss[cookie & 7], seg, wscale, sack, ts);
    // The ACK may carry data (and the peer's window, already taken): process it as usual.
    if (seg.len() || seg.h.has(tcp_flag::fin)) {
        c->input(std::move(seg));
    }
    return true;
}

// ------------------------------------------------------------------------------------------------
// Output outside connections

// RFC 9293 3.10.7.1: if the segment has ACK, <SEQ=SEG.ACK><CTL=RST>; otherwise
// <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
void tcp::send_reset(tcp_ipv4 local, tcp_ipv4 remote, const tcp_header& in, std::uint32_t seg_len) {
    tcp_header h;
    h.src_port = in.dst_port;
    h.dst_port = in.src_port;
    if (in.has(tcp_flag::ack)) {
        h.seq = in.ack;
        h.flags = tcp_flag::rst;
    } else {
        h.seq = tcp_seq(0);
        h.ack = in.seq + std::int64_t(seg_len);
        h.flags = tcp_flag::rst | tcp_flag::ack;
    }
    ++_stats.resets_sent;
    send_raw(local, remote, h, tcp_options{});
}

void tcp::send_raw(tcp_ipv4 local, tcp_ipv4 remote, const tcp_header& hin, const tcp_options& o) {
    tcp_header h = hin;
    std::size_t hlen = tcp_min_header_len + tcp_options_length(o);
    h.data_offset = std::uint8_t(hlen / 4);
    h.checksum = 0;
    packet p;
    char* b = p.prepend_uninitialized_header(hlen);
    h.write(b);
    write_tcp_options(b + tcp_min_header_len, o);
    if (_lower.tx_checksum_offload()) {
        auto& oi = p.offload();
        oi.protocol = IPPROTO_TCP;
        oi.needs_csum = true;
        oi.tcp_hdr_len = std::uint8_t(hlen);
    } else {
        checksummer c;
        std::uint32_t s = htonl(local), d = htonl(remote);
        add_ipv4_pseudo_header(c, &s, &d, IPPROTO_TCP, hlen);
        c.add(b, hlen);
        std::uint16_t v = c.get();
        std::memcpy(b + 16, &v, 2);
    }
    ++_stats.segments_out;
    _lower.send_segment(local, remote, std::move(p));
}

// ------------------------------------------------------------------------------------------------
// Transmit back-pressure

void tcp::wait_for_tx(tcp_connection& c) {
    if (c._tx_waiting) {
        return;
    }
    _tx_waiters.push_back(c.shared_from_this());
    c._tx_waiting = true;
}

void tcp::tx_ready() {
    // One pass over those waiting now: data first, then an acknowledgment that no data segment
    // carried. A connection stopped again goes to the back, and as the lower then waits too it
    // calls again, for it and the rest.
    for (std::size_t n = _tx_waiters.size(); n && !_tx_waiters.empty(); --n) {
        auto c = std::move(_tx_waiters.front());
        _tx_waiters.pop_front();
        c->_tx_waiting = false;
        try {
            c->output();
            if (c->_ack_deferred && !c->_tx_waiting) {
                c->send_ack();
            }
        } catch (...) {
            // Only this connection's segments are lost (bad_alloc building one); its RTO resends
            // them, and the others still get their turn.
            native::native_log.warn("TCP output after back-pressure failed: {}",
                                    exception_message(std::current_exception()));
        }
        if (c->_tx_waiting) {
            break;
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Acknowledgments of in-order data, once per reactor round
//
// RFC 5681 4.2 asks for an ACK of at least every second full-sized segment. Sent as each second
// segment is processed, that is one pure ACK per two segments of a bulk transfer: built,
// checksummed and sent here, received and processed by the sender, ~0.9 M frames/s each way at
// 20 Gbit/s. Segments that arrive together (one RX burst of the device) are acknowledged once,
// after the round's pollers have run, as Linux does for the segments GRO merges: the ACK covers
// the whole burst (a "stretch ACK", RFC 2525 2.13, bounded here by one burst). A segment that
// fills a hole, arrives out of order or carries a FIN is still acknowledged at once, and data the
// application sends before the round ends carries the ACK instead.

class tcp::ack_flush_poller final : public pollfn {
    tcp& _t;

public:
    explicit ack_flush_poller(tcp& t) : _t(t) {}
    bool poll() override { return _t.flush_owed_acks(); }
    bool pure_poll() override { return !_t._acks_owed.empty(); }
};

void tcp::owe_ack(tcp_connection& c) {
    if (c._ack_owed) {
        return;
    }
    if (!_ack_poller) {
        _ack_poller = std::make_unique<poller>(std::make_unique<ack_flush_poller>(*this));
    }
    _acks_owed.push_back(c.shared_from_this());
    c._ack_owed = true;
}

bool tcp::flush_owed_acks() {
    if (_acks_owed.empty()) {
        return false;
    }
    // Swapped out first: sending may deliver to a stack in the same reactor that owes ACKs anew.
    std::swap(_acks_owed, _acks_flushing);
    for (auto& c : _acks_flushing) {
        c->_ack_owed = false;
        if (!c->_unacked_segs) {
            continue;  // a segment of its own carried the ACK
        }
        try {
            ++_stats.round_acks;
            c->send_ack();
        } catch (...) {
            // Only this ACK is lost (bad_alloc building it); the next segment or the peer's
            // retransmission brings another.
            native::native_log.warn("TCP ACK failed: {}", exception_message(std::current_exception()));
        }
    }
    _acks_flushing.clear();
    return true;
}

// ------------------------------------------------------------------------------------------------
// ICMP

void tcp::icmp_error(const tcp_icmp_error& e) {
    auto it = _conns.find(four_tuple{e.local_addr, e.remote_addr, e.local_port, e.remote_port});
    if (it == _conns.end()) {
        ++_stats.drop_icmp_invalid;
        return;
    }
    auto c = it->second;
    c->icmp(e);
}

}  // namespace reef::net
