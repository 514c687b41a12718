// The UDP fast path's frame handling on hand-made frames: get and set answered in place with
// valid IPv4 and UDP checksums, other shards' keys and other traffic passed on, malformed frames
// counted. (pytests/memcached runs it on the wire with --dpdk-pmd.)
#include "apps/memcached/udp_fast_path.hh"

#include "stack/net/checksum.hh"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

using namespace reef;
using namespace reef::memcached;

namespace {

const net::ethernet_address own = net::ethernet_address::parse("02:00:00:00:00:01");
const net::ethernet_address peer = net::ethernet_address::parse("02:00:00:00:00:02");
constexpr std::uint16_t port = 11211;

void put16(std::string& s, std::size_t at, std::uint16_t v) {
    s[at] = char(v >> 8);
    s[at + 1] = char(v);
}
std::uint16_t get16(const std::string& s, std::size_t at) {
    return std::uint16_t((std::uint8_t(s[at]) << 8) | std::uint8_t(s[at + 1]));
}

void set_ip_checksum(std::string& f) {
    put16(f, 24, 0);
    std::uint16_t sum = net::internet_checksum(&f[14], 20);
    std::memcpy(&f[24], &sum, 2);
}

// Ethernet + IPv4 (10.0.0.2 -> 10.0.0.1) + UDP (40000 -> port) + memcached frame header + body.
std::string frame(std::string_view body, std::uint16_t req_id = 0x1234, std::uint16_t total = 1) {
    std::string f(14 + 20 + 8 + 8, '\0');
    std::memcpy(&f[0], own.mac.data(), 6);
    std::memcpy(&f[6], peer.mac.data(), 6);
    put16(f, 12, 0x0800);
    f[14] = 0x45;
    put16(f, 16, std::uint16_t(20 + 8 + 8 + body.size()));
    f[22] = 64;
    f[23] = 17;
    f[26] = 10, f[29] = 2;
    f[30] = 10, f[33] = 1;
    set_ip_checksum(f);
    put16(f, 34, 40000);
    put16(f, 36, port);
    put16(f, 38, std::uint16_t(8 + 8 + body.size()));
    put16(f, 42, req_id);
    put16(f, 46, total);
    f += body;
    return f;
}

struct fixture {
    cache_shard cache{4 << 20, 1 << 20};
    server_stats stats;
    fast_path_verdict run(std::string& f, unsigned shards = 1, std::size_t room = 2048) {
        std::size_t len = f.size();
        f.resize(std::max(room, f.size()));
        auto v = answer_in_place(f.data(), len, f.size(), own, port, std::nullopt, cache, 0, shards, &stats);
        f.resize(len);
        return v;
    }
};

void expect_valid_reply(const std::string& f, std::string_view payload) {
    ASSERT_GE(f.size(), 50u);
    EXPECT_EQ(std::memcmp(&f[0], peer.mac.data(), 6), 0);
    EXPECT_EQ(std::memcmp(&f[6], own.mac.data(), 6), 0);
    EXPECT_EQ(std::uint8_t(f[29]), 1) << "source is our address";
    EXPECT_EQ(std::uint8_t(f[33]), 2);
    EXPECT_EQ(get16(f, 34), port);
    EXPECT_EQ(get16(f, 36), 40000);
    EXPECT_EQ(get16(f, 16), f.size() - 14);
    EXPECT_TRUE(net::ipv4_header_checksum_ok(&f[14], 20));
    net::checksummer c;
    net::add_ipv4_pseudo_header(c, &f[26], &f[30], 17, f.size() - 34);
    c.add(&f[34], f.size() - 34);
    EXPECT_EQ(c.folded_sum(), 0xffff) << "UDP checksum";
    EXPECT_EQ(get16(f, 42), 0x1234) << "request id kept";
    EXPECT_EQ(get16(f, 44), 0);
    EXPECT_EQ(get16(f, 46), 1);
    EXPECT_EQ(f.substr(50), payload);
}

// `request` answered in place with `payload`.
void expect_answer(fixture& fx, const std::string& request, std::string_view payload) {
    auto f = frame(request);
    ASSERT_EQ(fx.run(f), fast_path_verdict::answered) << request;
    expect_valid_reply(f, payload);
}

}  // namespace

