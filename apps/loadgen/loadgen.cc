#include "apps/loadgen/loadgen.hh"

#include "runtime/circular_buffer.hh"
#include "runtime/condition_variable.hh"
#include "runtime/coroutine.hh"
#include "runtime/future_util.hh"
#include "runtime/log.hh"
#include "runtime/semaphore.hh"
#include "runtime/smp.hh"
#include "stack/net/resolve.hh"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <stdexcept>
#include <system_error>
#include <unordered_map>

namespace reef::loadgen {

namespace {

logger llog("loadgen");

using clock_type = steady_clock_type;
using time_point = clock_type::time_point;

std::string seconds_text(double s) { return fmt::format("{:g} s", s); }

}  // namespace

// ------------------------------------------------------------------------------------------------
// load_stats

void load_stats::add_error_message(const std::string& msg, std::uint64_t count) {
    for (auto& [m, n] : error_messages) {
        if (m == msg) {
            n += count;
            return;
        }
    }
    if (error_messages.size() < max_messages) {
        error_messages.emplace_back(msg, count);
    }
}

void load_stats::merge(const load_stats& o) {
    requests += o.requests;
    bytes_sent += o.bytes_sent;
    bytes_received += o.bytes_received;
    mismatches += o.mismatches;
    timeouts += o.timeouts;
    connection_errors += o.connection_errors;
    connections_up += o.connections_up;
    connections += o.connections;
    for (auto& [m, n] : o.error_messages) {
        add_error_message(m, n);
    }
    latency_ns.merge(o.latency_ns);
    if (o.window_end && (!window_end || *o.window_end > *window_end)) {
        window_end = o.window_end;
    }
}

// ------------------------------------------------------------------------------------------------
// TCP: a writer sends batches of requests while the pipeline has room, a reader takes the
// answers in order. Both end when sending has ended and every answer is in, or when the
// connection fails (the first error is kept; the other side is woken through the semaphores).

class tcp_connection {
    load_client& _client;
    std::unique_ptr<request_generator> _gen;
    net::connected_socket _sock;
    input_stream<char> _in;
    output_stream<char> _out;
    unsigned _pipeline;
    semaphore _window;  // requests that may still be sent before an answer comes back
    semaphore _due{0};  // one unit per request sent, plus one when the writer has finished
    struct sent_request {
        time_point at;
        std::size_t bytes;
    };
    circular_buffer<sent_request> _sent;  // awaiting their answers, oldest first
    std::uint64_t _write_seq = 0;
    std::uint64_t _read_seq = 0;
    bool _connected = false;
    bool _failed = false;

    future<> write_loop();
    future<> read_loop();

public:
    tcp_connection(load_client& client, std::unique_ptr<request_generator> gen, unsigned pipeline)
        : _client(client), _gen(std::move(gen)), _pipeline(pipeline), _window(pipeline) {}

    future<> connect();
    future<> run();
    /// Record the failure (once) and wake both loops.
    void fail(const std::string& msg);
    /// Send time of the oldest request still waiting for its answer.
    std::optional<time_point> oldest_unanswered() const noexcept {
        return _sent.empty() || _failed ? std::nullopt : std::optional<time_point>(_sent.front().at);
    }
};

void tcp_connection::fail(const std::string& msg) {
    if (_failed) {
        return;
    }
    _failed = true;
    auto& st = _client.mutable_stats();
    ++st.connection_errors;
    st.add_error_message(msg);
    llog.debug("connection to {} failed: {}", _client.config().server, msg);
    auto ex = std::make_exception_ptr(std::runtime_error(msg));
    _window.broken(ex);
    _due.broken(ex);
    if (_sock) {
        // Wake a read that waits on the socket, and on a plain socket a write too. (A TLS
        // socket's shutdown_output() writes close_notify, which must not overlap a write of
        // ours; a writer blocked there is woken by the broken window or the stream's error.)
        _sock.shutdown_input();
        if (!_client.config().tls) {
            _sock.shutdown_output();
        }
    }
}

future<> tcp_connection::connect() {
    const auto& cfg = _client.config();
    try {
        auto deadline = clock_type::now() +
                        std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(cfg.timeout_s));
        auto f = with_timeout(deadline, _client.open_stream());
        _sock = co_await std::move(f);
        _in = _sock.input();
        _out = _sock.output();
        _connected = true;
        ++_client.mutable_stats().connections_up;
    } catch (const timed_out_error&) {
        fail(fmt::format("connect to {}: no answer within {}", cfg.server, seconds_text(cfg.timeout_s)));
    } catch (...) {
        fail(exception_message(std::current_exception()));
    }
}

