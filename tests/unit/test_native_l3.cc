// The native stack below TCP, against a peer played by the test over the virtual wire: ARP,
// IPv4 validation, fragmentation and reassembly, ICMP.
#include "native_test.hh"

#include "smp_test.hh"
#include "stack/net/toeplitz.hh"

#include <gtest/gtest.h>

using namespace reef;
using namespace reef::testing::native_test;

namespace {

const ipv4_addr stack_ip = ip("10.0.0.1");
const ipv4_addr peer_ip = ip("10.0.0.2");

future<net::datagram> receive_within(net::udp_channel& ch, std::chrono::milliseconds t = 2000ms) {
    auto f = ch.receive();
    return with_timeout(std::chrono::steady_clock::now() + t, std::move(f));
}

}  // namespace

// ---- ARP

REEF_TEST(native_arp, gratuitous_arp_announces_the_address_at_start) {
    auto r = co_await make_rig();
    auto g = co_await r->peer->next([](const parsed& p) { return p.type == 0x0806; });
    REEF_ASSERT(g);
    EXPECT_EQ(g->arp_op, 1);
    EXPECT_TRUE(g->dst.is_broadcast());
    EXPECT_EQ(g->spa, stack_ip);
    EXPECT_EQ(g->tpa, stack_ip);
    EXPECT_EQ(g->sha, r->stack_mac());
    EXPECT_EQ(r->stats().arp.tx_gratuitous, 1u);
    co_await r->stop();
    EXPECT_EQ(net::virtual_wire_live_frames(), 0);
}

REEF_TEST(native_arp, resolves_then_sends_the_queued_datagrams_in_order) {
    auto r = co_await make_rig();
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 5000), {});
    for (int i = 0; i < 3; ++i) {
        co_await ch.send(sa("10.0.0.2", 7), fmt::format("d{}", i));
    }
    auto req = co_await r->peer->next([](const parsed& p) { return is_arp_request_for(p, peer_ip); });
    REEF_ASSERT(req);
    EXPECT_EQ(req->spa, stack_ip);
    EXPECT_TRUE(req->dst.is_broadcast());
    for (int i = 0; i < 3; ++i) {
        auto d = co_await r->peer->next(is_udp);
        REEF_ASSERT(d);
        EXPECT_EQ(d->udp_payload, fmt::format("d{}", i));
        EXPECT_EQ(d->dst, r->peer->mac);
        EXPECT_EQ(d->ip_src, stack_ip);
        EXPECT_EQ(d->ip_dst, peer_ip);
        EXPECT_EQ(d->sport, 5000);
        EXPECT_EQ(d->dport, 7);
        EXPECT_TRUE(d->ip_csum_ok);
        EXPECT_TRUE(d->udp_csum_ok);
        EXPECT_EQ(d->ttl, 64);
    }
    EXPECT_EQ(r->ifc().arp().lookup(peer_ip), r->peer->mac);
    EXPECT_EQ(r->stats().arp.tx_requests, 1u);  // one request for the three datagrams
    // Now resolved: the next datagram goes at once, without a request.
    co_await ch.send(sa("10.0.0.2", 7), "later");
    auto d = co_await r->peer->next(is_udp);
    REEF_ASSERT(d);
    EXPECT_EQ(d->udp_payload, "later");
    EXPECT_EQ(r->stats().arp.tx_requests, 1u);
    // Off-link destinations go to the gateway's MAC.
    co_await ch.send(sa("192.0.2.9", 7), "via gw");
    auto gw = co_await r->peer->next([](const parsed& p) { return is_arp_request_for(p, ip("10.0.0.254")); });
    EXPECT_TRUE(gw);
    ch.close();
    co_await r->stop();
    EXPECT_EQ(net::virtual_wire_live_frames(), 0);
}

