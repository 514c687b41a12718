// Native TCP data transfer over the in-test link: large byte-exact transfers with loss,
// reordering and duplication; SACK recovery retransmitting only what was lost; RTO back-off and
// abort; window scaling; zero window and persist probes; congestion control selection.
#include "test_tcp_link.hh"

#include "stack/native/tcp_connection.hh"

#include <fmt/format.h>

#include <cstdlib>
#include <set>
#include <string_view>
#include <system_error>

using namespace reef;
using namespace reef::net;
using namespace reef::net::testing;
using namespace std::string_view_literals;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

constexpr std::uint64_t MiB = 1024 * 1024;

struct conn_pair {
    connected_socket client, server;
};

future<conn_pair> open_pair(tcp_test_link& link, server_socket& ss, std::uint16_t port = 80) {
    auto accf = ss.accept();
    auto c = co_await link.a->connect(sa(addr_b, port));
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

// Send `up` bytes client -> server and `down` bytes server -> client at the same time; check both
// byte-exact.
future<> transfer_both_ways(conn_pair& p, std::uint64_t up, std::uint64_t down) {
    auto cin = p.client.input();
    auto cout = p.client.output();
    auto sin = p.server.input();
    auto sout = p.server.output();
    std::uint64_t bad_up = 0, bad_down = 0;
    auto w1 = write_pattern(cout, up, 11);
    auto w2 = write_pattern(sout, down, 22);
    auto r1 = read_pattern(sin, 11, bad_up);
    auto r2 = read_pattern(cin, 22, bad_down);
    co_await std::move(w1);
    co_await std::move(w2);
    EXPECT_EQ(co_await std::move(r1), up);
    EXPECT_EQ(co_await std::move(r2), down);
    EXPECT_EQ(bad_up, 0u);
    EXPECT_EQ(bad_down, 0u);
    co_await cin.close();
    co_await sin.close();
}

future<> lossy_transfer(double loss, std::uint64_t bytes, bool sack, tcp_congestion_algorithm cc, std::uint64_t seed) {
    auto cfg = tcp_test_link::test_config();
    cfg.sack = sack;
    cfg.congestion = cc;
    link_params lp;
    lp.loss = loss;
    lp.reorder = 0.01;
    lp.duplicate = 0.01;
    lp.delay = std::chrono::microseconds(500);
    lp.seed = seed;
    tcp_test_link link(cfg, cfg, lp);
    link.keep_log = false;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    co_await transfer_both_ways(p, bytes, bytes);
    auto& sa_ = link.a->stats();
    auto& sb_ = link.b->stats();
    EXPECT_GT(sa_.retransmitted_segments + sb_.retransmitted_segments, 0u);
    if (sack) {
        EXPECT_GT(sa_.sack_recoveries + sb_.sack_recoveries, 0u);
    } else {
        EXPECT_GT(sa_.reno_recoveries + sb_.reno_recoveries, 0u);
    }
    EXPECT_EQ(sa_.timeouts + sb_.timeouts, 0u);
    EXPECT_GT(link.reordered, 0u);
    EXPECT_GT(link.duplicated, 0u);
}

}  // namespace

// 100 MiB each way at 0% loss (with reordering and duplication), byte-exact (under ASan too).
REEF_TEST(tcp_transfer, hundred_mib_clean) {
    std::uint64_t bytes = 100 * MiB;
    link_params lp;
    lp.reorder = 0.001;
    lp.duplicate = 0.001;
    tcp_test_link link(tcp_test_link::test_config(), tcp_test_link::test_config(), lp);
    link.keep_log = false;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    if (auto* e = std::getenv("REEF_TCP_TEST_MIB")) {
        bytes = std::strtoull(e, nullptr, 10) * MiB;
    }
    auto t0 = std::chrono::steady_clock::now();
    co_await transfer_both_ways(p, bytes, bytes);
    EXPECT_EQ(link.a->stats().timeouts, 0u);
    if (std::getenv("REEF_TCP_TEST_VERBOSE")) {
        auto& st = link.a->stats();
        auto i = *native_tcp_info(p.client);
        fmt::print(
            "{} ms: segs out {} in {} retrans {} rto {} fast {} sackrec {} delacks {} cwnd {} ssthresh {} srtt {}us "
            "maxflight {} wnd {}\n",
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count(),
            st.segments_out, st.segments_in, st.retransmitted_segments, st.rto_expirations, st.fast_retransmits,
            st.sack_recoveries, st.delayed_acks, i.cwnd, i.ssthresh, i.srtt.count(), i.max_in_flight, i.max_snd_wnd);
    }
}

