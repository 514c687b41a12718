// stack/rpc over the posix stack on loopback: the serializer, calls and their results, many calls in
// flight on one connection, remote errors, unknown verbs, timeouts and cancellation (the server
// sees them), a server stopped mid-call, negotiation between peers with different feature sets,
// LZ4 on and off, streams both ways, per-verb scheduling groups and the server's metrics.
#include "net_test.hh"
#include "reactor_test.hh"

#include "runtime/future_util.hh"
#include "runtime/metrics.hh"
#include "runtime/scheduling.hh"
#include "stack/rpc/rpc.hh"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;
using reef::testing::loopback4;
using reef::testing::posix_stack_scope;

namespace {

struct point {
    std::int32_t x = 0;
    std::int32_t y = 0;
    std::string label;
    std::optional<double> weight;
    auto rpc_fields() { return std::tie(x, y, label, weight); }
    bool operator==(const point&) const = default;
};

enum class color : std::uint8_t { red = 1, green = 2 };

template <typename T>
T round_trip(const T& v) {
    rpc::output_buffer out(rpc::wire::header_size);
    rpc::write(out, v);
    rpc::input_buffer in(out.data(), out.size());
    T r = rpc::read<T>(in);
    EXPECT_EQ(in.remaining(), 0u);
    return r;
}

// A verb table for the tests.
enum verbs : rpc::verb_id {
    echo = 1,
    add = 2,
    fail = 3,
    sleep_ms = 4,
    big = 5,
    sum_stream = 6,
    produce = 7,
    which_group = 8,
    structs = 9,
    fail_custom = 10,
    produce_then_fail = 11,
};

struct custom_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Handlers record what they saw here.
struct observed {
    int aborted = 0;
    int finished = 0;
};

void register_test_verbs(rpc::server& s, observed& obs) {
    s.register_handler(echo, [](std::string v) { return v; });
    s.register_handler(add, [](std::int64_t a, std::int64_t b) { return a + b; });
    s.register_handler(fail, [](std::string what) -> std::string { throw std::out_of_range(what); });
    s.register_handler(fail_custom, [](std::uint32_t) -> future<> {
        return make_exception_future<>(custom_failure("custom failure"));
    });
    s.register_handler(sleep_ms, [&obs](rpc::call_context& ctx, std::uint32_t ms) -> future<std::uint32_t> {
        try {
            co_await sleep_abortable(std::chrono::milliseconds(ms), ctx.abort_signal());
        } catch (...) {
            ++obs.aborted;
            throw;
        }
        ++obs.finished;
        co_return ms;
    });
    s.register_handler(big, [](std::vector<std::uint8_t> v) {
        for (auto& b : v) {
            b = std::uint8_t(b + 1);
        }
        return v;
    });
    s.register_handler(
        sum_stream, [](rpc::source<std::vector<std::uint8_t>> src) -> future<std::pair<std::uint64_t, std::uint64_t>> {
            std::uint64_t items = 0, sum = 0;
            for (;;) {
                auto item = co_await src();
                if (!item) {
                    break;
                }
                ++items;
                for (auto b : *item) {
                    sum += b;
                }
            }
            co_return std::pair(items, sum);
        });
    s.register_handler(produce, [](rpc::sink<std::string> out, std::uint32_t n) -> future<std::uint32_t> {
        for (std::uint32_t i = 0; i < n; ++i) {
            auto item = std::string(1000, char('a' + i % 26)) + std::to_string(i);
            co_await out(item);
        }
        co_await out.close();
        co_return n;
    });
    s.register_handler(produce_then_fail, [](rpc::sink<std::string> out) -> future<> {
        const std::string one = "one";
        co_await out(one);
        throw std::runtime_error("producer broke");
    });
    s.register_handler(which_group, [] { return scheduling_group_name(current_scheduling_group()); });
    s.register_handler(structs, [](point p, std::map<std::string, std::vector<point>> m, color c) {
        p.x += std::int32_t(m.size());
        p.label += c == color::green ? "/green" : "/red";
        return p;
    });
}

struct rpc_env {
    posix_stack_scope stack;
    observed obs;
    rpc::server srv;
    net::socket_address addr;

