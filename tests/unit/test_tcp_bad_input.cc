// Native TCP against bad input: malformed segments (illegal flags, bad option lengths, bad
// checksums, lying header lengths), data outside the window, blind RST/SYN/ACK injection
// (RFC 5961 challenge ACKs), PAWS, SYN floods (SYN cookies beyond the backlog), corruption and
// random garbage. Each is dropped or answered as the RFCs say, counted, and never breaks the
// connections that are there.
#include "test_tcp_link.hh"

#include "stack/native/tcp_connection.hh"

#include <random>
#include <string_view>
#include <system_error>

using namespace reef;
using namespace reef::net;
using namespace reef::net::testing;
using namespace std::string_view_literals;

namespace {

struct conn_pair {
    connected_socket client, server;
};

future<conn_pair> open_pair(tcp_test_link& link, server_socket& ss) {
    auto accf = ss.accept();
    auto c = co_await link.a->connect(sa(addr_b, 80));
    auto ar = co_await std::move(accf);
    co_return conn_pair{std::move(c), std::move(ar.connection)};
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

}  // namespace

REEF_TEST(tcp_bad_input, malformed_segments_are_dropped_and_counted) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto& st = link.b->stats();
    auto before_in = st.segments_in;
    auto n0 = link.log.size();
    tcp_options none;
    tcp_ipv4 evil = 0x0a0000fe;
    auto inject = [&](packet pk) { link.b->received(evil, addr_b, std::move(pk)); };

    inject(craft(evil, addr_b, hdr(4000, 80, tcp_seq(1), tcp_seq(0), tcp_flag::syn | tcp_flag::fin), none));
    inject(craft(evil, addr_b, hdr(4000, 80, tcp_seq(1), tcp_seq(0), tcp_flag::syn | tcp_flag::rst), none));
    inject(craft(evil, addr_b, hdr(4000, 80, tcp_seq(1), tcp_seq(0), 0), none, "null scan"));
    EXPECT_EQ(st.drop_bad_flags, 3u);

    // Options whose lengths lie: MSS of length 3, a length running past the header, length 0.
    inject(craft(evil, addr_b, hdr(4000, 80, tcp_seq(1), tcp_seq(0), tcp_flag::syn), none, {}, false,
                 std::string_view("\x02\x03\x05\xb4", 4)));
    inject(craft(evil, addr_b, hdr(4000, 80, tcp_seq(1), tcp_seq(0), tcp_flag::syn), none, {}, false,
                 std::string_view("\x01\x01\x08\x20", 4)));
    inject(craft(evil, addr_b, hdr(4000, 80, tcp_seq(1), tcp_seq(0), tcp_flag::syn), none, {}, false,
                 std::string_view("\x1e\x00\x00\x00", 4)));
    EXPECT_EQ(st.drop_bad_options, 3u);

    inject(craft(evil, addr_b, hdr(4000, 80, tcp_seq(1), tcp_seq(0), tcp_flag::syn), none, "", true));
    EXPECT_EQ(st.drop_bad_checksum, 1u);

    // Header lengths that lie: a runt, a data offset past the end, a data offset below 5.
    inject(packet("0123456789ab"sv));
    auto h = hdr(4000, 80, tcp_seq(1), tcp_seq(0), tcp_flag::syn);
    h.data_offset = 15;
    inject(craft(evil, addr_b, h, none));
    h.data_offset = 4;
    inject(craft(evil, addr_b, h, none));
    EXPECT_EQ(st.drop_bad_header, 3u);

    // None of these was answered or created anything.
    EXPECT_EQ(replies_since(link, n0).size(), 0u);
    EXPECT_EQ(link.b->connection_count(), 1u);
    EXPECT_EQ(st.segments_in, before_in);