// 1% loss, reordering and duplication: SACK with CUBIC (100 MiB each way; 16 MiB under ASan), and
// NewReno without SACK (16 MiB; 4 MiB under ASan).
REEF_TEST(tcp_transfer, one_percent_loss_sack_cubic) {
    co_await lossy_transfer(0.01, sanitized ? 16 * MiB : 100 * MiB, true, tcp_congestion_algorithm::cubic, 3);
}

REEF_TEST(tcp_transfer, one_percent_loss_newreno_no_sack) {
    co_await lossy_transfer(0.01, sanitized ? 4 * MiB : 16 * MiB, false, tcp_congestion_algorithm::newreno, 4);
}

// 5% loss: SACK with NewReno (100 MiB each way; 8 MiB under ASan), CUBIC without SACK (4 MiB;
// 2 MiB under ASan).
REEF_TEST(tcp_transfer, five_percent_loss_sack_newreno) {
    co_await lossy_transfer(0.05, sanitized ? 8 * MiB : 100 * MiB, true, tcp_congestion_algorithm::newreno, 5);
}

REEF_TEST(tcp_transfer, five_percent_loss_cubic_no_sack) {
    co_await lossy_transfer(0.05, sanitized ? 2 * MiB : 4 * MiB, false, tcp_congestion_algorithm::cubic, 6);
}

// SACK recovery retransmits exactly the segments that were dropped (no RTO, nothing else).
REEF_TEST(tcp_transfer, sack_retransmits_only_lost_segments) {
    for (bool sack : {true, false}) {
        auto cfg = tcp_test_link::test_config();
        cfg.sack = sack;
        cfg.rto_min = std::chrono::milliseconds(200);  // far above the RTT: recovery, not the timer
        link_params lp;
        lp.delay = std::chrono::microseconds(1000);
        tcp_test_link link(cfg, cfg, lp);
        std::set<std::uint32_t> seen;
        std::set<std::size_t> drop_index = {30, 34, 37, 80};
        std::size_t dropped_here = 0;
        link.drop_if = [&](const seen_segment& s) {
            if (s.from != 0 || s.payload_len == 0) {
                return false;
            }
            if (!seen.insert(s.h.seq.raw).second) {
                return false;  // a retransmission: let it through
            }
            if (drop_index.count(seen.size())) {
                ++dropped_here;
                return true;
            }
            return false;
        };
        auto ss = link.b->listen(sa(addr_b, 80));
        auto p = co_await open_pair(link, ss);
        auto cout = p.client.output();
        auto sin = p.server.input();
        std::uint64_t bad = 0;
        auto r = read_pattern(sin, 5, bad);
        co_await write_pattern(cout, 400 * 1448, 5);
        EXPECT_EQ(co_await std::move(r), 400u * 1448);
        EXPECT_EQ(bad, 0u);
        EXPECT_EQ(dropped_here, 4u);
        auto& st = link.a->stats();
        EXPECT_EQ(st.retransmitted_segments, 4u) << "sack " << sack;
        EXPECT_EQ(st.fast_retransmits, 4u) << "sack " << sack;
        EXPECT_EQ(st.rto_expirations, 0u) << "sack " << sack;
        if (sack) {
            EXPECT_GE(st.sack_recoveries, 1u);
            // The receiver told the sender about the out-of-order data.
            EXPECT_GT(link.count([](auto& s) { return s.from == 1 && s.opts.nr_sack > 0; }), 0u);
        } else {
            EXPECT_GE(st.reno_recoveries, 1u);
        }
        co_await sin.close();
    }
}

