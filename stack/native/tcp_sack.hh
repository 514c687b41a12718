// Selective acknowledgment, both directions:
//  - tcp_reassembly: the receiver's out-of-order queue and the SACK blocks it reports
//    (RFC 2018 4: the first block holds the most recently received segment, the others follow by
//    recency);
//  - tcp_scoreboard: the sender's record of every segment in flight, marked SACKed, lost or
//    retransmitted, from which RFC 6675's pipe, IsLost and NextSeg are computed. Without SACK the
//    same scoreboard serves NewReno: duplicate ACKs count as "sacked" bytes (as Linux's Reno does)
//    so one in-flight estimate drives both.
//
// Single-shard, owned by one connection. Memory grows with the window, not with traffic.
#pragma once

#include "stack/native/tcp_header.hh"
#include "stack/native/tcp_options.hh"
#include "stack/net/packet.hh"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace reef::net {

class tcp_reassembly {
    struct entry {
        tcp_seq seq;
        packet data;          // payload only
        std::uint64_t stamp;  // arrival order, for SACK block recency
        tcp_seq end() const noexcept { return seq + std::int64_t(data.len()); }
    };
    std::vector<entry> _q;  // sorted by seq, non-overlapping
    std::size_t _bytes = 0;
    std::uint64_t _stamp = 0;
    bool _have_fin = false;
    tcp_seq _fin_seq;

public:
    /// Queue `data` starting at `seq` (> rcv_nxt, within the window). Overlaps with queued data
    /// are trimmed off the new segment (first copy wins, RFC 9293 3.10.7.4 allows either).
    void insert(tcp_seq seq, packet data);
    /// Remember an out-of-order FIN at `seq`.
    void insert_fin(tcp_seq seq) noexcept {
        _have_fin = true;
        _fin_seq = seq;
    }
    /// Take the data that became in order at rcv_nxt (moving rcv_nxt past it); stale bytes below
    /// rcv_nxt are dropped. Returns the packets in order. Sets `fin` if a queued FIN is now in order.
    std::vector<packet> pop_in_order(tcp_seq& rcv_nxt, bool& fin);
    /// Up to `max` SACK blocks, most recent first (RFC 2018 4).
    std::size_t sack_blocks(tcp_sack_block* out, std::size_t max) const;
    std::size_t bytes() const noexcept { return _bytes; }
    bool empty() const noexcept { return _q.empty() && !_have_fin; }
    void clear() noexcept {
        _q.clear();
        _bytes = 0;
        _have_fin = false;
    }
};

/// One segment in flight.
struct tcp_tx_segment {
    tcp_seq seq;
    std::uint32_t len = 0;  ///< sequence space: payload, plus 1 for a FIN
    bool fin = false;
    bool sacked = false;
    bool lost = false;
    bool retransmitted = false;       ///< retransmitted and not SACKed since (RFC 6675 "retransmitted")
    bool ever_retransmitted = false;  ///< Karn: no RTT sample from it
    std::uint32_t tsval = 0;          ///< timestamp value of its last transmission
    std::chrono::steady_clock::time_point sent_at;
    tcp_seq end() const noexcept { return seq + std::int64_t(len); }
};

class tcp_scoreboard {
    std::deque<tcp_tx_segment> _segs;
    std::uint64_t _outstanding = 0;  // sequence bytes in _segs
    std::uint64_t _sacked = 0;       // of which SACKed (or counted by Reno duplicate ACKs)
    std::uint64_t _lost = 0;         // of which marked lost and not SACKed
    std::uint64_t _retrans = 0;      // of which retransmitted, neither SACKed nor acked
    std::uint64_t _reno_dup = 0;     // NewReno: bytes of duplicate ACKs counted as "sacked"
    tcp_seq _high_sacked;            // RFC 6675 HighACK... the highest SACKed sequence
    bool _any_sacked = false;
    std::size_t _retrans_hint = 0;  // no lost, unretransmitted segment before this index

public:
    struct ack_result {
        std::uint64_t acked_bytes = 0;  ///< sequence bytes newly acknowledged
        bool acked_retransmitted = false;
        bool fin_acked = false;
        /// Send time and tsval of the newest segment fully acked that was never retransmitted
        /// (Karn's algorithm, RFC 6298 3) nor SACKed before (it arrived then, not now), for RTT
        /// sampling.
        std::optional<std::chrono::steady_clock::time_point> rtt_sample_from;
    };

