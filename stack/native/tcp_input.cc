// Segment arrival on a connection: RFC 9293 3.10.7.3 (SYN-SENT) and 3.10.7.4 (the other states),
// in the RFC's order: sequence check (after PAWS, RFC 7323 5.3), RST (RFC 5961 3), SYN (RFC 5961
// 4), ACK (RFC 5961 5, RFC 5681, RFC 6582, RFC 6675), text, FIN.
#include "stack/native/tcp_connection.hh"

#include <algorithm>
#include <cerrno>

namespace reef::net {

namespace {
constexpr unsigned dupthresh = 3;  // RFC 5681 3.2, RFC 6675 2
}

void tcp_connection::input(tcp_segment seg) {
    if (!_tcp || _state == tcp_state::closed) {
        return;
    }
    auto self = shared_from_this();
    _last_received = _tcp->now();
    _ka_probes = 0;

    if (_state == tcp_state::syn_sent) {
        syn_sent_input(seg);
        return;
    }
    const auto& h = seg.h;

    // A retransmitted SYN while our SYN-ACK is unacknowledged: the SYN-ACK was lost; resend it.
    if (_state == tcp_state::syn_received && h.has(tcp_flag::syn) && !h.has(tcp_flag::ack) && h.seq == _irs) {
        send_syn();
        return;
    }
    // Simultaneous open (RFC 9293 3.5 figure 8): the peer's SYN-ACK reaches us in SYN-RECEIVED; its
    // SYN repeats the one we have, its ACK completes our side.
    if (_state == tcp_state::syn_received && h.has(tcp_flag::syn) && h.has(tcp_flag::ack) && h.seq == _irs &&
        !h.has(tcp_flag::rst)) {
        if (_snd_una < h.ack && h.ack <= _snd_nxt) {
            _snd_una = h.ack;
            _rto_timer.cancel();
            _snd_wnd = h.window;  // a SYN's window is not scaled (RFC 7323 2.2)
            _max_snd_wnd = std::max(_max_snd_wnd, _snd_wnd);
            _snd_wl1 = h.seq;
            _snd_wl2 = h.ack;
            enter_established();
            send_ack();
        }
        return;
    }

    // RFC 7323 3.2: once timestamps are in use, a non-RST segment without them is dropped.
    if (_ts_ok && !seg.opts.has_timestamps && !h.has(tcp_flag::rst)) {
        ++_tcp->mutable_stats().drop_paws;
        return;
    }
    if (paws_reject(seg)) {
        ++_tcp->mutable_stats().drop_paws;
        send_ack();
        return;
    }

    // Fourth, moved first: a SYN in a synchronized state draws a challenge ACK whatever its
    // sequence number (RFC 5961 4.2), so a blind SYN can never reset the connection.
    if (h.has(tcp_flag::syn) && !h.has(tcp_flag::rst)) {
        challenge_ack();
        return;
    }

    // First: is the segment acceptable (RFC 9293 3.10.7.4, the four cases)?
    if (!acceptable(seg)) {
        ++_tcp->mutable_stats().drop_out_of_window;
        if (h.has(tcp_flag::rst)) {
            return;
        }
        if (_state == tcp_state::time_wait && h.has(tcp_flag::fin)) {
            // A retransmitted FIN: our ACK was lost. Acknowledge again and restart 2 MSL (RFC 9293
            // 3.10.7.4 eighth, TIME-WAIT).
            _close_timer.arm(_tcp->config().time_wait);
        }
        // RFC 9293: "special allowance should be made to accept valid ACKs" when the window is
        // zero: a zero-window receiver must still learn that its own data was acknowledged.
        if (h.has(tcp_flag::ack) && h.seq == _rcv_nxt && _rcv_adv == _rcv_nxt && !h.has(tcp_flag::syn)) {
            ack_input(seg);
            if (_state == tcp_state::closed) {
                return;
            }
            output();
        }
        send_ack();
        return;
    }

    // Second: RST.
    if (h.has(tcp_flag::rst)) {
        rst_input(seg);
        return;
    }

    // Fifth: ACK.
    if (!h.has(tcp_flag::ack)) {
        return;  // RFC 9293: "if the ACK bit is off, drop the segment"
    }
    if (!ack_input(seg)) {
        return;
    }
    if (_state == tcp_state::closed) {
        return;
    }
    update_ts_recent(seg);

    // Sixth, URG: urgent data stays in line (RFC 9293 3.8.5, RFC 6093 5: applications get it as
    // ordinary data; there is no out-of-band byte) and the urgent pointer, wherever it points,
    // neither moves nor cuts the text. Seventh and eighth: text and FIN.
    if (seg.len() || h.has(tcp_flag::fin)) {
        data_input(seg);
        if (_state == tcp_state::closed) {
            return;
        }
    }

    output();
    if (_ack_now) {
        send_ack();
    } else if (_unacked_segs && !_ack_owed) {
        schedule_ack();
    }
}

// RFC 9293 3.10.7.3.
void tcp_connection::syn_sent_input(tcp_segment& seg) {
    const auto& h = seg.h;
    bool ack_ok = false;
    if (h.has(tcp_flag::ack)) {
        // First: an ACK of something other than our SYN gets a RST (unless it is one).
        if (h.ack <= _iss || h.ack > _snd_nxt) {
            ++_tcp->mutable_stats().drop_bad_ack;
            if (!h.has(tcp_flag::rst)) {
                send_segment(h.ack, tcp_flag::rst, packet(), false);  // <SEQ=SEG.ACK><CTL=RST>
                ++_tcp->mutable_stats().resets_sent;
            }
            return;
        }
        ack_ok = true;
    }
    // Second: RST. Acceptable only with an acceptable ACK (RFC 9293; RFC 5961 3.2 for SYN-SENT).
    if (h.has(tcp_flag::rst)) {
        if (ack_ok) {
            ++_tcp->mutable_stats().resets_received;
            ++_tcp->mutable_stats().attempt_fails;
            to_closed(make_error(ECONNREFUSED, "connect to"));
        }
        return;
    }
    // Fourth: SYN.
    if (!h.has(tcp_flag::syn)) {
        return;
    }
    _irs = h.seq;
    _rcv_nxt = _irs + 1;
    _last_ack_sent = _rcv_nxt;
    negotiate(seg.opts);
    _rcv_adv = _rcv_nxt + std::int64_t(std::min<std::size_t>(_rcv_buf_limit, 65535));
    // RFC 7323 2.2: the window of a SYN segment is not scaled.
    _snd_wnd = h.window;
    _max_snd_wnd = _snd_wnd;
    _snd_wl1 = h.seq;
    _snd_wl2 = h.ack;
    if (ack_ok) {
        _snd_una = h.ack;
        if (!_syn_retransmitted) {
            rtt_sample(std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - _syn_sent_at));
        }
        _rto_timer.cancel();
        enter_established();
        send_ack();
        return;
    }
    // Simultaneous open: SYN-RECEIVED, answer with SYN-ACK (RFC 9293 3.5).
    set_state(tcp_state::syn_received);
    send_syn();
    arm_rto();
}

