// What to send and how: the send loop (RFC 6675 5 NextSeg with the pipe estimate, RFC 9293 3.7.4
// Nagle, 3.8.6.2.1 sender silly-window avoidance), the window we advertise (RFC 9293 3.8.6.2.2
// receiver silly-window avoidance, RFC 7323 2 scaling), and segment building (options, checksum
// or its offload).
#include "stack/native/tcp_connection.hh"

#include "stack/net/checksum.hh"

#include <netinet/in.h>

#include <algorithm>

namespace reef::net {

std::uint32_t tcp_connection::ts_val() const noexcept { return _tcp->ts_now() + _ts_offset; }

bool tcp_connection::can_send_data() const noexcept {
    switch (_state) {
    case tcp_state::established:
    case tcp_state::close_wait:
    case tcp_state::fin_wait_1:
    case tcp_state::closing:
    case tcp_state::last_ack: return true;
    default: return false;
    }
}

std::uint64_t tcp_connection::unsent_bytes() const noexcept {
    auto sent = std::int64_t(_snd_nxt - _snd_buf_seq);
    if (_fin_sent) {
        --sent;
    }
    if (sent < 0) {
        sent = 0;
    }
    return _snd_buffered - std::min<std::uint64_t>(std::uint64_t(sent), _snd_buffered);
}

void tcp_connection::output() {
    if (!_tcp || !can_send_data()) {
        return;
    }
    tcp::time_scope time(*_tcp);
    auto now = _tcp->now();
    // Back-pressure: segments the lower takes now, asked again once used up. At 0 the connection
    // waits for tcp::tx_ready() instead of handing the device frames it would drop, which the
    // windows would then count as congestion loss.
    std::size_t tx_room = 0;
    auto lower_has_room = [&] {
        if (tx_room == 0 && (tx_room = _tcp->lower().tx_room()) == 0) {
            _tcp->wait_for_tx(*this);
            return false;
        }
        --tx_room;
        return true;
    };
    for (;;) {
        std::uint64_t pipe = _sb.pipe();
        // RFC 6675 NextSeg rule 1: the lowest lost segment not yet retransmitted.
        if (auto* lost = _sb.next_lost()) {
            if (pipe >= _w.cwnd && !_force_retransmit) {
                _cwnd_limited = true;
                break;
            }
            if (!lower_has_room()) {
                break;
            }
            _force_retransmit = false;
            std::uint32_t payload = lost->len - (lost->fin ? 1 : 0);
            tcp_seq seq = lost->seq;
            bool fin = lost->fin;
            _sb.retransmitted(*lost, ts_val(), now);
            send_data(seq, payload, fin, true);
            continue;
        }
        _force_retransmit = false;
        if (pipe >= _w.cwnd) {
            _cwnd_limited = true;
            break;
        }
        std::uint64_t unsent = unsent_bytes();
        bool fin_pending = _fin_queued && !_fin_sent;
        auto room = std::int64_t((_snd_una + std::int64_t(_snd_wnd)) - _snd_nxt);
        if (room < 0) {
            room = 0;
        }
        if ((!unsent && !fin_pending) || (unsent && !room)) {
            // RFC 6675 5 NextSeg rule 3: no lost segment (rule 1) and no new data (rule 2): in
            // SACK recovery, a hole below the highest SACK that is not yet deemed lost goes out.
            if (_in_recovery && _sack_recovery) {
                if (auto* hole = _sb.next_unsacked_below_high_sack()) {
                    if (!lower_has_room()) {
                        break;
                    }
                    std::uint32_t payload = hole->len - (hole->fin ? 1 : 0);
                    tcp_seq seq = hole->seq;
                    bool fin = hole->fin;
                    _sb.retransmitted(*hole, ts_val(), now);
                    send_data(seq, payload, fin, true);
                    continue;
                }
            }
            if (!unsent && !fin_pending) {
                break;
            }
        }
        // One MSS per segment, or several at once when the device segments (TSO), as far as
        // cwnd allows.
        std::uint64_t max_len = _w.mss;
        if (std::uint32_t tso = _tcp->lower().tso_max_payload(); tso > _w.mss) {
            std::uint64_t cwnd_room = _w.cwnd - pipe;
            max_len = std::max<std::uint64_t>(_w.mss, std::min<std::uint64_t>(tso, cwnd_room) / _w.mss * _w.mss);
        }
        std::uint64_t len = std::min<std::uint64_t>({unsent, max_len, std::uint64_t(room)});
        if (len > _w.mss && len % _w.mss && len < unsent) {
            len -= len % _w.mss;  // a TSO burst ends on a segment boundary unless it is the end
        }
        if (unsent && !len) {
            // The peer's window is closed: probe it when nothing else will bring an ACK.
            if (_sb.empty()) {
                arm_persist();
            }
            break;
        }
        if (len < unsent && len < _w.mss && !_sb.empty() && len < _max_snd_wnd / 2) {
            // RFC 9293 3.8.6.2.1: do not send a small segment just because the window is small;
            // the ACKs of data in flight will open it.
            break;
        }
        if (len == unsent && len < _w.mss && len && !_nodelay && !_sb.empty() && !fin_pending) {
            // RFC 9293 3.7.4 Nagle: one small segment in flight at a time.
            break;
        }
        if (!lower_has_room()) {
            break;
        }
        bool fin = fin_pending && len == unsent && len <= _w.mss;
        tcp_seq seq = _snd_nxt;
        auto slen = std::uint32_t(len + (fin ? 1 : 0));
        // The scoreboard keeps one entry per MSS even for a TSO burst: loss recovery retransmits
        // single segments.
        auto tsv = ts_val();
        for (std::uint64_t off = 0; off + _w.mss < len; off += _w.mss) {
            _sb.sent(seq + std::int64_t(off), _w.mss, false, tsv, now);
        }
        std::uint64_t last = len > _w.mss ? (len - 1) / _w.mss * _w.mss : 0;
        _sb.sent(seq + std::int64_t(last), std::uint32_t(slen - last), fin, tsv, now);
        _snd_nxt += slen;
        if (fin) {
            _fin_sent = true;
        }
        send_data(seq, std::uint32_t(len), fin, false);
        _max_in_flight = std::max(_max_in_flight, _sb.outstanding());
        if (!_rto_timer.armed()) {
            arm_rto();
        }
        if (!_tcp || _state == tcp_state::closed) {
            return;
        }
    }
}

void tcp_connection::send_data(tcp_seq seq, std::uint32_t len, bool fin, bool retransmission) {
    std::uint8_t flags = tcp_flag::ack;
    if (fin) {
        flags |= tcp_flag::fin;
    }
    if (len && seq + std::int64_t(len) == _snd_buf_seq + std::int64_t(_snd_buffered)) {
        flags |= tcp_flag::psh;  // the last queued byte: let the receiver deliver at once
    }
    send_segment(seq, flags, payload_for(seq, len), false);
    if (retransmission) {
        auto& st = _tcp->mutable_stats();
        ++st.retransmitted_segments;
        ++_retransmits;
        if (_in_recovery) {
            ++st.fast_retransmits;
        }
    }
}

// Payload [seq, seq + len) from the send buffer, zero-copy (fragments share the buffers).
packet tcp_connection::payload_for(tcp_seq seq, std::uint32_t len) {
    if (!len) {
        return packet();
    }
    auto off = std::uint64_t(std::uint32_t(seq - _snd_buf_seq));
    std::size_t idx = 0;
    std::uint64_t start = 0;
    if (_snd_cursor_idx < _snd_buf.size() && off >= _snd_cursor_off) {
        idx = _snd_cursor_idx;
        start = _snd_cursor_off;
    }
    while (idx < _snd_buf.size() && off >= start + _snd_buf[idx].size()) {
        start += _snd_buf[idx].size();
        ++idx;
    }
    _snd_cursor_idx = idx;
    _snd_cursor_off = start;
    packet p;
    std::uint64_t o = off - start;
    std::uint32_t left = len;
    while (left && idx < _snd_buf.size()) {
        auto& b = _snd_buf[idx];
        auto n = std::uint32_t(std::min<std::uint64_t>(b.size() - o, left));
        p = packet(std::move(p), b.share(std::size_t(o), n));
        left -= n;
        o = 0;
        ++idx;
    }
    return p;
}

// Free receive buffer, as much of it as the window field can express.
std::size_t tcp_connection::receive_space() const noexcept {
    std::size_t used = std::min(_rcv_buf_limit, _rcv_buffered + _ooo.bytes());
    return std::min<std::size_t>(_rcv_buf_limit - used, std::size_t(65535) << _rcv_wscale);
}

// The window to put in the next segment (RFC 9293 3.8.6.2.2, RFC 7323 2.3): never shrinking the
// right edge already offered, moving it only by a useful amount.
std::uint32_t tcp_connection::advertised_window(bool syn) noexcept {
    if (syn) {
        // RFC 7323 2.2: a SYN's window is never scaled.
        auto w = std::uint32_t(std::min<std::size_t>(_rcv_buf_limit, 65535));
        if (_state == tcp_state::syn_received && _rcv_adv < _rcv_nxt + std::int64_t(w)) {
            _rcv_adv = _rcv_nxt + std::int64_t(w);
        }
        return w;
    }
    tcp_seq right = _rcv_nxt + std::int64_t(receive_space());
    if (right > _rcv_adv) {
        auto increase = std::size_t(right - _rcv_adv);
        std::size_t threshold = std::min<std::size_t>(_rcv_buf_limit / 2, _w.mss);
        if (increase < threshold) {
            right = _rcv_adv;
        }
    }
    if (right < _rcv_adv) {
        right = _rcv_adv;
    }
    auto wnd = std::uint64_t(std::uint32_t(right - _rcv_nxt));
    std::uint64_t unit = std::uint64_t(1) << _rcv_wscale;
    std::uint64_t field = std::min<std::uint64_t>((wnd + unit - 1) >> _rcv_wscale, 65535);
    tcp_seq adv = _rcv_nxt + std::int64_t(field << _rcv_wscale);
    if (adv > _rcv_adv) {
        _rcv_adv = adv;
    }
    return std::uint32_t(field);
}

// After the application read: tell the peer of the larger window when the window it has left
// is at most half the largest we can offer and the update at least doubles it (Linux's
// tcp_cleanup_rbuf rule), by a useful amount (RFC 9293 3.8.6.2.2). This is how a zero window
// reopens without waiting for a probe. A window with room to spare needs no update of its own:
// the ACKs that arriving data draws, and the data we send, carry the new right edge. (An update
// whenever the edge could move by two MSS cost a pure ACK for every read or two of a bulk
// transfer, 13% of an echo server's time.)
void tcp_connection::window_update_if_needed() {
    if (!_tcp ||
        !(_state == tcp_state::established || _state == tcp_state::fin_wait_1 || _state == tcp_state::fin_wait_2)) {
        return;
    }
    tcp_seq right = _rcv_nxt + std::int64_t(receive_space());
    if (right <= _rcv_adv) {
        return;
    }
    auto left = std::uint64_t(std::uint32_t(_rcv_adv - _rcv_nxt));
    auto offered = std::uint64_t(std::uint32_t(right - _rcv_nxt));
    auto largest = std::min<std::uint64_t>(_rcv_buf_limit, std::uint64_t(65535) << _rcv_wscale);
    if (2 * left > largest || offered < 2 * left) {
        return;
    }
    std::size_t threshold = std::min<std::size_t>(_rcv_buf_limit / 2, _w.mss);
    if (offered - left >= threshold) {
        send_ack();
    }
}

void tcp_connection::send_ack() {
    if (!_tcp || _state == tcp_state::closed || _state == tcp_state::syn_sent) {
        return;
    }
    if (_tcp->lower().tx_room() == 0) {
        // The device is full. Acknowledgments are cumulative: the next segment that leaves
        // carries this one, sent from tcp::tx_ready() at the latest. Queued now, a pure ACK would
        // take the device's reserve, then be dropped, for each few segments that arrive while
        // our data waits.
        _ack_deferred = true;
        _tcp->wait_for_tx(*this);
        return;
    }
    send_segment(_snd_nxt, tcp_flag::ack, packet(), false);
}

void tcp_connection::send_syn() {
    std::uint8_t flags = tcp_flag::syn;
    if (_state == tcp_state::syn_received) {
        flags |= tcp_flag::ack;
    }
    _syn_sent_at = clock::now();
    send_segment(_iss, flags, packet(), true);
}

void tcp_connection::send_rst_now() {
    send_segment(_snd_nxt, tcp_flag::rst | tcp_flag::ack, packet(), false);
    ++_tcp->mutable_stats().resets_sent;
}

// Zero-window and keepalive probe: a segment one byte below SND.UNA, which the peer finds
// unacceptable and answers with an ACK carrying its current window (RFC 9293 3.8.6.1, 3.8.4).
void tcp_connection::send_probe() { send_segment(_snd_una - 1, tcp_flag::ack, packet(), false); }

void tcp_connection::send_segment(tcp_seq seq, std::uint8_t flags, packet payload, bool syn_options) {
    if (!_tcp) {
        return;
    }
    auto& cfg = _tcp->config();
    tcp_options o;
    bool has_ack = flags & tcp_flag::ack;
    if (syn_options) {
        bool passive = _state == tcp_state::syn_received;  // options already agreed from the SYN
        o.mss = std::uint16_t(std::min<std::uint32_t>(_path_mss, 65535));
        if (passive ? _wscale_ok : cfg.window_scaling) {
            o.wscale = _rcv_wscale;
        }
        o.sack_permitted = passive ? _sack_ok : cfg.sack;
        o.has_timestamps = passive ? _ts_ok : cfg.timestamps;
        if (o.has_timestamps) {
            o.tsval = ts_val();
            o.tsecr = has_ack ? _ts_recent : 0;
        }
    } else if (!(flags & tcp_flag::rst)) {
        if (_ts_ok) {
            o.has_timestamps = true;
            o.tsval = ts_val();
            o.tsecr = _ts_recent;
        }
        if (_sack_ok && has_ack && !_ooo.empty()) {
            o.nr_sack = std::uint8_t(_ooo.sack_blocks(o.sack, 4));
        }
    }
    std::size_t payload_len = payload.len();
    if (o.nr_sack && payload_len) {
        // _w.mss leaves room for the timestamps option only: on a data segment, SACK blocks that
        // would take it past the MSS (and the IP packet past the MTU, where it is dropped) are
        // left out, oldest first. (Each TSO segment carries the same header.)
        std::size_t room = std::size_t(_w.mss) + (_ts_ok ? 12 : 0);
        std::size_t seg_payload = std::min<std::size_t>(payload_len, _w.mss);
        while (o.nr_sack && seg_payload + tcp_options_length(o) > room) {
            --o.nr_sack;
        }
    }
    std::size_t optlen = tcp_options_length(o);
    std::size_t hlen = tcp_min_header_len + optlen;
    char* p = payload.prepend_uninitialized_header(hlen);
    tcp_header h;
    h.src_port = _t.local_port;
    h.dst_port = _t.remote_port;
    h.seq = seq;
    h.ack = has_ack ? _rcv_nxt : tcp_seq(0);
    h.data_offset = std::uint8_t(hlen / 4);
    h.flags = flags;
    h.window = (flags & tcp_flag::rst) ? 0 : std::uint16_t(advertised_window(flags & tcp_flag::syn));
    h.checksum = 0;
    h.write(p);
    write_tcp_options(p + tcp_min_header_len, o);
    auto& lower = _tcp->lower();
    bool tso = payload_len > _w.mss;
    if (lower.tx_checksum_offload() || tso) {
        auto& oi = payload.offload();
        oi.protocol = IPPROTO_TCP;
        oi.needs_csum = true;
        oi.tcp_hdr_len = std::uint8_t(hlen);
        if (tso) {
            oi.tso_seg_size = std::uint16_t(_w.mss);
        }
    } else {
        checksummer c;
        std::uint32_t src = htonl(_t.local_addr), dst = htonl(_t.remote_addr);
        add_ipv4_pseudo_header(c, &src, &dst, IPPROTO_TCP, hlen + payload_len);
        add_packet_range(c, payload, 0, hlen + payload_len);
        std::uint16_t v = c.get();
        std::memcpy(payload.get_header(16, 2), &v, 2);
    }
    if (has_ack) {
        _last_ack_sent = _rcv_nxt;
        _ack_deferred = false;
        _ack_now = false;
        _unacked_segs = 0;
        _delack_timer.cancel();
    }
    ++_tcp->mutable_stats().segments_out;
    lower.send_segment(_t.local_addr, _t.remote_addr, std::move(payload));
}

}  // namespace reef::net
