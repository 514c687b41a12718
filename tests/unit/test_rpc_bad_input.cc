// Bad input to the RPC server, sent as raw bytes on loopback: truncated frames and hellos,
// oversized frames, bad magic, unknown frame types and flags, undecodable compressed payloads,
// arguments that do not deserialize, unknown verbs and a silent peer. Each gets the protocol's
// answer or a closed connection, is counted, and the server keeps serving other clients.
#include "net_test.hh"
#include "reactor_test.hh"

#include "stack/rpc/rpc.hh"

#include <gtest/gtest.h>

#include <string>

using namespace reef;
using namespace std::chrono_literals;
using reef::testing::loopback4;
using reef::testing::posix_stack_scope;

namespace {

constexpr rpc::verb_id echo = 1;

std::string hello_bytes(std::uint64_t features = rpc::feature::all, std::uint32_t max_frame = 1u << 20) {
    char buf[rpc::wire::hello_size];
    rpc::wire::hello{rpc::protocol_version, features, max_frame}.encode(buf);
    return std::string(buf, sizeof(buf));
}

std::string frame_bytes(rpc::wire::frame_type t, std::uint64_t id, std::string payload, std::uint8_t flags = 0,
                        std::optional<std::uint32_t> length = std::nullopt) {
    char h[rpc::wire::header_size];
    rpc::wire::header{t, flags, length.value_or(std::uint32_t(payload.size())), id}.encode(h);
    return std::string(h, sizeof(h)) + payload;
}

std::string request_payload(rpc::verb_id verb, std::string args) {
    rpc::output_buffer ob;
    rpc::write(ob, verb);
    rpc::write(ob, std::uint32_t(0));
    return std::string(ob.data(), ob.size()) + args;
}

std::string serialized_string(const std::string& s) {
    rpc::output_buffer ob;
    rpc::write(ob, s);
    return std::string(ob.data(), ob.size());
}

// Connect, send `bytes`, optionally half-close, and read everything until the server closes (or
// `limit` passes: then the connection is still open, which the caller checks).
struct exchange_result {
    std::string received;
    bool closed_by_server = false;
};
std::vector<struct parsed_frame> frames_after_hello(const std::string& s);

// With `want_frames`, reading stops as soon as that many frames followed the server's hello (the
// connection is then still open).
future<exchange_result> raw_exchange(net::socket_address sa, std::string bytes, bool half_close,
                                     std::chrono::milliseconds limit = 10000ms,
                                     std::optional<std::size_t> want_frames = std::nullopt) {
    auto f = net::connect(sa);
    auto s = co_await std::move(f);
    auto in = s.input();
    auto out = s.output();
    co_await out.write(bytes);
    co_await out.flush();
    if (half_close) {
        s.shutdown_output();
    }
    exchange_result r;
    bool got_enough = false;
    timer<> t([&s] { s.shutdown_input(); });
    t.arm(limit);
    for (;;) {
        auto b = co_await in.read();
        if (b.empty()) {
            break;
        }
        r.received.append(b.get(), b.size());
        if (want_frames && frames_after_hello(r.received).size() >= *want_frames) {
            got_enough = true;
            break;
        }
    }
    r.closed_by_server = t.cancel() && !got_enough;
    co_await out.close();
    co_await in.close();
    co_return r;
}

// The complete frames after the server's hello.
struct parsed_frame {
    rpc::wire::header h;
    std::string payload;
};
std::vector<parsed_frame> frames_after_hello(const std::string& s) {
    std::vector<parsed_frame> out;
    std::size_t pos = rpc::wire::hello_size;
    while (pos + rpc::wire::header_size <= s.size()) {
        parsed_frame f;
        f.h.decode(s.data() + pos);
        if (pos + rpc::wire::header_size + f.h.length > s.size()) {
            break;  // not all here yet
        }
        pos += rpc::wire::header_size;
        f.payload = s.substr(pos, f.h.length);
        pos += f.h.length;
        out.push_back(std::move(f));
    }
    return out;
}

struct server_env {
    posix_stack_scope stack;
    rpc::server srv;
    net::socket_address addr;

