// HTTP/1.1 wire parsing: heads, limits, framing, chunked bodies, smuggling and injection defences.
#include "stack/http/parser.hh"

#include <gtest/gtest.h>

#include <string>

using namespace reef::http;

namespace {

std::optional<parse_error> parse(const std::string& head, request& req, limits lim = {}) {
    return parse_request_head(head, lim, req);
}

// Feed `data` to a head_reader in pieces of `step` bytes; returns bytes used in total.
std::size_t feed_in_steps(head_reader& hr, const std::string& data, std::size_t step) {
    std::size_t used = 0;
    for (std::size_t at = 0; at < data.size() && !hr.done() && !hr.error(); at += step) {
        std::string_view piece(data.data() + at, std::min(step, data.size() - at));
        std::size_t n = hr.feed(piece);
        used += n;
        if (n < piece.size()) {
            break;
        }
    }
    return used;
}

}  // namespace

TEST(http_parser, simple_get) {
    request req;
    auto err = parse("GET /items/a%20b?x=1&y=hello+world&z HTTP/1.1\r\nHost: example\r\nX-A:  v1 \r\n\r\n", req);
    ASSERT_FALSE(err) << err->message;
    EXPECT_EQ(req.method, "GET");
    EXPECT_EQ(req.target, "/items/a%20b?x=1&y=hello+world&z");
    EXPECT_EQ(req.path, "/items/a b");
    EXPECT_EQ(req.query_string, "x=1&y=hello+world&z");
    EXPECT_EQ(req.query_param("x"), "1");
    EXPECT_EQ(req.query_param("y"), "hello world");
    EXPECT_EQ(req.query_param("z"), "");
    EXPECT_FALSE(req.query_param("w"));
    EXPECT_EQ(req.version_minor, 1u);
    EXPECT_EQ(req.headers.get("x-a"), "v1");
    EXPECT_EQ(req.headers.get("HOST"), "example");
    EXPECT_TRUE(req.keep_alive());
}

