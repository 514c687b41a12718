// The DPDK device over net_ring ports, with the EAL in --no-huge --no-pci mode.
//
// The EAL starts once per process: the first test that needs it starts it (with a loopback
// net_ring0 vdev, for 2 shards, unpinned), and it stays up for the rest of the binary. Tests of
// start-up failures run in a child process each (gtest death tests, "threadsafe" style: the child
// re-executes this binary for that one test, so it starts its own EAL).
//
// Port pairs are made with rte_eth_from_rings over two rings: what one port sends, the other
// receives. Ring ports pass mbuf pointers, so a receiving port holds (and frees) the sender's
// mbufs: the tests check both devices' pools together.
#include "dataplane/dpdk_device.hh"
#include "dataplane/eal.hh"
#include "reactor_test.hh"
#include "runtime/coroutine.hh"
#include "runtime/future_util.hh"
#include "runtime/smp.hh"
#include "stack/net/checksum.hh"

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_thash.h>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace reef;
using namespace reef::dpdk;
using namespace std::chrono_literals;

namespace {

constexpr unsigned test_shards = 2;

dpdk_options eal_test_options() {
    dpdk_options o;
    o.enabled = true;
    o.no_huge = true;
    o.vdevs = {"net_ring0"};
    o.mbufs_per_shard = 4095;
    o.rx_ring = 512;
    o.tx_ring = 512;
    return o;
}

smp_options test_smp(unsigned shards) {
    smp_options o;
    o.smp = shards;
    o.thread_affinity = false;
    add_shard_init(o);
    return o;
}

void ensure_eal() {
    if (!eal_running()) {
        start_eal(eal_test_options(), test_smp(test_shards));
    }
}

class eal_environment : public ::testing::Environment {
public:
    void TearDown() override { stop_eal(); }
};
[[maybe_unused]] auto* const g_env = ::testing::AddGlobalTestEnvironment(new eal_environment);

// Run body() on shard 0 of `shards` shards that are lcores.
void run_dpdk(unsigned shards, std::function<future<>()> body) {
    ensure_eal();
    reactor_config cfg;
    cfg.handle_termination_signals = false;
    cfg.idle = idle_policy::sleep;
    std::exception_ptr ex;
    smp::run(test_smp(shards), cfg, [&]() -> future<int> {
        return futurize_invoke(body).then_wrapped([&](future<>&& f) {
            if (f.failed()) {
                ex = f.get_exception();
            }
            return 0;
        });
    });
    if (ex) {
        std::rethrow_exception(ex);
    }
}

// Two ring ports joined back to back (each with one queue pair unless told).
struct ring_pair {
    std::vector<rte_ring*> rings;
    std::uint16_t a = 0, b = 0;

    explicit ring_pair(const std::string& name, unsigned queues = 1) {
        std::vector<rte_ring*> ab, ba;
        for (unsigned q = 0; q < queues; ++q) {
            ab.push_back(rte_ring_create(fmt::format("{}ab{}", name, q).c_str(), 1024, SOCKET_ID_ANY, 0));
            ba.push_back(rte_ring_create(fmt::format("{}ba{}", name, q).c_str(), 1024, SOCKET_ID_ANY, 0));
            EXPECT_TRUE(ab.back() && ba.back());
        }
        rings.insert(rings.end(), ab.begin(), ab.end());
        rings.insert(rings.end(), ba.begin(), ba.end());
        int pa = rte_eth_from_rings((name + "A").c_str(), ba.data(), queues, ab.data(), queues, SOCKET_ID_ANY);
        int pb = rte_eth_from_rings((name + "B").c_str(), ab.data(), queues, ba.data(), queues, SOCKET_ID_ANY);
        EXPECT_GE(pa, 0);
        EXPECT_GE(pb, 0);
        a = std::uint16_t(pa);
        b = std::uint16_t(pb);
    }
    // Frames left in the rings (a test that stopped mid-traffic): free them.
    std::size_t drain() {
        std::size_t n = 0;
        void* obj;
        for (auto* r : rings) {
            while (rte_ring_dequeue(r, &obj) == 0) {
                rte_pktmbuf_free(static_cast<rte_mbuf*>(obj));
                ++n;
            }
        }
        return n;
    }
    ~ring_pair() {
        drain();
        for (auto* r : rings) {
            rte_ring_free(r);
        }
    }
};

dpdk_device_config test_config(std::uint16_t port) {
    dpdk_device_config c;
    c.port_id = port;
    c.mbufs_per_shard = 4095;
    c.rx_ring = 512;
    c.tx_ring = 512;
    c.idle_wakeup_us = 100;
    return c;
}

struct flow {
    std::uint32_t src, dst;  // host order
    std::uint16_t sport, dport;
    auto operator<=>(const flow&) const = default;
};

// Ethernet/IPv4/UDP frame carrying `payload`, checksums filled.
std::string udp_frame(const net::ethernet_address& from, const net::ethernet_address& to, const flow& f,
                      const std::string& payload) {
    std::string fr(14 + 20 + 8, '\0');
    std::memcpy(fr.data(), to.mac.data(), 6);
    std::memcpy(fr.data() + 6, from.mac.data(), 6);
    fr[12] = 0x08;
    char* ip = fr.data() + 14;
    ip[0] = 0x45;
    std::uint16_t total = htons(std::uint16_t(28 + payload.size()));
    std::memcpy(ip + 2, &total, 2);
    ip[8] = 64;
    ip[9] = IPPROTO_UDP;
    std::uint32_t s = htonl(f.src), d = htonl(f.dst);
    std::memcpy(ip + 12, &s, 4);
    std::memcpy(ip + 16, &d, 4);
    std::uint16_t c = net::internet_checksum(ip, 20);
    std::memcpy(ip + 10, &c, 2);
    char* u = ip + 20;
    std::uint16_t sp = htons(f.sport), dp = htons(f.dport), ul = htons(std::uint16_t(8 + payload.size()));
    std::memcpy(u, &sp, 2);
    std::memcpy(u + 2, &dp, 2);
    std::memcpy(u + 4, &ul, 2);
    return fr + payload;
}

flow flow_of(const std::string& frame) {
    std::uint32_t s, d;
    std::uint16_t sp, dp;
    std::memcpy(&s, frame.data() + 26, 4);
    std::memcpy(&d, frame.data() + 30, 4);
    std::memcpy(&sp, frame.data() + 34, 2);
    std::memcpy(&dp, frame.data() + 36, 2);
    return flow{ntohl(s), ntohl(d), ntohs(sp), ntohs(dp)};
}

std::string pattern(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        s[i] = char((i * 131 + seed * 7) & 0xff);
    }
    return s;
}

