// Helpers for the native stack's tests (test_native_*.cc): frames built by hand with correct
// checksums (for a test playing the peer), their parsing, a peer that records what a device
// receives, and the usual start/stop of a virtual wire with native stacks.
#pragma once

#include "reactor_test.hh"
#include "runtime/coroutine.hh"
#include "runtime/future_util.hh"
#include "stack/native/native_stack.hh"
#include "stack/net/checksum.hh"
#include "stack/testing/virtual_wire.hh"
#include "sync_test_util.hh"

#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <string>

namespace reef::testing::native_test {

using net::ethernet_address;
using net::native::ipv4_addr;
using namespace std::chrono_literals;

inline ipv4_addr ip(const char* s) { return ipv4_addr::parse(s); }
inline net::socket_address sa(const char* addr, std::uint16_t port) {
    return net::socket_address(net::inet_address::parse(addr), port);
}

inline void put16(std::string& s, std::uint16_t v) {
    s.push_back(char(v >> 8));
    s.push_back(char(v));
}
inline void put32(std::string& s, std::uint32_t v) {
    put16(s, std::uint16_t(v >> 16));
    put16(s, std::uint16_t(v));
}
inline std::uint16_t get16(const std::string& s, std::size_t at) {
    return std::uint16_t((std::uint8_t(s[at]) << 8) | std::uint8_t(s[at + 1]));
}
inline std::uint32_t get32(const std::string& s, std::size_t at) {
    return (std::uint32_t(get16(s, at)) << 16) | get16(s, at + 2);
}
inline void set_csum(std::string& s, std::size_t at, std::uint16_t c) { std::memcpy(&s[at], &c, 2); }

inline std::string eth_frame(const ethernet_address& dst, const ethernet_address& src, std::uint16_t type,
                             const std::string& payload) {
    std::string s(reinterpret_cast<const char*>(dst.mac.data()), 6);
    s.append(reinterpret_cast<const char*>(src.mac.data()), 6);
    put16(s, type);
    return s + payload;
}

inline std::string arp_payload(std::uint16_t op, const ethernet_address& sha, ipv4_addr spa,
                               const ethernet_address& tha, ipv4_addr tpa) {
    std::string s;
    put16(s, 1);
    put16(s, 0x0800);
    s.push_back(6);
    s.push_back(4);
    put16(s, op);
    s.append(reinterpret_cast<const char*>(sha.mac.data()), 6);
    put32(s, spa.ip);
    s.append(reinterpret_cast<const char*>(tha.mac.data()), 6);
    put32(s, tpa.ip);
    return s;
}

struct ip_spec {
    ipv4_addr src, dst;
    std::uint8_t proto = 17;
    std::uint16_t id = 1;
    std::uint16_t frag = 0;  // flags + offset field
    std::uint8_t ttl = 64;
    std::string options;  // appended to the header (multiple of 4)
};

/// An IPv4 packet with a correct header checksum.
inline std::string ipv4_packet(const ip_spec& s, const std::string& payload) {
    std::string h;
    h.push_back(char(0x40 | ((20 + s.options.size()) / 4)));
    h.push_back(0);
    put16(h, std::uint16_t(20 + s.options.size() + payload.size()));
    put16(h, s.id);
    put16(h, s.frag);
    h.push_back(char(s.ttl));
    h.push_back(char(s.proto));
    put16(h, 0);
    put32(h, s.src.ip);
    put32(h, s.dst.ip);
    h += s.options;
    set_csum(h, 10, net::internet_checksum(h.data(), h.size()));
    return h + payload;
}

/// A UDP header + payload with a correct checksum (or none: zero).
inline std::string udp_segment(ipv4_addr src, ipv4_addr dst, std::uint16_t sport, std::uint16_t dport,
                               const std::string& payload, bool checksum = true) {
    std::string u;
    put16(u, sport);
    put16(u, dport);
    put16(u, std::uint16_t(8 + payload.size()));
    put16(u, 0);
    u += payload;
    if (checksum) {
        net::checksummer c;
        auto s = src.bytes(), d = dst.bytes();
        net::add_ipv4_pseudo_header(c, s.data(), d.data(), 17, u.size());
        c.add(u.data(), u.size());
        auto v = c.get();
        set_csum(u, 6, v == 0 ? 0xffff : v);
    }
    return u;
}

/// An ICMP message with a correct checksum.
inline std::string icmp_message(std::uint8_t type, std::uint8_t code, std::uint32_t rest, const std::string& body) {
    std::string m;
    m.push_back(char(type));
    m.push_back(char(code));
    put16(m, 0);
    put32(m, rest);
    m += body;
    set_csum(m, 2, net::internet_checksum(m.data(), m.size()));
    return m;
}

/// What a captured frame holds (IPv4 or ARP over Ethernet, no VLAN).
struct parsed {
    ethernet_address dst, src;
    std::uint16_t type = 0;
    // ARP
    std::uint16_t arp_op = 0;
    ethernet_address sha;
    ipv4_addr spa, tpa;
    // IPv4
    ipv4_addr ip_src, ip_dst;
    std::uint8_t proto = 0, ttl = 0;
    std::uint16_t id = 0, frag = 0;
    bool ip_csum_ok = false;
    std::string l4;  // IP payload
    // UDP
    std::uint16_t sport = 0, dport = 0;
    bool udp_csum_ok = false;
    std::string udp_payload;
};

inline parsed parse(const std::string& f) {
    parsed p;
    if (f.size() < 14) {
        return p;
    }
    std::memcpy(p.dst.mac.data(), f.data(), 6);
    std::memcpy(p.src.mac.data(), f.data() + 6, 6);
    p.type = get16(f, 12);
    if (p.type == 0x0806 && f.size() >= 42) {
        p.arp_op = get16(f, 20);
        std::memcpy(p.sha.mac.data(), f.data() + 22, 6);
        p.spa = ipv4_addr(get32(f, 28));
        p.tpa = ipv4_addr(get32(f, 38));
    } else if (p.type == 0x0800 && f.size() >= 34) {
        std::size_t ihl = (std::uint8_t(f[14]) & 0xf) * 4;
        std::size_t total = get16(f, 16);
        p.ip_src = ipv4_addr(get32(f, 26));
        p.ip_dst = ipv4_addr(get32(f, 30));
        p.proto = std::uint8_t(f[23]);
        p.ttl = std::uint8_t(f[22]);
        p.id = get16(f, 18);
        p.frag = get16(f, 20);
        p.ip_csum_ok = net::ipv4_header_checksum_ok(f.data() + 14, ihl);
        p.l4 = f.substr(14 + ihl, total - ihl);
        if (p.proto == 17 && p.l4.size() >= 8 && (p.frag & 0x3fff) == 0) {
            p.sport = get16(p.l4, 0);
            p.dport = get16(p.l4, 2);
            p.udp_payload = p.l4.substr(8);
            net::checksummer c;
            auto s = p.ip_src.bytes(), d = p.ip_dst.bytes();
            net::add_ipv4_pseudo_header(c, s.data(), d.data(), 17, p.l4.size());
            c.add(p.l4.data(), p.l4.size());
            p.udp_csum_ok = c.folded_sum() == 0xffff;
        }
    }
    return p;
}

/// The test playing a host on the other end of the wire: records every frame its device
/// receives (on shard 0), can answer ARP requests for its address by itself, and sends frames.
struct wire_peer {
    net::device& dev;
    ethernet_address mac;
    ipv4_addr addr;
    bool answer_arp = true;
    std::deque<std::string> frames;