    explicit rpc_env(rpc::server_options so = {}) : srv(std::move(so)) {
        register_test_verbs(srv, obs);
        srv.listen(loopback4(0));
        addr = srv.local_address();
    }
};

}  // namespace

// ---- serializer

TEST(rpc_serializer, round_trips) {
    EXPECT_EQ(round_trip<std::uint8_t>(200), 200);
    EXPECT_EQ(round_trip<std::int64_t>(-5'000'000'000), -5'000'000'000);
    EXPECT_EQ(round_trip<bool>(true), true);
    EXPECT_EQ(round_trip<double>(3.25), 3.25);
    EXPECT_EQ(round_trip<float>(-1.5f), -1.5f);
    EXPECT_EQ(round_trip<std::string>("hello"), "hello");
    EXPECT_EQ(round_trip<color>(color::green), color::green);
    EXPECT_EQ(round_trip(std::vector<std::string>{"a", "", "ccc"}), (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(round_trip(std::vector<std::uint32_t>{1, 2, 3}), (std::vector<std::uint32_t>{1, 2, 3}));
    std::map<std::string, std::int32_t> m{{"x", 1}, {"y", -2}};
    EXPECT_EQ(round_trip(m), m);
    std::unordered_map<std::uint16_t, std::optional<std::string>> um{{1, "one"}, {2, std::nullopt}};
    EXPECT_EQ(round_trip(um), um);
    EXPECT_EQ(round_trip(std::optional<std::int32_t>()), std::nullopt);
    EXPECT_EQ(round_trip(std::optional<std::int32_t>(7)), 7);
    point p{1, -2, "p", 0.5};
    EXPECT_EQ(round_trip(p), p);
    auto t = std::make_tuple(std::uint16_t(9), std::string("t"), 1.0);
    EXPECT_EQ(round_trip(t), t);
}

TEST(rpc_serializer, layout_is_little_endian_and_documented) {
    rpc::output_buffer out;
    rpc::write(out, std::uint32_t(0x01020304));
    rpc::write(out, std::string("ab"));
    rpc::write(out, std::optional<std::uint8_t>(5));
    const unsigned char expect[] = {4, 3, 2, 1, 2, 0, 0, 0, 'a', 'b', 1, 5};
    ASSERT_EQ(out.size(), sizeof(expect));
    EXPECT_EQ(std::memcmp(out.data(), expect, sizeof(expect)), 0);
}

TEST(rpc_serializer, rejects_bad_input) {
    // A string claiming more bytes than follow.
    const unsigned char long_string[] = {10, 0, 0, 0, 'a'};
    rpc::input_buffer in1(reinterpret_cast<const char*>(long_string), sizeof(long_string));
    EXPECT_THROW(rpc::read<std::string>(in1), rpc::serialization_error);
    // A vector count that cannot fit in what is left is refused before allocating.
    const unsigned char huge_vector[] = {0xff, 0xff, 0xff, 0xff, 0};
    rpc::input_buffer in2(reinterpret_cast<const char*>(huge_vector), sizeof(huge_vector));
    EXPECT_THROW(rpc::read<std::vector<std::uint64_t>>(in2), rpc::serialization_error);
    const unsigned char bad_bool[] = {2};
    rpc::input_buffer in3(reinterpret_cast<const char*>(bad_bool), 1);
    EXPECT_THROW(rpc::read<bool>(in3), rpc::serialization_error);
    const unsigned char bad_opt[] = {3, 0};
    rpc::input_buffer in4(reinterpret_cast<const char*>(bad_opt), 2);
    EXPECT_THROW(rpc::read<std::optional<std::uint8_t>>(in4), rpc::serialization_error);
    rpc::input_buffer in5("abc", 3);
    EXPECT_THROW(rpc::read<std::uint64_t>(in5), rpc::serialization_error);
}

// ---- calls

REEF_TEST(rpc, echo_and_types) {
    rpc_env env;
    rpc::client c;
    co_await c.connect(env.addr);
    const std::string hello = "hello rpc";
    auto s = co_await c.call<std::string>(echo, hello);
    EXPECT_EQ(s, "hello rpc");
    auto sum = co_await c.call<std::int64_t>(add, std::int64_t(40), std::int64_t(2));
    EXPECT_EQ(sum, 42);
    std::map<std::string, std::vector<point>> m{{"a", {point{}}}, {"b", {}}};
    const point arg{1, 2, "pt", 2.5};
    auto p = co_await c.call<point>(structs, arg, m, color::green);
    EXPECT_EQ(p, (point{3, 2, "pt/green", 2.5}));
    EXPECT_EQ(c.negotiation().version, rpc::protocol_version);
    EXPECT_EQ(c.negotiation().features, rpc::feature::all);
    co_await c.stop();
    co_await env.srv.stop();
    EXPECT_EQ(env.srv.stats().calls, 3u);
    EXPECT_EQ(env.srv.stats().replies, 3u);
}

REEF_TEST(rpc, many_calls_in_flight_complete_out_of_order) {
    rpc_env env;
    rpc::client c;
    co_await c.connect(env.addr);
    // Longer sleeps first: answers come back in the opposite order, each to its own caller.
    std::vector<future<std::uint32_t>> fs;
    for (std::uint32_t i = 0; i < 20; ++i) {
        fs.push_back(c.call<std::uint32_t>(sleep_ms, std::uint32_t(100 - i * 5)));
    }
    std::vector<future<std::string>> echoes;
    for (int i = 0; i < 200; ++i) {
        echoes.push_back(c.call<std::string>(echo, std::to_string(i)));
    }
    for (int i = 0; i < 200; ++i) {
        EXPECT_EQ(co_await std::move(echoes[i]), std::to_string(i));
    }
    for (std::uint32_t i = 0; i < 20; ++i) {
        EXPECT_EQ(co_await std::move(fs[i]), 100 - i * 5);
    }
    co_await c.stop();
    co_await env.srv.stop();
}

REEF_TEST(rpc, large_payloads) {
    rpc_env env;
    for (bool compress : {true, false}) {
        rpc::client_options o;
        if (!compress) {
            o.features &= ~rpc::feature::lz4;
        }
        rpc::client c(o);
        co_await c.connect(env.addr);
        std::vector<std::uint8_t> v(8u << 20);
        for (std::size_t i = 0; i < v.size(); ++i) {
            v[i] = std::uint8_t(i * 7 + i / 4096);
        }
        auto r = co_await c.call<std::vector<std::uint8_t>>(big, v);
        REEF_ASSERT(r.size() == v.size());
        bool same = true;
        for (std::size_t i = 0; i < v.size(); ++i) {
            same = same && r[i] == std::uint8_t(v[i] + 1);
        }
        EXPECT_TRUE(same);
        EXPECT_EQ(c.stats().compressed_frames_sent > 0, compress);
        co_await c.stop();
    }
    co_await env.srv.stop();
}

REEF_TEST(rpc, compression_on_and_off) {
    rpc_env env;
    const std::string text(64 * 1024, 'z');
    std::uint64_t wire_bytes[2] = {0, 0};
    for (bool compress : {true, false}) {
        rpc::client_options o;
        if (!compress) {
            o.features &= ~rpc::feature::lz4;
        }
        rpc::client c(o);
        co_await c.connect(env.addr);
        EXPECT_EQ(c.negotiation().has(rpc::feature::lz4), compress);
        const auto before = env.srv.stats().compressed_frames_received;
        auto r = co_await c.call<std::string>(echo, text);
        EXPECT_EQ(r, text);
        // Small payloads are never compressed.
        const std::string tiny = "tiny";
        EXPECT_EQ(co_await c.call<std::string>(echo, tiny), tiny);
        EXPECT_EQ(c.stats().compressed_frames_sent, compress ? 1u : 0u);
        EXPECT_EQ(c.stats().compressed_frames_received, compress ? 1u : 0u);
        EXPECT_EQ(env.srv.stats().compressed_frames_received - before, compress ? 1u : 0u);
        wire_bytes[compress ? 0 : 1] = c.stats().bytes_sent;
        co_await c.stop();
    }
    EXPECT_LT(wire_bytes[0] * 10, wire_bytes[1]);
    co_await env.srv.stop();
}

REEF_TEST(rpc, exceptions_become_remote_errors) {
    rpc_env env;
    rpc::client c;
    co_await c.connect(env.addr);
    bool caught = false;
    try {
        const std::string what = "index 7 out of range";
        co_await c.call<std::string>(fail, what);
    } catch (const rpc::remote_error& e) {
        caught = true;
        EXPECT_EQ(e.type_name(), "std::out_of_range");
        EXPECT_EQ(e.message(), "index 7 out of range");
    }
    EXPECT_TRUE(caught);
    caught = false;
    try {
        co_await c.call(fail_custom, std::uint32_t(1));
    } catch (const rpc::remote_error& e) {
        caught = true;
        EXPECT_EQ(e.type_name(), "(anonymous namespace)::custom_failure");
        EXPECT_EQ(e.message(), "custom failure");
    }
    EXPECT_TRUE(caught);
    // The connection is still good.
    const std::string after = "after";
    EXPECT_EQ(co_await c.call<std::string>(echo, after), after);
    EXPECT_EQ(env.srv.stats().handler_errors, 2u);
    co_await c.stop();
    co_await env.srv.stop();
}

REEF_TEST(rpc, unknown_verb) {
    rpc_env env;
    rpc::client c;
    co_await c.connect(env.addr);
    bool caught = false;
    try {
        const std::string x = "x";
        co_await c.call(999, x);
    } catch (const rpc::unknown_verb& e) {
        caught = true;
        EXPECT_EQ(e.verb(), 999u);
    }
    EXPECT_TRUE(caught);
    EXPECT_EQ(env.srv.stats().unknown_verbs, 1u);
    const std::string still = "still";
    EXPECT_EQ(co_await c.call<std::string>(echo, still), still);
    // Unregistering makes a verb unknown.
    EXPECT_TRUE(env.srv.unregister_handler(echo));
    auto f = c.call<std::string>(echo, std::string("gone"));
    EXPECT_THROW(co_await std::move(f), rpc::unknown_verb);
    co_await c.stop();
    co_await env.srv.stop();
}

REEF_TEST(rpc, timeout_reaches_the_server) {
    rpc_env env;
    rpc::client c;
    co_await c.connect(env.addr);
    auto f = c.call<std::uint32_t>({.timeout = 50ms}, sleep_ms, std::uint32_t(10000));
    EXPECT_THROW(co_await std::move(f), rpc::timeout_error);
    EXPECT_EQ(c.stats().timeouts, 1u);
    // The server's handler is aborted (cancel frame, and its own copy of the deadline).
    for (int i = 0; i < 2000 && env.obs.aborted == 0; ++i) {
        co_await sleep(5ms);
    }
    EXPECT_EQ(env.obs.aborted, 1);
    EXPECT_EQ(env.obs.finished, 0);
    // A call within its timeout succeeds.
    EXPECT_EQ(co_await c.call<std::uint32_t>({.timeout = 5000ms}, sleep_ms, std::uint32_t(1)), 1u);
    co_await c.stop();
    co_await env.srv.stop();
}

REEF_TEST(rpc, default_timeout) {
    rpc_env env;
    rpc::client c({.default_timeout = 30ms});
    co_await c.connect(env.addr);
    auto f = c.call<std::uint32_t>(sleep_ms, std::uint32_t(10000));
    EXPECT_THROW(co_await std::move(f), rpc::timeout_error);
    co_await c.stop();
    co_await env.srv.stop();
}

REEF_TEST(rpc, cancellation) {
    rpc_env env;
    rpc::client c;
    co_await c.connect(env.addr);
    abort_source as;
    auto f = c.call<std::uint32_t>({.cancel = &as}, sleep_ms, std::uint32_t(10000));
    for (int i = 0; i < 2000 && env.srv.stats().calls < 1; ++i) {
        co_await sleep(5ms);
    }
    as.request_abort();
    EXPECT_THROW(co_await std::move(f), rpc::canceled_error);
    for (int i = 0; i < 2000 && env.obs.aborted == 0; ++i) {
        co_await sleep(5ms);
    }
    EXPECT_EQ(env.obs.aborted, 1);
    EXPECT_EQ(env.srv.stats().cancels, 1u);
    // Already aborted: fails at once, nothing is sent.
    auto calls = c.stats().calls;
    auto f2 = c.call<std::uint32_t>({.cancel = &as}, sleep_ms, std::uint32_t(1));
    EXPECT_THROW(co_await std::move(f2), rpc::canceled_error);
    EXPECT_EQ(c.stats().calls, calls);
    co_await c.stop();
    co_await env.srv.stop();
}

REEF_TEST(rpc, server_stopped_mid_call) {
    rpc_env env;
    rpc::client c;
    co_await c.connect(env.addr);
    auto f = c.call<std::uint32_t>(sleep_ms, std::uint32_t(60000));
    auto g = c.call<std::uint32_t>(sleep_ms, std::uint32_t(60000));
    // Both calls are running on the server before it stops.
    for (int i = 0; i < 2000 && env.srv.stats().calls < 2; ++i) {
        co_await sleep(5ms);
    }
    co_await env.srv.stop();
    // Both calls fail (no hang): the connection is gone.
    EXPECT_THROW(co_await std::move(f), rpc::closed_error);
    EXPECT_THROW(co_await std::move(g), rpc::closed_error);
    EXPECT_EQ(env.obs.aborted, 2);
    EXPECT_FALSE(c.is_connected());
    auto h = c.call<std::string>(echo, std::string("x"));
    EXPECT_THROW(co_await std::move(h), rpc::closed_error);
    co_await c.stop();
}

REEF_TEST(rpc, client_stopped_mid_call) {
    rpc_env env;
    rpc::client c;
    co_await c.connect(env.addr);
    auto f = c.call<std::uint32_t>(sleep_ms, std::uint32_t(60000));
    for (int i = 0; i < 2000 && env.srv.stats().calls < 1; ++i) {
        co_await sleep(5ms);
    }
    co_await c.stop();
    EXPECT_THROW(co_await std::move(f), rpc::closed_error);
    // The server notices the lost connection and aborts the handler.
    for (int i = 0; i < 2000 && env.obs.aborted == 0; ++i) {
        co_await sleep(5ms);
    }
    EXPECT_EQ(env.obs.aborted, 1);
    co_await env.srv.stop();
}

REEF_TEST(rpc, connect_to_nothing_fails) {
    posix_stack_scope stack;
    // Find a free port by binding and closing a listener.
    net::socket_address addr;
    {
        auto ss = net::listen(loopback4(0));
        addr = ss.local_address();
    }
    rpc::client c;
    auto f = c.connect(addr);
    EXPECT_THROW(co_await std::move(f), std::system_error);
    auto g = c.call(echo, std::string("x"));
    EXPECT_THROW(co_await std::move(g), rpc::closed_error);
    co_await c.stop();
}

// ---- negotiation

REEF_TEST(rpc, old_client_new_server) {
    rpc_env env;
    // An "old" peer: no optional features at all.
    rpc::client c({{.features = 0}});
    co_await c.connect(env.addr);
    EXPECT_EQ(c.negotiation().features, 0u);
    const std::string text(10000, 'q');
    EXPECT_EQ(co_await c.call<std::string>(echo, text), text);
    EXPECT_EQ(c.stats().compressed_frames_sent, 0u);
    EXPECT_EQ(c.stats().compressed_frames_received, 0u);
    // Streams need the feature.
    EXPECT_THROW(c.make_sink<std::string>(), rpc::error);
    // Timeouts still work; without the cancel feature no cancel frame is sent, but the server
    // still aborts the handler on the deadline that travelled with the request.
    auto f = c.call<std::uint32_t>({.timeout = 40ms}, sleep_ms, std::uint32_t(10000));
    EXPECT_THROW(co_await std::move(f), rpc::timeout_error);
    for (int i = 0; i < 2000 && env.obs.aborted == 0; ++i) {
        co_await sleep(5ms);
    }
    EXPECT_EQ(env.obs.aborted, 1);
    EXPECT_EQ(env.srv.stats().cancels, 0u);
    co_await c.stop();
    co_await env.srv.stop();
}

REEF_TEST(rpc, new_client_old_server) {
    // An "old" server: version 1 and only LZ4; a "newer" client announcing version 7 and a feature
    // bit nobody knows yet. Both end up on version 1 and LZ4.
    rpc_env env({{.features = rpc::feature::lz4}});
    constexpr std::uint64_t future_bit = 1ull << 40;
    rpc::client c({{.features = rpc::feature::all | future_bit, .version = 7}});
    co_await c.connect(env.addr);
    EXPECT_EQ(c.negotiation().version, 1u);
    EXPECT_EQ(c.negotiation().features, rpc::feature::lz4);
    const std::string text(10000, 'q');
    EXPECT_EQ(co_await c.call<std::string>(echo, text), text);
    EXPECT_EQ(c.stats().compressed_frames_sent, 1u);
    EXPECT_THROW(c.make_source<std::string>(), rpc::error);
    co_await c.stop();
    co_await env.srv.stop();
}

REEF_TEST(rpc, frame_limit_is_negotiated) {
    rpc_env env({{.max_frame_size = 4096}});
    rpc::client c;
    co_await c.connect(env.addr);
    EXPECT_EQ(c.negotiation().peer_max_frame_size, 4096u);
    // Refused locally: nothing is sent, the connection stays.
    auto f = c.call<std::string>(echo, std::string(8192, 'x'));
    EXPECT_THROW(co_await std::move(f), rpc::frame_too_large);
    EXPECT_EQ(env.srv.stats().oversized_frames, 0u);
    const std::string fits = "fits";
    EXPECT_EQ(co_await c.call<std::string>(echo, fits), fits);
    co_await c.stop();
    co_await env.srv.stop();
}

// ---- streams

REEF_TEST(rpc, stream_client_to_server) {
    rpc_env env;
    rpc::client c({{.send_queue_bytes = 64 * 1024}});
    co_await c.connect(env.addr);
    auto sink = c.make_sink<std::vector<std::uint8_t>>();
    auto result = c.call<std::pair<std::uint64_t, std::uint64_t>>(sum_stream, sink);
    std::uint64_t expect_sum = 0;
    constexpr int items = 2000;
    for (int i = 0; i < items; ++i) {
        std::vector<std::uint8_t> v(4096, std::uint8_t(i));
        expect_sum += std::uint64_t(std::uint8_t(i)) * v.size();
        co_await sink(v);
    }
    co_await sink.close();
    auto [n, sum] = co_await std::move(result);
    EXPECT_EQ(n, std::uint64_t(items));
    EXPECT_EQ(sum, expect_sum);
    // A closed sink refuses more items.
    auto f = sink(std::vector<std::uint8_t>{1});
    EXPECT_THROW(co_await std::move(f), rpc::closed_error);
    co_await c.stop();
    co_await env.srv.stop();
}

REEF_TEST(rpc, stream_server_to_client) {
    rpc_env env;
    rpc::client c;
    co_await c.connect(env.addr);
    auto src = c.make_source<std::string>();
    auto done = c.call<std::uint32_t>(produce, src, std::uint32_t(500));
    std::uint32_t got = 0;
    bool in_order = true;
    for (;;) {
        auto item = co_await src();
        if (!item) {
            break;
        }
        in_order = in_order && *item == std::string(1000, char('a' + got % 26)) + std::to_string(got);
        ++got;
    }
    EXPECT_TRUE(in_order);
    EXPECT_EQ(got, 500u);
    EXPECT_EQ(co_await std::move(done), 500u);
    // Compression applies to stream items too (1000 repeated letters).
    EXPECT_GT(c.stats().compressed_frames_received, 400u);
    co_await c.stop();
    co_await env.srv.stop();
}

REEF_TEST(rpc, stream_dropped_by_a_failing_handler) {
    rpc_env env;
    rpc::client c;
    co_await c.connect(env.addr);
    auto src = c.make_source<std::string>();
    auto done = c.call(produce_then_fail, src);
    auto first = co_await src();
    EXPECT_EQ(first, std::optional<std::string>("one"));
    // The handler's sink died without close(): the source fails instead of waiting forever.
    bool caught = false;
    try {
        co_await src();
    } catch (const rpc::remote_error& e) {
        caught = true;
        EXPECT_EQ(e.type_name(), "rpc::stream_error");
    }
    EXPECT_TRUE(caught);
    EXPECT_THROW(co_await std::move(done), rpc::remote_error);
    co_await c.stop();
    co_await env.srv.stop();
}

REEF_TEST(rpc, stream_broken_by_server_stop) {
    rpc_env env;
    rpc::client c;
    co_await c.connect(env.addr);
    auto sink = c.make_sink<std::vector<std::uint8_t>>();
    auto result = c.call<std::pair<std::uint64_t, std::uint64_t>>(sum_stream, sink);
    const std::vector<std::uint8_t> ten(10, 1);
    co_await sink(ten);
    co_await sleep(20ms);
    co_await env.srv.stop();
    EXPECT_THROW(co_await std::move(result), rpc::closed_error);
    auto f = sink(std::vector<std::uint8_t>(10, 1));
    EXPECT_THROW(co_await std::move(f), rpc::closed_error);
    co_await c.stop();
}

// ---- scheduling groups and metrics

REEF_TEST(rpc, per_verb_scheduling_group) {
    auto created = create_scheduling_group("rpc_test_group", 200);
    auto sg = co_await std::move(created);
    {
        rpc_env env;
        env.srv.register_handler(which_group + 100, [] { return scheduling_group_name(current_scheduling_group()); },
                                 {.group = sg});
        rpc::client c;
        co_await c.connect(env.addr);
        EXPECT_EQ(co_await c.call<std::string>(which_group + 100), "rpc_test_group");
        EXPECT_NE(co_await c.call<std::string>(which_group), "rpc_test_group");
        co_await c.stop();
        co_await env.srv.stop();
    }
    co_await destroy_scheduling_group(sg);
}

REEF_TEST(rpc, server_metrics) {
    rpc_env env({.metrics_name = "test"});
    rpc::client c;
    co_await c.connect(env.addr);
    const std::string m = "m";
    co_await c.call<std::string>(echo, m);
    auto f = c.call(12345);
    EXPECT_THROW(co_await std::move(f), rpc::unknown_verb);
    auto families = metrics::collect_local("rpc_server_");
    auto value_of = [&](std::string_view name) -> double {
        for (auto& fam : families) {
            if (fam.name == name) {
                for (auto& s : fam.samples) {
                    for (auto& [k, v] : s.lbls) {
                        if (k == "server" && v == "test") {
                            return s.value.value;
                        }
                    }
                }
            }
        }
        return -1;
    };
    EXPECT_EQ(value_of("rpc_server_calls_total"), 1);
    EXPECT_EQ(value_of("rpc_server_unknown_verbs_total"), 1);
    EXPECT_EQ(value_of("rpc_server_connections_open"), 1);
    EXPECT_EQ(value_of("rpc_server_oversized_frames_total"), 0);
    co_await c.stop();
    co_await env.srv.stop();
}
