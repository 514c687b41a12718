// Native TCP building blocks without a connection: sequence arithmetic, options, the reassembly
// queue's SACK blocks, the scoreboard (RFC 6675 IsLost and pipe), congestion control arithmetic.
#include "stack/native/tcp_congestion.hh"
#include "stack/native/tcp_header.hh"
#include "stack/native/tcp_options.hh"
#include "stack/native/tcp_sack.hh"

#include <gtest/gtest.h>

#include <string>

using namespace reef;
using namespace reef::net;

TEST(tcp_seq, wraps) {
    tcp_seq a(0xfffffff0u);
    tcp_seq b = a + 0x20;
    EXPECT_EQ(b.raw, 0x10u);
    EXPECT_TRUE(a < b);
    EXPECT_TRUE(b > a);
    EXPECT_EQ(b - a, 0x20);
    EXPECT_EQ(a - b, -0x20);
    EXPECT_TRUE(seq_in(tcp_seq(2), a, b));
    EXPECT_FALSE(seq_in(b, a, b));
    EXPECT_EQ(seq_max(a, b), b);
}

TEST(tcp_options, round_trip_syn) {
    tcp_options o;
    o.mss = 1460;
    o.wscale = 7;
    o.sack_permitted = true;
    o.has_timestamps = true;
    o.tsval = 0x01020304;
    o.tsecr = 0x05060708;
    char buf[40];
    std::size_t n = write_tcp_options(buf, o);
    EXPECT_EQ(n, tcp_options_length(o));
    EXPECT_EQ(n % 4, 0u);
    EXPECT_EQ(n, 20u);
    tcp_options p;
    ASSERT_TRUE(parse_tcp_options(buf, n, p));
    EXPECT_EQ(p.mss, 1460);
    EXPECT_EQ(p.wscale, 7);
    EXPECT_TRUE(p.sack_permitted);
    EXPECT_TRUE(p.has_timestamps);
    EXPECT_EQ(p.tsval, 0x01020304u);
    EXPECT_EQ(p.tsecr, 0x05060708u);
}

TEST(tcp_options, sack_blocks_fit_beside_timestamps) {
    tcp_options o;
    o.has_timestamps = true;
    o.nr_sack = 4;
    for (unsigned i = 0; i < 4; ++i) {
        o.sack[i] = {tcp_seq(100 * i), tcp_seq(100 * i + 50)};
    }
    EXPECT_EQ(tcp_options_length(o), 40u);  // 12 + 4 + 3 * 8
    char buf[40];
    std::size_t n = write_tcp_options(buf, o);
    tcp_options p;
    ASSERT_TRUE(parse_tcp_options(buf, n, p));
    EXPECT_EQ(p.nr_sack, 3);
    EXPECT_EQ(p.sack[2].left.raw, 200u);
    o.has_timestamps = false;
    EXPECT_EQ(tcp_options_length(o), 36u);
}

TEST(tcp_options, bad_lengths_rejected) {
    tcp_options p;
    auto parse = [&](std::string s) { return parse_tcp_options(s.data(), s.size(), p); };
    EXPECT_FALSE(parse(std::string("\x02\x03\x05\xb4", 4)));          // MSS with length 3
    EXPECT_FALSE(parse(std::string("\x02\x05\x05\xb4\x00\x00", 6)));  // MSS with length 5
    EXPECT_FALSE(parse(std::string("\x03\x02\x07\x01", 4)));          // window scale length 2
    EXPECT_FALSE(parse(std::string("\x08\x0a\x00\x00", 4)));          // timestamps cut short
    EXPECT_FALSE(
        parse(std::string("\x05\x09"
                          "12345678\x01\x01",
                          12)));                              // SACK not 8n + 2
    EXPECT_FALSE(parse(std::string("\x1e\x00\x01\x01", 4)));  // unknown kind, length 0
    EXPECT_FALSE(parse(std::string("\x01\x01\x01\x1e", 4)));  // kind without length byte
    EXPECT_TRUE(parse(std::string("\x1e\x04\xaa\xbb", 4)));   // unknown kind skipped
    EXPECT_TRUE(parse(std::string("\x00\xff\xff\xff", 4)));   // EOL ends the list
    EXPECT_TRUE(parse(std::string("\x03\x03\x1f\x00", 4)));   // shift > 14 used as 14
    EXPECT_EQ(p.wscale, 14);
}

