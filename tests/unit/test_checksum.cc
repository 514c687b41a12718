#include "stack/net/checksum.hh"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <random>
#include <string>

using namespace reef;
using namespace reef::net;

namespace {

// RFC 1071 done the slow, obvious way: big-endian words, end-around carry; returned in network
// order like checksummer::get() stored to memory.
std::uint16_t reference(const std::string& s) {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i < s.size(); i += 2) {
        std::uint32_t w = std::uint32_t(std::uint8_t(s[i])) << 8;
        if (i + 1 < s.size()) {
            w |= std::uint8_t(s[i + 1]);
        }
        sum += w;
        while (sum >> 16) {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    return htons(std::uint16_t(~sum));
}

std::string random_bytes(std::mt19937& rng, std::size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) {
        c = char(rng());
    }
    return s;
}

// Ethernet + IPv4 + UDP with `payload`, checksums zero.
std::string udp4_frame(const std::string& payload) {
    std::string f(14 + 20 + 8, '\0');
    f[12] = 0x08;
    f[13] = 0x00;
    char* ip = f.data() + 14;
    ip[0] = 0x45;
    std::uint16_t total = htons(std::uint16_t(20 + 8 + payload.size()));
    std::memcpy(ip + 2, &total, 2);
    ip[8] = 64;
    ip[9] = IPPROTO_UDP;
    std::uint32_t src = htonl(0xc6120001), dst = htonl(0xc6120002);
    std::memcpy(ip + 12, &src, 4);
    std::memcpy(ip + 16, &dst, 4);
    char* udp = ip + 20;
    std::uint16_t sp = htons(1234), dp = htons(5678), ul = htons(std::uint16_t(8 + payload.size()));
    std::memcpy(udp, &sp, 2);
    std::memcpy(udp + 2, &dp, 2);
    std::memcpy(udp + 4, &ul, 2);
    return f + payload;
}

bool l4_ok_v4(const std::string& f) {
    const char* ip = f.data() + 14;
    std::size_t ihl = std::size_t(ip[0] & 0xf) * 4;
    std::size_t total = ntohs(*reinterpret_cast<const std::uint16_t*>(ip + 2));
    checksummer c;
    add_ipv4_pseudo_header(c, ip + 12, ip + 16, std::uint8_t(ip[9]), total - ihl);
    c.add(ip + ihl, total - ihl);
    return c.folded_sum() == 0xffff;
}

}  // namespace

TEST(checksum, matches_rfc1071_reference_for_any_split) {
    std::mt19937 rng(7);
    for (int round = 0; round < 200; ++round) {
        auto s = random_bytes(rng, rng() % 300);
        EXPECT_EQ(internet_checksum(s.data(), s.size()), reference(s));
        // Pieces of random (odd and even) lengths give the same result.
        checksummer c;
        std::size_t off = 0;
        while (off < s.size()) {
            std::size_t n = std::min<std::size_t>(s.size() - off, rng() % 7);
            c.add(s.data() + off, n);
            off += n;
        }
        EXPECT_EQ(c.get(), reference(s));
    }
}

// Long runs of 0xff carry out of every 64-bit word added; any start alignment and length, up to
// jumbo segments, must still give the reference sum.
TEST(checksum, carries_at_every_word_and_alignment) {
    std::mt19937 rng(11);
    std::string buf(9100, '\xff');
    for (std::size_t len : {31u, 32u, 33u, 63u, 64u, 65u, 1448u, 1460u, 1461u, 9000u}) {
        for (std::size_t start = 0; start < 8; ++start) {
            std::string s = buf.substr(start, len);
            EXPECT_EQ(internet_checksum(s.data(), s.size()), reference(s)) << len << " at " << start;
            EXPECT_EQ(internet_checksum(buf.data() + start, len), reference(s)) << len << " at " << start;
            auto r = random_bytes(rng, len);
            EXPECT_EQ(internet_checksum(r.data(), r.size()), reference(r)) << len;
        }
    }
}

namespace {
std::uint16_t fold64(std::uint64_t s) {
    while (s >> 16) {
        s = (s & 0xffff) + (s >> 16);
    }
    return std::uint16_t(s);
}
}  // namespace