// Both ends send and both lose segments, so each holds out-of-order data while sending full-MSS
// segments: the SACK blocks it reports must not take a segment past the MTU (the MSS leaves room
// for timestamps only; IPv4 drops an oversized packet, and the retransmission carrying the same
// blocks would be dropped every time, stalling the connection).
REEF_TEST(tcp_transfer, sack_blocks_never_take_a_data_segment_past_the_mtu) {
    auto cfg = tcp_test_link::test_config();
    cfg.sack = true;
    cfg.timestamps = true;
    tcp_test_link link(cfg, cfg);
    std::set<std::pair<int, std::uint32_t>> seen;
    std::size_t dropped = 0, oversized = 0, sack_blocks_sent[2] = {0, 0};
    link.drop_if = [&](const seen_segment& s) {
        std::size_t ip_len = 20 + std::size_t(s.h.data_offset) * 4 + s.payload_len;
        oversized += ip_len > 1500;
        sack_blocks_sent[s.from] += s.opts.nr_sack > 0;
        if (s.payload_len == 0 || !seen.insert({s.from, s.h.seq.raw}).second) {
            return false;
        }
        if (seen.size() % 50 == 7) {
            ++dropped;
            return true;
        }
        return false;
    };
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    co_await transfer_both_ways(p, 4 * MiB, 4 * MiB);
    EXPECT_GT(dropped, 10u);
    // Both ends held out-of-order data (and reported it) while they were sending: before the fix,
    // 1,966 of their data segments went past 1500 bytes here.
    EXPECT_GT(sack_blocks_sent[0], 0u);
    EXPECT_GT(sack_blocks_sent[1], 0u);
    EXPECT_EQ(oversized, 0u);
}

// The peer vanishes: the RTO backs off (doubling) and the connection is aborted after the limit.
REEF_TEST(tcp_transfer, rto_backoff_then_abort) {
    auto cfg = tcp_test_link::test_config();
    cfg.max_retransmits = 5;
    cfg.rto_max = std::chrono::milliseconds(10000);
    tcp_test_link link(cfg, cfg);
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto base = native_tcp_info(p.client)->rto;
    link.down = true;
    auto cout = p.client.output();
    co_await cout.write(std::string(5000, 'x'));
    co_await cout.flush();
    // After each expiry the timer doubles (RFC 6298 5.5).
    for (std::uint64_t k = 1; k <= cfg.max_retransmits; ++k) {
        bool reached = co_await eventually([&] { return native_tcp_info(p.client)->rto_expirations >= k; },
                                           std::chrono::milliseconds(10000));
        EXPECT_TRUE(reached);
        auto i = *native_tcp_info(p.client);
        if (i.rto_expirations == k && std::string(i.state) == "ESTABLISHED") {
            EXPECT_EQ(i.rto.count(), base.count() << k) << "after expiry " << k;
        }
    }
    auto cin = p.client.input();
    EXPECT_EQ(co_await wait_error(cin.read()), ETIMEDOUT);
    EXPECT_EQ(link.a->stats().timeouts, 1u);
    EXPECT_EQ(link.a->stats().rto_expirations, cfg.max_retransmits + 1);
    // Every retransmission resent the same (first unacknowledged) data.
    EXPECT_EQ(link.count([](auto& s) { return s.from == 0 && s.payload_len > 0; }),
              std::size_t(4 /* 5000 bytes in 4 segments */ + cfg.max_retransmits));
    EXPECT_EQ(link.a->connection_count(), 0u);
    co_await cin.close();
}

// Window scaling lets one connection keep more than 1 MiB in flight.
REEF_TEST(tcp_transfer, window_scaling_allows_a_large_window) {
    for (bool ws : {true, false}) {
        auto cfg = tcp_test_link::test_config();
        cfg.window_scaling = ws;
        cfg.recv_buffer_size = 4 * MiB;
        cfg.send_buffer_size = 4 * MiB;
        link_params lp;
        lp.delay = std::chrono::milliseconds(10);  // RTT 20 ms: the window, not the CPU, limits
        tcp_test_link link(cfg, cfg, lp);
        link.keep_log = false;
        auto ss = link.b->listen(sa(addr_b, 80));
        auto p = co_await open_pair(link, ss);
        auto cout = p.client.output();
        auto sin = p.server.input();
        std::uint64_t bad = 0;
        auto r = read_pattern(sin, 9, bad);
        std::uint64_t size = ws ? 24 * MiB : 4 * MiB;
        co_await write_buffers(cout, pattern_buffers(size, 9));
        EXPECT_EQ(co_await std::move(r), size);
        EXPECT_EQ(bad, 0u);
        auto i = *native_tcp_info(p.client);
        if (std::getenv("REEF_TCP_TEST_VERBOSE")) {
            auto& st = link.a->stats();
            fmt::print("ws {}: segs out {} retrans {} rto {} cwnd {} ssthresh {} srtt {}us maxflight {} wnd {}\n", ws,
                       st.segments_out, st.retransmitted_segments, st.rto_expirations, i.cwnd, i.ssthresh,
                       i.srtt.count(), i.max_in_flight, i.max_snd_wnd);
        }
        if (ws) {
            EXPECT_GE(i.max_snd_wnd, 1 * MiB);
            EXPECT_GE(i.max_in_flight, 1 * MiB);
            EXPECT_EQ(i.snd_wscale, tcp_wscale_for(4 * MiB));
        } else {
            EXPECT_LE(i.max_snd_wnd, 65535u);
            EXPECT_LE(i.max_in_flight, 65535u);
        }
        co_await sin.close();
    }
}

