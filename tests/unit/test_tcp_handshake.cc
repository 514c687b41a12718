// Native TCP connection life cycle over the in-test link: handshakes with every option
// combination, data both ways, half-close, resets, TIME_WAIT expiry and reuse, simultaneous open
// and close, SYN retransmission and time-out, keepalive, Nagle, ICMP errors.
#include "test_tcp_link.hh"

#include "stack/native/tcp_connection.hh"

#include <string_view>
#include <system_error>

using namespace reef;
using namespace reef::net;
using namespace reef::net::testing;
using namespace std::string_view_literals;

namespace {

// The error a failed future carries (0 if it did not fail with a system_error).
template <typename T>
int error_of(future<T>& f) {
    try {
        f.get();
    } catch (const std::system_error& e) {
        return e.code().value();
    } catch (...) {
        return -1;
    }
    return 0;
}

template <typename T>
future<int> wait_error(future<T> f) {
    try {
        co_await std::move(f);
    } catch (const std::system_error& e) {
        co_return e.code().value();
    } catch (...) {
        co_return -1;
    }
    co_return 0;
}

struct conn_pair {
    connected_socket client, server;
};

future<conn_pair> open_pair(tcp_test_link& link, server_socket& ss, std::uint16_t port = 80) {
    auto accf = ss.accept();
    auto c = co_await link.a->connect(sa(addr_b, port));
    auto ar = co_await std::move(accf);
    co_return conn_pair{std::move(c), std::move(ar.connection)};
}

}  // namespace

REEF_TEST(tcp_handshake, data_both_ways_half_close_and_time_wait) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto accf = ss.accept();
    auto c = co_await link.a->connect(sa(addr_b, 80));
    auto ar = co_await std::move(accf);
    auto s = std::move(ar.connection);
    EXPECT_EQ(ar.remote_address, c.local_address());
    EXPECT_EQ(c.remote_address(), sa(addr_b, 80));
    EXPECT_GE(c.local_address().port(), link.a->config().ephemeral_port_min);
    EXPECT_EQ(std::string(native_tcp_info(c)->state), std::string("ESTABLISHED"));
    EXPECT_EQ(link.a->stats().active_opens, 1u);
    EXPECT_EQ(link.b->stats().passive_opens, 1u);

    auto cin = c.input();
    auto cout = c.output();
    auto sin = s.input();
    auto sout = s.output();
    co_await cout.write("hello"sv);
    co_await cout.flush();
    auto b = co_await sin.read();
    EXPECT_EQ(std::string(b.get(), b.size()), "hello");
    co_await sout.write("world"sv);
    co_await sout.flush();
    b = co_await cin.read();
    EXPECT_EQ(std::string(b.get(), b.size()), "world");

    // Half-close: the client stops sending; the server still can.
    co_await cout.close();
    auto rest = co_await read_all(sin);
    EXPECT_EQ(rest, "");
    EXPECT_EQ(std::string(native_tcp_info(s)->state), "CLOSE_WAIT");
    EXPECT_TRUE(co_await eventually([&] { return std::string(native_tcp_info(c)->state) == "FIN_WAIT_2"; }));
    co_await sout.write("after half-close"sv);
    co_await sout.close();
    auto got = co_await read_all(cin);
    EXPECT_EQ(got, "after half-close");

    // The active closer waits in TIME_WAIT; the passive one is gone.
    EXPECT_TRUE(co_await eventually([&] { return link.b->connection_count() == 0; }));
    EXPECT_EQ(link.a->time_wait_count(), 1u);
    EXPECT_EQ(std::string(native_tcp_info(c)->state), std::string("TIME_WAIT"));
    // ... for 2 MSL (200 ms in the test configuration).
    EXPECT_TRUE(co_await eventually([&] { return link.a->connection_count() == 0; }));
    EXPECT_EQ(std::string(native_tcp_info(c)->state), std::string("CLOSED"));
    co_await cin.close();
    co_await sin.close();
}

