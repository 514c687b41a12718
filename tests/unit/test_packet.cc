#include "stack/net/packet.hh"

#include "runtime/deleter.hh"
#include "runtime/temporary_buffer.hh"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <netinet/in.h>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace reef;
using namespace reef::net;

namespace {

// A deleter that counts its runs (each must happen exactly once).
deleter counting(int& runs) {
    return make_deleter([&runs] { ++runs; });
}

// A buffer over malloc'ed memory whose deleter counts its runs.
temporary_buffer<char> counted_buffer(std::string_view content, int& runs) {
    char* p = static_cast<char*>(std::malloc(content.size()));
    std::memcpy(p, content.data(), content.size());
    return temporary_buffer<char>(p, content.size(), make_deleter([p, &runs] {
                                      ++runs;
                                      std::free(p);
                                  }));
}

fragment frag_of(std::string& s) { return fragment{s.data(), s.size()}; }

// A packet of the given pieces, one fragment each, over memory of `storage` (which must outlive it).
packet multi(std::vector<std::string>& storage, int& runs) {
    std::vector<fragment> frags;
    for (auto& s : storage) {
        frags.push_back(frag_of(s));
    }
    return packet(frags.data(), frags.size(), counting(runs));
}

struct [[gnu::packed]] eth_hdr {
    std::uint8_t dst[6], src[6];
    std::uint16_t type;
};
struct [[gnu::packed]] ip_hdr {
    std::uint8_t b[20];
};
struct [[gnu::packed]] tcp_hdr {
    std::uint8_t b[20];
};

}  // namespace

TEST(packet, default_is_empty_without_impl) {
    packet p;
    EXPECT_FALSE(p);
    EXPECT_EQ(p.len(), 0u);
    EXPECT_EQ(p.nr_frags(), 0u);
    EXPECT_TRUE(p.fragments().empty());
    EXPECT_TRUE(p.is_linear());
    EXPECT_EQ(p.to_string(), "");
    EXPECT_EQ(p.get_header(0, 1), nullptr);
    EXPECT_FALSE(p.rss_hash());
    EXPECT_EQ(std::as_const(p).offload().protocol, 0);
    packet s = p.share();
    EXPECT_FALSE(s);
}

TEST(packet, reserve_constructor) {
    packet p(std::size_t(16));
    EXPECT_TRUE(p);
    EXPECT_EQ(p.len(), 0u);
    std::string data(16, 'x');
    for (int k = 0; k < 16; ++k) {
        p = packet(std::move(p), fragment{data.data() + k, 1}, deleter());
    }
    EXPECT_EQ(p.nr_frags(), 16u);
    EXPECT_EQ(p.to_string(), data);
}

TEST(packet, fragment_and_deleter_is_zero_copy) {
    int runs = 0;
    std::string data = "hello";
    {
        packet p(frag_of(data), counting(runs));
        ASSERT_EQ(p.nr_frags(), 1u);
        EXPECT_EQ(p.frag(0).base, data.data());
        EXPECT_EQ(p.len(), 5u);
        EXPECT_EQ(p.to_string(), "hello");
        packet moved(std::move(p));
        EXPECT_FALSE(p);  // NOLINT(bugprone-use-after-move)
        EXPECT_EQ(runs, 0);
    }
    EXPECT_EQ(runs, 1);
}

TEST(packet, empty_fragment_is_not_stored) {
    int runs = 0;
    {
        packet p(fragment{nullptr, 0}, counting(runs));
        EXPECT_TRUE(p);
        EXPECT_EQ(p.nr_frags(), 0u);
        std::string a = "ab", c = "c";
        fragment frags[] = {frag_of(a), {nullptr, 0}, frag_of(c), {nullptr, 0}};
        packet q(frags, 4, deleter());
        EXPECT_EQ(q.nr_frags(), 2u);
        EXPECT_EQ(q.to_string(), "abc");
        q = packet(std::move(q), fragment{nullptr, 0});
        q = packet(fragment{nullptr, 0}, std::move(q));
        q = packet(std::move(q), temporary_buffer<char>());
        EXPECT_EQ(q.nr_frags(), 2u);
    }
    EXPECT_EQ(runs, 1);
}