// RFC 7323 5.3 R1: a segment whose timestamp is older than TS.Recent is a duplicate from an
// earlier wrap of the sequence space. RSTs are exempt (RFC 7323 5.3 note).
bool tcp_connection::paws_reject(const tcp_segment& seg) noexcept {
    if (!_ts_ok || !seg.opts.has_timestamps || seg.h.has(tcp_flag::rst)) {
        return false;
    }
    if (std::int32_t(seg.opts.tsval - _ts_recent) >= 0) {
        return false;
    }
    // RFC 7323 5.5: TS.Recent older than 24 days is invalid and not used to reject.
    if (_tcp->now() - _ts_recent_at > std::chrono::hours(24 * 24)) {
        _ts_recent = seg.opts.tsval;
        return false;
    }
    return true;
}

// RFC 7323 4.3 (2): TS.Recent follows the segment that covers Last.ACK.sent.
void tcp_connection::update_ts_recent(const tcp_segment& seg) noexcept {
    if (_ts_ok && seg.opts.has_timestamps && std::int32_t(seg.opts.tsval - _ts_recent) >= 0 &&
        seg.h.seq <= _last_ack_sent) {
        _ts_recent = seg.opts.tsval;
        _ts_recent_at = _tcp->now();
    }
}

// RFC 9293 3.10.7.4, first check: the four cases of segment length and receive window.
bool tcp_connection::acceptable(const tcp_segment& seg) const noexcept {
    auto wnd = std::int64_t(_rcv_adv - _rcv_nxt);
    if (wnd < 0) {
        wnd = 0;
    }
    std::uint32_t len = seg.seg_len();
    tcp_seq s = seg.h.seq;
    if (len == 0) {
        return wnd == 0 ? s == _rcv_nxt : seq_in(s, _rcv_nxt, _rcv_nxt + wnd);
    }
    if (wnd == 0) {
        return false;
    }
    return seq_in(s, _rcv_nxt, _rcv_nxt + wnd) || seq_in(s + std::int64_t(len) - 1, _rcv_nxt, _rcv_nxt + wnd);
}

