// Connection life cycle (RFC 9293 3.3.2 state changes, 3.10.1 OPEN, 3.10.4 CLOSE, 3.10.5 ABORT),
// the socket glue (data_source / data_sink with back-pressure) and listeners.
#include "stack/native/tcp_connection.hh"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <system_error>

namespace reef::net {

const char* tcp_state_name(tcp_state s) noexcept {
    switch (s) {
    case tcp_state::closed: return "CLOSED";
    case tcp_state::syn_sent: return "SYN_SENT";
    case tcp_state::syn_received: return "SYN_RECEIVED";
    case tcp_state::established: return "ESTABLISHED";
    case tcp_state::fin_wait_1: return "FIN_WAIT_1";
    case tcp_state::fin_wait_2: return "FIN_WAIT_2";
    case tcp_state::close_wait: return "CLOSE_WAIT";
    case tcp_state::closing: return "CLOSING";
    case tcp_state::last_ack: return "LAST_ACK";
    case tcp_state::time_wait: return "TIME_WAIT";
    }
    return "?";
}

namespace {

socket_address make_sa(tcp_ipv4 a, std::uint16_t port) { return socket_address(inet_address::from_ipv4(a), port); }

}  // namespace

std::uint8_t tcp_wscale_for(std::size_t buf) noexcept {
    std::uint8_t s = 0;
    while (s < tcp_max_wscale && (std::size_t(65535) << s) < buf) {
        ++s;
    }
    return s;
}

tcp_connection::tcp_connection(tcp& stack, const four_tuple& t, const tcp_socket_options& o)
    : _tcp(&stack), _t(t), _snd_buf_limit(o.send_buffer_size ? o.send_buffer_size : stack.config().send_buffer_size),
      _cc(make_tcp_congestion_control(o.congestion.value_or(stack.config().congestion))),
      _rto(stack.config().rto_initial), _rto_timer([this] { on_rto(); }),
      _rcv_buf_limit(o.recv_buffer_size ? o.recv_buffer_size : stack.config().recv_buffer_size),
      _delack_timer([this] { on_delayed_ack(); }), _persist_timer([this] { on_persist(); }),
      _keepalive_timer([this] { on_keepalive(); }), _keepalive(stack.config().keepalive_by_default),
      _ka_params(stack.config().keepalive),
      _close_timer([this] { on_close_timer(); }), _nodelay(stack.config().nodelay) {
    _iss = stack.initial_sequence(t);
    _snd_una = _snd_nxt = _iss;
    _snd_buf_seq = _iss + 1;
    _recover = _iss;
    _path_mss = std::max<std::uint32_t>(stack.lower().mss_for(t.remote_addr), 64);
    _rcv_wscale = stack.config().window_scaling ? tcp_wscale_for(_rcv_buf_limit) : 0;
    _ts_offset = stack.ts_offset(t);
    _w.mss = std::min<std::uint32_t>(_path_mss, _peer_mss);
    _last_received = clock::now();
}

tcp_connection::~tcp_connection() {
    if (_listener) {
        _listener->half_open_gone(this);
    }
}

socket_address tcp_connection::local_address() const noexcept { return make_sa(_t.local_addr, _t.local_port); }
socket_address tcp_connection::remote_address() const noexcept { return make_sa(_t.remote_addr, _t.remote_port); }

std::exception_ptr tcp_connection::make_error(int err, const char* what) const {
    return std::make_exception_ptr(
        std::system_error(err, std::system_category(), fmt::format("{} {}", what, remote_address())));
}

void tcp_connection::set_state(tcp_state s) noexcept { _state = s; }

// RFC 9293 3.7.1: the send MSS is the peer's MSS option (536 without one), capped by the path, less
// the options every segment carries (RFC 6691: the timestamps option).
std::uint32_t tcp_connection::effective_mss() const noexcept {
    std::uint32_t m = std::min(_peer_mss, _path_mss);
    if (_ts_ok) {
        m -= 12;
    }
    return std::max<std::uint32_t>(m, 64);
}

// RFC 7323 2.2/3.2, RFC 2018 2: each option is used only if both SYNs carried it.
void tcp_connection::negotiate(const tcp_options& peer) {
    auto& cfg = _tcp->config();
    _peer_mss = peer.mss ? std::max<std::uint32_t>(*peer.mss, 64) : 536;
    _wscale_ok = cfg.window_scaling && peer.wscale.has_value();
    _snd_wscale = _wscale_ok ? *peer.wscale : 0;
    if (!_wscale_ok) {
        _rcv_wscale = 0;
    }
    _sack_ok = cfg.sack && peer.sack_permitted;
    _ts_ok = cfg.timestamps && peer.has_timestamps;
    if (_ts_ok) {
        _ts_recent = peer.tsval;
        _ts_recent_at = clock::now();
    }
    _w.mss = effective_mss();
    _w.cwnd = std::uint64_t(cfg.initial_window_segments) * _w.mss;
}

future<> tcp_connection::connect() {
    set_state(tcp_state::syn_sent);
    _snd_nxt = _iss + 1;
    ++_tcp->mutable_stats().active_opens;
    send_syn();
    arm_rto();
    _connect_waiter.emplace();
    return _connect_waiter->get_future();
}

void tcp_connection::accept_syn(tcp_listener& l, const tcp_segment& syn) {
    _listener = &l;
    l.half_open_added(this);
    _irs = syn.h.seq;
    _rcv_nxt = _irs + 1;
    _rcv_adv = _rcv_nxt;
    _last_ack_sent = _rcv_nxt;
    negotiate(syn.opts);
    // RFC 7323 2.2: the window of a SYN is never scaled.
    _snd_wnd = syn.h.window;
    _max_snd_wnd = _snd_wnd;
    _snd_wl1 = syn.h.seq;
    _snd_wl2 = _iss;
    set_state(tcp_state::syn_received);
    _snd_nxt = _iss + 1;
    ++_tcp->mutable_stats().passive_opens;
    send_syn();
    arm_rto();
}

void tcp_connection::accept_cookie(tcp_listener& l, tcp_seq iss, tcp_seq irs, std::uint16_t mss, const tcp_segment& ack,
                                   std::optional<std::uint8_t> snd_wscale, bool sack, bool timestamps) {
    auto& cfg = _tcp->config();
    _iss = iss;
    _snd_una = _snd_nxt = iss + 1;
    _snd_buf_seq = iss + 1;
    _recover = iss;
    _irs = irs;
    _rcv_nxt = irs + 1;
    _last_ack_sent = _rcv_nxt;
    _peer_mss = mss;
    _wscale_ok = cfg.window_scaling && snd_wscale.has_value();
    _snd_wscale = _wscale_ok ? *snd_wscale : 0;
    if (!_wscale_ok) {
        _rcv_wscale = 0;
    }
    _sack_ok = cfg.sack && sack;
    _ts_ok = cfg.timestamps && timestamps;
    if (_ts_ok) {
        _ts_recent = ack.opts.tsval;
        _ts_recent_at = clock::now();
    }
    _w.mss = effective_mss();
    _w.cwnd = std::uint64_t(cfg.initial_window_segments) * _w.mss;
    // The window we put in the cookie SYN-ACK (unscaled, at most 65535).
    _rcv_adv = _rcv_nxt + std::int64_t(std::min<std::size_t>(_rcv_buf_limit, 65535));
    _snd_wnd = std::uint32_t(ack.h.window) << _snd_wscale;
    _max_snd_wnd = _snd_wnd;
    _snd_wl1 = ack.h.seq;
    _snd_wl2 = ack.h.ack;
    _listener = &l;
    ++_tcp->mutable_stats().passive_opens;
    enter_established();
}

void tcp_connection::enter_established() {
    set_state(tcp_state::established);
    ++_tcp->mutable_stats().established;
    _backoff = 0;
    if (_listener) {
        auto* l = _listener;
        _listener = nullptr;
        l->half_open_gone(this);
        l->established(shared_from_this());
    }
    if (_connect_waiter) {
        auto w = std::move(*_connect_waiter);
        _connect_waiter.reset();
        w.set_value();
    }
    arm_keepalive();
}

void tcp_connection::enter_time_wait() {
    set_state(tcp_state::time_wait);
    _rto_timer.cancel();
    _persist_timer.cancel();
    _keepalive_timer.cancel();
    _delack_timer.cancel();
    _sb.clear();
    _snd_buf.clear();
    _snd_buffered = 0;
    _close_timer.arm(_tcp->config().time_wait);
    wake_writer();
}

void tcp_connection::to_closed(std::exception_ptr err) {
    if (_state == tcp_state::closed && !_tcp) {
        return;
    }
    auto self = shared_from_this();  // the table's reference may be the last
    bool was_closed = _state == tcp_state::closed;
    set_state(tcp_state::closed);
    _rto_timer.cancel();
    _delack_timer.cancel();
    _persist_timer.cancel();
    _keepalive_timer.cancel();
    _close_timer.cancel();
    _sb.clear();
    _snd_buf.clear();
    _snd_buffered = 0;
    _ooo.clear();
    if (err && !_error) {
        _error = err;
    }
    if (_listener) {
        auto* l = _listener;
        _listener = nullptr;
        l->half_open_gone(this);
    }
    if (!was_closed && _tcp) {
        _tcp->forget(_t, this);
    }
    if (_connect_waiter) {
        auto w = std::move(*_connect_waiter);
        _connect_waiter.reset();
        w.set_exception(_error ? _error : make_error(ECONNABORTED, "connect to"));
    }
    wake_reader();
    wake_writer();
    for (auto& w : _input_shutdown_waiters) {
        w.set_value();
    }
    _input_shutdown_waiters.clear();
}

void tcp_connection::detach() noexcept {
    auto self = shared_from_this();
    if (!_error) {
        _error = make_error(ECONNABORTED, "connection to");
    }
    set_state(tcp_state::closed);
    _rto_timer.cancel();
    _delack_timer.cancel();
    _persist_timer.cancel();
    _keepalive_timer.cancel();
    _close_timer.cancel();
    _listener = nullptr;
    if (_connect_waiter) {
        auto w = std::move(*_connect_waiter);
        _connect_waiter.reset();
        w.set_exception(_error);
    }
    wake_reader();
    wake_writer();
    for (auto& w : _input_shutdown_waiters) {
        w.set_value();
    }
    _input_shutdown_waiters.clear();
    _tcp = nullptr;
}

void tcp_connection::wake_reader() noexcept {
    if (_read_waiter) {
        auto w = std::move(*_read_waiter);
        _read_waiter.reset();
        w.set_value();
    }
}

void tcp_connection::wake_writer() noexcept {
    if (_write_waiter && (_error || _state == tcp_state::closed || _snd_buffered < _snd_buf_limit)) {
        auto w = std::move(*_write_waiter);
        _write_waiter.reset();
        if (_error) {
            w.set_exception(_error);
        } else if (_state == tcp_state::closed) {
            w.set_exception(make_error(EPIPE, "write to"));
        } else {
            w.set_value();
        }
    }
}

void tcp_connection::deliver(packet p) {
    _bytes_received += p.len();
    if (_input_shut || !p.len()) {
        return;  // shut down for reading: acknowledged and dropped
    }
    _rcv_buffered += p.len();
    if (p.nr_frags() == 1) {
        fragment f = p.frag(0);
        _rcv_buf.emplace_back(f.base, f.size, std::move(p).release());
    } else {
        for (auto& b : std::move(p).release_into_buffers()) {
            _rcv_buf.push_back(std::move(b));
        }
    }
    wake_reader();
}

// ------------------------------------------------------------------------------------------------
// Socket side

future<temporary_buffer<char>> tcp_connection::read() {
    if (!_rcv_buf.empty()) {
        auto b = std::move(_rcv_buf.front());
        _rcv_buf.pop_front();
        _rcv_buffered -= b.size();
        window_update_if_needed();
        return make_ready_future<temporary_buffer<char>>(std::move(b));
    }
    if (_error && !_input_shut) {
        return make_exception_future<temporary_buffer<char>>(_error);
    }
    if (_fin_received || _input_shut || _state == tcp_state::closed) {
        return make_ready_future<temporary_buffer<char>>();
    }
    _read_waiter.emplace();
    return _read_waiter->get_future().then([this] { return read(); });
}

future<> tcp_connection::write(temporary_buffer<char> buf) {
    if (_error) {
        return make_exception_future<>(_error);
    }
    if (_fin_queued || _state == tcp_state::closed) {
        return make_exception_future<>(make_error(EPIPE, "write to"));
    }
    if (buf.empty()) {
        return make_ready_future<>();
    }
    _snd_buffered += buf.size();
    _snd_buf.push_back(std::move(buf));
    output();
    if (_snd_buffered < _snd_buf_limit || _state == tcp_state::closed) {
        return _error ? make_exception_future<>(_error) : make_ready_future<>();
    }
    _write_waiter.emplace();
    return _write_waiter->get_future();
}

void tcp_connection::close_output() {
    if (_fin_queued || _state == tcp_state::closed) {
        return;
    }
    _fin_queued = true;
    switch (_state) {
    case tcp_state::syn_sent:
        // RFC 9293 3.10.4: CLOSE in SYN-SENT deletes the TCB.
        to_closed(make_error(ECONNABORTED, "connect to"));
        return;
    case tcp_state::syn_received:
    case tcp_state::established: set_state(tcp_state::fin_wait_1); break;
    case tcp_state::close_wait: set_state(tcp_state::last_ack); break;
    default: return;
    }
    output();
}

void tcp_connection::shutdown_input() noexcept {
    _input_shut = true;
    _rcv_buf.clear();
    _rcv_buffered = 0;
    wake_reader();
    for (auto& w : _input_shutdown_waiters) {
        w.set_value();
    }
    _input_shutdown_waiters.clear();
}

future<> tcp_connection::wait_input_shutdown() {
    if (_fin_received || _input_shut || _state == tcp_state::closed) {
        return make_ready_future<>();
    }
    _input_shutdown_waiters.emplace_back();
    return _input_shutdown_waiters.back().get_future();
}

void tcp_connection::abort() {
    switch (_state) {
    case tcp_state::syn_received:
    case tcp_state::established:
    case tcp_state::fin_wait_1:
    case tcp_state::fin_wait_2:
    case tcp_state::close_wait: send_rst_now(); break;
    default: break;
    }
    if (_state != tcp_state::closed) {
        to_closed(make_error(ECONNABORTED, "connection to"));
    }
}

void tcp_connection::release_handle() noexcept {
    if (--_handles == 0) {
        orphaned();
    }
}

// The application dropped the socket: RFC 9293 3.10.4 CLOSE. Unread data means the application
// did not read what the peer sent: reset (RFC 2525 2.17), as kernels do.
void tcp_connection::orphaned() {
    if (!_tcp || _state == tcp_state::closed || _state == tcp_state::time_wait) {
        return;
    }
    try {
        if (_rcv_buffered > 0) {
            abort();
            return;
        }
        _input_shut = true;
        close_output();
        if (_state == tcp_state::fin_wait_2) {
            _close_timer.arm(_tcp->config().fin_wait2_timeout);
        }
    } catch (...) {
        // Out of memory building a segment: give the connection up rather than leak it.
        to_closed(std::current_exception());
    }
}

void tcp_connection::set_nodelay(bool on) {
    _nodelay = on;
    if (on) {
        output();
    }
}

void tcp_connection::set_keepalive(bool on) {
    _keepalive = on;
    if (on) {
        arm_keepalive();
    } else {
        _keepalive_timer.cancel();
    }
}

void tcp_connection::set_keepalive_parameters(const tcp_keepalive_params& p) {
    if (p.idle.count() <= 0 || p.interval.count() <= 0 || p.count == 0) {
        throw std::invalid_argument("keepalive parameters must be positive");
    }
    _ka_params = p;
    if (_keepalive) {
        arm_keepalive();
    }
}

void tcp_connection::set_congestion(tcp_congestion_algorithm a) {
    if (_cc->algorithm() != a) {
        _cc = make_tcp_congestion_control(a);
    }
}

tcp_info tcp_connection::info() const {
    tcp_info i;
    i.state = tcp_state_name(_state);
    i.mss = _w.mss;
    i.snd_wnd = _snd_wnd;
    i.max_snd_wnd = _max_snd_wnd;
    i.rcv_wnd = std::uint32_t(std::max<std::int32_t>(_rcv_adv - _rcv_nxt, 0));
    i.snd_wscale = _snd_wscale;
    i.rcv_wscale = _rcv_wscale;
    i.timestamps = _ts_ok;
    i.sack = _sack_ok;
    i.wscale = _wscale_ok;
    i.cwnd = _w.cwnd;
    i.ssthresh = _w.ssthresh;
    i.max_in_flight = _max_in_flight;
    i.srtt = _srtt;
    i.rto = backed_off_rto();
    i.retransmits = _retransmits;
    i.rto_expirations = _rto_expirations;
    i.bytes_acked = _bytes_acked;
    i.bytes_received = _bytes_received;
    i.zero_window_probes = _probes;
    i.send_queued = _snd_buffered;
    i.recv_queued = _rcv_buffered;
    i.congestion = _cc->algorithm();
    return i;
}

// ------------------------------------------------------------------------------------------------
// Sockets

namespace {

class tcp_data_source final : public data_source_impl {
    lw_shared_ptr<tcp_connection> _c;

public:
    explicit tcp_data_source(lw_shared_ptr<tcp_connection> c) : _c(std::move(c)) { _c->add_handle(); }
    ~tcp_data_source() override { _c->release_handle(); }
    future<temporary_buffer<char>> get() override {
        return _c->read().finally([c = _c] {});
    }
    future<> close() override {
        _c->shutdown_input();
        return make_ready_future<>();
    }
};

class tcp_data_sink final : public data_sink_impl {
    lw_shared_ptr<tcp_connection> _c;

public:
    using data_sink_impl::put;
    explicit tcp_data_sink(lw_shared_ptr<tcp_connection> c) : _c(std::move(c)) { _c->add_handle(); }
    ~tcp_data_sink() override { _c->release_handle(); }
    future<> put(temporary_buffer<char> data) override {
        return _c->write(std::move(data)).finally([c = _c] {});
    }
    future<> close() override {
        _c->close_output();
        return make_ready_future<>();
    }
    std::size_t buffer_size_hint() const noexcept override { return 16384; }
};

class tcp_socket_impl final : public connected_socket_impl {
    lw_shared_ptr<tcp_connection> _c;

public:
    explicit tcp_socket_impl(lw_shared_ptr<tcp_connection> c) : _c(std::move(c)) { _c->add_handle(); }
    ~tcp_socket_impl() override { _c->release_handle(); }

