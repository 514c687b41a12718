// One native TCP connection (its TCB, RFC 9293 3.3.1) and one listener. Internal to stack/native:
// apps see connected_socket / server_socket. The methods are defined by concern:
//   tcp_connection.cc  state changes, opening, closing, aborting, the socket glue, tcp_listener
//   tcp_input.cc       segment arrival (RFC 9293 3.10.7)
//   tcp_output.cc      what to send and building segments
//   tcp_timers.cc      RTO, delayed ACK, persist, keepalive, TIME_WAIT / FIN_WAIT_2
//
// Lifetime: the owning `tcp` keeps a connection in its table from the first SYN until CLOSED (or
// the end of TIME_WAIT); the socket, its data source and sink hold references too. When the last
// of those handles goes the connection is an orphan: it closes gracefully (or resets, if unread
// data was left, RFC 9293 3.10.4 / RFC 2525 2.17) and leaves the table on its own.
#pragma once

#include "runtime/circular_buffer.hh"
#include "runtime/future.hh"
#include "runtime/shared_ptr.hh"
#include "runtime/temporary_buffer.hh"
#include "runtime/timer.hh"
#include "stack/native/tcp.hh"
#include "stack/native/tcp_congestion.hh"
#include "stack/native/tcp_header.hh"
#include "stack/native/tcp_options.hh"
#include "stack/native/tcp_sack.hh"

#include <chrono>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <unordered_set>

namespace reef::net {

enum class tcp_state : std::uint8_t {
    closed,
    syn_sent,
    syn_received,
    established,
    fin_wait_1,
    fin_wait_2,
    close_wait,
    closing,
    last_ack,
    time_wait,
};

const char* tcp_state_name(tcp_state s) noexcept;

/// Every state a connection can be in, in RFC 9293 order (LISTEN belongs to listeners).
inline constexpr tcp_state tcp_connection_states[] = {
    tcp_state::syn_sent,   tcp_state::syn_received, tcp_state::established, tcp_state::fin_wait_1,
    tcp_state::fin_wait_2, tcp_state::close_wait,   tcp_state::closing,     tcp_state::last_ack,
    tcp_state::time_wait,  tcp_state::closed,
};

/// RFC 7323 2.2: the smallest window shift that lets the window cover a receive buffer of `buf`.
std::uint8_t tcp_wscale_for(std::size_t buf) noexcept;

/// A received segment, header decoded, payload separated.
struct tcp_segment {
    tcp_header h;
    tcp_options opts;
    packet payload;
    std::uint32_t len() const noexcept { return std::uint32_t(payload.len()); }
    /// SEG.LEN of RFC 9293: payload plus SYN and FIN.
    std::uint32_t seg_len() const noexcept {
        return len() + (h.has(tcp_flag::syn) ? 1 : 0) + (h.has(tcp_flag::fin) ? 1 : 0);
    }
};

class tcp_listener;

class tcp_connection : public enable_lw_shared_from_this<tcp_connection> {
public:
    using clock = std::chrono::steady_clock;
    using four_tuple = tcp::four_tuple;

    tcp_connection(tcp& stack, const four_tuple& t, const tcp_socket_options& o);
    ~tcp_connection();
    tcp_connection(const tcp_connection&) = delete;
    tcp_connection& operator=(const tcp_connection&) = delete;

    // ---- opening (tcp_connection.cc)
    /// Active open (RFC 9293 3.10.1): send SYN; the future resolves in ESTABLISHED.
    future<> connect();
    /// Passive open from a listener's SYN: SYN_RECEIVED, SYN-ACK sent.
    void accept_syn(tcp_listener& l, const tcp_segment& syn);
    /// Passive open completed by a valid SYN cookie: ESTABLISHED at once.
    void accept_cookie(tcp_listener& l, tcp_seq iss, tcp_seq irs, std::uint16_t mss, const tcp_segment& ack,
                       std::optional<std::uint8_t> snd_wscale, bool sack, bool timestamps);

    // ---- from the stack
    /// A segment for this connection (RFC 9293 3.10.7.3 in SYN_SENT, 3.10.7.4 otherwise).
    void input(tcp_segment seg);
    void icmp(const tcp_icmp_error& e);
    /// The stack is going away: fail everything, cancel timers, forget the stack.
    void detach() noexcept;

    // ---- socket side (tcp_connection.cc)
    future<temporary_buffer<char>> read();
    future<> write(temporary_buffer<char> buf);
    /// CLOSE for sending (RFC 9293 3.10.4): FIN after the queued data.
    void close_output();
    void shutdown_input() noexcept;
    future<> wait_input_shutdown();
    /// ABORT (RFC 9293 3.10.5).
    void abort();
    void add_handle() noexcept {
        ++_handles;
        _had_handle = true;
    }
    void release_handle() noexcept;
    void set_nodelay(bool on);
    bool nodelay() const noexcept { return _nodelay; }
    void set_keepalive(bool on);
    bool keepalive() const noexcept { return _keepalive; }
    void set_keepalive_parameters(const tcp_keepalive_params& p);
    const tcp_keepalive_params& keepalive_parameters() const noexcept { return _ka_params; }
    void set_congestion(tcp_congestion_algorithm a);
    tcp_info info() const;

