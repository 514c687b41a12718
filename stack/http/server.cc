#include "stack/http/server.hh"

#include "runtime/coroutine.hh"
#include "runtime/future_util.hh"
#include "runtime/log.hh"
#include "runtime/timer.hh"
#include "stack/http/parser.hh"

#include <fmt/format.h>

#include <stdexcept>

namespace reef::http {

namespace {

logger http_log("http");

std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    // "/a/b" -> {"a", "b"}; "/" -> {}; "/a/" -> {"a", ""}
    if (!path.empty() && path.front() == '/') {
        path.remove_prefix(1);
    }
    if (path.empty()) {
        return out;
    }
    while (true) {
        auto slash = path.find('/');
        out.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) {
            break;
        }
        path.remove_prefix(slash + 1);
    }
    return out;
}

bool is_param(std::string_view seg) noexcept { return seg.size() >= 2 && seg.front() == '{' && seg.back() == '}'; }
bool is_rest_param(std::string_view seg) noexcept {
    return is_param(seg) && seg.size() >= 3 && seg[seg.size() - 2] == '*';
}

}  // namespace

// ---- router

void router::add(std::string method, std::string pattern, handler h) {
    if (pattern.empty() || pattern.front() != '/') {
        throw std::invalid_argument(fmt::format("route pattern \"{}\" must start with '/'", pattern));
    }
    route r;
    r.method = std::move(method);
    r.h = std::move(h);
    auto segs = split_path(pattern);
    for (std::size_t i = 0; i < segs.size(); ++i) {
        std::string_view s = segs[i];
        if (is_rest_param(s) && i + 1 != segs.size()) {
            throw std::invalid_argument(
                fmt::format("route pattern \"{}\": {{name*}} must be the last segment", pattern));
        }
        if (!is_param(s) && (s.find('{') != std::string_view::npos || s.find('}') != std::string_view::npos)) {
            throw std::invalid_argument(
                fmt::format("route pattern \"{}\": a parameter must be a whole segment", pattern));
        }
        if (!is_param(s)) {
            ++r.literal_count;
        }
        r.segments.emplace_back(s);
    }
    _routes.push_back(std::move(r));
}

bool router::match(const route& r, const std::vector<std::string_view>& path,
                   std::unordered_map<std::string, std::string>* params) {
    const auto& segs = r.segments;
    std::size_t i = 0;
    for (; i < segs.size(); ++i) {
        const std::string& s = segs[i];
        if (is_rest_param(s)) {
            if (params) {
                std::string rest;
                for (std::size_t k = i; k < path.size(); ++k) {
                    if (k > i) {
                        rest += '/';
                    }
                    rest += path[k];
                }
                (*params)[s.substr(1, s.size() - 3)] = std::move(rest);
            }
            return true;
        }
        if (i >= path.size()) {
            return false;
        }
        if (is_param(s)) {
            if (path[i].empty()) {
                return false;
            }
            if (params) {
                (*params)[s.substr(1, s.size() - 2)] = std::string(path[i]);
            }
        } else if (s != path[i]) {
            return false;
        }
    }
    return i == path.size();
}

future<reply> router::dispatch(request& req) const {
    // Split the path as sent, then decode each segment: an escaped '/' ("%2F") stays inside its
    // segment instead of creating a new one.
    std::vector<std::string> decoded;
    for (auto seg : split_path(req.raw_path.empty() ? std::string_view(req.path) : std::string_view(req.raw_path))) {
        auto d = percent_decode(seg);
        decoded.push_back(d ? std::move(*d) : std::string(seg));
    }
    std::vector<std::string_view> path(decoded.begin(), decoded.end());
    const std::string_view method = req.method == "HEAD" ? std::string_view("GET") : std::string_view(req.method);
    const route* best = nullptr;
    std::string allow;
    for (auto& r : _routes) {
        if (!match(r, path, nullptr)) {
            continue;
        }
        if (r.method == method || r.method == req.method) {
            if (!best || r.literal_count > best->literal_count) {
                best = &r;
            }
        } else if (allow.find(r.method) == std::string::npos) {
            if (!allow.empty()) {
                allow += ", ";
            }
            allow += r.method;
            if (r.method == "GET") {
                allow += ", HEAD";
            }
        }
    }
    if (!best) {
        if (!allow.empty()) {
            reply rep = reply::error(405, fmt::format("{} is not allowed on {}", req.method, req.path));
            rep.headers.set("Allow", allow);
            return make_ready_future<reply>(std::move(rep));
        }
        return make_ready_future<reply>(reply::error(404, fmt::format("no route for {}", req.path)));
    }
    req.path_params.clear();
    match(*best, path, &req.path_params);
    try {
        return best->h(req);
    } catch (...) {
        return make_exception_future<reply>(std::current_exception());
    }
}

// ---- server

struct server::connection {
    net::connected_socket socket;
    net::socket_address remote;
    input_stream<char> in;
    output_stream<char> out;
    bool idle = true;  // waiting for a request to start (stop() may close it at once)
    bool timed_out = false;
    std::list<connection*>::iterator pos;
};

