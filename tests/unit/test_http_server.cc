// The HTTP/1.1 server and client over the posix stack on loopback: routing, keep-alive and
// pipelining, bodies (length, chunked, 100-continue), every error status the parser produces,
// handler failures, slowloris, graceful stop; and curl as a client nobody here wrote.
#include "net_test.hh"
#include "reactor_test.hh"

#include "runtime/future_util.hh"
#include "stack/http/client.hh"
#include "stack/http/file_handler.hh"
#include "stack/http/server.hh"

#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace reef;
using namespace std::chrono_literals;
using reef::testing::loopback4;
using reef::testing::posix_stack_scope;

namespace {

http::router test_routes() {
    http::router r;
    r.add("GET", "/hello", [](http::request&) { return make_ready_future<http::reply>(http::reply(200, "hello\n")); });
    r.add("GET", "/items/{id}", [](http::request& req) {
        return make_ready_future<http::reply>(
            http::reply::json({{"id", req.param("id")}, {"q", std::string(req.query_param("q").value_or(""))}}));
    });
    r.add("GET", "/items/special",
          [](http::request&) { return make_ready_future<http::reply>(http::reply(200, "literal wins")); });
    r.add("GET", "/files/{path*}", [](http::request& req) {
        return make_ready_future<http::reply>(http::reply(200, "path=" + req.param("path")));
    });
    r.add("POST", "/items/{id}", [](http::request& req) -> future<http::reply> {
        auto j = nlohmann::json::parse(req.body);
        j["id"] = req.param("id");
        co_return http::reply::json(j, 201);
    });
    r.add("POST", "/echo", [](http::request& req) {
        return make_ready_future<http::reply>(http::reply(200, req.body, "application/octet-stream"));
    });
    r.add("GET", "/chunked", [](http::request&) {
        http::reply rep(200, "streamed body");
        rep.chunked = true;
        return make_ready_future<http::reply>(std::move(rep));
    });
    r.add("GET", "/boom", [](http::request&) -> future<http::reply> { throw std::runtime_error("handler exploded"); });
    r.add("GET", "/slow", [](http::request&) -> future<http::reply> {
        co_await sleep(200ms);
        co_return http::reply(200, "slow done");
    });
    return r;
}

// Send raw bytes on a new connection, half-close, and read everything the server answers.
future<std::string> raw_exchange(net::socket_address sa, std::string bytes, bool half_close = true) {
    auto f = net::connect(sa);
    auto s = co_await std::move(f);
    auto in = s.input();
    auto out = s.output();
    co_await out.write(bytes);
    co_await out.flush();
    if (half_close) {
        s.shutdown_output();
    }
    std::string got;
    while (true) {
        auto b = co_await in.read();
        if (b.empty()) {
            break;
        }
        got.append(b.get(), b.size());
    }
    co_await out.close();
    co_await in.close();
    co_return got;
}

int status_of(const std::string& raw) {
    return raw.size() >= 12 && raw.compare(0, 9, "HTTP/1.1 ") == 0 ? std::stoi(raw.substr(9, 3)) : -1;
}

std::size_t count_of(const std::string& hay, const std::string& needle) {
    std::size_t n = 0;
    for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) {
        ++n;
    }
    return n;
}

}  // namespace