    const four_tuple& tuple() const noexcept { return _t; }
    tcp_state state() const noexcept { return _state; }
    socket_address local_address() const noexcept;
    socket_address remote_address() const noexcept;
    bool orphan() const noexcept { return _handles == 0 && _had_handle; }
    tcp_listener* listener() const noexcept { return _listener; }
    void listener_gone() noexcept { _listener = nullptr; }
    /// In TIME_WAIT, may a new SYN reuse the tuple (RFC 9293 3.10.7.4 note, RFC 6191)?
    bool time_wait_accepts_syn(const tcp_segment& syn) const noexcept;

private:
    // ---- tcp_connection.cc: state changes
    void set_state(tcp_state s) noexcept;
    void enter_established();
    void enter_time_wait();
    /// Leave the table, stop timers, fail pending operations with `err` (none: clean close).
    void to_closed(std::exception_ptr err);
    std::exception_ptr make_error(int err, const char* what) const;
    void wake_reader() noexcept;
    void wake_writer() noexcept;
    void deliver(packet p);
    void negotiate(const tcp_options& peer);
    std::uint32_t effective_mss() const noexcept;
    void orphaned();

    // ---- tcp_input.cc
    void syn_sent_input(tcp_segment& seg);
    bool paws_reject(const tcp_segment& seg) noexcept;
    bool acceptable(const tcp_segment& seg) const noexcept;
    void rst_input(const tcp_segment& seg);
    void challenge_ack();
    bool ack_input(tcp_segment& seg);
    void update_send_window(const tcp_segment& seg) noexcept;
    void new_data_acked(const tcp_segment& seg, const tcp_scoreboard::ack_result& r, std::uint64_t flight_before);
    void duplicate_ack(const tcp_segment& seg, bool sack_news);
    void enter_recovery(bool sack);
    void rtt_sample(std::chrono::microseconds r) noexcept;
    void data_input(tcp_segment& seg);
    void fin_input();
    void update_ts_recent(const tcp_segment& seg) noexcept;

    // ---- tcp_output.cc
public:
    /// Send what the windows, Nagle and the state allow (RFC 9293 3.8.6, RFC 6675 5 NextSeg).
    void output();

private:
    void send_ack();
    void send_syn();
    void send_rst_now();
    void send_probe();
    void send_data(tcp_seq seq, std::uint32_t len, bool fin, bool retransmission);
    void send_segment(tcp_seq seq, std::uint8_t flags, packet payload, bool syn_options);
    packet payload_for(tcp_seq seq, std::uint32_t len);
    std::uint32_t advertised_window(bool syn) noexcept;
    std::size_t receive_space() const noexcept;
    std::uint64_t unsent_bytes() const noexcept;
    bool can_send_data() const noexcept;
    std::uint32_t ts_val() const noexcept;
    void window_update_if_needed();

    // ---- tcp_timers.cc
    void arm_rto();
    void restart_rto();
    void on_rto();
    std::chrono::microseconds backed_off_rto() const noexcept;
    void schedule_ack();
    void on_delayed_ack();
    void arm_persist();
    void on_persist();
    void arm_keepalive();
    void on_keepalive();
    void on_close_timer();

    // ---- identity
    tcp* _tcp;
    four_tuple _t;
    tcp_state _state = tcp_state::closed;
    tcp_listener* _listener = nullptr;
    unsigned _handles = 0;
    bool _had_handle = false;

    // ---- send sequence space (RFC 9293 3.3.1)
    tcp_seq _iss, _snd_una, _snd_nxt, _snd_wl1, _snd_wl2;
    std::uint32_t _snd_wnd = 0;  // scaled
    std::uint32_t _max_snd_wnd = 0;
    std::uint8_t _snd_wscale = 0;  // the peer's shift
    std::uint8_t _rcv_wscale = 0;  // ours
    bool _wscale_ok = false, _sack_ok = false, _ts_ok = false;
    std::uint32_t _peer_mss = 536;  // RFC 9293 3.7.1 default
    std::uint32_t _path_mss = 1460;
    std::uint32_t _ts_offset = 0;

    // send buffer: bytes from _snd_buf_seq on (unacknowledged, then unsent)
    std::deque<temporary_buffer<char>> _snd_buf;
    std::uint64_t _snd_buffered = 0;
    tcp_seq _snd_buf_seq;
    std::size_t _snd_buf_limit;
    std::size_t _snd_cursor_idx = 0;    // cached lookup: buffer index ...
    std::uint64_t _snd_cursor_off = 0;  // ... and the byte offset where it starts
    bool _fin_queued = false;
    bool _fin_sent = false;
    bool _tx_waiting = false;  // in tcp::_tx_waiters: output() stopped on tx_room()
    std::optional<promise<>> _write_waiter;
    tcp_scoreboard _sb;

