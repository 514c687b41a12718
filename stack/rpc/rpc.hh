// RPC over the network API: a server that answers verbs registered by id, and a client that calls
// them over one connected_socket, many calls in flight at once (each request carries an id; the
// answers come back in any order). docs/rpc.md specifies the wire format and the serializer.
//
//   // server (one per shard; e.g. a member of a sharded<> service)
//   rpc::server srv({.metrics_name = "kv"});
//   srv.register_handler(1, [](std::string key) -> future<std::optional<std::string>> { ... });
//   srv.register_handler(2, [](rpc::call_context& ctx, std::uint32_t ms) -> future<> {
//       co_await sleep_abortable(std::chrono::milliseconds(ms), ctx.abort_signal());
//   });
//   srv.listen(net::socket_address::parse("127.0.0.1:7000"));
//   ...
//   co_await srv.stop();
//
//   // client
//   rpc::client c;
//   co_await c.connect(net::socket_address::parse("127.0.0.1:7000"));
//   auto v = co_await c.call<std::optional<std::string>>(1, std::string("k"));
//   co_await c.call({.timeout = 100ms}, 2, std::uint32_t(1000));    // fails with rpc::timeout_error
//   co_await c.stop();
//
// Contract, for every type here:
//  - Single-shard: a client, a server, their streams and futures belong to the shard that made them.
//  - Arguments are serialized before call() returns (they may die right after); the handler's
//    parameter types and the caller's argument types must have the same serialized form
//    (stack/rpc/serializer.hh), since nothing on the wire names types.
//  - Errors: every failure of a call is an rpc::error: remote_error (the handler threw),
//    unknown_verb, timeout_error, canceled_error, frame_too_large, closed_error (the connection
//    ended, or was never up), protocol_error (the peer broke the protocol). A broken connection
//    fails every call in flight at once; it is not reconnected (make a new client).
//  - Negotiation: each side sends a hello (protocol version, feature bits, largest frame it
//    accepts); both then use the lower version and the intersection of the features, and neither
//    sends a frame larger than the other accepts.
#pragma once

#include "runtime/abort_source.hh"
#include "runtime/condition_variable.hh"
#include "runtime/future.hh"
#include "runtime/gate.hh"
#include "runtime/iostream.hh"
#include "runtime/metrics.hh"
#include "runtime/queue.hh"
#include "runtime/reactor.hh"
#include "runtime/semaphore.hh"
#include "runtime/shared_ptr.hh"
#include "runtime/timer.hh"
#include "stack/net/api.hh"
#include "stack/rpc/serializer.hh"
#include "stack/rpc/wire.hh"

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace reef::rpc {

using verb_id = std::uint64_t;

/// This implementation's protocol version.
inline constexpr std::uint16_t protocol_version = 1;

/// Feature bits of the hello. Unknown bits of a newer peer are ignored (the intersection drops them).
namespace feature {
inline constexpr std::uint64_t lz4 = 1ull << 0;      ///< payloads above a threshold are LZ4-compressed
inline constexpr std::uint64_t streams = 1ull << 1;  ///< stream_data/stream_end frames (sink/source)
inline constexpr std::uint64_t cancel = 1ull << 2;   ///< cancel frames (the server aborts the handler)
inline constexpr std::uint64_t all = lz4 | streams | cancel;
}  // namespace feature

// ------------------------------------------------------------------------------------------------
// Errors

/// Base of every RPC failure.
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};
/// The connection is closed or was lost (calls in flight fail with it).
class closed_error : public error {
public:
    using error::error;
};
/// The call's timeout expired before the answer came.
class timeout_error : public error {
public:
    timeout_error() : error("rpc call timed out") {}
};
/// The call was cancelled through its abort_source.
class canceled_error : public error {
public:
    canceled_error() : error("rpc call canceled") {}
};
/// A frame larger than the receiver accepts (locally: nothing was sent; remotely: the server
/// refused the request and closed the connection).
class frame_too_large : public error {
public:
    using error::error;
};
/// The peer broke the protocol (bad hello, malformed or truncated frame).
class protocol_error : public error {
public:
    using error::error;
};
/// The handler failed: its exception's type name (demangled, e.g. "std::out_of_range") and message.
class remote_error : public error {
    std::string _type;
    std::string _message;

public:
    remote_error(std::string type, std::string message);
    const std::string& type_name() const noexcept { return _type; }
    const std::string& message() const noexcept { return _message; }
};
/// The server has no handler for the verb.
class unknown_verb : public error {
    verb_id _verb;

public:
    explicit unknown_verb(verb_id v);
    verb_id verb() const noexcept { return _verb; }
};

