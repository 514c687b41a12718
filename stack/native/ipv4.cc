#include "stack/native/ipv4.hh"

#include "stack/native/interface.hh"
#include "stack/net/checksum.hh"

#include <algorithm>
#include <cerrno>
#include <random>

namespace reef::net::native {

namespace {

constexpr std::size_t entry_overhead = 128;  // bookkeeping charged per datagram in reassembly
constexpr std::size_t frag_overhead = 64;    // and per fragment, beyond its frame's bytes

std::uint16_t l4_csum_offset(std::uint8_t proto) noexcept { return proto == ip_proto_tcp ? 16 : 6; }

void fill_ip_header(ipv4_hdr* h, std::size_t total, std::uint16_t id, std::uint16_t frag, std::uint8_t ttl,
                    std::uint8_t tos, std::uint8_t proto, ipv4_addr src, ipv4_addr dst) {
    h->ver_ihl = 0x45;
    h->tos = tos;
    store16(h->total_len, std::uint16_t(total));
    store16(h->id, id);
    store16(h->frag, frag);
    h->ttl = ttl;
    h->proto = proto;
    store16(h->csum, 0);
    store_ip(h->src, src);
    store_ip(h->dst, dst);
}

// errno for an ICMP error, as Linux reports them (icmp_err_convert).
int icmp_errno(std::uint8_t type, std::uint8_t code) noexcept {
    if (type == 3) {
        switch (code) {
        case 0: return ENETUNREACH;
        case 1: return EHOSTUNREACH;
        case 2: return ENOPROTOOPT;
        case 3: return ECONNREFUSED;
        case 4: return EMSGSIZE;
        case 5: return EOPNOTSUPP;
        case 6: return ENETUNREACH;
        case 7: return EHOSTDOWN;
        case 9:
        case 10:
        case 13: return EACCES;
        default: return EHOSTUNREACH;
        }
    }
    if (type == 12) {
        return EPROTO;
    }
    return EHOSTUNREACH;  // time exceeded
}

}  // namespace

std::size_t ipv4::frag_key_hash::operator()(const frag_key& k) const noexcept {
    std::uint64_t h = (std::uint64_t(k.src) << 32) ^ k.dst;
    h ^= (std::uint64_t(k.id) << 8 | k.proto) * 0x9e3779b97f4a7c15ull;
    return std::hash<std::uint64_t>()(h);
}

ipv4::ipv4(interface& ifc)
    : _ifc(ifc), _reasm_timer([this] { on_reasm_timeout(); }),
      _next_id(std::uint16_t(std::random_device()() * smp::count + this_shard_id())),
      _icmp_tokens(ifc.opts().icmp_error_burst), _icmp_refill(clock::now()) {}

ipv4::~ipv4() { clear_reassembly(); }

void ipv4::set_protocol(std::uint8_t proto, l4_protocol* handler) noexcept { _protocols[proto] = handler; }
l4_protocol* ipv4::protocol(std::uint8_t proto) const noexcept { return _protocols[proto]; }

// ------------------------------------------------------------------------------------------------
// Receive

void ipv4::receive(packet p) {
    auto& st = _ifc.stats().ip;
    ++st.rx_packets;
    if (p.len() < sizeof(ipv4_hdr)) {
        ++st.rx_dropped_too_short;
        return;
    }
    auto* h = p.get_header<ipv4_hdr>(0);
    if ((h->ver_ihl >> 4) != 4) {
        ++st.rx_dropped_bad_version;
        return;
    }
    std::size_t ihl = (h->ver_ihl & 0x0f) * 4u;
    if (ihl < sizeof(ipv4_hdr) || ihl > p.len()) {
        ++st.rx_dropped_bad_header_length;
        return;
    }
    std::size_t total = load16(h->total_len);
    if (total < ihl || total > p.len()) {
        ++st.rx_dropped_bad_total_length;
        return;
    }
    // The whole header in one piece (options may straddle fragments); h may move.
    h = reinterpret_cast<ipv4_hdr*>(p.get_header(0, ihl));
    if (!_ifc.dev().features().rx_csum_offload && !ipv4_header_checksum_ok(h, ihl)) {
        ++st.rx_dropped_bad_checksum;
        return;
    }
    // RFC 1122 3.2.1.7 forbids sending TTL 0 and a router discards a datagram whose TTL reaches
    // 0, so one arriving here was forged or mangled on the way: dropped (and counted) as a
    // malformed header. This deliberately narrows the same section's "must not discard a datagram
    // just because its TTL is below 2" to TTL 1, which stays accepted.
    if (h->ttl == 0) {
        ++st.rx_dropped_ttl_zero;
        return;
    }
    const auto& cfg = _ifc.config();
    ip_packet ip;
    ip.src = load_ip(h->src);
    ip.dst = load_ip(h->dst);
    ip.proto = h->proto;
    ip.ttl = h->ttl;
    ip.ihl = std::uint16_t(ihl);
    std::uint16_t frag = load16(h->frag);
    if (ip.src.is_broadcast() || ip.src.is_multicast() || (!cfg.addr.is_any() && ip.src == cfg.subnet_broadcast())) {
        ++st.rx_dropped_bad_source;
        return;
    }
    ip.to_broadcast = cfg.is_broadcast(ip.dst);
    // Without an address (DHCP running) anything may be for us: the offer comes to the address
    // being offered.
    if (!(ip.dst == cfg.addr || ip.to_broadcast || cfg.addr.is_any())) {
        ++st.rx_dropped_not_for_us;
        return;
    }
    if (ihl > sizeof(ipv4_hdr)) {
        ++st.rx_options_skipped;  // RFC 1122 3.2.1.8: a host may ignore options it does not use
    }
    if (total < p.len()) {
        p.trim_back(p.len() - total);  // Ethernet padding
    }
    ip.p = std::move(p);
    if (frag & (ip_flag_mf | ip_offset_mask)) {
        reassemble(std::move(ip), frag);
        return;
    }
    dispatch(std::move(ip));
}

void ipv4::dispatch(ip_packet&& p) {
    // A datagram rebuilt here belongs to the shard of its 4-tuple (see the file comment).
    if (smp::count > 1 && p.p.offload().reassembled &&
        (p.proto == ip_proto_udp || (p.proto != ip_proto_icmp && _protocols[p.proto]))) {
        if (auto* ports = p.p.get_header(p.ihl, 4)) {
            std::uint16_t sport = load16(ports), dport = load16(ports + 2);
            unsigned shard;
            if (p.proto == ip_proto_udp) {
                auto s = p.src.bytes(), d = p.dst.bytes();
                shard = _ifc.dev().shard_of(_ifc.dev().flow_hash(s.data(), d.data(), 4, sport, dport));
            } else {
                shard = _protocols[p.proto]->shard_of(p.src, p.dst, sport, dport);
            }
            if (shard != this_shard_id() && shard < smp::count) {
                ++_ifc.stats().ip.reasm_forwarded;
                forward_to_shard(shard, std::move(p));
                return;
            }
        }
    }
    deliver_local(std::move(p));
}

void ipv4::deliver_forwarded(ip_packet&& p) { deliver_local(std::move(p)); }

void ipv4::deliver_local(ip_packet&& p) {
    auto& st = _ifc.stats().ip;
    switch (p.proto) {
    case ip_proto_icmp:
        ++st.rx_delivered;
        icmp_receive(std::move(p));
        return;
    case ip_proto_udp:
        ++st.rx_delivered;
        _ifc.udp().receive(std::move(p));
        return;
    default:
        if (auto* h = _protocols[p.proto]) {
            ++st.rx_delivered;
            h->receive(std::move(p));
            return;
        }
        ++st.rx_dropped_unknown_protocol;
        ++_ifc.stats().icmp.tx_proto_unreachable;
        send_unreachable(p, 2);
    }
}

void ipv4::forward_to_shard(unsigned shard, ip_packet&& p) {
    with_interface(_ifc.group(), shard, [pp = portable_ip_packet::from(p)](interface& i) mutable {
        i.ip().deliver_forwarded(std::move(pp).to_packet());
    });
}

// ------------------------------------------------------------------------------------------------
// Reassembly

void ipv4::drop_datagram(std::list<datagram_in_progress>::iterator it) {
    _reasm_bytes -= it->bytes;
    _ifc.stats().ip.reasm_bytes_held = _reasm_bytes;
    _reasm_index.erase(it->key);
    _reasm.erase(it);
}

void ipv4::clear_reassembly() {
    _reasm_index.clear();
    _reasm.clear();
    _reasm_bytes = 0;
    _ifc.stats().ip.reasm_bytes_held = 0;
    _reasm_timer.cancel();
}

void ipv4::arm_reasm_timer() {
    if (_reasm.empty()) {
        _reasm_timer.cancel();
    } else if (!_reasm_timer.armed() || _reasm_timer.get_timeout() != _reasm.front().deadline) {
        _reasm_timer.arm(_reasm.front().deadline);
    }
}

void ipv4::on_reasm_timeout() {
    auto now = clock::now();
    while (!_reasm.empty() && _reasm.front().deadline <= now) {
        if (!_reasm.front().poisoned) {
            ++_ifc.stats().ip.reasm_dropped_timeout;
        }
        drop_datagram(_reasm.begin());
    }
    arm_reasm_timer();
}

void ipv4::reassemble(ip_packet&& ip, std::uint16_t frag_field) {
    auto& st = _ifc.stats().ip;
    ++st.reasm_fragments;
    std::size_t begin = std::size_t(frag_field & ip_offset_mask) * 8;
    bool more = frag_field & ip_flag_mf;
    std::size_t len = ip.l4_len();
    std::size_t end = begin + len;
    if (len == 0 || (more && len % 8 != 0)) {
        ++st.reasm_dropped_malformed;
        return;
    }
    frag_key key{ip.src.ip, ip.dst.ip, load16(ip.p.get_header(4, 2)), ip.proto};
    auto found = _reasm_index.find(key);
    std::list<datagram_in_progress>::iterator it;
    if (found == _reasm_index.end()) {
        if (ip.ihl + end > 65535) {
            ++st.reasm_dropped_oversize;
            return;
        }
        _reasm.push_back(datagram_in_progress{
            key, clock::now() + _ifc.opts().reassembly_timeout, {}, {}, 0, false, false, entry_overhead});
        it = std::prev(_reasm.end());
        _reasm_index.emplace(key, it);
        _reasm_bytes += entry_overhead;
        arm_reasm_timer();
    } else {
        it = found->second;
    }
    auto& d = *it;
    if (d.poisoned) {
        return;  // RFC 5722: every fragment of a datagram that overlapped is discarded
    }
    auto poison = [&] {
        _reasm_bytes -= d.bytes - entry_overhead;
        d.bytes = entry_overhead;
        d.frags.clear();
        d.header.clear();
        d.poisoned = true;
        st.reasm_bytes_held = _reasm_bytes;
    };
    // Lengths that cannot be: past the IP maximum, past the end the last fragment gave, or a last
    // fragment ending before data we already hold.
    bool bad_end = ip.ihl + end > 65535 || (d.have_last && end > d.end) ||
                   (!more && ((d.have_last && end != d.end) || (!d.frags.empty() && d.frags.back().end > end)));
    if (bad_end) {
        ++st.reasm_dropped_oversize;
        poison();
        return;
    }
    auto pos = std::lower_bound(d.frags.begin(), d.frags.end(), begin,
                                [](const frag& f, std::size_t b) { return f.begin < b; });
    if (pos != d.frags.end() && pos->begin == begin && pos->end == end) {
        return;  // an exact duplicate (a retransmitted or duplicated frame): nothing new
    }
    if ((pos != d.frags.end() && pos->begin < end) || (pos != d.frags.begin() && std::prev(pos)->end > begin)) {
        ++st.reasm_dropped_overlap;
        poison();
        return;
    }
    std::size_t cost = ip.p.len() + eth::header_len + frag_overhead;
    std::size_t limit = _ifc.opts().reassembly_memory;
    // Make room by dropping the oldest datagrams (never the one this fragment belongs to).
    while (_reasm_bytes + cost > limit && _reasm.begin() != it) {
        ++st.reasm_dropped_memory;
        drop_datagram(_reasm.begin());
    }
    if (_reasm_bytes + cost > limit) {
        ++st.reasm_dropped_memory;
        drop_datagram(it);
        arm_reasm_timer();
        return;
    }
    if (begin == 0) {
        d.header.assign(ip.p.get_header(0, ip.ihl), ip.ihl);
    }
    if (!more) {
        d.have_last = true;
        d.end = end;
    }
    ip.p.trim_front(ip.ihl);
    d.frags.insert(pos, frag{begin, end, std::move(ip.p)});
    d.bytes += cost;
    _reasm_bytes += cost;
    st.reasm_bytes_held = _reasm_bytes;
    arm_reasm_timer();
    if (d.have_last && !d.header.empty()) {
        std::size_t have = 0;
        for (auto& f : d.frags) {
            have += f.end - f.begin;
        }
        if (have == d.end) {
            complete(it);
        }
    }
}

void ipv4::complete(std::list<datagram_in_progress>::iterator it) {
    auto& d = *it;
    ip_packet ip;
    ip.src = ipv4_addr(d.key.src);
    ip.dst = ipv4_addr(d.key.dst);
    ip.proto = d.key.proto;
    ip.ihl = std::uint16_t(d.header.size());
    auto* h = reinterpret_cast<ipv4_hdr*>(d.header.data());
    ip.ttl = h->ttl;
    store16(h->total_len, std::uint16_t(d.header.size() + d.end));
    store16(h->frag, 0);
    store16(h->csum, 0);
    store_csum(h->csum, internet_checksum(d.header.data(), d.header.size()));
    ip.to_broadcast = _ifc.config().is_broadcast(ip.dst);
    packet p(d.header.data(), d.header.size());
    for (auto& f : d.frags) {
        p.append(std::move(f.data));
    }
    p.offload().reassembled = true;
    ip.p = std::move(p);
    ++_ifc.stats().ip.reasm_ok;
    drop_datagram(it);
    arm_reasm_timer();
    dispatch(std::move(ip));
}

// ------------------------------------------------------------------------------------------------
// Send

std::uint16_t ipv4::path_mtu(ipv4_addr dst) {
    std::uint16_t mtu = _ifc.config().mtu;
    auto it = _pmtu.find(dst.ip);
    if (it != _pmtu.end()) {
        if (it->second.expires <= clock::now()) {
            _pmtu.erase(it);
        } else {
            mtu = std::min(mtu, it->second.mtu);
        }
    }
    return mtu;
}

void ipv4::set_path_mtu(ipv4_addr dst, std::uint16_t mtu, clock::time_point expires) {
    _pmtu[dst.ip] = pmtu_entry{mtu, expires};
}

void ipv4::finish_l4_checksum(packet& l4, std::uint8_t proto, ipv4_addr src, ipv4_addr dst, bool software) {
    auto& oi = l4.offload();
    if (!oi.needs_csum) {
        return;
    }
    if (!software) {
        oi.protocol = proto;
        oi.ip_hdr_len = 20;
        return;
    }
    checksummer c;
    auto s = src.bytes(), d = dst.bytes();
    add_ipv4_pseudo_header(c, s.data(), d.data(), proto, l4.len());
    add_packet_range(c, l4, 0, l4.len());
    std::uint16_t sum = c.get();
    if (sum == 0 && proto == ip_proto_udp) {
        sum = 0xffff;  // RFC 768: a computed zero is sent as all ones (zero means "no checksum")
    }
    store_csum(l4.get_header(l4_csum_offset(proto), 2), sum);
    oi.needs_csum = false;
}

int ipv4::send(ipv4_addr dst, std::uint8_t proto, packet l4, const ip_send_options& o) {
    auto& st = _ifc.stats().ip;
    const auto& cfg = _ifc.config();
    const auto& feat = _ifc.dev().features();
    ipv4_addr src = o.src.is_any() ? cfg.addr : o.src;
    bool bcast = o.broadcast_mac || dst.is_broadcast() || (!cfg.addr.is_any() && cfg.is_broadcast(dst));
    ipv4_addr next_hop = dst;
    if (!bcast) {
        if (cfg.addr.is_any()) {
            ++st.tx_dropped_no_route;
            return ENETUNREACH;
        }
        if (!cfg.on_link(dst)) {
            if (cfg.gateway.is_any()) {
                ++st.tx_dropped_no_route;
                return ENETUNREACH;
            }
            next_hop = cfg.gateway;
        }
    }
    std::size_t total = sizeof(ipv4_hdr) + l4.len();
    if (total > 65535) {
        ++st.tx_dropped_too_big;
        return EMSGSIZE;
    }
    std::uint16_t mtu = bcast ? cfg.mtu : path_mtu(dst);
    bool tso = l4.offload().tso_seg_size && feat.tx_tso;
    bool fragment = total > mtu && !tso;
    if (fragment && o.df) {
        ++st.tx_dropped_too_big;
        return EMSGSIZE;
    }
    finish_l4_checksum(l4, proto, src, dst, fragment || !feat.tx_l4_csum_offload);
    // RFC 1122 3.2.1.7: never a TTL of zero.
    std::uint8_t ttl = o.ttl ? o.ttl : std::max<std::uint8_t>(_ifc.opts().ttl, 1);
    // Shards step through disjoint ids (start = shard mod count, step = count): fragments of
    // datagrams two shards send to one host at once do not share an id there (until the
    // counters wrap; for ever when the shard count is a power of two).
    std::uint16_t id = _next_id;
    _next_id = std::uint16_t(_next_id + smp::count);
    if (fragment) {
        ipv4_hdr tmpl;
        fill_ip_header(&tmpl, 0, id, 0, ttl, o.tos, proto, src, dst);
        return send_fragments(next_hop, bcast, std::move(l4), reinterpret_cast<const std::uint8_t*>(&tmpl), mtu);
    }
    auto* h = l4.prepend_header<ipv4_hdr>();
    fill_ip_header(h, total, id, o.df ? ip_flag_df : 0, ttl, o.tos, proto, src, dst);
    if (feat.tx_ip_csum_offload) {
        l4.offload().needs_ip_csum = true;
        l4.offload().ip_hdr_len = 20;
    } else {
        store_csum(h->csum, internet_checksum(h, sizeof(ipv4_hdr)));
    }
    transmit(next_hop, bcast, std::move(l4));
    return 0;
}

int ipv4::send_fragments(ipv4_addr next_hop, bool bcast, packet&& l4, const std::uint8_t* tmpl, std::uint16_t mtu) {
    auto& st = _ifc.stats().ip;
    std::size_t max_payload = (std::size_t(mtu) - sizeof(ipv4_hdr)) & ~std::size_t(7);
    if (max_payload == 0) {
        ++st.tx_dropped_too_big;
        return EMSGSIZE;
    }
    const auto& feat = _ifc.dev().features();
    std::size_t len = l4.len();
    ++st.frag_datagrams;
    for (std::size_t off = 0; off < len; off += max_payload) {
        std::size_t n = std::min(max_payload, len - off);
        packet piece = l4.share(off, n);
        piece.set_offload_info(offload_info{});
        auto* h = piece.prepend_header<ipv4_hdr>();
        std::memcpy(h, tmpl, sizeof(ipv4_hdr));
        store16(h->total_len, std::uint16_t(sizeof(ipv4_hdr) + n));
        store16(h->frag, std::uint16_t((off / 8) | (off + n < len ? ip_flag_mf : 0)));
        if (feat.tx_ip_csum_offload) {
            piece.offload().needs_ip_csum = true;
        } else {
            store_csum(h->csum, internet_checksum(h, sizeof(ipv4_hdr)));
        }
        ++st.frag_created;
        transmit(next_hop, bcast, std::move(piece));
    }
    return 0;
}

void ipv4::transmit(ipv4_addr next_hop, bool bcast, packet&& ip) {
    ++_ifc.stats().ip.tx_packets;
    if (bcast) {
        _ifc.send_frame(broadcast_mac, eth::type_ipv4, std::move(ip));
    } else {
        _ifc.arp().send(next_hop, std::move(ip));
    }
}

// ------------------------------------------------------------------------------------------------
// ICMP

bool ipv4::icmp_allow_error() {
    auto now = clock::now();
    double burst = std::max(1u, _ifc.opts().icmp_error_burst);
    double elapsed = std::chrono::duration<double>(now - _icmp_refill).count();
    _icmp_refill = now;
    _icmp_tokens = std::min(burst, _icmp_tokens + elapsed * _ifc.opts().icmp_error_rate);
    if (_icmp_tokens < 1) {
        ++_ifc.stats().icmp.tx_rate_limited;
        return false;
    }
    _icmp_tokens -= 1;
    return true;
}

void ipv4::send_icmp(ipv4_addr dst, packet&& msg) {
    // ICMP checksums cover the message only: always computed here (devices offload TCP/UDP).
    msg.linearize();
    auto* h = msg.get_header<icmp_hdr>(0);
    store16(h->csum, 0);
    store_csum(h->csum, internet_checksum(msg.frag(0).base, msg.len()));
    ++_ifc.stats().icmp.tx_messages;
    (void)send(dst, ip_proto_icmp, std::move(msg));
}

void ipv4::send_unreachable(const ip_packet& orig, std::uint8_t code) {
    // RFC 1122 3.2.2: never about a broadcast, a non-initial fragment (reassembly makes every
    // datagram whole), an ICMP error, or a packet without a unicast source.
    if (orig.to_broadcast || orig.dst.is_multicast() || orig.src.is_any() || orig.proto == ip_proto_icmp) {
        return;
    }
    if (!icmp_allow_error()) {
        return;
    }
    // As much of the original as fits in 576 bytes (RFC 1812 4.3.2.3), at least header + 8.
    std::size_t quote = std::min<std::size_t>(orig.p.len(), 576 - sizeof(ipv4_hdr) - sizeof(icmp_hdr));
    std::string m(sizeof(icmp_hdr) + quote, '\0');
    m[0] = 3;
    m[1] = char(code);
    auto bytes = const_cast<packet&>(orig.p).share(0, quote).to_string();
    std::memcpy(m.data() + sizeof(icmp_hdr), bytes.data(), quote);
    if (code == 3) {
        ++_ifc.stats().icmp.tx_port_unreachable;
    }
    send_icmp(orig.src, packet(m.data(), m.size()));
}

void ipv4::icmp_receive(ip_packet&& p) {
    auto& st = _ifc.stats().icmp;
    std::size_t len = p.l4_len();
    checksummer c;
    add_packet_range(c, p.p, p.ihl, len);
    auto* h = p.p.get_header<icmp_hdr>(p.ihl);
    if (len < sizeof(icmp_hdr) || !h || c.folded_sum() != 0xffff) {
        ++st.rx_dropped_malformed;
        return;
    }
    ++st.rx_messages;
    switch (h->type) {
    case 8: {  // echo request
        ++st.rx_echo_requests;
        if (p.to_broadcast) {
            return;  // RFC 1122 3.2.2.6 allows ignoring broadcast echoes (smurf amplification)
        }
        std::string m = p.p.share(p.ihl, len).to_string();
        m[0] = 0;  // echo reply; code, id, sequence and data echoed as they came
        ++st.tx_echo_replies;
        send_icmp(p.src, packet(m.data(), m.size()));
        return;
    }
    case 0: ++st.rx_echo_replies; return;
    case 3:
        ++st.rx_dest_unreachable;
        if (h->code == 4) {
            ++st.rx_frag_needed;
        }
        icmp_error_received(p, *h);
        return;
    case 11:
        ++st.rx_time_exceeded;
        icmp_error_received(p, *h);
        return;
    case 12: icmp_error_received(p, *h); return;
    default: return;
    }
}

void ipv4::icmp_error_received(ip_packet& p, const icmp_hdr& h) {
    auto& st = _ifc.stats().icmp;
    std::size_t at = p.ihl + sizeof(icmp_hdr);
    auto* inner = p.p.get_header<ipv4_hdr>(at);
    if (!inner) {
        ++st.rx_dropped_malformed;
        return;
    }
    std::size_t ihl = (inner->ver_ihl & 0x0f) * 4u;
    icmp_error e;
    e.type = h.type;
    e.code = h.code;
    e.error = icmp_errno(h.type, h.code);
    e.local = load_ip(inner->src);
    e.remote = load_ip(inner->dst);
    e.proto = inner->proto;
    e.reporter = p.src;
    if ((inner->ver_ihl >> 4) != 4 || ihl < 20 || p.p.len() < at + ihl + 8 || e.local != _ifc.config().addr) {
        ++st.rx_dropped_malformed;  // not about a datagram of ours
        return;
    }
    auto* l4 = p.p.get_header(at + ihl, 8);
    e.local_port = load16(l4);
    e.remote_port = load16(l4 + 2);
    e.quoted = p.p.share(at + ihl, p.p.len() - at - ihl).to_string();
    if (h.type == 3 && h.code == 4) {
        std::uint16_t mtu = load16(h.rest + 2);
        if (mtu == 0) {
            mtu = 576;  // RFC 1191 5: an old router that does not say; assume the minimum
        }
        // Below 68 (RFC 791's minimum) is nonsense; below 552 is how MTU-lowering attacks start:
        // Linux's min_pmtu.
        mtu = std::max<std::uint16_t>(mtu, 552);
        e.mtu = mtu;
        if (mtu < path_mtu(e.remote)) {
            auto expires = clock::now() + _ifc.opts().pmtu_timeout;
            set_path_mtu(e.remote, mtu, expires);
            ipv4_addr dst = e.remote;
            for (unsigned s = 0; s < smp::count; ++s) {
                if (s != this_shard_id()) {
                    with_interface(_ifc.group(), s,
                                   [dst, mtu, expires](interface& i) { i.ip().set_path_mtu(dst, mtu, expires); });
                }
            }
        }
    }
    if (e.proto == ip_proto_udp) {
        ++st.errors_to_udp;
        if (_ifc.udp().bound_here(e.local_port)) {
            _ifc.udp().error(e);
        } else if (auto owner = _ifc.group()->udp_owner(e.local_port, 0)) {
            with_interface(_ifc.group(), *owner, [e](interface& i) { i.udp().error(e); });
        }
        return;
    }
    if (auto* handler = _protocols[e.proto]) {
        ++st.errors_to_tcp;
        unsigned shard = handler->shard_of(e.remote, e.local, e.remote_port, e.local_port);
        if (shard == this_shard_id() || shard >= smp::count) {
            handler->error(e);
        } else {
            std::uint8_t proto = e.proto;
            with_interface(_ifc.group(), shard, [e, proto](interface& i) {
                if (auto* hd = i.ip().protocol(proto)) {
                    hd->error(e);
                }
            });
        }
    }
}

}  // namespace reef::net::native