server::server(router r, limits lim, std::string server_name)
    : _router(std::move(r)), _limits(lim), _name(std::move(server_name)) {}

server::~server() = default;

void server::listen(net::socket_address sa, net::listen_options opts) { listen(net::listen(sa, opts)); }

void server::listen(net::server_socket s) {
    auto ss = std::make_unique<net::server_socket>(std::move(s));
    auto& ref = *ss;
    _listeners.push_back(std::move(ss));
    (void)accept_loop(ref);
}

net::socket_address server::local_address() const {
    if (_listeners.empty()) {
        throw std::logic_error("http::server::local_address() before listen()");
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
            // EMFILE and the like: say so, and keep the listener (a burst of connections must not
            // end the server).
            http_log.warn("accept on {}: {}", ss.local_address(), exception_message(ex));
            co_await sleep(std::chrono::milliseconds(10));
            continue;
        }
        ++_stats.connections_accepted;
        (void)serve(std::move(ar.connection), ar.remote_address);
    }
}

const std::string& server::date() {
    auto now = std::chrono::system_clock::now();
    auto sec = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    if (sec != _date_second) {
        _date_second = sec;
        _date = http_date(now);
    }
    return _date;
}

void server::count_reply(int status) noexcept {
    unsigned cls = unsigned(status) / 100;
    if (cls < _stats.replies_by_class.size()) {
        ++_stats.replies_by_class[cls];
    }
}

std::string server::reply_head(const request* req, reply& rep, bool keep_alive, std::size_t body_len) {
    std::string h;
    h.reserve(160 + body_len / 64);
    h += fmt::format("HTTP/1.1 {} {}\r\nDate: {}\r\nServer: {}\r\n", rep.status, reason_phrase(rep.status), date(),
                     _name);
    for (auto& [k, v] : rep.headers) {
        // The framing fields are the server's business; a handler's would contradict them.
        if (iequals(k, "Content-Length") || iequals(k, "Transfer-Encoding") || iequals(k, "Connection")) {
            continue;
        }
        h += k;
        h += ": ";
        h += v;
        h += "\r\n";
    }
    const bool no_body_status = (rep.status >= 100 && rep.status < 200) || rep.status == 204 || rep.status == 304;
    if (!no_body_status) {
        if (rep.chunked && !rep.writer && req && req->version_minor == 1) {
            h += "Transfer-Encoding: chunked\r\n";
        } else {
            h += fmt::format("Content-Length: {}\r\n", body_len);
        }
    }
    if (!keep_alive) {
        h += "Connection: close\r\n";
    } else if (req && req->version_minor == 0) {
        h += "Connection: keep-alive\r\n";
    }
    h += "\r\n";
    return h;
}

future<> server::serve(net::connected_socket s, net::socket_address remote) {
    if (_stopping) {
        co_return;
    }
    gate::holder in_gate(_gate);
    connection c;
    c.socket = std::move(s);
    c.remote = remote;
    c.in = c.socket.input();
    c.out = c.socket.output();
    _connections.push_back(&c);
    c.pos = std::prev(_connections.end());
    ++_stats.connections_open;
    try {
        co_await serve_connection(c);
    } catch (...) {
        // A reset peer, a write to a closed socket: nothing to answer any more.
        http_log.debug("connection from {}: {}", remote, exception_message(std::current_exception()));
    }
    try {
        co_await c.out.close();
    } catch (...) {
    }
    try {
        co_await c.in.close();
    } catch (...) {
    }
    _connections.erase(c.pos);
    --_stats.connections_open;
}

// Answer a request we will not serve (the connection closes after).
future<> server::refuse(connection& c, const request* req, int status, std::string msg) {
    ++_stats.bad_requests;
    reply rep = reply::error(status, msg);
    count_reply(status);
    std::string out = reply_head(req, rep, false, rep.body.size());
    out += rep.body;
    co_await c.out.write(out);
    co_await c.out.flush();
}

