// Options of the native stack (section "Native stack options" of --help): the interface's
// address (static, or DHCP) and the tunables of ARP, IPv4 reassembly, ICMP and DHCP. One value
// for every shard: the struct is copied to each shard's stack.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace reef::net {

struct native_options {
    // ---- address
    /// --host-ipv4-addr: this host's address (static configuration; ignored with --dhcp).
    std::string host_ipv4_addr = "192.168.122.2";
    /// --netmask-ipv4-addr
    std::string netmask_ipv4_addr = "255.255.255.0";
    /// --gw-ipv4-addr: default gateway; empty for none (only on-link destinations reachable).
    std::string gw_ipv4_addr = "192.168.122.1";
    /// --mtu: IPv4 MTU; 0 = the device's. Larger than the device's is refused.
    std::uint16_t mtu = 0;
    /// --dhcp: get the address, netmask, gateway (and MTU) from a DHCP server.
    bool dhcp = false;
    /// --dhcp-timeout: give up (stack start fails with a clear error) when no server answered.
    std::chrono::milliseconds dhcp_timeout{10000};
    /// First DHCP retransmission interval (doubles up to 8 s; RFC 2131 4.1).
    std::chrono::milliseconds dhcp_retry{1000};

    // ---- ARP
    /// How long a resolved entry is used before it is resolved again.
    std::chrono::milliseconds arp_cache_timeout{60000};
    /// Interval between ARP requests for an unresolved address.
    std::chrono::milliseconds arp_retry_interval{1000};
    /// Requests sent for one address before its resolution fails.
    unsigned arp_retries = 3;
    /// Packets queued per unresolved address (older ones are dropped beyond it).
    std::size_t arp_queue_limit = 16;

    // ---- IPv4
    std::uint8_t ttl = 64;
    /// Incomplete datagrams are dropped this long after their first fragment.
    std::chrono::milliseconds reassembly_timeout{30000};
    /// Bytes of fragments one shard holds at most; the oldest datagrams are dropped beyond.
    std::size_t reassembly_memory = 4 << 20;
    /// How long a lowered path MTU (ICMP fragmentation needed) is remembered.
    std::chrono::milliseconds pmtu_timeout{600000};

    // ---- ICMP
    /// --icmp-error-rate: ICMP errors (port unreachable...) sent per second per shard at most
    /// (token bucket).
    unsigned icmp_error_rate = 1000;
    /// --icmp-error-burst: errors allowed at once (the token bucket's size).
    unsigned icmp_error_burst = 50;

    // ---- UDP
    /// Datagrams a channel queues before further ones are dropped (counted).
    std::size_t udp_receive_queue = 1024;

    /// Add --host-ipv4-addr, --netmask-ipv4-addr, --gw-ipv4-addr, --mtu, --dhcp, --dhcp-timeout
    /// and the tunables to `app` (group "Native stack options").
    void register_options(CLI::App& app);
};

}  // namespace reef::net