    // ---- congestion and recovery
    tcp_window_state _w;
    std::unique_ptr<tcp_congestion_control> _cc;
    bool _in_recovery = false;
    bool _sack_recovery = false;
    tcp_seq _recover;  // RFC 6582 / RFC 6675 RecoveryPoint
    unsigned _dupacks = 0;
    std::uint64_t _max_in_flight = 0;
    bool _cwnd_limited = false;

    // ---- RTT / RTO (RFC 6298)
    bool _have_rtt = false;
    std::chrono::microseconds _srtt{0}, _rttvar{0}, _rto;
    unsigned _backoff = 0;  // consecutive expirations
    timer<clock> _rto_timer;

    // ---- receive sequence space
    tcp_seq _irs, _rcv_nxt;
    tcp_seq _rcv_adv;  // right edge advertised
    std::size_t _rcv_buf_limit;
    std::deque<temporary_buffer<char>> _rcv_buf;
    std::size_t _rcv_buffered = 0;
    tcp_reassembly _ooo;
    bool _fin_received = false;
    bool _input_shut = false;
    std::optional<promise<>> _read_waiter;
    std::vector<promise<>> _input_shutdown_waiters;
    std::uint32_t _ts_recent = 0;  // RFC 7323 TS.Recent
    clock::time_point _ts_recent_at;
    tcp_seq _last_ack_sent;

    // ---- ACK scheduling
    bool _ack_now = false;
    bool _ack_deferred = false;  // send_ack() met a full device: tcp::tx_ready() sends it
    bool _ack_owed = false;      // in tcp::_acks_owed: an ACK goes out at the round's end
    unsigned _unacked_segs = 0;
    timer<clock> _delack_timer;

    // ---- persist, keepalive, TIME_WAIT
    timer<clock> _persist_timer;
    unsigned _persist_probes = 0;
    timer<clock> _keepalive_timer;
    bool _keepalive = false;
    tcp_keepalive_params _ka_params;
    unsigned _ka_probes = 0;
    clock::time_point _last_received;
    timer<clock> _close_timer;  // TIME_WAIT 2MSL, orphan FIN_WAIT_2 timeout

    // ---- options
    bool _nodelay;
    std::exception_ptr _error;  // the error that closed the connection
    int _soft_error = 0;        // RFC 1122 4.2.3.9: ICMP soft errors reported on timeout
    std::optional<promise<>> _connect_waiter;
    bool _force_retransmit = false;  // send the first lost segment whatever cwnd says (RFC 6675 5 (4.3), RFC 6582 3.2)
    clock::time_point _syn_sent_at;
    bool _syn_retransmitted = false;

    // ---- counters
    std::uint64_t _retransmits = 0, _rto_expirations = 0, _bytes_acked = 0, _bytes_received = 0, _probes = 0;

    friend class tcp_listener;
    friend class tcp;
};

/// A listening socket of one shard.
class tcp_listener final : public server_socket_impl {
public:
    tcp_listener(tcp& stack, tcp_ipv4 addr, std::uint16_t port, const listen_options& lo, const tcp_socket_options& o);
    ~tcp_listener() override;

    future<accept_result> accept() override;
    void abort_accept() override;
    socket_address local_address() const noexcept override;

    /// A connection of this listener reached ESTABLISHED: queue it for accept() (or reset it when
    /// the queue is full).
    void established(lw_shared_ptr<tcp_connection> c);
    /// A half-open connection went away (reset, timed out).
    void half_open_gone(tcp_connection* c) noexcept;
    void half_open_added(tcp_connection* c) { _half_open.insert(c); }
    std::size_t half_open() const noexcept { return _half_open.size(); }
    bool accept_queue_full() const noexcept { return _accept_q.size() >= _backlog; }
    bool syn_backlog_full() const noexcept { return _half_open.size() >= _backlog; }
    const tcp_socket_options& socket_options() const noexcept { return _opts; }
    tcp_ipv4 addr() const noexcept { return _addr; }
    std::uint16_t port() const noexcept { return _port; }
    void detach() noexcept;

private:
    tcp* _tcp;
    tcp_ipv4 _addr;
    std::uint16_t _port;
    std::size_t _backlog;
    tcp_socket_options _opts;
    std::deque<lw_shared_ptr<tcp_connection>> _accept_q;
    std::unordered_set<tcp_connection*> _half_open;
    std::optional<promise<accept_result>> _waiter;
    bool _aborted = false;
};

/// Wrap a connection whose handshake completed into an api.hh socket.
connected_socket make_tcp_socket(lw_shared_ptr<tcp_connection> c);

}  // namespace reef::net