// Poll (on shard 0) until cond() or a generous deadline: a guard against hangs, not a timing check.
template <typename Cond>
future<bool> wait_for(Cond cond) {
    auto deadline = steady_clock_type::now() + 20s;
    while (!cond()) {
        if (steady_clock_type::now() > deadline) {
            co_return false;
        }
        co_await sleep(1ms);
    }
    co_return true;
}

// Receivers on every shard of `dev`: frames kept as strings per shard, counted in `total`.
struct receiver {
    std::vector<std::vector<std::string>> frames{smp::count};
    std::atomic<unsigned> total{0};

    future<> install(net::device& dev) {
        co_await smp::invoke_on_all([this, &dev] {
            unsigned s = this_shard_id();
            dev.set_receive_handler([this, s](net::packet p) {
                frames[s].push_back(p.to_string());
                total.fetch_add(1);
            });
        });
    }
};

future<> stop_both(dpdk_device& a, dpdk_device& b) {
    co_await a.stop();
    co_await b.stop();
}

}  // namespace

// ---- options and EAL arguments (no EAL needed)

TEST(dpdk_options, parse_and_validate) {
    CLI::App app;
    dpdk_options o;
    o.register_options(app);
    std::vector<std::string> args = {"--dpdk-pmd",
                                     "--vdev",
                                     "net_ring0",
                                     "--vdev",
                                     "net_tap0,iface=t0",
                                     "--dpdk-port-index",
                                     "1",
                                     "--no-huge",
                                     "--dpdk-args",
                                     "--log-level=8 -n 2",
                                     "--hw-queue-weight",
                                     "0.5",
                                     "--dpdk-rx-ring",
                                     "256",
                                     "--dpdk-tx-ring",
                                     "256",
                                     "--dpdk-mbufs-per-shard",
                                     "2047"};
    std::reverse(args.begin(), args.end());
    app.parse(args);
    EXPECT_TRUE(o.enabled);
    EXPECT_EQ(o.vdevs, (std::vector<std::string>{"net_ring0", "net_tap0,iface=t0"}));
    EXPECT_EQ(o.port_index, 1u);
    EXPECT_TRUE(o.no_huge);
    EXPECT_TRUE(o.in_memory);
    EXPECT_FLOAT_EQ(o.hw_queue_weight, 0.5f);
    EXPECT_EQ(o.extra_eal_args(), (std::vector<std::string>{"--log-level=8", "-n", "2"}));
    EXPECT_NO_THROW(o.validate());
    auto help = app.help();
    EXPECT_NE(help.find("DPDK options"), std::string::npos);
    EXPECT_NE(help.find("--dpdk-mbufs-per-shard"), std::string::npos);

    CLI::App app2;
    dpdk_options o2;
    o2.register_options(app2);
    app2.parse(std::vector<std::string>{"--no-in-memory", "--dpdk-pmd"});
    EXPECT_FALSE(o2.in_memory);
}

TEST(dpdk_options, errors_name_the_option) {
    auto parse_error = [](std::vector<std::string> args) -> std::string {
        CLI::App app;
        dpdk_options o;
        o.register_options(app);
        std::reverse(args.begin(), args.end());
        try {
            app.parse(args);
            o.validate();
        } catch (const CLI::Error& e) {
            return e.what();
        } catch (const std::invalid_argument& e) {
            return e.what();
        }
        return "";
    };
    EXPECT_NE(parse_error({"--dpdk-pmd", "--dpdk-rx-ring", "5"}).find("--dpdk-rx-ring"), std::string::npos);
    EXPECT_NE(parse_error({"--dpdk-pmd", "--vdev", "net ring"}).find("white space"), std::string::npos);
    EXPECT_NE(parse_error({"--dpdk-pmd", "--vdev", "net_ring0,oops"}).find("not key=value"), std::string::npos);
    EXPECT_NE(parse_error({"--vdev", "net_ring0"}).find("--dpdk-pmd"), std::string::npos);
    EXPECT_NE(parse_error({"--dpdk-pmd", "--vdev", "net_ring0", "--vdev", "net_ring0"}).find("given twice"),
              std::string::npos);
    EXPECT_NE(parse_error({"--dpdk-pmd", "--dpdk-args", "-l 0-3"}).find("--dpdk-args: '-l' is set by Reef"),
              std::string::npos);
    EXPECT_NE(parse_error({"--dpdk-pmd", "--dpdk-args", "--file-prefix=x"}).find("--file-prefix"), std::string::npos);
    EXPECT_NE(parse_error({"--dpdk-pmd", "--dpdk-rx-ring", "4096", "--dpdk-tx-ring", "4096"})
                  .find("--dpdk-mbufs-per-shard 8191 is too small"),
              std::string::npos);
    EXPECT_NE(parse_error({"--dpdk-pmd", "--hw-queue-weight", "2"}).find("--hw-queue-weight"), std::string::npos);
}

