// UDP (RFC 768) of the native stack: per-shard channels implementing udp_channel (api.hh).
//
// Ports: a port is bound on one shard, or with udp_channel_options::reuse_port on several shards
// (at most one channel per shard and port). Bindings are recorded in a registry shared by the
// shards of the interface (a mutex; read only when a datagram finds no channel on its shard), so
// a datagram that lands on a shard without the port — its 4-tuple hashes there, but the channel
// lives elsewhere, e.g. the reply to a client channel — is copied to a shard that has it
// (rx_forwarded). A datagram for a port bound nowhere is answered with ICMP port unreachable.
// Port 0 picks a free port in 49152-65535 for the whole interface.
//
// Checksums: received datagrams are checked unless the device verified them; a zero checksum
// means "none" and is accepted (counted). Sent datagrams always carry one (device or software).
//
// Channel semantics follow the posix stack's: receive() one at a time, datagrams queued up to
// native_options::udp_receive_queue (more are dropped and counted), truncation to
// max_datagram_size flagged, ECONNABORTED after shutdown_input/close, EPIPE for sends after
// shutdown_output, EMSGSIZE above 65507 bytes, errors naming the destination. send() resolves
// once the stack took the datagram (it may still wait for ARP).
//
// ICMP errors: an error about a datagram a channel sent (port unreachable, host unreachable,
// fragmentation needed...) is recorded for its destination; the channel's next send() to that
// destination fails once with it (ECONNREFUSED, EHOSTUNREACH, EMSGSIZE...), as a connected
// Linux UDP socket reports it on its next call. pending_errors() counts them.
#pragma once

#include "runtime/circular_buffer.hh"
#include "runtime/future.hh"
#include "runtime/shared_ptr.hh"
#include "stack/native/ipv4.hh"
#include "stack/net/api.hh"

#include <optional>
#include <unordered_map>

namespace reef::net::native {

class interface;

class udp {
public:
    explicit udp(interface& ifc);
    ~udp();
    udp(const udp&) = delete;
    udp& operator=(const udp&) = delete;

    /// A UDP channel on this shard bound to `local` (port 0: any free port). Throws
    /// std::system_error: EADDRINUSE, EADDRNOTAVAIL (not our address), EAFNOSUPPORT (not IPv4).
    udp_channel make_channel(const socket_address& local, const udp_channel_options& opts, stack_stats* stats);
    /// A UDP datagram for us, on the shard the device (or reassembly) delivered it to.
    void receive(ip_packet&& p);
    /// Same, already validated and sent here by another shard for the channel bound here.
    void receive_forwarded(ip_packet&& p);
    /// An ICMP error about a datagram sent from `e.local_port`.
    void error(const icmp_error& e);

    /// Is `port` bound to a channel on this shard?
    bool bound_here(std::uint16_t port) const noexcept { return _channels.count(port) != 0; }

    struct channel_state;

private:
    interface& _ifc;
    std::unordered_map<std::uint16_t, channel_state*> _channels;

    friend class native_udp_channel;
    void unbind(std::uint16_t port) noexcept;
    void deliver(channel_state& ch, ip_packet&& p);
    bool validate(ip_packet& p);
};

}  // namespace reef::net::native