// RFC 5961 3.2: only a RST at exactly RCV.NXT resets; one elsewhere in the window gets a
// challenge ACK, which a genuine peer answers with a RST at the right sequence number.
void tcp_connection::rst_input(const tcp_segment& seg) {
    if (seg.h.seq != _rcv_nxt) {
        challenge_ack();
        return;
    }
    auto& st = _tcp->mutable_stats();
    ++st.resets_received;
    switch (_state) {
    case tcp_state::syn_received:
        ++st.attempt_fails;
        // Passive: back to LISTEN, i.e. forget the half-open connection. Active (simultaneous
        // open): the connect fails.
        to_closed(make_error(ECONNREFUSED, "connect to"));
        return;
    case tcp_state::established:
    case tcp_state::close_wait: ++st.established_resets; [[fallthrough]];
    case tcp_state::fin_wait_1:
    case tcp_state::fin_wait_2:
        // RFC 9293: queues are flushed; reads and writes see the reset.
        _rcv_buf.clear();
        _rcv_buffered = 0;
        to_closed(make_error(ECONNRESET, "connection to"));
        return;
    case tcp_state::closing:
    case tcp_state::last_ack: to_closed(nullptr); return;
    case tcp_state::time_wait:
        // RFC 1337: a RST must not cut TIME-WAIT short (old duplicates would be accepted).
        return;
    default: return;
    }
}

// RFC 5961 3.2/4.2/5.2 challenge ACK, rate-limited per shard (RFC 5961 7).
void tcp_connection::challenge_ack() {
    if (!_tcp->challenge_ack_allowed()) {
        ++_tcp->mutable_stats().challenge_acks_suppressed;
        return;
    }
    ++_tcp->mutable_stats().challenge_acks;
    send_ack();
}