TEST(eal_args, derived_from_options) {
    dpdk_options o;
    o.vdevs = {"net_ring0", "net_null0"};
    hugepage_status none;
    none.reason = "none here";
    auto a = make_eal_args(o, 2, {3, 1}, none);
    auto has = [&](const std::string& s) { return std::find(a.begin(), a.end(), s) != a.end(); };
    EXPECT_TRUE(has("--no-huge"));
    EXPECT_TRUE(has("--no-shconf"));  // --in-memory's part that works without hugepages
    EXPECT_FALSE(has("--in-memory"));
    EXPECT_TRUE(has("--no-pci"));
    EXPECT_TRUE(has("--vdev=net_ring0"));
    EXPECT_TRUE(has("--vdev=net_null0"));
    EXPECT_TRUE(has("--lcores"));
    EXPECT_TRUE(has("0@3"));  // the main lcore on shard 0's CPU
    EXPECT_TRUE(has(fmt::format("--file-prefix=reef-{}", ::getpid())));
    EXPECT_TRUE(has("-m"));

    hugepage_status huge;
    huge.usable = true;
    huge.mount = "/dev/hugepages";
    auto h = make_eal_args(o, 2, {}, huge);
    EXPECT_EQ(std::find(h.begin(), h.end(), "--no-huge"), h.end());
    EXPECT_NE(std::find(h.begin(), h.end(), "--in-memory"), h.end());

    // Arguments passed through come first; PCI allowed explicitly keeps PCI on.
    o.eal_args = "-a 0000:01:00.0";
    auto p = make_eal_args(o, 1, {0}, huge);
    EXPECT_EQ(p[1], "-a");
    EXPECT_EQ(std::find(p.begin(), p.end(), "--no-pci"), p.end());

    // An explicit --huge-dir without hugepages is an error saying what to do.
    o.eal_args.clear();
    o.huge_dir = "/mnt/huge";
    try {
        make_eal_args(o, 1, {0}, none);
        ADD_FAILURE() << "no error";
    } catch (const eal_error& e) {
        EXPECT_NE(std::string(e.what()).find("--huge-dir /mnt/huge"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("--no-huge"), std::string::npos) << e.what();
    }
}

// ---- start-up failures, each in a child process (exit 2 with the message, like the bootstrap)

namespace {
[[noreturn]] void start_and_exit(dpdk_options o) {
    o.enabled = true;
    o.no_huge = true;
    smp_options s;
    s.smp = 1;
    s.thread_affinity = false;
    try {
        start_eal(o, s);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        std::exit(2);
    }
    std::exit(0);
}
}  // namespace

TEST(eal_death, unknown_vdev_driver) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    dpdk_options o;
    o.vdevs = {"net_foo0"};
    EXPECT_EXIT(start_and_exit(o), ::testing::ExitedWithCode(2), "vdev 'net_foo0': unknown driver 'net_foo'");
}

TEST(eal_death, vdev_that_cannot_start) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    dpdk_options o;
    o.vdevs = {"net_af_packet0,iface=reef-no-such-if"};
    EXPECT_EXIT(start_and_exit(o), ::testing::ExitedWithCode(2),
                "vdev 'net_af_packet0,iface=reef-no-such-if': its driver could not start it");
}

TEST(eal_death, wrong_port_index) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    dpdk_options o;
    o.vdevs = {"net_null0"};
    o.port_index = 3;
    EXPECT_EXIT(start_and_exit(o), ::testing::ExitedWithCode(2),
                "no DPDK port 3: 1 port available \\(net_null0\\); change --dpdk-port-index");
}

TEST(eal_death, no_port_at_all) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    dpdk_options o;
    o.eal_args = "--no-pci";
    EXPECT_EXIT(start_and_exit(o), ::testing::ExitedWithCode(2), "no DPDK port 0: no port available");
}

// ---- the device