// ------------------------------------------------------------------------------------------------
// Options and statistics

/// What both ends of a connection configure.
struct connection_options {
    /// Features offered in the hello (the connection uses those both offer).
    std::uint64_t features = feature::all;
    /// Version announced in the hello (lower it only to test older peers).
    std::uint16_t version = protocol_version;
    /// Largest frame payload accepted from the peer (announced in the hello). A larger frame is
    /// counted as oversized and closes the connection (the server first answers the request with
    /// frame_too_large).
    std::uint32_t max_frame_size = 16u << 20;
    /// With lz4 agreed, payloads of at least this many bytes are sent compressed (when that makes
    /// them smaller).
    std::size_t compress_threshold = 256;
    /// Received stream items queued per stream before the connection stops reading (back-pressure).
    std::size_t stream_queue_items = 16;
    /// Queued outgoing bytes above which a stream sink's writes wait for the socket.
    std::size_t send_queue_bytes = 1u << 20;
    /// A peer that does not complete its hello within this time is disconnected.
    std::chrono::milliseconds negotiation_timeout{10000};
};

/// The agreed parameters of a connection (known once connect()/the server's hello is done).
struct negotiated {
    std::uint16_t version = 0;
    std::uint64_t features = 0;
    std::uint32_t peer_max_frame_size = 0;  ///< largest payload we may send
    bool has(std::uint64_t f) const noexcept { return (features & f) == f; }
};

/// Per-connection traffic counters (a client's, or summed into a server's).
struct traffic_stats {
    std::uint64_t frames_sent = 0;
    std::uint64_t frames_received = 0;
    std::uint64_t bytes_sent = 0;  ///< on the wire (headers and compressed payloads)
    std::uint64_t bytes_received = 0;
    std::uint64_t compressed_frames_sent = 0;
    std::uint64_t compressed_frames_received = 0;
    std::uint64_t oversized_frames = 0;       ///< received frames over max_frame_size
    std::uint64_t truncated_frames = 0;       ///< the connection ended inside a frame or hello
    std::uint64_t malformed_frames = 0;       ///< bad type/flags, undecodable payload, bad hello
    std::uint64_t stream_frames_dropped = 0;  ///< items for a stream nobody reads any more
};

struct client_options : connection_options {
    /// TCP_NODELAY on the connection (small calls go out at once).
    bool tcp_nodelay = true;
    /// Timeout of calls that give none.
    std::optional<std::chrono::milliseconds> default_timeout;
};

struct client_stats : traffic_stats {
    std::uint64_t calls = 0;
    std::uint64_t timeouts = 0;
    std::uint64_t cancels = 0;
    std::uint64_t late_replies = 0;  ///< answers to calls that had already timed out or been cancelled
};

struct server_options : connection_options {
    /// Non-empty: the server's counters are registered as metrics "rpc_server_*" with the label
    /// server=<name> on this shard (two servers on one shard need different names).
    std::string metrics_name;
    /// Calls of one connection running at once; the connection is not read further while full.
    std::size_t max_concurrent_calls = 1024;
};

struct server_stats : traffic_stats {
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_open = 0;
    std::uint64_t calls = 0;           ///< requests dispatched to a handler
    std::uint64_t replies = 0;         ///< successful answers sent
    std::uint64_t handler_errors = 0;  ///< handlers that failed (answered with a remote error)
    std::uint64_t unknown_verbs = 0;
    std::uint64_t bad_arguments = 0;         ///< arguments that did not deserialize
    std::uint64_t cancels = 0;               ///< cancel frames received
    std::uint64_t negotiation_failures = 0;  ///< bad magic, or no hello in time
};