// RFC 9293 3.10.7.4 fifth check. Returns false when the segment is to be dropped here.
bool tcp_connection::ack_input(tcp_segment& seg) {
    const auto& h = seg.h;
    if (_state == tcp_state::syn_received) {
        if (!(_snd_una < h.ack && h.ack <= _snd_nxt)) {
            // An unacceptable ACK in SYN-RECEIVED: <SEQ=SEG.ACK><CTL=RST>.
            ++_tcp->mutable_stats().drop_bad_ack;
            send_segment(h.ack, tcp_flag::rst, packet(), false);
            ++_tcp->mutable_stats().resets_sent;
            return false;
        }
        _snd_una = h.ack;
        if (!_syn_retransmitted) {
            rtt_sample(std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - _syn_sent_at));
        }
        _rto_timer.cancel();
        _backoff = 0;
        _snd_wnd = std::uint32_t(h.window) << _snd_wscale;
        _max_snd_wnd = std::max(_max_snd_wnd, _snd_wnd);
        _snd_wl1 = h.seq;
        _snd_wl2 = h.ack;
        bool fin_queued = _fin_queued;
        enter_established();
        if (_state == tcp_state::closed) {
            return false;
        }
        if (fin_queued) {
            set_state(tcp_state::fin_wait_1);  // CLOSE was called in SYN-RECEIVED
        }
        return true;
    }

    // RFC 5961 5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND, SND.NXT].
    if (h.ack > _snd_nxt) {
        ++_tcp->mutable_stats().drop_bad_ack;
        send_ack();
        return false;
    }
    if (h.ack < _snd_una - std::int64_t(_max_snd_wnd)) {
        ++_tcp->mutable_stats().drop_bad_ack;
        challenge_ack();
        return false;
    }

    std::uint64_t flight_before = _sb.pipe();
    bool window_changed = (std::uint32_t(h.window) << _snd_wscale) != _snd_wnd;
    if (h.ack > _snd_una) {
        auto r = _sb.ack(h.ack);
        _snd_una = h.ack;
        // SACK blocks are read after the cumulative ACK moved SND.UNA (RFC 6675 5 step (B)).
        if (_sack_ok && seg.opts.nr_sack) {
            _sb.sack(seg.opts.sack, seg.opts.nr_sack, _snd_una, _snd_nxt);
        }
        new_data_acked(seg, r, flight_before);
        if (_state == tcp_state::closed) {
            return false;
        }
    } else if (h.ack == _snd_una) {
        bool sack_news = false;
        if (_sack_ok && seg.opts.nr_sack) {
            sack_news = _sb.sack(seg.opts.sack, seg.opts.nr_sack, _snd_una, _snd_nxt) > 0;
        }
        // RFC 5681 2 "duplicate acknowledgment": outstanding data, no payload, no SYN/FIN, same
        // window (RFC 6675 counts an ACK with new SACK information likewise).
        if (!_sb.empty() && seg.len() == 0 && !h.has(tcp_flag::fin) && (!window_changed || sack_news)) {
            duplicate_ack(seg, sack_news);
        }
    }
    update_send_window(seg);

    bool fin_acked = _fin_sent && _snd_una == _snd_nxt;
    switch (_state) {
    case tcp_state::fin_wait_1:
        if (fin_acked) {
            set_state(tcp_state::fin_wait_2);
            if (orphan()) {
                _close_timer.arm(_tcp->config().fin_wait2_timeout);
            }
        }
        break;
    case tcp_state::closing:
        if (fin_acked) {
            enter_time_wait();
        }
        break;
    case tcp_state::last_ack:
        if (fin_acked) {
            to_closed(nullptr);
            return false;
        }
        break;
    default: break;
    }
    return true;
}

// RFC 9293 3.10.7.4: SND.WND follows the newest segment (SND.WL1/SND.WL2 guard against old ones).
void tcp_connection::update_send_window(const tcp_segment& seg) noexcept {
    const auto& h = seg.h;
    if (_snd_wl1 < h.seq || (_snd_wl1 == h.seq && _snd_wl2 <= h.ack)) {
        _snd_wnd = std::uint32_t(h.window) << _snd_wscale;
        _snd_wl1 = h.seq;
        _snd_wl2 = h.ack;
        _max_snd_wnd = std::max(_max_snd_wnd, _snd_wnd);
        if (_snd_wnd > 0 && _persist_timer.armed()) {
            _persist_timer.cancel();
            _persist_probes = 0;
        }
    }
}

