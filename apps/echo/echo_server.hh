// The echo service of reef-echo: on its shard, a TCP listener (optionally TLS) whose connections
// get back every byte they send, and a UDP channel that sends every datagram back to its sender.
// Run one per shard with sharded<echo_server>: every shard listens on the same address (per-shard
// load balancing, SO_REUSEPORT on the posix stack) and the stack spreads the clients.
#pragma once

#include "runtime/future.hh"
#include "runtime/gate.hh"
#include "runtime/semaphore.hh"
#include "runtime/shared_ptr.hh"
#include "stack/net/api.hh"
#include "stack/tls/tls.hh"

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_set>

namespace reef::echo {

struct echo_config {
    std::string tls_cert;  ///< PEM certificate chain file; empty: plain TCP
    std::string tls_key;   ///< PEM private key file (with tls_cert)
    /// Nonzero: TCP is a sink instead of an echo (one-way bulk, reef-loadgen --generator sink):
    /// the data is read and dropped, and each time another `sink_ack` bytes have arrived the
    /// connection is answered with the 8-byte little-endian count of bytes read so far.
    std::size_t sink_ack = 0;
    /// Echo each received buffer as it is, without copying it into the output stream's buffer:
    /// on the native stack the answer is sent from the received frame's own memory.
    bool zero_copy = false;
};

/// Per-shard counters.
struct echo_stats {
    std::uint64_t connections = 0;        ///< accepted
    std::uint64_t connection_errors = 0;  ///< connections that ended with an error (reset, TLS...)
    std::uint64_t bytes = 0;              ///< bytes echoed (or, as a sink, read) over TCP
    std::uint64_t datagrams = 0;          ///< datagrams echoed
    std::uint64_t datagram_errors = 0;    ///< receive/send failures on the UDP channel
};

class echo_server {
    echo_config _cfg;
    shared_ptr<tls::server_credentials> _creds;
    net::server_socket _listener;
    net::udp_channel _udp;
    gate _gate;                                        // the accept loop, the UDP loop and every connection
    semaphore _udp_sends{64};                          // UDP answers in flight
    std::unordered_set<net::connected_socket*> _live;  // for stop() to end their reads
    echo_stats _stats;
    bool _stopping = false;

    future<> accept_loop(gate::holder h);
    future<> handle_connection(net::connected_socket s, net::socket_address peer, gate::holder h);
    /// The connection's loop for echo_config::sink_ack: read, count, acknowledge.
    future<> sink(net::connected_socket& s, input_stream<char>& in, output_stream<char>& out);
    future<> udp_loop(gate::holder h);
    void answer_datagram(net::datagram d);

public:
    /// Nothing is opened yet. Loads the TLS certificate and key when configured, throwing what
    /// tls::certificate_credentials throws for unreadable or invalid files (naming them).
    explicit echo_server(echo_config cfg);

    /// Listen for TCP (TLS when configured) on `addr` on this shard, load balanced with the other
    /// shards listening on the same address. Throws std::system_error naming the address.
    void listen(net::socket_address addr);
    /// Open the UDP channel on `addr` (SO_REUSEPORT, so every shard may bind it). Throws
    /// std::system_error naming the address.
    void bind_udp(net::socket_address addr);
    /// Start the accept loop and the UDP loop (for what listen()/bind_udp() opened). Call once.
    void serve();
    /// Stop accepting, end every connection (their reads see end of stream; what was already
    /// read is still echoed and flushed), close the UDP channel, and resolve when every
    /// connection has finished. A second call resolves at once.
    future<> stop();

    /// The bound addresses (with the ports the stack chose for port 0). Valid after start().
    net::socket_address tcp_address() const noexcept { return _listener.local_address(); }
    std::optional<net::socket_address> udp_address() const;
    const echo_stats& stats() const noexcept { return _stats; }
};

}  // namespace reef::echo
