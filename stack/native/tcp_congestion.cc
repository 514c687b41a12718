// NewReno and CUBIC window arithmetic; see tcp_congestion.hh.
#include "stack/native/tcp_congestion.hh"

#include <algorithm>
#include <cmath>

namespace reef::net {

// RFC 3465 byte counting without its per-ACK limit L, as Linux's tcp_slow_start: receivers that
// acknowledge a receive burst at once (GRO, Reef's own tcp::owe_ack) cover many segments with one
// ACK, and L = 1 or 2 SMSS would turn slow start nearly linear for them. The window stops at
// ssthresh; congestion avoidance takes it from there.
void tcp_slow_start(tcp_window_state& w, std::uint64_t acked) noexcept {
    w.cwnd = std::min(w.cwnd + acked, std::max(w.cwnd, w.ssthresh));
}

namespace {

// RFC 5681 3.1 eq. (4): ssthresh = max(FlightSize / 2, 2 * SMSS).
std::uint64_t half_flight(const tcp_window_state& w, std::uint64_t flight) noexcept {
    return std::max<std::uint64_t>(flight / 2, 2 * std::uint64_t(w.mss));
}

class newreno final : public tcp_congestion_control {
    std::uint64_t _acked_in_ca = 0;  // bytes acked since cwnd last grew in congestion avoidance

public:
    tcp_congestion_algorithm algorithm() const noexcept override { return tcp_congestion_algorithm::newreno; }

    void on_ack(tcp_window_state& w, std::uint64_t acked, bool cwnd_limited, std::chrono::steady_clock::time_point,
                std::chrono::microseconds) noexcept override {
        if (!cwnd_limited) {
            return;
        }
        if (w.cwnd < w.ssthresh) {
            tcp_slow_start(w, acked);
            return;
        }
        // RFC 5681 3.1 congestion avoidance, byte counting (RFC 3465): one SMSS per cwnd acked.
        _acked_in_ca += acked;
        if (_acked_in_ca >= w.cwnd) {
            _acked_in_ca -= w.cwnd;
            w.cwnd += w.mss;
        }
    }

    void on_congestion_event(tcp_window_state& w, std::uint64_t flight,
                             std::chrono::steady_clock::time_point) noexcept override {
        w.ssthresh = half_flight(w, flight);
        w.cwnd = w.ssthresh;
        _acked_in_ca = 0;
    }

    void on_rto(tcp_window_state& w, std::uint64_t flight, std::chrono::steady_clock::time_point) noexcept override {
        w.ssthresh = half_flight(w, flight);
        w.cwnd = w.mss;
        _acked_in_ca = 0;
    }
};

// RFC 9438. Windows in segments (floating point) for the cubic function, bytes outside.
class cubic final : public tcp_congestion_control {
    static constexpr double beta = 0.7;                                 // RFC 9438 4.6 beta_cubic
    static constexpr double c = 0.4;                                    // RFC 9438 5 C
    static constexpr double alpha = 3.0 * (1.0 - beta) / (1.0 + beta);  // RFC 9438 4.3 alpha_cubic

    double _w_max = 0;       // segments, window before the last reduction
    double _w_last_max = 0;  // for fast convergence (RFC 9438 4.7)
    double _k = 0;           // seconds
    double _w_est = 0;       // Reno-friendly estimate (RFC 9438 4.3), segments
    double _cwnd_epoch = 0;  // cwnd at epoch start, segments
    bool _epoch_started = false;
    std::chrono::steady_clock::time_point _epoch_start;

public:
    tcp_congestion_algorithm algorithm() const noexcept override { return tcp_congestion_algorithm::cubic; }

    void on_ack(tcp_window_state& w, std::uint64_t acked, bool cwnd_limited, std::chrono::steady_clock::time_point now,
                std::chrono::microseconds srtt) noexcept override {
        if (!cwnd_limited) {
            return;
        }
        if (w.cwnd < w.ssthresh) {
            tcp_slow_start(w, acked);
            return;
        }
        double mss = w.mss;
        double cwnd = double(w.cwnd) / mss;
        if (!_epoch_started) {
            // RFC 9438 4.2: a congestion-avoidance epoch starts at its first ACK.
            _epoch_started = true;
            _epoch_start = now;
            _cwnd_epoch = cwnd;
            _w_est = cwnd;
            if (_w_max < cwnd) {
                // No reduction before (or the window grew past it): start on the plateau.
                _w_max = cwnd;
                _k = 0;
            } else {
                _k = std::cbrt((_w_max - _cwnd_epoch) / c);  // RFC 9438 eq. 2
            }
        }
        double t = std::chrono::duration<double>(now - _epoch_start).count();
        double rtt = std::chrono::duration<double>(srtt).count();
        // RFC 9438 4.2: target = W_cubic(t + RTT), kept within [cwnd, 1.5 cwnd].
        double tt = t + rtt - _k;
        double target = c * tt * tt * tt + _w_max;
        target = std::clamp(target, cwnd, 1.5 * cwnd);
        double segs_acked = double(acked) / mss;
        // RFC 9438 4.3: the Reno-friendly region.
        _w_est += alpha * segs_acked / cwnd;
        double w_cubic = c * (t - _k) * (t - _k) * (t - _k) + _w_max;
        double next;
        if (w_cubic < _w_est) {
            next = std::max(cwnd, _w_est);
        } else {
            // RFC 9438 4.4/4.5: cwnd grows by (target - cwnd) / cwnd per acked segment.
            next = cwnd + (target - cwnd) / cwnd * segs_acked;
        }
        auto bytes = std::uint64_t(next * mss);
        w.cwnd = std::max(w.cwnd, bytes);
    }

    void on_congestion_event(tcp_window_state& w, std::uint64_t flight,
                             std::chrono::steady_clock::time_point) noexcept override {
        reduce(w, flight);
        w.cwnd = w.ssthresh;
    }

    void on_rto(tcp_window_state& w, std::uint64_t flight, std::chrono::steady_clock::time_point) noexcept override {
        reduce(w, flight);
        w.cwnd = w.mss;
    }

private:
    void reduce(tcp_window_state& w, std::uint64_t flight) noexcept {
        double mss = w.mss;
        double cwnd = double(std::max<std::uint64_t>(w.cwnd, flight)) / mss;
        // RFC 9438 4.7 fast convergence.
        if (cwnd < _w_last_max) {
            _w_last_max = cwnd;
            _w_max = cwnd * (1.0 + beta) / 2.0;
        } else {
            _w_last_max = cwnd;
            _w_max = cwnd;
        }
        // RFC 9438 4.6: ssthresh = flight_size * beta_cubic, at least 2 segments.
        auto reduced = std::uint64_t(double(std::max<std::uint64_t>(flight, w.mss)) * beta);
        w.ssthresh = std::max<std::uint64_t>(reduced, 2 * std::uint64_t(w.mss));
        _epoch_started = false;
    }
};

}  // namespace

std::unique_ptr<tcp_congestion_control> make_tcp_congestion_control(tcp_congestion_algorithm a) {
    if (a == tcp_congestion_algorithm::newreno) {
        return std::make_unique<newreno>();
    }
    return std::make_unique<cubic>();
}

}  // namespace reef::net