// tcp::connections(): one entry per connection with its addresses, state, queues, rto and cwnd
// (the agent's stack.connections).
REEF_TEST(tcp_handshake, connections_snapshot) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    EXPECT_TRUE(link.a->connections().empty());
    auto p = co_await open_pair(link, ss);
    auto cout = p.client.output();
    co_await cout.write("unread"sv);
    co_await cout.flush();
    auto snap = link.b->connections();
    REEF_ASSERT(snap.size() == 1);
    EXPECT_EQ(snap[0].local, sa(addr_b, 80));
    EXPECT_EQ(snap[0].remote, p.client.local_address());
    EXPECT_EQ(std::string(snap[0].info.state), "ESTABLISHED");
    EXPECT_TRUE(co_await eventually([&] { return link.b->connections()[0].info.recv_queued == 6; }));
    EXPECT_GT(snap[0].info.rto.count(), 0);
    EXPECT_GT(snap[0].info.cwnd, 0u);
    auto a = link.a->connections();
    REEF_ASSERT(a.size() == 1);
    EXPECT_EQ(a[0].local, p.client.local_address());
    EXPECT_EQ(a[0].remote, sa(addr_b, 80));
    // The client closes: its entry follows it to FIN_WAIT_2 and then TIME_WAIT, still listed.
    co_await cout.close();
    auto sin = p.server.input();
    EXPECT_EQ(co_await read_all(sin), "unread");
    auto sout = p.server.output();
    co_await sout.close();
    EXPECT_TRUE(co_await eventually([&] {
        auto c = link.a->connections();
        return c.size() == 1 && std::string(c[0].info.state) == "TIME_WAIT";
    }));
    EXPECT_TRUE(co_await eventually([&] { return link.b->connections().empty(); }));
    co_await sin.close();
    auto cin = p.client.input();
    co_await cin.close();
}

REEF_TEST(tcp_handshake, every_option_combination) {
    for (int server_all = 0; server_all < 2; ++server_all) {
        for (int mask = 0; mask < 8; ++mask) {
            auto ca = tcp_test_link::test_config();
            ca.timestamps = mask & 1;
            ca.sack = mask & 2;
            ca.window_scaling = mask & 4;
            auto cb = tcp_test_link::test_config();
            cb.timestamps = cb.sack = cb.window_scaling = server_all;
            tcp_test_link link(ca, cb);
            auto ss = link.b->listen(sa(addr_b, 80));
            auto p = co_await open_pair(link, ss);
            auto ic = *native_tcp_info(p.client);
            auto is = *native_tcp_info(p.server);
            bool ts = ca.timestamps && cb.timestamps, sack = ca.sack && cb.sack,
                 ws = ca.window_scaling && cb.window_scaling;
            EXPECT_EQ(ic.timestamps, ts) << mask << " " << server_all;
            EXPECT_EQ(is.timestamps, ts) << mask << " " << server_all;
            EXPECT_EQ(ic.sack, sack);
            EXPECT_EQ(is.sack, sack);
            EXPECT_EQ(ic.wscale, ws);
            EXPECT_EQ(is.wscale, ws);
            EXPECT_EQ(ic.mss, ts ? 1448u : 1460u);
            if (ws) {
                EXPECT_EQ(ic.rcv_wscale, tcp_wscale_for(ca.recv_buffer_size));
                EXPECT_EQ(is.snd_wscale, ic.rcv_wscale);
            } else {
                EXPECT_EQ(ic.snd_wscale, 0);
                EXPECT_EQ(ic.rcv_wscale, 0);
            }
            // Data both ways, byte-exact.
            auto cin = p.client.input();
            auto cout = p.client.output();
            auto sin = p.server.input();
            auto sout = p.server.output();
            std::uint64_t bad1 = 0, bad2 = 0;
            auto w1 = write_pattern(cout, 300000, 1);
            auto w2 = write_pattern(sout, 300000, 2);
            auto r1 = read_pattern(sin, 1, bad1);
            auto r2 = read_pattern(cin, 2, bad2);
            co_await std::move(w1);
            co_await std::move(w2);
            EXPECT_EQ(co_await std::move(r1), 300000u);
            EXPECT_EQ(co_await std::move(r2), 300000u);
            EXPECT_EQ(bad1 + bad2, 0u);
            co_await cin.close();
            co_await sin.close();
        }
    }
}

