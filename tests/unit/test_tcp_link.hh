// Test harness for native TCP: two `tcp` instances joined by an in-memory IPv4 "link" (no
// Ethernet, no IP) that can drop, duplicate, reorder, delay and corrupt segments, driven by the
// reactor's timers and a seeded random generator, so every run makes the same decisions for the
// same traffic. Also: segment crafting for malformed-input tests, and stream helpers.
#pragma once

#include "reactor_test.hh"
#include "runtime/coroutine.hh"
#include "runtime/future_util.hh"
#include "runtime/timer.hh"
#include "stack/native/tcp.hh"
#include "stack/native/tcp_header.hh"
#include "stack/native/tcp_options.hh"
#include "stack/net/checksum.hh"

#include <netinet/in.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace reef::net::testing {

using namespace std::chrono_literals;

inline constexpr tcp_ipv4 addr_a = 0x0a000001;  // 10.0.0.1
inline constexpr tcp_ipv4 addr_b = 0x0a000002;  // 10.0.0.2

inline socket_address sa(tcp_ipv4 a, std::uint16_t port) { return socket_address(inet_address::from_ipv4(a), port); }

/// A segment as it crossed the link, decoded (for assertions).
struct seen_segment {
    int from;  // 0 = a, 1 = b
    tcp_ipv4 src, dst;
    tcp_header h;
    tcp_options opts;
    std::size_t payload_len;
};

struct link_params {
    double loss = 0;       ///< probability a segment is dropped
    double duplicate = 0;  ///< probability it is delivered twice
    double reorder = 0;    ///< probability it is held back by reorder_delay
    double corrupt = 0;    ///< probability one byte is flipped (the checksum must catch it)
    std::chrono::microseconds delay{0};
    std::chrono::microseconds reorder_delay{2000};
    std::uint64_t seed = 1;
};

class tcp_test_link {
public:
    struct endpoint final : tcp_lower {
        tcp_test_link* link = nullptr;
        int side = 0;
        tcp_ipv4 addr = 0;
        std::uint16_t mtu = 1500;
        bool offload = false;   ///< claim TX checksum offload (the link fills checksums)
        std::uint32_t tso = 0;  ///< claim TSO up to this payload (the link segments)

        void send_segment(tcp_ipv4 src, tcp_ipv4 dst, packet seg) override {
            link->transmit(side, src, dst, std::move(seg));
        }
        std::uint16_t mss_for(tcp_ipv4) override { return std::uint16_t(mtu - 40); }
        bool tx_checksum_offload() const noexcept override { return offload; }
        std::uint32_t tso_max_payload() const noexcept override { return tso; }
        unsigned shard_of_flow(tcp_ipv4, std::uint16_t, tcp_ipv4, std::uint16_t) const noexcept override { return 0; }
        tcp_ipv4 source_address_for(tcp_ipv4) override { return addr; }
    };

    endpoint ea, eb;
    std::unique_ptr<tcp> a, b;
    link_params params;
    /// Return true to drop this segment (deterministic, targeted losses).
    std::function<bool(const seen_segment&)> drop_if;
    /// Every segment offered to the link (before loss), in order.
    std::vector<seen_segment> log;
    bool keep_log = true;
    std::uint64_t dropped = 0, duplicated = 0, reordered = 0, corrupted = 0, blackholed = 0;
    std::uint64_t tso_packets = 0, offloaded_checksums = 0;
    bool down = false;  ///< drop everything (a vanished peer)

    tcp_test_link(tcp_config ca = test_config(), tcp_config cb = test_config(), link_params p = {})
        : params(p), _rng(p.seed) {
        ea.link = eb.link = this;
        ea.side = 0;
        eb.side = 1;
        ea.addr = addr_a;
        eb.addr = addr_b;
        a = std::make_unique<tcp>(ea, ca);
        b = std::make_unique<tcp>(eb, cb);
        _timer.set_callback([this] { deliver_due(); });
    }
    ~tcp_test_link() {
        _timer.cancel();
        _q.clear();
        a.reset();
        b.reset();
    }

    /// Short timers so that loss tests run in seconds.
    static tcp_config test_config() {
        tcp_config c;
        c.rto_initial = 100ms;
        c.rto_min = 30ms;
        c.rto_max = 2000ms;
        c.delayed_ack = 10ms;
        c.time_wait = 200ms;
        c.fin_wait2_timeout = 500ms;
        c.secret = 42;
        return c;
    }