future<> server::serve_connection(connection& c) {
    timer<> deadline([&c] {
        c.timed_out = true;
        c.socket.shutdown_input();  // the pending read ends; the loop closes the connection
    });
    while (!_stopping) {
        request req;
        req.remote = c.remote;
        head_reader hr(_limits.max_request_line, _limits.max_header_bytes);
        c.idle = true;
        deadline.arm(_limits.idle_timeout);
        co_await c.in.consume([&](temporary_buffer<char> buf) -> consumption_result<char> {
            if (buf.empty()) {
                return stop_consuming<char>(std::move(buf));
            }
            if (!hr.started()) {
                c.idle = false;
                deadline.rearm(steady_clock_type::now() + _limits.header_timeout);
            }
            std::size_t n = hr.feed(std::string_view(buf.get(), buf.size()));
            if (hr.done() || hr.error()) {
                buf.trim_front(n);
                return stop_consuming<char>(std::move(buf));
            }
            return continue_consuming{};
        });
        deadline.cancel();
        c.idle = false;
        if (!hr.done()) {
            if (c.timed_out) {
                ++_stats.timeouts;
                if (hr.started()) {
                    {
                        auto f = refuse(c, nullptr, 408, "the request head did not arrive in time");
                        co_await std::move(f);
                    }
                }
            } else if (hr.error()) {
                {
                    auto f = refuse(c, nullptr, hr.error()->status, hr.error()->message);
                    co_await std::move(f);
                }
            }
            co_return;  // end of stream (a clean close when nothing had started)
        }
        if (auto err = parse_request_head(hr.head(), _limits, req)) {
            {
                auto f = refuse(c, nullptr, err->status, err->message);
                co_await std::move(f);
            }
            co_return;
        }
        body_framing bf;
        if (auto err = request_body_framing(req, _limits, bf)) {
            {
                auto f = refuse(c, &req, err->status, err->message);
                co_await std::move(f);
            }
            co_return;
        }
        if (auto expect = req.headers.get("Expect")) {
            if (!iequals(*expect, "100-continue")) {
                {
                    auto f = refuse(c, &req, 417, fmt::format("unsupported expectation \"{}\"", expect->substr(0, 64)));
                    co_await std::move(f);
                }
                co_return;
            }
            if (bf.how != body_framing::kind::none && req.version_minor == 1) {
                co_await c.out.write(std::string_view("HTTP/1.1 100 Continue\r\n\r\n"));
                co_await c.out.flush();
            }
        }
        // The body, under the header timeout too (a body trickled forever is the same attack).
        deadline.arm(_limits.header_timeout);
        if (bf.how == body_framing::kind::length) {
            auto body = co_await c.in.read_exactly(bf.length);
            if (body.size() < bf.length) {
                deadline.cancel();
                if (c.timed_out) {
                    ++_stats.timeouts;
                }
                co_return;  // the client went away mid-body
            }
            req.body.assign(body.get(), body.size());
        } else if (bf.how == body_framing::kind::chunked) {
            chunked_decoder dec(_limits.max_body, _limits.max_header_bytes);
            bool eof = false;
            co_await c.in.consume([&](temporary_buffer<char> buf) -> consumption_result<char> {
                if (buf.empty()) {
                    eof = true;
                    return stop_consuming<char>(std::move(buf));
                }
                std::size_t n = dec.feed(std::string_view(buf.get(), buf.size()), req.body);
                if (dec.done() || dec.error()) {
                    buf.trim_front(n);
                    return stop_consuming<char>(std::move(buf));
                }
                return continue_consuming{};
            });
            if (dec.error()) {
                deadline.cancel();
                {
                    auto f = refuse(c, &req, dec.error()->status, dec.error()->message);
                    co_await std::move(f);
                }
                co_return;
            }
            if (eof || !dec.done()) {
                deadline.cancel();
                if (c.timed_out) {
                    ++_stats.timeouts;
                }
                co_return;
            }
        }
        deadline.cancel();

        ++_stats.requests;
        const bool keep = req.keep_alive() && !_stopping;
        reply rep;
        try {
            auto f = _router.dispatch(req);
            rep = co_await std::move(f);
        } catch (...) {
            ++_stats.handler_errors;
            http_log.error("{} {}: handler failed: {}", req.method, req.target,
                           exception_message(std::current_exception()));
            rep = reply::error(500);
        }
        count_reply(rep.status);
        const bool head_only = req.method == "HEAD";
        if (rep.writer) {
            std::string head = reply_head(&req, rep, keep && !_stopping, rep.writer_length);
            co_await c.out.write(head);
            if (!head_only) {
                auto f = rep.writer(c.out);
                co_await std::move(f);
            }
            co_await c.out.flush();
            if (!keep || _stopping) {
                co_return;
            }
            continue;
        }
        const bool chunked = rep.chunked && req.version_minor == 1;
        std::string out = reply_head(&req, rep, keep && !_stopping, rep.body.size());
        if (!head_only && !(rep.status == 204 || rep.status == 304 || rep.status < 200)) {
            if (chunked) {
                if (!rep.body.empty()) {
                    out += fmt::format("{:x}\r\n", rep.body.size());
                    out += rep.body;
                    out += "\r\n";
                }
                out += "0\r\n\r\n";
            } else {
                out += rep.body;
            }
        }
        co_await c.out.write(out);
        co_await c.out.flush();
        if (!keep || _stopping) {
            co_return;
        }
    }
}

future<> server::stop() {
    if (!_stopping) {
        _stopping = true;
        for (auto& l : _listeners) {
            l->abort_accept();
        }
        // Connections waiting for a request have nothing in flight: end them now. The others
        // finish the request they are on and then close (they see _stopping).
        for (connection* c : _connections) {
            if (c->idle) {
                c->socket.shutdown_input();
            }
        }
    }
    if (!_gate.is_closed()) {
        co_await _gate.close();
    }
}

}  // namespace reef::http