TEST(packet, fragment_array_is_zero_copy) {
    int runs = 0;
    std::vector<std::string> storage = {"one", "two", "three", "four", "five", "six"};
    {
        packet p = multi(storage, runs);
        ASSERT_EQ(p.nr_frags(), 6u);
        for (std::size_t k = 0; k < 6; ++k) {
            EXPECT_EQ(p.frag(k).base, storage[k].data());
            EXPECT_EQ(p.frag(k).size, storage[k].size());
        }
        EXPECT_EQ(p.len(), 22u);
        EXPECT_EQ(p.to_string(), "onetwothreefourfivesix");
        EXPECT_FALSE(p.is_linear());
    }
    EXPECT_EQ(runs, 1);
}

TEST(packet, copying_constructors) {
    std::string src = "copied bytes";
    packet p(src.data(), src.size());
    ASSERT_EQ(p.nr_frags(), 1u);
    EXPECT_NE(p.frag(0).base, src.data());
    src[0] = 'X';  // the packet does not see later changes of the source
    EXPECT_EQ(p.to_string(), "copied bytes");

    packet q(std::string_view("view"));
    EXPECT_EQ(q.to_string(), "view");
    EXPECT_EQ(q.len(), 4u);

    packet e(std::string_view(""));
    EXPECT_EQ(e.len(), 0u);
    EXPECT_EQ(e.nr_frags(), 0u);
}

TEST(packet, temporary_buffer_is_zero_copy) {
    int runs = 0;
    {
        auto buf = counted_buffer("buffer", runs);
        const char* base = buf.get();
        packet p(std::move(buf));
        ASSERT_EQ(p.nr_frags(), 1u);
        EXPECT_EQ(p.frag(0).base, base);
        EXPECT_EQ(p.to_string(), "buffer");
        EXPECT_EQ(runs, 0);
    }
    EXPECT_EQ(runs, 1);
}

TEST(packet, vector_of_buffers_is_zero_copy) {
    int runs[3] = {0, 0, 0};
    {
        std::vector<temporary_buffer<char>> bufs;
        bufs.push_back(counted_buffer("ab", runs[0]));
        bufs.push_back(temporary_buffer<char>());  // empty: skipped
        bufs.push_back(counted_buffer("cde", runs[1]));
        bufs.push_back(counted_buffer("f", runs[2]));
        const char* bases[] = {bufs[0].get(), bufs[2].get(), bufs[3].get()};
        packet p(std::move(bufs));
        ASSERT_EQ(p.nr_frags(), 3u);
        for (std::size_t k = 0; k < 3; ++k) {
            EXPECT_EQ(p.frag(k).base, bases[k]);
        }
        EXPECT_EQ(p.to_string(), "abcdef");
        packet s = p.share();
        p.reset();
        EXPECT_EQ(runs[0] + runs[1] + runs[2], 0);
        EXPECT_EQ(s.to_string(), "abcdef");
    }
    EXPECT_EQ(runs[0], 1);
    EXPECT_EQ(runs[1], 1);
    EXPECT_EQ(runs[2], 1);

    int one = 0;
    {
        std::vector<temporary_buffer<char>> bufs;
        bufs.push_back(counted_buffer("single", one));
        packet p(std::move(bufs));
        EXPECT_EQ(p.to_string(), "single");
    }
    EXPECT_EQ(one, 1);
    packet none(std::vector<temporary_buffer<char>>{});
    EXPECT_EQ(none.len(), 0u);
}

TEST(packet, from_static_data) {
    static const char table[] = "static table";
    packet p = packet::from_static_data(table, sizeof(table) - 1);
    ASSERT_EQ(p.nr_frags(), 1u);
    EXPECT_EQ(p.frag(0).base, table);
    EXPECT_EQ(p.to_string(), "static table");
    packet s = p.share(7, 5);
    EXPECT_EQ(s.to_string(), "table");
    EXPECT_FALSE(std::move(p).release());  // no owner at all
}

