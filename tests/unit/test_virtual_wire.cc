// The virtual wire: delivery, fault injection (deterministic by seed), capture, limits.
#include "stack/testing/virtual_wire.hh"

#include "net_frames.hh"
#include "reactor_test.hh"
#include "runtime/future_util.hh"
#include "runtime/smp.hh"
#include "smp_test.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <vector>

using namespace reef;
using namespace reef::net;
using namespace std::chrono_literals;
using reef::testing::build_frame;
using reef::testing::frame_spec;
using reef::testing::ip4;

namespace {

// A UDP frame whose payload is `seq` as text (so order and duplicates can be checked).
std::string numbered_frame(unsigned seq, std::size_t pad = 0) {
    frame_spec f;
    f.src_ip = ip4("10.0.0.1");
    f.dst_ip = ip4("10.0.0.2");
    f.src_port = 1234;
    f.dst_port = 7;
    f.payload = std::to_string(seq) + std::string(pad, '.');
    return build_frame(f);
}
unsigned seq_of(const std::string& frame) { return static_cast<unsigned>(std::stoul(frame.substr(42))); }

// Collects what one device receives, on one shard.
struct receiver {
    std::vector<std::string> frames;
    void attach(device& d) {
        d.set_receive_handler([this](packet p) { frames.push_back(p.to_string()); });
    }
};

future<bool> wait_count(const std::vector<std::string>& v, std::size_t n) {
    for (int i = 0; i < 50000 && v.size() < n; ++i) {
        co_await sleep(100us);
    }
    co_return v.size() >= n;
}

// Let the wire run for a while (frames that are coming arrive).
future<> settle() {
    for (int i = 0; i < 50; ++i) {
        co_await sleep(0us);
    }
}

future<> start_both(virtual_wire& w) {
    co_await w.a->start();
    co_await w.b->start();
}
future<> stop_both(virtual_wire& w) {
    co_await w.a->stop();
    co_await w.b->stop();
}

// Send n numbered frames from A and return the sequence B received (all of them must arrive
// within the bound once faults are accounted for: `expect` frames).
future<std::vector<unsigned>> run_numbered(virtual_wire& w, unsigned n, std::size_t expect) {
    receiver rb;
    rb.attach(*w.b);
    co_await start_both(w);
    for (unsigned i = 0; i < n; ++i) {
        w.a->send(packet(numbered_frame(i)));
    }
    EXPECT_TRUE(co_await wait_count(rb.frames, expect));
    co_await settle();
    co_await stop_both(w);
    std::vector<unsigned> seqs;
    for (auto& f : rb.frames) {
        seqs.push_back(seq_of(f));
    }
    co_return seqs;
}

}  // namespace

