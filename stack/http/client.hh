// HTTP/1.1 client over the network API, with connection reuse.
//
//   http::client cl(net::socket_address::parse("127.0.0.1:8080"));
//   http::response r = co_await cl.get("/items/5");
//   co_await cl.close();
//
// Requests on one client object run one at a time per connection; concurrent requests open more
// connections (up to no limit); connections whose response allowed keep-alive go back to an idle
// pool (at most max_idle) and are reused. A reused connection that turns out closed before any
// byte of the response arrived (the server timed it out) is retried once on a new connection.
// Responses: Content-Length, chunked, or delimited by close; 1xx interim responses are skipped.
// Errors (cannot connect, malformed response, connection lost mid-response) fail the returned
// future with std::runtime_error/std::system_error naming the server and the problem.
//
// Shard: a client belongs to the shard that created it.
#pragma once

#include "runtime/future.hh"
#include "stack/http/parser.hh"
#include "stack/net/api.hh"

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace reef::http {

class client {
public:
    explicit client(net::socket_address server, std::size_t max_idle = 8,
                    std::size_t max_response_body = std::size_t(64) << 20);
    client(const client&) = delete;
    client& operator=(const client&) = delete;
    /// close() must have resolved if requests were made.
    ~client();

    /// Send `method target` with `h` (Host and Content-Length are added) and `body`; the response
    /// with its whole body.
    future<response> request(std::string method, std::string target, headers h = {}, std::string body = {});
    future<response> get(std::string target) { return request("GET", std::move(target)); }
    future<response> post(std::string target, std::string body, std::string content_type = "application/json");

    /// Close the idle connections. No request may be in progress or follow.
    future<> close();

    /// Connections opened so far (a test of reuse counts them).
    std::size_t connections_opened() const noexcept { return _opened; }

private:
    struct connection;
    net::socket_address _server;
    std::size_t _max_idle;
    std::size_t _max_body;
    std::vector<std::unique_ptr<connection>> _idle;
    std::size_t _opened = 0;

    future<std::unique_ptr<connection>> connect();
    future<response> exchange(connection& c, const std::string& wire, const std::string& method, bool& nothing_read);
    future<> release(std::unique_ptr<connection> c, bool reusable);
};

}  // namespace reef::http