TEST(packet, append_constructors) {
    int runs_a = 0, runs_b = 0, runs_c = 0;
    std::string a = "head", b = "-zero-copy", c = "-copied";
    {
        packet p(frag_of(a), counting(runs_a));
        p = packet(std::move(p), frag_of(b), counting(runs_b));
        EXPECT_EQ(p.frag(1).base, b.data());
        p = packet(std::move(p), frag_of(c));  // a copy
        EXPECT_NE(p.frag(2).base, c.data());
        c[1] = 'X';
        auto buf = counted_buffer("-buffer", runs_c);
        const char* bbase = buf.get();
        p = packet(std::move(p), std::move(buf));
        EXPECT_EQ(p.frag(3).base, bbase);
        std::string pre = "pre:";
        p = packet(frag_of(pre), std::move(p));  // a copy in front
        EXPECT_NE(p.frag(0).base, pre.data());
        EXPECT_EQ(p.to_string(), "pre:head-zero-copy-copied-buffer");
        EXPECT_EQ(p.len(), 32u);
        EXPECT_EQ(runs_a + runs_b + runs_c, 0);
    }
    EXPECT_EQ(runs_a, 1);
    EXPECT_EQ(runs_b, 1);
    EXPECT_EQ(runs_c, 1);

    // Appending to an empty (no impl) packet.
    packet e;
    e = packet(std::move(e), fragment{a.data(), a.size()}, deleter());
    EXPECT_EQ(e.to_string(), "head");
}

TEST(packet, append_packets_chains_owners) {
    int runs[4] = {0, 0, 0, 0};
    std::vector<std::string> s = {"a", "bb", "ccc", "dddd"};
    {
        packet p(frag_of(s[0]), counting(runs[0]));
        for (int k = 1; k < 4; ++k) {
            p.append(packet(frag_of(s[k]), counting(runs[k])));
        }
        EXPECT_EQ(p.to_string(), "abbcccdddd");
        EXPECT_EQ(p.nr_frags(), 4u);
        for (int k = 0; k < 4; ++k) {
            EXPECT_EQ(p.frag(k).base, s[k].data());
        }
        packet sh = p.share(1, 5);
        p.reset();
        EXPECT_EQ(runs[0] + runs[1] + runs[2] + runs[3], 0);
        EXPECT_EQ(sh.to_string(), "bbccc");
    }
    for (int r : runs) {
        EXPECT_EQ(r, 1);
    }

    // Empty cases: into a packet without impl, and of a packet without impl.
    packet e;
    e.append(packet(std::string_view("x")));
    EXPECT_EQ(e.to_string(), "x");
    e.append(packet());
    EXPECT_EQ(e.to_string(), "x");

    // A packet appended to a share of itself (same owner in both): still runs once.
    int r = 0;
    std::string t = "self";
    {
        packet p(frag_of(t), counting(r));
        packet q = p.share();
        p.append(std::move(q));
        EXPECT_EQ(p.to_string(), "selfself");
    }
    EXPECT_EQ(r, 1);
}

TEST(packet, append_keeps_own_offload_info) {
    packet p(std::string_view("a"));
    p.offload().protocol = IPPROTO_TCP;
    p.set_rss_hash(7);
    packet q(std::string_view("b"));
    q.offload().protocol = IPPROTO_UDP;
    q.set_rss_hash(9);
    p.append(std::move(q));
    EXPECT_EQ(p.offload().protocol, IPPROTO_TCP);
    EXPECT_EQ(p.rss_hash(), 7u);
}

TEST(packet, many_appends) {
    int runs = 0;
    std::string data(1000, '\0');
    for (int k = 0; k < 1000; ++k) {
        data[k] = static_cast<char>('a' + k % 26);
    }
    {
        packet p;
        for (int k = 0; k < 1000; ++k) {
            p.append(packet(fragment{data.data() + k, 1}, counting(runs)));
        }
        EXPECT_EQ(p.len(), 1000u);
        EXPECT_EQ(p.nr_frags(), 1000u);
        EXPECT_EQ(p.to_string(), data);
        packet q;
        for (int k = 0; k < 1000; ++k) {
            q = packet(std::move(q), fragment{data.data() + k, 1}, counting(runs));
        }
        EXPECT_EQ(q.nr_frags(), 1000u);
        EXPECT_EQ(q.to_string(), data);
        p.append(std::move(q));
        EXPECT_EQ(p.nr_frags(), 2000u);
        EXPECT_EQ(p.to_string(), data + data);
        // Headers straddling fragments deep inside a long chain.
        char* h = p.get_header(1500, 10);
        ASSERT_NE(h, nullptr);
        EXPECT_EQ(std::string_view(h, 10), data.substr(500, 10));
        EXPECT_EQ(p.to_string(), data + data);
        EXPECT_EQ(runs, 0);
    }
    EXPECT_EQ(runs, 2000);
}

