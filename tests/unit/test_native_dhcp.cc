// The native stack's DHCP client against a small DHCP server the test plays over the wire:
// DISCOVER/OFFER/REQUEST/ACK, renewal at T1, the lease running out, and no server at all.
#include "native_test.hh"
#include "smp_test.hh"

#include <gtest/gtest.h>

#include <stdexcept>

using namespace reef;
using namespace reef::testing::native_test;

namespace {

const ipv4_addr server_ip = ip("10.0.0.254");
const ipv4_addr offered_ip = ip("10.0.0.50");

struct dhcp_request {
    std::uint8_t type = 0;
    std::uint32_t xid = 0;
    ipv4_addr ciaddr, requested, server_id;
    ethernet_address chaddr;
    bool broadcast_flag = false;
    parsed frame;
};

// A BOOTREQUEST from the client (UDP 68 -> 67), or nullopt.
std::optional<dhcp_request> parse_request(const parsed& p) {
    if (!is_udp(p) || p.sport != 68 || p.dport != 67) {
        return std::nullopt;
    }
    auto& b = p.udp_payload;
    if (b.size() < 240 || b[0] != 1 || get32(b, 236) != 0x63825363) {
        return std::nullopt;
    }
    dhcp_request r;
    r.frame = p;
    r.xid = get32(b, 4);
    r.broadcast_flag = get16(b, 10) & 0x8000;
    r.ciaddr = ipv4_addr(get32(b, 12));
    std::memcpy(r.chaddr.mac.data(), b.data() + 28, 6);
    for (std::size_t i = 240; i + 1 < b.size() && std::uint8_t(b[i]) != 255;) {
        std::uint8_t code = std::uint8_t(b[i]);
        if (code == 0) {
            ++i;
            continue;
        }
        std::size_t len = std::uint8_t(b[i + 1]);
        if (code == 53) {
            r.type = std::uint8_t(b[i + 2]);
        } else if (code == 50) {
            r.requested = ipv4_addr(get32(b, i + 2));
        } else if (code == 54) {
            r.server_id = ipv4_addr(get32(b, i + 2));
        }
        i += 2 + len;
    }
    return r;
}

struct lease_terms {
    std::uint32_t lease = 3600;
    std::optional<std::uint32_t> t1, t2;
    std::uint16_t mtu = 0;
};

// The server's BOOTREPLY of `type` to `req`, broadcast (as the client asked) or unicast.
void reply(wire_peer& server, const dhcp_request& req, std::uint8_t type, const lease_terms& t) {
    std::string b(236, '\0');
    b[0] = 2;
    b[1] = 1;
    b[2] = 6;
    b[4] = char(req.xid >> 24);
    b[5] = char(req.xid >> 16);
    b[6] = char(req.xid >> 8);
    b[7] = char(req.xid);
    std::string y;
    put32(y, type == 6 ? 0 : offered_ip.ip);
    b.replace(16, 4, y);
    b.replace(28, 6, std::string(reinterpret_cast<const char*>(req.chaddr.mac.data()), 6));
    put32(b, 0x63825363);
    auto opt32 = [&](std::uint8_t code, std::uint32_t v) {
        b.push_back(char(code));
        b.push_back(4);
        put32(b, v);
    };
    b += std::string{53, 1, char(type)};
    opt32(54, server_ip.ip);
    if (type != 6) {
        opt32(1, 0xffffff00u);
        opt32(3, server_ip.ip);
        opt32(51, t.lease);
        if (t.t1) {
            opt32(58, *t.t1);
        }
        if (t.t2) {
            opt32(59, *t.t2);
        }
        if (t.mtu) {
            b += std::string{26, 2};
            put16(b, t.mtu);
        }
    }
    b.push_back(char(255));
    bool bcast = req.broadcast_flag || req.ciaddr.is_any();
    ipv4_addr dst = bcast ? ip("255.255.255.255") : req.ciaddr;
    auto to_mac = bcast ? net::native::broadcast_mac : req.chaddr;
    server.send_ip(to_mac, {.src = server_ip, .dst = dst}, udp_segment(server_ip, dst, 67, 68, b));
}

future<std::optional<dhcp_request>> next_request(wire_peer& server, std::uint8_t type,
                                                 std::chrono::milliseconds timeout = 5000ms) {
    auto f = co_await server.next(
        [type](const parsed& p) {
            auto r = parse_request(p);
            return r && r->type == type;
        },
        timeout);
    if (!f) {
        co_return std::nullopt;
    }
    co_return parse_request(*f);
}

// Answer one DISCOVER and one REQUEST; returns the REQUEST.
future<std::optional<dhcp_request>> serve_one_lease(wire_peer& server, lease_terms t) {
    auto d = co_await next_request(server, 1);
    if (!d) {
        co_return std::nullopt;
    }
    reply(server, *d, 2, t);
    auto r = co_await next_request(server, 3);
    if (r) {
        reply(server, *r, 5, t);
    }
    co_return r;
}

net::native_options dhcp_options() {
    auto o = stack_options("10.0.0.1");
    o.dhcp = true;
    o.dhcp_retry = 50ms;
    o.dhcp_timeout = 3000ms;
    return o;
}

}  // namespace