REEF_TEST(native_arp, answers_requests_for_its_address_and_ignores_others) {
    auto r = co_await make_rig();
    auto& peer = *r->peer;
    co_await run_for(5ms);
    peer.frames.clear();
    ethernet_address other{{0x02, 0, 0, 0, 0, 0x33}};
    // For another address: no reply, nothing learned.
    peer.send(eth_frame(net::native::broadcast_mac, other, 0x0806,
                        arp_payload(1, other, ip("10.0.0.3"), {}, ip("10.0.0.99"))));
    // For ours: a reply to the asker, who is learned.
    peer.send(eth_frame(net::native::broadcast_mac, peer.mac, 0x0806, arp_payload(1, peer.mac, peer_ip, {}, stack_ip)));
    auto rep = co_await peer.next([](const parsed& p) { return p.type == 0x0806 && p.arp_op == 2; });
    REEF_ASSERT(rep);
    EXPECT_EQ(rep->dst, peer.mac);
    EXPECT_EQ(rep->sha, r->stack_mac());
    EXPECT_EQ(rep->spa, stack_ip);
    EXPECT_EQ(rep->tpa, peer_ip);
    co_await run_for(10ms);
    EXPECT_EQ(peer.count([](const parsed& p) { return p.type == 0x0806 && p.arp_op == 2; }), 0u);
    EXPECT_EQ(r->stats().arp.rx_ignored_not_for_us, 1u);
    EXPECT_EQ(r->stats().arp.tx_replies, 1u);
    EXPECT_FALSE(r->ifc().arp().lookup(ip("10.0.0.3")));
    EXPECT_EQ(r->ifc().arp().lookup(peer_ip), peer.mac);
    // Malformed: wrong hardware length, and a truncated body.
    auto bad = arp_payload(1, peer.mac, peer_ip, {}, stack_ip);
    bad[4] = 8;
    peer.send(eth_frame(net::native::broadcast_mac, peer.mac, 0x0806, bad));
    peer.send(eth_frame(net::native::broadcast_mac, peer.mac, 0x0806, bad.substr(0, 20)));
    EXPECT_TRUE(co_await eventually([&] { return r->stats().arp.rx_dropped_malformed == 2; }));
    co_await r->stop();
}

REEF_TEST(native_arp, entries_expire_and_are_resolved_again) {
    auto o = stack_options("10.0.0.1");
    o.arp_cache_timeout = 150ms;
    auto r = co_await make_rig(o);
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 5000), {});
    co_await ch.send(sa("10.0.0.2", 7), "one");
    EXPECT_TRUE(co_await r->peer->next(is_udp));
    EXPECT_TRUE(r->ifc().arp().lookup(peer_ip));
    EXPECT_TRUE(co_await eventually([&] { return !r->ifc().arp().lookup(peer_ip); }));
    EXPECT_TRUE(co_await eventually([&] { return r->ifc().arp().size() == 0; }));  // swept
    EXPECT_GE(r->stats().arp.expired, 1u);
    r->peer->frames.clear();
    co_await ch.send(sa("10.0.0.2", 7), "two");
    EXPECT_TRUE(co_await r->peer->next([](const parsed& p) { return is_arp_request_for(p, peer_ip); }));
    auto d = co_await r->peer->next(is_udp);
    REEF_ASSERT(d);
    EXPECT_EQ(d->udp_payload, "two");
    EXPECT_EQ(r->stats().arp.tx_requests, 2u);
    ch.close();
    co_await r->stop();
}

REEF_TEST(native_arp, queue_is_bounded_and_dropped_when_resolution_fails) {
    auto o = stack_options("10.0.0.1");
    o.arp_queue_limit = 4;
    auto r = co_await make_rig(o);
    r->peer->answer_arp = false;
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 5000), {});
    for (int i = 0; i < 10; ++i) {
        co_await ch.send(sa("10.0.0.2", 7), fmt::format("d{}", i));
    }
    EXPECT_EQ(r->ifc().arp().queued(), 4u);
    EXPECT_EQ(r->stats().arp.queue_dropped, 6u);
    EXPECT_TRUE(co_await eventually([&] { return r->stats().arp.failed == 1; }));
    EXPECT_EQ(r->stats().arp.queue_dropped, 10u);
    EXPECT_EQ(r->stats().arp.tx_requests, 3u);  // arp_retries
    EXPECT_EQ(r->ifc().arp().queued(), 0u);
    EXPECT_EQ(r->peer->count(is_udp), 0u);
    // Queued again, then answered by hand: the last four (the oldest were dropped) go out in order.
    for (int i = 0; i < 6; ++i) {
        co_await ch.send(sa("10.0.0.2", 7), fmt::format("e{}", i));
    }
    auto req = co_await r->peer->next([](const parsed& p) { return is_arp_request_for(p, peer_ip); });
    REEF_ASSERT(req);
    r->peer->send(eth_frame(r->stack_mac(), r->peer->mac, 0x0806,
                            arp_payload(2, r->peer->mac, peer_ip, r->stack_mac(), stack_ip)));
    for (int i = 2; i < 6; ++i) {
        auto d = co_await r->peer->next(is_udp);
        REEF_ASSERT(d);
        EXPECT_EQ(d->udp_payload, fmt::format("e{}", i));
    }
    ch.close();
    co_await r->stop();
    EXPECT_EQ(net::virtual_wire_live_frames(), 0);
}

