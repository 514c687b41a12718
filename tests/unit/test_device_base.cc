// device_base (software RSS, packet hook, TX proxy, per-shard stats) exercised through the
// virtual wire, whose devices are device_base<wire_frame>.
#include "stack/net/device_base.hh"

#include "net_frames.hh"
#include "reactor_test.hh"
#include "runtime/future_util.hh"
#include "runtime/smp.hh"
#include "smp_test.hh"
#include "stack/testing/virtual_wire.hh"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace reef;
using namespace reef::net;
using namespace std::chrono_literals;
using reef::testing::build_arp;
using reef::testing::build_frame;
using reef::testing::frame_spec;
using reef::testing::ip4;

namespace {

constexpr std::uint16_t server_port = 7;

// A UDP frame from A (10.0.0.1:sport) to B (10.0.0.2:7) carrying `payload`.
std::string a_to_b_frame(std::uint16_t sport, std::string payload) {
    frame_spec f;
    f.src_mac = ethernet_address{{2, 0, 0, 0, 0, 1}};
    f.dst_mac = ethernet_address{{2, 0, 0, 0, 0, 2}};
    f.src_ip = ip4("10.0.0.1");
    f.dst_ip = ip4("10.0.0.2");
    f.src_port = sport;
    f.dst_port = server_port;
    f.payload = std::move(payload);
    return build_frame(f);
}

// The shard B's RSS gives the flow of a_to_b_frame(sport).
unsigned b_owner(device& b, std::uint16_t sport) {
    auto src = ip4("10.0.0.1"), dst = ip4("10.0.0.2");
    return b.shard_of(b.flow_hash(src.data(), dst.data(), 4, sport, server_port));
}

std::uint16_t sport_of(const packet& p) {
    auto s = p.to_string();
    return static_cast<std::uint16_t>((std::uint8_t(s[34]) << 8) | std::uint8_t(s[35]));
}
std::string payload_of(const packet& p) { return p.to_string().substr(14 + 20 + 8); }
std::string payload_of(const hook_frame& f) { return std::string(f.data + 42, f.len - 42); }

// The hook's in-place answer to a "ping" frame: the reply_to bytes (same length) over it.
hook_action pong_in_place(hook_frame& f) {
    if (f.len < 42 || payload_of(f) != "ping") {
        return hook_action::pass;
    }
    auto sport = static_cast<std::uint16_t>((std::uint8_t(f.data[34]) << 8) | std::uint8_t(f.data[35]));
    frame_spec r;
    r.src_mac = ethernet_address{{2, 0, 0, 0, 0, 2}};
    r.dst_mac = ethernet_address{{2, 0, 0, 0, 0, 1}};
    r.src_ip = ip4("10.0.0.2");
    r.dst_ip = ip4("10.0.0.1");
    r.src_port = server_port;
    r.dst_port = sport;
    r.payload = "pong";
    std::string bytes = build_frame(r);
    if (bytes.size() > f.room) {
        return hook_action::pass;
    }
    std::memcpy(f.data, bytes.data(), bytes.size());
    f.len = bytes.size();
    return hook_action::reply;
}

// The reply to a_to_b_frame: addresses and ports swapped.
std::string reply_to(const packet& p, std::string payload) {
    frame_spec f;
    f.src_mac = ethernet_address{{2, 0, 0, 0, 0, 2}};
    f.dst_mac = ethernet_address{{2, 0, 0, 0, 0, 1}};
    f.src_ip = ip4("10.0.0.2");
    f.dst_ip = ip4("10.0.0.1");
    f.src_port = server_port;
    f.dst_port = sport_of(p);
    f.payload = std::move(payload);
    return build_frame(f);
}

// What a handler saw on each shard. Each shard appends to its own vector only; `total` tells the
// waiting shard (acquire) that the appends happened.
struct seen {
    std::vector<std::vector<std::uint16_t>> per_shard;
    std::vector<std::vector<std::string>> payloads;
    std::atomic<unsigned> total{0};
    seen() : per_shard(smp::count), payloads(smp::count) {}
    void record(const packet& p) {
        per_shard[this_shard_id()].push_back(sport_of(p));
        payloads[this_shard_id()].push_back(payload_of(p));
        total.fetch_add(1, std::memory_order_release);
    }
};

// Wait (yielding to the reactors) until `n` frames were seen; false after a generous bound.
future<bool> wait_for(const std::atomic<unsigned>& count, unsigned n) {
    for (int i = 0; i < 50000; ++i) {
        if (count.load(std::memory_order_acquire) >= n) {
            co_return true;
        }
        co_await sleep(100us);
    }
    co_return count.load() >= n;
}

future<device_stats> stats_on(device& d, unsigned shard) {
    return smp::submit_to(shard, [&d] { return d.local_stats(); });
}

future<> set_handlers(device& d, seen& s) {
    return smp::invoke_on_all([&d, &s] { d.set_receive_handler([&s](packet p) { s.record(p); }); });
}

// Send `frames` (bytes) from `shard` through `d`.
future<> send_from(device& d, unsigned shard, const std::vector<std::string>& frames) {
    return smp::submit_to(shard, [&d, &frames] {
        for (auto& f : frames) {
            d.send(packet(f));
        }
    });
}

future<> stop_both(virtual_wire& w) {
    co_await w.a->stop();
    co_await w.b->stop();
}

// Many flows from A's shard 0 over a 1-queue wire to B on 2 shards: each flow always on the shard
// its hash names, both shards used, and the counters agree.
future<> spread_flows(bool nic_hash) {
    virtual_wire_config cfg;
    cfg.queues = 1;
    cfg.nic_hash = nic_hash;
    auto w = make_virtual_wire(cfg);
    seen got;
    co_await set_handlers(*w.b, got);
    co_await w.a->start();
    co_await w.b->start();
    EXPECT_EQ(w.b->hw_queues_count(), 1u);

    constexpr unsigned flows = 256, per_flow = 4;
    std::vector<std::string> frames;
    for (unsigned r = 0; r < per_flow; ++r) {
        for (unsigned f = 0; f < flows; ++f) {
            frames.push_back(a_to_b_frame(static_cast<std::uint16_t>(10000 + f), std::to_string(r)));
        }
    }
    co_await send_from(*w.a, 0, frames);
    EXPECT_TRUE(co_await wait_for(got.total, flows * per_flow));

    std::map<std::uint16_t, std::set<unsigned>> shards_of_flow;
    std::map<std::uint16_t, std::vector<std::string>> order;
    for (unsigned s = 0; s < smp::count; ++s) {
        for (std::size_t i = 0; i < got.per_shard[s].size(); ++i) {
            shards_of_flow[got.per_shard[s][i]].insert(s);
            order[got.per_shard[s][i]].push_back(got.payloads[s][i]);
        }
    }
    EXPECT_EQ(shards_of_flow.size(), flows);
    unsigned on_shard[2] = {0, 0};
    for (auto& [sport, shards] : shards_of_flow) {
        EXPECT_EQ(shards.size(), 1u) << "flow " << sport << " seen on several shards";
        EXPECT_EQ(*shards.begin(), b_owner(*w.b, sport)) << "flow " << sport;
        ++on_shard[*shards.begin()];
        // Frames of one flow stay in order.
        EXPECT_EQ(order[sport], (std::vector<std::string>{"0", "1", "2", "3"})) << "flow " << sport;
    }
    EXPECT_GT(on_shard[0], flows / 4);
    EXPECT_GT(on_shard[1], flows / 4);

    auto b0 = co_await stats_on(*w.b, 0);
    auto b1 = co_await stats_on(*w.b, 1);
    auto a0 = co_await stats_on(*w.a, 0);
    EXPECT_EQ(a0.tx_packets, flows * per_flow);
    EXPECT_EQ(b0.rx_packets, got.per_shard[0].size());
    EXPECT_EQ(b1.rx_packets, got.per_shard[1].size());
    EXPECT_EQ(b0.sw_rss_forwarded, got.per_shard[1].size());
    EXPECT_EQ(b1.sw_rss_received, got.per_shard[1].size());
    EXPECT_EQ(b0.sw_rss_received, 0u);
    EXPECT_EQ(b1.sw_rss_forwarded, 0u);
    EXPECT_EQ(b0.sw_rss_dropped, 0u);
    EXPECT_EQ(b0.rx_bytes + b1.rx_bytes, a0.tx_bytes);
    co_await stop_both(w);
}

}  // namespace