REEF_TEST(tcp_handshake, connect_to_closed_port_is_refused) {
    tcp_test_link link;
    auto f = link.a->connect(sa(addr_b, 81));
    int err = co_await wait_error(std::move(f));
    EXPECT_EQ(err, ECONNREFUSED);
    EXPECT_EQ(link.b->stats().drop_no_socket, 1u);
    EXPECT_EQ(link.b->stats().resets_sent, 1u);
    EXPECT_EQ(link.a->stats().resets_received, 1u);
    EXPECT_EQ(link.a->connection_count(), 0u);
    // The error names the address.
    auto f2 = link.a->connect(sa(addr_b, 81));
    try {
        co_await std::move(f2);
        ADD_FAILURE() << "connected";
    } catch (const std::system_error& e) {
        EXPECT_NE(std::string(e.what()).find("10.0.0.2:81"), std::string::npos) << e.what();
    }
}

REEF_TEST(tcp_handshake, abort_resets_the_peer) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto sin = p.server.input();
    auto rf = sin.read();
    native_tcp_abort(p.client);
    int err = co_await wait_error(std::move(rf));
    EXPECT_EQ(err, ECONNRESET);
    EXPECT_EQ(link.b->stats().resets_received, 1u);
    EXPECT_EQ(link.b->stats().established_resets, 1u);
    EXPECT_EQ(link.a->stats().resets_sent, 1u);
    EXPECT_EQ(link.a->connection_count(), 0u);
    EXPECT_EQ(link.b->connection_count(), 0u);
    // Writing after the reset fails too.
    auto sout = p.server.output();
    auto wf = sout.write("x"sv).then([&] { return sout.flush(); });
    EXPECT_NE(co_await wait_error(std::move(wf)), 0);
    co_await sin.close();
}

REEF_TEST(tcp_handshake, closing_with_unread_data_resets) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto cout = p.client.output();
    auto cin = p.client.input();
    co_await cout.write("unread"sv);
    co_await cout.flush();
    EXPECT_TRUE(co_await eventually([&] { return native_tcp_info(p.server)->recv_queued == 6; }));
    p.server = connected_socket();  // dropped without reading
    int err = co_await wait_error(cin.read());
    EXPECT_EQ(err, ECONNRESET);
    co_await cin.close();
}

REEF_TEST(tcp_handshake, time_wait_blocks_then_allows_reuse) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto local = sa(addr_a, 5000);
    {
        auto accf = ss.accept();
        auto c = co_await link.a->connect(sa(addr_b, 80), local);
        auto s = (co_await std::move(accf)).connection;
        EXPECT_EQ(c.local_address(), local);
        auto cout = c.output();
        auto sout = s.output();
        co_await cout.close();  // client closes first: client ends in TIME_WAIT
        EXPECT_TRUE(co_await eventually([&] { return std::string(native_tcp_info(c)->state) == "FIN_WAIT_2"; }));
        co_await sout.close();
        EXPECT_TRUE(co_await eventually([&] {
            return link.a->time_wait_count() == 1 && link.b->connection_count() == 0;
        })) << link.dump()
            << native_tcp_info(c)->state << " " << native_tcp_info(s)->state;
    }
    // RFC 9293 3.10.1: the same 4-tuple cannot be opened while in TIME_WAIT.
    EXPECT_EQ(co_await wait_error(link.a->connect(sa(addr_b, 80), local)), EADDRINUSE);
    EXPECT_TRUE(co_await eventually([&] { return link.a->connection_count() == 0; }));
    // After 2 MSL it can.
    {
        auto accf = ss.accept();
        auto c = co_await link.a->connect(sa(addr_b, 80), local);
        auto s = (co_await std::move(accf)).connection;
        // This time the server closes first: the server holds TIME_WAIT.
        auto sout = s.output();
        auto cin = c.input();
        co_await sout.write("again"sv);
        co_await sout.close();
        EXPECT_EQ(co_await read_all(cin), "again");
        EXPECT_TRUE(co_await eventually([&] { return std::string(native_tcp_info(s)->state) == "FIN_WAIT_2"; }));
        auto cout = c.output();
        co_await cout.close();
        EXPECT_TRUE(co_await eventually([&] { return link.b->time_wait_count() == 1; }));
        co_await cin.close();
    }
    // A new SYN for the tuple in the server's TIME_WAIT (newer timestamp) takes it over (RFC 6191).
    EXPECT_TRUE(co_await eventually([&] { return link.a->connection_count() == 0; }));
    EXPECT_EQ(link.b->time_wait_count(), 1u);
    {
        auto accf = ss.accept();
        auto c = co_await link.a->connect(sa(addr_b, 80), local);
        auto s = (co_await std::move(accf)).connection;
        EXPECT_EQ(link.b->stats().time_wait_reused, 1u);
        auto sout = s.output();
        auto cin = c.input();
        co_await sout.write("reused"sv);
        co_await sout.close();
        EXPECT_EQ(co_await read_all(cin), "reused");
        co_await cin.close();
    }
}