// ---- IPv4 validation

REEF_TEST(native_ipv4, each_malformation_is_dropped_and_counted_by_reason) {
    auto r = co_await make_rig();
    auto& peer = *r->peer;
    auto to = r->stack_mac();
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 9000), {});
    auto good = [&](const std::string& payload) {
        return ipv4_packet({.src = peer_ip, .dst = stack_ip}, udp_segment(peer_ip, stack_ip, 1234, 9000, payload));
    };
    auto send_raw = [&](std::string ippkt) { peer.send(eth_frame(to, peer.mac, 0x0800, ippkt)); };
    const auto& s = r->stats().ip;

    send_raw(good("x").substr(0, 12));  // shorter than a header
    auto v = good("x");
    v[0] = 0x65;  // version 6
    send_raw(v);
    auto ihl_small = good("x");
    ihl_small[0] = 0x44;  // IHL 4
    send_raw(ihl_small);
    auto ihl_big = good("x");
    ihl_big[0] = 0x4f;  // IHL 15: 60 bytes, more than the packet holds
    send_raw(ihl_big.substr(0, 40));
    auto tl_small = good("x");
    tl_small[2] = 0;
    tl_small[3] = 10;  // total length < header
    send_raw(tl_small);
    auto tl_big = good("x");
    tl_big[2] = 0x05;  // total length 1300 > what came
    send_raw(tl_big);
    auto csum = good("x");
    csum[8] = 1;  // TTL changed, checksum not updated
    send_raw(csum);
    send_raw(
        ipv4_packet({.src = peer_ip, .dst = ip("10.0.0.77")}, udp_segment(peer_ip, ip("10.0.0.77"), 1, 9000, "x")));
    send_raw(ipv4_packet({.src = ip("255.255.255.255"), .dst = stack_ip},
                         udp_segment(ip("255.255.255.255"), stack_ip, 1, 9000, "x")));
    send_raw(ipv4_packet({.src = peer_ip, .dst = stack_ip, .proto = 99}, "?"));
    EXPECT_TRUE(co_await eventually([&] { return s.rx_packets == 10; }));
    EXPECT_EQ(s.rx_dropped_too_short, 1u);
    EXPECT_EQ(s.rx_dropped_bad_version, 1u);
    EXPECT_EQ(s.rx_dropped_bad_header_length, 2u);
    EXPECT_EQ(s.rx_dropped_bad_total_length, 2u);
    EXPECT_EQ(s.rx_dropped_bad_checksum, 1u);
    EXPECT_EQ(s.rx_dropped_not_for_us, 1u);
    EXPECT_EQ(s.rx_dropped_bad_source, 1u);
    EXPECT_EQ(s.rx_dropped_unknown_protocol, 1u);
    EXPECT_EQ(s.rx_delivered, 0u);
    // An unknown protocol is answered with protocol unreachable.
    auto pu = co_await peer.next([](const parsed& p) { return is_icmp(p, 3) && p.l4[1] == 2; });
    EXPECT_TRUE(pu);

    // Options are skipped; Ethernet padding past the total length is trimmed.
    std::string with_opts =
        ipv4_packet({.src = peer_ip, .dst = stack_ip, .options = std::string("\x01\x01\x01\x00", 4)},
                    udp_segment(peer_ip, stack_ip, 1234, 9000, "opts"));
    send_raw(with_opts + std::string(20, '\0'));
    auto d = co_await receive_within(ch);
    EXPECT_EQ(d.data.to_string(), "opts");
    EXPECT_EQ(d.src, sa("10.0.0.2", 1234));
    EXPECT_EQ(s.rx_options_skipped, 1u);
    EXPECT_EQ(s.rx_delivered, 1u);
    ch.close();
    co_await r->stop();
}

// ---- ICMP