    bool empty() const noexcept { return _segs.empty(); }
    std::size_t size() const noexcept { return _segs.size(); }
    std::uint64_t outstanding() const noexcept { return _outstanding; }
    std::uint64_t sacked_bytes() const noexcept { return _sacked + _reno_dup; }
    std::uint64_t lost_bytes() const noexcept { return _lost; }
    /// RFC 6675 pipe (and Linux's packets_in_flight): bytes believed to be in the network.
    std::uint64_t pipe() const noexcept {
        std::uint64_t left = std::min(_outstanding, _sacked + _reno_dup + _lost);
        return _outstanding - left + _retrans;
    }
    const tcp_tx_segment& front() const noexcept { return _segs.front(); }
    tcp_tx_segment& at(std::size_t i) noexcept { return _segs[i]; }

    /// A new segment went out at the end of the sequence space.
    void sent(tcp_seq seq, std::uint32_t len, bool fin, std::uint32_t tsval, std::chrono::steady_clock::time_point now);
    /// Cumulative acknowledgment up to `una`.
    ack_result ack(tcp_seq una);
    /// RFC 2018 SACK blocks from the peer; `una` is SND.UNA after the cumulative ACK. Blocks below
    /// una or beyond the data sent are ignored (D-SACK and bogus blocks). Returns newly SACKed
    /// sequence bytes.
    std::uint64_t sack(const tcp_sack_block* blocks, std::size_t n, tcp_seq una, tcp_seq snd_nxt);
    /// RFC 6675 IsLost over the whole scoreboard: mark every unSACKed segment lost that has
    /// DupThresh SACKed segments, or more than (DupThresh - 1) * mss SACKed bytes, above it.
    /// Returns whether the first segment is lost.
    bool mark_lost_rfc6675(unsigned dupthresh, std::uint32_t mss);
    /// Mark the first segment lost (NewReno fast retransmit and partial ACKs, RFC 6582 3.2).
    void mark_head_lost();
    /// RTO (RFC 6298 5.4, RFC 6675 5.1): every segment not SACKed is lost; retransmission marks go.
    void mark_all_lost();
    /// NewReno: a duplicate ACK says a segment left the network (RFC 6582 cwnd inflation).
    void add_reno_dupack(std::uint32_t mss);
    void clear_reno_dupacks() noexcept { _reno_dup = 0; }
    /// The lowest lost segment not retransmitted yet (RFC 6675 NextSeg rule 1), or nullptr.
    tcp_tx_segment* next_lost();
    /// RFC 6675 NextSeg rule 3: the lowest segment that is neither SACKed nor retransmitted and
    /// lies below the highest SACKed sequence (the conditions of rule 1 without IsLost), or
    /// nullptr. Loss recovery sends it when rules 1 and 2 have nothing to send.
    tcp_tx_segment* next_unsacked_below_high_sack();
    /// Record that `s` went out again.
    void retransmitted(tcp_tx_segment& s, std::uint32_t tsval, std::chrono::steady_clock::time_point now);
    /// Split segments longer than `mss` payload bytes (the path MTU shrank) so that each can be
    /// retransmitted whole.
    void split_to(std::uint32_t mss);
    /// Highest SACKed sequence (valid if any_sacked()).
    tcp_seq high_sacked() const noexcept { return _high_sacked; }
    bool any_sacked() const noexcept { return _any_sacked; }
    /// Forget SACK information (RFC 2018 8: the receiver may renege; after an RTO).
    void clear_sacks() noexcept;
    void clear() noexcept;
};

}  // namespace reef::net
