#include "stack/rpc/rpc.hh"

#include "runtime/coroutine.hh"
#include "runtime/future_util.hh"
#include "runtime/log.hh"
#include "runtime/misuse.hh"
#include "runtime/scheduling.hh"
#include "runtime/semaphore.hh"

#include <fmt/format.h>
#include <lz4.h>

#include <cxxabi.h>

#include <cstdlib>
#include <typeinfo>

namespace reef::rpc {

namespace {

logger rpc_log("rpc");

std::string what_of(const std::exception_ptr& ex) {
    try {
        std::rethrow_exception(ex);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown exception";
    }
}

}  // namespace

remote_error::remote_error(std::string type, std::string message)
    : error(fmt::format("remote {}: {}", type, message)), _type(std::move(type)), _message(std::move(message)) {}

unknown_verb::unknown_verb(verb_id v) : error(fmt::format("unknown rpc verb {}", v)), _verb(v) {}

namespace internal {

std::string demangled_type_name(const std::exception_ptr& ex) {
    const std::type_info* ti = nullptr;
    try {
        std::rethrow_exception(ex);
    } catch (const std::exception& e) {
        ti = &typeid(e);
    } catch (...) {
        return "unknown";
    }
    int status = 0;
    char* d = abi::__cxa_demangle(ti->name(), nullptr, nullptr, &status);
    std::string out = (status == 0 && d) ? std::string(d) : std::string(ti->name());
    std::free(d);
    return out;
}

// ---- streams

stream_state::stream_state(std::uint64_t i, connection* c, bool recv, std::size_t depth)
    : id(i), conn(c), receiving(recv), items(std::max<std::size_t>(depth, 1)) {
    if (conn) {
        conn->register_stream(*this);
    }
}

stream_state::~stream_state() {
    if (conn && !receiving && !finished && conn->send_open()) {
        // The last sink went away without close(): tell the reader rather than leave it waiting.
        try {
            output_buffer ob(wire::header_size);
            serializer<bool>::write(ob, true);
            serializer<std::string>::write(ob, std::string("sink dropped without close()"));
            conn->send(wire::frame_type::stream_end, id, std::move(ob));
        } catch (...) {
        }
    }
    if (conn) {
        conn->unregister_stream(*this);
    }
    // Wakes a delivery waiting for room in this queue; it then finds the stream gone.
    items.abort(std::make_exception_ptr(closed_error("rpc stream: dropped")));
}

lw_shared_ptr<stream_state> bind_stream(input_buffer& in, bool receiving) {
    auto id = serializer<std::uint64_t>::read(in);
    connection* c = binding_connection;
    if (!c) {
        throw serialization_error("an rpc stream can only be read as a call argument");
    }
    if (!c->agreed().has(feature::streams)) {
        throw serialization_error("rpc stream argument, but streams were not negotiated");
    }
    return make_lw_shared<stream_state>(id, c, receiving, c->opts.stream_queue_items);
}

// ---- connection

connection::connection(net::connected_socket s, const connection_options& o, traffic_stats& st)
    : opts(o), stats(st), _socket(std::move(s)) {
    _remote = _socket.remote_address();
    _in = _socket.input();
    _out = _socket.output();
}

connection::~connection() { detach_streams(std::make_exception_ptr(closed_error("rpc connection closed"))); }

future<> connection::negotiate(bool as_server) {
    wire::hello mine{opts.version, opts.features, opts.max_frame_size};
    if (!as_server) {
        char buf[wire::hello_size];
        mine.encode(buf);
        co_await _out.write(buf, sizeof(buf));
        co_await _out.flush();
    }
    auto b = co_await _in.read_exactly(wire::hello_size);
    if (b.empty()) {
        throw closed_error(fmt::format("rpc connection with {} closed before the hello", _remote));
    }
    if (b.size() < wire::hello_size) {
        ++stats.truncated_frames;
        throw frame_error(frame_error::kind::truncated,
                          fmt::format("rpc connection with {} ended inside the hello", _remote));
    }
    wire::hello peer;
    if (!peer.decode(b.get()) || peer.version == 0) {
        ++stats.malformed_frames;
        throw protocol_error(fmt::format("{} is not an rpc peer (bad hello)", _remote));
    }
    _agreed.version = std::min(peer.version, opts.version);
    _agreed.features = peer.features & opts.features;
    _agreed.peer_max_frame_size = peer.max_frame_size;
    if (as_server) {
        // The answer carries what the connection will use; the client takes it as is.
        wire::hello answer{_agreed.version, _agreed.features, opts.max_frame_size};
        char buf[wire::hello_size];
        answer.encode(buf);
        co_await _out.write(buf, sizeof(buf));
        co_await _out.flush();
    }
}

void connection::start_sender() {
    _sender_running = true;
    _sender.emplace(sender_loop());
}

future<> connection::sender_loop() {
    std::exception_ptr ex;
    try {
        for (;;) {
            if (_sendq.empty()) {
                if (_send_closed) {
                    break;
                }
                co_await _send_cv.wait();
                continue;
            }
            // Everything queued goes out in one batch, then one flush (one system call for many
            // small frames under load).
            while (!_sendq.empty()) {
                auto b = std::move(_sendq.front());
                _sendq.pop_front();
                _queued_bytes -= b.size();
                auto written = _out.write(std::move(b));  // named: no temporary spans the co_await
                co_await std::move(written);
                if (_queued_bytes <= opts.send_queue_bytes) {
                    _room_cv.broadcast();
                }
            }
            co_await _out.flush();
        }
    } catch (...) {
        ex = std::current_exception();
    }
    _sender_running = false;
    if (ex) {
        _send_error = ex;
        _sendq.clear();
        _queued_bytes = 0;
        // The reader must notice too: nothing more can be answered on this connection.
        _socket.shutdown_input();
    }
    _room_cv.broken(std::make_exception_ptr(closed_error("rpc connection closed")));
}

void connection::send(wire::frame_type t, std::uint64_t id, output_buffer&& ob) {
    if (_send_error) {
        throw closed_error(fmt::format("rpc connection with {} failed: {}", _remote, what_of(_send_error)));
    }
    if (_send_closed || _aborted) {
        throw closed_error(fmt::format("rpc connection with {} is closed", _remote));
    }
    const std::size_t raw = ob.size();
    if (raw > _agreed.peer_max_frame_size) {
        throw frame_too_large(fmt::format("rpc frame of {} bytes exceeds the peer's limit of {} bytes", raw,
                                          _agreed.peer_max_frame_size));
    }
    std::uint8_t flags = 0;
    std::size_t len = raw;
    temporary_buffer<char> buf;
    const bool compressible =
        t == wire::frame_type::request || t == wire::frame_type::response || t == wire::frame_type::stream_data;
    if (compressible && _agreed.has(feature::lz4) && raw >= opts.compress_threshold && raw <= LZ4_MAX_INPUT_SIZE) {
        const int bound = LZ4_compressBound(int(raw));
        temporary_buffer<char> cb(wire::header_size + 4 + std::size_t(bound));
        const int c = LZ4_compress_default(ob.data(), cb.get_write() + wire::header_size + 4, int(raw), bound);
        if (c > 0 && std::size_t(c) + 4 < raw) {
            auto raw32 = std::uint32_t(raw);
            std::memcpy(cb.get_write() + wire::header_size, &raw32, 4);
            cb.trim(wire::header_size + 4 + std::size_t(c));
            buf = std::move(cb);
            flags |= wire::flag_lz4;
            len = std::size_t(c) + 4;
            ++stats.compressed_frames_sent;
        }
    }
    if (!buf) {
        if (ob.headroom() != wire::header_size) {
            throw std::logic_error("rpc: a frame payload needs wire::header_size bytes of headroom");
        }
        buf = std::move(ob).release();
    }
    wire::header h{t, flags, std::uint32_t(len), id};
    h.encode(buf.get_write());
    ++stats.frames_sent;
    stats.bytes_sent += buf.size();
    _queued_bytes += buf.size();
    _sendq.push_back(std::move(buf));
    _send_cv.signal();
}

future<> connection::wait_send_room() {
    while (_queued_bytes > opts.send_queue_bytes && _sender_running) {
        co_await _room_cv.wait();
    }
    if (_send_error) {
        throw closed_error(fmt::format("rpc connection with {} failed: {}", _remote, what_of(_send_error)));
    }
}

future<frame> connection::read_frame() {
    auto hb = co_await _in.read_exactly(wire::header_size);
    if (hb.empty()) {
        co_return frame{};
    }
    if (hb.size() < wire::header_size) {
        ++stats.truncated_frames;
        throw frame_error(frame_error::kind::truncated,
                          fmt::format("rpc connection with {} ended inside a frame header", _remote));
    }
    wire::header h;
    h.decode(hb.get());
    if (h.length > opts.max_frame_size) {
        ++stats.oversized_frames;
        throw frame_error(frame_error::kind::oversized,
                          fmt::format("rpc frame of {} bytes from {} exceeds the limit of {} bytes", h.length, _remote,
                                      opts.max_frame_size),
                          h.type, h.id);
    }
    const auto type = std::uint8_t(h.type);
    if ((h.flags & ~wire::known_flags) || type < std::uint8_t(wire::frame_type::request) ||
        type > std::uint8_t(wire::frame_type::stream_end)) {
        ++stats.malformed_frames;
        throw frame_error(frame_error::kind::malformed,
                          fmt::format("rpc frame from {} has unknown type {} or flags {:#x}", _remote, type, h.flags),
                          h.type, h.id);
    }
    temporary_buffer<char> p;
    if (h.length) {
        p = co_await _in.read_exactly(h.length);
        if (p.size() < h.length) {
            ++stats.truncated_frames;
            throw frame_error(frame_error::kind::truncated,
                              fmt::format("rpc connection with {} ended inside a frame ({} of {} bytes)", _remote,
                                          p.size(), h.length),
                              h.type, h.id);
        }
    }
    ++stats.frames_received;
    stats.bytes_received += wire::header_size + h.length;
    if (h.flags & wire::flag_lz4) {
        std::uint32_t raw = 0;
        if (p.size() < 4) {
            ++stats.malformed_frames;
            throw frame_error(frame_error::kind::malformed, "compressed rpc frame without its size", h.type, h.id);
        }
        std::memcpy(&raw, p.get(), 4);
        if (raw > opts.max_frame_size) {
            ++stats.oversized_frames;
            throw frame_error(frame_error::kind::oversized,
                              fmt::format("compressed rpc frame from {} expands to {} bytes, over the limit of {}",
                                          _remote, raw, opts.max_frame_size),
                              h.type, h.id);
        }
        temporary_buffer<char> out(raw);
        const int r = LZ4_decompress_safe(p.get() + 4, out.get_write(), int(p.size() - 4), int(raw));
        if (r < 0 || std::uint32_t(r) != raw) {
            ++stats.malformed_frames;
            throw frame_error(frame_error::kind::malformed,
                              fmt::format("rpc frame from {} does not decompress", _remote), h.type, h.id);
        }
        ++stats.compressed_frames_received;
        p = std::move(out);
    }
    co_return frame{h.type, h.id, std::move(p)};
}

future<> connection::close() {
    _send_closed = true;
    _send_cv.signal();
    if (_sender) {
        auto f = std::move(*_sender);
        _sender.reset();
        co_await std::move(f);
    }
    try {
        co_await _out.close();
    } catch (...) {
    }
    try {
        co_await _in.close();
    } catch (...) {
    }
}

void connection::abort() noexcept {
    if (_aborted) {
        return;
    }
    _aborted = true;
    _socket.shutdown_input();
    _socket.shutdown_output();
}

void connection::register_stream(stream_state& s) {
    auto [it, fresh] = _streams.emplace(s.id, &s);
    if (!fresh) {
        // A peer reusing a live stream id: the new binding fails, the old one is untouched.
        s.conn = nullptr;
        throw serialization_error(fmt::format("rpc stream id {} is already in use", s.id));
    }
}

void connection::unregister_stream(stream_state& s) noexcept {
    auto it = _streams.find(s.id);
    if (it != _streams.end() && it->second == &s) {
        _streams.erase(it);
    }
}

future<> connection::deliver_stream_frame(frame&& f) {
    const bool end = f.type == wire::frame_type::stream_end;
    stream_state::item it;
    if (end) {
        try {
            input_buffer in(f.payload.get(), f.payload.size());
            if (serializer<bool>::read(in)) {
                it.error = serializer<std::string>::read(in);
                if (it.error.empty()) {
                    it.error = "stream failed";
                }
            }
        } catch (const serialization_error&) {
            ++stats.malformed_frames;
            it.error = "malformed end of stream";
        }
        it.end = true;
    } else {
        it.data = std::move(f.payload);
    }
    // Look the stream up again after every wait: its reader may have dropped it meanwhile.
    for (;;) {
        auto s = _streams.find(f.id);
        if (s == _streams.end() || !s->second->receiving || s->second->finished) {
            ++stats.stream_frames_dropped;
            co_return;
        }
        stream_state& st = *s->second;
        if (!st.items.full()) {
            st.finished = end;
            st.items.push(std::move(it));
            co_return;
        }
        try {
            co_await st.items.not_full();
        } catch (...) {
        }
    }
}

void connection::detach_streams(std::exception_ptr ex) noexcept {
    auto streams = std::move(_streams);
    _streams.clear();
    for (auto& [id, st] : streams) {
        st->conn = nullptr;
        if (st->receiving && !st->finished) {
            st->items.abort(ex);
        }
    }
}

}  // namespace internal

// ------------------------------------------------------------------------------------------------
// server

struct server::server_connection {
    std::unique_ptr<internal::connection> conn;
    net::socket_address remote;
    gate calls;
    semaphore slots;
    std::unordered_map<std::uint64_t, call_context*> running;
    std::list<server_connection*>::iterator pos;