// A receiver that stops reading closes the window; the sender probes (persist timer), its
// output_stream blocks (bounded memory), and everything arrives once the reader resumes.
REEF_TEST(tcp_transfer, zero_window_and_persist_probes) {
    auto cfg = tcp_test_link::test_config();
    cfg.recv_buffer_size = 64 * 1024;
    cfg.send_buffer_size = 128 * 1024;
    tcp_test_link link(cfg, cfg);
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto cout = p.client.output();
    auto sin = p.server.input();
    const std::uint64_t total = 2 * MiB;
    auto w = write_pattern(cout, total, 4, 16384);
    // The window closes; probes go out while nobody reads.
    EXPECT_TRUE(co_await eventually([&] { return link.a->stats().zero_window_probes >= 3; }));
    auto ic = *native_tcp_info(p.client);
    EXPECT_EQ(ic.snd_wnd, 0u);
    EXPECT_LE(ic.send_queued, cfg.send_buffer_size + 16384);  // back-pressure into output_stream
    EXPECT_FALSE(w.available());
    EXPECT_LE(native_tcp_info(p.server)->recv_queued, cfg.recv_buffer_size);
    EXPECT_GT(link.count([](auto& s) { return s.from == 1 && s.h.window == 0; }), 0u);
    std::uint64_t bad = 0;
    EXPECT_EQ(co_await read_pattern(sin, 4, bad), total);
    EXPECT_EQ(bad, 0u);
    co_await std::move(w);
    EXPECT_EQ(native_tcp_info(p.client)->zero_window_probes, link.a->stats().zero_window_probes);
    co_await sin.close();
}

// A window update lost while the window is zero: the persist timer recovers.
REEF_TEST(tcp_transfer, lost_window_update_recovered_by_probe) {
    auto cfg = tcp_test_link::test_config();
    cfg.recv_buffer_size = 32 * 1024;
    tcp_test_link link(cfg, cfg);
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    auto cout = p.client.output();
    auto sin = p.server.input();
    auto w = write_pattern(cout, 256 * 1024, 8, 8192);
    EXPECT_TRUE(co_await eventually([&] { return link.a->stats().zero_window_probes >= 1; }));
    // Drop every window-opening segment of the receiver until the sender probes again: only the
    // persist timer can then learn that the window opened.
    auto probes = link.a->stats().zero_window_probes;
    int drops = 0;
    link.drop_if = [&](const seen_segment& s) {
        if (s.from == 1 && s.h.window > 0 && s.payload_len == 0 && link.a->stats().zero_window_probes == probes) {
            ++drops;
            return true;
        }
        return false;
    };
    std::uint64_t bad = 0;
    EXPECT_EQ(co_await read_pattern(sin, 8, bad), 256u * 1024);
    EXPECT_EQ(bad, 0u);
    EXPECT_GE(drops, 1);
    EXPECT_GT(link.a->stats().zero_window_probes, probes);
    co_await std::move(w);
    co_await sin.close();
}

// CUBIC or NewReno per listener and per connection.
REEF_TEST(tcp_transfer, congestion_control_is_selectable) {
    tcp_test_link link;
    tcp_socket_options reno;
    reno.congestion = tcp_congestion_algorithm::newreno;
    auto ss = link.b->listen(sa(addr_b, 80), {}, reno);
    auto p = co_await open_pair(link, ss);
    EXPECT_EQ(native_tcp_info(p.server)->congestion, tcp_congestion_algorithm::newreno);
    EXPECT_EQ(native_tcp_info(p.client)->congestion, tcp_congestion_algorithm::cubic);
    native_tcp_set_congestion(p.client, tcp_congestion_algorithm::newreno);
    EXPECT_EQ(native_tcp_info(p.client)->congestion, tcp_congestion_algorithm::newreno);
    auto accf = ss.accept();
    auto c2 = co_await link.a->connect(sa(addr_b, 80), {}, reno);
    EXPECT_EQ(native_tcp_info(c2)->congestion, tcp_congestion_algorithm::newreno);
    auto s2 = (co_await std::move(accf)).connection;
    co_await transfer_both_ways(p, 2 * MiB, 2 * MiB);
}