    wire_peer(net::device& d, ipv4_addr a) : dev(d), mac(d.hw_address()), addr(a) {
        dev.set_receive_handler([this](net::packet p) { on_frame(p.to_string()); });
    }
    ~wire_peer() { dev.set_receive_handler({}); }

    void on_frame(std::string f) {
        auto p = parse(f);
        if (answer_arp && p.type == 0x0806 && p.arp_op == 1 && p.tpa == addr) {
            send(eth_frame(p.src, mac, 0x0806, arp_payload(2, mac, addr, p.sha, p.spa)));
        }
        frames.push_back(std::move(f));
    }
    void send(const std::string& f) { dev.send(net::packet(f.data(), f.size())); }
    /// An IPv4 frame to the stack's MAC.
    void send_ip(const ethernet_address& to, const ip_spec& s, const std::string& payload) {
        send(eth_frame(to, mac, 0x0800, ipv4_packet(s, payload)));
    }

    /// The first recorded frame matching `pred` (removed from the record), waiting up to `timeout`.
    future<std::optional<parsed>> next(std::function<bool(const parsed&)> pred,
                                       std::chrono::milliseconds timeout = 5000ms) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            for (auto it = frames.begin(); it != frames.end(); ++it) {
                auto p = parse(*it);
                if (pred(p)) {
                    frames.erase(it);
                    co_return p;
                }
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                co_return std::nullopt;
            }
            co_await sleep(200us);
        }
    }
    /// How many recorded frames match (without removing them).
    std::size_t count(std::function<bool(const parsed&)> pred) const {
        std::size_t n = 0;
        for (auto& f : frames) {
            n += pred(parse(f));
        }
        return n;
    }
};