    // Segments to a closed port are answered with RST (RFC 9293 3.10.7.1).
    inject(craft(evil, addr_b, hdr(4000, 81, tcp_seq(1000), tcp_seq(0), tcp_flag::syn), none));
    inject(craft(evil, addr_b, hdr(4000, 81, tcp_seq(1000), tcp_seq(5555), tcp_flag::ack), none, "data"));
    auto r = replies_since(link, n0);
    REEF_ASSERT(r.size() == 2);
    EXPECT_EQ(r[0].h.flags, tcp_flag::rst | tcp_flag::ack);
    EXPECT_EQ(r[0].h.ack.raw, 1001u);  // SEG.SEQ + SEG.LEN (the SYN)
    EXPECT_EQ(r[0].h.seq.raw, 0u);
    EXPECT_EQ(r[1].h.flags, tcp_flag::rst);
    EXPECT_EQ(r[1].h.seq.raw, 5555u);  // SEG.ACK
    EXPECT_EQ(st.drop_no_socket, 2u);
    // A RST to a closed port is not answered.
    inject(craft(evil, addr_b, hdr(4000, 81, tcp_seq(1000), tcp_seq(0), tcp_flag::rst), none));
    EXPECT_EQ(replies_since(link, n0).size(), 2u);
    // A stray ACK to the listener: RST.
    inject(craft(evil, addr_b, hdr(4000, 80, tcp_seq(1000), tcp_seq(777), tcp_flag::ack), none));
    EXPECT_EQ(replies_since(link, n0).size(), 3u);
    EXPECT_EQ(st.drop_listen_bad, 1u);

    // The real connection is untouched.
    auto cout = p.client.output();
    auto sin = p.server.input();
    co_await cout.write("still fine"sv);
    co_await cout.close();
    EXPECT_EQ(co_await read_all(sin), "still fine");
    co_await sin.close();
}

REEF_TEST(tcp_bad_input, data_outside_the_window_and_bad_acks) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto& st = link.b->stats();
    auto v = view_of(link);
    auto n0 = link.log.size();
    auto inject = [&](tcp_header h, std::string_view data, std::uint32_t tsval) {
        link.b->received(addr_a, addr_b, craft(addr_a, addr_b, h, ts_opts(tsval), data));
    };
    // Beyond the right edge of the window.
    inject(hdr(v.sport, 80, v.seq + 64 * 1024 * 1024, v.ack, tcp_flag::ack), "far ahead", v.tsval);
    // Entirely before RCV.NXT (an old duplicate).
    inject(hdr(v.sport, 80, v.seq - 100000, v.ack, tcp_flag::ack), "long ago", v.tsval);
    EXPECT_EQ(st.drop_out_of_window, 2u);
    auto r = replies_since(link, n0);
    REEF_ASSERT(r.size() == 2);  // both are acknowledged (RFC 9293 3.10.7.4)
    for (auto& s : r) {
        EXPECT_EQ(s.h.flags, tcp_flag::ack);
        EXPECT_EQ(s.h.ack, v.seq);  // nothing accepted
        EXPECT_EQ(s.payload_len, 0u);
    }
    // An ACK of data never sent (RFC 5961 5.2): dropped, answered with an ACK.
    auto n1 = link.log.size();
    inject(hdr(v.sport, 80, v.seq, v.ack + 100000, tcp_flag::ack), "xyz", v.tsval);
    EXPECT_EQ(st.drop_bad_ack, 1u);
    EXPECT_EQ(replies_since(link, n1).size(), 1u);
    // An ACK far below SND.UNA - MAX.SND.WND: challenge ACK.
    inject(hdr(v.sport, 80, v.seq, v.ack - 0x40000000, tcp_flag::ack), "", v.tsval);
    EXPECT_EQ(st.drop_bad_ack, 2u);
    EXPECT_EQ(st.challenge_acks, 1u);
    // The stream has none of it.
    EXPECT_EQ(native_tcp_info(p.server)->recv_queued, 0u);
    auto cout = p.client.output();
    auto sin = p.server.input();
    co_await cout.write("clean"sv);
    co_await cout.close();
    EXPECT_EQ(co_await read_all(sin), "clean");
    co_await sin.close();
}