REEF_TEST(virtual_wire, delivers_intact_both_ways_asynchronously) {
    {
        auto w = make_virtual_wire({});
        EXPECT_EQ(w.a->hw_address().to_string(), "02:00:00:00:00:01");
        EXPECT_EQ(w.b->hw_address().to_string(), "02:00:00:00:00:02");
        EXPECT_EQ(w.a->features().mtu, 1500);
        EXPECT_EQ(w.a->features().max_frame_size, 1514u);
        EXPECT_TRUE(w.a->get_link_status().up);
        EXPECT_EQ(w.a->rss().key.size(), 40u);
        receiver ra, rb;
        ra.attach(*w.a);
        rb.attach(*w.b);
        co_await start_both(w);
        auto f1 = numbered_frame(1, 1400), f2 = numbered_frame(2);
        w.a->send(packet(f1));
        // A multi-fragment packet goes out as one frame.
        packet p2(f2.substr(0, 20));
        p2.append(packet(f2.substr(20)));
        w.b->send(std::move(p2));
        EXPECT_TRUE(rb.frames.empty());  // never delivered inside send()
        EXPECT_TRUE(co_await wait_count(rb.frames, 1));
        EXPECT_TRUE(co_await wait_count(ra.frames, 1));
        EXPECT_EQ(rb.frames, std::vector<std::string>{f1});
        EXPECT_EQ(ra.frames, std::vector<std::string>{f2});
        auto s = co_await w.stats(wire_direction::a_to_b);
        EXPECT_EQ(s.sent, 1u);
        EXPECT_EQ(s.delivered, 1u);
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_TEST(virtual_wire, loss_is_deterministic_and_counted) {
    std::vector<unsigned> runs[3];
    std::uint64_t seeds[3] = {7, 7, 8};
    for (int r = 0; r < 3; ++r) {
        virtual_wire_config cfg;
        cfg.faults.loss = 0.3;
        cfg.seed = seeds[r];
        auto w = make_virtual_wire(cfg);
        unsigned lost_seen = 0;
        w.set_capture([&](const wire_event& e) { lost_seen += e.lost; });
        // Send in rounds so the ring never fills.
        receiver rb;
        rb.attach(*w.b);
        co_await start_both(w);
        for (unsigned i = 0; i < 1000; ++i) {
            w.a->send(packet(numbered_frame(i)));
            if (i % 100 == 99) {
                co_await settle();
            }
        }
        co_await settle();
        auto s = co_await w.stats(wire_direction::a_to_b);
        EXPECT_EQ(s.sent, 1000u);
        EXPECT_EQ(s.lost, lost_seen);
        EXPECT_EQ(s.delivered, 1000u - s.lost);
        EXPECT_EQ(rb.frames.size(), s.delivered);
        EXPECT_GT(s.lost, 200u);
        EXPECT_LT(s.lost, 400u);
        EXPECT_EQ(w.a->local_stats().tx_packets, 1000u);  // the sender does not know
        for (auto& f : rb.frames) {
            runs[r].push_back(seq_of(f));
        }
        EXPECT_TRUE(std::is_sorted(runs[r].begin(), runs[r].end()));
        co_await stop_both(w);
    }
    EXPECT_EQ(runs[0], runs[1]);  // same seed, same losses
    EXPECT_NE(runs[0], runs[2]);
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_TEST(virtual_wire, duplication_delivers_copies) {
    {
        virtual_wire_config cfg;
        cfg.faults.duplicate = 0.5;
        auto w = make_virtual_wire(cfg);
        unsigned dup_seen = 0;
        w.set_capture([&](const wire_event& e) { dup_seen += e.duplicated; });
        auto seqs = co_await run_numbered(w, 200, 200);
        auto s = co_await w.stats(wire_direction::a_to_b);
        EXPECT_GT(s.duplicated, 50u);
        EXPECT_EQ(s.duplicated, dup_seen);
        EXPECT_EQ(seqs.size(), 200u + s.duplicated);
        EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));  // a copy right after its original
        seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
        EXPECT_EQ(seqs.size(), 200u);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_TEST(virtual_wire, reordering_holds_frames_back_but_loses_none) {
    {
        virtual_wire_config cfg;
        cfg.faults.reorder = 0.2;
        cfg.faults.reorder_distance = 3;
        auto w = make_virtual_wire(cfg);
        auto seqs = co_await run_numbered(w, 300, 300);
        auto s = co_await w.stats(wire_direction::a_to_b);
        EXPECT_GT(s.reordered, 20u);
        EXPECT_EQ(seqs.size(), 300u);
        EXPECT_FALSE(std::is_sorted(seqs.begin(), seqs.end()));
        // Every frame arrives exactly once.
        auto sorted = seqs;
        std::sort(sorted.begin(), sorted.end());
        for (unsigned i = 0; i < 300; ++i) {
            EXPECT_EQ(sorted[i], i);
        }
    }
    {
        // A single held frame with nothing behind it is still delivered.
        virtual_wire_config cfg;
        cfg.faults.reorder = 1;
        auto w = make_virtual_wire(cfg);
        auto seqs = co_await run_numbered(w, 1, 1);
        EXPECT_EQ(seqs, std::vector<unsigned>{0});
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_TEST(virtual_wire, corruption_flips_one_byte_past_the_ethernet_header) {
    {
        virtual_wire_config cfg;
        cfg.faults.corrupt = 1;
        auto w = make_virtual_wire(cfg);
        receiver rb;
        rb.attach(*w.b);
        co_await start_both(w);
        std::vector<std::string> sent;
        for (unsigned i = 0; i < 50; ++i) {
            sent.push_back(numbered_frame(i, 100));
            w.a->send(packet(sent.back()));
        }
        EXPECT_TRUE(co_await wait_count(rb.frames, 50));
        for (unsigned i = 0; i < 50; ++i) {
            auto& got = rb.frames[i];
            REEF_ASSERT(got.size() == sent[i].size());
            unsigned diffs = 0;
            for (std::size_t k = 0; k < got.size(); ++k) {
                if (got[k] != sent[i][k]) {
                    ++diffs;
                    EXPECT_GE(k, 14u);
                }
            }
            EXPECT_EQ(diffs, 1u) << i;
        }
        auto s = co_await w.stats(wire_direction::a_to_b);
        EXPECT_EQ(s.corrupted, 50u);
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_TEST(virtual_wire, latency_bandwidth_and_poll_delay_still_deliver_in_order) {
    {
        virtual_wire_config cfg;
        cfg.faults.latency = 2ms;
        cfg.faults.bandwidth_bps = 100'000'000;
        cfg.faults.delay_polls = 3;
        auto w = make_virtual_wire(cfg);
        receiver rb;
        rb.attach(*w.b);
        co_await start_both(w);
        auto t0 = steady_clock_type::now();
        for (unsigned i = 0; i < 20; ++i) {
            w.a->send(packet(numbered_frame(i, 1000)));
        }
        EXPECT_TRUE(co_await wait_count(rb.frames, 20));
        // Frames cannot come before the latency plus the serialization of the first one.
        EXPECT_GE(steady_clock_type::now() - t0, 2ms);
        for (unsigned i = 0; i < 20; ++i) {
            EXPECT_EQ(seq_of(rb.frames[i]), i);
        }
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_TEST(virtual_wire, ring_bounds_frames_waiting_for_a_stopped_receiver) {
    {
        virtual_wire_config cfg;
        cfg.ring_size = 16;
        auto w = make_virtual_wire(cfg);
        receiver rb;
        rb.attach(*w.b);
        co_await w.a->start();  // B not started: frames wait on the wire
        for (unsigned i = 0; i < 20; ++i) {
            w.a->send(packet(numbered_frame(i)));
        }
        EXPECT_EQ(w.a->local_stats().tx_dropped, 4u);
        EXPECT_EQ(w.a->local_stats().tx_packets, 16u);
        co_await w.b->start();
        EXPECT_TRUE(co_await wait_count(rb.frames, 16));
        auto s = co_await w.stats(wire_direction::a_to_b);
        EXPECT_EQ(s.dropped_full, 4u);
        // Frames still waiting when the receiver stops are freed.
        co_await w.b->stop();
        for (unsigned i = 0; i < 5; ++i) {
            w.a->send(packet(numbered_frame(i)));
        }
        EXPECT_EQ(virtual_wire_live_frames(), 5);
        co_await w.a->stop();
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);  // destroying the wire frees what was left on it
}

// Back-pressure: frames waiting on the wire are the sender's transmit queue. Room runs out at
// three quarters of the ring (a quarter stays for frames that cannot wait), a wait is counted
// once, and the sender is called back once the peer has taken the queue down to half.
REEF_TEST(virtual_wire, tx_room_pushes_back_before_the_ring_drops_and_wakes_the_sender) {
    {
        virtual_wire_config cfg;
        cfg.ring_size = 16;
        auto w = make_virtual_wire(cfg);
        receiver rb;
        rb.attach(*w.b);
        unsigned woken = 0;
        std::size_t room_when_woken = 0;
        w.a->set_tx_ready_handler([&] {
            ++woken;
            room_when_woken = w.a->tx_room();
        });
        co_await w.a->start();  // B not started: frames wait on the wire
        EXPECT_EQ(w.a->tx_room(), 12u);
        unsigned sent = 0;
        while (w.a->tx_room() > 0) {
            w.a->send(packet(numbered_frame(sent++)));
        }
        EXPECT_EQ(sent, 12u);
        EXPECT_EQ(w.a->tx_room(), 0u);
        EXPECT_EQ(w.a->local_stats().tx_blocked, 1u);  // one wait, however often it is asked
        // The reserve still takes frames that do not wait, up to the ring.
        for (unsigned i = 0; i < 4; ++i) {
            w.a->send(packet(numbered_frame(sent++)));
        }
        EXPECT_EQ(w.a->local_stats().tx_dropped, 0u);
        co_await settle();
        EXPECT_EQ(woken, 0u);  // nothing left the wire
        co_await w.b->start();
        EXPECT_TRUE(co_await wait_count(rb.frames, 16));
        for (int i = 0; i < 1000 && woken == 0; ++i) {
            co_await sleep(100us);
        }
        EXPECT_EQ(woken, 1u);
        EXPECT_GE(room_when_woken, 4u);
        EXPECT_EQ(w.a->local_stats().tx_blocked, 1u);
        EXPECT_EQ(w.a->local_stats().tx_dropped, 0u);
        w.a->set_tx_ready_handler({});
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_TEST(virtual_wire, faults_change_at_run_time_and_capture_sees_every_frame) {
    {
        auto w = make_virtual_wire({});
        std::vector<wire_event> events;
        std::vector<std::string> bytes;
        w.set_capture([&](const wire_event& e) {
            events.push_back(e);
            bytes.emplace_back(e.frame.begin(), e.frame.end());
        });
        receiver ra, rb;
        ra.attach(*w.a);
        rb.attach(*w.b);
        co_await start_both(w);
        w.a->send(packet(numbered_frame(1)));
        w.b->send(packet(numbered_frame(2)));
        EXPECT_TRUE(co_await wait_count(rb.frames, 1));
        wire_faults all_lost;
        all_lost.loss = 1;
        co_await w.set_faults(wire_direction::a_to_b, all_lost);
        w.a->send(packet(numbered_frame(3)));
        w.b->send(packet(numbered_frame(4)));
        EXPECT_TRUE(co_await wait_count(ra.frames, 2));
        co_await settle();
        EXPECT_EQ(rb.frames.size(), 1u);
        REEF_ASSERT(events.size() == 4u);
        EXPECT_EQ(events[0].direction, wire_direction::a_to_b);
        EXPECT_EQ(events[1].direction, wire_direction::b_to_a);
        EXPECT_FALSE(events[0].lost);
        EXPECT_TRUE(events[2].lost);
        EXPECT_FALSE(events[3].lost);
        EXPECT_EQ(bytes[2], numbered_frame(3));
        bool refused = false;
        try {
            wire_faults bad;
            bad.loss = 2;
            auto f = w.set_faults(wire_direction::a_to_b, bad);
            co_await std::move(f);
        } catch (const std::invalid_argument&) {
            refused = true;
        }
        EXPECT_TRUE(refused);
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_TEST(virtual_wire, mtu_and_bad_configurations) {
    {
        auto w = make_virtual_wire({.mtu = 9000});
        EXPECT_EQ(w.a->features().max_frame_size, 9014u);
        receiver rb;
        rb.attach(*w.b);
        co_await start_both(w);
        w.a->send(packet(std::string(9014, 'j')));
        w.a->send(packet(std::string(9015, 'j')));
        EXPECT_TRUE(co_await wait_count(rb.frames, 1));
        EXPECT_EQ(w.a->local_stats().tx_dropped, 1u);
        co_await stop_both(w);
    }
    EXPECT_THROW(make_virtual_wire({.mtu = 67}), std::invalid_argument);
    EXPECT_THROW(make_virtual_wire({.ring_size = 0}), std::invalid_argument);
    virtual_wire_config same;
    same.mac_b = same.mac_a;
    EXPECT_THROW(make_virtual_wire(same), std::invalid_argument);
    virtual_wire_config bad_rate;
    bad_rate.faults.duplicate = -0.1;
    EXPECT_THROW(make_virtual_wire(bad_rate), std::invalid_argument);
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

// A shard without a queue pushes back on its proxy outbox (forward_limit frames) and is woken
// on its own shard when the queue owner has taken its batches.
REEF_SMP_TEST(virtual_wire, tx_room_of_a_proxying_shard_follows_its_outbox, 2) {
    {
        virtual_wire_config cfg;
        cfg.queues = 1;
        cfg.forward_limit = 8;
        auto w = make_virtual_wire(cfg);
        std::atomic<unsigned> got{0};
        w.b->set_receive_handler([&](packet) { got.fetch_add(1); });
        co_await start_both(w);
        device& a = *w.a;
        struct result {
            std::size_t room_before = 0, room_full = 0, room_after = 0;
            unsigned sent = 0, woken = 0, woken_on = 99;
            std::uint64_t blocked = 0, dropped = 0;
        };
        auto r = co_await smp::submit_to(1, [&a]() -> future<result> {
            result r;
            a.set_tx_ready_handler([&r] {
                ++r.woken;
                r.woken_on = this_shard_id();
            });
            r.room_before = a.tx_room();
            // Sent in one go: the outbox is flushed only when the reactor polls again.
            while (a.tx_room() > 0 && r.sent < 100) {
                a.send(packet(numbered_frame(r.sent++)));
            }
            r.room_full = a.tx_room();
            for (int i = 0; i < 10000 && r.woken == 0; ++i) {
                co_await sleep(100us);
            }
            r.room_after = a.tx_room();
            r.blocked = a.local_stats().tx_blocked;
            r.dropped = a.local_stats().tx_dropped;
            a.set_tx_ready_handler({});
            co_return r;
        });
        EXPECT_EQ(r.room_before, 6u);
        EXPECT_EQ(r.sent, 6u);
        EXPECT_EQ(r.room_full, 0u);
        EXPECT_EQ(r.woken, 1u);
        EXPECT_EQ(r.woken_on, 1u);
        EXPECT_EQ(r.room_after, 6u);
        EXPECT_EQ(r.blocked, 1u);
        EXPECT_EQ(r.dropped, 0u);
        for (int i = 0; i < 50000 && got.load() < 6; ++i) {
            co_await sleep(100us);
        }
        EXPECT_EQ(got.load(), 6u);
        w.b->set_receive_handler({});
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}

REEF_SMP_TEST(virtual_wire, one_queue_per_shard_keeps_queues_on_their_shards, 2) {
    {
        virtual_wire_config cfg;
        cfg.queues = 0;  // one per shard
        auto w = make_virtual_wire(cfg);
        EXPECT_EQ(w.a->hw_queues_count(), 2u);
        std::atomic<unsigned> got{0};
        device& b = *w.b;
        co_await smp::invoke_on_all([&] { b.set_receive_handler([&](packet) { got.fetch_add(1); }); });
        co_await start_both(w);
        device& a = *w.a;
        co_await smp::invoke_on_all([&] {
            for (unsigned i = 0; i < 100; ++i) {
                a.send(packet(numbered_frame(i)));
            }
        });
        for (int i = 0; i < 50000 && got.load() < 200; ++i) {
            co_await sleep(100us);
        }
        EXPECT_EQ(got.load(), 200u);
        auto a1 = co_await smp::submit_to(1, [&] { return a.local_stats(); });
        EXPECT_EQ(a1.tx_packets, 100u);  // shard 1 has its own queue: nothing proxied
        EXPECT_EQ(a1.tx_proxied, 0u);
        auto s = co_await w.stats(wire_direction::a_to_b);
        EXPECT_EQ(s.sent, 200u);
        co_await stop_both(w);
    }
    EXPECT_EQ(virtual_wire_live_frames(), 0);
}