    void transmit(int from, tcp_ipv4 src, tcp_ipv4 dst, packet p) {
        auto& oi = p.offload();
        if (!oi.needs_csum && !oi.tso_seg_size) {
            transmit_one(from, src, dst, std::move(p));
            return;
        }
        // Do what a device does with offload requests: cut TSO bursts into segments (header
        // copied, sequence advanced, FIN/PSH on the last only) and fill the checksums.
        auto buf = p.to_buffer();
        std::size_t hl = std::size_t(std::uint8_t(buf.get()[12]) >> 4) * 4;
        std::size_t payload = buf.size() - hl;
        std::size_t seg = oi.tso_seg_size ? oi.tso_seg_size : std::max<std::size_t>(payload, 1);
        tso_packets += oi.tso_seg_size ? 1 : 0;
        tcp_header h = tcp_header::read(buf.get());
        std::size_t off = 0;
        do {
            std::size_t n = std::min(seg, payload - off);
            bool last = off + n >= payload;
            std::string b(hl + n, '\0');
            std::memcpy(b.data(), buf.get(), hl);
            std::memcpy(b.data() + hl, buf.get() + hl + off, n);
            tcp_header x = h;
            x.seq = h.seq + std::int64_t(off);
            if (!last) {
                x.flags &= std::uint8_t(~(tcp_flag::fin | tcp_flag::psh));
            }
            x.checksum = 0;
            x.write(b.data());
            checksummer c;
            std::uint32_t s = htonl(src), d = htonl(dst);
            add_ipv4_pseudo_header(c, &s, &d, IPPROTO_TCP, b.size());
            c.add(b.data(), b.size());
            std::uint16_t v = c.get();
            std::memcpy(b.data() + 16, &v, 2);
            ++offloaded_checksums;
            transmit_one(from, src, dst, packet(b));
            off += n;
        } while (off < payload);
    }

    void transmit_one(int from, tcp_ipv4 src, tcp_ipv4 dst, packet p) {
        seen_segment s = decode(from, src, dst, p);
        if (keep_log) {
            log.push_back(s);
        }
        if (from == 0 ? dst != addr_b : dst != addr_a) {
            ++blackholed;  // nobody there (SYN-ACKs to flood sources)
            return;
        }
        if (down || (drop_if && drop_if(s))) {
            ++dropped;
            return;
        }
        std::uniform_real_distribution<double> u(0, 1);
        if (params.loss > 0 && u(_rng) < params.loss) {
            ++dropped;
            return;
        }
        if (params.corrupt > 0 && u(_rng) < params.corrupt) {
            ++corrupted;
            auto buf = p.to_buffer();
            std::uniform_int_distribution<std::size_t> pos(0, buf.size() - 1);
            buf.get_write()[pos(_rng)] ^= 0x5a;
            p = packet(std::move(buf));
        }
        auto when = std::chrono::steady_clock::now() + params.delay;
        if (params.reorder > 0 && u(_rng) < params.reorder) {
            ++reordered;
            when += params.reorder_delay;
        }
        if (params.duplicate > 0 && u(_rng) < params.duplicate) {
            ++duplicated;
            enqueue(when + 100us, from, src, dst, p.share());
        }
        enqueue(when, from, src, dst, std::move(p));
    }

    /// Count segments in the log matching a predicate.
    std::size_t count(const std::function<bool(const seen_segment&)>& f) const {
        std::size_t n = 0;
        for (auto& s : log) {
            n += f(s);
        }
        return n;
    }

    /// The log as text, one segment a line (for failure messages).
    std::string dump() const {
        std::string out;
        for (auto& s : log) {
            out += std::string(s.from ? "b>a " : "a>b ");
            const char* names = "FSRPAUEC";
            for (int i = 0; i < 8; ++i) {
                if (s.h.flags & (1 << i)) {
                    out += names[i];
                }
            }
            out += " seq=" + std::to_string(s.h.seq.raw) + " ack=" + std::to_string(s.h.ack.raw) +
                   " win=" + std::to_string(s.h.window) + " len=" + std::to_string(s.payload_len);
            if (s.opts.nr_sack) {
                out += " sack=" + std::to_string(s.opts.nr_sack);
            }
            out += "\n";
        }
        return out;
    }