REEF_TEST(native_icmp, echo_request_is_answered_and_broadcast_echo_ignored) {
    auto r = co_await make_rig();
    auto& peer = *r->peer;
    std::string body = "ping payload 0123456789";
    peer.send_ip(r->stack_mac(), {.src = peer_ip, .dst = stack_ip, .proto = 1}, icmp_message(8, 0, 0x12340007, body));
    auto rep = co_await peer.next([](const parsed& p) { return is_icmp(p, 0); });
    REEF_ASSERT(rep);
    EXPECT_EQ(rep->ip_dst, peer_ip);
    EXPECT_EQ(rep->ip_src, stack_ip);
    EXPECT_TRUE(rep->ip_csum_ok);
    EXPECT_EQ(get32(rep->l4, 4), 0x12340007u);  // id and sequence echoed
    EXPECT_EQ(rep->l4.substr(8), body);
    EXPECT_EQ(net::internet_checksum(rep->l4.data(), rep->l4.size()), 0);  // checks out
    EXPECT_EQ(r->stats().icmp.tx_echo_replies, 1u);
    // A bad checksum is dropped; an echo to the broadcast address is not answered.
    auto bad = icmp_message(8, 0, 1, "x");
    bad[2] ^= 1;
    peer.send_ip(r->stack_mac(), {.src = peer_ip, .dst = stack_ip, .proto = 1}, bad);
    peer.send_ip(net::native::broadcast_mac, {.src = peer_ip, .dst = ip("10.0.0.255"), .proto = 1},
                 icmp_message(8, 0, 2, "b"));
    EXPECT_TRUE(co_await eventually([&] { return r->stats().icmp.rx_echo_requests == 2; }));
    EXPECT_EQ(r->stats().icmp.rx_dropped_malformed, 1u);
    co_await run_for(10ms);
    EXPECT_EQ(peer.count([](const parsed& p) { return is_icmp(p, 0); }), 0u);
    co_await r->stop();
}

REEF_TEST(native_icmp, closed_udp_port_gets_port_unreachable_rate_limited) {
    auto o = stack_options("10.0.0.1");
    o.icmp_error_burst = 5;
    o.icmp_error_rate = 1;
    auto r = co_await make_rig(o);
    auto& peer = *r->peer;
    auto seg = udp_segment(peer_ip, stack_ip, 4444, 9, "closed");
    for (int i = 0; i < 20; ++i) {
        peer.send_ip(r->stack_mac(), {.src = peer_ip, .dst = stack_ip, .id = std::uint16_t(100 + i)}, seg);
    }
    EXPECT_TRUE(co_await eventually([&] { return r->stats().udp.rx_no_port == 20; }));
    auto u = co_await peer.next([](const parsed& p) { return is_icmp(p, 3); });
    REEF_ASSERT(u);
    EXPECT_EQ(std::uint8_t(u->l4[1]), 3);  // port unreachable
    // The quote: our peer's IP header and the UDP header that came.
    auto quoted = u->l4.substr(8);
    REEF_ASSERT(quoted.size() >= 28);
    EXPECT_EQ(ipv4_addr(get32(quoted, 12)), peer_ip);
    EXPECT_EQ(get16(quoted, 20), 4444);
    EXPECT_EQ(get16(quoted, 22), 9);
    co_await run_for(20ms);
    EXPECT_EQ(peer.count([](const parsed& p) { return is_icmp(p, 3); }), 4u);  // 5 in the burst
    EXPECT_EQ(r->stats().icmp.tx_port_unreachable, 5u);
    EXPECT_EQ(r->stats().icmp.tx_rate_limited, 15u);
    // Never for a broadcast.
    peer.send_ip(net::native::broadcast_mac, {.src = peer_ip, .dst = ip("255.255.255.255")},
                 udp_segment(peer_ip, ip("255.255.255.255"), 4444, 9, "b"));
    EXPECT_TRUE(co_await eventually([&] { return r->stats().udp.rx_no_port == 21; }));
    EXPECT_EQ(r->stats().icmp.tx_rate_limited, 15u);
    co_await r->stop();
}