REEF_TEST(tcp_bad_input, in_window_rst_and_syn_get_challenge_acks) {
    auto cb = tcp_test_link::test_config();
    cb.challenge_ack_limit = 3;
    tcp_test_link link(tcp_test_link::test_config(), cb);
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto& st = link.b->stats();
    auto v = view_of(link);
    auto n0 = link.log.size();
    auto inject = [&](tcp_header h) {
        // Timestamps on everything but RSTs, as the connection uses them (RFC 7323 3.2).
        auto o = h.has(tcp_flag::rst) ? tcp_options{} : ts_opts(v.tsval);
        link.b->received(addr_a, addr_b, craft(addr_a, addr_b, h, o));
    };
    // RFC 5961 3.2: a RST inside the window but not at RCV.NXT only draws a challenge ACK.
    inject(hdr(v.sport, 80, v.seq + 1000, tcp_seq(0), tcp_flag::rst));
    EXPECT_EQ(st.challenge_acks, 1u);
    auto r = replies_since(link, n0);
    REEF_ASSERT(r.size() == 1);
    EXPECT_EQ(r[0].h.flags, tcp_flag::ack);
    EXPECT_EQ(r[0].h.ack, v.seq);
    EXPECT_EQ(std::string(native_tcp_info(p.server)->state), "ESTABLISHED");
    EXPECT_EQ(st.resets_received, 0u);
    // RFC 5961 4.2: a SYN on a synchronized connection, whatever its sequence number, likewise.
    inject(hdr(v.sport, 80, v.seq + 77777777, tcp_seq(0), tcp_flag::syn));
    EXPECT_EQ(st.challenge_acks, 2u);
    EXPECT_EQ(std::string(native_tcp_info(p.server)->state), "ESTABLISHED");
    // RFC 5961 7: at most challenge_ack_limit per second.
    for (int i = 0; i < 5; ++i) {
        inject(hdr(v.sport, 80, v.seq + 2000 + i, tcp_seq(0), tcp_flag::rst));
    }
    EXPECT_EQ(st.challenge_acks, 3u);
    EXPECT_EQ(st.challenge_acks_suppressed, 4u);
    // A RST outside the window is ignored silently.
    auto n1 = link.log.size();
    inject(hdr(v.sport, 80, v.seq + 0x10000000, tcp_seq(0), tcp_flag::rst));
    EXPECT_EQ(replies_since(link, n1).size(), 0u);
    // Data still flows.
    auto cout = p.client.output();
    auto sin = p.server.input();
    co_await cout.write("survived"sv);
    co_await cout.flush();
    auto b = co_await sin.read();
    EXPECT_EQ(std::string(b.get(), b.size()), "survived");
    // A RST exactly at RCV.NXT resets.
    v = view_of(link);
    inject(hdr(v.sport, 80, v.seq, tcp_seq(0), tcp_flag::rst));
    EXPECT_EQ(st.resets_received, 1u);
    EXPECT_EQ(co_await wait_error(sin.read()), ECONNRESET);
    co_await sin.close();
}

REEF_TEST(tcp_bad_input, paws_drops_old_timestamps) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto& st = link.b->stats();
    auto v = view_of(link);
    // Same sequence space, older timestamp: an old duplicate (RFC 7323 5.3).
    link.b->received(
        addr_a, addr_b,
        craft(addr_a, addr_b, hdr(v.sport, 80, v.seq, v.ack, tcp_flag::ack), ts_opts(v.tsval - 100000), "old"));
    EXPECT_EQ(st.drop_paws, 1u);
    // No timestamp at all on a connection that uses them (RFC 7323 3.2).
    link.b->received(addr_a, addr_b,
                     craft(addr_a, addr_b, hdr(v.sport, 80, v.seq, v.ack, tcp_flag::ack), tcp_options{}, "bare"));
    EXPECT_EQ(st.drop_paws, 2u);
    EXPECT_EQ(native_tcp_info(p.server)->recv_queued, 0u);
    auto cout = p.client.output();
    auto sin = p.server.input();
    co_await cout.write("new"sv);
    co_await cout.close();
    EXPECT_EQ(co_await read_all(sin), "new");
    co_await sin.close();
}

