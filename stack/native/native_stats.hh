// Counters of the native stack below TCP, one set per shard (what `netstat -s` shows for these
// protocols). A plain struct: read it on its shard (native_stack::native_stats()), or copy it
// across shards with smp::submit_to.
#pragma once

#include <cstdint>

namespace reef::net::native {

struct l2_stats {
    std::uint64_t rx_frames = 0;
    std::uint64_t rx_dropped_not_ours = 0;      ///< destination MAC neither ours nor broadcast
    std::uint64_t rx_dropped_unknown_type = 0;  ///< ethertype we do not speak (IPv6, LLDP...)
    std::uint64_t rx_dropped_short = 0;         ///< frame ends inside the Ethernet/VLAN header
    std::uint64_t tx_frames = 0;
};

struct arp_stats {
    std::uint64_t rx_requests = 0;
    std::uint64_t rx_replies = 0;
    std::uint64_t rx_dropped_malformed = 0;   ///< short, or not Ethernet/IPv4
    std::uint64_t rx_ignored_not_for_us = 0;  ///< requests for other addresses
    std::uint64_t tx_requests = 0;            ///< resolution requests and retries
    std::uint64_t tx_replies = 0;
    std::uint64_t tx_gratuitous = 0;
    std::uint64_t resolved = 0;        ///< entries learned or refreshed
    std::uint64_t expired = 0;         ///< entries aged out of the cache
    std::uint64_t failed = 0;          ///< resolutions that ran out of retries
    std::uint64_t queue_dropped = 0;   ///< packets dropped: queue full or resolution failed
    std::uint64_t remote_lookups = 0;  ///< misses on this shard asked of shard 0
};

struct ipv4_stats {
    std::uint64_t rx_packets = 0;
    std::uint64_t rx_delivered = 0;          ///< handed to ICMP/UDP/TCP
    std::uint64_t rx_dropped_too_short = 0;  ///< shorter than 20 bytes
    std::uint64_t rx_dropped_bad_version = 0;
    std::uint64_t rx_dropped_bad_header_length = 0;  ///< IHL < 5 or past the packet's end
    std::uint64_t rx_dropped_bad_total_length = 0;   ///< total length < IHL*4 or > bytes received
    std::uint64_t rx_dropped_bad_checksum = 0;
    std::uint64_t rx_dropped_ttl_zero = 0;    ///< TTL 0: no conforming sender or router emits it
    std::uint64_t rx_dropped_not_for_us = 0;  ///< another host's address (we do not forward)
    std::uint64_t rx_dropped_bad_source = 0;  ///< broadcast/multicast source
    std::uint64_t rx_dropped_unknown_protocol = 0;
    std::uint64_t rx_options_skipped = 0;  ///< packets whose options were skipped
    std::uint64_t tx_packets = 0;
    std::uint64_t tx_dropped_no_route = 0;  ///< no address yet, or unreachable
    std::uint64_t tx_dropped_too_big = 0;   ///< DF set and above the path MTU, or > 65535
    std::uint64_t frag_created = 0;         ///< fragments sent
    std::uint64_t frag_datagrams = 0;       ///< datagrams sent fragmented
    // Reassembly
    std::uint64_t reasm_fragments = 0;          ///< fragments received
    std::uint64_t reasm_ok = 0;                 ///< datagrams rebuilt
    std::uint64_t reasm_dropped_overlap = 0;    ///< datagrams dropped for overlapping fragments (RFC 5722)
    std::uint64_t reasm_dropped_oversize = 0;   ///< fragments reaching past 65535 bytes or past a known end
    std::uint64_t reasm_dropped_malformed = 0;  ///< empty fragments, or not a multiple of 8 bytes before the last
    std::uint64_t reasm_dropped_timeout = 0;    ///< datagrams incomplete at the timeout
    std::uint64_t reasm_dropped_memory = 0;     ///< datagrams evicted to stay under the memory bound
    std::uint64_t reasm_forwarded = 0;          ///< rebuilt datagrams sent to their flow's shard
    std::uint64_t reasm_bytes_held = 0;         ///< gauge: bytes waiting in reassembly now
};

struct icmp_stats {
    std::uint64_t rx_messages = 0;
    std::uint64_t rx_echo_requests = 0;
    std::uint64_t rx_echo_replies = 0;
    std::uint64_t rx_dest_unreachable = 0;
    std::uint64_t rx_frag_needed = 0;  ///< of which "fragmentation needed" (PMTU)
    std::uint64_t rx_time_exceeded = 0;
    std::uint64_t rx_dropped_malformed = 0;  ///< short or bad checksum
    std::uint64_t tx_messages = 0;
    std::uint64_t tx_echo_replies = 0;
    std::uint64_t tx_port_unreachable = 0;
    std::uint64_t tx_proto_unreachable = 0;
    std::uint64_t tx_rate_limited = 0;  ///< errors not sent because of the rate limit
    std::uint64_t errors_to_udp = 0;    ///< errors delivered to a UDP channel
    std::uint64_t errors_to_tcp = 0;    ///< errors delivered to TCP
};

struct udp_stats {
    std::uint64_t rx_datagrams = 0;      ///< delivered to a channel
    std::uint64_t rx_dropped_short = 0;  ///< header cut short or length field lying
    std::uint64_t rx_dropped_bad_checksum = 0;
    std::uint64_t rx_zero_checksum = 0;       ///< accepted without a checksum (RFC 768)
    std::uint64_t rx_no_port = 0;             ///< nobody bound: port unreachable sent
    std::uint64_t rx_dropped_queue_full = 0;  ///< the channel's receive queue was full
    std::uint64_t rx_forwarded = 0;           ///< sent to the shard where the port is bound
    std::uint64_t tx_datagrams = 0;
    std::uint64_t tx_errors = 0;  ///< sends refused (too big, no route, shut down)
};

struct dhcp_stats {
    std::uint64_t discovers = 0, offers = 0, requests = 0, acks = 0, naks = 0;
    std::uint64_t renewals = 0, rebinds = 0, leases_lost = 0;
    std::uint64_t rx_dropped = 0;  ///< malformed or not ours (xid, chaddr)
};

/// Everything one shard counts below TCP.
struct native_stats {
    l2_stats l2;
    arp_stats arp;
    ipv4_stats ip;
    icmp_stats icmp;
    udp_stats udp;
    dhcp_stats dhcp;
};

}  // namespace reef::net::native