REEF_TEST(native_icmp, errors_reach_the_udp_channel_and_frag_needed_lowers_the_path_mtu) {
    auto r = co_await make_rig();
    auto& peer = *r->peer;
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 5000), {});
    co_await ch.send(sa("10.0.0.2", 9), "to a closed port");
    auto sent = co_await peer.next(is_udp);
    REEF_ASSERT(sent);
    // The peer answers with port unreachable quoting what we sent.
    std::string ip_and_udp = ipv4_packet({.src = stack_ip, .dst = peer_ip, .id = sent->id}, sent->l4);
    peer.send_ip(r->stack_mac(), {.src = peer_ip, .dst = stack_ip, .proto = 1}, icmp_message(3, 3, 0, ip_and_udp));
    EXPECT_TRUE(co_await eventually([&] { return r->stats().icmp.errors_to_udp == 1; }));
    auto f = ch.send(sa("10.0.0.2", 9), "again");
    std::exception_ptr ex;
    try {
        co_await std::move(f);
    } catch (...) {
        ex = std::current_exception();
    }
    REEF_ASSERT(ex);
    try {
        std::rethrow_exception(ex);
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ECONNREFUSED);
        EXPECT_NE(std::string(e.what()).find("10.0.0.2:9"), std::string::npos) << e.what();
    }
    co_await ch.send(sa("10.0.0.2", 9), "reported once");  // the error was consumed
    EXPECT_TRUE(co_await peer.next([](const parsed& p) { return is_udp(p) && p.udp_payload == "reported once"; }));

    // Fragmentation needed (next-hop MTU 1000): datagrams to the peer now leave in 1000-byte packets.
    EXPECT_EQ(r->ifc().ip().path_mtu(peer_ip), 1500);
    peer.send_ip(r->stack_mac(), {.src = peer_ip, .dst = stack_ip, .proto = 1}, icmp_message(3, 4, 1000, ip_and_udp));
    EXPECT_TRUE(co_await eventually([&] { return r->ifc().ip().path_mtu(peer_ip) == 1000; }));
    EXPECT_EQ(r->stats().icmp.rx_frag_needed, 1u);
    EXPECT_EQ(r->ifc().ip().path_mtu(ip("10.0.0.3")), 1500);  // per destination
    peer.frames.clear();
    // The next send reports EMSGSIZE once (the error), then fragments.
    (void)co_await reef::testing::fails_with<std::system_error>(ch.send(sa("10.0.0.2", 9), std::string(1400, 'm')));
    co_await ch.send(sa("10.0.0.2", 9), std::string(1400, 'm'));
    auto f1 = co_await peer.next([](const parsed& p) { return p.proto == 17 && (p.frag & 0x2000); });
    auto f2 = co_await peer.next([](const parsed& p) { return p.proto == 17 && (p.frag & 0x1fff); });
    REEF_ASSERT(f1 && f2);
    EXPECT_EQ(f1->l4.size() + 20, 996u);  // (1000 - 20) rounded down to 8, plus the header
    ch.close();
    co_await r->stop();
}

// ---- fragmentation and reassembly

REEF_TEST(native_ipv4, fragments_on_send_above_the_mtu) {
    auto r = co_await make_rig();
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 5000), {});
    std::string payload(4000, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) {
        payload[i] = char('a' + i % 26);
    }
    co_await ch.send(sa("10.0.0.2", 7), payload);
    std::vector<parsed> frags;
    for (int i = 0; i < 3; ++i) {
        auto f = co_await r->peer->next([](const parsed& p) { return p.proto == 17; });
        REEF_ASSERT(f);
        frags.push_back(*f);
    }
    // Offsets 0, 1480, 2960 (in 8-byte units: 0, 185, 370); MF on all but the last; one id.
    EXPECT_EQ(frags[0].frag, 0x2000);
    EXPECT_EQ(frags[1].frag, 0x2000 | 185);
    EXPECT_EQ(frags[2].frag, 370);
    EXPECT_EQ(frags[0].id, frags[2].id);
    std::string whole = frags[0].l4 + frags[1].l4 + frags[2].l4;
    EXPECT_EQ(frags[0].l4.size(), 1480u);
    EXPECT_EQ(whole.size(), 4008u);
    EXPECT_EQ(whole.substr(8), payload);
    for (auto& f : frags) {
        EXPECT_TRUE(f.ip_csum_ok);
    }
    net::checksummer c;
    auto s = stack_ip.bytes(), d = peer_ip.bytes();
    net::add_ipv4_pseudo_header(c, s.data(), d.data(), 17, whole.size());
    c.add(whole.data(), whole.size());
    EXPECT_EQ(c.folded_sum(), 0xffff);  // the UDP checksum covers the whole datagram
    EXPECT_EQ(r->stats().ip.frag_created, 3u);
    EXPECT_EQ(r->stats().ip.frag_datagrams, 1u);
    // Too big for UDP at all.
    EXPECT_TRUE(
        co_await reef::testing::fails_with<std::system_error>(ch.send(sa("10.0.0.2", 7), std::string(65508, 'x'))));
    ch.close();
    co_await r->stop();
}

namespace {

// The UDP datagram `payload` from the peer as IPv4 fragments of `chunk` payload bytes each.
std::vector<std::string> fragments_of(const std::string& payload, std::size_t chunk, std::uint16_t id,
                                      std::uint16_t dport = 9000) {
    auto udp = udp_segment(peer_ip, stack_ip, 1234, dport, payload);
    std::vector<std::string> out;
    for (std::size_t off = 0; off < udp.size(); off += chunk) {
        std::size_t n = std::min(chunk, udp.size() - off);
        std::uint16_t frag = std::uint16_t(off / 8) | (off + n < udp.size() ? 0x2000 : 0);
        out.push_back(ipv4_packet({.src = peer_ip, .dst = stack_ip, .id = id, .frag = frag}, udp.substr(off, n)));
    }
    return out;
}

void send_ip_raw(rig& r, const std::string& ippkt) {
    r.peer->send(eth_frame(r.stack_mac(), r.peer->mac, 0x0800, ippkt));
}

}  // namespace

