// HTTP/1.1 server: a router of handlers by method and path pattern, and a per-shard server that
// serves connections of the network API (posix or native stack; TLS through tls::wrap).
//
//   http::router r;
//   r.add("GET", "/items/{id}", [](http::request& req) -> future<http::reply> {
//       co_return http::reply::json({{"id", req.param("id")}});
//   });
//   http::server s(std::move(r));        // one per shard (sharded<http::server> in an app)
//   s.listen(net::socket_address::parse("0.0.0.0:8080"));
//   ...
//   co_await s.stop();                   // finishes in-flight requests, closes the rest
//
// Per connection, requests are read and answered one after another, so pipelined requests get
// their replies in order. Keep-alive per HTTP/1.1 (HTTP/1.0 with "Connection: keep-alive").
// Request bodies: Content-Length or chunked, read whole (bounded by limits::max_body) before the
// handler runs; "Expect: 100-continue" is answered before the body is read (417 for other
// expectations). Errors are answered with the protocol's status and the connection closed:
// 400 malformed, 413 body too large, 414 request line too long, 431 head too large or too many
// fields, 501 unknown transfer coding, 505 not HTTP/1.x; 404 no route, 405 route exists for other
// methods (with Allow); 500 when a handler throws (the connection stays open). A head that does
// not arrive within limits::header_timeout (slowloris), or no request on a kept-alive connection
// within limits::idle_timeout, closes the connection. Every outcome is counted (server_stats).
//
// Shards: a server object belongs to the shard that created it; listen() there binds that
// shard's socket (the stack spreads connections over shards, e.g. SO_REUSEPORT on posix).
#pragma once

#include "runtime/future.hh"
#include "runtime/gate.hh"
#include "stack/http/http.hh"
#include "stack/net/api.hh"

#include <array>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

namespace reef::http {

/// A request handler. It may keep `req` only until its future resolves. An exception (or an
/// exceptional future) becomes a 500 reply.
using handler = std::function<future<reply>(request& req)>;

/// Handlers by method and path pattern. Patterns are '/'-separated segments: a literal segment
/// matches itself; "{name}" matches one non-empty segment (its percent-decoded value becomes
/// req.param("name")); a last segment "{name*}" matches the rest of the path, slashes included
/// (possibly empty). Literal segments win over parameters at the same position; among patterns
/// of equal specificity the first added wins.
class router {
public:
    /// Register `h` for `method` ("GET", ...; "HEAD" requests also use GET routes) on `pattern`.
    /// Throws std::invalid_argument for a pattern not starting with '/' or with a misplaced "*".
    void add(std::string method, std::string pattern, handler h);
    /// The reply for `req`: its handler's, 404, or 405 with an Allow header. Fills
    /// req.path_params.
    future<reply> dispatch(request& req) const;

private:
    struct route {
        std::string method;
        std::vector<std::string> segments;  // "{name}" / "{name*}" for parameters
        handler h;
        unsigned literal_count = 0;
    };
    std::vector<route> _routes;

    static bool match(const route& r, const std::vector<std::string_view>& path,
                      std::unordered_map<std::string, std::string>* params);
};

/// What a server counted on this shard.
struct server_stats {
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_open = 0;
    std::uint64_t requests = 0;                       ///< requests read whole and dispatched
    std::array<std::uint64_t, 6> replies_by_class{};  ///< index status/100 (1xx..5xx)
    std::uint64_t bad_requests = 0;                   ///< answered 400/413/414/417/431/501/505 while parsing
    std::uint64_t handler_errors = 0;                 ///< handlers that threw (500)
    std::uint64_t timeouts = 0;                       ///< connections closed by header or idle timeout
};

class server {
public:
    explicit server(router r, limits lim = {}, std::string server_name = "reef");
    server(const server&) = delete;
    server& operator=(const server&) = delete;
    /// stop() must have resolved (or listen/serve never called).
    ~server();

    /// Listen on `sa` (this shard's socket) and serve what arrives until stop(). Throws like
    /// net::listen (std::system_error naming the address).
    void listen(net::socket_address sa, net::listen_options opts = {});
    /// Serve what an already listening socket accepts (e.g. tls::listen's) until stop().
    void listen(net::server_socket ss);
    /// The address the first listen() bound (the port the stack chose for port 0).
    net::socket_address local_address() const;
    /// Serve one connected socket until it closes (any stream: TLS sessions come this way).
    /// Never fails; resolves when the connection is done.
    future<> serve(net::connected_socket s, net::socket_address remote);
    /// Stop accepting, let requests being handled finish (their replies say Connection: close),
    /// close idle connections; resolves when every connection is gone. Idempotent.
    future<> stop();

    const server_stats& stats() const noexcept { return _stats; }
    const limits& get_limits() const noexcept { return _limits; }

private:
    struct connection;
    router _router;
    limits _limits;
    std::string _name;
    std::list<std::unique_ptr<net::server_socket>> _listeners;
    std::list<connection*> _connections;
    gate _gate;
    server_stats _stats;
    bool _stopping = false;
    std::int64_t _date_second = -1;
    std::string _date;

    future<> accept_loop(net::server_socket& ss);
    future<> serve_connection(connection& c);
    future<> refuse(connection& c, const request* req, int status, std::string msg);
    const std::string& date();
    std::string reply_head(const request* req, reply& rep, bool keep_alive, std::size_t body_len);
    void count_reply(int status) noexcept;
};

}  // namespace reef::http