TEST(packet, deleter_runs_after_last_share) {
    int runs = 0;
    std::string data = "shared memory";
    packet p(frag_of(data), counting(runs));
    packet s1 = p.share();
    packet s2 = s1.share(7, 6);
    EXPECT_EQ(s1.frag(0).base, data.data());
    EXPECT_EQ(s2.frag(0).base, data.data() + 7);
    EXPECT_EQ(s2.to_string(), "memory");
    p.reset();
    EXPECT_EQ(runs, 0);
    s1 = packet();
    EXPECT_EQ(runs, 0);
    EXPECT_EQ(s2.to_string(), "memory");
    s2.reset();
    EXPECT_EQ(runs, 1);
}

TEST(packet, share_range_across_fragments) {
    int runs = 0;
    std::vector<std::string> storage = {"0123", "4567", "89ab", "cdef"};
    packet p = multi(storage, runs);
    for (std::size_t off = 0; off <= 16; ++off) {
        for (std::size_t len = 0; off + len <= 16; ++len) {
            packet s = p.share(off, len);
            EXPECT_EQ(s.to_string(), std::string("0123456789abcdef").substr(off, len)) << off << "," << len;
            EXPECT_EQ(s.len(), len);
            for (const fragment& f : s.fragments()) {
                EXPECT_GT(f.size, 0u);
            }
        }
    }
    packet s = p.share(2, 8);  // "23456789"
    ASSERT_EQ(s.nr_frags(), 3u);
    EXPECT_EQ(s.frag(0).base, storage[0].data() + 2);
    EXPECT_EQ(s.frag(1).base, storage[1].data());
    EXPECT_EQ(s.frag(2).base, storage[2].data());
    EXPECT_EQ(s.frag(2).size, 2u);
    // Writes through one share are seen by the other (same memory).
    s.frag(1).base[0] = 'X';
    EXPECT_EQ(p.to_string(), "0123X56789abcdef");
    p.reset();
    s.reset();
    EXPECT_EQ(runs, 1);
}

TEST(packet, prepend_headers_share_one_headroom_block) {
    int runs = 0;
    std::string payload = "payload";
    packet p(frag_of(payload), counting(runs));
    auto* tcp = p.prepend_header<tcp_hdr>();
    std::memset(tcp, 'T', sizeof(*tcp));
    auto* ip = p.prepend_header<ip_hdr>();
    std::memset(ip, 'I', sizeof(*ip));
    auto* eth = p.prepend_header<eth_hdr>();
    std::memset(eth, 'E', sizeof(*eth));
    // Consecutive prepends are adjacent: one block, headers contiguous in one fragment.
    EXPECT_EQ(reinterpret_cast<char*>(eth) + sizeof(eth_hdr), reinterpret_cast<char*>(ip));
    EXPECT_EQ(reinterpret_cast<char*>(ip) + sizeof(ip_hdr), reinterpret_cast<char*>(tcp));
    ASSERT_EQ(p.nr_frags(), 2u);
    EXPECT_EQ(p.frag(0).base, reinterpret_cast<char*>(eth));
    EXPECT_EQ(p.frag(0).size, 54u);
    EXPECT_EQ(p.frag(1).base, payload.data());
    EXPECT_EQ(p.len(), 54u + 7u);
    EXPECT_EQ(p.to_string(), std::string(14, 'E') + std::string(20, 'I') + std::string(20, 'T') + "payload");
    EXPECT_EQ(p.get_header<eth_hdr>(), eth);
    EXPECT_EQ(p.get_header<ip_hdr>(14), ip);
    // Headroom is only default_headroom bytes: a prepend that does not fit takes a new block.
    char* big = p.prepend_uninitialized_header(packet::default_headroom);
    std::memset(big, 'B', packet::default_headroom);
    EXPECT_EQ(p.nr_frags(), 3u);
    EXPECT_EQ(p.to_string().substr(packet::default_headroom),
              std::string(14, 'E') + std::string(20, 'I') + std::string(20, 'T') + "payload");
    // A header larger than the default headroom works too.
    char* huge = p.prepend_uninitialized_header(1000);
    std::memset(huge, 'H', 1000);
    EXPECT_EQ(p.len(), 1000 + packet::default_headroom + 61);
    EXPECT_EQ(p.to_string().substr(0, 1001), std::string(1000, 'H') + "B");
    p.reset();
    EXPECT_EQ(runs, 1);
}