    data_source source(const connected_socket_input_stream_config&) override {
        return data_source(std::make_unique<tcp_data_source>(_c));
    }
    data_sink sink() override { return data_sink(std::make_unique<tcp_data_sink>(_c)); }
    void shutdown_input() override { _c->shutdown_input(); }
    void shutdown_output() override { _c->close_output(); }
    void set_nodelay(bool on) override { _c->set_nodelay(on); }
    bool get_nodelay() const override { return _c->nodelay(); }
    void set_keepalive(bool on) override { _c->set_keepalive(on); }
    bool get_keepalive() const override { return _c->keepalive(); }
    void set_keepalive_parameters(const tcp_keepalive_params& p) override { _c->set_keepalive_parameters(p); }
    tcp_keepalive_params get_keepalive_parameters() const override { return _c->keepalive_parameters(); }
    socket_address local_address() const noexcept override { return _c->local_address(); }
    socket_address remote_address() const noexcept override { return _c->remote_address(); }
    future<> wait_input_shutdown() override {
        return _c->wait_input_shutdown().finally([c = _c] {});
    }
    tcp_connection& conn() noexcept { return *_c; }
};

tcp_socket_impl& native_impl(const connected_socket& s) {
    auto* i = dynamic_cast<tcp_socket_impl*>(s.impl());
    if (!i) {
        throw std::invalid_argument("not a native TCP socket");
    }
    return *i;
}

}  // namespace

connected_socket make_tcp_socket(lw_shared_ptr<tcp_connection> c) {
    return connected_socket(std::make_unique<tcp_socket_impl>(std::move(c)));
}

std::optional<tcp_info> native_tcp_info(const connected_socket& s) {
    auto* i = dynamic_cast<tcp_socket_impl*>(s.impl());
    if (!i) {
        return std::nullopt;
    }
    return i->conn().info();
}

void native_tcp_abort(connected_socket& s) { native_impl(s).conn().abort(); }

void native_tcp_set_congestion(connected_socket& s, tcp_congestion_algorithm algo) {
    native_impl(s).conn().set_congestion(algo);
}

// ------------------------------------------------------------------------------------------------
// tcp_listener

tcp_listener::tcp_listener(tcp& stack, tcp_ipv4 addr, std::uint16_t port, const listen_options& lo,
                           const tcp_socket_options& o)
    : _tcp(&stack), _addr(addr), _port(port), _backlog(std::size_t(std::max(lo.backlog, 1))), _opts(o) {
    if (!_opts.send_buffer_size) {
        _opts.send_buffer_size = lo.send_buffer_size;
    }
    if (!_opts.recv_buffer_size) {
        _opts.recv_buffer_size = lo.recv_buffer_size;
    }
}

tcp_listener::~tcp_listener() {
    if (_tcp) {
        _tcp->unlisten(this);
    }
    // RFC 9293 3.10.4: closing a listener resets the connections it had not handed out yet.
    auto half = std::move(_half_open);
    _half_open.clear();
    for (auto* c : half) {
        c->listener_gone();
        auto keep = c->shared_from_this();
        keep->abort();
    }
    auto q = std::move(_accept_q);
    for (auto& c : q) {
        c->abort();
    }
    if (_waiter) {
        _waiter->set_exception(
            std::system_error(ECONNABORTED, std::system_category(), fmt::format("accept on {}", local_address())));
    }
}

void tcp_listener::detach() noexcept {
    _tcp = nullptr;
    _aborted = true;
    for (auto* c : _half_open) {
        c->listener_gone();
    }
    _half_open.clear();
    _accept_q.clear();
    if (_waiter) {
        auto w = std::move(*_waiter);
        _waiter.reset();
        w.set_exception(
            std::system_error(ECONNABORTED, std::system_category(), fmt::format("accept on {}", local_address())));
    }
}

future<accept_result> tcp_listener::accept() {
    if (_aborted) {
        return make_exception_future<accept_result>(
            std::system_error(ECONNABORTED, std::system_category(), fmt::format("accept on {}", local_address())));
    }
    while (!_accept_q.empty()) {
        auto c = std::move(_accept_q.front());
        _accept_q.pop_front();
        if (c->state() == tcp_state::closed && c->_rcv_buf.empty() && !c->_fin_received) {
            continue;  // reset before anyone accepted it
        }
        auto remote = c->remote_address();
        return make_ready_future<accept_result>(accept_result{make_tcp_socket(std::move(c)), remote});
    }
    if (_waiter) {
        return make_exception_future<accept_result>(std::logic_error("tcp_listener: accept() already pending"));
    }
    _waiter.emplace();
    return _waiter->get_future();
}

void tcp_listener::abort_accept() {
    _aborted = true;
    if (_waiter) {
        auto w = std::move(*_waiter);
        _waiter.reset();
        w.set_exception(
            std::system_error(ECONNABORTED, std::system_category(), fmt::format("accept on {}", local_address())));
    }
}

socket_address tcp_listener::local_address() const noexcept { return make_sa(_addr, _port); }

void tcp_listener::established(lw_shared_ptr<tcp_connection> c) {
    if (_waiter) {
        auto w = std::move(*_waiter);
        _waiter.reset();
        auto remote = c->remote_address();
        w.set_value(accept_result{make_tcp_socket(std::move(c)), remote});
        return;
    }
    if (_aborted || _accept_q.size() >= _backlog) {
        if (_tcp) {
            ++_tcp->mutable_stats().listen_overflows;
        }
        c->abort();
        return;
    }
    _accept_q.push_back(std::move(c));
}

void tcp_listener::half_open_gone(tcp_connection* c) noexcept { _half_open.erase(c); }

}  // namespace reef::net
