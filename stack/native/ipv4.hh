// IPv4 (RFC 791, RFC 1122 host requirements) and ICMP (RFC 792) of the native stack, one
// instance per shard of an interface.
//
// Receive: every header is validated (length, version, IHL, total length, checksum unless the
// device verified it, TTL not 0) and each failure is counted by reason (ipv4_stats); options
// are skipped, never interpreted; padding past the total length is trimmed; packets for another
// host are dropped (a host does not forward). Fragments are reassembled (see below); whole
// datagrams go to ICMP, UDP or the protocol handler registered for their number (TCP).
//
// Send: the route is on-link when the destination shares our subnet (or is a broadcast), else
// through the gateway; the L4 checksum a packet asks for (offload().needs_csum) is left to the
// device when it offloads it, computed in software otherwise (and always for a fragmented
// datagram); a datagram above the path MTU is fragmented unless DF is set (EMSGSIZE then).
//
// Fragments and shards: device_base hashes every IPv4 fragment (first ones included) on its
// 2-tuple (frame_flow_hash), so all fragments of a datagram reach the same shard, which
// reassembles them there. The rebuilt datagram's flow, however, is its 4-tuple, which may belong
// to another shard (unfragmented packets of the same flow hash on the 4-tuple): for UDP and TCP
// the rebuilt datagram is therefore copied to the shard its 4-tuple maps to (reasm_forwarded).
//
// Reassembly bounds (RFC 5722 and RFC 791 3.2): per datagram (src, dst, id, protocol) the
// fragments are kept sorted; a fragment overlapping another (other than an exact duplicate,
// which is just dropped) discards the whole datagram and every later fragment of it until the
// timeout; a fragment reaching past 65535 bytes or past the end the last fragment gave is
// dropped with its datagram; a shard holds at most native_options::reassembly_memory bytes of
// fragments (the oldest datagrams are dropped to make room) and drops incomplete datagrams
// native_options::reassembly_timeout after their first fragment.
//
// ICMP: echo requests are answered; UDP datagrams to a closed port and unknown protocols get a
// destination unreachable (never for broadcasts or ICMP errors; rate-limited per shard by a
// token bucket); received errors go to the UDP channel or the protocol handler they concern;
// "fragmentation needed" lowers the path MTU of its destination on every shard for
// native_options::pmtu_timeout.
#pragma once

#include "runtime/timer.hh"
#include "stack/native/wire.hh"
#include "stack/net/packet.hh"

#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

namespace reef::net::native {

class interface;

/// A received IPv4 datagram, whole (reassembled if it came in fragments).
struct ip_packet {
    ipv4_addr src, dst;
    std::uint8_t proto = 0;
    std::uint8_t ttl = 0;
    std::uint16_t ihl = 20;     ///< bytes of IP header at the front of `p`
    bool to_broadcast = false;  ///< sent to a broadcast address (never answer with an error)
    packet p;                   ///< IP header, then the L4 header and data

    std::size_t l4_len() const noexcept { return p.len() - ihl; }
};

/// A received ICMP error as the affected protocol sees it: the original datagram we sent (its
/// IP header and at least 8 bytes of it, as the error quoted them).
struct icmp_error {
    std::uint8_t type = 0, code = 0;
    int error = 0;            ///< errno: ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EMSGSIZE...
    ipv4_addr local, remote;  ///< our address and the original destination
    std::uint8_t proto = 0;
    std::uint16_t local_port = 0, remote_port = 0;  ///< first 4 bytes of the quoted L4 header
    std::uint16_t mtu = 0;                          ///< next-hop MTU for "fragmentation needed" (0 otherwise)
    std::string quoted;  ///< the quoted L4 bytes (at least 8): TCP reads its sequence number there
    ipv4_addr reporter;  ///< who sent the error
};

/// What a transport protocol (TCP) registers to receive its datagrams and errors.
class l4_protocol {
public:
    virtual ~l4_protocol() = default;
    /// A datagram of this protocol, on the shard its flow belongs to (see shard_of).
    virtual void receive(ip_packet&& p) = 0;
    /// An ICMP error about a datagram of this protocol we sent, on the shard its flow belongs to.
    virtual void error(const icmp_error& e) = 0;
    /// The shard a datagram belongs to (the one its flow hashes to): datagrams received on
    /// another shard (reassembled ones) are copied there first. Any shard; must not block.
    virtual unsigned shard_of(ipv4_addr remote, ipv4_addr local, std::uint16_t remote_port,
                              std::uint16_t local_port) const = 0;
};

/// How ipv4::send sends one datagram.
struct ip_send_options {
    bool df = false;       ///< Don't Fragment: refuse (EMSGSIZE) above the path MTU
    std::uint8_t ttl = 0;  ///< 0: native_options::ttl
    std::uint8_t tos = 0;
    ipv4_addr src;               ///< 0: the interface's address
    bool broadcast_mac = false;  ///< send to ff:ff:ff:ff:ff:ff without ARP (DHCP before it has an address)
};

class ipv4 {
public:
    using clock = steady_clock_type;