namespace {
packet bytes(std::size_t n, char c) { return packet(std::string(n, c)); }
}  // namespace

TEST(tcp_reassembly, orders_trims_and_reports_recent_block_first) {
    tcp_reassembly q;
    q.insert(tcp_seq(200), bytes(100, 'c'));  // [200,300)
    q.insert(tcp_seq(400), bytes(100, 'e'));  // [400,500)
    q.insert(tcp_seq(250), bytes(100, 'x'));  // overlaps: only [300,350) is new
    EXPECT_EQ(q.bytes(), 250u);
    tcp_sack_block b[4];
    ASSERT_EQ(q.sack_blocks(b, 4), 2u);
    EXPECT_EQ(b[0].left.raw, 200u);  // most recent (the [250,350) arrival) first
    EXPECT_EQ(b[0].right.raw, 350u);
    EXPECT_EQ(b[1].left.raw, 400u);
    tcp_seq nxt(100);
    bool fin = false;
    EXPECT_TRUE(q.pop_in_order(nxt, fin).empty());
    nxt = tcp_seq(220);  // the hole [100,220) was filled by the caller
    auto out = q.pop_in_order(nxt, fin);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].len(), 80u);
    EXPECT_EQ(out[1].to_string(), std::string(50, 'x'));
    EXPECT_EQ(nxt.raw, 350u);
    q.insert_fin(tcp_seq(500));
    nxt = tcp_seq(400);
    out = q.pop_in_order(nxt, fin);
    EXPECT_TRUE(fin);
    EXPECT_EQ(nxt.raw, 500u);
    EXPECT_TRUE(q.empty());
}

TEST(tcp_scoreboard, rfc6675_loss_and_pipe) {
    tcp_scoreboard sb;
    auto now = std::chrono::steady_clock::now();
    for (unsigned i = 0; i < 10; ++i) {
        sb.sent(tcp_seq(1000 + 100 * i), 100, false, 0, now);
    }
    EXPECT_EQ(sb.pipe(), 1000u);
    // Segment 0 and 5 lost; 1..4 SACKed.
    tcp_sack_block b{tcp_seq(1100), tcp_seq(1500)};
    EXPECT_EQ(sb.sack(&b, 1, tcp_seq(1000), tcp_seq(2000)), 400u);
    EXPECT_TRUE(sb.mark_lost_rfc6675(3, 100));
    EXPECT_EQ(sb.lost_bytes(), 100u);  // only segment 0: nothing SACKed above 5
    EXPECT_EQ(sb.pipe(), 500u);        // 1000 - 400 sacked - 100 lost
    auto* l = sb.next_lost();
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(l->seq.raw, 1000u);
    sb.retransmitted(*l, 0, now);
    EXPECT_EQ(sb.pipe(), 600u);
    EXPECT_EQ(sb.next_lost(), nullptr);
    // Three more SACKed above segment 5: it is lost too.
    tcp_sack_block b2{tcp_seq(1600), tcp_seq(1900)};
    sb.sack(&b2, 1, tcp_seq(1000), tcp_seq(2000));
    sb.mark_lost_rfc6675(3, 100);
    l = sb.next_lost();
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(l->seq.raw, 1500u);
    // Cumulative ACK of everything up to 1500.
    auto r = sb.ack(tcp_seq(1500));
    EXPECT_EQ(r.acked_bytes, 500u);
    EXPECT_TRUE(r.acked_retransmitted);
    EXPECT_EQ(sb.outstanding(), 500u);
    // Bogus blocks (beyond what was sent, below una) are ignored.
    tcp_sack_block bogus{tcp_seq(1900), tcp_seq(5000)};
    EXPECT_EQ(sb.sack(&bogus, 1, tcp_seq(1500), tcp_seq(2000)), 0u);
}

