// Out-of-order queue with SACK block generation (RFC 2018) and the sender's scoreboard (RFC 6675).
#include "stack/native/tcp_sack.hh"

#include <algorithm>

namespace reef::net {

// ------------------------------------------------------------------------------------------------
// tcp_reassembly

void tcp_reassembly::insert(tcp_seq seq, packet data) {
    tcp_seq s = seq;
    tcp_seq e = seq + std::int64_t(data.len());
    std::uint64_t stamp = ++_stamp;
    // First entry that ends after s.
    auto i = std::size_t(std::partition_point(_q.begin(), _q.end(), [s](const entry& x) { return x.end() <= s; }) -
                         _q.begin());
    while (s < e) {
        if (i < _q.size() && _q[i].seq <= s) {
            // s lies inside a queued entry: the queued copy wins.
            _q[i].stamp = stamp;
            s = _q[i].end();
            ++i;
            continue;
        }
        tcp_seq gap_end = i < _q.size() ? seq_min(_q[i].seq, e) : e;
        auto off = std::size_t(s - seq);
        auto len = std::size_t(gap_end - s);
        packet piece = (off == 0 && len == data.len()) ? std::move(data) : data.share(off, len);
        _q.insert(_q.begin() + std::ptrdiff_t(i), entry{s, std::move(piece), stamp});
        _bytes += len;
        ++i;
        s = gap_end;
    }
}

std::vector<packet> tcp_reassembly::pop_in_order(tcp_seq& rcv_nxt, bool& fin) {
    std::vector<packet> out;
    fin = false;
    std::size_t n = 0;
    while (n < _q.size() && _q[n].seq <= rcv_nxt) {
        entry& x = _q[n];
        _bytes -= x.data.len();
        tcp_seq end = x.end();
        if (end > rcv_nxt) {
            auto skip = std::size_t(rcv_nxt - x.seq);
            if (skip) {
                x.data.trim_front(skip);
            }
            rcv_nxt = end;
            out.push_back(std::move(x.data));
        }
        ++n;
    }
    _q.erase(_q.begin(), _q.begin() + std::ptrdiff_t(n));
    if (_have_fin && _fin_seq == rcv_nxt && _q.empty()) {
        fin = true;
        _have_fin = false;
    }
    return out;
}

std::size_t tcp_reassembly::sack_blocks(tcp_sack_block* out, std::size_t max) const {
    struct range {
        tcp_sack_block b;
        std::uint64_t stamp;
    };
    std::vector<range> ranges;
    for (auto& x : _q) {
        if (!ranges.empty() && ranges.back().b.right == x.seq) {
            ranges.back().b.right = x.end();
            ranges.back().stamp = std::max(ranges.back().stamp, x.stamp);
        } else {
            ranges.push_back(range{{x.seq, x.end()}, x.stamp});
        }
    }
    std::size_t n = std::min(max, ranges.size());
    std::partial_sort(ranges.begin(), ranges.begin() + std::ptrdiff_t(n), ranges.end(),
                      [](const range& a, const range& b) { return a.stamp > b.stamp; });
    for (std::size_t i = 0; i < n; ++i) {
        out[i] = ranges[i].b;
    }
    return n;
}

// ------------------------------------------------------------------------------------------------
// tcp_scoreboard

void tcp_scoreboard::sent(tcp_seq seq, std::uint32_t len, bool fin, std::uint32_t tsval,
                          std::chrono::steady_clock::time_point now) {
    tcp_tx_segment s;
    s.seq = seq;
    s.len = len;
    s.fin = fin;
    s.tsval = tsval;
    s.sent_at = now;
    _segs.push_back(s);
    _outstanding += len;
}

tcp_scoreboard::ack_result tcp_scoreboard::ack(tcp_seq una) {
    ack_result r;
    while (!_segs.empty() && _segs.front().end() <= una) {
        auto& s = _segs.front();
        r.acked_bytes += s.len;
        _outstanding -= s.len;
        if (s.sacked) {
            _sacked -= s.len;
        }
        if (s.lost) {
            _lost -= s.len;
        }
        if (s.retransmitted) {
            _retrans -= s.len;
        }
        if (s.ever_retransmitted) {
            r.acked_retransmitted = true;
        } else if (!s.sacked) {
            // A segment SACKed earlier arrived then, not now: timing it from this cumulative ACK
            // would add the whole recovery (an RTO, say) to the RTT, inflate the RTO, and make
            // the next recovery slower still (Linux likewise skips SACKed segments here).
            r.rtt_sample_from = s.sent_at;
        }
        r.fin_acked |= s.fin;
        _segs.pop_front();
        if (_retrans_hint) {
            --_retrans_hint;
        }
    }
    if (!_segs.empty() && _segs.front().seq < una) {
        // A partial acknowledgment of one segment (the peer's MSS or a repacketizing middlebox).
        auto& s = _segs.front();
        auto d = std::uint32_t(una - s.seq);
        s.seq = una;
        s.len -= d;
        _outstanding -= d;
        r.acked_bytes += d;
        if (s.sacked) {
            _sacked -= d;
        }
        if (s.lost) {
            _lost -= d;
        }
        if (s.retransmitted) {
            _retrans -= d;
        }
    }
    _reno_dup = r.acked_bytes >= _reno_dup ? 0 : _reno_dup - r.acked_bytes;
    if (_any_sacked && _high_sacked <= una) {
        _any_sacked = false;
    }
    return r;
}

std::uint64_t tcp_scoreboard::sack(const tcp_sack_block* blocks, std::size_t n, tcp_seq una, tcp_seq snd_nxt) {
    std::uint64_t newly = 0;
    for (std::size_t b = 0; b < n; ++b) {
        tcp_seq left = blocks[b].left;
        tcp_seq right = blocks[b].right;
        // RFC 2018 4 / RFC 6675: blocks must lie within (SND.UNA, SND.NXT]; others (D-SACK, bogus)
        // carry nothing we use.
        if (!(left < right) || right <= una || right > snd_nxt || left < una) {
            continue;
        }
        auto it =
            std::partition_point(_segs.begin(), _segs.end(), [left](const tcp_tx_segment& s) { return s.seq < left; });
        for (; it != _segs.end() && it->end() <= right; ++it) {
            auto& s = *it;
            if (s.sacked) {
                continue;
            }
            s.sacked = true;
            _sacked += s.len;
            newly += s.len;
            if (s.lost) {
                s.lost = false;
                _lost -= s.len;
            }
            if (s.retransmitted) {
                s.retransmitted = false;
                _retrans -= s.len;
            }
            if (!_any_sacked || s.end() > _high_sacked) {
                _high_sacked = s.end();
                _any_sacked = true;
            }
        }
    }
    return newly;
}

bool tcp_scoreboard::mark_lost_rfc6675(unsigned dupthresh, std::uint32_t mss) {
    std::uint64_t sacked_segs = 0;
    std::uint64_t sacked_bytes = 0;
    std::uint64_t byte_limit = std::uint64_t(dupthresh - 1) * mss;
    for (std::size_t i = _segs.size(); i-- > 0;) {
        auto& s = _segs[i];
        if (s.sacked) {
            ++sacked_segs;
            sacked_bytes += s.len;
            continue;
        }
        if (sacked_segs >= dupthresh || sacked_bytes > byte_limit) {
            if (!s.lost) {
                s.lost = true;
                _lost += s.len;
                _retrans_hint = std::min(_retrans_hint, i);
            }
        }
    }
    return !_segs.empty() && _segs.front().lost;
}

void tcp_scoreboard::mark_head_lost() {
    if (_segs.empty()) {
        return;
    }
    auto& s = _segs.front();
    if (!s.lost && !s.sacked) {
        s.lost = true;
        _lost += s.len;
    }
    if (s.retransmitted) {
        // NewReno retransmits the head again on each partial ACK (RFC 6582 3.2 step 3).
        s.retransmitted = false;
        _retrans -= s.len;
    }
    _retrans_hint = 0;
}

void tcp_scoreboard::mark_all_lost() {
    _lost = 0;
    _retrans = 0;
    _reno_dup = 0;
    for (auto& s : _segs) {
        s.retransmitted = false;
        s.lost = !s.sacked;
        if (s.lost) {
            _lost += s.len;
        }
    }
    _retrans_hint = 0;
}

void tcp_scoreboard::add_reno_dupack(std::uint32_t mss) {
    _reno_dup = std::min<std::uint64_t>(_reno_dup + mss, _outstanding);
}

tcp_tx_segment* tcp_scoreboard::next_lost() {
    for (std::size_t i = _retrans_hint; i < _segs.size(); ++i) {
        auto& s = _segs[i];
        if (s.lost && !s.retransmitted && !s.sacked) {
            _retrans_hint = i;
            return &s;
        }
    }
    _retrans_hint = _segs.size();
    return nullptr;
}

tcp_tx_segment* tcp_scoreboard::next_unsacked_below_high_sack() {
    if (!_any_sacked) {
        return nullptr;
    }
    for (auto& s : _segs) {
        if (!(s.seq < _high_sacked)) {
            break;
        }
        if (!s.sacked && !s.retransmitted) {
            return &s;
        }
    }
    return nullptr;
}

void tcp_scoreboard::retransmitted(tcp_tx_segment& s, std::uint32_t tsval, std::chrono::steady_clock::time_point now) {
    if (!s.retransmitted) {
        s.retransmitted = true;
        _retrans += s.len;
    }
    s.ever_retransmitted = true;
    s.tsval = tsval;
    s.sent_at = now;
}

void tcp_scoreboard::split_to(std::uint32_t mss) {
    bool need = false;
    for (auto& s : _segs) {
        if (s.len - (s.fin ? 1 : 0) > mss) {
            need = true;
            break;
        }
    }
    if (!need) {
        return;
    }
    std::deque<tcp_tx_segment> out;
    for (auto& s : _segs) {
        std::uint32_t payload = s.len - (s.fin ? 1 : 0);
        tcp_seq seq = s.seq;
        while (payload > mss) {
            tcp_tx_segment piece = s;
            piece.seq = seq;
            piece.len = mss;
            piece.fin = false;
            out.push_back(piece);
            seq += mss;
            payload -= mss;
        }
        tcp_tx_segment last = s;
        last.seq = seq;
        last.len = payload + (s.fin ? 1 : 0);
        out.push_back(last);
    }
    _segs = std::move(out);
    _retrans_hint = 0;
}

void tcp_scoreboard::clear_sacks() noexcept {
    for (auto& s : _segs) {
        s.sacked = false;
    }
    _sacked = 0;
    _any_sacked = false;
}

void tcp_scoreboard::clear() noexcept {
    _segs.clear();
    _outstanding = _sacked = _lost = _retrans = _reno_dup = 0;
    _any_sacked = false;
    _retrans_hint = 0;
}

}  // namespace reef::net
