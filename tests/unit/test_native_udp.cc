// UDP over the native stack: two stacks on a virtual wire (the semantics the posix stack's tests
// assert), checksums against a hand-built peer, and flows over two shards with software RSS.
#include "native_test.hh"
#include "net_test.hh"
#include "smp_test.hh"

#include <gtest/gtest.h>

#include <system_error>

using namespace reef;
using namespace reef::testing::native_test;
using reef::testing::fails_with;

namespace {

const ipv4_addr a_ip = ip("10.0.0.1");
const ipv4_addr b_ip = ip("10.0.0.2");

future<net::datagram> receive_within(net::udp_channel& ch, std::chrono::milliseconds t = 2000ms) {
    auto f = ch.receive();
    return with_timeout(std::chrono::steady_clock::now() + t, std::move(f));
}

int error_of(std::exception_ptr ex) { return reef::testing::error_code_of(ex); }

// Two native stacks, A (10.0.0.1) and B (10.0.0.2), joined by a wire.
struct pair_rig {
    net::virtual_wire w;
    std::unique_ptr<net::native_stack> a, b;
    future<> stop() {
        a.reset();
        b.reset();
        co_await w.a->stop();
        co_await w.b->stop();
    }
};

future<std::unique_ptr<pair_rig>> make_pair_rig() {
    auto r = std::make_unique<pair_rig>();
    r->w = net::make_virtual_wire({});
    co_await r->w.a->start();
    co_await r->w.b->start();
    r->a = co_await net::make_native_stack(*r->w.a, stack_options("10.0.0.1"));
    r->b = co_await net::make_native_stack(*r->w.b, stack_options("10.0.0.2"));
    co_return r;
}

}  // namespace

REEF_TEST(native_udp, round_trip_with_addresses) {
    auto r = co_await make_pair_rig();
    auto a = r->a->make_udp_channel(sa("10.0.0.1", 0), {});
    auto b = r->b->make_udp_channel(sa("0.0.0.0", 0), {});
    EXPECT_NE(a.local_address().port(), 0);
    co_await a.send(sa("10.0.0.2", b.local_address().port()), "ping");
    auto d = co_await receive_within(b);
    EXPECT_EQ(d.data.to_string(), "ping");
    EXPECT_EQ(d.src, a.local_address());
    EXPECT_EQ(d.dst, sa("10.0.0.2", b.local_address().port()));  // the address it was sent to
    EXPECT_FALSE(d.truncated);
    co_await b.send(d.src, "pong");
    auto e = co_await receive_within(a);
    EXPECT_EQ(e.data.to_string(), "pong");
    EXPECT_EQ(r->a->stats().datagrams_sent, 1u);
    EXPECT_EQ(r->a->stats().datagrams_received, 1u);
    EXPECT_EQ(r->b->native_statistics().udp.rx_datagrams, 1u);
    a.close();
    b.close();
    d.data.reset();
    e.data.reset();
    co_await r->stop();
    EXPECT_EQ(net::virtual_wire_live_frames(), 0);
}

REEF_TEST(native_udp, gathers_fragments_and_keeps_order_of_many_datagrams) {
    auto r = co_await make_pair_rig();
    auto a = r->a->make_udp_channel(sa("0.0.0.0", 0), {});
    auto b = r->b->make_udp_channel(sa("0.0.0.0", 7777), {});
    net::packet p(std::string_view("head-"));
    p.append(net::packet(std::string_view("middle-")));
    p.append(net::packet(std::string_view("tail")));
    co_await a.send(sa("10.0.0.2", 7777), std::move(p));
    auto d = co_await receive_within(b);
    EXPECT_EQ(d.data.to_string(), "head-middle-tail");
    for (unsigned i = 0; i < 200; ++i) {
        co_await a.send(sa("10.0.0.2", 7777), fmt::format("datagram {}", i));
    }
    unsigned in_order = 0;
    for (unsigned i = 0; i < 200; ++i) {
        auto e = co_await receive_within(b);
        in_order += e.data.to_string() == fmt::format("datagram {}", i);
    }
    EXPECT_EQ(in_order, 200u);
    a.close();
    b.close();
    co_await r->stop();
}

