#include "apps/memcached/udp_fast_path.hh"

#include "dataplane/app.hh"
#include "stack/net/checksum.hh"
#include "stack/net/ethernet.hh"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace reef::memcached {

namespace {

constexpr std::size_t eth_len = net::eth::header_len;
constexpr std::size_t ipv4_min_len = 20;
constexpr std::size_t udp_len = 8;
constexpr std::size_t mc_header_len = 8;
constexpr std::size_t max_reply_payload = 1400;  // memcached's UDP datagram limit, header included

using net::eth::load_be16;

void store_be16(char* p, std::uint16_t v) noexcept {
    p[0] = char(v >> 8);
    p[1] = char(v & 0xff);
}

}  // namespace

fast_path_verdict answer_in_place(char* h, std::size_t& len, std::size_t room, const net::ethernet_address& own_mac,
                                  std::uint16_t port, std::optional<std::uint32_t> address, cache_shard& cache,
                                  unsigned shard, unsigned shards, server_stats* stats) noexcept {
    if (len < eth_len + ipv4_min_len + udp_len) {
        return fast_path_verdict::not_ours;
    }
    if (load_be16(h + 12) != net::eth::type_ipv4 || std::memcmp(h, own_mac.mac.data(), 6) != 0) {
        return fast_path_verdict::not_ours;
    }
    char* ip = h + eth_len;
    if ((std::uint8_t(ip[0]) >> 4) != 4) {
        return fast_path_verdict::malformed;
    }
    const std::size_t ihl = std::size_t(std::uint8_t(ip[0]) & 0x0f) * 4;
    const std::size_t total = load_be16(ip + 2);
    if (ihl < ipv4_min_len || total < ihl || eth_len + total > len) {
        return fast_path_verdict::malformed;
    }
    if (std::uint8_t(ip[9]) != 17) {
        return fast_path_verdict::not_ours;
    }
    if (total < ihl + udp_len) {
        return fast_path_verdict::malformed;
    }
    char* udp = ip + ihl;
    if ((load_be16(ip + 6) & 0x3fff) != 0 || load_be16(udp + 2) != port) {
        return fast_path_verdict::not_ours;
    }
    std::uint32_t dst;
    std::memcpy(&dst, ip + 16, 4);
    if (address ? dst != *address : (std::uint8_t(ip[16]) >= 224)) {
        return fast_path_verdict::not_ours;
    }
    const std::size_t ulen = load_be16(udp + 4);
    if (ulen < udp_len || ulen > total - ihl || !net::ipv4_header_checksum_ok(ip, ihl) || (std::uint8_t(h[6]) & 1)) {
        return fast_path_verdict::malformed;
    }
    char* mc = udp + udp_len;
    const std::size_t mc_len = ulen - udp_len;
    if (mc_len <= mc_header_len || load_be16(mc + 2) != 0 || load_be16(mc + 4) != 1) {
        return fast_path_verdict::not_ours;  // the stack's path counts and drops bad frame headers
    }
    std::string_view body(mc + mc_header_len, mc_len - mc_header_len);
    try {
        static thread_local command cmd;
        static thread_local std::string reply;
        cmd.clear();
        reply.clear();
        parse_limits lim;
        lim.max_item_size = cache.max_item_size();
        lim.now = clock().now();
        lim.start_unix = clock().start_unix();
        auto pr = parse_request(body, cmd, lim);
        if (pr.status != parse_status::done || pr.consumed != body.size() || cmd.kind != cmd_kind::keyed ||
            cmd.ops.size() != 1) {
            return fast_path_verdict::not_ours;
        }
        const op& o = cmd.ops[0];
        const bool is_get = o.kind == op_kind::get && !o.touch_expiry && !o.vivify;
        const bool is_set = o.kind == op_kind::store && o.mode == store_mode::set && !o.refused_too_large;
        if ((!is_get && !is_set) || cmd.protocol == proto::meta || shard_of(o.hash, shards) != shard) {
            return fast_path_verdict::not_ours;
        }
        // Kept from one datagram to the next: a hit writes its value into the string the last one
        // left (no allocation per request).
        static thread_local std::vector<op_result> results(1);
        execute_op(cache, o, lim.now, results[0]);
        format_reply(cmd, results, reply);
        if (stats) {
            ++(is_get ? stats->fastpath_gets : stats->fastpath_sets);
        }
        if (reply.empty()) {
            // set noreply: done, nothing to send (len 0: the hook consumes the frame).
            len = 0;
            return fast_path_verdict::answered;
        }
        const std::size_t new_ulen = udp_len + mc_header_len + reply.size();
        const std::size_t new_total = ihl + new_ulen;
        if (mc_header_len + reply.size() > max_reply_payload || eth_len + new_total > room) {
            // Too large for one datagram here. A get is left to the stack, which splits the reply
            // (it runs the lookup again: harmless); a set is done and its short reply cannot be
            // too large, so this is only a get in practice.
            if (is_get) {
                if (stats) {
                    --stats->fastpath_gets;
                }
                return fast_path_verdict::not_ours;
            }
            len = 0;
            return fast_path_verdict::answered;
        }
        // Rewrite: Ethernet and IP addresses, ports, lengths, checksums; the frame header keeps the
        // request id, sequence 0 of 1.
        std::swap_ranges(h, h + 6, h + 6);
        std::swap_ranges(ip + 12, ip + 16, ip + 16);
        std::swap_ranges(udp, udp + 2, udp + 2);
        store_be16(ip + 2, std::uint16_t(new_total));
        store_be16(ip + 10, 0);
        const std::uint16_t ip_sum = net::internet_checksum(ip, ihl);  // in memory order
        std::memcpy(ip + 10, &ip_sum, 2);
        store_be16(mc + 4, 1);
        store_be16(mc + 6, 0);
        std::memcpy(mc + mc_header_len, reply.data(), reply.size());
        store_be16(udp + 4, std::uint16_t(new_ulen));
        store_be16(udp + 6, 0);
        net::checksummer ck;
        net::add_ipv4_pseudo_header(ck, ip + 12, ip + 16, 17, new_ulen);
        ck.add(udp, new_ulen);
        std::uint16_t sum = ck.get();  // in memory order; 0 would mean "no checksum"
        if (sum == 0) {
            sum = 0xffff;
        }
        std::memcpy(udp + 6, &sum, 2);
        len = eth_len + new_total;
        return fast_path_verdict::answered;
    } catch (...) {
        return fast_path_verdict::not_ours;
    }
}

void udp_fast_path::install() {
    net::device* dev = app::device();
    if (!dev) {
        throw std::logic_error("the UDP fast path needs the DPDK device (--dpdk-pmd)");
    }
    const net::ethernet_address mac = dev->hw_address();
    memcached_server* server = &_servers->local();
    const unsigned shard = this_shard_id();
    dev->set_packet_hook([this, mac, server, shard](net::hook_frame& f) {
        std::size_t len = f.len;
        switch (answer_in_place(f.data, len, f.room, mac, _port, _address, server->cache(), shard, smp::count,
                                &server->stats())) {
        case fast_path_verdict::answered:
            ++_stats.answered;
            if (len == 0) {
                return net::hook_action::consumed;
            }
            f.len = len;
            return net::hook_action::reply;
        case fast_path_verdict::malformed: ++_stats.malformed; return net::hook_action::pass;
        case fast_path_verdict::not_ours: break;
        }
        ++_stats.passed;
        return net::hook_action::pass;
    });
    _installed = true;
}

void udp_fast_path::uninstall() noexcept {
    if (_installed) {
        _installed = false;
        if (net::device* dev = app::device()) {
            dev->set_packet_hook({});
        }
    }
}

}  // namespace reef::memcached
