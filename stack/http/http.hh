// HTTP/1.1 message types shared by the server and the client: headers, request, reply, limits,
// status texts (RFC 9110, RFC 9112).
//
// Everything here is plain data, single-shard, no I/O. The parsing of wire bytes into these types
// lives in stack/http/parser.hh; the server (router, connections) in server.hh; the client in
// client.hh.
#pragma once

#include "runtime/future.hh"
#include "runtime/iostream.hh"
#include "stack/net/socket_address.hh"

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace reef::http {

/// Header fields in arrival order. Names compare case-insensitively (RFC 9110 5.1); values are
/// kept as received, without the surrounding whitespace.
class headers {
    std::vector<std::pair<std::string, std::string>> _v;

public:
    /// The first field named `name`, if any.
    std::optional<std::string_view> get(std::string_view name) const noexcept;
    /// Every field named `name`, joined with ", " (RFC 9110 5.3), or nullopt if none.
    std::optional<std::string> get_combined(std::string_view name) const;
    bool has(std::string_view name) const noexcept { return get(name).has_value(); }
    /// How many fields are named `name`.
    std::size_t count(std::string_view name) const noexcept;
    /// Append a field (duplicates allowed).
    void add(std::string name, std::string value) { _v.emplace_back(std::move(name), std::move(value)); }
    /// Replace every field named `name` by one with `value`.
    void set(std::string_view name, std::string value);
    /// Remove every field named `name`.
    void remove(std::string_view name) noexcept;
    std::size_t size() const noexcept { return _v.size(); }
    bool empty() const noexcept { return _v.empty(); }
    auto begin() const noexcept { return _v.begin(); }
    auto end() const noexcept { return _v.end(); }
};

/// Does `value` (a comma-separated header value) contain `token`, case-insensitively?
bool header_has_token(std::string_view value, std::string_view token) noexcept;
/// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b) noexcept;

/// A parsed request, as a handler sees it.
struct request {
    std::string method;        ///< as sent ("GET"); methods are case-sensitive (RFC 9110 9.1)
    std::string target;        ///< the request-target as sent ("/items/5?x=1")
    std::string path;          ///< its path, percent-decoded ("/items/5")
    std::string raw_path;      ///< its path as sent (routing splits this, then decodes segments)
    std::string query_string;  ///< the raw part after '?', without it
    std::vector<std::pair<std::string, std::string>> query;  ///< decoded key/value pairs, in order
    unsigned version_minor = 1;                              ///< HTTP/1.<minor> (0 or 1)
    http::headers headers;
    std::string body;  ///< whole body (chunked bodies are de-chunked)
    /// Values of the route's {parameters}, filled by the router.
    std::unordered_map<std::string, std::string> path_params;
    net::socket_address remote;

    /// A path parameter's value ("" when the route has no such parameter).
    const std::string& param(const std::string& name) const;
    /// The first query value for `key`, if any.
    std::optional<std::string_view> query_param(std::string_view key) const noexcept;
    /// Does the client want the connection kept after this request (HTTP/1.1 default yes unless
    /// "Connection: close"; HTTP/1.0 only with "Connection: keep-alive")?
    bool keep_alive() const noexcept;
};

/// A reply a handler returns. The server adds Date, Server, Content-Length (or chunked framing)
/// and Connection itself.
struct reply {
    int status = 200;
    http::headers headers;
    std::string body;
    /// Send the body with chunked transfer coding (HTTP/1.1 clients only; HTTP/1.0 gets
    /// Content-Length) — for replies produced piecewise by `writer`.
    bool chunked = false;
    /// A body the server streams instead of `body` (a large file): it calls writer(out) after the
    /// head, which must write exactly `writer_length` bytes (sent as Content-Length; never for
    /// HEAD requests). The writer may keep nothing of the stream after its future resolves.
    std::function<future<>(output_stream<char>&)> writer;
    std::uint64_t writer_length = 0;

    reply() = default;
    explicit reply(int st, std::string b = {}, std::string content_type = "text/plain; charset=utf-8");

    /// A JSON reply (Content-Type: application/json).
    static reply json(const nlohmann::json& j, int status = 200);
    /// An error reply: a short text body "<status> <reason>: <message>\n".
    static reply error(int status, std::string_view message = {});
};

/// The reason phrase of a status code ("Not Found"), "Unknown" for codes without one.
std::string_view reason_phrase(int status) noexcept;

/// Limits on what a peer may send; beyond them the server answers the status named and closes.
struct limits {
    std::size_t max_request_line = 8192;           ///< 414 URI Too Long beyond
    std::size_t max_header_bytes = 16384;          ///< the whole head; 431 beyond
    std::size_t max_headers = 100;                 ///< 431 beyond
    std::size_t max_body = std::size_t(16) << 20;  ///< 413 Content Too Large beyond
    /// The head of a request must arrive within this (slowloris): the connection is closed.
    std::chrono::milliseconds header_timeout{10000};
    /// A kept-alive connection with no request starting within this is closed.
    std::chrono::milliseconds idle_timeout{60000};
};

/// Percent-decode `s` ('+' stays '+' unless plus_is_space). nullopt for a bad escape.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space = false);
/// Split a query string into decoded key/value pairs ('+' is a space, as forms send it). Pairs
/// with bad escapes are kept undecoded.
std::vector<std::pair<std::string, std::string>> parse_query(std::string_view q);

/// The value of a Date header for `t` (RFC 9110 5.6.7 IMF-fixdate).
std::string http_date(std::chrono::system_clock::time_point t);

}  // namespace reef::http