// RFC 6675 5 NextSeg rule 3: with one segment SACKed above two holes, neither hole is "lost" yet
// (fewer than DupThresh segments SACKed above), so rule 1 has nothing; rule 3 still offers the
// holes, lowest first, each once, and never a segment above the highest SACK.
TEST(tcp_scoreboard, nextseg_rule3_offers_holes_below_the_highest_sack) {
    tcp_scoreboard sb;
    auto now = std::chrono::steady_clock::now();
    for (unsigned i = 0; i < 5; ++i) {
        sb.sent(tcp_seq(1000 + 100 * i), 100, false, 0, now);
    }
    EXPECT_EQ(sb.next_unsacked_below_high_sack(), nullptr);  // nothing SACKed: no rule 3
    tcp_sack_block b{tcp_seq(1200), tcp_seq(1300)};
    sb.sack(&b, 1, tcp_seq(1000), tcp_seq(1500));
    EXPECT_FALSE(sb.mark_lost_rfc6675(3, 100));
    EXPECT_EQ(sb.next_lost(), nullptr);
    auto* h = sb.next_unsacked_below_high_sack();
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(h->seq.raw, 1000u);
    sb.retransmitted(*h, 0, now);
    h = sb.next_unsacked_below_high_sack();
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(h->seq.raw, 1100u);
    sb.retransmitted(*h, 0, now);
    EXPECT_EQ(sb.next_unsacked_below_high_sack(), nullptr);  // 1300 and 1400 lie above the SACK
    EXPECT_EQ(sb.pipe(), 500u - 100u + 200u);  // SACKed out, both rule-3 retransmissions in
}

TEST(tcp_scoreboard, split_for_smaller_mtu) {
    tcp_scoreboard sb;
    auto now = std::chrono::steady_clock::now();
    sb.sent(tcp_seq(0), 1000, false, 0, now);
    sb.sent(tcp_seq(1000), 501, true, 0, now);
    sb.split_to(400);
    EXPECT_EQ(sb.size(), 5u);  // 400+400+200, 400+101(FIN)
    EXPECT_EQ(sb.outstanding(), 1501u);
    auto r = sb.ack(tcp_seq(1501));
    EXPECT_TRUE(r.fin_acked);
    EXPECT_TRUE(sb.empty());
}

TEST(tcp_congestion, newreno_and_cubic_reduce_and_grow) {
    for (auto algo : {tcp_congestion_algorithm::newreno, tcp_congestion_algorithm::cubic}) {
        auto cc = make_tcp_congestion_control(algo);
        tcp_window_state w;
        w.mss = 1000;
        w.cwnd = 10000;
        auto now = std::chrono::steady_clock::now();
        cc->on_ack(w, 1000, true, now, std::chrono::milliseconds(1));
        EXPECT_EQ(w.cwnd, 11000u);  // slow start: + acked
        cc->on_ack(w, 16000, true, now, std::chrono::milliseconds(1));
        EXPECT_EQ(w.cwnd, 27000u);  // an ACK of a whole receive burst counts in full
        w.ssthresh = 30000;
        cc->on_ack(w, 16000, true, now, std::chrono::milliseconds(1));
        EXPECT_EQ(w.cwnd, 30000u);  // slow start stops at ssthresh
        w.ssthresh = UINT64_MAX;
        w.cwnd = 10000;
        cc->on_ack(w, 1000, true, now, std::chrono::milliseconds(1));
        cc->on_congestion_event(w, 20000, now);
        if (algo == tcp_congestion_algorithm::newreno) {
            EXPECT_EQ(w.ssthresh, 10000u);  // RFC 5681 eq. 4
        } else {
            EXPECT_EQ(w.ssthresh, 14000u);  // RFC 9438: beta 0.7
        }
        EXPECT_EQ(w.cwnd, w.ssthresh);
        auto before = w.cwnd;
        for (int i = 0; i < 100; ++i) {
            cc->on_ack(w, 1000, true, now + std::chrono::milliseconds(10 * i), std::chrono::milliseconds(10));
        }
        EXPECT_GT(w.cwnd, before);  // congestion avoidance grows
        auto limited = w.cwnd;
        cc->on_ack(w, 1000, false, now + std::chrono::seconds(2), std::chrono::milliseconds(10));
        EXPECT_EQ(w.cwnd, limited);  // not cwnd-limited: no growth
        cc->on_rto(w, 30000, now);
        EXPECT_EQ(w.cwnd, 1000u);
    }
}