REEF_TEST(tcp_bad_input, syn_flood_answered_with_cookies) {
    auto cb = tcp_test_link::test_config();
    cb.max_syn_retransmits = 2;
    tcp_test_link link(tcp_test_link::test_config(), cb);
    listen_options lo;
    lo.backlog = 8;
    auto ss = link.b->listen(sa(addr_b, 80), lo);
    auto& st = link.b->stats();
    // 200 SYNs from spoofed sources that never answer.
    for (std::uint32_t i = 0; i < 200; ++i) {
        tcp_ipv4 src = 0xc0a80000 + i;  // 192.168.0.0/16
        tcp_options o;
        o.mss = 1460;
        link.b->received(
            src, addr_b,
            craft(src, addr_b, hdr(std::uint16_t(10000 + i), 80, tcp_seq(i * 1000), tcp_seq(0), tcp_flag::syn), o));
    }
    EXPECT_EQ(link.b->connection_count(), 8u);  // bounded by the backlog
    EXPECT_EQ(st.syn_cookies_sent, 192u);
    EXPECT_EQ(link.blackholed, 200u);
    // A legitimate client still gets in (through a cookie: the backlog is full).
    auto accf = ss.accept();
    auto c = co_await link.a->connect(sa(addr_b, 80));
    auto s = (co_await std::move(accf)).connection;
    EXPECT_EQ(st.syn_cookies_accepted, 1u);
    auto is = *native_tcp_info(s);
    EXPECT_TRUE(is.timestamps);  // options carried in the cookie's timestamp
    EXPECT_TRUE(is.sack);
    EXPECT_TRUE(is.wscale);
    EXPECT_EQ(is.snd_wscale, native_tcp_info(c)->rcv_wscale);
    auto cout = c.output();
    auto cin = c.input();
    auto sin = s.input();
    auto sout = s.output();
    std::uint64_t bad1 = 0, bad2 = 0;
    auto w1 = write_pattern(cout, 3 * 1024 * 1024, 1);
    auto w2 = write_pattern(sout, 1024 * 1024, 2);
    EXPECT_EQ(co_await read_pattern(sin, 1, bad1), 3u * 1024 * 1024);
    EXPECT_EQ(co_await read_pattern(cin, 2, bad2), 1024u * 1024);
    co_await std::move(w1);
    co_await std::move(w2);
    EXPECT_EQ(bad1 + bad2, 0u);
    // A forged cookie is refused.
    link.b->received(
        0xc0a8ffff, addr_b,
        craft(0xc0a8ffff, addr_b, hdr(999, 80, tcp_seq(5), tcp_seq(123456), tcp_flag::ack), tcp_options{}));
    EXPECT_EQ(st.syn_cookies_failed, 1u);
    EXPECT_EQ(st.syn_cookies_accepted, 1u);
    // The flood's half-open connections time out; memory returns.
    EXPECT_TRUE(co_await eventually([&] { return link.b->connection_count() <= 1; }));
    co_await cin.close();
    co_await sin.close();
}

REEF_TEST(tcp_bad_input, corrupted_segments_fail_the_checksum) {
    link_params lp;
    lp.corrupt = 0.01;
    lp.seed = 9;
    tcp_test_link link(tcp_test_link::test_config(), tcp_test_link::test_config(), lp);
    link.keep_log = false;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto cout = p.client.output();
    auto sin = p.server.input();
    std::uint64_t bad = 0;
    auto r = read_pattern(sin, 3, bad);
    co_await write_pattern(cout, 4 * 1024 * 1024, 3);
    EXPECT_EQ(co_await std::move(r), 4u * 1024 * 1024);
    EXPECT_EQ(bad, 0u);
    EXPECT_GT(link.corrupted, 0u);
    // Every corrupted segment is caught once delivered: by the checksum, or earlier by the header
    // length check when the flipped byte is the data offset (a pure ACK then claims a header
    // longer than itself). Let the link drain first: the last ACKs may still be in flight.
    EXPECT_TRUE(co_await eventually([&] { return link.in_flight() == 0; }));
    auto caught = [](const tcp& t) { return t.stats().drop_bad_checksum + t.stats().drop_bad_header; };
    EXPECT_EQ(caught(*link.a) + caught(*link.b), link.corrupted);
    EXPECT_GT(link.a->stats().drop_bad_checksum + link.b->stats().drop_bad_checksum, 0u);
    co_await sin.close();
}

