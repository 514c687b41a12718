// Connection timers: retransmission (RFC 6298 with back-off and abort, RFC 9293 3.8.3 R2),
// delayed ACK (RFC 5681 4.2), persist / zero-window probes (RFC 9293 3.8.6.1), keepalive
// (RFC 9293 3.8.4, RFC 1122 4.2.3.6), TIME-WAIT (2 MSL) and the FIN-WAIT-2 orphan timeout.
#include "stack/native/tcp_connection.hh"

#include <algorithm>
#include <cerrno>

namespace reef::net {

std::chrono::microseconds tcp_connection::backed_off_rto() const noexcept {
    using us = std::chrono::microseconds;
    auto max = std::chrono::duration_cast<us>(_tcp ? _tcp->config().rto_max : std::chrono::milliseconds(60000));
    us r = _rto;
    for (unsigned i = 0; i < _backoff && r < max; ++i) {
        r *= 2;  // RFC 6298 5.5
    }
    return std::min(r, max);
}

void tcp_connection::arm_rto() { _rto_timer.arm((_tcp ? _tcp->now() : clock::now()) + backed_off_rto()); }

void tcp_connection::restart_rto() { arm_rto(); }

void tcp_connection::on_rto() {
    if (!_tcp) {
        return;
    }
    auto self = shared_from_this();
    auto& cfg = _tcp->config();
    auto& st = _tcp->mutable_stats();
    if (_state == tcp_state::syn_sent || _state == tcp_state::syn_received) {
        // RFC 6298 5.7 applies to the SYN as well: back off, give up after max_syn_retransmits.
        if (++_backoff > cfg.max_syn_retransmits) {
            ++st.attempt_fails;
            to_closed(make_error(_soft_error ? _soft_error : ETIMEDOUT, "connect to"));
            return;
        }
        ++st.retransmitted_segments;
        ++_retransmits;
        _syn_retransmitted = true;
        send_syn();
        arm_rto();
        return;
    }
    if (_sb.empty()) {
        return;
    }
    ++_backoff;
    ++_rto_expirations;
    ++st.rto_expirations;
    if (_backoff > cfg.max_retransmits) {
        // RFC 9293 3.8.3 R2: give up and tell the user.
        ++st.timeouts;
        to_closed(make_error(_soft_error ? _soft_error : ETIMEDOUT, "connection to"));
        return;
    }
    auto now = clock::now();
    if (_backoff == 1) {
        // RFC 5681 3.1 eq. 4 / RFC 6298 5.5: ssthresh from the flight, only at the first expiry.
        _cc->on_rto(_w, _sb.outstanding(), now);
    } else {
        _w.cwnd = _w.mss;
        // Repeated expiries: the receiver may have reneged on what it SACKed (RFC 2018 8).
        _sb.clear_sacks();
    }
    _sb.mark_all_lost();
    _in_recovery = false;
    _dupacks = 0;
    _recover = _snd_nxt;  // RFC 6582 4: no fast retransmit for data sent before the timeout
    _force_retransmit = true;
    output();
    if (_state != tcp_state::closed) {
        arm_rto();
    }
}

void tcp_connection::schedule_ack() {
    if (!_delack_timer.armed()) {
        _delack_timer.arm(_tcp->now() + _tcp->config().delayed_ack);
    }
}

void tcp_connection::on_delayed_ack() {
    if (!_tcp || _state == tcp_state::closed) {
        return;
    }
    auto self = shared_from_this();
    ++_tcp->mutable_stats().delayed_acks;
    send_ack();
}

void tcp_connection::arm_persist() {
    if (!_persist_timer.armed()) {
        using us = std::chrono::microseconds;
        us r = _rto;
        auto max = std::chrono::duration_cast<us>(_tcp->config().rto_max);
        for (unsigned i = 0; i < _persist_probes && r < max; ++i) {
            r *= 2;
        }
        _persist_timer.arm(std::min(r, max));
    }
}

// RFC 9293 3.8.6.1: probe a zero window for as long as the peer keeps answering (RFC 1122
// 4.2.2.17: the connection stays open); the probes back off like the RTO.
void tcp_connection::on_persist() {
    if (!_tcp || !can_send_data()) {
        return;
    }
    auto self = shared_from_this();
    if (_snd_wnd > 0 || !unsent_bytes()) {
        _persist_probes = 0;
        output();
        return;
    }
    ++_persist_probes;
    ++_probes;
    ++_tcp->mutable_stats().zero_window_probes;
    send_probe();
    arm_persist();
}

void tcp_connection::arm_keepalive() {
    if (_keepalive && _tcp && _state == tcp_state::established) {
        _ka_probes = 0;
        _keepalive_timer.arm(std::chrono::duration_cast<clock::duration>(_ka_params.idle));
    }
}

// RFC 9293 3.8.4 / RFC 1122 4.2.3.6: after `idle` without a segment from the peer, probe every
// `interval`; `count` unanswered probes abort the connection.
void tcp_connection::on_keepalive() {
    if (!_tcp || !_keepalive) {
        return;
    }
    if (!(_state == tcp_state::established || _state == tcp_state::close_wait || _state == tcp_state::fin_wait_2)) {
        return;
    }
    auto self = shared_from_this();
    auto now = clock::now();
    auto idle = std::chrono::duration_cast<clock::duration>(_ka_params.idle);
    auto interval = std::chrono::duration_cast<clock::duration>(_ka_params.interval);
    if (_ka_probes == 0 && now - _last_received < idle) {
        _keepalive_timer.arm(_last_received + idle);
        return;
    }
    if (_ka_probes >= _ka_params.count) {
        ++_tcp->mutable_stats().keepalive_timeouts;
        to_closed(make_error(ETIMEDOUT, "connection to"));
        return;
    }
    ++_ka_probes;
    ++_tcp->mutable_stats().keepalive_probes;
    send_probe();
    _keepalive_timer.arm(now + interval);
}

// End of TIME-WAIT (2 MSL), or an orphan's FIN-WAIT-2 timeout: the connection leaves the table.
void tcp_connection::on_close_timer() {
    if (!_tcp) {
        return;
    }
    auto self = shared_from_this();
    if (_state == tcp_state::time_wait || _state == tcp_state::fin_wait_2) {
        to_closed(nullptr);
    }
}

}  // namespace reef::net
