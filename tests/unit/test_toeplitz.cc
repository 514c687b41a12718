#include "stack/net/toeplitz.hh"

#include "net_frames.hh"
#include "stack/net/device.hh"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#ifdef REEF_HAVE_DPDK
#include <rte_thash.h>
#endif

using namespace reef;
using namespace reef::net;
using reef::testing::build_arp;
using reef::testing::build_frame;
using reef::testing::frame_spec;
using reef::testing::ip4;
using reef::testing::ip6;

namespace {

// The Microsoft RSS verification suite ("Verifying the RSS Hash Calculation"): destination and
// source with ports, the 2-tuple hash and the 4-tuple (TCP) hash, under default_rss_key.
struct ms_vector {
    const char* dst;
    std::uint16_t dport;
    const char* src;
    std::uint16_t sport;
    std::uint32_t hash2;
    std::uint32_t hash4;
};

const ms_vector ms_ipv4[] = {
    {"161.142.100.80", 1766, "66.9.149.187", 2794, 0x323e8fc2, 0x51ccc178},
    {"65.69.140.83", 4739, "199.92.111.2", 14230, 0xd718262a, 0xc626b0ea},
    {"12.22.207.184", 38024, "24.19.198.95", 12898, 0xd2d0a5de, 0x5c2b394a},
    {"209.142.163.6", 2217, "38.27.205.30", 48228, 0x82989176, 0xafc7327f},
    {"202.188.127.2", 1303, "153.39.163.191", 44251, 0x5d1809c5, 0x10e828a2},
};

const ms_vector ms_ipv6[] = {
    {"3ffe:2501:200:3::1", 1766, "3ffe:2501:200:1fff::7", 2794, 0x2cc18cd5, 0x40207d3d},
    {"ff02::1", 4739, "3ffe:501:8::260:97ff:fe40:efab", 14230, 0x0f0c461c, 0xdde51bbf},
    {"fe80::200:f8ff:fe21:67cf", 38024, "3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, 0x4b61e985, 0x02d1feef},
};

std::vector<std::uint8_t> tuple(std::span<const std::uint8_t> src, std::span<const std::uint8_t> dst,
                                std::optional<std::pair<std::uint16_t, std::uint16_t>> ports) {
    std::vector<std::uint8_t> t(src.begin(), src.end());
    t.insert(t.end(), dst.begin(), dst.end());
    if (ports) {
        t.push_back(static_cast<std::uint8_t>(ports->first >> 8));
        t.push_back(static_cast<std::uint8_t>(ports->first));
        t.push_back(static_cast<std::uint8_t>(ports->second >> 8));
        t.push_back(static_cast<std::uint8_t>(ports->second));
    }
    return t;
}

// A device only for device::flow_hash (which reads rss().key).
struct key_only_device final : device {
    rss_config cfg;
    hw_features f;
    key_only_device() { cfg.key.assign(default_rss_key.begin(), default_rss_key.end()); }
    std::string_view name() const noexcept override { return "key-only"; }
    ethernet_address hw_address() const noexcept override { return {}; }
    const hw_features& features() const noexcept override { return f; }
    unsigned hw_queues_count() const noexcept override { return 1; }
    const rss_config& rss() const noexcept override { return cfg; }
    link_status get_link_status() const override { return {}; }
    future<> start() override { return make_ready_future<>(); }
    future<> stop() override { return make_ready_future<>(); }
    void set_receive_handler(std::function<void(packet)>) override {}
    void set_packet_hook(packet_hook) override {}
    void send(packet) override {}
    const device_stats& local_stats() const noexcept override {
        static device_stats s;
        return s;
    }
};

std::optional<std::uint32_t> hash_of(const toeplitz& t, const std::string& frame) {
    return frame_flow_hash(t, frame.data(), frame.size());
}

}  // namespace

TEST(toeplitz, microsoft_ipv4_vectors) {
    toeplitz t;
    for (auto& v : ms_ipv4) {
        auto src = ip4(v.src), dst = ip4(v.dst);
        auto t2 = tuple(std::span(src).first(4), std::span(dst).first(4), std::nullopt);
        auto t4 = tuple(std::span(src).first(4), std::span(dst).first(4), std::pair(v.sport, v.dport));
        EXPECT_EQ(toeplitz_hash(default_rss_key, t2), v.hash2) << v.src;
        EXPECT_EQ(toeplitz_hash(default_rss_key, t4), v.hash4) << v.src;
        EXPECT_EQ(t.hash(t2), v.hash2) << v.src;
        EXPECT_EQ(t.hash(t4), v.hash4) << v.src;
    }
}

TEST(toeplitz, microsoft_ipv6_vectors) {
    toeplitz t;
    for (auto& v : ms_ipv6) {
        auto src = ip6(v.src), dst = ip6(v.dst);
        auto t2 = tuple(src, dst, std::nullopt);
        auto t4 = tuple(src, dst, std::pair(v.sport, v.dport));
        EXPECT_EQ(toeplitz_hash(default_rss_key, t2), v.hash2) << v.src;
        EXPECT_EQ(toeplitz_hash(default_rss_key, t4), v.hash4) << v.src;
        EXPECT_EQ(t.hash(t2), v.hash2) << v.src;
        EXPECT_EQ(t.hash(t4), v.hash4) << v.src;
    }
}

TEST(toeplitz, device_flow_hash_matches_vectors) {
    key_only_device d;
    for (auto& v : ms_ipv4) {
        auto src = ip4(v.src), dst = ip4(v.dst);
        EXPECT_EQ(d.flow_hash(src.data(), dst.data(), 4, v.sport, v.dport), v.hash4);
    }
    for (auto& v : ms_ipv6) {
        auto src = ip6(v.src), dst = ip6(v.dst);
        EXPECT_EQ(d.flow_hash(src.data(), dst.data(), 16, v.sport, v.dport), v.hash4);
    }
}

TEST(toeplitz, frames_hash_like_a_nic) {
    toeplitz t;
    auto& v = ms_ipv4[0];
    frame_spec f;
    f.src_ip = ip4(v.src);
    f.dst_ip = ip4(v.dst);
    f.src_port = v.sport;
    f.dst_port = v.dport;
    f.proto = 6;
    EXPECT_EQ(hash_of(t, build_frame(f)), v.hash4);
    f.proto = 17;
    f.payload = "hello";
    EXPECT_EQ(hash_of(t, build_frame(f)), v.hash4);
    f.vlan = 42;
    EXPECT_EQ(hash_of(t, build_frame(f)), v.hash4);
    f.vlan.reset();
    // Other protocols and fragments: addresses only.
    f.proto = 1;
    EXPECT_EQ(hash_of(t, build_frame(f)), v.hash2);
    f.proto = 17;
    f.frag = 0x2000;  // MF, offset 0: the first fragment
    EXPECT_EQ(hash_of(t, build_frame(f)), v.hash2);
    f.frag = 0x0010;  // a later fragment
    EXPECT_EQ(hash_of(t, build_frame(f)), v.hash2);
    f.frag = 0x4000;  // DF only: not a fragment
    EXPECT_EQ(hash_of(t, build_frame(f)), v.hash4);
    // A UDP header cut short: addresses only.
    f.frag = 0;
    auto cut = build_frame(f).substr(0, 14 + 20 + 3);
    EXPECT_EQ(hash_of(t, cut), v.hash2);

    auto& w = ms_ipv6[1];
    frame_spec g;
    g.ipv6 = true;
    g.src_ip = ip6(w.src);
    g.dst_ip = ip6(w.dst);
    g.src_port = w.sport;
    g.dst_port = w.dport;
    g.proto = 6;
    EXPECT_EQ(hash_of(t, build_frame(g)), w.hash4);
    g.proto = 58;  // ICMPv6
    EXPECT_EQ(hash_of(t, build_frame(g)), w.hash2);
    g.proto = 44;  // fragment header
    EXPECT_EQ(hash_of(t, build_frame(g)), w.hash2);
}

TEST(toeplitz, ipv6_extension_headers_are_skipped) {
    toeplitz t;
    auto& w = ms_ipv6[2];
    frame_spec g;
    g.ipv6 = true;
    g.src_ip = ip6(w.src);
    g.dst_ip = ip6(w.dst);
    g.proto = 0;  // hop-by-hop first
    // Hop-by-hop options (8 bytes: next header TCP, length 0, padding), then the TCP header.
    std::string tcp;
    reef::testing::put16(tcp, w.sport);
    reef::testing::put16(tcp, w.dport);
    tcp.append(16, '\0');
    g.payload = std::string("\x06\x00\x01\x04\x00\x00\x00\x00", 8) + tcp;
    EXPECT_EQ(hash_of(t, build_frame(g)), w.hash4);
}

TEST(toeplitz, non_ip_and_malformed_have_no_hash) {
    toeplitz t;
    EXPECT_EQ(hash_of(t, build_arp(ethernet_address{{2, 0, 0, 0, 0, 1}})), std::nullopt);
    EXPECT_EQ(hash_of(t, std::string(10, 'x')), std::nullopt);
    frame_spec f;
    f.src_ip = ip4("10.0.0.1");
    f.dst_ip = ip4("10.0.0.2");
    auto frame = build_frame(f);
    EXPECT_EQ(hash_of(t, frame.substr(0, 14 + 19)), std::nullopt);  // IPv4 header cut short
    auto bad = frame;
    bad[14] = 0x44;  // IHL 4
    EXPECT_EQ(hash_of(t, bad), std::nullopt);
    bad[14] = 0x55;  // version 5
    EXPECT_EQ(hash_of(t, bad), std::nullopt);
    bad[14] = 0x4f;  // IHL 15: 60 bytes, more than the frame holds
    EXPECT_EQ(hash_of(t, bad.substr(0, 14 + 40)), std::nullopt);
    frame_spec g;
    g.ipv6 = true;
    EXPECT_EQ(hash_of(t, build_frame(g).substr(0, 14 + 39)), std::nullopt);
}

TEST(toeplitz, table_equals_bitwise_for_random_keys_and_inputs) {
    std::mt19937 rng(7);
    for (int k = 0; k < 20; ++k) {
        std::vector<std::uint8_t> key(4 + rng() % 60);
        for (auto& b : key) {
            b = static_cast<std::uint8_t>(rng());
        }
        toeplitz t(key);
        for (int i = 0; i < 200; ++i) {
            std::vector<std::uint8_t> data(rng() % (key.size() + 8));  // past the key too
            for (auto& b : data) {
                b = static_cast<std::uint8_t>(rng());
            }
            ASSERT_EQ(t.hash(data), toeplitz_hash(key, data));
        }
        // Bytes past the key's reach add nothing.
        std::vector<std::uint8_t> data(key.size(), 0x5a);
        auto h = t.hash(data);
        data.push_back(0xff);
        EXPECT_EQ(t.hash(data), h);
        EXPECT_EQ(toeplitz_hash(key, data), h);
    }
    EXPECT_THROW(toeplitz(std::vector<std::uint8_t>{1, 2, 3}), std::invalid_argument);
}

#ifdef REEF_HAVE_DPDK
namespace {
std::uint32_t dpdk_softrss(const std::vector<std::uint8_t>& t, const std::uint8_t* key) {
    // rte_softrss takes the tuple as 32-bit words in CPU order (the big-endian value of each
    // group of 4 bytes).
    std::vector<std::uint32_t> words(t.size() / 4);
    for (std::size_t i = 0; i < words.size(); ++i) {
        words[i] = (std::uint32_t(t[4 * i]) << 24) | (std::uint32_t(t[4 * i + 1]) << 16) |
                   (std::uint32_t(t[4 * i + 2]) << 8) | t[4 * i + 3];
    }
    return rte_softrss(words.data(), static_cast<std::uint32_t>(words.size()), key);
}
}  // namespace

TEST(toeplitz, equals_dpdk_softrss) {
    std::mt19937_64 rng(42);
    std::vector<std::uint8_t> keys[2];
    keys[0].assign(default_rss_key.begin(), default_rss_key.end());
    keys[1].resize(40);
    for (auto& b : keys[1]) {
        b = static_cast<std::uint8_t>(rng());
    }
    for (auto& key : keys) {
        toeplitz t(key);
        for (int i = 0; i < 5000; ++i) {
            bool v6 = i % 2;
            std::vector<std::uint8_t> src(v6 ? 16 : 4), dst(v6 ? 16 : 4);
            for (auto& b : src) {
                b = static_cast<std::uint8_t>(rng());
            }
            for (auto& b : dst) {
                b = static_cast<std::uint8_t>(rng());
            }
            auto sport = static_cast<std::uint16_t>(rng()), dport = static_cast<std::uint16_t>(rng());
            auto t2 = tuple(src, dst, std::nullopt);
            auto t4 = tuple(src, dst, std::pair(sport, dport));
            ASSERT_EQ(t.hash(t2), dpdk_softrss(t2, key.data()));
            ASSERT_EQ(t.hash(t4), dpdk_softrss(t4, key.data()));
            // And through a frame, as software RSS computes it.
            frame_spec f;
            f.ipv6 = v6;
            std::copy(src.begin(), src.end(), f.src_ip.begin());
            std::copy(dst.begin(), dst.end(), f.dst_ip.begin());
            f.src_port = sport;
            f.dst_port = dport;
            f.proto = i % 4 < 2 ? 6 : 17;
            ASSERT_EQ(hash_of(t, build_frame(f)), dpdk_softrss(t4, key.data()));
        }
    }
}
#else
TEST(toeplitz, equals_dpdk_softrss) { GTEST_SKIP() << "built without DPDK (libdpdk-dev not found or -Ddpdk=disabled)"; }
#endif

TEST(ethernet_address, parse_print_and_classify) {
    auto a = ethernet_address::parse("02:00:0A:ff:10:01");
    EXPECT_EQ(a.mac, (std::array<std::uint8_t, 6>{0x02, 0x00, 0x0a, 0xff, 0x10, 0x01}));
    EXPECT_EQ(a.to_string(), "02:00:0a:ff:10:01");
    EXPECT_EQ(ethernet_address::parse("02-00-0a-ff-10-01"), a);
    EXPECT_FALSE(a.is_broadcast());
    EXPECT_FALSE(a.is_multicast());
    auto b = ethernet_address::parse("ff:ff:ff:ff:ff:ff");
    EXPECT_TRUE(b.is_broadcast());
    EXPECT_TRUE(b.is_multicast());
    EXPECT_TRUE(ethernet_address::parse("01:00:5e:00:00:01").is_multicast());
    for (const char* bad : {"", "02:00:00:00:00", "02:00:00:00:00:001", "02:00:00:00:00:0g", "02:00-00:00:00:01",
                            "0200:00:00:00:01:", "02:00:00:00:00:01 "}) {
        try {
            ethernet_address::parse(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos) << e.what();
        }
    }
}