future<> tcp_connection::write_loop() {
    try {
        for (;;) {
            co_await _window.wait(1);
            // Everything the pipeline has room for now goes out in one batch and one flush.
            std::size_t n = 1;
            while (n < _pipeline && _window.try_wait(1)) {
                ++n;
            }
            auto now = clock_type::now();
            std::size_t sent = 0;
            while (sent < n && !_failed && _client.take_send_permit(now)) {
                std::size_t bytes = co_await _gen->write_request(_out, _write_seq++);
                _sent.push_back({now, bytes});
                _due.signal(1);
                ++sent;
            }
            if (sent < n) {
                _window.signal(n - sent);
            }
            if (sent) {
                co_await _out.flush();
            }
            if (sent < n) {
                break;  // sending has ended (window closed, budget spent, stop, or failure)
            }
        }
    } catch (...) {
        fail(exception_message(std::current_exception()));
    }
    _due.signal(1);  // the reader's cue that no more requests come (ignored once broken)
}

future<> tcp_connection::read_loop() {
    try {
        for (;;) {
            co_await _due.wait(1);
            if (_sent.empty()) {
                break;  // the writer's end unit: every request has its answer
            }
            response_status st = co_await _gen->read_response(_in, _read_seq++);
            auto done = clock_type::now();
            sent_request req = _sent.front();
            _sent.pop_front();
            if (st.valid) {
                _client.record_answer(req.at, done, req.bytes, st.bytes);
            } else {
                ++_client.mutable_stats().mismatches;
            }
            _window.signal(1);
        }
    } catch (...) {
        fail(exception_message(std::current_exception()));
    }
}

future<> tcp_connection::run() {
    if (!_connected) {
        co_return;
    }
    auto writer = write_loop();
    auto reader = read_loop();
    co_await std::move(reader);
    co_await std::move(writer);
    try {
        co_await _out.close();
    } catch (...) {
        if (!_failed) {
            llog.debug("closing the connection to {}: {}", _client.config().server,
                       exception_message(std::current_exception()));
        }
    }
    try {
        co_await _in.close();
    } catch (...) {
    }
}

// ------------------------------------------------------------------------------------------------
// UDP: a sender keeps `pipeline` datagrams in flight, a receiver matches answers to requests by
// the sequence number the generator reads back. Requests whose answer does not come within
// --timeout are counted as lost and free their pipeline slot, so losses never hang the run.

class udp_connection {
    load_client& _client;
    std::unique_ptr<request_generator> _gen;
    net::udp_channel _ch;
    unsigned _pipeline;
    semaphore _window;
    struct sent_request {
        time_point at;
        std::size_t bytes;
    };
    std::unordered_map<std::uint64_t, sent_request> _inflight;
    condition_variable _drained;  // signalled when _inflight empties or the channel fails
    std::uint64_t _seq = 0;
    bool _open = false;
    bool _failed = false;
    bool _closing = false;

    future<> send_loop();
    future<> receive_loop();
    void answered(std::unordered_map<std::uint64_t, sent_request>::iterator it) {
        _inflight.erase(it);
        _window.signal(1);
        if (_inflight.empty()) {
            _drained.broadcast();
        }
    }

public:
    udp_connection(load_client& client, std::unique_ptr<request_generator> gen, unsigned pipeline)
        : _client(client), _gen(std::move(gen)), _pipeline(pipeline), _window(pipeline) {}

    void open();
    future<> run();
    void fail(const std::string& msg);
    /// Count requests sent before `deadline` as lost and free their slots.
    void expire(time_point deadline);
};

void udp_connection::fail(const std::string& msg) {
    if (_failed) {
        return;
    }
    _failed = true;
    auto& st = _client.mutable_stats();
    ++st.connection_errors;
    st.add_error_message(msg);
    llog.debug("UDP channel to {} failed: {}", _client.config().server, msg);
    _window.broken(std::make_exception_ptr(std::runtime_error(msg)));
    _drained.broadcast();
    if (_ch) {
        _ch.shutdown_input();
    }
}

void udp_connection::open() {
    try {
        auto family =
            _client.config().server.is_ipv6() ? net::inet_address::family::inet6 : net::inet_address::family::inet;
        _ch = net::make_udp_channel(net::socket_address(0, family));
        _open = true;
        ++_client.mutable_stats().connections_up;
    } catch (...) {
        fail(exception_message(std::current_exception()));
    }
}

void udp_connection::expire(time_point deadline) {
    for (auto it = _inflight.begin(); it != _inflight.end();) {
        if (it->second.at < deadline) {
            if (_client.is_measured(it->second.at)) {
                ++_client.mutable_stats().timeouts;
            }
            auto next = std::next(it);
            answered(it);
            it = next;
        } else {
            ++it;
        }
    }
}