REEF_TEST(tcp_handshake, simultaneous_open) {
    tcp_test_link link;
    link.params.delay = std::chrono::milliseconds(5);  // both SYNs cross on the wire
    auto fa = link.a->connect(sa(addr_b, 2000), sa(addr_a, 1000));
    auto fb = link.b->connect(sa(addr_a, 1000), sa(addr_b, 2000));
    auto ca = co_await std::move(fa);
    auto cb = co_await std::move(fb);
    EXPECT_EQ(std::string(native_tcp_info(ca)->state), std::string("ESTABLISHED"));
    EXPECT_EQ(std::string(native_tcp_info(cb)->state), std::string("ESTABLISHED"));
    auto aout = ca.output();
    auto bin = cb.input();
    co_await aout.write("crossed"sv);
    co_await aout.close();
    EXPECT_EQ(co_await read_all(bin), "crossed");
    co_await bin.close();
}

REEF_TEST(tcp_handshake, simultaneous_close) {
    tcp_test_link link;
    link.params.delay = std::chrono::milliseconds(5);  // both FINs cross on the wire
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto cout = p.client.output();
    auto sout = p.server.output();
    auto f1 = cout.close();
    auto f2 = sout.close();
    co_await std::move(f1);
    co_await std::move(f2);
    // Both sides pass through CLOSING into TIME_WAIT (RFC 9293 3.6 figure 13).
    EXPECT_TRUE(co_await eventually([&] { return link.a->time_wait_count() == 1 && link.b->time_wait_count() == 1; }));
    EXPECT_TRUE(co_await eventually([&] { return link.a->connection_count() + link.b->connection_count() == 0; }));
}

REEF_TEST(tcp_handshake, syn_retransmitted_with_backoff_then_timeout) {
    auto ca = tcp_test_link::test_config();
    ca.max_syn_retransmits = 3;
    tcp_test_link link(ca);
    link.down = true;
    int err = co_await wait_error(link.a->connect(sa(addr_b, 80)));
    EXPECT_EQ(err, ETIMEDOUT);
    EXPECT_EQ(link.count([](auto& s) { return s.from == 0 && s.h.has(tcp_flag::syn); }), 4u);
    EXPECT_EQ(link.a->stats().attempt_fails, 1u);
    EXPECT_EQ(link.a->connection_count(), 0u);
}

REEF_TEST(tcp_handshake, lost_syn_ack_is_retransmitted) {
    tcp_test_link link;
    int synacks = 0;
    link.drop_if = [&](const seen_segment& s) { return s.from == 1 && s.h.has(tcp_flag::syn) && ++synacks <= 2; };
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    EXPECT_GE(synacks, 3);
    EXPECT_EQ(std::string(native_tcp_info(p.server)->state), std::string("ESTABLISHED"));
}