REEF_SMP_TEST(device_base, software_rss_spreads_flows_over_shards, 2) {
    co_await spread_flows(false);
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_SMP_TEST(device_base, nic_hash_steers_like_software_rss, 2) {
    co_await spread_flows(true);
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_SMP_TEST(device_base, tx_from_a_shard_without_queue_is_proxied, 2) {
    {
        auto w = make_virtual_wire({});
        seen got;
        co_await set_handlers(*w.b, got);
        co_await w.a->start();
        co_await w.b->start();
        std::vector<std::string> frames;
        for (unsigned i = 0; i < 300; ++i) {
            frames.push_back(a_to_b_frame(static_cast<std::uint16_t>(20000 + i % 50), "x" + std::to_string(i)));
        }
        co_await send_from(*w.a, 1, frames);
        EXPECT_TRUE(co_await wait_for(got.total, 300));
        auto a0 = co_await stats_on(*w.a, 0);
        auto a1 = co_await stats_on(*w.a, 1);
        EXPECT_EQ(a1.tx_proxied, 300u);
        EXPECT_EQ(a1.tx_packets, 0u);
        EXPECT_EQ(a1.tx_dropped, 0u);
        EXPECT_EQ(a0.tx_packets, 300u);  // counted where the queue sent them
        EXPECT_EQ(a0.tx_proxied, 0u);
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_SMP_TEST(device_base, packet_hook_consumes_and_replies, 2) {
    {
        auto w = make_virtual_wire({});
        seen at_a, at_b;
        co_await set_handlers(*w.a, at_a);
        co_await set_handlers(*w.b, at_b);
        device& b = *w.b;
        // B answers "ping" in the hook, in place (on whichever shard owns the flow: shard 1 has
        // no queue, so its replies are proxied), and lets everything else through to its handler.
        co_await smp::invoke_on_all([&b] { b.set_packet_hook(pong_in_place); });
        co_await w.a->start();
        co_await w.b->start();
        std::vector<std::string> frames;
        unsigned pings_to_1 = 0;
        for (unsigned i = 0; i < 100; ++i) {
            auto sport = static_cast<std::uint16_t>(30000 + i);
            frames.push_back(a_to_b_frame(sport, "ping"));
            pings_to_1 += b_owner(b, sport) == 1;
        }
        for (unsigned i = 0; i < 10; ++i) {
            frames.push_back(a_to_b_frame(static_cast<std::uint16_t>(31000 + i), "data"));
        }
        co_await send_from(*w.a, 0, frames);
        EXPECT_TRUE(co_await wait_for(at_a.total, 100));
        EXPECT_TRUE(co_await wait_for(at_b.total, 10));
        auto b0 = co_await stats_on(b, 0);
        auto b1 = co_await stats_on(b, 1);
        EXPECT_EQ(b0.rx_hooked + b1.rx_hooked, 100u);
        EXPECT_EQ(b1.rx_hooked, pings_to_1);
        EXPECT_EQ(b1.tx_proxied, pings_to_1);
        EXPECT_EQ(b0.tx_packets, 100u);
        for (auto& v : at_a.payloads) {
            for (auto& s : v) {
                EXPECT_EQ(s, "pong");
            }
        }
        for (auto& v : at_b.payloads) {
            for (auto& s : v) {
                EXPECT_EQ(s, "data");
            }
        }
        // Removing the hook passes pings to the handler again.
        co_await smp::invoke_on_all([&b] { b.set_packet_hook({}); });
        frames.assign(1, a_to_b_frame(30000, "ping"));
        co_await send_from(*w.a, 0, frames);
        EXPECT_TRUE(co_await wait_for(at_b.total, 11));
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

// A hook that throws, or answers with a length its buffer cannot hold or shorter than an
// Ethernet header: the frame is dropped and counted, nothing is sent, nothing leaks.
REEF_TEST(device_base, hook_errors_drop_the_frame) {
    {
        auto w = make_virtual_wire({});
        seen at_a, at_b;
        co_await set_handlers(*w.a, at_a);
        co_await set_handlers(*w.b, at_b);
        device& b = *w.b;
        b.set_packet_hook([](hook_frame& f) {
            std::string pl = payload_of(f);
            if (pl == "boom") {
                throw std::runtime_error("hook failure");
            }
            if (pl == "long") {
                f.len = f.room + 1;
                return hook_action::reply;
            }
            if (pl == "tiny") {
                f.len = 13;
                return hook_action::reply;
            }
            return hook_action::pass;
        });
        co_await w.a->start();
        co_await w.b->start();
        for (const char* pl : {"boom", "long", "tiny", "data"}) {
            w.a->send(packet(a_to_b_frame(1000, pl)));
        }
        EXPECT_TRUE(co_await wait_for(at_b.total, 1));
        auto& sb = b.local_stats();
        EXPECT_EQ(sb.rx_packets, 4u);
        EXPECT_EQ(sb.rx_hooked, 2u);  // the two bad replies (the throw is not a decision)
        EXPECT_EQ(sb.tx_dropped, 2u);
        EXPECT_EQ(sb.tx_packets, 0u);
        EXPECT_EQ(at_b.payloads[0], std::vector<std::string>{"data"});
        co_await sleep(5ms);
        EXPECT_EQ(at_a.total.load(), 0u);
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_SMP_TEST(device_base, non_ip_frames_go_to_shard_0, 2) {
    {
        virtual_wire_config cfg;
        cfg.queues = 2;  // frames then arrive on both queues
        auto w = make_virtual_wire(cfg);
        std::atomic<unsigned> arps_on[2] = {0, 0};
        device& b = *w.b;
        co_await smp::invoke_on_all(
            [&] { b.set_receive_handler([&](packet) { arps_on[this_shard_id()].fetch_add(1); }); });
        co_await w.a->start();
        co_await w.b->start();
        std::vector<std::string> frames(20, build_arp(ethernet_address{{2, 0, 0, 0, 0, 1}}));
        co_await send_from(*w.a, 0, frames);
        co_await send_from(*w.a, 1, frames);
        for (int i = 0; i < 50000 && arps_on[0].load() < 40; ++i) {
            co_await sleep(100us);
        }
        EXPECT_EQ(arps_on[0].load(), 40u);
        EXPECT_EQ(arps_on[1].load(), 0u);
        auto b1 = co_await stats_on(b, 1);
        EXPECT_EQ(b1.sw_rss_forwarded, 20u);  // polled on queue 1, owned by shard 0
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_SMP_TEST(device_base, forwarding_is_bounded_per_destination, 2) {
    {
        virtual_wire_config cfg;
        cfg.forward_limit = 8;
        auto w = make_virtual_wire(cfg);
        seen got;
        co_await set_handlers(*w.b, got);
        co_await w.a->start();
        co_await w.b->start();
        std::vector<std::string> frames;
        for (std::uint16_t sport = 40000; frames.size() < 200; ++sport) {
            if (b_owner(*w.b, sport) == 1) {
                frames.push_back(a_to_b_frame(sport, "z"));
            }
        }
        // Shard 1 is busy (it does not run its reactor) while shard 0 polls 200 frames for it.
        std::atomic<bool> busy{false}, release{false};
        auto blocked = smp::submit_to(1, [&] {
            busy = true;
            while (!release.load()) {
                std::this_thread::yield();
            }
        });
        while (!busy.load()) {
            co_await sleep(100us);  // the request leaves shard 0 from its reactor loop
        }
        co_await send_from(*w.a, 0, frames);
        device_stats b0;
        for (int i = 0; i < 50000; ++i) {
            b0 = co_await stats_on(*w.b, 0);
            if (b0.sw_rss_forwarded + b0.sw_rss_dropped >= 200) {
                break;
            }
            co_await sleep(100us);
        }
        EXPECT_EQ(b0.sw_rss_forwarded, 8u);
        EXPECT_EQ(b0.sw_rss_dropped, 192u);
        release = true;
        co_await std::move(blocked);
        EXPECT_TRUE(co_await wait_for(got.total, 8));
        // Once the batch came back, shard 0 forwards again. A round trip to shard 1 comes back
        // after the batch's answer (same ring, in order), whose completion then has run.
        co_await smp::submit_to(1, [] {});
        frames.resize(3);
        co_await send_from(*w.a, 0, frames);
        EXPECT_TRUE(co_await wait_for(got.total, 11));
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_SMP_TEST(device_base, tx_proxy_is_bounded_too, 2) {
    {
        virtual_wire_config cfg;
        cfg.forward_limit = 8;
        auto w = make_virtual_wire(cfg);
        seen got;
        co_await set_handlers(*w.b, got);
        co_await w.a->start();
        co_await w.b->start();
        std::vector<std::string> frames;
        for (unsigned i = 0; i < 100; ++i) {
            frames.push_back(a_to_b_frame(static_cast<std::uint16_t>(100 + i), "p"));
        }
        // Shard 1 sends 100 frames in one go: nothing leaves before its reactor polls again, so the
        // proxy's bound (frames queued or in flight towards shard 0) is reached.
        device& a = *w.a;
        auto sent = smp::submit_to(1, [&] {
            for (auto& f : frames) {
                a.send(packet(f));
            }
            return a.local_stats();
        });
        auto a1 = co_await std::move(sent);
        EXPECT_EQ(a1.tx_proxied, 8u);
        EXPECT_EQ(a1.tx_dropped, 92u);
        EXPECT_TRUE(co_await wait_for(got.total, 8));
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_SMP_TEST(device_base, hw_queue_weight_zero_leaves_queue_owners_no_flows, 2) {
    {
        virtual_wire_config cfg;
        cfg.hw_queue_weight = 0;
        auto w = make_virtual_wire(cfg);
        seen got;
        co_await set_handlers(*w.b, got);
        co_await w.a->start();
        co_await w.b->start();
        std::vector<std::string> frames;
        for (unsigned i = 0; i < 200; ++i) {
            frames.push_back(a_to_b_frame(static_cast<std::uint16_t>(2000 + i), "w"));
        }
        co_await send_from(*w.a, 0, frames);
        EXPECT_TRUE(co_await wait_for(got.total, 200));
        EXPECT_EQ(got.per_shard[0].size(), 0u);
        EXPECT_EQ(got.per_shard[1].size(), 200u);
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_SMP_TEST(device_base, bad_frames_are_counted_and_dropped, 2) {
    {
        auto w = make_virtual_wire({});
        seen got;
        co_await set_handlers(*w.b, got);
        co_await w.a->start();
        co_await w.b->start();
        std::vector<std::string> frames = {std::string(10, 'r'), std::string(1515, 'o'), std::string(1514, 'k')};
        co_await send_from(*w.a, 0, frames);
        co_await send_from(*w.a, 1, frames);
        auto a0 = co_await stats_on(*w.a, 0);
        auto a1 = co_await stats_on(*w.a, 1);
        EXPECT_EQ(a0.tx_dropped, 1u);  // longer than max_frame_size
        EXPECT_EQ(a1.tx_dropped, 1u);
        EXPECT_EQ(a1.tx_proxied, 2u);
        // The 1514-byte frame has no IP header: shard 0. The runt is dropped where polled.
        EXPECT_TRUE(co_await wait_for(got.total, 2));
        device_stats b0;
        for (int i = 0; i < 50000 && b0.rx_dropped_runt < 2; ++i) {
            b0 = co_await stats_on(*w.b, 0);
            co_await sleep(100us);
        }
        EXPECT_EQ(b0.rx_dropped_runt, 2u);
        EXPECT_EQ(got.per_shard[0].size(), 2u);
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_SMP_TEST(device_base, frames_without_handler_are_counted, 2) {
    {
        auto w = make_virtual_wire({});
        co_await w.a->start();
        co_await w.b->start();
        std::vector<std::string> frames;
        for (unsigned i = 0; i < 50; ++i) {
            frames.push_back(a_to_b_frame(static_cast<std::uint16_t>(5000 + i), "q"));
        }
        co_await send_from(*w.a, 0, frames);
        std::uint64_t n = 0;
        for (int i = 0; i < 50000 && n < 50; ++i) {
            auto b0 = co_await stats_on(*w.b, 0);
            auto b1 = co_await stats_on(*w.b, 1);
            n = b0.rx_dropped_no_handler + b1.rx_dropped_no_handler;
            co_await sleep(100us);
        }
        EXPECT_EQ(n, 50u);
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_SMP_TEST(device_base, stop_under_traffic_frees_everything, 2) {
    {
        virtual_wire_config cfg;
        cfg.queues = 1;
        auto w = make_virtual_wire(cfg);
        seen at_b;
        co_await set_handlers(*w.b, at_b);
        co_await w.a->start();
        co_await w.b->start();
        std::atomic<bool> stop_sending{false};
        device& a = *w.a;
        // Both shards send as fast as they can (shard 1 through the proxy) until told to stop.
        auto sender = [&a, &stop_sending]() -> future<> {
            for (std::uint16_t i = 0; !stop_sending.load(); ++i) {
                for (int k = 0; k < 16; ++k) {
                    a.send(packet(a_to_b_frame(static_cast<std::uint16_t>(i * 16 + k), "t")));
                }
                co_await sleep(0us);
            }
        };
        // submit_to keeps each copy of the lambda alive until its coroutine is done.
        auto s0 = smp::submit_to(0, decltype(sender)(sender));
        auto s1 = smp::submit_to(1, decltype(sender)(sender));
        EXPECT_TRUE(co_await wait_for(at_b.total, 2000));
        co_await w.b->stop();  // frames keep coming: left on the wire, freed by stop or dropped
        co_await w.a->stop();  // A stops while its own shards still call send()
        stop_sending = true;
        co_await std::move(s0);
        co_await std::move(s1);
        auto a1 = co_await stats_on(a, 1);
        EXPECT_GT(a1.tx_proxied, 0u);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_TEST(device_base, one_shard_delivers_hooks_and_never_forwards) {
    {
        auto w = make_virtual_wire({});
        seen at_a, at_b;
        co_await set_handlers(*w.a, at_a);
        co_await set_handlers(*w.b, at_b);
        device& b = *w.b;
        // This hook answers with a new packet through device::send and consumes the request.
        b.set_packet_hook([&b](hook_frame& f) {
            packet p(f.data, f.len);
            if (payload_of(p) != "ping") {
                return hook_action::pass;
            }
            b.send(packet(reply_to(p, "pong")));
            return hook_action::consumed;
        });
        co_await w.a->start();
        co_await w.b->start();
        for (unsigned i = 0; i < 100; ++i) {
            w.a->send(packet(a_to_b_frame(static_cast<std::uint16_t>(1000 + i), i % 2 ? "ping" : "data")));
        }
        // Delivery is never inside send().
        EXPECT_EQ(at_b.total.load(), 0u);
        EXPECT_TRUE(co_await wait_for(at_b.total, 50));
        EXPECT_TRUE(co_await wait_for(at_a.total, 50));
        auto& sa = w.a->local_stats();
        auto& sb = b.local_stats();
        EXPECT_EQ(sa.tx_packets, 100u);
        EXPECT_EQ(sb.rx_packets, 100u);
        EXPECT_EQ(sb.rx_hooked, 50u);
        EXPECT_EQ(sb.tx_packets, 50u);
        EXPECT_EQ(sa.rx_packets, 50u);
        EXPECT_EQ(sb.sw_rss_forwarded + sb.sw_rss_received + sb.tx_proxied, 0u);
        EXPECT_EQ(sa.sw_rss_forwarded + sa.sw_rss_received + sa.tx_proxied, 0u);
        for (auto& p : at_a.payloads[0]) {
            EXPECT_EQ(p, "pong");
        }
        co_await stop_both(w);
        // Stopped: sends are dropped and counted.
        w.a->send(packet(a_to_b_frame(1, "late")));
        EXPECT_EQ(w.a->local_stats().tx_dropped, 1u);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

TEST(build_reta, equal_weights_interleave_shards) {
    auto r = build_reta(3, 3, 0.5f, 512);
    ASSERT_EQ(r.size(), 512u);
    for (std::size_t i = 0; i < r.size(); ++i) {
        EXPECT_EQ(r[i], i % 3) << i;
    }
    r = build_reta(2, 1, 1.0f, 8);
    EXPECT_EQ(r, (std::vector<std::uint16_t>{0, 1, 0, 1, 0, 1, 0, 1}));
}

TEST(build_reta, queue_owners_keep_their_weighted_share) {
    auto count = [](const std::vector<std::uint16_t>& r, unsigned s) { return std::count(r.begin(), r.end(), s); };
    // 2 shards, 1 queue, weight 0.5: shard 0 gets 1/3 of 512 = 170.67 -> 171, shard 1 341.
    auto r = build_reta(2, 1, 0.5f, 512);
    EXPECT_EQ(count(r, 0), 171);
    EXPECT_EQ(count(r, 1), 341);
    // Entries interleave: shard 0 never gets two in a row.
    for (std::size_t i = 1; i < r.size(); ++i) {
        EXPECT_FALSE(r[i] == 0 && r[i - 1] == 0) << i;
    }
    // Weight 0: queue owners keep nothing.
    r = build_reta(4, 2, 0.0f, 512);
    EXPECT_EQ(count(r, 0) + count(r, 1), 0);
    EXPECT_EQ(count(r, 2), 256);
    EXPECT_EQ(count(r, 3), 256);
    // Every shard owns a queue: the weight does not matter.
    r = build_reta(2, 2, 0.0f, 512);
    EXPECT_EQ(count(r, 0), 256);
    // Out-of-range weights are clamped; degenerate sizes give an empty table.
    EXPECT_EQ(build_reta(2, 1, 7.0f, 64), build_reta(2, 1, 1.0f, 64));
    EXPECT_TRUE(build_reta(0, 0, 1.0f, 64).empty());
    EXPECT_TRUE(build_reta(2, 1, 1.0f, 0).empty());
    r = build_reta(5, 1, 0.3f, 128);
    EXPECT_EQ(r.size(), 128u);
    for (auto e : r) {
        EXPECT_LT(e, 5);
    }
}
