// HTTP/1.1 wire parsing (RFC 9112): request and response heads, body framing, chunked bodies.
// Pure functions and small incremental state machines over bytes; no I/O, no allocation beyond
// the strings they fill. The server and the client feed them from input_streams.
//
// Strictness (what a proxy-facing server needs against request smuggling and header injection):
// lines end with CRLF only — a bare CR or a bare LF in a head is an error; no whitespace between
// a field name and its colon; no obsolete line folding; Content-Length must be digits, and
// several must agree; Transfer-Encoding together with Content-Length is refused; a transfer
// coding other than chunked gets 501; HTTP/1.1 requests need exactly one Host.
#pragma once

#include "stack/http/http.hh"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace reef::http {

/// Why a request cannot be served: the status to answer and a message naming the problem.
struct parse_error {
    int status;
    std::string message;
};

/// Collects a message head (start line + fields + the empty line) from buffers of any size,
/// enforcing the request-line and head-size limits while bytes arrive (so an endless line is
/// refused after max_line bytes, not after the connection's whole input).
class head_reader {
    std::string _head;
    std::size_t _max_line;
    std::size_t _max_head;
    bool _done = false;
    std::optional<parse_error> _error;

public:
    head_reader(std::size_t max_line, std::size_t max_head) : _max_line(max_line), _max_head(max_head) {}
    /// Take bytes from `data`; returns how many were used (all, unless the head ended inside
    /// `data`: then the rest belongs to the body or the next message). After done() or error(),
    /// feed() uses nothing.
    std::size_t feed(std::string_view data);
    bool done() const noexcept { return _done; }
    const std::optional<parse_error>& error() const noexcept { return _error; }
    /// Bytes received so far (nothing yet means a clean end of a kept-alive connection).
    bool started() const noexcept { return !_head.empty(); }
    const std::string& head() const noexcept { return _head; }
};

/// Parse a complete request head (as head_reader collected it) into `req` (method, target, path,
/// query, version, headers). Returns the error to answer instead: 400 (malformed), 414 (request
/// line too long), 431 (too many fields), 505 (not HTTP/1.x).
std::optional<parse_error> parse_request_head(std::string_view head, const limits& lim, request& req);

/// How the body of a message is delimited.
struct body_framing {
    enum class kind { none, length, chunked, until_close } how = kind::none;
    std::uint64_t length = 0;
};

/// The body framing a parsed request asks for (RFC 9112 6.3), or the error to answer: 400 for
/// conflicting or malformed lengths, 501 for an unknown transfer coding, 413 when the declared
/// length exceeds lim.max_body.
std::optional<parse_error> request_body_framing(const request& req, const limits& lim, body_framing& out);

/// Decodes a chunked body (RFC 9112 7.1) from buffers of any size into `out`, up to max_body
/// bytes of data; chunk extensions are ignored, trailer fields are read and dropped (bounded by
/// max_trailer bytes).
class chunked_decoder {
public:
    chunked_decoder(std::size_t max_body, std::size_t max_trailer) : _max_body(max_body), _max_trailer(max_trailer) {}
    /// Take bytes from `data`, appending chunk data to `out`; returns how many were used (all,
    /// unless the body ended inside `data`). After done() or error(), uses nothing.
    std::size_t feed(std::string_view data, std::string& out);
    bool done() const noexcept { return _state == state::done; }
    /// 400 for malformed framing, 413 past max_body.
    const std::optional<parse_error>& error() const noexcept { return _error; }

private:
    enum class state { size, size_ext, size_lf, data, data_cr, data_lf, trailer, trailer_lf, done };
    state _state = state::size;
    std::uint64_t _chunk = 0;  // bytes left in the current chunk (or size being parsed)
    unsigned _size_digits = 0;
    std::size_t _max_body;
    std::size_t _max_trailer;
    std::size_t _trailer_bytes = 0;
    std::size_t _line_bytes = 0;  // bytes in the current trailer line
    std::size_t _body = 0;
    std::optional<parse_error> _error;

    void fail(int status, std::string msg);
};

/// A response as the client receives it.
struct response {
    int status = 0;
    std::string reason;
    unsigned version_minor = 1;
    http::headers headers;
    std::string body;
    /// May the connection carry another request after this response?
    bool keep_alive() const noexcept;
};

/// Parse a complete response head into `r` (status, reason, version, headers). Returns an error
/// message instead when it is malformed.
std::optional<std::string> parse_response_head(std::string_view head, response& r);

/// The body framing of a response to a request of method `method` (RFC 9112 6.3: HEAD, 1xx, 204
/// and 304 have none; chunked; Content-Length; else until the connection closes). nullopt-free:
/// malformed lengths give an error message.
std::optional<std::string> response_body_framing(const response& r, std::string_view method, body_framing& out);

}  // namespace reef::http