REEF_TEST(tcp_handshake, keepalive_probes_then_aborts) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    p.client.set_keepalive_parameters(tcp_keepalive_params{std::chrono::seconds(1), std::chrono::seconds(1), 2});
    p.client.set_keepalive(true);
    EXPECT_TRUE(p.client.get_keepalive());
    // The peer answers: probes go out, the connection lives.
    EXPECT_TRUE(
        co_await eventually([&] { return link.a->stats().keepalive_probes >= 1; }, std::chrono::milliseconds(3000)));
    EXPECT_EQ(std::string(native_tcp_info(p.client)->state), std::string("ESTABLISHED"));
    // The peer vanishes: `count` unanswered probes abort the connection.
    link.down = true;
    auto cin = p.client.input();
    int err = co_await wait_error(cin.read());
    EXPECT_EQ(err, ETIMEDOUT);
    EXPECT_EQ(link.a->stats().keepalive_timeouts, 1u);
    co_await cin.close();
}

REEF_TEST(tcp_handshake, nagle_holds_small_segments_until_acked) {
    for (bool nodelay : {false, true}) {
        tcp_test_link link;
        auto ss = link.b->listen(sa(addr_b, 80));
        auto p = co_await open_pair(link, ss);
        p.client.set_nodelay(nodelay);
        EXPECT_EQ(p.client.get_nodelay(), nodelay);
        link.log.clear();
        auto cout = p.client.output();
        for (auto piece : {"a"sv, "b"sv, "c"sv}) {
            co_await cout.write(piece);
            co_await cout.flush();
        }
        auto data_segments = [&] { return link.count([](auto& s) { return s.from == 0 && s.payload_len > 0; }); };
        EXPECT_EQ(data_segments(), nodelay ? 3u : 1u) << link.dump();
        auto sin = p.server.input();
        co_await cout.close();
        EXPECT_EQ(co_await read_all(sin), "abc");
        EXPECT_EQ(data_segments(), nodelay ? 3u : 2u) << link.dump();  // "bc" went together once "a" was acked
        co_await sin.close();
    }
}

REEF_TEST(tcp_handshake, icmp_errors) {
    // Port unreachable during the handshake fails connect at once.
    {
        tcp_test_link link;
        link.down = true;
        auto f = link.a->connect(sa(addr_b, 80));
        REEF_ASSERT(link.log.size() == 1);
        auto& syn = link.log[0];
        tcp_icmp_error e;
        e.kind = tcp_icmp_kind::port_unreachable;
        e.local_addr = addr_a;
        e.remote_addr = addr_b;
        e.local_port = syn.h.src_port;
        e.remote_port = 80;
        e.seq = syn.h.seq.raw + 12345;  // not in flight: ignored (RFC 5927)
        link.a->icmp_error(e);
        EXPECT_EQ(link.a->stats().drop_icmp_invalid, 1u);
        e.seq = syn.h.seq.raw;
        link.a->icmp_error(e);
        EXPECT_EQ(co_await wait_error(std::move(f)), ECONNREFUSED);
    }
    // Fragmentation needed lowers the MSS; the transfer goes on byte-exact in smaller segments.
    {
        tcp_test_link link;
        auto ss = link.b->listen(sa(addr_b, 80));
        auto p = co_await open_pair(link, ss);
        auto cout = p.client.output();
        auto sin = p.server.input();
        std::uint64_t bad = 0;
        auto r = read_pattern(sin, 7, bad);
        // Drop every segment larger than the new MTU allows, as a router would.
        link.drop_if = [](const seen_segment& s) {
            return s.from == 0 && s.payload_len + 20 + 4 * (s.h.data_offset - 5) + 20 > 1000;
        };
        auto w = write_pattern(cout, 200000, 7);
        EXPECT_TRUE(co_await eventually([&] { return link.dropped > 0; }));
        auto big =
            std::find_if(link.log.begin(), link.log.end(), [](auto& s) { return s.from == 0 && s.payload_len > 900; });
        REEF_ASSERT(big != link.log.end());
        tcp_icmp_error e;
        e.kind = tcp_icmp_kind::frag_needed;
        e.local_addr = addr_a;
        e.remote_addr = addr_b;
        e.local_port = p.client.local_address().port();
        e.remote_port = 80;
        e.seq = big->h.seq.raw;
        e.next_hop_mtu = 1000;
        link.a->icmp_error(e);
        EXPECT_EQ(link.a->stats().pmtu_updates, 1u);
        EXPECT_EQ(native_tcp_info(p.client)->mss, 1000u - 40 - 12);
        co_await std::move(w);
        EXPECT_EQ(co_await std::move(r), 200000u);
        EXPECT_EQ(bad, 0u);
        co_await sin.close();
    }
}