    static seen_segment decode(int from, tcp_ipv4 src, tcp_ipv4 dst, packet& p) {
        seen_segment s{from, src, dst, {}, {}, 0};
        const char* h = p.get_header(0, 20);
        if (!h) {
            return s;
        }
        s.h = tcp_header::read(h);
        std::size_t hl = std::size_t(s.h.data_offset) * 4;
        if (const char* full = p.get_header(0, hl)) {
            parse_tcp_options(full + 20, hl - 20, s.opts);
        }
        s.payload_len = p.len() >= hl ? p.len() - hl : 0;
        return s;
    }

    /// Segments still in flight on the link.
    std::size_t in_flight() const noexcept { return _q.size(); }

private:
    struct item {
        int from;
        tcp_ipv4 src, dst;
        packet p;
    };
    std::mt19937_64 _rng;
    std::multimap<std::pair<std::chrono::steady_clock::time_point, std::uint64_t>, item> _q;
    std::uint64_t _n = 0;
    timer<std::chrono::steady_clock> _timer;

    void enqueue(std::chrono::steady_clock::time_point when, int from, tcp_ipv4 src, tcp_ipv4 dst, packet p) {
        _q.emplace(std::make_pair(when, _n++), item{from, src, dst, std::move(p)});
        arm();
    }
    void arm() {
        if (!_q.empty()) {
            auto first = _q.begin()->first.first;
            if (!_timer.armed() || _timer.get_timeout() > first) {
                _timer.arm(first);
            }
        }
    }
    void deliver_due() {
        auto now = std::chrono::steady_clock::now();
        // Bounded batch per timer run so that the reactor runs tasks (readers) in between.
        for (int n = 0; n < 256 && !_q.empty() && _q.begin()->first.first <= now; ++n) {
            auto node = _q.extract(_q.begin());
            auto& it = node.mapped();
            tcp& to = it.from == 0 ? *b : *a;
            to.received(it.src, it.dst, std::move(it.p));
        }
        arm();
    }
};

/// What the client side (a) of a connection would put in its next segment: taken from the last
/// segment it sent. For segments injected into b as if a had sent them.
struct client_view {
    std::uint16_t sport;
    tcp_seq seq;  // the client's SND.NXT
    tcp_seq ack;  // the client's RCV.NXT
    std::uint32_t tsval;
};

inline client_view view_of(const tcp_test_link& link) {
    for (auto it = link.log.rbegin(); it != link.log.rend(); ++it) {
        if (it->from == 0) {
            auto len =
                std::int64_t(it->payload_len) + (it->h.has(tcp_flag::fin) ? 1 : 0) + (it->h.has(tcp_flag::syn) ? 1 : 0);
            return client_view{it->h.src_port, it->h.seq + len, it->h.ack, it->opts.tsval};
        }
    }
    return {};
}

inline tcp_header hdr(std::uint16_t sport, std::uint16_t dport, tcp_seq seq, tcp_seq ack, std::uint8_t flags,
                      std::uint16_t window = 1000) {
    tcp_header h;
    h.src_port = sport;
    h.dst_port = dport;
    h.seq = seq;
    h.ack = ack;
    h.flags = flags;
    h.window = window;
    return h;
}

inline tcp_options ts_opts(std::uint32_t tsval) {
    tcp_options o;
    o.has_timestamps = true;
    o.tsval = tsval;
    return o;
}

/// Segments the server (b) sent since log index `from`.
inline std::vector<seen_segment> replies_since(const tcp_test_link& link, std::size_t from) {
    std::vector<seen_segment> out;
    for (std::size_t i = from; i < link.log.size(); ++i) {
        if (link.log[i].from == 1) {
            out.push_back(link.log[i]);
        }
    }
    return out;
}