TEST(packet, copied_packet_has_headroom_and_stays_linear) {
    packet p(std::string_view("data"));
    char* before = p.frag(0).base;
    auto* h = p.prepend_uninitialized_header(8);
    std::memcpy(h, "header::", 8);
    EXPECT_EQ(h + 8, before);
    EXPECT_TRUE(p.is_linear());
    EXPECT_EQ(p.to_string(), "header::data");
    packet q(fragment{before, 0}, std::move(p));  // empty prepend: nothing changes
    std::string pre = "x";
    q = packet(frag_of(pre), std::move(q));
    EXPECT_TRUE(q.is_linear());
    EXPECT_EQ(q.to_string(), "xheader::data");
}

TEST(packet, prepend_never_writes_bytes_a_share_sees) {
    std::string payload = "payload";
    packet p(frag_of(payload), deleter());
    std::memcpy(p.prepend_uninitialized_header(4), "AAAA", 4);
    packet q = p.share();
    // The share has no headroom of its own: its prepend takes another block.
    char* qh = q.prepend_uninitialized_header(2);
    std::memcpy(qh, "qq", 2);
    EXPECT_NE(qh + 2, p.frag(0).base);
    // The original still extends its headroom in front of what the share sees.
    char* ph = p.prepend_uninitialized_header(2);
    std::memcpy(ph, "pp", 2);
    EXPECT_EQ(ph + 2, q.frag(1).base);
    EXPECT_EQ(p.to_string(), "ppAAAApayload");
    EXPECT_EQ(q.to_string(), "qqAAAApayload");
    // After trim_front the bytes in front of the first fragment are visible to q: not reused.
    p.trim_front(4);  // "AApayload"
    char* ph2 = p.prepend_uninitialized_header(2);
    std::memcpy(ph2, "zz", 2);
    EXPECT_EQ(p.to_string(), "zzAApayload");
    EXPECT_EQ(q.to_string(), "qqAAAApayload");
}

TEST(packet, get_header_in_place_and_across_fragments) {
    int runs = 0;
    std::vector<std::string> storage = {"0123", "4567", "89ab", "cdef"};
    packet p = multi(storage, runs);
    // Within one fragment: a pointer into the original memory.
    EXPECT_EQ(p.get_header(5, 3), storage[1].data() + 1);
    EXPECT_EQ(p.get_header(0, 4), storage[0].data());
    EXPECT_EQ(p.nr_frags(), 4u);
    // Past the end.
    EXPECT_EQ(p.get_header(14, 3), nullptr);
    EXPECT_EQ(p.get_header(16, 0), nullptr);
    EXPECT_EQ(p.get_header(100, 1), nullptr);
    EXPECT_EQ(p.get_header(static_cast<std::size_t>(-1), 2), nullptr);
    EXPECT_EQ(p.get_header(2, static_cast<std::size_t>(-1)), nullptr);
    EXPECT_NE(p.get_header(15, 0), nullptr);
    EXPECT_NE(p.get_header(14, 2), nullptr);
    // Across fragments 1..2, leaving a prefix of 1 and a suffix of 2.
    char* h = p.get_header(6, 4);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(std::string_view(h, 4), "6789");
    EXPECT_EQ(p.to_string(), "0123456789abcdef");
    EXPECT_EQ(p.len(), 16u);
    ASSERT_EQ(p.nr_frags(), 5u);  // "0123" "45" "6789" "ab" "cdef"
    EXPECT_EQ(p.frag(1).base, storage[1].data());
    EXPECT_EQ(p.frag(1).size, 2u);
    EXPECT_EQ(p.frag(2).base, h);
    EXPECT_EQ(p.frag(3).base, storage[2].data() + 2);
    EXPECT_EQ(p.frag(4).base, storage[3].data());
    // Asking again finds the linearized bytes in place.
    EXPECT_EQ(p.get_header(6, 4), h);
    // The whole packet from the start.
    char* all = p.get_header(0, 16);
    ASSERT_NE(all, nullptr);
    EXPECT_EQ(std::string_view(all, 16), "0123456789abcdef");
    EXPECT_EQ(p.nr_frags(), 1u);
    // Fragment boundaries exactly.
    packet q = multi(storage, runs);
    char* b = q.get_header(4, 8);
    EXPECT_EQ(std::string_view(b, 8), "456789ab");
    EXPECT_EQ(q.nr_frags(), 3u);
    EXPECT_EQ(q.to_string(), "0123456789abcdef");
    p.reset();
    q.reset();
    EXPECT_EQ(runs, 2);
}

