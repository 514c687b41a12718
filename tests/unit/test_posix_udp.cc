// UDP channels over the posix stack: round trips, batching, truncation, errors, two shards.
#include "net_test.hh"
#include "reactor_test.hh"
#include "smp_test.hh"
#include "sync_test_util.hh"

#include "runtime/future_util.hh"
#include "runtime/sharded.hh"
#include "stack/net/api.hh"

#include <string>
#include <system_error>
#include <vector>

using namespace reef;
using reef::testing::error_code_of;
using reef::testing::loopback4;
using reef::testing::posix_stack_scope;

namespace {



}  // namespace

REEF_TEST(posix_udp, round_trip_with_addresses) {
    posix_stack_scope stack;
    auto a = net::make_udp_channel(loopback4());
    auto b = net::make_udp_channel(loopback4());
    EXPECT_NE(a.local_address().port(), 0);
    co_await a.send(b.local_address(), "ping");
    auto d = co_await b.receive();
    EXPECT_EQ(d.data.to_string(), "ping");
    EXPECT_EQ(d.src, a.local_address());
    EXPECT_EQ(d.dst, b.local_address());
    EXPECT_FALSE(d.truncated);
    co_await b.send(d.src, "pong");
    auto r = co_await a.receive();
    EXPECT_EQ(r.data.to_string(), "pong");
    a.close();
    b.close();
}

REEF_TEST(posix_udp, destination_address_of_a_channel_bound_to_any) {
    posix_stack_scope stack;
    auto server = net::make_udp_channel(net::socket_address(std::uint16_t(0)));
    auto port = server.local_address().port();
    auto client = net::make_udp_channel(loopback4());
    co_await client.send(loopback4(port), "x");
    auto d = co_await server.receive();
    EXPECT_EQ(d.dst, loopback4(port)) << "IP_PKTINFO gives the address the datagram was sent to";
}

REEF_TEST(posix_udp, gathers_fragments_of_a_packet) {
    posix_stack_scope stack;
    auto a = net::make_udp_channel(loopback4());
    auto b = net::make_udp_channel(loopback4());
    net::packet p(std::string_view("head-"));
    p.append(net::packet(std::string_view("middle-")));
    p.append(net::packet(std::string_view("tail")));
    EXPECT_EQ(p.nr_frags(), 3u);
    co_await a.send(b.local_address(), std::move(p));
    auto d = co_await b.receive();
    EXPECT_EQ(d.data.to_string(), "head-middle-tail");
}

REEF_TEST(posix_udp, sends_and_receives_in_batches) {
    posix_stack_scope stack;
    auto a = net::make_udp_channel(loopback4());
    auto b = net::make_udp_channel(loopback4());
    constexpr unsigned n = 200;
    auto before = net::local_stack().stats();
    std::vector<future<>> sends;
    for (unsigned i = 0; i < n; ++i) {
        sends.push_back(a.send(b.local_address(), fmt::format("datagram {}", i)));
    }
    co_await when_all_succeed(std::move(sends));
    unsigned in_order = 0;
    for (unsigned i = 0; i < n; ++i) {
        auto d = co_await b.receive();
        in_order += d.data.to_string() == fmt::format("datagram {}", i);
    }
    EXPECT_EQ(in_order, n) << "loopback keeps order and loses nothing at this volume";
    auto& after = net::local_stack().stats();
    EXPECT_EQ(after.datagrams_sent - before.datagrams_sent, n);
    EXPECT_EQ(after.datagrams_received - before.datagrams_received, n);
    // 200 sends made in one task batch leave in ceil(200 / 32) sendmmsg calls.
    EXPECT_LE(after.send_calls - before.send_calls, 7u);
    EXPECT_LT(after.receive_calls - before.receive_calls, n / 4);
}

REEF_TEST(posix_udp, oversized_datagram_is_truncated_and_flagged) {
    posix_stack_scope stack;
    net::udp_channel_options small;
    small.max_datagram_size = 100;
    auto a = net::make_udp_channel(loopback4());
    auto b = net::make_udp_channel(loopback4(), small);
    co_await a.send(b.local_address(), std::string(1000, 'z'));
    co_await a.send(b.local_address(), std::string(50, 'y'));
    auto d = co_await b.receive();
    EXPECT_TRUE(d.truncated);
    EXPECT_EQ(d.data.len(), 100u);
    EXPECT_EQ(d.data.to_string(), std::string(100, 'z'));
    auto e = co_await b.receive();
    EXPECT_FALSE(e.truncated);
    EXPECT_EQ(e.data.to_string(), std::string(50, 'y'));
    EXPECT_EQ(net::local_stack().stats().datagrams_truncated, 1u);
}