future<> udp_connection::send_loop() {
    const auto& server = _client.config().server;
    std::vector<future<>> sends;
    sends.reserve(_pipeline);
    try {
        for (;;) {
            co_await _window.wait(1);
            std::size_t n = 1;
            while (n < _pipeline && _window.try_wait(1)) {
                ++n;
            }
            auto now = clock_type::now();
            std::size_t sent = 0;
            while (sent < n && !_failed && _client.take_send_permit(now)) {
                std::uint64_t seq = _seq++;
                net::packet p = _gen->make_datagram(seq);
                _inflight.emplace(seq, sent_request{now, p.len()});
                sends.push_back(_ch.send(server, std::move(p)));
                ++sent;
            }
            if (sent < n) {
                _window.signal(n - sent);
            }
            // Every send future is consumed, even after one failed.
            std::exception_ptr ex;
            for (auto& f : sends) {
                try {
                    co_await std::move(f);
                } catch (...) {
                    if (!ex) {
                        ex = std::current_exception();
                    }
                }
            }
            sends.clear();
            if (ex) {
                std::rethrow_exception(ex);
            }
            if (sent < n) {
                break;
            }
        }
    } catch (...) {
        fail(exception_message(std::current_exception()));
    }
}

future<> udp_connection::receive_loop() {
    for (;;) {
        net::datagram d;
        try {
            d = co_await _ch.receive();
        } catch (...) {
            if (!_closing && !_failed) {
                fail(exception_message(std::current_exception()));
            }
            co_return;
        }
        auto done = clock_type::now();
        datagram_reply reply = _gen->parse_datagram(d.data);
        if (!reply.seq) {
            ++_client.mutable_stats().mismatches;
            continue;
        }
        auto it = _inflight.find(*reply.seq);
        if (it == _inflight.end()) {
            continue;  // the late answer of a request already counted as lost, or a duplicate
        }
        if (reply.valid && !d.truncated) {
            _client.record_answer(it->second.at, done, it->second.bytes, d.data.len());
        } else {
            ++_client.mutable_stats().mismatches;
        }
        answered(it);
    }
}

future<> udp_connection::run() {
    if (!_open) {
        co_return;
    }
    auto receiver = receive_loop();
    co_await send_loop();
    // Wait for the answers still due (each is answered or expires within --timeout).
    try {
        co_await _drained.wait([this] { return _inflight.empty() || _failed; });
    } catch (...) {
    }
    _closing = true;
    _ch.shutdown_input();
    co_await std::move(receiver);
    _ch.close();
}

// ------------------------------------------------------------------------------------------------
// load_client

load_client::load_client(load_config cfg) : _cfg(std::move(cfg)), _factory(find_generator(_cfg.generator)) {
    if (!_factory) {
        throw std::invalid_argument("unknown generator '" + _cfg.generator + "'");
    }
    if (_cfg.requests) {
        // This shard's share of the total; the first shards take the remainder.
        _budget = _cfg.requests / smp::count + (this_shard_id() < _cfg.requests % smp::count ? 1 : 0);
    }
    init_tls();
}

load_client::~load_client() = default;

void load_client::init_tls() {
    if (!_cfg.tls) {
        return;
    }
    _tls_credentials = make_shared<tls::client_credentials>();
    if (_cfg.tls_ca.empty()) {
        _tls_credentials->set_system_trust();
    } else {
        _tls_credentials->set_x509_trust_file(_cfg.tls_ca);
    }
}

future<net::connected_socket> load_client::open_stream() {
    if (!_cfg.tls) {
        return net::connect(_cfg.server);
    }
    tls::tls_options opts;
    opts.server_name = _cfg.tls_server_name.empty() ? host_of(_cfg.server_text) : _cfg.tls_server_name;
    return tls::connect(_tls_credentials, _cfg.server, std::move(opts))
        .then([](net::connected_socket s) -> future<net::connected_socket> {
            // Handshake now: its failure is a connection error with the verification's reason,
            // and its round trips stay out of the first request's latency.
            co_await tls::handshake(s);
            co_return std::move(s);
        });
}