    explicit server_env(rpc::server_options o = {}) : srv(std::move(o)) {
        srv.register_handler(echo, [](std::string s) { return s; });
        srv.listen(loopback4(0));
        addr = srv.local_address();
    }

    // A well-behaved client still gets answers.
    future<bool> still_serves() {
        rpc::client c;
        co_await c.connect(addr);
        const std::string ok = "ok";
        auto r = co_await c.call<std::string>(echo, ok);
        co_await c.stop();
        co_return r == ok;
    }
};

}  // namespace

REEF_TEST(rpc_bad_input, truncated_frame_header) {
    server_env env;
    auto bytes = hello_bytes() + frame_bytes(rpc::wire::frame_type::request, 1, request_payload(echo, "")).substr(0, 7);
    auto r_f = raw_exchange(env.addr, bytes, true);
    auto r = co_await std::move(r_f);
    EXPECT_TRUE(r.closed_by_server);
    EXPECT_EQ(env.srv.stats().truncated_frames, 1u);
    EXPECT_TRUE(co_await env.still_serves());
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, truncated_frame_payload) {
    server_env env;
    auto full = frame_bytes(rpc::wire::frame_type::request, 1, request_payload(echo, serialized_string("hello")));
    auto r_f = raw_exchange(env.addr, hello_bytes() + full.substr(0, full.size() - 3), true);
    auto r = co_await std::move(r_f);
    EXPECT_TRUE(r.closed_by_server);
    EXPECT_EQ(env.srv.stats().truncated_frames, 1u);
    EXPECT_EQ(env.srv.stats().calls, 0u);
    EXPECT_TRUE(co_await env.still_serves());
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, truncated_hello) {
    server_env env;
    auto r_f = raw_exchange(env.addr, hello_bytes().substr(0, 10), true);
    auto r = co_await std::move(r_f);
    EXPECT_TRUE(r.closed_by_server);
    EXPECT_EQ(r.received, "");
    EXPECT_EQ(env.srv.stats().truncated_frames, 1u);
    EXPECT_EQ(env.srv.stats().negotiation_failures, 1u);
    EXPECT_TRUE(co_await env.still_serves());
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, bad_magic) {
    server_env env;
    auto r_f = raw_exchange(env.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false);
    auto r = co_await std::move(r_f);
    EXPECT_TRUE(r.closed_by_server);
    EXPECT_EQ(r.received, "");
    EXPECT_EQ(env.srv.stats().negotiation_failures, 1u);
    EXPECT_EQ(env.srv.stats().malformed_frames, 1u);
    EXPECT_TRUE(co_await env.still_serves());
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, oversized_frame) {
    server_env env({{.max_frame_size = 1024}});
    // Only the header is sent: the length alone condemns the frame, its payload is never read.
    auto bytes = hello_bytes() + frame_bytes(rpc::wire::frame_type::request, 77, "", 0, 1u << 30);
    auto r_f = raw_exchange(env.addr, bytes, false);
    auto r = co_await std::move(r_f);
    EXPECT_TRUE(r.closed_by_server);
    EXPECT_EQ(env.srv.stats().oversized_frames, 1u);
    auto frames = frames_after_hello(r.received);
    REEF_ASSERT(frames.size() == 1);
    EXPECT_EQ(frames[0].h.type, rpc::wire::frame_type::error);
    EXPECT_EQ(frames[0].h.id, 77u);
    rpc::input_buffer in(frames[0].payload);
    EXPECT_EQ(rpc::read<std::uint8_t>(in), std::uint8_t(rpc::wire::error_code::frame_too_large));
    EXPECT_TRUE(co_await env.still_serves());
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, oversized_frame_seen_by_a_client) {
    // A client that ignores the announced limit (lies about it in its own options' stead: it is
    // sent a server limit of 1 KiB, then forced past it with a raw frame) gets frame_too_large.
    server_env env({{.max_frame_size = 1024}});
    auto payload = request_payload(echo, serialized_string(std::string(2000, 'x')));
    auto r_f = raw_exchange(env.addr, hello_bytes() + frame_bytes(rpc::wire::frame_type::request, 5, payload), false);
    auto r = co_await std::move(r_f);
    EXPECT_TRUE(r.closed_by_server);
    auto frames = frames_after_hello(r.received);
    REEF_ASSERT(frames.size() == 1);
    rpc::input_buffer in(frames[0].payload);
    EXPECT_EQ(rpc::read<std::uint8_t>(in), std::uint8_t(rpc::wire::error_code::frame_too_large));
    EXPECT_EQ(env.srv.stats().oversized_frames, 1u);
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, oversized_compressed_expansion) {
    server_env env({{.max_frame_size = 1024}});
    // A small compressed frame claiming to expand past the limit.
    std::string payload(4, '\0');
    std::uint32_t raw = 1u << 30;
    std::memcpy(payload.data(), &raw, 4);
    payload += "garbage";
    auto r_f = raw_exchange(
        env.addr, hello_bytes() + frame_bytes(rpc::wire::frame_type::request, 9, payload, rpc::wire::flag_lz4), false);
    auto r = co_await std::move(r_f);
    EXPECT_TRUE(r.closed_by_server);
    EXPECT_EQ(env.srv.stats().oversized_frames, 1u);
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, undecodable_compressed_payload) {
    server_env env;
    std::string payload(4, '\0');
    std::uint32_t raw = 100;
    std::memcpy(payload.data(), &raw, 4);
    payload += std::string(20, '\xff');
    auto r_f = raw_exchange(
        env.addr, hello_bytes() + frame_bytes(rpc::wire::frame_type::request, 9, payload, rpc::wire::flag_lz4), false);
    auto r = co_await std::move(r_f);
    EXPECT_TRUE(r.closed_by_server);
    EXPECT_EQ(env.srv.stats().malformed_frames, 1u);
    EXPECT_TRUE(co_await env.still_serves());
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, unknown_frame_type_and_flags) {
    server_env env;
    auto r1_f = raw_exchange(env.addr, hello_bytes() + frame_bytes(rpc::wire::frame_type(42), 1, "x"), false);
    auto r1 = co_await std::move(r1_f);
    EXPECT_TRUE(r1.closed_by_server);
    auto r2_f = raw_exchange(
        env.addr, hello_bytes() + frame_bytes(rpc::wire::frame_type::request, 1, request_payload(echo, ""), 0x80),
        false);
    auto r2 = co_await std::move(r2_f);
    EXPECT_TRUE(r2.closed_by_server);
    // A response frame is not something a client sends.
    auto r3_f = raw_exchange(env.addr, hello_bytes() + frame_bytes(rpc::wire::frame_type::response, 1, ""), false);
    auto r3 = co_await std::move(r3_f);
    EXPECT_TRUE(r3.closed_by_server);
    EXPECT_EQ(env.srv.stats().malformed_frames, 3u);
    EXPECT_TRUE(co_await env.still_serves());
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, request_without_verb) {
    server_env env;
    auto r_f = raw_exchange(env.addr, hello_bytes() + frame_bytes(rpc::wire::frame_type::request, 1, "abc"), false);
    auto r = co_await std::move(r_f);
    EXPECT_TRUE(r.closed_by_server);
    EXPECT_EQ(env.srv.stats().malformed_frames, 1u);
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, bad_arguments_keep_the_connection) {
    server_env env;
    // A string argument claiming 100 bytes with 3 present, then a good request on the same
    // connection: the first is answered with a remote serialization_error, the second normally.
    std::string bad_args("\x64\0\0\0abc", 7);
    auto bytes = hello_bytes() + frame_bytes(rpc::wire::frame_type::request, 1, request_payload(echo, bad_args)) +
                 frame_bytes(rpc::wire::frame_type::request, 2, request_payload(echo, serialized_string("fine")));
    auto r_f = raw_exchange(env.addr, bytes, false, 10000ms, 2);
    auto r = co_await std::move(r_f);
    EXPECT_FALSE(r.closed_by_server);
    auto frames = frames_after_hello(r.received);
    REEF_ASSERT(frames.size() == 2);
    EXPECT_EQ(frames[0].h.type, rpc::wire::frame_type::error);
    EXPECT_EQ(frames[0].h.id, 1u);
    rpc::input_buffer in(frames[0].payload);
    EXPECT_EQ(rpc::read<std::uint8_t>(in), std::uint8_t(rpc::wire::error_code::exception));
    EXPECT_EQ(rpc::read<std::string>(in), "reef::rpc::serialization_error");
    EXPECT_EQ(frames[1].h.type, rpc::wire::frame_type::response);
    EXPECT_EQ(frames[1].h.id, 2u);
    EXPECT_EQ(frames[1].payload, serialized_string("fine"));
    EXPECT_EQ(env.srv.stats().bad_arguments, 1u);
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, unknown_verb_keeps_the_connection) {
    server_env env;
    auto bytes = hello_bytes() + frame_bytes(rpc::wire::frame_type::request, 1, request_payload(4242, "")) +
                 frame_bytes(rpc::wire::frame_type::request, 2, request_payload(echo, serialized_string("x")));
    auto r_f = raw_exchange(env.addr, bytes, false, 10000ms, 2);
    auto r = co_await std::move(r_f);
    EXPECT_FALSE(r.closed_by_server);
    auto frames = frames_after_hello(r.received);
    REEF_ASSERT(frames.size() == 2);
    rpc::input_buffer in(frames[0].payload);
    EXPECT_EQ(rpc::read<std::uint8_t>(in), std::uint8_t(rpc::wire::error_code::unknown_verb));
    EXPECT_EQ(frames[1].h.type, rpc::wire::frame_type::response);
    EXPECT_EQ(env.srv.stats().unknown_verbs, 1u);
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, stream_frames_for_unknown_streams_are_dropped) {
    server_env env;
    auto bytes = hello_bytes() + frame_bytes(rpc::wire::frame_type::stream_data, 999, "zzz") +
                 frame_bytes(rpc::wire::frame_type::request, 2, request_payload(echo, serialized_string("x")));
    auto r_f = raw_exchange(env.addr, bytes, false, 10000ms, 1);
    auto r = co_await std::move(r_f);
    EXPECT_FALSE(r.closed_by_server);
    EXPECT_EQ(frames_after_hello(r.received).size(), 1u);
    EXPECT_EQ(env.srv.stats().stream_frames_dropped, 1u);
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, silent_peer_is_dropped_after_the_negotiation_timeout) {
    server_env env({{.negotiation_timeout = 100ms}});
    auto r_f = raw_exchange(env.addr, "", false, 5000ms);
    auto r = co_await std::move(r_f);
    EXPECT_TRUE(r.closed_by_server);
    EXPECT_EQ(env.srv.stats().negotiation_failures, 1u);
    EXPECT_TRUE(co_await env.still_serves());
    co_await env.srv.stop();
}

REEF_TEST(rpc_bad_input, client_rejects_a_non_rpc_server) {
    posix_stack_scope stack;
    // A server that answers every connection with an HTTP line.
    auto ss = net::listen(loopback4(0));
    auto addr = ss.local_address();
    auto serve_one = [](net::server_socket& ss) -> future<> {
        auto ar = co_await ss.accept();
        auto out = ar.connection.output();
        auto in = ar.connection.input();
        co_await out.write(std::string_view("HTTP/1.1 400 Bad Request\r\n\r\n"));
        co_await out.flush();
        co_await in.read();
        co_await out.close();
        co_await in.close();
    };
    auto served = serve_one(ss);
    rpc::client c;
    auto f = c.connect(addr);
    EXPECT_THROW(co_await std::move(f), rpc::protocol_error);
    co_await c.stop();
    co_await std::move(served);
}