/// A segment built by hand (for malformed-input tests): header fields from `h`, options from
/// `o` (or raw option bytes), payload, checksum right unless `bad_checksum`.
inline packet craft(tcp_ipv4 src, tcp_ipv4 dst, tcp_header h, const tcp_options& o, std::string_view payload = {},
                    bool bad_checksum = false, std::string_view raw_options = {}) {
    std::size_t optlen = raw_options.empty() ? tcp_options_length(o) : raw_options.size();
    std::size_t hl = 20 + optlen;
    if (!h.data_offset || h.data_offset == 5) {
        h.data_offset = std::uint8_t(hl / 4);
    }
    std::string bytes(hl, '\0');
    h.checksum = 0;
    h.write(bytes.data());
    if (raw_options.empty()) {
        write_tcp_options(bytes.data() + 20, o);
    } else {
        std::memcpy(bytes.data() + 20, raw_options.data(), raw_options.size());
    }
    bytes.append(payload);
    checksummer c;
    std::uint32_t s = htonl(src), d = htonl(dst);
    add_ipv4_pseudo_header(c, &s, &d, IPPROTO_TCP, bytes.size());
    c.add(bytes.data(), bytes.size());
    std::uint16_t v = c.get();
    if (bad_checksum) {
        v ^= 0x1234;
    }
    std::memcpy(bytes.data() + 16, &v, 2);
    return packet(bytes);
}

/// Deterministic test data: byte i of stream `seed`.
inline char pattern_byte(std::uint64_t i, std::uint64_t seed) noexcept {
    std::uint64_t x = (i / 8) * 0x9e3779b97f4a7c15ULL + seed;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    return char(x >> (8 * (i % 8)));
}

/// Write `total` pattern bytes in chunks of `chunk`, then close the stream.
inline future<> write_pattern(output_stream<char>& out, std::uint64_t total, std::uint64_t seed,
                              std::size_t chunk = 65536) {
    std::uint64_t off = 0;
    while (off < total) {
        std::size_t n = std::size_t(std::min<std::uint64_t>(chunk, total - off));
        temporary_buffer<char> b(n);
        for (std::size_t i = 0; i < n; ++i) {
            b.get_write()[i] = pattern_byte(off + i, seed);
        }
        co_await out.write(std::move(b));
        off += n;
    }
    co_await out.flush();
    co_await out.close();
}

/// The same pattern, generated up front (so that a test's sending rate does not depend on how
/// fast the CPU makes bytes), in buffers of `chunk`.
inline std::vector<temporary_buffer<char>> pattern_buffers(std::uint64_t total, std::uint64_t seed,
                                                           std::size_t chunk = 65536) {
    std::vector<temporary_buffer<char>> out;
    for (std::uint64_t off = 0; off < total; off += chunk) {
        std::size_t n = std::size_t(std::min<std::uint64_t>(chunk, total - off));
        temporary_buffer<char> b(n);
        for (std::size_t i = 0; i < n; ++i) {
            b.get_write()[i] = pattern_byte(off + i, seed);
        }
        out.push_back(std::move(b));
    }
    return out;
}

/// Write pre-made buffers, then close the stream.
inline future<> write_buffers(output_stream<char>& out, std::vector<temporary_buffer<char>> bufs) {
    for (auto& b : bufs) {
        co_await out.write(std::move(b));
    }
    co_await out.flush();
    co_await out.close();
}

/// Read to end of stream, checking every byte against the pattern. Returns bytes read; counts
/// mismatches into `bad`.
inline future<std::uint64_t> read_pattern(input_stream<char>& in, std::uint64_t seed, std::uint64_t& bad) {
    std::uint64_t off = 0;
    for (;;) {
        auto b = co_await in.read();
        if (b.empty()) {
            break;
        }
        for (std::size_t i = 0; i < b.size(); ++i) {
            if (b.get()[i] != pattern_byte(off + i, seed)) {
                ++bad;
            }
        }
        off += b.size();
    }
    co_return off;
}

/// Read everything into a string.
inline future<std::string> read_all(input_stream<char>& in) {
    std::string s;
    for (;;) {
        auto b = co_await in.read();
        if (b.empty()) {
            break;
        }
        s.append(b.get(), b.size());
    }
    co_return s;
}

/// Poll `cond` every millisecond until true or `limit` passes. Returns cond().
inline future<bool> eventually(std::function<bool()> cond, std::chrono::milliseconds limit = 5000ms) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!cond() && std::chrono::steady_clock::now() < end) {
        co_await sleep(1ms);
    }
    co_return cond();
}

}  // namespace reef::net::testing