REEF_TEST(native_ipv4, reassembles_out_of_order_and_duplicated_fragments) {
    auto r = co_await make_rig();
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 9000), {});
    std::string payload(3000, 'r');
    payload[0] = 'A';
    payload.back() = 'Z';
    auto fr = fragments_of(payload, 1200, 77);
    REEF_ASSERT(fr.size() == 3u);
    send_ip_raw(*r, fr[2]);
    send_ip_raw(*r, fr[0]);
    send_ip_raw(*r, fr[0]);  // exact duplicate: ignored
    send_ip_raw(*r, fr[1]);
    auto d = co_await receive_within(ch);
    EXPECT_EQ(d.data.to_string(), payload);
    EXPECT_EQ(d.src, sa("10.0.0.2", 1234));
    EXPECT_EQ(r->stats().ip.reasm_ok, 1u);
    EXPECT_EQ(r->stats().ip.reasm_fragments, 4u);
    EXPECT_EQ(r->ifc().ip().reassembly_bytes(), 0u);
    ch.close();
    co_await r->stop();
}

REEF_TEST(native_ipv4, overlapping_and_oversized_fragments_drop_the_datagram) {
    auto r = co_await make_rig();
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 9000), {});
    auto fr = fragments_of(std::string(3000, 'o'), 1200, 5);
    send_ip_raw(*r, fr[0]);
    // Bytes 1192.. overlapping the first fragment's end (offset 149 * 8 = 1192).
    auto udp = udp_segment(peer_ip, stack_ip, 1234, 9000, std::string(3000, 'o'));
    send_ip_raw(*r,
                ipv4_packet({.src = peer_ip, .dst = stack_ip, .id = 5, .frag = 0x2000 | 149}, udp.substr(1192, 800)));
    EXPECT_TRUE(co_await eventually([&] { return r->stats().ip.reasm_dropped_overlap == 1; }));
    // The rest of that datagram is discarded too (RFC 5722), even fragments that would fit.
    send_ip_raw(*r, fr[1]);
    send_ip_raw(*r, fr[2]);
    EXPECT_TRUE(co_await eventually([&] { return r->stats().ip.reasm_fragments == 4; }));
    EXPECT_EQ(r->stats().ip.reasm_ok, 0u);
    EXPECT_EQ(r->ifc().ip().reassembly_bytes(), 128u);  // only the poisoned entry's bookkeeping

    // A fragment reaching past 65535 bytes.
    send_ip_raw(*r, ipv4_packet({.src = peer_ip, .dst = stack_ip, .id = 6, .frag = 8190}, std::string(100, 'x')));
    // A last fragment ending before data already held.
    auto g = fragments_of(std::string(3000, 'g'), 1200, 7);
    send_ip_raw(*r, g[1]);
    send_ip_raw(*r, ipv4_packet({.src = peer_ip, .dst = stack_ip, .id = 7, .frag = 10}, std::string(16, 'x')));
    // A non-final fragment whose length is not a multiple of 8.
    send_ip_raw(*r, ipv4_packet({.src = peer_ip, .dst = stack_ip, .id = 8, .frag = 0x2000}, std::string(13, 'x')));
    EXPECT_TRUE(co_await eventually([&] { return r->stats().ip.reasm_fragments == 8; }));
    EXPECT_EQ(r->stats().ip.reasm_dropped_oversize, 2u);
    EXPECT_EQ(r->stats().ip.reasm_dropped_malformed, 1u);
    EXPECT_EQ(r->stats().ip.reasm_ok, 0u);
    co_await run_for(5ms);
    EXPECT_TRUE(co_await reef::testing::fails_with<timed_out_error>(receive_within(ch, 20ms)));
    ch.close();
    co_await r->stop();
}