    server_connection(net::connected_socket s, net::socket_address r, const server_options& o, traffic_stats& st)
        : conn(std::make_unique<internal::connection>(std::move(s), o, st)), remote(r),
          slots(std::max<std::size_t>(o.max_concurrent_calls, 1)) {}

    void abort_calls(const char* why) noexcept {
        std::vector<call_context*> all;
        for (auto& [id, ctx] : running) {
            all.push_back(ctx);
        }
        for (auto* ctx : all) {
            ctx->abort_signal().request_abort_ex(closed_error(why));
        }
    }
};

server::server(server_options opts) : _opts(std::move(opts)) {
    if (!_opts.metrics_name.empty()) {
        register_metrics();
    }
}

server::~server() = default;

void server::register_metrics() {
    metrics::labels l{{"server", _opts.metrics_name}};
    auto& s = _stats;
    _metrics.add_group(
        "rpc_server",
        {
            metrics::make_counter("connections_accepted_total", "Connections accepted", s.connections_accepted, l),
            metrics::make_gauge("connections_open", "Connections being served", s.connections_open, l),
            metrics::make_counter("calls_total", "Requests dispatched to a handler", s.calls, l),
            metrics::make_counter("replies_total", "Successful answers sent", s.replies, l),
            metrics::make_counter("handler_errors_total", "Handlers that failed (remote errors sent)", s.handler_errors,
                                  l),
            metrics::make_counter("unknown_verbs_total", "Requests for verbs without a handler", s.unknown_verbs, l),
            metrics::make_counter("bad_arguments_total", "Requests whose arguments did not deserialize",
                                  s.bad_arguments, l),
            metrics::make_counter("cancels_total", "Cancel frames received", s.cancels, l),
            metrics::make_counter("negotiation_failures_total", "Connections without a valid hello",
                                  s.negotiation_failures, l),
            metrics::make_counter("oversized_frames_total", "Frames over the size limit", s.oversized_frames, l),
            metrics::make_counter("truncated_frames_total", "Connections that ended inside a frame", s.truncated_frames,
                                  l),
            metrics::make_counter("malformed_frames_total", "Frames with a bad type, flags or payload",
                                  s.malformed_frames, l),
            metrics::make_counter("frames_received_total", "Frames received", s.frames_received, l),
            metrics::make_counter("frames_sent_total", "Frames sent", s.frames_sent, l),
            metrics::make_counter("bytes_received_total", "Bytes received (headers included)", s.bytes_received, l),
            metrics::make_counter("bytes_sent_total", "Bytes sent (headers included)", s.bytes_sent, l),
            metrics::make_counter("compressed_frames_sent_total", "Frames sent LZ4-compressed",
                                  s.compressed_frames_sent, l),
            metrics::make_counter("compressed_frames_received_total", "Frames received LZ4-compressed",
                                  s.compressed_frames_received, l),
        });
}

bool server::unregister_handler(verb_id verb) { return _handlers.erase(verb) != 0; }

void server::listen(net::socket_address sa, net::listen_options lo) { listen(net::listen(sa, lo)); }

void server::listen(net::server_socket s) {
    auto ss = std::make_unique<net::server_socket>(std::move(s));
    auto& ref = *ss;
    _listeners.push_back(std::move(ss));
    (void)accept_loop(ref);
}

net::socket_address server::local_address() const {
    if (_listeners.empty()) {
        throw std::logic_error("rpc::server::local_address() before listen()");
    }
    return _listeners.front()->local_address();
}

future<> server::accept_loop(net::server_socket& ss) {
    gate::holder in_gate(_gate);
    while (!_stopping) {
        net::accept_result ar;
        std::exception_ptr ex;
        try {
            ar = co_await ss.accept();
        } catch (...) {
            ex = std::current_exception();
        }
        if (ex) {
            if (_stopping) {
                break;
            }
            rpc_log.warn("accept on {}: {}", ss.local_address(), exception_message(ex));
            co_await sleep(std::chrono::milliseconds(10));
            continue;
        }
        ++_stats.connections_accepted;
        ar.connection.set_nodelay(true);
        (void)serve(std::move(ar.connection), ar.remote_address);
    }
}

future<> server::serve(net::connected_socket s, net::socket_address remote) {
    if (_stopping) {
        co_return;
    }
    gate::holder in_gate(_gate);
    server_connection c(std::move(s), remote, _opts, _stats);
    _connections.push_back(&c);
    c.pos = std::prev(_connections.end());
    ++_stats.connections_open;
    try {
        co_await serve_connection(c);
    } catch (...) {
        rpc_log.debug("connection from {}: {}", remote, exception_message(std::current_exception()));
    }
    // Nothing more will be read: calls still running can only answer into a closing socket, and
    // streams they read will get no more items.
    c.abort_calls("rpc connection closed");
    c.conn->detach_streams(std::make_exception_ptr(closed_error("rpc connection closed")));
    co_await c.calls.close();
    co_await c.conn->close();
    _connections.erase(c.pos);
    --_stats.connections_open;
}

void server::send_error(server_connection& c, std::uint64_t id, wire::error_code code, const std::string& type,
                        const std::string& msg) noexcept {
    try {
        output_buffer ob(wire::header_size);
        serializer<std::uint8_t>::write(ob, std::uint8_t(code));
        serializer<std::string>::write(ob, type);
        serializer<std::string>::write(ob, msg);
        c.conn->send(wire::frame_type::error, id, std::move(ob));
    } catch (...) {
        // The connection is going away; there is nobody to tell.
    }
}

future<> server::serve_connection(server_connection& c) {
    {
        bool timed_out = false;
        // Counted here, before the connection closes, so that whoever sees the close sees the count.
        timer<> deadline([this, &c, &timed_out] {
            timed_out = true;
            ++_stats.negotiation_failures;
            c.conn->abort();
        });
        deadline.arm(_opts.negotiation_timeout);
        std::exception_ptr ex;
        try {
            co_await c.conn->negotiate(true);
        } catch (...) {
            ex = std::current_exception();
        }
        if (ex) {
            if (!timed_out) {
                ++_stats.negotiation_failures;
            }
            std::rethrow_exception(ex);
        }
    }
    c.conn->start_sender();
    while (!_stopping) {
        internal::frame f;
        std::exception_ptr ex;
        try {
            f = co_await c.conn->read_frame();
        } catch (...) {
            ex = std::current_exception();
        }
        if (ex) {
            try {
                std::rethrow_exception(ex);
            } catch (const internal::frame_error& e) {
                if (e.what_kind == internal::frame_error::kind::oversized && e.type == wire::frame_type::request) {
                    send_error(c, e.id, wire::error_code::frame_too_large, "reef::rpc::frame_too_large", e.what());
                }
                rpc_log.debug("{}", e.what());
            }
            co_return;
        }
        if (f.type == wire::frame_type{}) {
            co_return;  // the client closed the connection
        }
        switch (f.type) {
        case wire::frame_type::request: {
            if (f.payload.size() < 12) {
                ++_stats.malformed_frames;
                rpc_log.debug("request from {} without its verb and timeout", c.remote);
                co_return;
            }
            input_buffer head(f.payload.get(), 12);
            auto verb = serializer<std::uint64_t>::read(head);
            auto timeout_ms = serializer<std::uint32_t>::read(head);
            auto units = co_await get_units(c.slots, 1);
            auto h = _handlers.find(verb);
            if (h == _handlers.end()) {
                ++_stats.unknown_verbs;
                send_error(c, f.id, wire::error_code::unknown_verb, "reef::rpc::unknown_verb",
                           fmt::format("unknown rpc verb {}", verb));
                continue;
            }
            // The arguments are read here, before the next frame: stream arguments must be bound
            // before their items arrive.
            auto ctx = std::make_unique<call_context>(c.remote, verb);
            std::unique_ptr<internal::bound_call> bc;
            std::exception_ptr bad;
            internal::binding_connection = c.conn.get();
            try {
                input_buffer in(f.payload.get() + 12, f.payload.size() - 12);
                bc = h->second.bind(*ctx, in);
            } catch (...) {
                bad = std::current_exception();
            }
            internal::binding_connection = nullptr;
            if (bad) {
                ++_stats.bad_arguments;
                send_error(c, f.id, wire::error_code::exception, internal::demangled_type_name(bad), what_of(bad));
                continue;
            }
            ++_stats.calls;
            (void)run_call(c, f.id, std::move(ctx), std::move(bc), h->second.opts.group, timeout_ms, std::move(units));
            break;
        }
        case wire::frame_type::cancel: {
            ++_stats.cancels;
            auto r = c.running.find(f.id);
            if (r != c.running.end()) {
                r->second->abort_signal().request_abort_ex(canceled_error());
            }
            break;
        }
        case wire::frame_type::stream_data:
        case wire::frame_type::stream_end: co_await c.conn->deliver_stream_frame(std::move(f)); break;
        default:
            ++_stats.malformed_frames;
            rpc_log.debug("unexpected frame type {} from client {}", unsigned(f.type), c.remote);
            co_return;
        }
    }
}

future<> server::run_call(server_connection& c, std::uint64_t id, std::unique_ptr<call_context> ctx,
                          std::unique_ptr<internal::bound_call> bc, std::optional<scheduling_group> group,
                          std::uint32_t timeout_ms, semaphore_units<> units) {
    gate::holder in_gate(c.calls);
    // `units` holds the call's slot in the connection's concurrency limit until the call is done.
    (void)units;
    call_context* cp = ctx.get();
    c.running[id] = cp;
    timer<> deadline;
    if (timeout_ms) {
        deadline.set_callback([cp] { cp->abort_signal().request_abort_ex(timeout_error()); });
        deadline.arm(std::chrono::milliseconds(timeout_ms));
    }
    output_buffer result;
    std::exception_ptr ex;
    try {
        if (group) {
            auto f = with_scheduling_group(*group, [b = bc.get()] { return b->run(); });
            result = co_await std::move(f);
        } else {
            result = co_await bc->run();
        }
    } catch (...) {
        ex = std::current_exception();
    }
    deadline.cancel();
    auto r = c.running.find(id);
    if (r != c.running.end() && r->second == cp) {
        c.running.erase(r);
    }
    if (!c.conn->send_open()) {
        co_return;  // the connection is going away: nobody to answer
    }
    if (ex) {
        ++_stats.handler_errors;
        send_error(c, id, wire::error_code::exception, internal::demangled_type_name(ex), what_of(ex));
        co_return;
    }
    try {
        c.conn->send(wire::frame_type::response, id, std::move(result));
        ++_stats.replies;
    } catch (const frame_too_large& e) {
        ++_stats.handler_errors;
        send_error(c, id, wire::error_code::exception, "reef::rpc::frame_too_large", e.what());
    } catch (...) {
    }
}

future<> server::stop() {
    if (!_stopping) {
        _stopping = true;
        for (auto& l : _listeners) {
            l->abort_accept();
        }
        for (auto* c : _connections) {
            c->abort_calls("rpc server stopping");
            c->slots.broken();
            c->conn->abort();
        }
    }
    if (!_gate.is_closed()) {
        co_await _gate.close();
    }
}

// ------------------------------------------------------------------------------------------------
// client

client::client(client_options opts) : _opts(std::move(opts)) {}

client::~client() {
    if (_reader) {
        report_misuse("rpc::client destroyed while connected (co_await stop() first)");
    }
}

const negotiated& client::negotiation() const {
    if (!_conn) {
        throw std::logic_error("rpc::client::negotiation() before connect()");
    }
    return _conn->agreed();
}

future<> client::connect(net::socket_address sa) {
    auto f = net::connect(sa);
    auto s = co_await std::move(f);
    // Named first: a by-value coroutine argument inside a co_await expression trips a GCC 12 bug.
    auto started = start(std::move(s));
    co_await std::move(started);
}

future<> client::start(net::connected_socket s) {
    if (_conn) {
        throw std::logic_error("rpc::client: connect()/start() called twice");
    }
    if (_opts.tcp_nodelay) {
        s.set_nodelay(true);
    }
    _conn = std::make_unique<internal::connection>(std::move(s), _opts, _stats);
    std::exception_ptr ex;
    {
        timer<> deadline([c = _conn.get()] { c->abort(); });
        deadline.arm(_opts.negotiation_timeout);
        try {
            co_await _conn->negotiate(false);
        } catch (...) {
            ex = std::current_exception();
        }
    }
    if (ex) {
        _closed = true;
        _close_reason = ex;
        co_await _conn->close();
        std::rethrow_exception(ex);
    }
    _conn->start_sender();
    _reader.emplace(reader_loop());
}

future<temporary_buffer<char>> client::do_call(call_options o, output_buffer ob) {
    if (!_conn || _closed) {
        if (_close_reason) {
            std::rethrow_exception(_close_reason);
        }
        throw closed_error("rpc client is not connected");
    }
    if (o.cancel && o.cancel->abort_requested()) {
        auto r = o.cancel->reason();
        std::rethrow_exception(r ? *r : std::make_exception_ptr(canceled_error()));
    }
    input_buffer head(ob.data(), 8);
    pending_call pc;
    pc.verb = serializer<std::uint64_t>::read(head);
    const auto id = ++_next_id;
    _conn->send(wire::frame_type::request, id, std::move(ob));
    ++_stats.calls;
    _pending[id] = &pc;
    auto fut = pc.pr.get_future();
    timer<> deadline;
    if (o.timeout) {
        deadline.set_callback([this, id] {
            ++_stats.timeouts;
            give_up(id, std::make_exception_ptr(timeout_error()));
        });
        deadline.arm(*o.timeout);
    }
    std::optional<abort_source::subscription> sub;
    if (o.cancel) {
        sub = o.cancel->subscribe([this, id](const abort_source::abort_reason& r) noexcept {
            ++_stats.cancels;
            give_up(id, r ? *r : std::make_exception_ptr(canceled_error()));
        });
    }
    co_return co_await std::move(fut);
}

void client::give_up(std::uint64_t id, std::exception_ptr ex) noexcept {
    auto it = _pending.find(id);
    if (it == _pending.end()) {
        return;
    }
    auto* pc = it->second;
    _pending.erase(it);
    pc->pr.set_exception(std::move(ex));
    if (_conn && _conn->agreed().has(feature::cancel) && _conn->send_open()) {
        try {
            _conn->send(wire::frame_type::cancel, id, output_buffer(wire::header_size));
        } catch (...) {
        }
    }
}

void client::complete(std::uint64_t id, internal::frame&& f) {
    auto it = _pending.find(id);
    if (it == _pending.end()) {
        ++_stats.late_replies;
        return;
    }
    auto* pc = it->second;
    _pending.erase(it);
    if (f.type == wire::frame_type::response) {
        pc->pr.set_value(std::move(f.payload));
        return;
    }
    try {
        input_buffer in(f.payload.get(), f.payload.size());
        auto code = wire::error_code(serializer<std::uint8_t>::read(in));
        auto type = serializer<std::string>::read(in);
        auto msg = serializer<std::string>::read(in);
        switch (code) {
        case wire::error_code::unknown_verb: pc->pr.set_exception(unknown_verb(pc->verb)); break;
        case wire::error_code::frame_too_large: pc->pr.set_exception(frame_too_large(msg)); break;
        default: pc->pr.set_exception(remote_error(std::move(type), std::move(msg))); break;
        }
    } catch (const serialization_error& e) {
        ++_stats.malformed_frames;
        pc->pr.set_exception(protocol_error(fmt::format("malformed error frame from the server: {}", e.what())));
    }
}

void client::fail_all(std::exception_ptr ex) noexcept {
    auto pending = std::move(_pending);
    _pending.clear();
    for (auto& [id, pc] : pending) {
        pc->pr.set_exception(ex);
    }
}

future<> client::reader_loop() {
    std::exception_ptr ex;
    try {
        for (;;) {
            auto f = co_await _conn->read_frame();
            if (f.type == wire::frame_type{}) {
                break;
            }
            switch (f.type) {
            case wire::frame_type::response:
            case wire::frame_type::error: complete(f.id, std::move(f)); break;
            case wire::frame_type::stream_data:
            case wire::frame_type::stream_end: co_await _conn->deliver_stream_frame(std::move(f)); break;
            default:
                ++_stats.malformed_frames;
                throw protocol_error(
                    fmt::format("unexpected frame type {} from server {}", unsigned(f.type), _conn->remote()));
            }
        }
    } catch (...) {
        ex = std::current_exception();
    }
    std::exception_ptr reason;
    if (_closed) {
        reason = std::make_exception_ptr(closed_error("rpc client stopped"));
    } else if (ex) {
        try {
            std::rethrow_exception(ex);
        } catch (const protocol_error&) {
            reason = ex;
        } catch (...) {
            reason = std::make_exception_ptr(
                closed_error(fmt::format("rpc connection to {} lost: {}", _conn->remote(), what_of(ex))));
        }
    } else {
        reason = std::make_exception_ptr(closed_error(fmt::format("rpc connection to {} closed", _conn->remote())));
    }
    _closed = true;
    _close_reason = reason;
    fail_all(reason);
    _conn->detach_streams(reason);
    _conn->abort();
}

future<> client::stop() {
    if (!_reader) {
        co_return;
    }
    _closed = true;
    _conn->abort();
    auto r = std::move(*_reader);
    _reader.reset();
    co_await std::move(r);
    co_await _conn->close();
}

lw_shared_ptr<internal::stream_state> client::new_stream(bool receiving) {
    if (!_conn || _closed) {
        throw closed_error("rpc client is not connected");
    }
    if (!_conn->agreed().has(feature::streams)) {
        throw error("the rpc server does not support streams");
    }
    return make_lw_shared<internal::stream_state>(_conn->next_stream_id(), _conn.get(), receiving,
                                                  _opts.stream_queue_items);
}

}  // namespace reef::rpc
