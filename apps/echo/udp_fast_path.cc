#include "apps/echo/udp_fast_path.hh"

#include "dataplane/app.hh"
#include "stack/net/checksum.hh"
#include "stack/net/ethernet.hh"

#include <algorithm>
#include <cstring>

namespace reef::echo {

namespace {

constexpr std::size_t eth_len = net::eth::header_len;
constexpr std::size_t ipv4_min_len = 20;
constexpr std::size_t udp_len = 8;

using net::eth::load_be16;

void swap_bytes(char* a, char* b, std::size_t n) noexcept { std::swap_ranges(a, a + n, b); }

}  // namespace

fast_path_verdict answer_in_place(char* h, std::size_t len, const net::ethernet_address& own_mac, std::uint16_t port,
                                  std::optional<std::uint32_t> address) noexcept {
    if (len < eth_len + ipv4_min_len + udp_len) {
        return fast_path_verdict::not_ours;  // a runt, or too short for UDP: the stack's business
    }
    if (load_be16(h + 12) != net::eth::type_ipv4 || std::memcmp(h, own_mac.mac.data(), 6) != 0) {
        return fast_path_verdict::not_ours;
    }
    const char* ip = h + eth_len;
    if ((std::uint8_t(ip[0]) >> 4) != 4) {
        return fast_path_verdict::malformed;
    }
    const std::size_t ihl = std::size_t(std::uint8_t(ip[0]) & 0x0f) * 4;
    const std::size_t total = load_be16(ip + 2);
    // Ethernet pads short frames, so the frame may be longer than the datagram, never shorter.
    if (ihl < ipv4_min_len || total < ihl || eth_len + total > len) {
        return fast_path_verdict::malformed;
    }
    if (std::uint8_t(ip[9]) != 17) {
        return fast_path_verdict::not_ours;
    }
    if (total < ihl + udp_len) {
        return fast_path_verdict::malformed;
    }
    // The whole headers, IP options included, are within the frame (checked above).
    char* udp = h + eth_len + ihl;
    if ((load_be16(ip + 6) & 0x3fff) != 0) {
        return fast_path_verdict::not_ours;  // a fragment (MF set or an offset): not a whole datagram
    }
    if (load_be16(udp + 2) != port) {
        return fast_path_verdict::not_ours;
    }
    std::uint32_t dst;
    std::memcpy(&dst, ip + 16, 4);
    if (address ? dst != *address : (std::uint8_t(ip[16]) >= 224)) {
        return fast_path_verdict::not_ours;  // another address, or multicast/broadcast
    }
    const std::size_t ulen = load_be16(udp + 4);
    if (ulen < udp_len || ulen > total - ihl || !net::ipv4_header_checksum_ok(ip, ihl)) {
        return fast_path_verdict::malformed;
    }
    if (std::uint8_t(h[6]) & 1) {
        return fast_path_verdict::malformed;  // a multicast source MAC: no one to answer
    }
    swap_bytes(h, h + 6, 6);
    swap_bytes(h + eth_len + 12, h + eth_len + 16, 4);
    swap_bytes(udp, udp + 2, 2);
    return fast_path_verdict::answered;
}

void udp_fast_path::install() {
    net::device* dev = app::device();
    if (!dev) {
        throw std::logic_error("the UDP fast path needs the DPDK device (--dpdk-pmd)");
    }
    const net::ethernet_address mac = dev->hw_address();
    dev->set_packet_hook([this, mac](net::hook_frame& f) {
        switch (answer_in_place(f.data, f.len, mac, _port, _address)) {
        case fast_path_verdict::answered: ++_stats.answered; return net::hook_action::reply;
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

}  // namespace reef::echo