TEST(packet, get_header_does_not_disturb_shares) {
    std::vector<std::string> storage = {"ab", "cd"};
    int runs = 0;
    packet p = multi(storage, runs);
    packet s = p.share();
    char* h = p.get_header(1, 2);
    h[0] = 'X';  // written into p's private copy
    EXPECT_EQ(p.to_string(), "aXcd");
    EXPECT_EQ(s.to_string(), "abcd");
}

TEST(packet, trim_front_and_back_across_fragments) {
    int runs = 0;
    std::vector<std::string> storage = {"0123", "4567", "89ab", "cdef"};
    for (std::size_t front = 0; front <= 16; ++front) {
        for (std::size_t back = 0; front + back <= 16; ++back) {
            packet p = multi(storage, runs);
            p.trim_front(front);
            p.trim_back(back);
            EXPECT_EQ(p.len(), 16 - front - back);
            EXPECT_EQ(p.to_string(), std::string("0123456789abcdef").substr(front, 16 - front - back));
            for (const fragment& f : p.fragments()) {
                EXPECT_GT(f.size, 0u);
            }
        }
    }
    packet p = multi(storage, runs);
    p.trim_front(5);
    ASSERT_EQ(p.nr_frags(), 3u);
    EXPECT_EQ(p.frag(0).base, storage[1].data() + 1);
    p.trim_back(6);
    ASSERT_EQ(p.nr_frags(), 2u);
    EXPECT_EQ(p.to_string(), "56789");
    p.trim_front(5);
    EXPECT_EQ(p.nr_frags(), 0u);
    EXPECT_TRUE(p);
    p.reset();
    EXPECT_EQ(runs, 1 + 153);  // 153 (front, back) pairs above
}

TEST(packet, linearize) {
    int runs = 0;
    std::vector<std::string> storage = {"lin", "ear", "ize"};
    packet p = multi(storage, runs);
    p.linearize();
    EXPECT_TRUE(p.is_linear());
    EXPECT_EQ(p.nr_frags(), 1u);
    EXPECT_EQ(p.to_string(), "linearize");
    EXPECT_EQ(runs, 1);  // the old memory is no longer needed
    // A linear packet is left alone (no copy).
    std::string one = "one";
    packet q(frag_of(one), counting(runs));
    q.linearize();
    EXPECT_EQ(q.frag(0).base, one.data());
    // Shared memory stays alive for the share.
    packet r = multi(storage, runs);
    packet s = r.share();
    r.linearize();
    EXPECT_EQ(runs, 1);
    EXPECT_EQ(r.to_string(), "linearize");
    EXPECT_EQ(s.frag(0).base, storage[0].data());
    s.reset();
    EXPECT_EQ(runs, 2);
    // Prepending after linearize still works.
    std::memcpy(r.prepend_uninitialized_header(1), ">", 1);
    EXPECT_EQ(r.to_string(), ">linearize");
}

TEST(packet, to_buffer_copies) {
    std::vector<std::string> storage = {"to", "_", "buffer"};
    int runs = 0;
    packet p = multi(storage, runs);
    auto b = p.to_buffer();
    EXPECT_EQ(b.view(), "to_buffer");
    EXPECT_NE(b.get(), storage[0].data());
    EXPECT_TRUE(packet().to_buffer().empty());
}

