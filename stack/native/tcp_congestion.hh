// Congestion control for native TCP: NewReno (RFC 5681 slow start and congestion avoidance, with
// RFC 6582's recovery driven by the connection) and CUBIC (RFC 9438). The connection decides when a
// congestion event happens (fast retransmit, RTO) and how recovery runs (RFC 6582 / RFC 6675);
// these classes decide how cwnd and ssthresh move.
//
// Units: bytes. Single-shard, owned by one connection; no allocation after construction.
#pragma once

#include "stack/native/tcp.hh"

#include <chrono>
#include <cstdint>
#include <memory>

namespace reef::net {

/// The window variables a congestion controller moves.
struct tcp_window_state {
    std::uint64_t cwnd = 0;
    std::uint64_t ssthresh = UINT64_MAX;  ///< "arbitrarily high" at start (RFC 5681 3.1)
    std::uint32_t mss = 536;
};

class tcp_congestion_control {
public:
    virtual ~tcp_congestion_control() = default;
    virtual tcp_congestion_algorithm algorithm() const noexcept = 0;
    /// `acked` new bytes were acknowledged outside loss recovery. `cwnd_limited`: the sender was
    /// using the whole window (RFC 7661: do not grow a window the application does not fill).
    virtual void on_ack(tcp_window_state& w, std::uint64_t acked, bool cwnd_limited,
                        std::chrono::steady_clock::time_point now, std::chrono::microseconds srtt) noexcept = 0;
    /// Loss detected by duplicate ACKs or SACK: set ssthresh and the cwnd to recover with.
    virtual void on_congestion_event(tcp_window_state& w, std::uint64_t flight,
                                     std::chrono::steady_clock::time_point now) noexcept = 0;
    /// The retransmission timer expired (first expiry of a back-off series): ssthresh as for a
    /// congestion event, cwnd = one segment (RFC 5681 3.1 eq. 4, RFC 9438 4.8).
    virtual void on_rto(tcp_window_state& w, std::uint64_t flight,
                        std::chrono::steady_clock::time_point now) noexcept = 0;
};

/// Slow start (RFC 5681 3.1): grow by the bytes an ACK acknowledges (RFC 3465 byte counting, no
/// per-ACK limit), up to ssthresh.
void tcp_slow_start(tcp_window_state& w, std::uint64_t acked) noexcept;

std::unique_ptr<tcp_congestion_control> make_tcp_congestion_control(tcp_congestion_algorithm a);

}  // namespace reef::net