// The AVX2 loop (pieces of 128 bytes and more on CPUs that have it) against the portable one, at
// every length up to a few hundred bytes from every start alignment, and over 3 MiB of 0xff, where
// its 32-bit lanes are emptied every 1 MiB and would overflow if they were not.
TEST(checksum, avx2_loop_matches_the_portable_one) {
    if (!detail::checksum_have_avx2()) {
        GTEST_SKIP() << "this CPU has no AVX2: checksummer uses the portable loop only";
    }
    std::mt19937 rng(13);
    auto r = random_bytes(rng, 4096 + 64);
    std::string ones(4096 + 64, '\xff');
    for (const std::string* buf : {&r, &ones}) {
        const auto* b = reinterpret_cast<const unsigned char*>(buf->data());
        for (std::size_t start = 0; start < 32; ++start) {
            for (std::size_t len = 0; len <= 600; ++len) {
                ASSERT_EQ(fold64(detail::checksum_raw_sum_avx2(b + start, len)),
                          fold64(detail::checksum_raw_sum_scalar(b + start, len)))
                    << len << " bytes at " << start;
            }
            for (std::size_t len : {1448u, 1460u, 4096u}) {
                ASSERT_EQ(fold64(detail::checksum_raw_sum_avx2(b + start, len)),
                          fold64(detail::checksum_raw_sum_scalar(b + start, len)))
                    << len << " bytes at " << start;
            }
        }
    }
    std::string big(3 * 1024 * 1024 + 17, '\xff');
    EXPECT_EQ(internet_checksum(big.data(), big.size()), reference(big));
    const auto* b = reinterpret_cast<const unsigned char*>(big.data());
    EXPECT_EQ(fold64(detail::checksum_raw_sum_avx2(b, big.size())), fold64(detail::checksum_raw_sum_scalar(b, big.size())));
}

TEST(checksum, ipv4_header_known_value) {
    // The classic example header (checksum 0xb861).
    const unsigned char hdr[20] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                   0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
    std::uint16_t v = internet_checksum(hdr, sizeof(hdr));
    EXPECT_EQ(ntohs(v), 0xb861);
    unsigned char with[20];
    std::memcpy(with, hdr, 20);
    std::memcpy(with + 10, &v, 2);
    EXPECT_TRUE(ipv4_header_checksum_ok(with, 20));
    with[3] ^= 1;
    EXPECT_FALSE(ipv4_header_checksum_ok(with, 20));
}

TEST(checksum, fill_checksums_over_fragments) {
    std::mt19937 rng(11);
    for (std::size_t len : {0u, 1u, 17u, 100u, 1401u}) {
        auto frame = udp4_frame(random_bytes(rng, len));
        // Split the frame into uneven fragments (odd boundaries inside the UDP header too).
        std::vector<temporary_buffer<char>> parts;
        std::size_t off = 0;
        for (std::size_t cut : {5u, 23u, 37u, 41u, 300u}) {
            if (cut > off && cut < frame.size()) {
                parts.push_back(temporary_buffer<char>::copy_of(std::string_view(frame).substr(off, cut - off)));
                off = cut;
            }
        }
        parts.push_back(temporary_buffer<char>::copy_of(std::string_view(frame).substr(off)));
        packet p(std::move(parts));
        p.offload().needs_csum = true;
        p.offload().needs_ip_csum = true;
        ASSERT_TRUE(fill_checksums(p));
        EXPECT_FALSE(p.offload().needs_csum);
        EXPECT_FALSE(p.offload().needs_ip_csum);
        auto out = p.to_string();
        EXPECT_TRUE(ipv4_header_checksum_ok(out.data() + 14, 20));
        EXPECT_TRUE(l4_ok_v4(out)) << "payload " << len;
        EXPECT_NE(*reinterpret_cast<const std::uint16_t*>(out.data() + 14 + 20 + 6), 0);  // UDP: never 0
    }
}

TEST(checksum, fill_checksums_tcp_ipv6) {
    std::mt19937 rng(3);
    std::string payload = random_bytes(rng, 333);
    std::string f(14 + 40 + 20, '\0');
    f[12] = char(0x86);
    f[13] = char(0xdd);
    char* ip = f.data() + 14;
    ip[0] = 0x60;
    std::uint16_t plen = htons(std::uint16_t(20 + payload.size()));
    std::memcpy(ip + 4, &plen, 2);
    ip[6] = IPPROTO_TCP;
    ip[7] = 64;
    for (int i = 0; i < 32; ++i) {
        ip[8 + i] = char(i * 7);
    }
    ip[40 + 12] = 0x50;  // data offset 5
    f += payload;
    packet p(f);
    p.offload().needs_csum = true;
    ASSERT_TRUE(fill_checksums(p));
    auto out = p.to_string();
    checksummer c;
    add_ipv6_pseudo_header(c, out.data() + 14 + 8, out.data() + 14 + 24, IPPROTO_TCP, 20 + payload.size());
    c.add(out.data() + 14 + 40, 20 + payload.size());
    EXPECT_EQ(c.folded_sum(), 0xffff);
}

TEST(checksum, fill_checksums_rejects_garbage) {
    packet p(std::string_view("short"));
    p.offload().needs_csum = true;
    EXPECT_FALSE(fill_checksums(p));
    // An ARP frame: not IP.
    std::string arp(42, '\0');
    arp[12] = 0x08;
    arp[13] = 0x06;
    packet q(arp);
    q.offload().needs_ip_csum = true;
    EXPECT_FALSE(fill_checksums(q));
    // Nothing asked: nothing to do, whatever the frame.
    packet r(std::string_view("x"));
    EXPECT_TRUE(fill_checksums(r));
}