REEF_TEST(native_dhcp, lease_applied_renewed_at_t1_and_lost_at_its_end) {
    auto w = net::make_virtual_wire({});
    wire_peer server(*w.b, server_ip);
    co_await w.a->start();
    co_await w.b->start();
    auto starting = net::make_native_stack(*w.a, dhcp_options());
    lease_terms t{.lease = 2, .t1 = 1, .t2 = std::nullopt, .mtu = 1400};
    auto req = co_await serve_one_lease(server, t);
    REEF_ASSERT(req);
    EXPECT_EQ(req->requested, offered_ip);  // RFC 2131 4.3.2: requested address and server id
    EXPECT_EQ(req->server_id, server_ip);
    EXPECT_TRUE(req->ciaddr.is_any());
    EXPECT_EQ(req->chaddr, w.a->hw_address());
    EXPECT_TRUE(req->frame.ip_src.is_any());
    EXPECT_TRUE(req->frame.dst.is_broadcast());
    EXPECT_TRUE(req->frame.udp_csum_ok);
    auto stack = co_await std::move(starting);
    auto& cfg = stack->iface().config();
    EXPECT_EQ(cfg.addr, offered_ip);
    EXPECT_EQ(cfg.netmask, ip("255.255.255.0"));
    EXPECT_EQ(cfg.gateway, server_ip);
    EXPECT_EQ(cfg.mtu, 1400);
    auto& st = stack->native_statistics().dhcp;
    EXPECT_EQ(st.offers, 1u);
    EXPECT_EQ(st.acks, 1u);
    // The new address is announced.
    EXPECT_TRUE(co_await server.next(
        [](const parsed& p) { return p.type == 0x0806 && p.spa == offered_ip && p.tpa == offered_ip; }));

    // T1 (1 s): a REQUEST unicast to the server, from the leased address.
    auto renew = co_await next_request(server, 3, 3000ms);
    REEF_ASSERT(renew);
    EXPECT_EQ(renew->ciaddr, offered_ip);
    EXPECT_EQ(renew->frame.ip_src, offered_ip);
    EXPECT_EQ(renew->frame.ip_dst, server_ip);
    EXPECT_EQ(renew->frame.dst, server.mac);  // unicast, after ARP
    EXPECT_EQ(st.renewals, 1u);
    reply(server, *renew, 5, t);
    EXPECT_TRUE(co_await eventually([&] { return st.acks == 2; }));
    EXPECT_EQ(stack->iface().dhcp()->current_state(), net::native::dhcp_client::state::bound);
    EXPECT_EQ(stack->iface().config().addr, offered_ip);

    // The server goes silent: renewing, rebinding (broadcast), then the lease ends.
    EXPECT_TRUE(co_await eventually([&] { return st.rebinds == 1; }, 5000ms));
    // (Unicast retransmissions of the renewal may come first.)
    auto rebind = co_await server.next(
        [](const parsed& p) {
            auto r = parse_request(p);
            return r && r->type == 3 && p.dst.is_broadcast();
        },
        3000ms);
    REEF_ASSERT(rebind);
    EXPECT_EQ(parse_request(*rebind)->ciaddr, offered_ip);
    EXPECT_TRUE(co_await eventually([&] { return st.leases_lost == 1; }, 5000ms));
    EXPECT_TRUE(stack->iface().config().addr.is_any());
    // ... and discovery starts again.
    EXPECT_TRUE(co_await next_request(server, 1, 3000ms));
    stack.reset();
    co_await w.a->stop();
    co_await w.b->stop();
}