TEST(dpdk_device, find_port_names_the_ports) {
    ensure_eal();
    try {
        (void)find_port(99);
        ADD_FAILURE() << "no error";
    } catch (const eal_error& e) {
        EXPECT_NE(std::string(e.what()).find("no DPDK port 99:"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("net_ring0"), std::string::npos) << e.what();
    }
    EXPECT_NO_THROW((void)find_port(0));
}

TEST(dpdk_device, ring_pair_frames_arrive_intact) {
    run_dpdk(1, []() -> future<> {
        ring_pair rp("rpa");
        auto a = std::make_unique<dpdk_device>(test_config(rp.a));
        auto b = std::make_unique<dpdk_device>(test_config(rp.b));
        EXPECT_EQ(a->hw_queues_count(), 1u);
        co_await a->start();
        co_await b->start();
        EXPECT_TRUE(a->get_link_status().up);
        std::size_t baseline = a->mbufs_in_use() + b->mbufs_in_use();
        receiver rx;
        co_await rx.install(*b);

        // Sizes around the copy/zero-copy threshold and the mbuf size, one fragment each.
        std::vector<std::string> sent;
        unsigned i = 0;
        for (std::size_t len : {18u, 60u, 100u, 511u, 512u, 1000u, 1472u}) {
            auto f = udp_frame(a->hw_address(), b->hw_address(), flow{0xc6120001, 0xc6120002, 1000, 2000},
                               pattern(len, i++));
            sent.push_back(f);
            a->send(net::packet(f.data(), f.size()));
        }
        // Multi-fragment: a small header fragment, a big one (attached, zero-copy), a small tail.
        bool big_freed = false;
        {
            auto f = udp_frame(a->hw_address(), b->hw_address(), flow{0xc6120001, 0xc6120002, 1000, 2000},
                               pattern(1400, 99));
            sent.push_back(f);
            net::packet p(f.data(), 42);
            auto* big = new std::string(f.substr(42, 1300));
            p.append(net::packet(net::fragment{big->data(), big->size()}, make_deleter([big, &big_freed] {
                                     delete big;
                                     big_freed = true;
                                 })));
            p.append(net::packet(f.data() + 42 + 1300, f.size() - 42 - 1300));
            EXPECT_EQ(p.nr_frags(), 3u);
            a->send(std::move(p));
        }
        bool all = co_await wait_for([&] { return rx.total.load() == sent.size(); });
        EXPECT_TRUE(all);
        REEF_ASSERT(rx.frames[0].size() == sent.size());
        for (std::size_t k = 0; k < sent.size(); ++k) {
            EXPECT_EQ(rx.frames[0][k], sent[k]) << "frame " << k;
        }
        EXPECT_EQ(b->local_stats().rx_packets, sent.size());
        EXPECT_EQ(a->local_stats().tx_packets, sent.size());
        EXPECT_GT(a->local_dpdk_stats().tx_zero_copy_frags, 0u);
        // The receiver dropped its packets: every mbuf goes back, and the zero-copy fragment's
        // owner is released on the sending shard.
        bool back = co_await wait_for([&] { return a->mbufs_in_use() + b->mbufs_in_use() == baseline && big_freed; });
        EXPECT_TRUE(back) << "in use " << a->mbufs_in_use() + b->mbufs_in_use() << " baseline " << baseline;
        auto ps = b->port_stats();
        EXPECT_EQ(ps.ipackets, sent.size());
        EXPECT_FALSE(a->xstats().empty());
        co_await stop_both(*a, *b);
    });
}

TEST(dpdk_device, multi_segment_frames_and_copies) {
    run_dpdk(1, []() -> future<> {
        ring_pair rp("rpm");
        auto ca = test_config(rp.a);
        ca.zero_copy_threshold = 1 << 20;  // always copy: frames over one mbuf become chains
        auto a = std::make_unique<dpdk_device>(ca);
        auto b = std::make_unique<dpdk_device>(test_config(rp.b));
        co_await a->start();
        co_await b->start();
        std::size_t baseline = a->mbufs_in_use() + b->mbufs_in_use();
        std::vector<std::size_t> segs;
        std::vector<std::string> got;
        b->set_receive_handler([&](net::packet p) {
            segs.push_back(p.nr_frags());
            got.push_back(p.to_string());
        });
        // 6000 bytes: three 2 KiB mbufs (no port limit on the MTU for ring ports).
        std::string f = udp_frame(a->hw_address(), b->hw_address(), flow{1, 2, 3, 4}, pattern(1400, 5));
        std::string big = f + pattern(6000 - f.size(), 6);
        std::vector<temporary_buffer<char>> parts;
        for (std::size_t off = 0; off < big.size(); off += 700) {
            parts.push_back(temporary_buffer<char>::copy_of(std::string_view(big).substr(off, 700)));
        }
        // Past max_frame_size: dropped and counted by the device.
        a->send(net::packet(std::move(parts)));
        EXPECT_EQ(a->local_stats().tx_dropped, 1u);
        // Within it, many fragments: copied into as few mbufs as fit.
        std::vector<temporary_buffer<char>> small;
        for (std::size_t off = 0; off < f.size(); off += 100) {
            small.push_back(temporary_buffer<char>::copy_of(std::string_view(f).substr(off, 100)));
        }
        a->send(net::packet(std::move(small)));
        bool ok = co_await wait_for([&] { return got.size() == 1; });
        REEF_ASSERT(ok);
        EXPECT_EQ(got[0], f);
        EXPECT_EQ(segs[0], 1u);
        EXPECT_EQ(a->local_dpdk_stats().tx_zero_copy_frags, 0u);
        got.clear();
        segs.clear();
        bool back = co_await wait_for([&] { return a->mbufs_in_use() + b->mbufs_in_use() == baseline; });
        EXPECT_TRUE(back);
        co_await stop_both(*a, *b);
    });
}

TEST(dpdk_device, received_chains_become_fragments) {
    run_dpdk(1, []() -> future<> {
        ring_pair rp("rpc");
        auto b = std::make_unique<dpdk_device>(test_config(rp.b));
        co_await b->start();
        std::vector<net::packet> got;
        b->set_receive_handler([&](net::packet p) { got.push_back(std::move(p)); });
        rte_mempool* pool = rte_pktmbuf_pool_create("rpc_test", 255, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        REEF_ASSERT(pool);
        std::string f = udp_frame({}, b->hw_address(), flow{1, 2, 3, 4}, pattern(300, 1));
        // A 3-segment chain: 42 + 100 + rest.
        rte_mbuf* segs[3];
        REEF_ASSERT(rte_pktmbuf_alloc_bulk(pool, segs, 3) == 0);
        std::size_t cuts[4] = {0, 42, 142, f.size()};
        for (int i = 0; i < 3; ++i) {
            char* d = rte_pktmbuf_append(segs[i], std::uint16_t(cuts[i + 1] - cuts[i]));
            std::memcpy(d, f.data() + cuts[i], cuts[i + 1] - cuts[i]);
            if (i) {
                REEF_ASSERT(rte_pktmbuf_chain(segs[0], segs[i]) == 0);
            }
        }
        // Bad frames the device must count and drop: a runt, an IPv4 length past the frame, a
        // chain over the limit.
        rte_mbuf* runt = rte_pktmbuf_alloc(pool);
        std::memcpy(rte_pktmbuf_append(runt, 10), f.data(), 10);
        rte_mbuf* lying = rte_pktmbuf_alloc(pool);
        std::string bad = f;
        bad[16] = char(0x7f);  // total length 0x7fxx
        std::memcpy(rte_pktmbuf_append(lying, std::uint16_t(bad.size())), bad.data(), bad.size());
        rte_mbuf* longchain = rte_pktmbuf_alloc(pool);
        std::memcpy(rte_pktmbuf_append(longchain, 42), f.data(), 42);
        for (unsigned i = 0; i < dpdk_device::max_rx_segments; ++i) {
            rte_mbuf* s = rte_pktmbuf_alloc(pool);
            *rte_pktmbuf_append(s, 1) = 'x';
            REEF_ASSERT(rte_pktmbuf_chain(longchain, s) == 0);
        }
        // Into B's receive ring (the one A transmits into).
        rte_ring* b_rx = rp.rings[0];
        void* objs[4] = {segs[0], runt, lying, longchain};
        REEF_ASSERT(rte_ring_enqueue_bulk(b_rx, objs, 4, nullptr) == 4);
        bool ok = co_await wait_for([&] {
            auto& s = b->local_stats();
            return got.size() == 1 && s.rx_dropped_runt + s.rx_dropped_bad_length + s.rx_dropped_chain == 3;
        });
        EXPECT_TRUE(ok);
        auto& s = b->local_stats();
        EXPECT_EQ(s.rx_dropped_runt, 1u);
        EXPECT_EQ(s.rx_dropped_bad_length, 1u);
        EXPECT_EQ(s.rx_dropped_chain, 1u);
        REEF_ASSERT(got.size() == 1);
        EXPECT_EQ(got[0].nr_frags(), 3u);
        EXPECT_EQ(got[0].to_string(), f);
        got.clear();
        EXPECT_EQ(rte_mempool_in_use_count(pool), 0u);
        co_await b->stop();
        b.reset();
        rte_mempool_free(pool);
    });
}

TEST(dpdk_device, software_checksums) {
    run_dpdk(1, []() -> future<> {
        ring_pair rp("rps");
        auto a = std::make_unique<dpdk_device>(test_config(rp.a));
        auto b = std::make_unique<dpdk_device>(test_config(rp.b));
        EXPECT_FALSE(a->features().tx_l4_csum_offload);  // ring ports offload nothing
        co_await a->start();
        co_await b->start();
        std::vector<std::string> got;
        b->set_receive_handler([&](net::packet p) { got.push_back(p.to_string()); });
        auto f = udp_frame(a->hw_address(), b->hw_address(), flow{0x0a000001, 0x0a000002, 53, 5353}, pattern(333, 2));
        std::memset(f.data() + 24, 0, 2);  // IP checksum
        std::memset(f.data() + 40, 0, 2);  // UDP checksum
        net::packet p(f.data(), f.size());
        p.offload().needs_ip_csum = true;
        p.offload().needs_csum = true;
        p.offload().protocol = IPPROTO_UDP;
        a->send(std::move(p));
        bool ok = co_await wait_for([&] { return got.size() == 1; });
        REEF_ASSERT(ok);
        const std::string& r = got[0];
        EXPECT_TRUE(net::ipv4_header_checksum_ok(r.data() + 14, 20));
        net::checksummer c;
        net::add_ipv4_pseudo_header(c, r.data() + 26, r.data() + 30, IPPROTO_UDP, 8 + 333);
        c.add(r.data() + 34, 8 + 333);
        EXPECT_EQ(c.folded_sum(), 0xffff);
        co_await stop_both(*a, *b);
    });
}

// Software RSS: 2 shards, 1-queue ports. Flows spread over both shards, each flow always on the
// same one, the one DPDK's rte_softrss and the RETA name.
TEST(dpdk_device, software_rss_two_shards_one_queue) {
    run_dpdk(2, []() -> future<> {
        ring_pair rp("rpr");
        auto a = std::make_unique<dpdk_device>(test_config(rp.a));
        auto b = std::make_unique<dpdk_device>(test_config(rp.b));
        EXPECT_EQ(b->hw_queues_count(), 1u);
        co_await a->start();
        co_await b->start();
        std::size_t baseline = a->mbufs_in_use() + b->mbufs_in_use();
        receiver rx;
        co_await rx.install(*b);
        constexpr unsigned flows = 200, per_flow = 5;
        std::vector<flow> fl;
        for (unsigned i = 0; i < flows; ++i) {
            fl.push_back(flow{0xc6120000u + (i % 7), 0xc6130001u, std::uint16_t(10000 + i), 80});
        }
        for (unsigned k = 0; k < per_flow; ++k) {
            for (unsigned i = 0; i < flows; ++i) {
                auto f = udp_frame(a->hw_address(), b->hw_address(), fl[i], pattern(64, i));
                a->send(net::packet(f.data(), f.size()));
            }
            co_await coroutine::maybe_yield();
        }
        bool all = co_await wait_for([&] { return rx.total.load() == flows * per_flow; });
        EXPECT_TRUE(all) << rx.total.load();
        // Read the shard 1 results on shard 1's thread's behalf: it wrote them before counting.
        std::map<flow, std::set<unsigned>> where;
        for (unsigned s = 0; s < 2; ++s) {
            auto frames = co_await smp::submit_to(s, [&rx, s] { return rx.frames[s]; });
            for (auto& f : frames) {
                where[flow_of(f)].insert(s);
            }
        }
        EXPECT_EQ(where.size(), flows);
        unsigned on[2] = {0, 0};
        auto& key = b->rss().key;
        for (auto& [f, shards] : where) {
            EXPECT_EQ(shards.size(), 1u) << "flow split over shards";
            std::uint32_t tuple[3] = {f.src, f.dst, (std::uint32_t(f.sport) << 16) | f.dport};
            std::uint32_t h = rte_softrss(tuple, 3, key.data());
            EXPECT_EQ(*shards.begin(), b->shard_of(h));
            ++on[*shards.begin()];
        }
        EXPECT_GT(on[0], 0u);
        EXPECT_GT(on[1], 0u);
        auto st1 = co_await smp::submit_to(1, [&b] { return b->local_stats(); });
        EXPECT_EQ(b->local_stats().sw_rss_forwarded, st1.sw_rss_received);
        EXPECT_EQ(st1.sw_rss_received, on[1] * per_flow);
        rx.frames[0].clear();
        co_await smp::submit_to(1, [&rx] { rx.frames[1].clear(); });
        bool back = co_await wait_for([&] { return a->mbufs_in_use() + b->mbufs_in_use() == baseline; });
        EXPECT_TRUE(back) << a->mbufs_in_use() + b->mbufs_in_use() << " vs " << baseline;
        co_await stop_both(*a, *b);
    });
}

// The packet hook answers in place from the shard that owns each frame (shard 1 has no queue:
// its replies go out through shard 0's queue) and consumes others. Small frames reach B in
// mbufs of A's pool (A copied them): the hook gets the mbuf itself. Large ones A sent zero-copy,
// so B's mbufs are attached to A's memory: the hook gets a copy, and its reply goes out as one.
TEST(dpdk_device, packet_hook_replies_in_place_and_consumes) {
    run_dpdk(2, []() -> future<> {
        ring_pair rp("rph");
        auto a = std::make_unique<dpdk_device>(test_config(rp.a));
        auto b = std::make_unique<dpdk_device>(test_config(rp.b));
        co_await a->start();
        co_await b->start();
        std::size_t baseline = a->mbufs_in_use() + b->mbufs_in_use();
        receiver rx;
        co_await rx.install(*a);
        std::atomic<unsigned> stack_saw{0};
        std::atomic<unsigned> own_buffer{0}, copied{0};
        co_await smp::invoke_on_all([&] {
            b->set_receive_handler([&](net::packet) { stack_saw.fetch_add(1); });
            b->set_packet_hook([&](net::hook_frame& f) {
                if (f.len < 42) {
                    return net::hook_action::pass;
                }
                char* h = f.data;
                std::uint16_t dport = std::uint16_t((std::uint8_t(h[36]) << 8) | std::uint8_t(h[37]));
                if (dport == 9) {
                    return net::hook_action::consumed;  // "discard"
                }
                (f.room > f.len ? own_buffer : copied).fetch_add(1);
                // Echo: swap the MACs and ports in place and answer with the same buffer.
                std::swap_ranges(h, h + 6, h + 6);
                std::swap_ranges(h + 34, h + 36, h + 36);
                return net::hook_action::reply;
            });
        });
        constexpr unsigned n = 100;
        for (unsigned i = 0; i < n; ++i) {
            std::size_t len = i % 4 == 0 ? 700 : 100;  // 700: above the zero-copy threshold
            auto f = udp_frame(a->hw_address(), b->hw_address(),
                               flow{0x0a000001, 0x0a000002, std::uint16_t(2000 + i), 7}, pattern(len, i));
            a->send(net::packet(f.data(), f.size()));
            auto d = udp_frame(a->hw_address(), b->hw_address(),
                               flow{0x0a000001, 0x0a000002, std::uint16_t(2000 + i), 9}, pattern(64, i));
            a->send(net::packet(d.data(), d.size()));
        }
        bool all = co_await wait_for([&] { return rx.total.load() == n; });
        EXPECT_TRUE(all) << rx.total.load();
        EXPECT_EQ(stack_saw.load(), 0u);
        EXPECT_EQ(own_buffer.load(), 3 * n / 4);
        EXPECT_EQ(copied.load(), n / 4);
        unsigned hooked = 0, proxied = 0;
        for (unsigned s = 0; s < 2; ++s) {
            auto st = co_await smp::submit_to(s, [&b] { return b->local_stats(); });
            hooked += st.rx_hooked;
            proxied += st.tx_proxied;
        }
        EXPECT_EQ(hooked, 2 * n);
        EXPECT_GT(proxied, 0u);  // some flows belong to shard 1, which replies through shard 0
        // Replies come back whole, with the ports swapped.
        std::set<unsigned> sports;
        for (unsigned s = 0; s < 2; ++s) {
            auto frames = co_await smp::submit_to(s, [&rx, s] { return std::exchange(rx.frames[s], {}); });
            for (auto& f : frames) {
                auto fl = flow_of(f);
                EXPECT_EQ(fl.sport, 7);
                sports.insert(fl.dport);
                unsigned i = fl.dport - 2000u;
                EXPECT_EQ(f.substr(42), pattern(i % 4 == 0 ? 700 : 100, i)) << i;
            }
        }
        EXPECT_EQ(sports.size(), n);
        co_await smp::invoke_on_all([&] { b->set_packet_hook({}); });
        bool back = co_await wait_for([&] { return a->mbufs_in_use() + b->mbufs_in_use() == baseline; });
        EXPECT_TRUE(back);
        co_await stop_both(*a, *b);
    });
}

// A received packet the app rewrites and sends back (the stack's path, not the hook's) goes
// out in its own mbuf: no copy, no allocation (dpdk_shard_stats::tx_in_place).
TEST(dpdk_device, received_packet_sent_back_in_its_mbuf) {
    run_dpdk(1, []() -> future<> {
        ring_pair rp("rip");
        auto a = std::make_unique<dpdk_device>(test_config(rp.a));
        auto b = std::make_unique<dpdk_device>(test_config(rp.b));
        co_await a->start();
        co_await b->start();
        std::size_t baseline = a->mbufs_in_use() + b->mbufs_in_use();
        receiver rx;
        co_await rx.install(*a);
        b->set_receive_handler([&](net::packet p) {
            char* h = p.get_header(0, 42);
            std::swap_ranges(h, h + 6, h + 6);
            std::swap_ranges(h + 34, h + 36, h + 36);
            b->send(std::move(p));
        });
        constexpr unsigned n = 50;
        for (unsigned i = 0; i < n; ++i) {
            auto f = udp_frame(a->hw_address(), b->hw_address(),
                               flow{0x0a000001, 0x0a000002, std::uint16_t(4000 + i), 7}, pattern(i % 2 ? 40 : 200, i));
            a->send(net::packet(f.data(), f.size()));
        }
        bool all = co_await wait_for([&] { return rx.total.load() == n; });
        EXPECT_TRUE(all) << rx.total.load();
        EXPECT_EQ(b->local_dpdk_stats().tx_in_place, n);
        EXPECT_EQ(b->local_dpdk_stats().tx_copied_bytes, 0u);
        for (auto& f : std::exchange(rx.frames[0], {})) {
            auto fl = flow_of(f);
            unsigned i = fl.dport - 4000u;
            EXPECT_EQ(fl.sport, 7);
            EXPECT_EQ(f.substr(42), pattern(i % 2 ? 40 : 200, i)) << i;
        }
        b->set_receive_handler({});
        bool back = co_await wait_for([&] { return a->mbufs_in_use() + b->mbufs_in_use() == baseline; });
        EXPECT_TRUE(back);
        co_await stop_both(*a, *b);
    });
}

// A multi-queue port (the loopback net_ring0 vdev: what queue q sends, queue q receives): one
// queue per shard; a flow owned by shard 0 but sent from shard 1 arrives on queue 1 and is
// forwarded.
TEST(dpdk_device, one_queue_per_shard) {
    run_dpdk(2, []() -> future<> {
        auto d = std::make_unique<dpdk_device>(test_config(find_port(0)));
        EXPECT_EQ(d->hw_queues_count(), 2u);
        co_await d->start();
        receiver rx;
        co_await rx.install(*d);
        std::vector<flow> fl;
        for (unsigned i = 0; i < 64; ++i) {
            fl.push_back(flow{0x0a000001, 0x0a000002, std::uint16_t(3000 + i), 9});
        }
        auto mac = d->hw_address();
        co_await smp::invoke_on_all([&] {
            for (auto& f : fl) {
                auto fr = udp_frame(mac, mac, f, pattern(50, this_shard_id()));
                d->send(net::packet(fr.data(), fr.size()));
            }
        });
        bool all = co_await wait_for([&] { return rx.total.load() == 2 * fl.size(); });
        EXPECT_TRUE(all) << rx.total.load();
        unsigned fwd = 0;
        for (unsigned s = 0; s < 2; ++s) {
            auto st = co_await smp::submit_to(s, [&d] { return d->local_stats(); });
            EXPECT_EQ(st.tx_proxied, 0u);
            fwd += st.sw_rss_forwarded;
        }
        EXPECT_GT(fwd, 0u);
        for (unsigned s = 0; s < 2; ++s) {
            auto frames = co_await smp::submit_to(s, [&rx, s] { return std::exchange(rx.frames[s], {}); });
            for (auto& f : frames) {
                auto fl1 = flow_of(f);
                std::uint32_t tuple[3] = {fl1.src, fl1.dst, (std::uint32_t(fl1.sport) << 16) | fl1.dport};
                EXPECT_EQ(s, d->shard_of(rte_softrss(tuple, 3, d->rss().key.data())));
            }
        }
        co_await d->stop();
    });
}

// Stop while both shards keep sending and the other side keeps receiving: no crash, no hang,
// sends after stop are dropped and counted, and every mbuf comes back once the rings are drained.
TEST(dpdk_device, clean_stop_under_traffic) {
    run_dpdk(2, []() -> future<> {
        ring_pair rp("rpt");
        auto a = std::make_unique<dpdk_device>(test_config(rp.a));
        auto b = std::make_unique<dpdk_device>(test_config(rp.b));
        co_await a->start();
        co_await b->start();
        receiver rx;
        co_await rx.install(*b);
        // Received packets are dropped at once on shard 1 too, so memory stays flat.
        co_await smp::invoke_on_all([&] { b->set_receive_handler([&](net::packet) { rx.total.fetch_add(1); }); });
        std::atomic<bool> stop_sending{false};
        auto mac_a = a->hw_address(), mac_b = b->hw_address();
        auto sender = [&]() -> future<> {
            unsigned i = 0;
            while (!stop_sending.load()) {
                auto f = udp_frame(mac_a, mac_b, flow{0x0a000001, 0x0a000002, std::uint16_t(i % 500), 9},
                                   pattern(i % 2 ? 100 : 900, i));
                a->send(net::packet(f.data(), f.size()));
                if (++i % 16 == 0) {
                    co_await sleep(10us);
                }
            }
        };
        auto senders = smp::invoke_on_all([&] { return sender(); });
        bool flowing = co_await wait_for([&] { return rx.total.load() > 2000; });
        EXPECT_TRUE(flowing);
        co_await b->stop();
        co_await a->stop();
        auto dropped_before = a->local_stats().tx_dropped;
        co_await sleep(1ms);
        stop_sending = true;
        co_await std::move(senders);
        EXPECT_GT(a->local_stats().tx_dropped, dropped_before);  // sends after stop are dropped
        rp.drain();
        EXPECT_EQ(a->mbufs_in_use() + b->mbufs_in_use(), 0u);
        a.reset();
        b.reset();
    });
}

// Checksum offload through a PMD that has it (net_tap computes offloaded checksums itself), seen
// from the kernel side of the tap with a packet socket; and a frame the kernel sends arrives.
// Skipped where a tap cannot be made.
TEST(dpdk_device, tap_offloaded_checksums_and_kernel_frames) {
    ensure_eal();
    std::string ifname = fmt::format("rft{}", ::getpid() % 100000);
    std::string devargs = fmt::format("net_tap9,iface={}", ifname);
    if (rte_dev_probe(devargs.c_str()) != 0) {
        GTEST_SKIP() << "cannot create a tap here: " << devargs;
    }
    std::uint16_t port;
    ASSERT_EQ(rte_eth_dev_get_port_by_name("net_tap9", &port), 0);
    int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
    ASSERT_GE(fd, 0);
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = int(if_nametoindex(ifname.c_str()));
    ASSERT_GT(sll.sll_ifindex, 0);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)), 0);

    run_dpdk(1, [&]() -> future<> {
        auto d = std::make_unique<dpdk_device>(test_config(port));
        EXPECT_TRUE(d->features().tx_l4_csum_offload);
        EXPECT_TRUE(d->features().tx_ip_csum_offload);
        co_await d->start();
        std::vector<std::string> got;
        d->set_receive_handler([&](net::packet p) { got.push_back(p.to_string()); });
        net::ethernet_address peer;
        peer.mac = {0x02, 0, 0, 0, 0, 0x42};
        auto f = udp_frame(d->hw_address(), peer, flow{0xc6120001, 0xc6120002, 4242, 4343}, pattern(600, 3));
        std::memset(f.data() + 24, 0, 2);
        std::memset(f.data() + 40, 0, 2);
        net::packet p(f.data(), f.size());
        p.offload().needs_ip_csum = true;
        p.offload().needs_csum = true;
        p.offload().protocol = IPPROTO_UDP;
        d->send(std::move(p));
        std::string seen;
        bool ok = co_await wait_for([&] {
            char buf[4096];
            ssize_t n;
            while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) {
                if (n == ssize_t(f.size()) && flow_of(std::string(buf, 38)).sport == 4242) {
                    seen.assign(buf, std::size_t(n));
                }
            }
            return !seen.empty();
        });
        EXPECT_TRUE(ok);
        if (ok) {
            EXPECT_TRUE(net::ipv4_header_checksum_ok(seen.data() + 14, 20));
            net::checksummer c;
            net::add_ipv4_pseudo_header(c, seen.data() + 26, seen.data() + 30, IPPROTO_UDP, 8 + 600);
            c.add(seen.data() + 34, 8 + 600);
            EXPECT_EQ(c.folded_sum(), 0xffff);
            EXPECT_EQ(seen.substr(42), f.substr(42));
        }
        // Kernel -> DPDK.
        auto in = udp_frame(peer, d->hw_address(), flow{0xc6120002, 0xc6120001, 4343, 4242}, pattern(200, 4));
        EXPECT_EQ(::send(fd, in.data(), in.size(), 0), ssize_t(in.size()));
        bool arrived =
            co_await wait_for([&] { return std::any_of(got.begin(), got.end(), [&](auto& g) { return g == in; }); });
        EXPECT_TRUE(arrived);
        got.clear();
        co_await d->stop();
    });
    ::close(fd);
    rte_eal_hotplug_remove("vdev", "net_tap9");
}
