// native_stack as a network_stack: TCP (helper T's) through the native IPv4 layer between two
// stacks on a virtual wire, installed as the shard's stack like any other.
#include "native_test.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <utility>

using namespace reef;
using namespace reef::testing::native_test;

namespace {

future<> echo_one(net::server_socket& ss) {
    auto ar = co_await ss.accept();
    auto in = ar.connection.input();
    auto out = ar.connection.output();
    while (true) {
        auto buf = co_await in.read();
        if (buf.empty()) {
            break;
        }
        co_await out.write(buf.get(), buf.size());
        co_await out.flush();
    }
    co_await out.close();
}

char bulk_byte(std::size_t i) { return char((i * 7 + i / 4093) & 0xff); }

// Accept one connection and read it to the end: bytes received, and how many differ from
// bulk_byte.
future<std::pair<std::size_t, std::size_t>> sink_all(net::server_socket& ss) {
    auto ar = co_await ss.accept();
    auto in = ar.connection.input();
    std::size_t got = 0, bad = 0;
    while (true) {
        auto buf = co_await in.read();
        if (buf.empty()) {
            break;
        }
        for (std::size_t i = 0; i < buf.size(); ++i) {
            bad += buf[i] != bulk_byte(got + i);
        }
        got += buf.size();
    }
    co_return std::pair(got, bad);
}

}  // namespace

future<> tcp_echo(net::virtual_wire& w) {
    {
        auto a = co_await net::make_native_stack(*w.a, stack_options("10.0.0.1"));
        auto b = co_await net::make_native_stack(*w.b, stack_options("10.0.0.2"));
        EXPECT_EQ(a->name(), "native");
        auto ss = b->listen(sa("0.0.0.0", 80), {});
        auto server = echo_one(ss);
        auto cs = co_await a->connect(sa("10.0.0.2", 80), {});
        EXPECT_EQ(cs.remote_address(), sa("10.0.0.2", 80));
        EXPECT_EQ(cs.local_address().addr(), net::inet_address::parse("10.0.0.1"));
        auto out = cs.output();
        auto in = cs.input();
        // Larger than one segment and than the MTU: many segments through ARP and IPv4.
        std::string msg(100000, '\0');
        for (std::size_t i = 0; i < msg.size(); ++i) {
            msg[i] = char(i * 13 + 1);
        }
        co_await out.write(msg.data(), msg.size());
        co_await out.flush();
        std::string got;
        while (got.size() < msg.size()) {
            auto buf = co_await in.read();
            if (buf.empty()) {
                break;
            }
            got.append(buf.get(), buf.size());
        }
        EXPECT_TRUE(got == msg);
        co_await out.close();
        auto eof = co_await in.read();
        EXPECT_TRUE(eof.empty());
        co_await std::move(server);
        EXPECT_GT(a->native_statistics().ip.tx_packets, 60u);
        EXPECT_EQ(a->native_statistics().ip.frag_created, 0u);  // TCP sizes segments to the MTU
        EXPECT_GT(b->tcp().stats().segments_in, 60u);
        // A connection to a port nobody listens on is refused (RST from B's TCP).
        EXPECT_TRUE(co_await reef::testing::fails_with<std::system_error>(a->connect(sa("10.0.0.2", 81), {})));
        ss.abort_accept();
    }
}

REEF_TEST(native_stack, tcp_echo_between_two_native_stacks) {
    auto w = net::make_virtual_wire({});
    co_await w.a->start();
    co_await w.b->start();
    try {
        co_await tcp_echo(w);
    } catch (const std::exception& e) {
        ADD_FAILURE() << "exception: " << e.what();
    }
    co_await w.a->stop();
    co_await w.b->stop();
}