REEF_TEST(native_ipv4, reassembly_memory_is_bounded_and_incomplete_datagrams_time_out) {
    auto o = stack_options("10.0.0.1");
    o.reassembly_memory = 8192;
    o.reassembly_timeout = 100ms;
    auto r = co_await make_rig(o);
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 9000), {});
    // First fragments of 20 datagrams that never complete: the oldest make room for the newest.
    for (std::uint16_t id = 1; id <= 20; ++id) {
        send_ip_raw(*r, fragments_of(std::string(3000, 'm'), 1200, id)[0]);
    }
    EXPECT_TRUE(co_await eventually([&] { return r->stats().ip.reasm_fragments == 20; }));
    EXPECT_LE(r->ifc().ip().reassembly_bytes(), 8192u);
    EXPECT_GE(r->stats().ip.reasm_dropped_memory, 14u);
    EXPECT_EQ(r->stats().ip.reasm_dropped_memory + r->ifc().ip().reassembly_datagrams(), 20u);
    // A complete datagram still gets through (its own fragments evict the stale ones).
    for (auto& f : fragments_of(std::string(2000, 'k'), 1200, 99)) {
        send_ip_raw(*r, f);
    }
    auto d = co_await receive_within(ch);
    EXPECT_EQ(d.data.to_string(), std::string(2000, 'k'));
    d.data.reset();  // it holds the fragments' frames (zero-copy)
    // What is left times out and is released.
    EXPECT_TRUE(co_await eventually([&] { return r->ifc().ip().reassembly_datagrams() == 0; }));
    EXPECT_EQ(r->ifc().ip().reassembly_bytes(), 0u);
    EXPECT_GE(r->stats().ip.reasm_dropped_timeout, 1u);
    EXPECT_EQ(r->stats().ip.reasm_bytes_held, 0u);
    ch.close();
    co_await r->stop();
    EXPECT_EQ(net::virtual_wire_live_frames(), 0);
}

REEF_TEST(native_ipv4, two_stacks_fragment_and_reassemble_large_datagrams) {
    auto w = net::make_virtual_wire({});
    co_await w.a->start();
    co_await w.b->start();
    auto a = co_await net::make_native_stack(*w.a, stack_options("10.0.0.1"));
    auto b = co_await net::make_native_stack(*w.b, stack_options("10.0.0.2"));
    auto ca = a->make_udp_channel(sa("0.0.0.0", 1000), {});
    auto cb = b->make_udp_channel(sa("10.0.0.2", 2000), {});
    std::string big(20000, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) {
        big[i] = char(i * 7);
    }
    co_await ca.send(sa("10.0.0.2", 2000), big);
    auto d = co_await receive_within(cb);
    EXPECT_EQ(d.data.to_string(), big);
    EXPECT_EQ(d.src, sa("10.0.0.1", 1000));
    EXPECT_EQ(d.dst, sa("10.0.0.2", 2000));
    EXPECT_EQ(b->native_statistics().ip.reasm_ok, 1u);
    EXPECT_EQ(a->native_statistics().ip.frag_created, 14u);
    co_await cb.send(d.src, "thanks");
    auto back = co_await receive_within(ca);
    EXPECT_EQ(back.data.to_string(), "thanks");
    d.data.reset();
    back.data.reset();
    ca.close();
    cb.close();
    a.reset();
    b.reset();
    co_await w.a->stop();
    co_await w.b->stop();
    EXPECT_EQ(net::virtual_wire_live_frames(), 0);
}

// ---- L2

REEF_TEST(native_l2, mac_filter_vlan_and_unknown_ethertypes) {
    auto r = co_await make_rig();
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 9000), {});
    auto& peer = *r->peer;
    auto dgram = ipv4_packet({.src = peer_ip, .dst = stack_ip}, udp_segment(peer_ip, stack_ip, 1, 9000, "v"));
    ethernet_address someone_else{{0x02, 0, 0, 0, 0, 0x99}};
    peer.send(eth_frame(someone_else, peer.mac, 0x0800, dgram));                    // not our MAC
    peer.send(eth_frame(r->stack_mac(), peer.mac, 0x86dd, std::string(40, '\0')));  // IPv6
    peer.send(std::string(10, 'x'));                                                // runt (the device drops it)
    // One 802.1Q tag: skipped.
    std::string tagged = eth_frame(r->stack_mac(), peer.mac, 0x8100, "");
    put16(tagged, 42);
    put16(tagged, 0x0800);
    peer.send(tagged + dgram);
    auto d = co_await receive_within(ch);
    EXPECT_EQ(d.data.to_string(), "v");
    auto& s = r->stats().l2;
    EXPECT_EQ(s.rx_dropped_not_ours, 1u);
    EXPECT_EQ(s.rx_dropped_unknown_type, 1u);
    EXPECT_EQ(r->stats().ip.rx_packets, 1u);
    ch.close();
    d.data.reset();
    co_await r->stop();
}

// ---- two shards, one queue (software RSS)