// Device offloads: TX checksum filled by the "device" (the link), and TSO bursts it segments;
// loss recovery still retransmits single segments.
REEF_TEST(tcp_transfer, checksum_offload_and_tso) {
    link_params lp;
    lp.loss = 0.01;
    lp.seed = 12;
    lp.delay = std::chrono::microseconds(300);
    tcp_test_link link(tcp_test_link::test_config(), tcp_test_link::test_config(), lp);
    link.keep_log = false;
    link.ea.tso = 65536;
    link.ea.offload = true;
    link.eb.offload = true;
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    co_await transfer_both_ways(p, 8 * MiB, 2 * MiB);
    EXPECT_GT(link.tso_packets, 0u);
    EXPECT_GT(link.offloaded_checksums, link.tso_packets);
    EXPECT_GT(link.a->stats().retransmitted_segments, 0u);
    EXPECT_EQ(link.a->stats().drop_bad_checksum + link.b->stats().drop_bad_checksum, 0u);
}

// RFC 5681 4.2 with the ACK of in-order data sent at the end of the reactor round (tcp::owe_ack):
// segments that arrive in one round draw one ACK covering them all, once the round's pollers have
// run; segments in separate rounds still draw one per second segment; a lone segment waits for
// the delayed-ACK timer; an out-of-order segment and one that fills a hole are answered at once.
REEF_TEST(tcp_transfer, in_order_segments_of_one_round_draw_one_ack) {
    auto cb = tcp_test_link::test_config();
    cb.delayed_ack = 5s;  // never within the test: a lone segment stays unacknowledged
    tcp_test_link link(tcp_test_link::test_config(), cb);
    auto ss = link.b->listen(sa(addr_b, 80));
    auto p = co_await open_pair(link, ss);
    // The segments below are injected as if a sent them; a never learns of them, so b's answers
    // must not reach it (it would answer an ACK of data it never sent).
    link.drop_if = [](const seen_segment& s) { return s.from == 1; };
    auto v = view_of(link);
    auto& st = link.b->stats();
    const std::string chunk(1000, 'x');
    auto inject = [&](std::int64_t off) {
        link.b->received(addr_a, addr_b,
                         craft(addr_a, addr_b, hdr(v.sport, 80, v.seq + off, v.ack, tcp_flag::ack), ts_opts(v.tsval), chunk));
    };
    auto round_end = [] { return sleep(std::chrono::milliseconds(1)); };  // a timer fires in a later round

    auto n = link.log.size();
    auto rounds0 = st.round_acks;
    for (int i = 0; i < 6; ++i) {
        inject(i * 1000);
    }
    EXPECT_EQ(replies_since(link, n).size(), 0u);  // nothing while the round's segments arrive
    co_await round_end();
    auto r = replies_since(link, n);
    REEF_ASSERT(r.size() == 1);
    EXPECT_EQ(r[0].h.ack, v.seq + 6000);
    EXPECT_EQ(r[0].payload_len, 0u);
    EXPECT_EQ(st.round_acks, rounds0 + 1);

    // One segment per round: the first waits (delayed ACK), the second draws the ACK of both.
    n = link.log.size();
    inject(6000);
    co_await round_end();
    EXPECT_EQ(replies_since(link, n).size(), 0u);
    inject(7000);
    co_await round_end();
    r = replies_since(link, n);
    REEF_ASSERT(r.size() == 1);
    EXPECT_EQ(r[0].h.ack, v.seq + 8000);

    // Out of order (a hole at 8000): a duplicate ACK with a SACK block at once, not at the round's end.
    n = link.log.size();
    inject(9000);
    r = replies_since(link, n);
    REEF_ASSERT(r.size() == 1);
    EXPECT_EQ(r[0].h.ack, v.seq + 8000);
    EXPECT_EQ(r[0].opts.nr_sack, 1u);
    // The segment that fills the hole: acknowledged at once, up to the end of what was queued.
    inject(8000);
    r = replies_since(link, n);
    REEF_ASSERT(r.size() == 2);
    EXPECT_EQ(r[1].h.ack, v.seq + 10000);
    co_await round_end();
    EXPECT_EQ(replies_since(link, n).size(), 2u);  // and nothing more at the round's end
    EXPECT_EQ(st.delayed_acks, 0u);
}