// A bulk transfer into a device whose transmit ring is tiny and drains slowly (16 frames,
// 200 Mbit/s): TCP waits for room (device back-pressure) instead of handing the device frames
// it would drop, so nothing is dropped, nothing is retransmitted, and every byte arrives.
REEF_TEST(native_stack, bulk_waits_for_room_in_a_tiny_tx_ring_instead_of_dropping) {
    net::virtual_wire_config cfg;
    cfg.ring_size = 16;
    cfg.faults.bandwidth_bps = 200'000'000;
    auto w = net::make_virtual_wire(cfg);
    co_await w.a->start();
    co_await w.b->start();
    try {
        auto a = co_await net::make_native_stack(*w.a, stack_options("10.0.0.1"));
        auto b = co_await net::make_native_stack(*w.b, stack_options("10.0.0.2"));
        auto ss = b->listen(sa("0.0.0.0", 80), {});
        constexpr std::size_t total = 4 << 20;
        auto sink = sink_all(ss);
        auto cs = co_await a->connect(sa("10.0.0.2", 80), {});
        auto out = cs.output();
        std::string chunk(64 * 1024, '\0');
        for (std::size_t off = 0; off < total; off += chunk.size()) {
            for (std::size_t i = 0; i < chunk.size(); ++i) {
                chunk[i] = bulk_byte(off + i);
            }
            co_await out.write(chunk.data(), chunk.size());
        }
        co_await out.close();
        auto [got, bad] = co_await std::move(sink);
        EXPECT_EQ(got, total);
        EXPECT_EQ(bad, 0u);
        auto& st = w.a->local_stats();
        EXPECT_EQ(st.tx_dropped, 0u);
        EXPECT_GT(st.tx_blocked, 0u);
        EXPECT_EQ(a->tcp().stats().retransmitted_segments, 0u);
        ss.abort_accept();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "exception: " << e.what();
    }
    co_await w.a->stop();
    co_await w.b->stop();
}

// The stack is a network_stack: set_local_stack makes the free functions use it.
REEF_TEST(native_stack, installed_as_the_shard_stack) {
    auto w = net::make_virtual_wire({});
    co_await w.a->start();
    co_await w.b->start();
    {
        auto b = co_await net::make_native_stack(*w.b, stack_options("10.0.0.2"));
        auto bc = b->make_udp_channel(sa("0.0.0.0", 53), {});
        net::set_local_stack(co_await net::make_native_stack(*w.a, stack_options("10.0.0.1")));
        EXPECT_EQ(net::local_stack().name(), "native");
        auto ch = net::make_udp_channel();
        co_await ch.send(sa("10.0.0.2", 53), "query");
        auto d = co_await bc.receive();
        EXPECT_EQ(d.data.to_string(), "query");
        EXPECT_EQ(d.src.port(), ch.local_address().port());
        ch.close();
        bc.close();
        d.data.reset();
        net::reset_local_stack();
    }
    co_await w.a->stop();
    co_await w.b->stop();
}

TEST(native_options, parsed_from_the_command_line_and_validated) {
    net::native_options o;
    CLI::App app("t");
    o.register_options(app);
    std::vector<std::string> args = {"--mtu",
                                     "1400",
                                     "--dhcp-timeout",
                                     "250",
                                     "--gw-ipv4-addr",
                                     "10.1.0.1",
                                     "--host-ipv4-addr",
                                     "10.1.0.7",
                                     "--netmask-ipv4-addr",
                                     "255.255.0.0",
                                     "--dhcp"};
    std::reverse(args.begin(), args.end());
    app.parse(args);
    EXPECT_EQ(o.mtu, 1400);
    EXPECT_EQ(o.dhcp_timeout, std::chrono::milliseconds(250));
    EXPECT_TRUE(o.dhcp);
    auto cfg = net::native::static_config(o, 1500);
    EXPECT_EQ(cfg.addr, ip("10.1.0.7"));
    EXPECT_EQ(cfg.gateway, ip("10.1.0.1"));
    EXPECT_EQ(cfg.mtu, 1400);

    CLI::App bad("t");
    net::native_options o2;
    o2.register_options(bad);
    std::vector<std::string> b = {"10.0.0.300", "--host-ipv4-addr"};
    EXPECT_THROW(bad.parse(b), CLI::ValidationError);

    auto invalid = [](auto change) {
        auto x = stack_options("10.0.0.1");
        change(x);
        try {
            net::native::static_config(x, 1500);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_NE(invalid([](auto& x) { x.netmask_ipv4_addr = "255.0.255.0"; }).find("--netmask-ipv4-addr"),
              std::string::npos);
    EXPECT_NE(invalid([](auto& x) { x.gw_ipv4_addr = "192.168.1.1"; }).find("--gw-ipv4-addr"), std::string::npos);
    EXPECT_NE(invalid([](auto& x) { x.mtu = 9000; }).find("--mtu"), std::string::npos);
    EXPECT_NE(invalid([](auto& x) { x.host_ipv4_addr = "0.0.0.0"; }).find("--host-ipv4-addr"), std::string::npos);
    EXPECT_EQ(invalid([](auto& x) { x.gw_ipv4_addr = ""; }), "");  // no gateway is fine
}