TEST(packet, release_into_buffers_shares_memory) {
    int runs = 0;
    std::vector<std::string> storage = {"ab", "cd", "ef"};
    {
        packet p = multi(storage, runs);
        auto bufs = std::move(p).release_into_buffers();
        EXPECT_FALSE(p);  // NOLINT(bugprone-use-after-move)
        ASSERT_EQ(bufs.size(), 3u);
        for (std::size_t k = 0; k < 3; ++k) {
            EXPECT_EQ(bufs[k].get(), storage[k].data());
            EXPECT_EQ(bufs[k].view(), storage[k]);
        }
        bufs.erase(bufs.begin(), bufs.begin() + 2);
        EXPECT_EQ(runs, 0);
        EXPECT_EQ(bufs[0].view(), "ef");
    }
    EXPECT_EQ(runs, 1);
    EXPECT_TRUE(packet().release_into_buffers().empty());
}

TEST(packet, release_takes_the_owner) {
    int runs = 0;
    std::string data = "owned";
    packet p(frag_of(data), counting(runs));
    deleter d = std::move(p).release();
    EXPECT_FALSE(p);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(p.len(), 0u);
    EXPECT_EQ(runs, 0);
    d.reset();
    EXPECT_EQ(runs, 1);
}

TEST(packet, offload_info_and_rss_hash_survive_moves_and_shares) {
    packet p(std::string_view("0123456789"));
    offload_info oi;
    oi.protocol = IPPROTO_UDP;
    oi.needs_csum = true;
    oi.tso_seg_size = 1448;
    oi.vlan_tci = 42;
    p.set_offload_info(oi);
    p.set_rss_hash(0xdeadbeef);
    packet m(std::move(p));
    EXPECT_EQ(m.offload().protocol, IPPROTO_UDP);
    EXPECT_TRUE(m.offload().needs_csum);
    EXPECT_EQ(m.offload().tso_seg_size, 1448);
    EXPECT_EQ(m.offload().vlan_tci, 42);
    EXPECT_EQ(m.rss_hash(), 0xdeadbeefu);
    packet s = m.share();
    EXPECT_EQ(s.offload().protocol, IPPROTO_UDP);
    EXPECT_EQ(s.rss_hash(), 0xdeadbeefu);
    packet r = m.share(2, 3);
    EXPECT_EQ(r.offload().vlan_tci, 42);
    EXPECT_EQ(r.rss_hash(), 0xdeadbeefu);
    // Kept through the appending constructors and header operations too.
    m = packet(std::move(m), fragment{const_cast<char*>("x"), 1});
    m.prepend_uninitialized_header(4);
    m.linearize();
    EXPECT_EQ(m.offload().tso_seg_size, 1448);
    EXPECT_EQ(m.rss_hash(), 0xdeadbeefu);
    // Changing a share's info does not change the original's.
    s.offload().protocol = IPPROTO_TCP;
    EXPECT_EQ(m.offload().protocol, IPPROTO_UDP);
    // Setting them on an empty packet gives it an impl.
    packet e;
    e.set_rss_hash(1);
    EXPECT_TRUE(e);
    EXPECT_EQ(e.rss_hash(), 1u);
}

TEST(packet, mutable_fragments_view) {
    std::string a = "aaaa", b = "bbbb";
    packet p(frag_of(a), deleter());
    for (fragment& f : p.fragments()) {
        f.base = b.data();  // re-point to the same size of other memory
    }
    EXPECT_EQ(p.to_string(), "bbbb");
}

TEST(packet, stream_output) {
    std::vector<std::string> storage = {"ab", "cde"};
    int runs = 0;
    std::ostringstream os;
    os << multi(storage, runs) << " " << packet();
    EXPECT_EQ(os.str(), "packet(len=5, frags=2) packet(len=0, frags=0)");
}

TEST(packet, move_assignment_releases_old) {
    int r1 = 0, r2 = 0;
    std::string a = "a", b = "b";
    packet p(frag_of(a), counting(r1));
    packet q(frag_of(b), counting(r2));
    p = std::move(q);
    EXPECT_EQ(r1, 1);
    EXPECT_EQ(r2, 0);
    EXPECT_EQ(p.to_string(), "b");
    auto& self = p;
    p = std::move(self);
    EXPECT_EQ(p.to_string(), "b");
    p.reset();
    EXPECT_EQ(r2, 1);
}