REEF_TEST(http_server, routes_params_json_and_reuse) {
    posix_stack_scope stack;
    http::server srv(test_routes());
    srv.listen(loopback4());
    http::client cl(srv.local_address());
    {
        auto r = co_await cl.get("/hello");
        EXPECT_EQ(r.status, 200);
        EXPECT_EQ(r.body, "hello\n");
        EXPECT_TRUE(r.headers.has("Date"));
        EXPECT_EQ(r.headers.get("Server"), "reef");
    }
    {
        auto r = co_await cl.get("/items/a%2Fb?q=x+y");
        EXPECT_EQ(r.status, 200);
        auto j = nlohmann::json::parse(r.body);
        EXPECT_EQ(j["id"], "a/b");
        EXPECT_EQ(j["q"], "x y");
        EXPECT_EQ(r.headers.get("Content-Type"), "application/json");
    }
    EXPECT_EQ((co_await cl.get("/items/special")).body, "literal wins");
    EXPECT_EQ((co_await cl.get("/files/a/b/c.txt")).body, "path=a/b/c.txt");
    {
        auto r = co_await cl.post("/items/7", R"({"name":"x"})");
        EXPECT_EQ(r.status, 201);
        auto j = nlohmann::json::parse(r.body);
        EXPECT_EQ(j["id"], "7");
        EXPECT_EQ(j["name"], "x");
    }
    {
        auto r = co_await cl.get("/chunked");
        EXPECT_EQ(r.headers.get("Transfer-Encoding"), "chunked");
        EXPECT_EQ(r.body, "streamed body");
    }
    {
        auto r = co_await cl.get("/nope");
        EXPECT_EQ(r.status, 404);
        auto m = co_await cl.request("DELETE", "/hello");
        EXPECT_EQ(m.status, 405);
        EXPECT_EQ(m.headers.get("Allow"), "GET, HEAD");
        auto h = co_await cl.request("HEAD", "/hello");
        EXPECT_EQ(h.status, 200);
        EXPECT_EQ(h.headers.get("Content-Length"), "6");
        EXPECT_EQ(h.body, "");
    }
    {
        // A handler that throws: 500, and the connection stays usable.
        auto r = co_await cl.get("/boom");
        EXPECT_EQ(r.status, 500);
        EXPECT_EQ((co_await cl.get("/hello")).status, 200);
    }
    EXPECT_EQ(cl.connections_opened(), 1u);  // everything on one kept-alive connection
    EXPECT_EQ(srv.stats().handler_errors, 1u);
    EXPECT_EQ(srv.stats().replies_by_class[4], 2u);
    co_await cl.close();
    co_await srv.stop();
}