void tcp_connection::new_data_acked(const tcp_segment& seg, const tcp_scoreboard::ack_result& r,
                                    std::uint64_t flight_before) {
    auto now = _tcp->now();
    std::uint64_t data_acked = r.acked_bytes - (r.fin_acked ? 1 : 0);
    _bytes_acked += data_acked;
    // Release acknowledged bytes from the send buffer.
    std::uint64_t n = std::min<std::uint64_t>(data_acked, _snd_buffered);
    _snd_buffered -= n;
    _snd_buf_seq += std::int64_t(n);
    while (n) {
        auto& b = _snd_buf.front();
        if (b.size() <= n) {
            n -= b.size();
            if (_snd_cursor_idx > 0) {
                --_snd_cursor_idx;
                _snd_cursor_off -= b.size();
            }
            _snd_buf.pop_front();
        } else {
            b.trim_front(n);
            if (_snd_cursor_idx > 0) {
                _snd_cursor_off -= n;
            }
            n = 0;
        }
    }
    wake_writer();

    // RFC 6298 2/3 (Karn): sample from a segment sent once; RFC 7323 4 (RTTM): from the echoed
    // timestamp when only retransmitted segments were acked.
    if (r.rtt_sample_from) {
        rtt_sample(std::chrono::duration_cast<std::chrono::microseconds>(now - *r.rtt_sample_from));
    } else if (_ts_ok && seg.opts.has_timestamps && seg.opts.tsecr) {
        auto ms = std::int32_t(ts_val() - seg.opts.tsecr);
        if (ms >= 0) {
            rtt_sample(std::chrono::milliseconds(ms));
        }
    }
    // RFC 6298 5.2/5.3 and 5.7: restart the timer, forget the back-off.
    _backoff = 0;
    if (_sb.empty()) {
        _rto_timer.cancel();
    } else {
        restart_rto();
    }

    if (_in_recovery) {
        if (_snd_una >= _recover) {
            // Full acknowledgment: recovery ends (RFC 6582 3.2 step 3, RFC 6675 5 step (A)).
            _in_recovery = false;
            _dupacks = 0;
            _sb.clear_reno_dupacks();
            // cwnd = ssthresh (RFC 6582 3.2 step 3 option 2; RFC 6675 leaves it there too).
            _w.cwnd = std::max<std::uint64_t>(_w.ssthresh, _w.mss);
        } else if (!_sack_recovery) {
            // RFC 6582 3.2 step 3, partial acknowledgment: retransmit the first unacknowledged
            // segment at once; the pipe model deflates the window by what was acked.
            _sb.mark_head_lost();
            _force_retransmit = true;
        } else {
            // RFC 6675 5 (C): losses may be detected by the new SACK information.
            _sb.mark_lost_rfc6675(dupthresh, _w.mss);
        }
        return;
    }
    _dupacks = 0;
    _sb.clear_reno_dupacks();
    bool cwnd_limited = flight_before * 2 >= _w.cwnd || _cwnd_limited;
    _cwnd_limited = false;
    _cc->on_ack(_w, data_acked, cwnd_limited, now, _srtt);
    // RFC 6675 5: an ACK that moves SND.UNA may still carry SACK blocks showing a loss.
    if (_sack_ok && _sb.any_sacked() && !(_snd_una < _recover) && _sb.mark_lost_rfc6675(dupthresh, _w.mss)) {
        enter_recovery(true);
    }
}

void tcp_connection::duplicate_ack(const tcp_segment&, bool sack_news) {
    ++_dupacks;
    if (_in_recovery) {
        if (_sack_recovery) {
            if (sack_news) {
                _sb.mark_lost_rfc6675(dupthresh, _w.mss);
            }
        } else {
            _sb.add_reno_dupack(_w.mss);  // RFC 6582 3.2 step 4: each further dupack inflates
        }
        return;
    }
    if (_sack_ok) {
        // RFC 6675 5: enter recovery on DupThresh duplicate ACKs or when IsLost(HighACK + 1).
        bool head_lost = _sb.mark_lost_rfc6675(dupthresh, _w.mss);
        if ((head_lost || _dupacks >= dupthresh) && !(_snd_una < _recover)) {
            enter_recovery(true);
        }
        return;
    }
    // RFC 3042 limited transmit: the first two duplicate ACKs each let one new segment out (the
    // duplicate ACK counts as a segment that left the network, see tcp_scoreboard).
    _sb.add_reno_dupack(_w.mss);
    // RFC 6582 3.2 step 2: only if the ACK covers more than "recover" (no recovery right after one).
    if (_dupacks == dupthresh && !(_snd_una < _recover)) {
        enter_recovery(false);
    }
}

