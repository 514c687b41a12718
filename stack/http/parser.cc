#include "stack/http/parser.hh"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace reef::http {

namespace {

// RFC 9110 5.6.2 tchar.
bool is_tchar(char c) noexcept {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~': return true;
    default: return false;
    }
}

bool is_token(std::string_view s) noexcept {
    if (s.empty()) {
        return false;
    }
    for (char c : s) {
        if (!is_tchar(c)) {
            return false;
        }
    }
    return true;
}

// Field values: visible characters, spaces, tabs and obs-text; no controls (a NUL or a lone CR
// inside a value is how header injection starts).
bool is_field_value(std::string_view s) noexcept {
    for (unsigned char c : s) {
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
    }
    return true;
}

std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

bool parse_u64(std::string_view s, std::uint64_t& v) noexcept {
    if (s.empty() || s.size() > 19) {
        return false;
    }
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Split a head into lines (CRLF-terminated; the head ends with an empty line). Returns false for
// a bare CR or LF.
template <typename F>
bool for_each_line(std::string_view head, F&& f) {
    std::size_t pos = 0;
    while (pos < head.size()) {
        std::size_t lf = head.find('\n', pos);
        if (lf == std::string_view::npos || lf == pos || head[lf - 1] != '\r') {
            return false;
        }
        std::string_view line = head.substr(pos, lf - 1 - pos);
        if (line.find('\r') != std::string_view::npos) {
            return false;
        }
        if (!f(line)) {
            return true;  // the callback stopped (it recorded its own error)
        }
        pos = lf + 1;
    }
    return true;
}

// Parse "name: value" field lines into `h`. Returns an error message, or nullopt.
std::optional<std::string> parse_field_line(std::string_view line, headers& h) {
    if (line.front() == ' ' || line.front() == '\t') {
        return "obsolete line folding is not accepted";
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos) {
        return fmt::format("header line without a colon: \"{}\"", line.substr(0, 64));
    }
    std::string_view name = line.substr(0, colon);
    if (!is_token(name)) {
        return fmt::format("invalid header name \"{}\"", name.substr(0, 64));
    }
    std::string_view value = trim_ows(line.substr(colon + 1));
    if (!is_field_value(value)) {
        return fmt::format("control character in the value of header {}", name);
    }
    h.add(std::string(name), std::string(value));
    return std::nullopt;
}

}  // namespace

std::size_t head_reader::feed(std::string_view data) {
    if (_done || _error) {
        return 0;
    }
    std::size_t used = 0;
    // A client may send empty lines before a request (RFC 9112 2.2): skip them.
    while (_head.empty() && used < data.size() && (data[used] == '\r' || data[used] == '\n')) {
        ++used;
    }
    if (used == data.size()) {
        return used;
    }
    const std::size_t old = _head.size();
    // Take at most one byte past the limit: enough to know it was exceeded.
    const std::size_t take = std::min(data.size() - used, _max_head + 1 - std::min(old, _max_head));
    _head.append(data.data() + used, take);
    auto end = _head.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
    if (end != std::string::npos && end + 4 <= _max_head) {
        const std::size_t head_len = end + 4;
        _head.resize(head_len);
        _done = true;
        return used + (head_len - old);
    }
    const auto first_lf = _head.find('\n');
    if ((first_lf == std::string::npos ? _head.size() : first_lf) > _max_line) {
        _error = parse_error{414, fmt::format("request line longer than {} bytes", _max_line)};
    } else if (_head.size() > _max_head || end != std::string::npos) {
        _error = parse_error{431, fmt::format("request head longer than {} bytes", _max_head)};
    }
    return used + take;
}

