#include "stack/http/client.hh"

#include "runtime/coroutine.hh"

#include <fmt/format.h>

#include <stdexcept>

namespace reef::http {

struct client::connection {
    net::connected_socket socket;
    input_stream<char> in;
    output_stream<char> out;
};

client::client(net::socket_address server, std::size_t max_idle, std::size_t max_response_body)
    : _server(server), _max_idle(max_idle), _max_body(max_response_body) {}

client::~client() = default;

future<std::unique_ptr<client::connection>> client::connect() {
    auto c = std::make_unique<connection>();
    auto f = net::connect(_server);
    c->socket = co_await std::move(f);
    c->in = c->socket.input();
    c->out = c->socket.output();
    ++_opened;
    co_return std::move(c);
}

future<response> client::post(std::string target, std::string body, std::string content_type) {
    headers h;
    h.add("Content-Type", std::move(content_type));
    return request("POST", std::move(target), std::move(h), std::move(body));
}

future<response> client::exchange(connection& c, const std::string& wire, const std::string& method,
                                  bool& nothing_read) {
    nothing_read = true;
    co_await c.out.write(wire);
    co_await c.out.flush();
    response r;
    while (true) {
        head_reader hr(65536, 65536);
        co_await c.in.consume([&](temporary_buffer<char> buf) -> consumption_result<char> {
            if (buf.empty()) {
                return stop_consuming<char>(std::move(buf));
            }
            nothing_read = false;
            std::size_t n = hr.feed(std::string_view(buf.get(), buf.size()));
            if (hr.done() || hr.error()) {
                buf.trim_front(n);
                return stop_consuming<char>(std::move(buf));
            }
            return continue_consuming{};
        });
        if (!hr.done()) {
            throw std::runtime_error(fmt::format(
                "HTTP {}: {}", _server,
                hr.error() ? hr.error()->message : std::string("connection closed before a complete response")));
        }
        r = response{};
        if (auto err = parse_response_head(hr.head(), r)) {
            throw std::runtime_error(fmt::format("HTTP {}: {}", _server, *err));
        }
        if (r.status >= 100 && r.status < 200 && r.status != 101) {
            continue;  // interim (100 Continue): the real response follows
        }
        break;
    }
    body_framing bf;
    if (auto err = response_body_framing(r, method, bf)) {
        throw std::runtime_error(fmt::format("HTTP {}: {}", _server, *err));
    }
    switch (bf.how) {
    case body_framing::kind::none: break;
    case body_framing::kind::length: {
        if (bf.length > _max_body) {
            throw std::runtime_error(
                fmt::format("HTTP {}: response body of {} bytes over the limit", _server, bf.length));
        }
        auto b = co_await c.in.read_exactly(bf.length);
        if (b.size() < bf.length) {
            throw std::runtime_error(fmt::format("HTTP {}: connection closed mid-body", _server));
        }
        r.body.assign(b.get(), b.size());
        break;
    }
    case body_framing::kind::chunked: {
        chunked_decoder dec(_max_body, 65536);
        co_await c.in.consume([&](temporary_buffer<char> buf) -> consumption_result<char> {
            if (buf.empty()) {
                return stop_consuming<char>(std::move(buf));
            }
            std::size_t n = dec.feed(std::string_view(buf.get(), buf.size()), r.body);
            if (dec.done() || dec.error()) {
                buf.trim_front(n);
                return stop_consuming<char>(std::move(buf));
            }
            return continue_consuming{};
        });
        if (!dec.done()) {
            throw std::runtime_error(fmt::format(
                "HTTP {}: {}", _server, dec.error() ? dec.error()->message : std::string("chunked body cut short")));
        }
        break;
    }
    case body_framing::kind::until_close:
        while (true) {
            auto b = co_await c.in.read();
            if (b.empty()) {
                break;
            }
            if (r.body.size() + b.size() > _max_body) {
                throw std::runtime_error(fmt::format("HTTP {}: response body over the limit", _server));
            }
            r.body.append(b.get(), b.size());
        }
        r.headers.set("Connection", "close");  // not reusable
        break;
    }
    co_return r;
}

future<response> client::request(std::string method, std::string target, headers h, std::string body) {
    std::string wire = fmt::format("{} {} HTTP/1.1\r\n", method, target);
    if (!h.has("Host")) {
        wire += fmt::format("Host: {}\r\n", _server);
    }
    for (auto& [k, v] : h) {
        if (iequals(k, "Content-Length")) {
            continue;
        }
        wire += fmt::format("{}: {}\r\n", k, v);
    }
    if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
        wire += fmt::format("Content-Length: {}\r\n", body.size());
    }
    wire += "\r\n";
    wire += body;
    for (int attempt = 0; attempt < 2; ++attempt) {
        std::unique_ptr<connection> c;
        bool reused = false;
        if (!_idle.empty()) {
            c = std::move(_idle.back());
            _idle.pop_back();
            reused = true;
        } else {
            auto f = connect();
            c = co_await std::move(f);
        }
        bool nothing_read = true;
        std::exception_ptr ex;
        response r;
        try {
            auto f = exchange(*c, wire, method, nothing_read);
            r = co_await std::move(f);
        } catch (...) {
            ex = std::current_exception();
        }
        if (!ex) {
            bool reusable = r.keep_alive();
            auto f = release(std::move(c), reusable);
            co_await std::move(f);
            co_return r;
        }
        {
            auto f = release(std::move(c), false);
            co_await std::move(f);
        }
        if (!(reused && nothing_read)) {
            std::rethrow_exception(ex);
        }
        // A reused connection the server had already closed: once more on a fresh one.
    }
    throw std::logic_error("unreachable");
}

future<> client::release(std::unique_ptr<connection> c, bool reusable) {
    if (reusable && _idle.size() < _max_idle) {
        _idle.push_back(std::move(c));
        co_return;
    }
    try {
        co_await c->out.close();
    } catch (...) {
    }
    c->socket.shutdown_input();
    try {
        co_await c->in.close();
    } catch (...) {
    }
}

future<> client::close() {
    auto idle = std::move(_idle);
    for (auto& c : idle) {
        auto f = release(std::move(c), false);
        co_await std::move(f);
    }
}

}  // namespace reef::http