// RFC 5681 3.2 fast retransmit / RFC 6675 5 step (4) / RFC 6582 3.2 step 2.
void tcp_connection::enter_recovery(bool sack) {
    auto& st = _tcp->mutable_stats();
    _in_recovery = true;
    _sack_recovery = sack;
    _recover = _snd_nxt;
    _cc->on_congestion_event(_w, _sb.outstanding(), clock::now());
    if (sack) {
        ++st.sack_recoveries;
        _sb.mark_lost_rfc6675(dupthresh, _w.mss);
    } else {
        ++st.reno_recoveries;
    }
    // The first unacknowledged segment is presumed lost and goes out at once.
    _sb.mark_head_lost();
    _force_retransmit = true;
}

// RFC 6298 2.2/2.3 smoothing, 2.4 minimum, 2.5 maximum.
void tcp_connection::rtt_sample(std::chrono::microseconds r) noexcept {
    using us = std::chrono::microseconds;
    if (r.count() < 0) {
        return;
    }
    if (!_have_rtt) {
        _srtt = r;
        _rttvar = r / 2;
        _have_rtt = true;
    } else {
        us diff = _srtt > r ? _srtt - r : r - _srtt;
        _rttvar = (3 * _rttvar + diff) / 4;
        _srtt = (7 * _srtt + r) / 8;
    }
    us g{1000};  // clock granularity G: the timestamp clock ticks in milliseconds
    us rto = _srtt + std::max(g, 4 * _rttvar);
    auto& cfg = _tcp->config();
    _rto =
        std::clamp<us>(rto, std::chrono::duration_cast<us>(cfg.rto_min), std::chrono::duration_cast<us>(cfg.rto_max));
}

// RFC 9293 3.10.7.4 seventh (segment text) and eighth (FIN).
void tcp_connection::data_input(tcp_segment& seg) {
    switch (_state) {
    case tcp_state::established:
    case tcp_state::fin_wait_1:
    case tcp_state::fin_wait_2: break;
    default: return;  // CLOSE-WAIT and later: the peer's FIN came already; ignore text
    }
    if (orphan() && seg.len()) {
        // RFC 9293 3.10.4 / RFC 2525 2.17: nobody will read this; tell the peer.
        send_rst_now();
        to_closed(nullptr);
        return;
    }
    tcp_seq seq = seg.h.seq;
    tcp_seq fin_seq = seq + std::int64_t(seg.len());
    packet data = std::move(seg.payload);
    bool fin = seg.h.has(tcp_flag::fin);
    // Trim what lies before RCV.NXT (already received) and beyond the window.
    if (seq < _rcv_nxt) {
        auto skip = std::size_t(_rcv_nxt - seq);
        if (skip >= data.len()) {
            if (fin && seq + std::int64_t(data.len()) == _rcv_nxt) {
                data = packet();
                seq = _rcv_nxt;
            } else {
                _ack_now = true;  // a complete duplicate: ACK so the peer stops resending
                return;
            }
        } else {
            data.trim_front(skip);
            seq = _rcv_nxt;
        }
    }
    tcp_seq right = _rcv_adv;
    if (seq + std::int64_t(data.len()) > right) {
        auto over = std::size_t((seq + std::int64_t(data.len())) - right);
        data.trim_back(std::min(over, data.len()));
        fin = false;  // the FIN lies beyond the window
    }
    std::size_t len = data.len();
    if (seq == _rcv_nxt) {
        bool had_ooo = !_ooo.empty();
        _rcv_nxt += std::int64_t(len);
        if (len) {
            deliver(std::move(data));
        }
        bool ooo_fin = false;
        if (had_ooo) {
            for (auto& p : _ooo.pop_in_order(_rcv_nxt, ooo_fin)) {
                deliver(std::move(p));
            }
            // RFC 5681 4.2: an ACK at once when a segment fills (part of) a hole.
            _ack_now = true;
        } else if (len) {
            // RFC 5681 4.2: ACK at least every second full-sized segment; else delay. The ACK
            // waits for the end of the reactor round, so a burst of segments draws one
            // (tcp::owe_ack).
            if (++_unacked_segs >= 2) {
                _tcp->owe_ack(*this);
            }
        }
        if ((fin && fin_seq == _rcv_nxt) || ooo_fin) {
            fin_input();
        }
        return;
    }
    // Out of order (RFC 9293: queue it; RFC 5681 4.2: immediate duplicate ACK with SACK blocks).
    if (len) {
        if (_ooo.bytes() + len > _rcv_buf_limit) {
            ++_tcp->mutable_stats().drop_memory;
        } else {
            _ooo.insert(seq, std::move(data));
        }
    }
    if (fin) {
        _ooo.insert_fin(seq + std::int64_t(len));
    }
    _ack_now = true;
}