namespace {

future<> send_from(net::native_stack& s, std::uint16_t port, std::string what) {
    auto ch = s.make_udp_channel(sa("0.0.0.0", port), {});
    co_await ch.send(sa("10.0.0.2", 7), what);
    ch.close();
}

future<std::string> receive_on(net::udp_channel& ch) {
    auto d = co_await receive_within(ch);
    co_return d.data.to_string();
}

}  // namespace

REEF_SMP_TEST(native_smp, arp_miss_asks_shard_0_and_reassembled_datagrams_go_to_their_flow_shard, 2) {
    auto w = net::make_virtual_wire({.queues = 1});
    {
        wire_peer peer(*w.b, peer_ip);
        // Frames B's software RSS gives to its shard 1 are recorded by the peer on shard 0 too.
        co_await smp::submit_to(1, [&] {
            w.b->set_receive_handler([&peer](net::packet p) {
                (void)smp::submit_to(0, [&peer, s = p.to_string()]() mutable { peer.on_frame(std::move(s)); });
            });
        });
        co_await w.a->start();
        co_await w.b->start();
        std::vector<std::unique_ptr<net::native_stack>> st(smp::count);
        co_await smp::invoke_on_all([&]() -> future<> {
            st[this_shard_id()] = co_await net::make_native_stack(*w.a, stack_options("10.0.0.1"));
        });
        // A miss on shard 1: shard 0 resolves (one request), shard 1 sends once answered.
        co_await smp::submit_to(1, [&] { return send_from(*st[1], 5001, "from shard 1"); });
        auto d = co_await peer.next([](const parsed& p) { return is_udp(p) && p.udp_payload == "from shard 1"; });
        EXPECT_TRUE(d);
        auto s1 = co_await smp::submit_to(1, [&] { return st[1]->native_statistics().arp; });
        EXPECT_EQ(s1.remote_lookups, 1u);
        EXPECT_EQ(s1.tx_requests, 0u);
        EXPECT_EQ(st[0]->native_statistics().arp.tx_requests, 1u);
        EXPECT_EQ(co_await smp::submit_to(1, [&] { return st[1]->iface().arp().lookup(peer_ip); }), peer.mac);

        // A fragmented datagram whose 2-tuple shard (where fragments meet) differs from its
        // 4-tuple shard (where its flow lives).
        net::toeplitz tz(w.a->rss().key);
        std::string payload(3000, 'f');
        std::uint16_t sport = 1000;
        std::vector<std::string> frames;
        unsigned frag_shard = 0, flow_shard = 0;
        for (;; ++sport) {
            auto udp = udp_segment(peer_ip, stack_ip, sport, 9000, payload);
            frames.clear();
            for (std::size_t off = 0; off < udp.size(); off += 1200) {
                std::size_t n = std::min<std::size_t>(1200, udp.size() - off);
                std::uint16_t frag = std::uint16_t(off / 8) | (off + n < udp.size() ? 0x2000 : 0);
                frames.push_back(eth_frame(
                    w.a->hw_address(), peer.mac, 0x0800,
                    ipv4_packet({.src = peer_ip, .dst = stack_ip, .id = sport, .frag = frag}, udp.substr(off, n))));
            }
            frag_shard = w.a->shard_of(*net::frame_flow_hash(tz, frames[0].data(), frames[0].size()));
            auto s = peer_ip.bytes(), dd = stack_ip.bytes();
            flow_shard = w.a->shard_of(w.a->flow_hash(s.data(), dd.data(), 4, sport, 9000));
            if (frag_shard != flow_shard) {
                break;
            }
        }
        net::udp_channel_options rp;
        rp.reuse_port = true;
        std::vector<net::udp_channel> chans(smp::count);
        co_await smp::invoke_on_all(
            [&] { chans[this_shard_id()] = st[this_shard_id()]->make_udp_channel(sa("0.0.0.0", 9000), rp); });
        auto got = smp::submit_to(flow_shard, [&] { return receive_on(chans[flow_shard]); });
        for (auto& f : frames) {
            peer.send(f);
        }
        EXPECT_EQ(co_await std::move(got), payload);
        auto fs = co_await smp::submit_to(frag_shard, [&] { return st[frag_shard]->native_statistics().ip; });
        EXPECT_EQ(fs.reasm_ok, 1u);
        EXPECT_EQ(fs.reasm_forwarded, 1u);
        co_await smp::invoke_on_all([&] {
            chans[this_shard_id()].close();
            st[this_shard_id()].reset();
        });
        co_await smp::submit_to(1, [&] { w.b->set_receive_handler({}); });
    }
    co_await w.a->stop();
    co_await w.b->stop();
    EXPECT_EQ(net::virtual_wire_live_frames(), 0);
}