REEF_TEST(http_server, pipelined_requests_answered_in_order) {
    posix_stack_scope stack;
    http::server srv(test_routes());
    srv.listen(loopback4());
    std::string reqs;
    for (int i = 0; i < 20; ++i) {
        reqs += "GET /items/" + std::to_string(i) + " HTTP/1.1\r\nHost: h\r\n\r\n";
        reqs += "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    }
    reqs += "GET /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    auto got = co_await raw_exchange(srv.local_address(), reqs, false);
    EXPECT_EQ(count_of(got, "HTTP/1.1 200 OK"), 41u);
    std::size_t pos = 0;
    for (int i = 0; i < 20; ++i) {
        auto p = got.find("{\"id\":\"" + std::to_string(i) + "\"", pos);
        auto e = p == std::string::npos ? p : got.find("\r\n\r\nabc", p);
        if (e == std::string::npos) {
            ADD_FAILURE() << "reply " << i << " missing or out of order";
            break;
        }
        pos = e;
    }
    EXPECT_NE(got.find("Connection: close"), std::string::npos);
    EXPECT_EQ(got.substr(got.size() - 6), "hello\n");
    co_await srv.stop();
}

REEF_TEST(http_server, chunked_upload_and_100_continue) {
    posix_stack_scope stack;
    http::server srv(test_routes());
    srv.listen(loopback4());
    auto got = co_await raw_exchange(srv.local_address(),
                                     "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                                     "Connection: close\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n");
    EXPECT_EQ(status_of(got), 200);
    EXPECT_EQ(got.substr(got.size() - 9), "Wikipedia");

    auto cont = co_await raw_exchange(srv.local_address(),
                                      "POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
                                      "Connection: close\r\n\r\nok");
    EXPECT_EQ(cont.rfind("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK", 0), 0u) << cont;
    auto other = co_await raw_exchange(srv.local_address(), "GET /hello HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n");
    EXPECT_EQ(status_of(other), 417);
    co_await srv.stop();
}

REEF_TEST(http_server, bad_input_gets_the_right_status_and_a_close) {
    posix_stack_scope stack;
    http::limits lim;
    lim.max_request_line = 100;
    lim.max_header_bytes = 400;
    lim.max_headers = 5;
    lim.max_body = 10;
    http::server srv(test_routes(), lim);
    srv.listen(loopback4());
    struct {
        std::string wire;
        int status;
    } cases[] = {
        {"GARBAGE\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400},
        {"GET /" + std::string(200, 'a') + " HTTP/1.1\r\n", 414},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(500, 'v') + "\r\n\r\n", 431},
        {"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", 431},
        {"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 413},
        {"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n", 413},
        {"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        {"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: br\r\n\r\n", 501},
        {"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505},
    };
    for (auto& c : cases) {
        // Each error closes the connection: a request after it on the same connection is not read.
        auto got = co_await raw_exchange(srv.local_address(), c.wire + "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n");
        EXPECT_EQ(status_of(got), c.status) << c.wire.substr(0, 40) << "\n" << got;
        EXPECT_NE(got.find("Connection: close"), std::string::npos);
        EXPECT_EQ(got.find("hello\n"), std::string::npos);
    }
    EXPECT_EQ(srv.stats().bad_requests, std::size(cases));
    // The server still serves.
    http::client cl(srv.local_address());
    EXPECT_EQ((co_await cl.get("/hello")).status, 200);
    co_await cl.close();
    co_await srv.stop();
}

REEF_TEST(http_server, slowloris_and_idle_connections_time_out) {
    posix_stack_scope stack;
    http::limits lim;
    lim.header_timeout = 150ms;
    lim.idle_timeout = 150ms;
    http::server srv(test_routes(), lim);
    srv.listen(loopback4());
    // Half a head, then silence (the socket stays open for writing): 408 and closed.
    auto got = co_await raw_exchange(srv.local_address(), "GET /hello HTTP/1.1\r\nHo", false);
    EXPECT_EQ(status_of(got), 408) << got;
    // An idle kept-alive connection: closed without a word.
    auto idle = co_await raw_exchange(srv.local_address(), "", false);
    EXPECT_EQ(idle, "");
    EXPECT_EQ(srv.stats().timeouts, 2u);
    co_await srv.stop();
}

REEF_TEST(http_server, stop_finishes_requests_in_flight) {
    posix_stack_scope stack;
    http::server srv(test_routes());
    srv.listen(loopback4());
    auto addr = srv.local_address();
    // An idle keep-alive connection and a request in its handler when stop() starts.
    http::client idle(addr);
    EXPECT_EQ((co_await idle.get("/hello")).status, 200);
    http::client busy(addr);
    auto slow = busy.get("/slow");
    co_await sleep(50ms);
    auto stopped = srv.stop();
    auto r = co_await std::move(slow);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "slow done");
    EXPECT_EQ(r.headers.get("Connection"), "close");
    co_await std::move(stopped);
    EXPECT_EQ(srv.stats().connections_open, 0u);
    // New connections are refused now.
    bool refused = false;
    try {
        auto f = net::connect(addr);
        co_await std::move(f);
    } catch (...) {
        refused = true;
    }
    EXPECT_TRUE(refused);
    co_await idle.close();
    co_await busy.close();
}

REEF_TEST(http_server, curl_is_a_client) {
    if (std::system("command -v curl >/dev/null 2>&1") != 0) {
        REEF_SKIP("curl is not installed");
    }
    posix_stack_scope stack;
    http::server srv(test_routes());
    srv.listen(loopback4());
    auto port = srv.local_address().port();
    auto run = [port](std::string args) {
        return engine().run_blocking([port, args] {
            std::string cmd = "curl -sS --max-time 10 " + args;
            std::size_t at;
            while ((at = cmd.find("PORT")) != std::string::npos) {
                cmd.replace(at, 4, std::to_string(port));
            }
            std::string out;
            FILE* p = popen(cmd.c_str(), "r");
            if (!p) {
                return std::string("popen failed");
            }
            char buf[4096];
            std::size_t n;
            while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
                out.append(buf, n);
            }
            pclose(p);
            return out;
        });
    };
    // Two URLs on one curl invocation: keep-alive reuse.
    auto a = co_await run("http://127.0.0.1:PORT/hello http://127.0.0.1:PORT/items/3?q=z");
    EXPECT_EQ(a, "hello\n{\"id\":\"3\",\"q\":\"z\"}");
    auto b =
        co_await run("-X POST -H 'Content-Type: application/json' --data '{\"k\":1}' http://127.0.0.1:PORT/items/9");
    EXPECT_EQ(nlohmann::json::parse(b)["k"], 1);
    auto c = co_await run("-H 'Transfer-Encoding: chunked' --data-binary 'chunky' http://127.0.0.1:PORT/echo");
    EXPECT_EQ(c, "chunky");
    auto d = co_await run("-o /dev/null -w '%{http_code}' http://127.0.0.1:PORT/missing");
    EXPECT_EQ(d, "404");
    EXPECT_EQ(srv.stats().connections_accepted, 4u);
    co_await srv.stop();
}

REEF_TEST(http_server, static_files) {
    posix_stack_scope stack;
    char tmpl[] = "/tmp/reef-http-files-XXXXXX";
    std::string root = mkdtemp(tmpl);
    auto put = [&](const std::string& name, const std::string& data) {
        FILE* f = std::fopen((root + "/" + name).c_str(), "wb");
        std::fwrite(data.data(), 1, data.size(), f);
        std::fclose(f);
    };
    std::string big(600 * 1024, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) {
        big[i] = char('a' + (i * 7) % 26);
    }
    ::mkdir((root + "/dir").c_str(), 0755);
    put("a.txt", "0123456789");
    put("page.html", "<p>x</p>");
    put("dir/index.html", "index!");
    put("big.bin", big);
    http::file_handler_options fo;
    fo.cache_max_file = 64 * 1024;  // big.bin is streamed from disk
    http::router r;
    r.add("GET", "/{path*}", http::make_file_handler(root, "path", fo));
    http::server srv(std::move(r));
    srv.listen(loopback4());
    http::client cl(srv.local_address());
    {
        auto a = co_await cl.get("/a.txt");
        EXPECT_EQ(a.status, 200);
        EXPECT_EQ(a.body, "0123456789");
        EXPECT_EQ(a.headers.get("Content-Type"), "text/plain; charset=utf-8");
        auto etag = std::string(a.headers.get("ETag").value_or(""));
        EXPECT_FALSE(etag.empty());
        http::headers h;
        h.add("If-None-Match", "\"other\", " + etag);
        auto nm = co_await cl.request("GET", "/a.txt", h);
        EXPECT_EQ(nm.status, 304);
        EXPECT_EQ(nm.body, "");
        http::headers rg;
        rg.add("Range", "bytes=2-4");
        auto part = co_await cl.request("GET", "/a.txt", rg);
        EXPECT_EQ(part.status, 206);
        EXPECT_EQ(part.body, "234");
        EXPECT_EQ(part.headers.get("Content-Range"), "bytes 2-4/10");
        http::headers suffix;
        suffix.add("Range", "bytes=-3");
        EXPECT_EQ((co_await cl.request("GET", "/a.txt", suffix)).body, "789");
        http::headers beyond;
        beyond.add("Range", "bytes=10-");
        auto bad = co_await cl.request("GET", "/a.txt", beyond);
        EXPECT_EQ(bad.status, 416);
        EXPECT_EQ(bad.headers.get("Content-Range"), "bytes */10");
        http::headers multi;
        multi.add("Range", "bytes=0-1,3-4");
        EXPECT_EQ((co_await cl.request("GET", "/a.txt", multi)).status, 200);  // ignored: whole file
    }
    EXPECT_EQ((co_await cl.get("/page.html")).headers.get("Content-Type"), "text/html; charset=utf-8");
    EXPECT_EQ((co_await cl.get("/dir/")).body, "index!");
    EXPECT_EQ((co_await cl.get("/dir")).body, "index!");
    EXPECT_EQ((co_await cl.get("/missing")).status, 404);
    EXPECT_EQ((co_await cl.get("/dir/../a.txt")).status, 404);  // ".." never walks
    EXPECT_EQ((co_await cl.get("/%2e%2e/etc/passwd")).status, 404);
    {
        auto b = co_await cl.get("/big.bin");
        EXPECT_EQ(b.status, 200);
        EXPECT_TRUE(b.body == big);
        http::headers rg;
        rg.add("Range", "bytes=100000-100009");
        EXPECT_EQ((co_await cl.request("GET", "/big.bin", rg)).body, big.substr(100000, 10));
        auto h = co_await cl.request("HEAD", "/big.bin");
        EXPECT_EQ(h.headers.get("Content-Length"), std::to_string(big.size()));
        EXPECT_EQ(h.body, "");
    }
    // A changed file is seen once the cache revalidates (after `revalidate`, 1 s by default).
    put("a.txt", "changed");
    co_await sleep(1100ms);
    EXPECT_EQ((co_await cl.get("/a.txt")).body, "changed");
    EXPECT_EQ(cl.connections_opened(), 1u);
    co_await cl.close();
    co_await srv.stop();
    std::system(("rm -rf " + root).c_str());
}