future<> load_client::connect() {
    std::vector<future<>> fs;
    for (unsigned i = 0; i < _cfg.connections; ++i) {
        generator_config gc;
        gc.request_size = _cfg.request_size;
        gc.proto = _cfg.proto;
        gc.shard = this_shard_id();
        gc.connection = i;
        ++_stats.connections;
        if (_cfg.proto == protocol::tcp) {
            _tcp.push_back(std::make_unique<tcp_connection>(*this, _factory->make(gc), _cfg.pipeline));
            fs.push_back(_tcp.back()->connect());
        } else {
            _udp.push_back(std::make_unique<udp_connection>(*this, _factory->make(gc), _cfg.pipeline));
            _udp.back()->open();
        }
    }
    for (auto& f : fs) {
        co_await std::move(f);  // connect() never fails
    }
}

bool load_client::take_send_permit(time_point now) noexcept {
    if (_stopping || (_measure_end && now >= *_measure_end)) {
        return false;
    }
    if (_budget_mode && now >= _measure_start) {
        if (_budget == 0) {
            return false;
        }
        --_budget;
    }
    return true;
}

void load_client::record_answer(time_point sent, time_point done, std::size_t bytes_sent,
                                std::size_t bytes_received) noexcept {
    if (!is_measured(sent)) {
        return;
    }
    ++_stats.requests;
    _stats.bytes_sent += bytes_sent;
    _stats.bytes_received += bytes_received;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(done - sent).count();
    _stats.latency_ns.record(std::uint64_t(std::max<std::int64_t>(ns, 0)));
    if (_budget_mode && (!_last_answer || done > *_last_answer)) {
        _last_answer = done;
    }
}

void load_client::check_timeouts() {
    auto timeout = std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(_cfg.timeout_s));
    auto deadline = clock_type::now() - timeout;
    for (auto& c : _tcp) {
        auto oldest = c->oldest_unanswered();
        if (oldest && *oldest < deadline) {
            c->fail(fmt::format("no answer from {} within {}", _cfg.server, seconds_text(_cfg.timeout_s)));
        }
    }
    for (auto& c : _udp) {
        c->expire(deadline);
    }
}

future<> load_client::run(time_point measure_start, std::optional<time_point> measure_end) {
    _measure_start = measure_start;
    _measure_end = measure_end;
    _budget_mode = !measure_end.has_value();
    // Look for overdue answers a few times per timeout, so a timeout is detected within ~10%.
    auto period = std::clamp(
        std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(_cfg.timeout_s / 10)),
        clock_type::duration(std::chrono::milliseconds(10)), clock_type::duration(std::chrono::milliseconds(250)));
    _watchdog.set_callback([this] { check_timeouts(); });
    _watchdog.arm_periodic(period);
    std::vector<future<>> fs;
    for (auto& c : _tcp) {
        fs.push_back(c->run());
    }
    for (auto& c : _udp) {
        fs.push_back(c->run());
    }
    for (auto& f : fs) {
        co_await std::move(f);  // run() never fails
    }
    _watchdog.cancel();
    _run_end = clock_type::now();
}

future<> load_client::stop() {
    if (!_stopping) {
        _stopping = true;
        _stop_time = clock_type::now();
    }
    return make_ready_future<>();
}

load_stats load_client::stats() const {
    load_stats s = _stats;
    if (_budget_mode) {
        s.window_end = _last_answer;
    } else if (_measure_end) {
        auto end = *_measure_end;
        for (auto& t : {_stop_time, _run_end}) {
            if (t && *t < end) {
                end = *t;
            }
        }
        // Stopped, or every connection gone, during the warmup: nothing was measured.
        if (end > _measure_start) {
            s.window_end = end;
        }
    }
    return s;
}

// ------------------------------------------------------------------------------------------------
// --server

std::string host_of(const std::string& server) {
    if (!server.empty() && server.front() == '[') {
        auto close = server.find(']');
        return close == std::string::npos ? server : server.substr(1, close - 1);
    }
    auto colon = server.rfind(':');
    return colon == std::string::npos ? server : server.substr(0, colon);
}

future<net::socket_address> resolve_server(std::string server) {
    try {
        co_return net::socket_address::parse(server);
    } catch (const std::invalid_argument&) {
        // Not numeric: maybe "name:port".
    }
    auto colon = server.rfind(':');
    if (colon == std::string::npos || colon == 0 || server.front() == '[') {
        throw std::invalid_argument("--server '" + server +
                                    "': expected ADDRESS:PORT (e.g. 127.0.0.1:7, [::1]:7, localhost:7)");
    }
    std::string port_text = server.substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535 || port_text.empty()) {
        throw std::invalid_argument("--server '" + server + "': port must be a number 0-65535");
    }
    auto resolved = net::resolve(server.substr(0, colon));
    net::inet_address addr = co_await std::move(resolved);
    co_return net::socket_address(addr, std::uint16_t(port));
}

}  // namespace reef::loadgen
