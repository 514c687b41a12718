// answer_in_place (the UDP fast path's decision and rewrite) on hand-made frames: requests become
// replies with valid checksums, IP options kept; everything else is left untouched.
#include "apps/echo/udp_fast_path.hh"
#include "stack/net/checksum.hh"

#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <cstring>
#include <string>
#include <vector>

using namespace reef;
using namespace reef::echo;

namespace {

const net::ethernet_address own = net::ethernet_address::parse("02:00:00:00:00:01");
const net::ethernet_address peer = net::ethernet_address::parse("02:00:00:00:00:02");
constexpr std::uint16_t port = 7;

void put16(std::string& s, std::size_t at, std::uint16_t v) {
    s[at] = char(v >> 8);
    s[at + 1] = char(v & 0xff);
}

std::uint32_t ip(const char* s) {
    in_addr a{};
    inet_pton(AF_INET, s, &a);
    return a.s_addr;
}

// Ethernet + IPv4 (20-byte header) + UDP with valid checksums.
std::string request(std::string payload = "hello, fast path", std::uint16_t dport = port,
                    const char* dst = "198.18.0.1", const net::ethernet_address& dst_mac = own) {
    std::string f(14 + 20 + 8 + payload.size(), '\0');
    std::memcpy(&f[0], dst_mac.mac.data(), 6);
    std::memcpy(&f[6], peer.mac.data(), 6);
    put16(f, 12, 0x0800);
    f[14] = 0x45;
    f[14 + 8] = 64;
    f[14 + 9] = 17;
    put16(f, 14 + 2, std::uint16_t(20 + 8 + payload.size()));
    std::uint32_t src = ip("198.18.0.2"), d = ip(dst);
    std::memcpy(&f[14 + 12], &src, 4);
    std::memcpy(&f[14 + 16], &d, 4);
    std::uint16_t c = net::internet_checksum(&f[14], 20);
    std::memcpy(&f[14 + 10], &c, 2);
    put16(f, 34, 40000);
    put16(f, 36, dport);
    put16(f, 38, std::uint16_t(8 + payload.size()));
    std::memcpy(&f[42], payload.data(), payload.size());
    net::checksummer cs;
    net::add_ipv4_pseudo_header(cs, &f[14 + 12], &f[14 + 16], 17, 8 + payload.size());
    cs.add(&f[34], 8 + payload.size());
    std::uint16_t u = cs.get();
    std::memcpy(&f[40], &u, 2);
    return f;
}

bool udp_checksum_ok(const std::string& f) {
    std::size_t l4 = std::size_t((unsigned char)f[38] << 8 | (unsigned char)f[39]);
    net::checksummer cs;
    net::add_ipv4_pseudo_header(cs, &f[14 + 12], &f[14 + 16], 17, l4);
    cs.add(&f[34], l4);
    return cs.folded_sum() == 0xffff;
}

// answer_in_place on a copy of f (what the device hands the hook: one contiguous buffer).
fast_path_verdict answer(std::string& f, std::optional<std::uint32_t> address = std::nullopt) {
    return answer_in_place(f.data(), f.size(), own, port, address);
}

std::string check_reply(const std::string& req, const std::string& rep) {
    std::string want = req;
    std::swap_ranges(&want[0], &want[6], &want[6]);
    std::swap_ranges(&want[26], &want[30], &want[30]);
    std::swap_ranges(&want[34], &want[36], &want[36]);
    EXPECT_EQ(rep, want);
    EXPECT_TRUE(net::ipv4_header_checksum_ok(&rep[14], 20));
    EXPECT_TRUE(udp_checksum_ok(rep));
    return rep;
}

}  // namespace

TEST(udp_fast_path, request_becomes_reply_with_valid_checksums) {
    std::string req = request();
    ASSERT_TRUE(udp_checksum_ok(req));
    std::string p = req;
    ASSERT_EQ(answer(p), fast_path_verdict::answered);
    check_reply(req, p);
}