REEF_TEST(native_udp, errors_and_limits) {
    auto r = co_await make_pair_rig();
    net::udp_channel_options small;
    small.max_datagram_size = 100;
    auto a = r->a->make_udp_channel(sa("0.0.0.0", 4000), {});
    auto b = r->b->make_udp_channel(sa("0.0.0.0", 4001), small);
    // Truncation.
    co_await a.send(sa("10.0.0.2", 4001), std::string(1000, 'z'));
    co_await a.send(sa("10.0.0.2", 4001), std::string(50, 'y'));
    auto d = co_await receive_within(b);
    EXPECT_TRUE(d.truncated);
    EXPECT_EQ(d.data.to_string(), std::string(100, 'z'));
    auto e = co_await receive_within(b);
    EXPECT_FALSE(e.truncated);
    EXPECT_EQ(r->b->stats().datagrams_truncated, 1u);
    // Too big, naming the destination; the channel still works afterwards.
    std::exception_ptr ex;
    try {
        co_await a.send(sa("10.0.0.2", 4001), std::string(70000, 'q'));
    } catch (...) {
        ex = std::current_exception();
    }
    REEF_ASSERT(ex);
    EXPECT_EQ(error_of(ex), EMSGSIZE);
    try {
        std::rethrow_exception(ex);
    } catch (const std::exception& x) {
        EXPECT_NE(std::string(x.what()).find("10.0.0.2:4001"), std::string::npos) << x.what();
    }
    // Binding errors.
    auto bind_error = [&](net::socket_address where, net::udp_channel_options o = {}) {
        try {
            r->a->make_udp_channel(where, o);
        } catch (const std::system_error& x) {
            return x.code().value();
        }
        return 0;
    };
    EXPECT_EQ(bind_error(sa("0.0.0.0", 4000)), EADDRINUSE);
    net::udp_channel_options rp;
    rp.reuse_port = true;
    EXPECT_EQ(bind_error(sa("0.0.0.0", 4000), rp), EADDRINUSE);  // one channel per shard and port
    EXPECT_EQ(bind_error(sa("10.9.9.9", 0)), EADDRNOTAVAIL);
    EXPECT_EQ(bind_error(net::socket_address(net::inet_address::parse("::1"), 0)), EAFNOSUPPORT);
    EXPECT_FALSE(r->a->supports_ipv6());
    // No route: off-link without a gateway.
    auto o = stack_options("10.0.0.3");
    o.gw_ipv4_addr = "";
    auto w2 = net::make_virtual_wire({});
    auto c = co_await net::make_native_stack(*w2.a, o);
    auto cc = c->make_udp_channel(sa("0.0.0.0", 0), {});
    ex = nullptr;
    try {
        co_await cc.send(sa("192.0.2.1", 9), "x");
    } catch (...) {
        ex = std::current_exception();
    }
    EXPECT_EQ(error_of(ex), ENETUNREACH);
    cc.close();
    c.reset();
    // Shutting down: a pending receive wakes with an error, sends fail.
    auto pending = b.receive();
    co_await reef::testing::yield_once();
    EXPECT_FALSE(pending.available());
    b.shutdown_input();
    EXPECT_TRUE(co_await fails_with<std::system_error>(std::move(pending)));
    EXPECT_TRUE(co_await fails_with<std::system_error>(b.receive()));
    b.shutdown_output();
    EXPECT_TRUE(b.is_closed());
    EXPECT_TRUE(co_await fails_with<std::system_error>(b.send(sa("10.0.0.1", 4000), "x")));
    // The port is free again once closed.
    b.close();
    auto b2 = r->b->make_udp_channel(sa("0.0.0.0", 4001), {});
    b2.close();
    a.close();
    d.data.reset();
    e.data.reset();
    co_await r->stop();
    co_await w2.a->stop();
    co_await w2.b->stop();
}

REEF_TEST(native_udp, checksums_bad_dropped_zero_accepted) {
    auto r = co_await make_rig();
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 9000), {});
    auto& peer = *r->peer;
    auto send = [&](std::string udp) { peer.send_ip(r->stack_mac(), {.src = ip("10.0.0.2"), .dst = a_ip}, udp); };
    auto bad = udp_segment(ip("10.0.0.2"), a_ip, 1, 9000, "bad");
    bad.back() ^= 0x20;  // payload changed after the checksum
    send(bad);
    send(udp_segment(ip("10.0.0.2"), a_ip, 1, 9000, "none", false));
    auto lying = udp_segment(ip("10.0.0.2"), a_ip, 1, 9000, "lie");
    lying[5] = 60;  // UDP length past the IP payload
    send(lying);
    send(udp_segment(ip("10.0.0.2"), a_ip, 1, 9000, "good"));
    auto d = co_await receive_within(ch);
    EXPECT_EQ(d.data.to_string(), "none");
    auto e = co_await receive_within(ch);
    EXPECT_EQ(e.data.to_string(), "good");
    auto& s = r->stats().udp;
    EXPECT_EQ(s.rx_dropped_bad_checksum, 1u);
    EXPECT_EQ(s.rx_zero_checksum, 1u);
    EXPECT_EQ(s.rx_dropped_short, 1u);
    EXPECT_EQ(s.rx_datagrams, 2u);
    // A queue that is full drops and counts.
    for (int i = 0; i < 1030; ++i) {
        send(udp_segment(ip("10.0.0.2"), a_ip, 1, 9000, "q"));
    }
    EXPECT_TRUE(co_await eventually([&] { return s.rx_dropped_queue_full == 6; }));
    ch.close();
    d.data.reset();
    e.data.reset();
    co_await r->stop();
    EXPECT_EQ(net::virtual_wire_live_frames(), 0);
}