// ------------------------------------------------------------------------------------------------
// Internals shared by client, server and streams

namespace internal {

class connection;

/// One end of a stream on a connection. Receiving ends queue the items the peer sent.
struct stream_state {
    struct item {
        temporary_buffer<char> data;
        bool end = false;
        std::string error;  // non-empty: the sender failed the stream
    };
    std::uint64_t id = 0;
    connection* conn = nullptr;  // null once the connection is gone
    bool receiving = false;
    bool finished = false;  // end received (receiving side) or sent (sending side)
    queue<item> items;

    stream_state(std::uint64_t i, connection* c, bool recv, std::size_t depth);
    ~stream_state();
    stream_state(const stream_state&) = delete;
    stream_state& operator=(const stream_state&) = delete;
};

/// A received frame (payload already decompressed).
struct frame {
    wire::frame_type type{};
    std::uint64_t id = 0;
    temporary_buffer<char> payload;
};

/// Why a frame could not be read.
class frame_error : public protocol_error {
public:
    enum class kind { truncated, oversized, malformed };
    kind what_kind;
    wire::frame_type type{};
    std::uint64_t id = 0;
    frame_error(kind k, std::string msg, wire::frame_type t = {}, std::uint64_t i = 0)
        : protocol_error(std::move(msg)), what_kind(k), type(t), id(i) {}
};

/// The framed, negotiated connection that clients and servers build on: a read side (one reader
/// at a time) and a send queue drained by one sender fiber.
class connection {
public:
    connection(net::connected_socket s, const connection_options& opts, traffic_stats& stats);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    /// Send our hello and read the peer's; as the server, answer with the agreed values. Fails with
    /// protocol_error (bad magic), frame_error (truncated) or the socket's error.
    future<> negotiate(bool as_server);
    const negotiated& agreed() const noexcept { return _agreed; }

    /// Start the sender fiber (after negotiate()).
    void start_sender();
    /// The next frame; a frame of type 0 with an empty payload at a clean end of stream. Throws
    /// frame_error for truncated, oversized or malformed frames.
    future<frame> read_frame();

    /// Queue a frame. `payload` must have wire::header_size bytes of headroom. Throws
    /// frame_too_large (payload over the peer's limit) or closed_error (sender gone).
    void send(wire::frame_type t, std::uint64_t id, output_buffer&& payload);
    /// Resolves when the send queue is below its high-water mark (stream back-pressure).
    future<> wait_send_room();
    /// Stop the sender once the queue is drained, and close the output (and the input).
    future<> close();
    /// Shut the socket down both ways now (pending reads end; writes fail).
    void abort() noexcept;

    bool send_open() const noexcept { return !_send_closed && !_aborted && !_send_error; }
    std::exception_ptr send_error() const noexcept { return _send_error; }
    const net::socket_address& remote() const noexcept { return _remote; }

    // Streams of this connection.
    std::uint64_t next_stream_id() noexcept { return ++_last_stream_id; }
    void register_stream(stream_state& s);
    void unregister_stream(stream_state& s) noexcept;
    /// Deliver a stream frame to its receiver (waits while its queue is full).
    future<> deliver_stream_frame(frame&& f);
    /// The connection is going away: fail receivers that have not seen their end, detach every state.
    void detach_streams(std::exception_ptr ex) noexcept;

    connection_options opts;
    traffic_stats& stats;

private:
    net::connected_socket _socket;
    net::socket_address _remote;
    input_stream<char> _in;
    output_stream<char> _out;
    negotiated _agreed;
    std::deque<temporary_buffer<char>> _sendq;
    std::size_t _queued_bytes = 0;
    condition_variable _send_cv;  // the sender waits for frames
    condition_variable _room_cv;  // stream writers wait for room
    bool _send_closed = false;
    bool _sender_running = false;
    bool _aborted = false;
    std::exception_ptr _send_error;
    std::optional<future<>> _sender;
    std::uint64_t _last_stream_id = 0;
    std::unordered_map<std::uint64_t, stream_state*> _streams;