REEF_TEST(native_dhcp, no_server_fails_start_with_a_clear_error) {
    auto w = net::make_virtual_wire({});
    wire_peer silent(*w.b, server_ip);
    co_await w.a->start();
    co_await w.b->start();
    auto o = dhcp_options();
    o.dhcp_timeout = 400ms;
    std::string what;
    try {
        auto s = co_await net::make_native_stack(*w.a, o);
    } catch (const std::runtime_error& e) {
        what = e.what();
    }
    EXPECT_NE(what.find("no answer from a DHCP server"), std::string::npos) << what;
    EXPECT_NE(what.find("--dhcp-timeout"), std::string::npos) << what;
    // Retransmitted with back-off: 50, 100, 200 ms... so at least 3 DISCOVERs in 400 ms.
    EXPECT_GE(silent.count([](const parsed& p) {
        auto r = parse_request(p);
        return r && r->type == 1;
    }),
              3u);
    co_await w.a->stop();
    co_await w.b->stop();
}

REEF_TEST(native_dhcp, nak_restarts_discovery) {
    auto w = net::make_virtual_wire({});
    wire_peer server(*w.b, server_ip);
    co_await w.a->start();
    co_await w.b->start();
    auto starting = net::make_native_stack(*w.a, dhcp_options());
    auto d = co_await next_request(server, 1);
    REEF_ASSERT(d);
    reply(server, *d, 2, {});
    auto r = co_await next_request(server, 3);
    REEF_ASSERT(r);
    reply(server, *r, 6, {});  // NAK
    auto req = co_await serve_one_lease(server, {});
    EXPECT_TRUE(req);
    auto stack = co_await std::move(starting);
    EXPECT_EQ(stack->iface().config().addr, offered_ip);
    EXPECT_EQ(stack->native_statistics().dhcp.naks, 1u);
    EXPECT_EQ(stack->iface().config().mtu, 1500);
    stack.reset();
    co_await w.a->stop();
    co_await w.b->stop();
}

// On two shards: shard 1 waits for shard 0's lease; replies hashed to shard 1 reach the client.
REEF_SMP_TEST(native_dhcp, every_shard_gets_the_lease, 2) {
    auto w = net::make_virtual_wire({.queues = 1});
    {
        wire_peer server(*w.b, server_ip);
        co_await w.a->start();
        co_await w.b->start();
        std::vector<std::unique_ptr<net::native_stack>> stacks(smp::count);
        auto o = dhcp_options();
        auto starting = smp::invoke_on_all([&] {
            return net::make_native_stack(*w.a, o).then(
                [&](std::unique_ptr<net::native_stack> s) { stacks[this_shard_id()] = std::move(s); });
        });
        auto req = co_await serve_one_lease(server, {});
        EXPECT_TRUE(req);
        co_await std::move(starting);
        auto a1 = co_await smp::submit_to(1, [&] { return stacks[1]->iface().config().addr; });
        EXPECT_EQ(a1, offered_ip);
        co_await smp::invoke_on_all([&] { stacks[this_shard_id()].reset(); });
    }
    co_await w.a->stop();
    co_await w.b->stop();
}