// ---- two shards, one queue: software RSS

namespace {

struct shard_part {
    std::unique_ptr<net::native_stack> a, b;
    net::udp_channel server;  // on B, port 7000 on every shard
    std::vector<std::string> got;
    future<> loop = make_ready_future<>();
};

future<> serve(shard_part& s) {
    while (true) {
        net::datagram d;
        try {
            d = co_await s.server.receive();
        } catch (const std::system_error&) {
            break;
        }
        s.got.push_back(d.data.to_string());
        co_await s.server.send(d.src, std::move(d.data));
    }
}

future<> start_part(shard_part& s, net::virtual_wire& w) {
    // Every client datagram waits for the first ARP answer: let them all queue.
    auto oa = stack_options("10.0.0.1");
    oa.arp_queue_limit = 64;
    s.a = co_await net::make_native_stack(*w.a, oa);
    s.b = co_await net::make_native_stack(*w.b, stack_options("10.0.0.2"));
    net::udp_channel_options o;
    o.reuse_port = true;
    s.server = s.b->make_udp_channel(sa("0.0.0.0", 7000), o);
    s.loop = serve(s);
}

future<> stop_part(shard_part& s) {
    s.server.close();
    co_await std::move(s.loop);
    s.a.reset();
    s.b.reset();
}

// Clients on shard 0 of A: one channel (port) per flow; each sends its port and waits for the echo.
future<unsigned> clients(net::native_stack& a, unsigned n, std::vector<std::uint16_t>& ports) {
    std::vector<net::udp_channel> chans;
    for (unsigned i = 0; i < n; ++i) {
        chans.push_back(a.make_udp_channel(sa("0.0.0.0", 0), {}));
        ports.push_back(chans.back().local_address().port());
        co_await chans.back().send(sa("10.0.0.2", 7000), std::to_string(ports.back()));
    }
    unsigned ok = 0;
    for (unsigned i = 0; i < n; ++i) {
        try {
            auto d = co_await receive_within(chans[i]);
            ok += d.data.to_string() == std::to_string(ports[i]);
        } catch (...) {
        }
        chans[i].close();
    }
    co_return ok;
}

}  // namespace

REEF_SMP_TEST(native_udp, flows_land_on_the_shard_their_hash_picks_with_software_rss, 2) {
    {
        net::virtual_wire_config cfg;
        cfg.queues = 1;  // shard 1 has no queue: shard 0 hashes and forwards
        auto w = net::make_virtual_wire(cfg);
        co_await w.a->start();
        co_await w.b->start();
        std::vector<shard_part> parts(smp::count);
        co_await smp::invoke_on_all([&] { return start_part(parts[this_shard_id()], w); });
        std::vector<std::uint16_t> ports;
        auto ok = co_await clients(*parts[0].a, 24, ports);
        EXPECT_EQ(ok, 24u);
        // Each datagram reached the B shard its 4-tuple hashes to.
        unsigned on[2] = {0, 0};
        for (auto port : ports) {
            auto src = a_ip.bytes(), dst = b_ip.bytes();
            unsigned want = w.b->shard_of(w.b->flow_hash(src.data(), dst.data(), 4, port, 7000));
            auto got = co_await smp::submit_to(want, [&parts, port] {
                auto& g = parts[this_shard_id()].got;
                return std::count(g.begin(), g.end(), std::to_string(port));
            });
            EXPECT_EQ(got, 1) << "port " << port << " expected on shard " << want;
            ++on[want];
        }
        EXPECT_GT(on[0], 0u);
        EXPECT_GT(on[1], 0u);
        // Replies hashed to A's shard 1 were forwarded to shard 0 where the client channels live.
        unsigned replies_on_1 = 0;
        for (auto port : ports) {
            auto src = b_ip.bytes(), dst = a_ip.bytes();
            replies_on_1 += w.a->shard_of(w.a->flow_hash(src.data(), dst.data(), 4, 7000, port)) == 1;
        }
        auto fwd = co_await smp::submit_to(1, [&parts] { return parts[1].a->native_statistics().udp.rx_forwarded; });
        EXPECT_EQ(fwd, replies_on_1);
        EXPECT_GT(replies_on_1, 0u);
        // ARP: shard 0 owns the table, shard 1 has a copy of what shard 0 learned.
        auto copy = co_await smp::submit_to(1, [&parts] { return parts[1].b->iface().arp().lookup(a_ip); });
        EXPECT_EQ(copy, w.a->hw_address());
        co_await smp::invoke_on_all([&] { return stop_part(parts[this_shard_id()]); });
        co_await w.a->stop();
        co_await w.b->stop();
    }
    EXPECT_EQ(net::virtual_wire_live_frames(), 0);
}