TEST(memcached_fast_path, set_then_get_answered_in_place) {
    fixture fx;
    expect_answer(fx, "set k 3 0 2\r\nhi\r\n", "STORED\r\n");
    expect_answer(fx, "get k\r\n", "VALUE k 3 2\r\nhi\r\nEND\r\n");
    expect_answer(fx, "get missing\r\n", "END\r\n");
    EXPECT_EQ(fx.stats.fastpath_gets, 2u);
    EXPECT_EQ(fx.stats.fastpath_sets, 1u);
}

TEST(memcached_fast_path, reused_results_never_leak_the_previous_answer) {
    // The fast path keeps its op result (and the value string in it) from one datagram to the
    // next: a shorter value, a miss and a set after a hit must each come out on their own.
    fixture fx;
    expect_answer(fx, "set long 1 0 12\r\nabcdefghijkl\r\n", "STORED\r\n");
    expect_answer(fx, "set short 2 0 3\r\nxyz\r\n", "STORED\r\n");
    expect_answer(fx, "get long\r\n", "VALUE long 1 12\r\nabcdefghijkl\r\nEND\r\n");
    expect_answer(fx, "get short\r\n", "VALUE short 2 3\r\nxyz\r\nEND\r\n");
    expect_answer(fx, "get nothing\r\n", "END\r\n");
    expect_answer(fx, "set short 3 0 1\r\nq\r\n", "STORED\r\n");
    expect_answer(fx, "get short\r\n", "VALUE short 3 1\r\nq\r\nEND\r\n");
}

TEST(memcached_fast_path, passes_what_it_cannot_serve) {
    fixture fx;
    // A key of the other shard (of two).
    std::string other;
    for (int i = 0;; ++i) {
        other = "k" + std::to_string(i);
        if (shard_of(key_hash(other), 2) == 1) {
            break;
        }
    }
    auto f = frame("get " + other + "\r\n");
    auto orig = f;
    EXPECT_EQ(fx.run(f, 2), fast_path_verdict::not_ours);
    EXPECT_EQ(f, orig) << "left unchanged";
    f = frame("get a b\r\n");
    EXPECT_EQ(fx.run(f), fast_path_verdict::not_ours) << "multi-key";
    f = frame("delete a\r\n");
    EXPECT_EQ(fx.run(f), fast_path_verdict::not_ours);
    f = frame("get a\r\n", 1, 2);
    EXPECT_EQ(fx.run(f), fast_path_verdict::not_ours) << "multi-datagram request";
    // A value whose reply does not fit one datagram goes to the stack.
    std::string big(3000, 'v');
    fx.cache.store(store_mode::set, "big", key_hash("big"), 0, 0, big, memcached::clock().now());
    f = frame("get big\r\n");
    EXPECT_EQ(fx.run(f, 1, 9000), fast_path_verdict::not_ours);
    f = frame("get k\r\n");
    f[15 + 8] = 6;  // TCP
    EXPECT_EQ(fx.run(f), fast_path_verdict::not_ours);
}

TEST(memcached_fast_path, malformed_frames_are_refused) {
    fixture fx;
    auto f = frame("get k\r\n");
    f[24] ^= 1;  // IPv4 header checksum
    EXPECT_EQ(fx.run(f), fast_path_verdict::malformed);
    f = frame("get k\r\n");
    put16(f, 16, 2000);  // total length beyond the frame
    EXPECT_EQ(fx.run(f), fast_path_verdict::malformed);
    f = frame("get k\r\n");
    put16(f, 38, 4);  // UDP length below its header
    set_ip_checksum(f);
    EXPECT_EQ(fx.run(f), fast_path_verdict::malformed);
    f = frame("get k\r\n").substr(0, 30);
    EXPECT_EQ(fx.run(f), fast_path_verdict::not_ours);
}