REEF_TEST(posix_udp, too_large_send_fails_naming_the_destination) {
    posix_stack_scope stack;
    auto a = net::make_udp_channel(loopback4());
    auto b = net::make_udp_channel(loopback4());
    std::exception_ptr ex;
    auto big = a.send(b.local_address(), std::string(70000, 'q'));  // above the UDP maximum
    auto fine = a.send(b.local_address(), "after");
    try {
        co_await std::move(big);
    } catch (...) {
        ex = std::current_exception();
    }
    REEF_ASSERT(ex);
    EXPECT_EQ(error_code_of(ex), EMSGSIZE);
    try {
        std::rethrow_exception(ex);
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find(b.local_address().to_string()), std::string::npos) << e.what();
    }
    // The failed datagram does not take the rest of its batch down with it.
    co_await std::move(fine);
    auto d = co_await b.receive();
    EXPECT_EQ(d.data.to_string(), "after");
}

REEF_TEST(posix_udp, shutdown_input_wakes_the_receiver) {
    posix_stack_scope stack;
    auto a = net::make_udp_channel(loopback4());
    auto pending = a.receive();
    co_await reef::testing::yield_once();
    EXPECT_FALSE(pending.available());
    a.shutdown_input();
    EXPECT_TRUE(co_await reef::testing::fails_with<std::system_error>(std::move(pending)));
    EXPECT_TRUE(co_await reef::testing::fails_with<std::system_error>(a.receive()));
    a.shutdown_output();
    EXPECT_TRUE(a.is_closed());
    EXPECT_TRUE(co_await reef::testing::fails_with<std::system_error>(a.send(loopback4(9), "x")));
}

REEF_TEST(posix_udp, ipv6_round_trip) {
    posix_stack_scope stack;
    net::udp_channel a, b;
    try {
        a = net::make_udp_channel(net::socket_address(net::inet_address::parse("::1"), 0));
        b = net::make_udp_channel(net::socket_address(net::inet_address::parse("::1"), 0));
    } catch (const std::system_error& e) {
        REEF_SKIP("IPv6 loopback unavailable: " << e.what());
    }
    co_await a.send(b.local_address(), "v6");
    auto d = co_await b.receive();
    EXPECT_EQ(d.data.to_string(), "v6");
    EXPECT_TRUE(d.src.is_ipv6());
    EXPECT_EQ(d.src, a.local_address());
}

REEF_TEST(posix_udp, rejects_a_unix_address) {
    posix_stack_scope stack;
    EXPECT_THROW(net::make_udp_channel(net::socket_address::unix_path("@reef-udp")), std::invalid_argument);
    co_return;
}

// Each shard echoes on one port (SO_REUSEPORT); clients on both shards get their answers.
struct shard_udp_echo {
    net::udp_channel ch;
    future<> loop = make_ready_future<>();
    void start(std::uint16_t port) {
        net::udp_channel_options o;
        o.reuse_port = true;
        ch = net::make_udp_channel(loopback4(port), o);
        loop = serve();
    }
    future<> serve() {
        while (true) {
            try {
                auto d = co_await ch.receive();
                co_await ch.send(d.src, std::move(d.data));
            } catch (const std::system_error&) {
                break;
            }
        }
    }
    future<> stop() {
        ch.close();
        return std::move(loop);
    }
};

future<unsigned> udp_clients(std::uint16_t port, unsigned n) {
    unsigned ok = 0;
    for (unsigned i = 0; i < n; ++i) {
        auto c = net::make_udp_channel(loopback4());
        auto msg = fmt::format("shard {} #{}", this_shard_id(), i);
        co_await c.send(loopback4(port), msg);
        auto d = co_await c.receive();
        ok += d.data.to_string() == msg;
        c.close();
    }
    co_return ok;
}

REEF_SMP_TEST(posix_udp, echo_on_two_shards, 2) {
    co_await reef::testing::start_posix_on_all_shards();
    sharded<shard_udp_echo> servers;
    co_await servers.start();
    servers.local().start(0);
    auto port = servers.local().ch.local_address().port();
    co_await servers.invoke_on(1, [port](shard_udp_echo& s) { s.start(port); });
    auto ok0 = udp_clients(port, 16);
    auto ok1 = smp::submit_to(1, [port] { return udp_clients(port, 16); });
    auto ok = co_await std::move(ok0) + co_await std::move(ok1);
    EXPECT_EQ(ok, 32u);
    co_await servers.stop();
    co_await reef::testing::stop_posix_on_all_shards();
}