TEST(udp_fast_path, ip_options_are_kept) {
    std::string req = request();
    // IHL 6: four bytes of options (NOPs) after the fixed header; lengths and checksum fixed up.
    req.insert(34, "\x01\x01\x01\x01", 4);
    req[14] = 0x46;
    put16(req, 14 + 2, std::uint16_t(req.size() - 14));
    put16(req, 14 + 10, 0);
    std::uint16_t c = net::internet_checksum(&req[14], 24);
    std::memcpy(&req[14 + 10], &c, 2);
    std::string p = req;
    ASSERT_EQ(answer(p), fast_path_verdict::answered);
    EXPECT_TRUE(net::ipv4_header_checksum_ok(&p[14], 24));
    std::string want = req;
    std::swap_ranges(&want[0], &want[6], &want[6]);
    std::swap_ranges(&want[26], &want[30], &want[30]);
    std::swap_ranges(&want[38], &want[40], &want[40]);
    EXPECT_EQ(p, want);
}

TEST(udp_fast_path, ethernet_padding_is_kept) {
    std::string req = request("x");  // 43 bytes: padded to 60 on the wire
    std::string padded = req + std::string(60 - req.size(), '\0');
    std::string rep = padded;
    ASSERT_EQ(answer(rep), fast_path_verdict::answered);
    EXPECT_EQ(rep.size(), 60u);
    check_reply(req, rep.substr(0, req.size()));
}

TEST(udp_fast_path, address_filter) {
    std::string req = request();
    std::string p = req;
    EXPECT_EQ(answer(p, ip("198.18.0.9")), fast_path_verdict::not_ours);
    EXPECT_EQ(p, req);
    EXPECT_EQ(answer(p, ip("198.18.0.1")), fast_path_verdict::answered);
}

TEST(udp_fast_path, frames_not_for_us_are_untouched) {
    std::vector<std::string> frames;
    frames.push_back(request("a", port + 1));                  // another port
    frames.push_back(request("a", port, "198.18.0.1", peer));  // another MAC
    frames.push_back(request("a", port, "224.0.0.1"));         // multicast
    frames.push_back(request("a", port, "255.255.255.255"));   // broadcast
    std::string tcp = request();
    tcp[14 + 9] = 6;
    frames.push_back(tcp);  // not UDP
    std::string arp = request();
    put16(arp, 12, 0x0806);
    frames.push_back(arp);  // not IPv4
    std::string frag = request();
    put16(frag, 14 + 6, 0x2000);  // MF (checksum now wrong too, but fragments are looked at first)
    frames.push_back(frag);
    frames.push_back(request().substr(0, 41));  // too short for UDP
    for (auto& f : frames) {
        std::string p = f;
        EXPECT_EQ(answer(p), fast_path_verdict::not_ours);
        EXPECT_EQ(p, f);
    }
}

TEST(udp_fast_path, malformed_frames_are_untouched) {
    std::string good = request();
    std::vector<std::string> frames;
    auto with = [&](std::size_t at, std::uint16_t v) {
        std::string f = good;
        put16(f, at, v);
        return f;
    };
    std::string ihl3 = good;
    ihl3[14] = 0x43;
    frames.push_back(ihl3);
    std::string ihl15 = good;
    ihl15[14] = 0x4f;  // 60-byte header: beyond the datagram's total length
    frames.push_back(ihl15);
    std::string v6 = good;
    v6[14] = 0x65;
    frames.push_back(v6);
    frames.push_back(with(14 + 2, 1400));     // total length beyond the frame
    frames.push_back(with(14 + 2, 24));       // total length cuts the UDP header
    frames.push_back(with(38, 500));          // UDP length beyond the datagram
    frames.push_back(with(38, 4));            // UDP length below its header
    frames.push_back(with(14 + 10, 0xdead));  // bad IPv4 header checksum
    for (std::size_t i = 0; i < frames.size(); ++i) {
        std::string p = frames[i];
        EXPECT_EQ(answer(p), fast_path_verdict::malformed) << i;
        EXPECT_EQ(p, frames[i]) << i;
    }
}