inline bool is_arp_request_for(const parsed& p, ipv4_addr target) {
    return p.type == 0x0806 && p.arp_op == 1 && p.tpa == target;
}
inline bool is_udp(const parsed& p) { return p.type == 0x0800 && p.proto == 17; }
inline bool is_icmp(const parsed& p, std::uint8_t type) {
    return p.type == 0x0800 && p.proto == 1 && !p.l4.empty() && std::uint8_t(p.l4[0]) == type;
}

/// Let the reactor run for `d` (frames in flight arrive, timers fire).
inline future<> run_for(std::chrono::milliseconds d) { return sleep(d); }

/// Wait until pred() holds (polling), up to `timeout`; returns whether it did.
inline future<bool> eventually(std::function<bool()> pred, std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            co_return false;
        }
        co_await sleep(200us);
    }
    co_return true;
}

/// Options of a stack at `addr`/24 with gateway .254 and short timers for tests.
inline net::native_options stack_options(const char* addr) {
    net::native_options o;
    o.host_ipv4_addr = addr;
    o.netmask_ipv4_addr = "255.255.255.0";
    o.gw_ipv4_addr = "10.0.0.254";
    o.arp_retry_interval = 50ms;
    o.arp_retries = 3;
    return o;
}

}  // namespace reef::testing::native_test

namespace reef::testing::native_test {

/// A native stack (10.0.0.1 by default) on device A of a virtual wire, and the test playing
/// 10.0.0.2 on device B. stop() before the end of the test.
struct rig {
    net::virtual_wire w;
    std::unique_ptr<wire_peer> peer;
    std::unique_ptr<net::native_stack> stack;

    ethernet_address stack_mac() const { return w.a->hw_address(); }
    net::native::interface& ifc() { return stack->iface(); }
    const net::native::native_stats& stats() { return stack->native_statistics(); }

    future<> stop() {
        stack.reset();
        peer.reset();
        co_await w.a->stop();
        co_await w.b->stop();
    }
};

inline future<std::unique_ptr<rig>> make_rig(net::native_options o = stack_options("10.0.0.1"),
                                             net::virtual_wire_config cfg = {}) {
    auto r = std::make_unique<rig>();
    r->w = net::make_virtual_wire(cfg);
    r->peer = std::make_unique<wire_peer>(*r->w.b, ip("10.0.0.2"));
    co_await r->w.a->start();
    co_await r->w.b->start();
    r->stack = co_await net::make_native_stack(*r->w.a, o);
    co_return r;
}

}  // namespace reef::testing::native_test