    explicit ipv4(interface& ifc);
    ~ipv4();
    ipv4(const ipv4&) = delete;
    ipv4& operator=(const ipv4&) = delete;

    /// An IPv4 packet (Ethernet header removed), on the shard the device delivered it to.
    void receive(packet p);
    /// Send `l4` (the transport header and data) to `dst` with protocol `proto`. When
    /// l4.offload().needs_csum is set the L4 checksum is filled (device or software; its field
    /// at offset 6 for UDP, 16 for TCP, must be zero). Returns 0 once the datagram is queued
    /// (possibly behind ARP), or an errno: ENETUNREACH (no address/route), EMSGSIZE (above 65535,
    /// or the path MTU with DF). Any shard; the packet is consumed either way.
    int send(ipv4_addr dst, std::uint8_t proto, packet l4, const ip_send_options& o = {});
    /// The MTU towards `dst`: the interface's, lowered by a remembered "fragmentation needed".
    std::uint16_t path_mtu(ipv4_addr dst);
    /// Record a lower path MTU for `dst` on this shard (ICMP, or another shard's push).
    void set_path_mtu(ipv4_addr dst, std::uint16_t mtu, clock::time_point expires);

    /// Register the handler of a transport protocol on this shard (nullptr to remove). Not owned.
    void set_protocol(std::uint8_t proto, l4_protocol* handler) noexcept;
    l4_protocol* protocol(std::uint8_t proto) const noexcept;

    /// Deliver a whole datagram that another shard reassembled (or received) for this shard.
    void deliver_forwarded(ip_packet&& p);

    /// Send an ICMP destination unreachable of `code` about `orig` (rate-limited).
    void send_unreachable(const ip_packet& orig, std::uint8_t code);

    /// Bytes held by reassembly on this shard.
    std::size_t reassembly_bytes() const noexcept { return _reasm_bytes; }
    /// Datagrams being reassembled on this shard.
    std::size_t reassembly_datagrams() const noexcept { return _reasm.size(); }
    /// Drop everything held in reassembly (shutdown, address change).
    void clear_reassembly();

private:
    struct frag_key {
        std::uint32_t src, dst;
        std::uint16_t id;
        std::uint8_t proto;
        friend bool operator==(const frag_key&, const frag_key&) = default;
    };
    struct frag_key_hash {
        std::size_t operator()(const frag_key& k) const noexcept;
    };
    struct frag {
        std::size_t begin, end;  // payload byte range
        packet data;             // just the payload bytes
    };
    struct datagram_in_progress {
        frag_key key;
        clock::time_point deadline;
        std::vector<frag> frags;  // sorted by begin, never overlapping
        std::string header;       // the first fragment's IP header (offset 0), once seen
        std::size_t end = 0;      // total payload length, once the last fragment came
        bool have_last = false;
        bool poisoned = false;  // overlapped: drop everything of it until the deadline
        std::size_t bytes = 0;  // accounted memory
    };
    struct pmtu_entry {
        std::uint16_t mtu;
        clock::time_point expires;
    };

    interface& _ifc;
    // Reassembly: datagrams in arrival order of their first fragment (the timeout and eviction
    // order), indexed by key.
    std::list<datagram_in_progress> _reasm;
    std::unordered_map<frag_key, std::list<datagram_in_progress>::iterator, frag_key_hash> _reasm_index;
    std::size_t _reasm_bytes = 0;
    timer<clock> _reasm_timer;
    std::unordered_map<std::uint32_t, pmtu_entry> _pmtu;
    l4_protocol* _protocols[256] = {};
    std::uint16_t _next_id;
    // ICMP error token bucket.
    double _icmp_tokens;
    clock::time_point _icmp_refill;

    void reassemble(ip_packet&& ip, std::uint16_t frag_field);
    void drop_datagram(std::list<datagram_in_progress>::iterator it);
    void arm_reasm_timer();
    void on_reasm_timeout();
    void complete(std::list<datagram_in_progress>::iterator it);
    void dispatch(ip_packet&& p);
    void deliver_local(ip_packet&& p);
    void forward_to_shard(unsigned shard, ip_packet&& p);
    int send_fragments(ipv4_addr next_hop, bool bcast, packet&& l4, const std::uint8_t* hdr, std::uint16_t mtu);
    void finish_l4_checksum(packet& l4, std::uint8_t proto, ipv4_addr src, ipv4_addr dst, bool software);
    void transmit(ipv4_addr next_hop, bool bcast, packet&& ip);
    // ICMP
    void icmp_receive(ip_packet&& p);
    void icmp_error_received(ip_packet& p, const icmp_hdr& h);
    bool icmp_allow_error();
    void send_icmp(ipv4_addr dst, packet&& msg);
};

}  // namespace reef::net::native