REEF_TEST(tcp_bad_input, random_garbage_never_breaks_the_stack) {
    tcp_test_link link;
    link.keep_log = false;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto cport = p.client.local_address().port();
    std::mt19937 rng(1234);
    auto rnd = [&](std::uint32_t n) { return std::uniform_int_distribution<std::uint32_t>(0, n - 1)(rng); };
    for (int i = 0; i < 20000; ++i) {
        tcp_ipv4 src = rnd(4) == 0 ? addr_a : 0x0b000000 + rnd(1000);
        if (rnd(3) == 0) {
            // Raw garbage of any length (headers cut short, lying offsets, bad checksums).
            std::string junk(rnd(80), '\0');
            for (auto& ch : junk) {
                ch = char(rnd(256));
            }
            link.b->received(src, addr_b, packet(junk));
            continue;
        }
        // Well-formed, checksummed segments with random fields, to the listener or unused ports,
        // never to the live connection's tuple.
        std::uint16_t sport = std::uint16_t(1 + rnd(65535));
        if (src == addr_a && sport == cport) {
            continue;
        }
        tcp_options o;
        if (rnd(2)) {
            o.mss = std::uint16_t(rnd(65536));
        }
        if (rnd(2)) {
            o.wscale = std::uint8_t(rnd(20));
        }
        o.sack_permitted = rnd(2);
        if (rnd(2)) {
            o = ts_opts(rng());
        }
        std::string data(rnd(3) ? 0 : rnd(200), 'g');
        auto h = hdr(sport, rnd(2) ? 80 : std::uint16_t(rnd(65536)), tcp_seq(rng()), tcp_seq(rng()),
                     std::uint8_t(rnd(256)), std::uint16_t(rnd(65536)));
        link.b->received(src, addr_b, craft(src, addr_b, h, o, data));
        if (i % 1000 == 0) {
            co_await sleep(std::chrono::milliseconds(1));
        }
    }
    // The half-open connections the garbage made are bounded and expire.
    EXPECT_LE(link.b->connection_count(), 1u + 1024u);
    auto cout = p.client.output();
    auto sin = p.server.input();
    std::uint64_t bad = 0;
    auto r = read_pattern(sin, 6, bad);
    co_await write_pattern(cout, 1024 * 1024, 6);
    EXPECT_EQ(co_await std::move(r), 1024u * 1024);
    EXPECT_EQ(bad, 0u);
    auto& st = link.b->stats();
    EXPECT_GT(st.drop_bad_header + st.drop_bad_checksum + st.drop_bad_options + st.drop_bad_flags, 0u);
    co_await sin.close();
}

// URG (RFC 9293 3.8.5, RFC 6093 5): urgent data is delivered in line, in order, whether the
// urgent pointer points into the segment, past it, or is zero; nothing is skipped or duplicated.
REEF_TEST(tcp_bad_input, urgent_data_is_delivered_in_line) {
    tcp_test_link link;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto v = view_of(link);
    auto inject = [&](tcp_seq seq, std::uint16_t urgent, std::string_view data) {
        auto h = hdr(v.sport, 80, seq, v.ack, tcp_flag::ack | tcp_flag::urg | tcp_flag::psh);
        h.urgent = urgent;
        link.b->received(addr_a, addr_b, craft(addr_a, addr_b, h, ts_opts(v.tsval), data));
    };
    inject(v.seq, 3, "abc");         // the pointer at the end of this segment
    inject(v.seq + 3, 60000, "def");  // past it: more urgent data to come
    inject(v.seq + 6, 0, "ghi");      // zero (RFC 6093: no urgent data in it)
    auto sin = p.server.input();
    std::string got;
    while (got.size() < 9) {
        auto b = co_await sin.read();
        REEF_ASSERT(!b.empty());
        got.append(b.get(), b.size());
    }
    EXPECT_EQ(got, "abcdefghi");
    EXPECT_EQ(link.b->stats().drop_bad_flags, 0u);
    EXPECT_EQ(native_tcp_info(p.server)->bytes_received, 9u);
    co_await sin.close();
}