    future<> sender_loop();
};

/// Set while a server deserializes a request's arguments, so that stream arguments bind to the
/// connection they arrived on.
inline thread_local connection* binding_connection = nullptr;

std::string demangled_type_name(const std::exception_ptr& ex);

}  // namespace internal

// ------------------------------------------------------------------------------------------------
// Streams

/// The sending end of a stream of T. Made by client::make_sink<T>() and passed as a call argument
/// (the handler takes a source<T>); or received by a handler whose parameter is sink<T> (the
/// caller passed a source<T>). Copies share one stream.
template <typename T>
class sink {
    lw_shared_ptr<internal::stream_state> _st;

public:
    sink() = default;
    explicit sink(lw_shared_ptr<internal::stream_state> st) noexcept : _st(std::move(st)) {}

    /// Send one item. Resolves once it is queued for the socket and the queue is below its
    /// high-water mark (so a fast writer waits for the network). Fails with closed_error when the
    /// connection is gone or the stream was closed, frame_too_large when the item is too big.
    future<> operator()(const T& item) {
        try {
            check();
            output_buffer ob(wire::header_size);
            serializer<T>::write(ob, item);
            _st->conn->send(wire::frame_type::stream_data, _st->id, std::move(ob));
            return _st->conn->wait_send_room();
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
    }
    /// End the stream (the source reads end of stream after the items sent before). With `failure`,
    /// the source's next read fails with remote_error("rpc::stream_error", failure) instead.
    /// Closing twice, or after the connection is gone, does nothing.
    future<> close(std::string failure = {}) {
        if (!_st || _st->finished || !_st->conn) {
            return make_ready_future<>();
        }
        _st->finished = true;
        try {
            output_buffer ob(wire::header_size);
            serializer<bool>::write(ob, !failure.empty());
            serializer<std::string>::write(ob, failure);
            _st->conn->send(wire::frame_type::stream_end, _st->id, std::move(ob));
            return _st->conn->wait_send_room();
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
    }
    std::uint64_t stream_id() const noexcept { return _st ? _st->id : 0; }
    explicit operator bool() const noexcept { return bool(_st); }

private:
    void check() const {
        if (!_st || !_st->conn) {
            throw closed_error("rpc stream: the connection is closed");
        }
        if (_st->finished) {
            throw closed_error("rpc stream: write after close()");
        }
    }
};

/// The receiving end of a stream of T (see sink). Items arrive in the order they were sent.
template <typename T>
class source {
    lw_shared_ptr<internal::stream_state> _st;

public:
    source() = default;
    explicit source(lw_shared_ptr<internal::stream_state> st) noexcept : _st(std::move(st)) {}

    /// The next item, or nullopt at the end of the stream. Fails with closed_error if the
    /// connection ended before the end, remote_error if the sender closed it with a failure,
    /// serialization_error for an item that does not decode as T. One read at a time.
    future<std::optional<T>> operator()() {
        if (!_st) {
            return make_exception_future<std::optional<T>>(closed_error("rpc stream: empty source"));
        }
        return _st->items.pop_eventually().then([](internal::stream_state::item it) -> std::optional<T> {
            if (it.end) {
                if (!it.error.empty()) {
                    throw remote_error("rpc::stream_error", std::move(it.error));
                }
                return std::nullopt;
            }
            input_buffer in(it.data.get(), it.data.size());
            return serializer<T>::read(in);
        });
    }
    std::uint64_t stream_id() const noexcept { return _st ? _st->id : 0; }
    explicit operator bool() const noexcept { return bool(_st); }
};

// A stream argument travels as its stream id. The receiving end binds it to the connection the
// request came on (internal::binding_connection): a caller's sink becomes the handler's source
// and the other way round.
template <typename T>
struct serializer<sink<T>> {
    static void write(output_buffer& out, const sink<T>& s) { serializer<std::uint64_t>::write(out, s.stream_id()); }
    static sink<T> read(input_buffer& in);
};
template <typename T>
struct serializer<source<T>> {
    static void write(output_buffer& out, const source<T>& s) { serializer<std::uint64_t>::write(out, s.stream_id()); }
    static source<T> read(input_buffer& in);
};

namespace internal {
lw_shared_ptr<stream_state> bind_stream(input_buffer& in, bool receiving);
}

template <typename T>
sink<T> serializer<sink<T>>::read(input_buffer& in) {
    return sink<T>(internal::bind_stream(in, false));
}
template <typename T>
source<T> serializer<source<T>>::read(input_buffer& in) {
    return source<T>(internal::bind_stream(in, true));
}

// ------------------------------------------------------------------------------------------------
// Server

/// What a handler may learn about its call (declare `rpc::call_context&` as its first parameter).
class call_context {
public:
    call_context(net::socket_address remote, verb_id v) noexcept : _remote(remote), _verb(v) {}
    /// Fires when the caller cancels or times out (the call's timeout travels with the request),
    /// or when the server stops or the connection is lost. Long handlers should watch it.
    reef::abort_source& abort_signal() noexcept { return _as; }
    const net::socket_address& remote_address() const noexcept { return _remote; }
    verb_id verb() const noexcept { return _verb; }

private:
    reef::abort_source _as;
    net::socket_address _remote;
    verb_id _verb;
};

/// Per-verb settings.
struct handler_options {
    /// The scheduling group the handler (and all its continuations) runs in.
    std::optional<scheduling_group> group;
};

namespace internal {

template <typename T>
struct function_traits : function_traits<decltype(&T::operator())> {};
template <typename R, typename... A>
struct function_traits<R (*)(A...)> {
    using result = R;
    using args = std::tuple<A...>;
};
template <typename R, typename... A>
struct function_traits<R (*)(A...) noexcept> : function_traits<R (*)(A...)> {};
template <typename C, typename R, typename... A>
struct function_traits<R (C::*)(A...) const> : function_traits<R (*)(A...)> {};
template <typename C, typename R, typename... A>
struct function_traits<R (C::*)(A...)> : function_traits<R (*)(A...)> {};
template <typename C, typename R, typename... A>
struct function_traits<R (C::*)(A...) const noexcept> : function_traits<R (*)(A...)> {};
template <typename C, typename R, typename... A>
struct function_traits<R (C::*)(A...) noexcept> : function_traits<R (*)(A...)> {};

template <typename T>
struct unwrap_future {
    using type = T;
};
template <typename T>
struct unwrap_future<future<T>> {
    using type = T;
};

/// A request whose arguments are deserialized, ready to run the handler.
struct bound_call {
    virtual ~bound_call() = default;
    virtual future<output_buffer> run() = 0;
};

/// Deserializes the arguments of a request for one handler: returns the bound call.
using handler_binder = std::function<std::unique_ptr<bound_call>(call_context&, input_buffer&)>;

template <typename R>
output_buffer serialize_result(R&& r) {
    output_buffer ob(wire::header_size);
    serializer<std::decay_t<R>>::write(ob, r);
    return ob;
}

template <typename F, bool WithContext, typename... A>
struct bound_call_impl final : bound_call {
    lw_shared_ptr<F> f;  // shared with the registration, so unregistering mid-call is safe
    call_context& ctx;
    std::tuple<A...> args;

    bound_call_impl(lw_shared_ptr<F> fn, call_context& c, std::tuple<A...>&& a)
        : f(std::move(fn)), ctx(c), args(std::move(a)) {}

    future<output_buffer> run() override {
        auto invoke = [this] {
            return std::apply(
                [this](A&... a) {
                    if constexpr (WithContext) {
                        return (*f)(ctx, std::move(a)...);
                    } else {
                        return (*f)(std::move(a)...);
                    }
                },
                args);
        };
        using R = typename unwrap_future<std::invoke_result_t<decltype(invoke)>>::type;
        if constexpr (std::is_void_v<R>) {
            return futurize_invoke(invoke).then([] { return output_buffer(wire::header_size); });
        } else {
            return futurize_invoke(invoke).then([](R r) { return serialize_result(std::move(r)); });
        }
    }
};

template <typename F, typename ArgsTuple>
struct binder_for;
template <typename F, typename First, typename... Rest>
    requires std::is_same_v<std::decay_t<First>, call_context>
struct binder_for<F, std::tuple<First, Rest...>> {
    static handler_binder make(lw_shared_ptr<F> f) {
        return [f = std::move(f)](call_context& ctx, input_buffer& in) -> std::unique_ptr<bound_call> {
            std::tuple<std::decay_t<Rest>...> args{serializer<std::decay_t<Rest>>::read(in)...};
            return std::make_unique<bound_call_impl<F, true, std::decay_t<Rest>...>>(f, ctx, std::move(args));
        };
    }
};
template <typename F, typename... A>
struct binder_for<F, std::tuple<A...>> {
    static handler_binder make(lw_shared_ptr<F> f) {
        return [f = std::move(f)](call_context& ctx, input_buffer& in) -> std::unique_ptr<bound_call> {
            std::tuple<std::decay_t<A>...> args{serializer<std::decay_t<A>>::read(in)...};
            return std::make_unique<bound_call_impl<F, false, std::decay_t<A>...>>(f, ctx, std::move(args));
        };
    }
};

}  // namespace internal

/// Serves verbs on connections: one request at a time is read per connection, and each runs as
/// its own fiber (answers go out as they finish, in any order).
///
/// Bad input: a request for an unknown verb is answered with unknown_verb, arguments that do not
/// deserialize with a remote_error of type "reef::rpc::serialization_error" (the connection
/// stays); an oversized frame is answered with frame_too_large and the connection closed; a
/// truncated or malformed frame or a bad hello closes the connection. Each is counted
/// (server_stats, and the rpc_server_* metrics); other connections are unaffected.
class server {
public:
    explicit server(server_options opts = {});
    server(const server&) = delete;
    server& operator=(const server&) = delete;
    /// stop() must have resolved (or nothing was served).
    ~server();

    /// Register (or replace) the handler of `verb`. `f` is a callable (not a generic lambda) taking
    /// the call's arguments, optionally preceded by `rpc::call_context&`, returning a value, void or
    /// a future of either; a throw or a failed future is sent back as a remote_error. `f` is kept
    /// (moved) until unregistered and the calls using it are done.
    template <typename F>
    void register_handler(verb_id verb, F f, handler_options o = {}) {
        using traits = internal::function_traits<std::decay_t<F>>;
        auto fp = make_lw_shared<std::decay_t<F>>(std::move(f));
        _handlers[verb] = handler_entry{internal::binder_for<std::decay_t<F>, typename traits::args>::make(fp), o};
    }
    /// Remove a verb's handler (calls already running finish). Returns whether there was one.
    bool unregister_handler(verb_id verb);

    /// Listen on `sa` (this shard's socket) and serve what arrives until stop(). Throws like
    /// net::listen.
    void listen(net::socket_address sa, net::listen_options lo = {});
    /// Serve what an already listening socket accepts until stop().
    void listen(net::server_socket ss);
    /// The address the first listen() bound.
    net::socket_address local_address() const;
    /// Serve one connected socket until it closes. Never fails.
    future<> serve(net::connected_socket s, net::socket_address remote);
    /// Stop accepting, abort every call in flight (their call_context's abort source fires), close
    /// every connection at once (clients see closed_error), and resolve when all handlers have
    /// returned. Idempotent.
    future<> stop();

    const server_stats& stats() const noexcept { return _stats; }
    const server_options& options() const noexcept { return _opts; }

private:
    struct handler_entry {
        internal::handler_binder bind;
        handler_options opts;
    };
    struct server_connection;
    server_options _opts;
    std::unordered_map<verb_id, handler_entry> _handlers;
    std::list<std::unique_ptr<net::server_socket>> _listeners;
    std::list<server_connection*> _connections;
    gate _gate;
    server_stats _stats;
    bool _stopping = false;
    metrics::metric_groups _metrics;

    future<> accept_loop(net::server_socket& ss);
    future<> serve_connection(server_connection& c);
    future<> run_call(server_connection& c, std::uint64_t id, std::unique_ptr<call_context> ctx,
                      std::unique_ptr<internal::bound_call> bc, std::optional<scheduling_group> group,
                      std::uint32_t timeout_ms, semaphore_units<> units);
    void send_error(server_connection& c, std::uint64_t id, wire::error_code code, const std::string& type,
                    const std::string& msg) noexcept;
    void register_metrics();
};

// ------------------------------------------------------------------------------------------------
// Client

/// Per-call settings.
struct call_options {
    /// Give up after this long (timeout_error); the server is told (its abort source fires).
    std::optional<std::chrono::milliseconds> timeout;
    /// Give up when this fires (canceled_error, or the exception given to request_abort_ex);
    /// it must outlive the call's future.
    abort_source* cancel = nullptr;
};

/// One connection to a server; any number of calls in flight on it.
class client {
public:
    explicit client(client_options opts = {});
    client(const client&) = delete;
    client& operator=(const client&) = delete;
    /// stop() must have resolved if connect()/start() was called.
    ~client();

    /// Connect to `sa` and negotiate. Fails with the network's std::system_error, or protocol_error
    /// when the peer is not an RPC server. Once.
    future<> connect(net::socket_address sa);
    /// Negotiate over an already connected socket. Once.
    future<> start(net::connected_socket s);

    /// Call `verb` with `args`; resolves with the handler's result as R (void: none). See the
    /// file comment for the errors.
    template <typename R = void, typename... A>
    future<R> call(verb_id verb, const A&... args) {
        return call<R>(call_options{}, verb, args...);
    }
    template <typename R = void, typename... A>
    future<R> call(call_options o, verb_id verb, const A&... args) {
        output_buffer ob(wire::header_size);
        try {
            if (!o.timeout) {
                o.timeout = _opts.default_timeout;
            }
            serializer<std::uint64_t>::write(ob, verb);
            serializer<std::uint32_t>::write(
                ob, o.timeout ? std::uint32_t(std::max<std::int64_t>(1, o.timeout->count())) : 0u);
            (serializer<std::decay_t<A>>::write(ob, args), ...);
        } catch (...) {
            return make_exception_future<R>(std::current_exception());
        }
        auto f = do_call(o, std::move(ob));
        if constexpr (std::is_void_v<R>) {
            return f.discard_result();
        } else {
            return f.then([](temporary_buffer<char> b) {
                input_buffer in(b.get(), b.size());
                return serializer<R>::read(in);
            });
        }
    }

    /// A new stream to send T items on; pass it as a call argument (the handler takes source<T>).
    /// Throws closed_error when not connected, error when the peer does not support streams.
    template <typename T>
    sink<T> make_sink() {
        return sink<T>(new_stream(false));
    }
    /// A new stream to receive T items on; pass it as a call argument (the handler takes sink<T>).
    template <typename T>
    source<T> make_source() {
        return source<T>(new_stream(true));
    }

    /// Close the connection: calls in flight fail with closed_error; streams end. Idempotent.
    future<> stop();

    bool is_connected() const noexcept { return _conn && !_closed; }
    /// The agreed version and features (after connect()).
    const negotiated& negotiation() const;
    const client_stats& stats() const noexcept { return _stats; }

private:
    struct pending_call {
        promise<temporary_buffer<char>> pr;
        verb_id verb = 0;
    };
    client_options _opts;
    client_stats _stats;
    std::unique_ptr<internal::connection> _conn;
    std::unordered_map<std::uint64_t, pending_call*> _pending;
    std::uint64_t _next_id = 0;
    bool _closed = false;
    std::exception_ptr _close_reason;
    std::optional<future<>> _reader;

    future<temporary_buffer<char>> do_call(call_options o, output_buffer ob);
    future<> reader_loop();
    void fail_all(std::exception_ptr ex) noexcept;
    void complete(std::uint64_t id, internal::frame&& f);
    void give_up(std::uint64_t id, std::exception_ptr ex) noexcept;
    lw_shared_ptr<internal::stream_state> new_stream(bool receiving);
};

}  // namespace reef::rpc