std::optional<parse_error> parse_request_head(std::string_view head, const limits& lim, request& req) {
    std::optional<parse_error> err;
    bool first = true;
    bool ok = for_each_line(head, [&](std::string_view line) {
        if (first) {
            first = false;
            if (line.size() > lim.max_request_line) {
                err = parse_error{414, fmt::format("request line longer than {} bytes", lim.max_request_line)};
                return false;
            }
            auto sp1 = line.find(' ');
            auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
            if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
                err = parse_error{400, "malformed request line (want METHOD SP TARGET SP HTTP/1.x)"};
                return false;
            }
            std::string_view method = line.substr(0, sp1);
            std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
            std::string_view version = line.substr(sp2 + 1);
            if (!is_token(method)) {
                err = parse_error{400, "invalid method"};
                return false;
            }
            if (target.empty()) {
                err = parse_error{400, "empty request target"};
                return false;
            }
            for (unsigned char c : target) {
                if (c <= 0x20 || c == 0x7f) {
                    err = parse_error{400, "control character or space in the request target"};
                    return false;
                }
            }
            if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
                version[5] > '9' || version[7] < '0' || version[7] > '9') {
                err = parse_error{400, fmt::format("malformed HTTP version \"{}\"", version.substr(0, 16))};
                return false;
            }
            if (version[5] != '1') {
                err = parse_error{505,
                                  fmt::format("HTTP/{}.{} is not supported (HTTP/1.x only)", version[5], version[7])};
                return false;
            }
            req.method = std::string(method);
            req.target = std::string(target);
            req.version_minor = version[7] == '0' ? 0 : 1;
            // origin-form: path [ "?" query ]; also absolute-form (a proxy request) by its path,
            // and "*" for OPTIONS.
            std::string_view t = target;
            if (t != "*" && t.front() != '/') {
                auto scheme = t.find("://");
                if (scheme == std::string_view::npos) {
                    err = parse_error{400, "request target is neither a path nor an absolute URI"};
                    return false;
                }
                auto slash = t.find('/', scheme + 3);
                t = slash == std::string_view::npos ? std::string_view("/") : t.substr(slash);
            }
            auto q = t.find('?');
            std::string_view path = t.substr(0, q);
            if (q != std::string_view::npos) {
                req.query_string = std::string(t.substr(q + 1));
                req.query = parse_query(req.query_string);
            }
            auto dp = percent_decode(path);
            if (!dp) {
                err = parse_error{400, "bad percent-escape in the request path"};
                return false;
            }
            req.path = std::move(*dp);
            req.raw_path = std::string(path);
            return true;
        }
        if (line.empty()) {
            return true;  // the terminating empty line
        }
        if (req.headers.size() >= lim.max_headers) {
            err = parse_error{431, fmt::format("more than {} header fields", lim.max_headers)};
            return false;
        }
        if (auto e = parse_field_line(line, req.headers)) {
            err = parse_error{400, std::move(*e)};
            return false;
        }
        return true;
    });
    if (err) {
        return err;
    }
    if (!ok || first) {
        return parse_error{400, "lines must end with CRLF (bare CR or LF found)"};
    }
    if (req.version_minor == 1) {
        std::size_t hosts = req.headers.count("Host");
        if (hosts != 1) {
            return parse_error{400, hosts ? "more than one Host header" : "HTTP/1.1 request without a Host header"};
        }
    }
    return std::nullopt;
}

std::optional<parse_error> request_body_framing(const request& req, const limits& lim, body_framing& out) {
    out = body_framing{};
    auto te = req.headers.get_combined("Transfer-Encoding");
    std::size_t cls = req.headers.count("Content-Length");
    if (te) {
        if (cls) {
            return parse_error{400, "both Transfer-Encoding and Content-Length"};
        }
        if (req.version_minor == 0) {
            return parse_error{400, "Transfer-Encoding in an HTTP/1.0 request"};
        }
        // Only "chunked", and it must come last (RFC 9112 6.3): anything else is not understood.
        if (!iequals(trim_ows(*te), "chunked")) {
            return parse_error{501, fmt::format("transfer coding \"{}\" is not supported", te->substr(0, 64))};
        }
        out.how = body_framing::kind::chunked;
        return std::nullopt;
    }
    if (cls) {
        auto all = *req.headers.get_combined("Content-Length");
        // "5, 5" (duplicates agreeing) is accepted; anything else is an error (RFC 9110 8.6).
        std::uint64_t v = 0;
        bool first = true;
        std::string_view rest = all;
        while (true) {
            auto comma = rest.find(',');
            std::uint64_t n;
            if (!parse_u64(trim_ows(rest.substr(0, comma)), n)) {
                return parse_error{400, fmt::format("invalid Content-Length \"{}\"", all.substr(0, 64))};
            }
            if (!first && n != v) {
                return parse_error{400, "Content-Length values disagree"};
            }
            v = n;
            first = false;
            if (comma == std::string_view::npos) {
                break;
            }
            rest.remove_prefix(comma + 1);
        }
        if (v > lim.max_body) {
            return parse_error{413, fmt::format("body of {} bytes; the limit is {}", v, lim.max_body)};
        }
        out.how = v ? body_framing::kind::length : body_framing::kind::none;
        out.length = v;
    }
    return std::nullopt;
}

void chunked_decoder::fail(int status, std::string msg) { _error = parse_error{status, std::move(msg)}; }