// RFC 9293 3.10.7.4 eighth: the peer closed its side.
void tcp_connection::fin_input() {
    _rcv_nxt += 1;
    _fin_received = true;
    _ack_now = true;
    wake_reader();
    for (auto& w : _input_shutdown_waiters) {
        w.set_value();
    }
    _input_shutdown_waiters.clear();
    switch (_state) {
    case tcp_state::syn_received:
    case tcp_state::established: set_state(tcp_state::close_wait); break;
    case tcp_state::fin_wait_1:
        if (_fin_sent && _snd_una == _snd_nxt) {
            send_ack();
            enter_time_wait();
        } else {
            set_state(tcp_state::closing);  // simultaneous close
        }
        break;
    case tcp_state::fin_wait_2:
        send_ack();
        enter_time_wait();
        break;
    default: break;
    }
}

// RFC 9293 3.10.7.4 (TIME-WAIT note) and RFC 6191: a SYN may reopen a tuple in TIME-WAIT when it
// cannot be an old duplicate: a newer timestamp, or (without timestamps) a higher sequence number.
bool tcp_connection::time_wait_accepts_syn(const tcp_segment& syn) const noexcept {
    if (_ts_ok && syn.opts.has_timestamps) {
        return std::int32_t(syn.opts.tsval - _ts_recent) > 0;
    }
    return syn.h.seq > _rcv_nxt;
}

// ICMP errors (RFC 1122 4.2.3.9, RFC 5927 4.1 validation, RFC 1191 path MTU discovery).
void tcp_connection::icmp(const tcp_icmp_error& e) {
    if (!_tcp || _state == tcp_state::closed) {
        return;
    }
    auto self = shared_from_this();
    auto& st = _tcp->mutable_stats();
    tcp_seq s(e.seq);
    // RFC 5927 4.1: only errors quoting a sequence number in flight are believed.
    if (!(seq_in(s, _snd_una, _snd_nxt) || (s == _snd_una && _snd_una == _snd_nxt))) {
        ++st.drop_icmp_invalid;
        return;
    }
    ++st.icmp_errors;
    int err = 0;
    switch (e.kind) {
    case tcp_icmp_kind::frag_needed: {
        if (e.next_hop_mtu < 68 + 0) {
            return;  // RFC 1191 without a usable MTU: keep the current one
        }
        std::uint32_t mss = std::max<std::uint32_t>(std::uint32_t(e.next_hop_mtu) - 40, 64);
        if (mss >= _path_mss) {
            return;
        }
        ++st.pmtu_updates;
        _path_mss = mss;
        _w.mss = effective_mss();
        _sb.split_to(_w.mss);
        // The segment that was too big is gone: send it again, smaller, at once.
        _sb.mark_head_lost();
        _force_retransmit = true;
        output();
        return;
    }
    case tcp_icmp_kind::port_unreachable:
    case tcp_icmp_kind::protocol_unreachable: err = ECONNREFUSED; break;
    case tcp_icmp_kind::net_unreachable: err = ENETUNREACH; break;
    case tcp_icmp_kind::admin_prohibited:
    case tcp_icmp_kind::host_unreachable: err = EHOSTUNREACH; break;
    case tcp_icmp_kind::time_exceeded: err = EHOSTUNREACH; break;
    }
    if (_state == tcp_state::syn_sent || (_state == tcp_state::syn_received && !_listener)) {
        // Connection set-up fails at once, as kernels do.
        ++st.attempt_fails;
        to_closed(make_error(err, "connect to"));
        return;
    }
    // RFC 1122 4.2.3.9: otherwise a soft error, reported if the connection later times out.
    _soft_error = err;
}

}  // namespace reef::net