REEF_TEST(tcp_handshake, listener_close_and_accept_abort) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    EXPECT_THROW(link.b->listen(sa(addr_b, 80)), std::system_error);
    auto af = ss.accept();
    ss.abort_accept();
    EXPECT_EQ(co_await wait_error(std::move(af)), ECONNABORTED);
    ss = server_socket();
    EXPECT_EQ(co_await wait_error(link.a->connect(sa(addr_b, 80))), ECONNREFUSED);
    // The port is free again.
    auto ss2 = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss2);
    EXPECT_TRUE(bool(p.client));
}

REEF_TEST(tcp_handshake, orphaned_connection_closes_gracefully_and_times_out) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    {
        auto cout = p.client.output();
        co_await cout.write("last words"sv);
        co_await cout.flush();
    }
    p.client = connected_socket();  // every handle gone, output never closed: FIN after the data
    auto sin = p.server.input();
    EXPECT_EQ(co_await read_all(sin), "last words");
    // The server never closes: the orphan leaves FIN_WAIT_2 after fin_wait2_timeout.
    EXPECT_EQ(link.a->connection_count(), 1u);
    EXPECT_TRUE(co_await eventually([&] { return link.a->connection_count() == 0; }));
    co_await sin.close();
}

REEF_TEST(tcp_handshake, many_concurrent_connections) {
    tcp_test_link link;
    link.keep_log = false;
    auto ss = link.b->listen(sa(addr_b, 80));
    constexpr int n = 200;
    auto server = [&]() -> future<> {
        std::vector<future<>> handlers;
        for (int i = 0; i < n; ++i) {
            auto ar = co_await ss.accept();
            handlers.push_back([](connected_socket s) -> future<> {
                auto in = s.input();
                auto out = s.output();
                auto msg = co_await read_all(in);
                co_await out.write(msg + "!");
                co_await out.close();
                co_await in.close();
            }(std::move(ar.connection)));
        }
        for (auto& h : handlers) {
            co_await std::move(h);
        }
    };
    auto sf = server();
    std::vector<future<std::string>> clients;
    for (int i = 0; i < n; ++i) {
        clients.push_back([](tcp_test_link& l, int i) -> future<std::string> {
            auto c = co_await l.a->connect(sa(addr_b, 80));
            auto in = c.input();
            auto out = c.output();
            co_await out.write("hello " + std::to_string(i));
            co_await out.close();
            auto r = co_await read_all(in);
            co_await in.close();
            co_return r;
        }(link, i));
    }
    for (int i = 0; i < n; ++i) {
        EXPECT_EQ(co_await std::move(clients[std::size_t(i)]), "hello " + std::to_string(i) + "!");
    }
    co_await std::move(sf);
    EXPECT_EQ(link.a->stats().active_opens, std::uint64_t(n));
    EXPECT_EQ(link.b->stats().passive_opens, std::uint64_t(n));
    // Clients closed first: they hold TIME_WAIT, then everything is gone.
    EXPECT_TRUE(co_await eventually([&] { return link.a->connection_count() + link.b->connection_count() == 0; }));
}