std::size_t chunked_decoder::feed(std::string_view data, std::string& out) {
    std::size_t i = 0;
    while (i < data.size() && !_error && _state != state::done) {
        char c = data[i];
        switch (_state) {
        case state::size: {
            int h = (c >= '0' && c <= '9')   ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
            if (h >= 0) {
                if (++_size_digits > 15) {
                    fail(400, "chunk size too long");
                    break;
                }
                _chunk = _chunk * 16 + unsigned(h);
                ++i;
            } else if (_size_digits == 0) {
                fail(400, "invalid chunk size");
            } else if (c == ';' || c == ' ' || c == '\t') {
                _state = state::size_ext;
                ++i;
            } else if (c == '\r') {
                _state = state::size_lf;
                ++i;
            } else {
                fail(400, "invalid chunk size");
            }
            break;
        }
        case state::size_ext:
            // Extensions are ignored; their length counts against the trailer allowance.
            if (c == '\r') {
                _state = state::size_lf;
            } else if (c == '\n' || ++_trailer_bytes > _max_trailer) {
                fail(400, "malformed or oversized chunk extension");
                break;
            }
            ++i;
            break;
        case state::size_lf:
            if (c != '\n') {
                fail(400, "chunk size line not ended by CRLF");
                break;
            }
            ++i;
            if (_chunk == 0) {
                _state = state::trailer;
                _line_bytes = 0;
            } else {
                if (_body + _chunk > _max_body) {
                    fail(413, fmt::format("chunked body over the limit of {} bytes", _max_body));
                    break;
                }
                _state = state::data;
            }
            _size_digits = 0;
            break;
        case state::data: {
            std::size_t n = std::min<std::uint64_t>(_chunk, data.size() - i);
            out.append(data.data() + i, n);
            _body += n;
            _chunk -= n;
            i += n;
            if (_chunk == 0) {
                _state = state::data_cr;
            }
            break;
        }
        case state::data_cr:
            if (c != '\r') {
                fail(400, "chunk data not followed by CRLF");
                break;
            }
            _state = state::data_lf;
            ++i;
            break;
        case state::data_lf:
            if (c != '\n') {
                fail(400, "chunk data not followed by CRLF");
                break;
            }
            _state = state::size;
            _chunk = 0;
            ++i;
            break;
        case state::trailer:
            // Trailer lines until an empty one; their content is dropped.
            if (c == '\r') {
                _state = state::trailer_lf;
            } else if (c == '\n') {
                fail(400, "bare LF in the chunked trailer");
                break;
            } else {
                ++_line_bytes;
            }
            if (++_trailer_bytes > _max_trailer) {
                fail(431, "chunked trailer too large");
                break;
            }
            ++i;
            break;
        case state::trailer_lf:
            if (c != '\n') {
                fail(400, "bare CR in the chunked trailer");
                break;
            }
            ++i;
            if (_line_bytes == 0) {
                _state = state::done;
            } else {
                _state = state::trailer;
                _line_bytes = 0;
            }
            break;
        case state::done: break;
        }
    }
    return i;
}

bool response::keep_alive() const noexcept {
    auto c = headers.get_combined("Connection");
    if (version_minor == 0) {
        return c && header_has_token(*c, "keep-alive");
    }
    return !(c && header_has_token(*c, "close"));
}

std::optional<std::string> parse_response_head(std::string_view head, response& r) {
    std::optional<std::string> err;
    bool first = true;
    bool ok = for_each_line(head, [&](std::string_view line) {
        if (first) {
            first = false;
            // HTTP/1.1 SP 3DIGIT SP reason
            if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || (line[7] != '0' && line[7] != '1') ||
                line[8] != ' ') {
                err = fmt::format("malformed status line \"{}\"", line.substr(0, 64));
                return false;
            }
            int st = 0;
            for (int k = 9; k < 12; ++k) {
                if (line[std::size_t(k)] < '0' || line[std::size_t(k)] > '9') {
                    err = fmt::format("malformed status code in \"{}\"", line.substr(0, 64));
                    return false;
                }
                st = st * 10 + (line[std::size_t(k)] - '0');
            }
            r.status = st;
            r.version_minor = line[7] == '0' ? 0 : 1;
            r.reason = line.size() > 13 ? std::string(line.substr(13)) : std::string();
            return true;
        }
        if (line.empty()) {
            return true;
        }
        if (auto e = parse_field_line(line, r.headers)) {
            err = std::move(*e);
            return false;
        }
        return true;
    });
    if (err) {
        return err;
    }
    if (!ok || first) {
        return std::string("lines must end with CRLF");
    }
    return std::nullopt;
}

std::optional<std::string> response_body_framing(const response& r, std::string_view method, body_framing& out) {
    out = body_framing{};
    if (method == "HEAD" || (r.status >= 100 && r.status < 200) || r.status == 204 || r.status == 304) {
        return std::nullopt;
    }
    if (auto te = r.headers.get_combined("Transfer-Encoding")) {
        if (!header_has_token(*te, "chunked")) {
            out.how = body_framing::kind::until_close;
            return std::nullopt;
        }
        out.how = body_framing::kind::chunked;
        return std::nullopt;
    }
    if (auto cl = r.headers.get("Content-Length")) {
        std::uint64_t v;
        if (!parse_u64(trim_ows(*cl), v)) {
            return fmt::format("invalid Content-Length \"{}\"", cl->substr(0, 64));
        }
        out.how = v ? body_framing::kind::length : body_framing::kind::none;
        out.length = v;
        return std::nullopt;
    }
    out.how = body_framing::kind::until_close;
    return std::nullopt;
}

}  // namespace reef::http