TEST(http_parser, keep_alive_rules) {
    request a, b, c, d;
    ASSERT_FALSE(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n", a));
    EXPECT_FALSE(a.keep_alive());
    ASSERT_FALSE(parse("GET / HTTP/1.0\r\n\r\n", b));
    EXPECT_FALSE(b.keep_alive());
    ASSERT_FALSE(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", c));
    EXPECT_TRUE(c.keep_alive());
    ASSERT_FALSE(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n", d));
    EXPECT_FALSE(d.keep_alive());
}

TEST(http_parser, absolute_form_and_asterisk) {
    request a, b;
    ASSERT_FALSE(parse("GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", a));
    EXPECT_EQ(a.path, "/p");
    EXPECT_EQ(a.query_param("q"), "1");
    ASSERT_FALSE(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", b));
    EXPECT_EQ(b.path, "*");
}

TEST(http_parser, malformed_heads_are_400) {
    const char* bad[] = {
        "GET /\r\nHost: h\r\n\r\n",                          // no version
        "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",                // two spaces
        "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",                 // bad method
        "GET / HTTP/1.1\r\nHost h\r\n\r\n",                  // no colon
        "GET / HTTP/1.1\r\nHost : h\r\n\r\n",                // space before the colon
        "GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",      // obsolete folding
        "GET / HTTP/1.1\nHost: h\r\n\r\n",                   // bare LF
        "GET / HTTP/1.1\r\nHost: h\rX-Injected: 1\r\n\r\n",  // bare CR (header injection)
        "GET / HTTP/1.1\r\nX: a\x01"
        "b\r\nHost: h\r\n\r\n",                          // control character in a value
        "GET / HTTP/1.1\r\n\r\n",                        // no Host
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  // two Hosts
        "GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n",         // bad escape
        "GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n",        // DEL in the target
        "GET x HTTP/1.1\r\nHost: h\r\n\r\n",             // neither path nor absolute
        "GET / HTTP/1.x\r\nHost: h\r\n\r\n",             // bad version
    };
    for (const char* h : bad) {
        request req;
        auto err = parse(h, req);
        ASSERT_TRUE(err) << h;
        EXPECT_EQ(err->status, 400) << h << ": " << err->message;
        EXPECT_FALSE(err->message.empty());
    }
}

TEST(http_parser, http2_is_505) {
    request req;
    auto err = parse("GET / HTTP/2.0\r\nHost: h\r\n\r\n", req);
    ASSERT_TRUE(err);
    EXPECT_EQ(err->status, 505);
}

TEST(http_parser, field_count_limit_is_431) {
    limits lim;
    lim.max_headers = 3;
    std::string h = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    request req;
    auto err = parse(h, req, lim);
    ASSERT_TRUE(err);
    EXPECT_EQ(err->status, 431);
}

TEST(http_parser, head_reader_limits) {
    {
        head_reader hr(16, 1000);
        feed_in_steps(hr, "GET /" + std::string(100, 'a') + " HTTP/1.1\r\n", 7);
        ASSERT_TRUE(hr.error());
        EXPECT_EQ(hr.error()->status, 414);
    }
    {
        head_reader hr(100, 64);
        feed_in_steps(hr, "GET / HTTP/1.1\r\n" + std::string(20, 'X') + ": " + std::string(60, 'v') + "\r\n\r\n", 5);
        ASSERT_TRUE(hr.error());
        EXPECT_EQ(hr.error()->status, 431);
    }
}

TEST(http_parser, head_reader_any_split_keeps_the_rest) {
    const std::string msg = "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\nBODY";
    for (std::size_t step = 1; step <= msg.size(); ++step) {
        head_reader hr(8192, 16384);
        std::size_t used = feed_in_steps(hr, msg, step);
        ASSERT_TRUE(hr.done()) << step;
        EXPECT_EQ(hr.head(), "GET / HTTP/1.1\r\nHost: h\r\n\r\n") << step;
        EXPECT_EQ(msg.substr(used), "BODY") << step;
    }
}

TEST(http_parser, body_framing) {
    limits lim;
    lim.max_body = 1000;
    auto framing = [&](const std::string& fields, body_framing& bf) {
        request req;
        auto err = parse("POST / HTTP/1.1\r\nHost: h\r\n" + fields + "\r\n", req, lim);
        EXPECT_FALSE(err);
        return request_body_framing(req, lim, bf);
    };
    body_framing bf;
    EXPECT_FALSE(framing("", bf));
    EXPECT_EQ(bf.how, body_framing::kind::none);
    EXPECT_FALSE(framing("Content-Length: 12\r\n", bf));
    EXPECT_EQ(bf.how, body_framing::kind::length);
    EXPECT_EQ(bf.length, 12u);
    EXPECT_FALSE(framing("Content-Length: 12\r\nContent-Length: 12\r\n", bf));  // agreeing duplicates
    EXPECT_FALSE(framing("Transfer-Encoding: chunked\r\n", bf));
    EXPECT_EQ(bf.how, body_framing::kind::chunked);
    struct {
        const char* fields;
        int status;
    } bad[] = {
        {"Content-Length: 12\r\nContent-Length: 13\r\n", 400},
        {"Content-Length: -1\r\n", 400},
        {"Content-Length: 1e3\r\n", 400},
        {"Content-Length: 99999999999999999999999\r\n", 400},
        {"Content-Length: 1001\r\n", 413},
        {"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400},  // smuggling
        {"Transfer-Encoding: gzip\r\n", 501},
        {"Transfer-Encoding: gzip, chunked\r\n", 501},
    };
    for (auto& b : bad) {
        auto err = framing(b.fields, bf);
        ASSERT_TRUE(err) << b.fields;
        EXPECT_EQ(err->status, b.status) << b.fields << ": " << err->message;
    }
}

TEST(http_parser, chunked_any_split) {
    const std::string wire = "5;ext=1\r\nhello\r\n1A\r\n" + std::string(26, 'z') + "\r\n0\r\nTrailer: x\r\n\r\nNEXT";
    for (std::size_t step = 1; step <= wire.size(); ++step) {
        chunked_decoder dec(1000, 1000);
        std::string out;
        std::size_t used = 0;
        for (std::size_t at = 0; at < wire.size() && !dec.done() && !dec.error(); at += step) {
            std::string_view piece(wire.data() + at, std::min(step, wire.size() - at));
            used += dec.feed(piece, out);
        }
        ASSERT_TRUE(dec.done()) << step;
        EXPECT_EQ(out, "hello" + std::string(26, 'z')) << step;
        EXPECT_EQ(wire.substr(used), "NEXT") << step;
    }
}

TEST(http_parser, chunked_errors) {
    struct {
        std::string wire;
        int status;
    } bad[] = {
        {"g\r\n", 400},                              // not hex
        {"\r\n", 400},                               // no size
        {"5\r\nhelloX\r\n", 400},                    // data not followed by CRLF
        {"5\nhello\r\n", 400},                       // bare LF after the size
        {"ffffffffffffffffff\r\n", 400},             // size too long
        {"3e9\r\n", 413},                            // 1001 bytes > 1000
        {"0\r\nT: " + std::string(2000, 'x'), 431},  // endless trailer
    };
    for (auto& b : bad) {
        chunked_decoder dec(1000, 1000);
        std::string out;
        dec.feed(b.wire, out);
        ASSERT_TRUE(dec.error()) << b.wire.substr(0, 20);
        EXPECT_EQ(dec.error()->status, b.status) << b.wire.substr(0, 20);
    }
}

TEST(http_parser, response_heads) {
    response r;
    ASSERT_FALSE(parse_response_head("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n", r));
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.reason, "Not Found");
    body_framing bf;
    ASSERT_FALSE(response_body_framing(r, "GET", bf));
    EXPECT_EQ(bf.how, body_framing::kind::length);
    ASSERT_FALSE(response_body_framing(r, "HEAD", bf));
    EXPECT_EQ(bf.how, body_framing::kind::none);
    response bad;
    EXPECT_TRUE(parse_response_head("HTTP/1.1 2x0 OK\r\n\r\n", bad));
    EXPECT_TRUE(parse_response_head("FOO\r\n\r\n", bad));
}

TEST(http_parser, percent_decode_and_query) {
    EXPECT_EQ(percent_decode("a%2Fb%41"), "a/bA");
    EXPECT_FALSE(percent_decode("%4"));
    EXPECT_FALSE(percent_decode("%"));
    EXPECT_FALSE(percent_decode("%g0"));
    EXPECT_EQ(percent_decode("a+b", true), "a b");
    EXPECT_EQ(percent_decode("a+b"), "a+b");
    auto q = parse_query("a=1&&b=%zz&c=x%20y");
    ASSERT_EQ(q.size(), 3u);
    EXPECT_EQ(q[1].second, "%zz");  // kept undecoded
    EXPECT_EQ(q[2].second, "x y");
}

TEST(http_parser, date_format) {
    using namespace std::chrono;
    EXPECT_EQ(http_date(system_clock::time_point(seconds(784111777))), "Sun, 06 Nov 1994 08:49:37 GMT");
}
