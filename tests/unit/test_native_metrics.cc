// What the wire tests (pytests/wire) found and need from the native stack below TCP: TTL 0
// dropped and counted, every shard's counters in the metrics registry (drops by reason, TCP),
// registered with the stack and gone with it, and the ICMP error burst option.
#include "native_test.hh"

#include "runtime/metrics.hh"
#include "stack/native/tcp.hh"

#include <gtest/gtest.h>

#include <algorithm>

using namespace reef;
using namespace reef::testing::native_test;
using reef::net::native_tcp_abort;

namespace {

const ipv4_addr stack_ip = ip("10.0.0.1");
const ipv4_addr peer_ip = ip("10.0.0.2");

// The value of `name`'s sample whose labels include `want` (nullopt: no such sample).
std::optional<double> sample(const std::vector<metrics::metric_family>& fams, std::string_view name,
                             const metrics::labels& want = {}) {
    for (auto& f : fams) {
        if (f.name != name) {
            continue;
        }
        for (auto& s : f.samples) {
            bool all = std::all_of(want.begin(), want.end(), [&](const auto& kv) {
                return std::find(s.lbls.begin(), s.lbls.end(), kv) != s.lbls.end();
            });
            if (all) {
                return s.value.value;
            }
        }
    }
    return std::nullopt;
}

}  // namespace

REEF_TEST(native_ipv4, ttl_zero_is_dropped_and_counted_ttl_one_accepted) {
    auto r = co_await make_rig();
    auto& peer = *r->peer;
    auto ch = r->stack->make_udp_channel(sa("0.0.0.0", 9000), {});
    const auto& s = r->stats().ip;
    peer.send_ip(r->stack_mac(), {.src = peer_ip, .dst = stack_ip, .ttl = 0},
                 udp_segment(peer_ip, stack_ip, 1234, 9000, "ttl 0"));
    peer.send_ip(r->stack_mac(), {.src = peer_ip, .dst = stack_ip, .ttl = 1},
                 udp_segment(peer_ip, stack_ip, 1234, 9000, "ttl 1"));
    auto f = ch.receive();
    auto d = co_await with_timeout(std::chrono::steady_clock::now() + 2000ms, std::move(f));
    EXPECT_EQ(d.data.to_string(), "ttl 1");
    EXPECT_EQ(s.rx_dropped_ttl_zero, 1u);
    EXPECT_EQ(s.rx_delivered, 1u);
    EXPECT_EQ(r->stats().udp.rx_datagrams, 1u);
    ch.close();
    co_await r->stop();
}