// ---- transmit checksum offload

namespace {

// A device that claims to fill IPv4 and UDP checksums, in front of a wire device: it checks what
// the stack asks for (offload_info) and completes the checksums the way a NIC would
// (fill_checksums), so the peer sees correct ones only if the stack asked for them correctly.
class offloading_device final : public net::device {
    net::device& _inner;
    net::hw_features _f;

public:
    unsigned asked_ip = 0, asked_l4 = 0, plain = 0;
    explicit offloading_device(net::device& inner) : _inner(inner), _f(inner.features()) {
        _f.tx_ip_csum_offload = true;
        _f.tx_l4_csum_offload = true;
    }
    std::string_view name() const noexcept override { return "offload"; }
    ethernet_address hw_address() const noexcept override { return _inner.hw_address(); }
    const net::hw_features& features() const noexcept override { return _f; }
    unsigned hw_queues_count() const noexcept override { return _inner.hw_queues_count(); }
    const net::rss_config& rss() const noexcept override { return _inner.rss(); }
    net::link_status get_link_status() const override { return _inner.get_link_status(); }
    future<> start() override { return _inner.start(); }
    future<> stop() override { return _inner.stop(); }
    void set_receive_handler(std::function<void(net::packet)> h) override { _inner.set_receive_handler(std::move(h)); }
    void set_packet_hook(net::packet_hook h) override { _inner.set_packet_hook(std::move(h)); }
    void send(net::packet p) override {
        auto& oi = p.offload();
        asked_ip += oi.needs_ip_csum;
        asked_l4 += oi.needs_csum && oi.protocol == 17;
        plain += !oi.needs_ip_csum && !oi.needs_csum;
        EXPECT_TRUE(net::fill_checksums(p));
        _inner.send(std::move(p));
    }
    const net::device_stats& local_stats() const noexcept override { return _inner.local_stats(); }
};

}  // namespace

REEF_TEST(native_udp, checksums_left_to_a_device_that_offloads_them) {
    auto w = net::make_virtual_wire({});
    offloading_device dev(*w.a);
    wire_peer peer(*w.b, b_ip);
    co_await dev.start();
    co_await w.b->start();
    {
        auto s = co_await net::make_native_stack(dev, stack_options("10.0.0.1"));
        auto ch = s->make_udp_channel(sa("0.0.0.0", 5000), {});
        co_await ch.send(sa("10.0.0.2", 7), "offloaded");
        auto d = co_await peer.next(is_udp);
        REEF_ASSERT(d);
        EXPECT_EQ(d->udp_payload, "offloaded");
        EXPECT_TRUE(d->ip_csum_ok);
        EXPECT_TRUE(d->udp_csum_ok);
        EXPECT_EQ(dev.asked_l4, 1u);
        EXPECT_GE(dev.asked_ip, 1u);
        // Fragments: the UDP checksum is computed in software (no device can do it per fragment).
        co_await ch.send(sa("10.0.0.2", 7), std::string(3000, 'F'));
        auto f1 = co_await peer.next([](const parsed& p) { return p.proto == 17; });
        REEF_ASSERT(f1);
        EXPECT_TRUE(f1->ip_csum_ok);
        EXPECT_EQ(dev.asked_l4, 1u);
        ch.close();
    }
    co_await dev.stop();
    co_await w.b->stop();
}