REEF_TEST(native_metrics, counters_registered_per_shard_with_reasons_and_removed_with_the_stack) {
    auto r = co_await make_rig();
    auto& peer = *r->peer;
    std::string dev(r->w.a->name());
    // One drop of each kind we look at, and one TCP segment to a closed port (answered by a RST).
    auto bad = ipv4_packet({.src = peer_ip, .dst = stack_ip}, udp_segment(peer_ip, stack_ip, 1, 9000, "x"));
    bad[10] ^= 0x55;  // header checksum
    peer.send(eth_frame(r->stack_mac(), peer.mac, 0x0800, bad));
    peer.send_ip(r->stack_mac(), {.src = peer_ip, .dst = stack_ip, .ttl = 0},
                 udp_segment(peer_ip, stack_ip, 1, 9000, "x"));
    auto udp_bad = udp_segment(peer_ip, stack_ip, 1, 9000, "checksum");
    udp_bad[6] ^= 0x11;
    peer.send_ip(r->stack_mac(), {.src = peer_ip, .dst = stack_ip}, udp_bad);
    std::string syn;
    put16(syn, 40000);
    put16(syn, 81);
    put32(syn, 1000);
    put32(syn, 0);
    syn.push_back(0x50);
    syn.push_back(0x02);  // SYN
    put16(syn, 65535);
    put16(syn, 0);
    put16(syn, 0);
    {
        net::checksummer c;
        auto sb = peer_ip.bytes(), db = stack_ip.bytes();
        net::add_ipv4_pseudo_header(c, sb.data(), db.data(), 6, syn.size());
        c.add(syn.data(), syn.size());
        set_csum(syn, 16, c.get());
    }
    peer.send_ip(r->stack_mac(), {.src = peer_ip, .dst = stack_ip, .proto = 6}, syn);
    EXPECT_TRUE(co_await eventually([&] { return r->stack->tcp().stats().resets_sent == 1; }));

    auto fams = metrics::collect_local("reef_native_");
    metrics::labels on_dev{{"device", dev}};
    auto drop = [&](const char* name, const char* reason) {
        return sample(fams, name, {{"device", dev}, {"reason", reason}});
    };
    EXPECT_EQ(drop("reef_native_ipv4_rx_dropped_total", "bad_checksum"), 1.0);
    EXPECT_EQ(drop("reef_native_ipv4_rx_dropped_total", "ttl_zero"), 1.0);
    EXPECT_EQ(drop("reef_native_ipv4_rx_dropped_total", "bad_version"), 0.0);
    EXPECT_EQ(drop("reef_native_udp_rx_dropped_total", "bad_checksum"), 1.0);
    EXPECT_EQ(drop("reef_native_tcp_rx_dropped_total", "no_socket"), 1.0);
    EXPECT_EQ(sample(fams, "reef_native_tcp_resets_sent_total", on_dev), 1.0);
    EXPECT_EQ(sample(fams, "reef_native_ipv4_rx_packets_total", on_dev), 4.0);
    // The four frames above and the peer's ARP reply before the RST.
    EXPECT_EQ(sample(fams, "reef_native_l2_rx_frames_total", on_dev), double(r->stats().l2.rx_frames));
    EXPECT_EQ(r->stats().l2.rx_frames, 5u);
    EXPECT_EQ(sample(fams, "reef_native_arp_tx_gratuitous_total", on_dev), 1.0);
    EXPECT_EQ(sample(fams, "reef_native_tcp_connections", {{"device", dev}, {"state", "ESTABLISHED"}}), 0.0);
    EXPECT_EQ(sample(fams, "reef_native_tcp_connections", {{"device", dev}, {"state", "TIME_WAIT"}}), 0.0);
    EXPECT_EQ(sample(fams, "reef_native_ipv4_reasm_bytes", on_dev), 0.0);
    // Every sample carries the shard (added by the registry) and the device.
    for (auto& f : fams) {
        for (auto& s : f.samples) {
            EXPECT_NE(std::find(s.lbls.begin(), s.lbls.end(), std::pair<std::string, std::string>("shard", "0")),
                      s.lbls.end())
                << f.name;
        }
    }
    // Drops are counters, gauges are gauges.
    for (auto& f : fams) {
        if (f.name == "reef_native_ipv4_reasm_bytes" || f.name == "reef_native_tcp_connections") {
            EXPECT_EQ(f.type, metrics::metric_type::gauge) << f.name;
        } else if (f.name.ends_with("_total")) {
            EXPECT_EQ(f.type, metrics::metric_type::counter) << f.name;
        }
    }

    co_await r->stop();
    EXPECT_TRUE(metrics::collect_local("reef_native_").empty()) << "metrics left after the stack";
}

REEF_TEST(native_metrics, two_stacks_on_one_shard_register_under_their_devices) {
    auto w = net::make_virtual_wire({});
    co_await w.a->start();
    co_await w.b->start();
    auto a = co_await net::make_native_stack(*w.a, stack_options("10.0.0.1"));
    auto b = co_await net::make_native_stack(*w.b, stack_options("10.0.0.2"));
    auto fams = metrics::collect_local("reef_native_l2_rx_frames_total");
    REEF_ASSERT(fams.size() == 1u);
    EXPECT_EQ(fams[0].samples.size(), 2u);  // "vwire-a" and "vwire-b"

    // One connection between them: ESTABLISHED on both sides, by device.
    auto established = [](const char* dev) {
        return sample(metrics::collect_local("reef_native_tcp_connections"), "reef_native_tcp_connections",
                      {{"device", dev}, {"state", "ESTABLISHED"}})
            .value_or(-1);
    };
    EXPECT_EQ(established("vwire-a"), 0.0);
    auto ss = a->listen(sa("10.0.0.1", 7000), {});
    auto accepted = ss.accept();
    auto conn = co_await b->connect(sa("10.0.0.1", 7000), {});
    auto ar = co_await std::move(accepted);
    EXPECT_TRUE(co_await eventually([&] { return established("vwire-a") == 1 && established("vwire-b") == 1; }));
    native_tcp_abort(conn);
    native_tcp_abort(ar.connection);
    EXPECT_TRUE(co_await eventually([&] { return established("vwire-a") == 0 && established("vwire-b") == 0; }));
    ss.abort_accept();
    b.reset();
    a.reset();
    co_await w.a->stop();
    co_await w.b->stop();
}

TEST(native_options, icmp_error_burst_is_an_option) {
    net::native_options o;
    CLI::App app;
    o.register_options(app);
    const char* argv[] = {"t", "--icmp-error-burst", "7", "--icmp-error-rate", "3"};
    app.parse(5, const_cast<char**>(argv));
    EXPECT_EQ(o.icmp_error_burst, 7u);
    EXPECT_EQ(o.icmp_error_rate, 3u);
}
