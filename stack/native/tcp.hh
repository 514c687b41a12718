// Native TCP (RFC 9293) for IPv4: the per-shard `tcp` object, its lower interface towards the IP
// layer, and the sockets it produces (stack/net/api.hh's connected_socket and server_socket).
//
// What is implemented, by file (each RFC behaviour behind a named function citing the RFC):
//  - tcp.cc:            demultiplexing, listeners, bounded SYN backlog with SYN cookies on
//                       overflow, ISNs (RFC 6528), RSTs for segments to closed ports, local port
//                       choice for connect() that hashes back to the calling shard.
//  - tcp_connection.*:  the connection object, the state machine (RFC 9293 3.3.2, every state,
//                       simultaneous open and close), graceful close, abort, the socket glue
//                       (send/receive buffers with back-pressure into output_stream).
//  - tcp_input.cc:      segment arrival (RFC 9293 3.10.7), PAWS (RFC 7323 5), challenge ACKs
//                       (RFC 5961), ACK processing, reassembly, delayed ACK policy (RFC 5681 4.2;
//                       the ACK of in-order data goes out at the round's end: tcp::owe_ack).
//  - tcp_output.cc:     segment building, Nagle (RFC 9293 3.7.4), receiver and sender silly
//                       window avoidance, retransmission, checksums or their offload.
//  - tcp_timers.cc:     RTO (RFC 6298) with back-off and abort, delayed ACK, persist (zero-window
//                       probes), keepalive (RFC 9293 3.8.4), TIME_WAIT (2 MSL), FIN_WAIT_2 orphans.
//  - tcp_congestion.*:  NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438), per connection.
//  - tcp_sack.*:        SACK blocks sent (RFC 2018) from the out-of-order queue and the sender's
//                       scoreboard for SACK-based loss recovery (RFC 6675).
//  - tcp_options.*:     MSS, window scale, timestamps, SACK-permitted, SACK.
//
// Threading: one `tcp` per shard; every call below is made on that shard. Connections live on the
// shard their 4-tuple's flow hash maps to (tcp_lower::shard_of_flow), so the IP layer hands each
// shard only its own segments; connect() picks a local port that keeps the connection here.
#pragma once

#include "runtime/circular_buffer.hh"
#include "runtime/future.hh"
#include "runtime/shared_ptr.hh"
#include "stack/native/tcp_header.hh"
#include "stack/net/api.hh"
#include "stack/net/packet.hh"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <unordered_map>
#include <vector>

namespace reef {
class poller;
}

namespace reef::net {

struct tcp_options;
struct tcp_segment;

/// An IPv4 address in host byte order (10.0.0.1 is 0x0a000001), as the lower interface uses them.
using tcp_ipv4 = std::uint32_t;

/// ICMP errors the IP layer reports for TCP segments we sent (RFC 9293 3.10.7.1 / RFC 1122 4.2.3.9,
/// RFC 5927 for validation, RFC 1191 for fragmentation needed).
enum class tcp_icmp_kind {
    net_unreachable,
    host_unreachable,
    protocol_unreachable,
    port_unreachable,
    admin_prohibited,
    frag_needed,  ///< "fragmentation needed and DF set": next_hop_mtu says the path MTU
    time_exceeded,
};

/// One ICMP error, as extracted from the quoted original datagram (our IP header plus at least the
/// first 8 bytes of our TCP header).
struct tcp_icmp_error {
    tcp_icmp_kind kind = tcp_icmp_kind::host_unreachable;
    tcp_ipv4 local_addr = 0;   ///< source of the quoted datagram (us)
    tcp_ipv4 remote_addr = 0;  ///< its destination
    std::uint16_t local_port = 0;
    std::uint16_t remote_port = 0;
    std::uint32_t seq = 0;           ///< the quoted sequence number (validated against SND.UNA..SND.NXT)
    std::uint16_t next_hop_mtu = 0;  ///< frag_needed only (0: unknown, RFC 1191 plateau not applied)
};

/// What TCP needs from the IP layer below it. Implemented by the native stack's IPv4 layer (and by
/// test links). Every call is made on the shard that owns the `tcp` object; none may block.
class tcp_lower {
public:
    virtual ~tcp_lower() = default;

    /// Send one TCP segment from `src` to `dst` (IPv4, protocol 6). `seg` starts with the TCP
    /// header, options included, followed by the payload (fragments owned by the packet; zero-copy
    /// from the send buffer). The TCP checksum is already filled in, unless tx_checksum_offload()
    /// is true: then seg.offload() has protocol = IPPROTO_TCP, needs_csum = true and tcp_hdr_len
    /// set, and the checksum field holds zero; the IP layer sets ip_hdr_len and the device (or
    /// stack/net/checksum.hh fill_checksums) computes it over the pseudo-header. A segment that
    /// cannot be sent (no route, no ARP entry after retries, queue full) is dropped silently: TCP
    /// retransmits.
    virtual void send_segment(tcp_ipv4 src, tcp_ipv4 dst, packet seg) = 0;
    /// The largest TCP payload that fits in one IP packet to `dst` without fragmentation (path MTU
    /// minus 40 for the IPv4 and TCP headers without options). Called at connection set-up.
    virtual std::uint16_t mss_for(tcp_ipv4 dst) = 0;
    /// Does the device fill TCP checksums on transmit (see send_segment)?
    virtual bool tx_checksum_offload() const noexcept = 0;
    /// The largest TCP payload the device segments itself (TSO), 0 when it cannot (the default).
    /// When non-zero, send_segment may get a segment with more than one MSS of payload: its
    /// offload() then has tso_seg_size = the MSS and needs_csum = true (and the same protocol and
    /// tcp_hdr_len as above); the device cuts it into tso_seg_size pieces, each with a copy of the
    /// header (sequence numbers advanced, FIN/PSH only on the last) and its own checksum.
    virtual std::uint32_t tso_max_payload() const noexcept { return 0; }
    /// Transmit back-pressure (net::device::tx_room): how many more segments may go down now.
    /// After an answer of 0 the lower calls tcp::tx_ready() once room has freed; segments sent
    /// regardless (ACKs, RSTs, SYNs) still go out while the device's reserve lasts. The default
    /// never pushes back.
    virtual std::size_t tx_room() noexcept { return std::numeric_limits<std::size_t>::max(); }
    /// The shard that receives segments of the flow remote:remote_port -> local:local_port (the
    /// Toeplitz hash of the tuple as a received frame carries it, through the device's RETA:
    /// device::shard_of(device::flow_hash(remote, local, 4, remote_port, local_port))).
    virtual unsigned shard_of_flow(tcp_ipv4 remote, std::uint16_t remote_port, tcp_ipv4 local,
                                   std::uint16_t local_port) const noexcept = 0;
    /// The local address to connect from towards `dst` (the interface address). 0: no route, and
    /// connect() fails with ENETUNREACH.
    virtual tcp_ipv4 source_address_for(tcp_ipv4 dst) = 0;
};

enum class tcp_congestion_algorithm {
    newreno,  ///< RFC 5681 + RFC 6582
    cubic,    ///< RFC 9438
};

/// Settings of one `tcp` instance (one shard). Defaults follow the RFCs and Linux; tests shorten
/// the timers.
struct tcp_config {
    std::chrono::milliseconds rto_initial{1000};  ///< RFC 6298 2.1
    std::chrono::milliseconds rto_min{200};       ///< Linux's minimum (RFC 6298 2.4 says 1 s)
    std::chrono::milliseconds rto_max{60000};     ///< RFC 6298 2.5 allows capping at >= 60 s
    /// Consecutive RTOs of one segment before the connection is aborted with ETIMEDOUT (RFC 9293
    /// 3.8.3 R2; Linux's tcp_retries2).
    unsigned max_retransmits = 15;
    /// SYN / SYN-ACK retransmissions before giving up (connect fails with ETIMEDOUT; a half-open
    /// passive connection is dropped).
    unsigned max_syn_retransmits = 6;
    std::chrono::milliseconds delayed_ack{40};   ///< RFC 5681 4.2: < 500 ms
    std::chrono::milliseconds time_wait{60000};  ///< 2 MSL (RFC 9293 3.4.2 TIME_WAIT)
    /// How long an orphaned connection (socket gone) may sit in FIN_WAIT_2 (Linux tcp_fin_timeout):
    /// bounds memory held by peers that never close.
    std::chrono::milliseconds fin_wait2_timeout{60000};
    std::size_t send_buffer_size = 1024 * 1024;  ///< default per-connection send buffer
    std::size_t recv_buffer_size = 1024 * 1024;  ///< default per-connection receive buffer
    bool window_scaling = true;                  ///< offer RFC 7323 window scaling
    bool timestamps = true;                      ///< offer RFC 7323 timestamps
    bool sack = true;                            ///< offer SACK-permitted (RFC 2018)
    tcp_congestion_algorithm congestion = tcp_congestion_algorithm::cubic;
    unsigned initial_window_segments = 10;  ///< RFC 6928
    /// New connections start with Nagle off, as the posix stack's do: output_stream coalesces
    /// writes already, so Nagle would only delay flushed replies. set_nodelay(false) turns it on.
    bool nodelay = true;
    bool syn_cookies = true;  ///< answer SYNs beyond the backlog with cookies
    /// RFC 5961 7: challenge ACKs sent per second, per shard, at most.
    unsigned challenge_ack_limit = 1000;
    tcp_keepalive_params keepalive{};  ///< defaults when set_keepalive(true)
    /// Every connection starts with keepalive on (set_keepalive(false) still turns it off).
    bool keepalive_by_default = false;
    /// Secret for ISNs and SYN cookies (RFC 6528's key). 0: random at start-up.
    std::uint64_t secret = 0;
    /// Local ports connect() picks from (inclusive).
    std::uint16_t ephemeral_port_min = 32768;
    std::uint16_t ephemeral_port_max = 60999;
};

/// Per-listener or per-connection overrides of tcp_config.
struct tcp_socket_options {
    std::optional<tcp_congestion_algorithm> congestion;
    std::size_t send_buffer_size = 0;  ///< 0: listen_options' or the config's
    std::size_t recv_buffer_size = 0;
};

/// Counters of one shard (what `netstat -s` shows for TCP). Plain integers, read on the shard.
struct tcp_stats {
    std::uint64_t active_opens = 0;        ///< connect() attempts (SYN sent)
    std::uint64_t passive_opens = 0;       ///< connections created by a listener (SYN-ACK sent or cookie)
    std::uint64_t attempt_fails = 0;       ///< connect()s that failed, half-open connections dropped
    std::uint64_t established_resets = 0;  ///< resets of established/close-wait connections
    std::uint64_t established = 0;         ///< connections that reached ESTABLISHED
    std::uint64_t segments_in = 0;         ///< segments received (valid checksum and header)
    std::uint64_t segments_out = 0;        ///< segments sent, retransmissions included
    std::uint64_t retransmitted_segments = 0;
    std::uint64_t fast_retransmits = 0;  ///< retransmissions by loss recovery (not RTO)
    std::uint64_t rto_expirations = 0;
    std::uint64_t sack_recoveries = 0;  ///< RFC 6675 recovery episodes
    std::uint64_t reno_recoveries = 0;  ///< RFC 6582 recovery episodes
    std::uint64_t timeouts = 0;         ///< connections aborted after max_retransmits
    std::uint64_t keepalive_probes = 0;
    std::uint64_t keepalive_timeouts = 0;
    std::uint64_t zero_window_probes = 0;
    std::uint64_t delayed_acks = 0;  ///< ACKs sent by the delayed-ACK timer
    std::uint64_t round_acks = 0;    ///< ACKs of in-order data sent at the end of a reactor round
    std::uint64_t resets_sent = 0;
    std::uint64_t resets_received = 0;
    std::uint64_t challenge_acks = 0;             ///< RFC 5961 challenge ACKs sent
    std::uint64_t challenge_acks_suppressed = 0;  ///< over the RFC 5961 7 rate limit
    std::uint64_t syn_cookies_sent = 0;
    std::uint64_t syn_cookies_accepted = 0;
    std::uint64_t syn_cookies_failed = 0;  ///< ACKs to a listener with a bad cookie
    std::uint64_t listen_overflows = 0;    ///< SYNs dropped: accept queue full
    std::uint64_t time_wait_reused = 0;    ///< TIME_WAIT connections replaced by a new SYN
    std::uint64_t icmp_errors = 0;         ///< ICMP errors matching a connection
    std::uint64_t pmtu_updates = 0;
    // Drops, by reason.
    std::uint64_t drop_bad_checksum = 0;
    std::uint64_t drop_bad_header = 0;     ///< too short, data offset out of range
    std::uint64_t drop_bad_options = 0;    ///< option lengths that lie
    std::uint64_t drop_bad_flags = 0;      ///< SYN+FIN, no flags at all, SYN+RST...
    std::uint64_t drop_out_of_window = 0;  ///< unacceptable segments (RFC 9293 3.10.7.4 first)
    std::uint64_t drop_paws = 0;           ///< old timestamps (RFC 7323 5.3)
    std::uint64_t drop_bad_ack = 0;        ///< ACKs of data not sent, or too old (RFC 5961 5.2)
    std::uint64_t drop_no_socket = 0;      ///< nobody listens (answered with RST unless RST)
    std::uint64_t drop_listen_bad = 0;     ///< to a listener, neither a SYN nor a valid cookie ACK
    std::uint64_t drop_memory = 0;         ///< out-of-order data beyond the receive buffer
    std::uint64_t drop_icmp_invalid = 0;   ///< ICMP errors quoting a sequence not in flight
};

/// A snapshot of one connection (Linux's TCP_INFO), for tests and diagnostics.
struct tcp_info {
    const char* state = "";
    std::uint32_t mss = 0;          ///< send MSS (payload bytes per segment)
    std::uint32_t snd_wnd = 0;      ///< the peer's current window, scaled
    std::uint32_t max_snd_wnd = 0;  ///< largest window the peer offered
    std::uint32_t rcv_wnd = 0;      ///< the window we offer now, scaled
    std::uint8_t snd_wscale = 0, rcv_wscale = 0;
    bool timestamps = false, sack = false, wscale = false;
    std::uint64_t cwnd = 0, ssthresh = 0;  ///< bytes
    std::uint64_t max_in_flight = 0;       ///< largest number of unacknowledged bytes seen
    std::chrono::microseconds srtt{0}, rto{0};
    std::uint64_t retransmits = 0;  ///< segments retransmitted on this connection
    std::uint64_t rto_expirations = 0;
    std::uint64_t bytes_acked = 0, bytes_received = 0;
    std::uint64_t zero_window_probes = 0;
    std::size_t send_queued = 0;  ///< bytes in the send buffer (unsent + unacknowledged)
    std::size_t recv_queued = 0;  ///< bytes received, not yet read
    tcp_congestion_algorithm congestion = tcp_congestion_algorithm::cubic;
};

/// One entry of tcp::connections(): what `ss -ti` shows for a connection.
struct tcp_connection_snapshot {
    socket_address local;   ///< our address and port
    socket_address remote;  ///< the peer's
    /// State (tcp_info::state: "ESTABLISHED", "TIME_WAIT"...), send and receive queue bytes
    /// (send_queued: unsent + unacknowledged; recv_queued: received, not yet read), rto, cwnd,
    /// srtt, mss, windows and counters.
    tcp_info info;
};

class tcp_connection;
class tcp_listener;

/// The TCP of one shard. Owns every connection on the shard (sockets hold references). Must
/// outlive the sockets it made; destroying it aborts the connections left (no RST is sent) and
/// makes their sockets fail with ECONNABORTED.
class tcp {
public:
    /// `lower` must outlive this object.
    explicit tcp(tcp_lower& lower, tcp_config cfg = {});
    ~tcp();
    /// The graceful end of this shard's TCP, before it is destroyed (native_stack::stop, when the
    /// process exits): listeners stop accepting; connections whose data and FIN are still
    /// unacknowledged (FIN-WAIT-1, CLOSING, LAST-ACK: the app closed them, the peer has not heard
    /// it all yet) get up to `drain` to deliver them; then every connection still open, in
    /// whatever state, is reset (RST), so no peer keeps waiting for a host that has gone. TIME-WAIT
    /// connections are left to the destructor. Never fails.
    future<> shutdown(std::chrono::milliseconds drain);
    tcp(const tcp&) = delete;
    tcp& operator=(const tcp&) = delete;

    // ---- the socket API (network_stack::listen/connect map to these)

    /// Listen on sa (IPv4; address 0.0.0.0 = any local address; port 0 picks an ephemeral one).
    /// Accepted sockets use opts' buffer sizes and `extra`. Throws std::system_error naming the
    /// address: EADDRINUSE if this shard listens there already, EAFNOSUPPORT for non-IPv4.
    server_socket listen(socket_address sa, listen_options opts = {}, tcp_socket_options extra = {});
    /// Actively open a connection to `remote` (IPv4) from `local` (0.0.0.0:0 = the lower's source
    /// address and a free port that hashes back to this shard). Fails with std::system_error
    /// naming the remote: ECONNREFUSED (RST or ICMP port unreachable), ETIMEDOUT (no SYN-ACK after
    /// max_syn_retransmits), EHOSTUNREACH/ENETUNREACH (ICMP, no route), EADDRINUSE (the 4-tuple
    /// exists, TIME_WAIT included), EADDRNOTAVAIL (no free port).
    future<connected_socket> connect(socket_address remote, socket_address local = {}, tcp_socket_options extra = {});

    // ---- from the IP layer

    /// A received segment (after IP validation, reassembly and the IP header stripped): `seg`
    /// starts with the TCP header. `src` is the remote address, `dst` ours. The checksum is checked
    /// here unless `checksum_verified` (the device did it and drops bad ones). Every malformed
    /// segment is dropped and counted by reason (tcp_stats::drop_*), never thrown.
    void received(tcp_ipv4 src, tcp_ipv4 dst, packet seg, bool checksum_verified = false);
    /// An ICMP error about a segment we sent (see tcp_icmp_error). Unmatched or invalid ones are
    /// counted and ignored.
    void icmp_error(const tcp_icmp_error& e);
    /// The lower has room again after a tx_room() of 0: the connections that stopped sending for
    /// it resume, oldest first, until one is stopped again.
    void tx_ready();

    // ---- introspection

    const tcp_stats& stats() const noexcept { return _stats; }
    const tcp_config& config() const noexcept { return _cfg; }
    /// Connections in the table (every state but LISTEN, TIME_WAIT included).
    std::size_t connection_count() const noexcept { return _conns.size(); }
    /// Connections in TIME_WAIT.
    std::size_t time_wait_count() const noexcept;
    /// A snapshot of every connection of this shard (every state but LISTEN, TIME_WAIT
    /// included), in no particular order; copies, valid after the connections change. For the
    /// control agent's `stack.connections` (which gathers it from every shard with submit_to).
    std::vector<tcp_connection_snapshot> connections() const;

    // ---- internal, for tcp_connection and tcp_listener
    struct four_tuple {
        tcp_ipv4 local_addr = 0, remote_addr = 0;
        std::uint16_t local_port = 0, remote_port = 0;
        friend bool operator==(const four_tuple&, const four_tuple&) = default;
    };
    struct tuple_hash {
        std::size_t operator()(const four_tuple& t) const noexcept;
    };
    tcp_lower& lower() noexcept { return _lower; }
    tcp_stats& mutable_stats() noexcept { return _stats; }
    /// Remove connection `c` from the table (CLOSED, or TIME_WAIT expired); a newer connection
    /// that took over the tuple stays.
    void forget(const four_tuple& t, const tcp_connection* c) noexcept;
    /// RFC 5961 7: may another challenge ACK go out now?
    bool challenge_ack_allowed() noexcept;
    /// Answer a segment that matches no connection with a RST (RFC 9293 3.10.7.1). `local` and
    /// `remote` as in the tuple; `h` is the offending segment's header, `seg_len` its SEG.LEN.
    void send_reset(tcp_ipv4 local, tcp_ipv4 remote, const tcp_header& h, std::uint32_t seg_len);
    /// Build and send a segment outside any connection (RSTs, cookie SYN-ACKs): options, checksum
    /// (or its offload) filled here.
    void send_raw(tcp_ipv4 local, tcp_ipv4 remote, const tcp_header& h, const tcp_options& o);
    /// A listener was destroyed.
    void unlisten(tcp_listener* l) noexcept;
    /// `c` stopped sending because tx_room() was 0: it runs its output again from tx_ready().
    void wait_for_tx(tcp_connection& c);
    /// `c` owes the peer an ACK of in-order data (RFC 5681 4.2: every second segment). It goes
    /// out when this reactor round's pollers have run, unless a segment of `c` carries it first.
    void owe_ack(tcp_connection& c);
    /// Timestamp clock (RFC 7323 5.4): milliseconds, from now().
    std::uint32_t ts_now() const noexcept;
    /// The steady clock, as read once for the pass in progress (time_scope), else read now.
    std::chrono::steady_clock::time_point now() const noexcept {
        return _now_valid ? _now : std::chrono::steady_clock::now();
    }
    /// While the outermost of nested scopes lives, now() and ts_now() give the time read when it
    /// was made: one clock read for a received segment and what is sent in answer, or for one
    /// output pass, instead of one per timestamp, RTT sample and timer (a vDSO read each: they
    /// were 8% of a bulk transfer's time).
    class time_scope {
        tcp& _t;
        bool _outer;

    public:
        explicit time_scope(tcp& t) noexcept : _t(t), _outer(!t._now_valid) {
            if (_outer) {
                _t._now = std::chrono::steady_clock::now();
                _t._now_valid = true;
            }
        }
        ~time_scope() {
            if (_outer) {
                _t._now_valid = false;
            }
        }
        time_scope(const time_scope&) = delete;
        time_scope& operator=(const time_scope&) = delete;
    };
    /// RFC 6528 initial sequence number for a tuple.
    tcp_seq initial_sequence(const four_tuple& t) const noexcept;

private:
    struct listen_key {
        tcp_ipv4 addr;
        std::uint16_t port;
        friend bool operator==(const listen_key&, const listen_key&) = default;
    };
    struct listen_key_hash {
        std::size_t operator()(const listen_key& k) const noexcept {
            return std::hash<std::uint64_t>()((std::uint64_t(k.addr) << 16) | k.port);
        }
    };

    tcp_lower& _lower;
    tcp_config _cfg;
    tcp_stats _stats;
    std::uint64_t _secret[2];
    std::unordered_map<four_tuple, lw_shared_ptr<tcp_connection>, tuple_hash> _conns;
    std::unordered_map<listen_key, tcp_listener*, listen_key_hash> _listeners;
    // Connections stopped by back-pressure, in the order they stopped (each at most once:
    // tcp_connection::_tx_waiting). A ring, so that a steady flow of waits does not allocate.
    circular_buffer<lw_shared_ptr<tcp_connection>> _tx_waiters;
    // Connections owing an ACK of in-order data, each once (tcp_connection::_ack_owed), and the
    // poller that sends them; made on first use, as a `tcp` may exist before its reactor runs.
    std::vector<lw_shared_ptr<tcp_connection>> _acks_owed, _acks_flushing;
    std::unique_ptr<poller> _ack_poller;
    std::mt19937_64 _rng;
    std::chrono::steady_clock::time_point _start;
    std::chrono::steady_clock::time_point _now;  // valid while a time_scope lives
    bool _now_valid = false;
    // RFC 5961 7 rate limit: count in the current second.
    std::int64_t _challenge_second = -1;
    unsigned _challenge_count = 0;

    friend class tcp_connection;
    friend class tcp_listener;

    tcp_listener* find_listener(tcp_ipv4 addr, std::uint16_t port) noexcept;
    void listen_input(tcp_listener& l, const four_tuple& t, tcp_segment& seg);
    bool accept_syn_cookie(tcp_listener& l, const four_tuple& t, tcp_segment& seg);
    void send_syn_cookie(tcp_listener& l, const four_tuple& t, const tcp_segment& syn);
    std::uint32_t cookie_hash(const four_tuple& t, std::uint32_t counter, std::uint32_t peer_isn) const noexcept;
    std::uint32_t cookie_counter() const noexcept;
    std::uint16_t pick_local_port(tcp_ipv4 local, tcp_ipv4 remote, std::uint16_t remote_port);
    std::uint16_t pick_listen_port(tcp_ipv4 addr);
    std::uint64_t keyed_hash(const void* data, std::size_t len) const noexcept;
    /// Per-connection timestamp offset (RFC 7323 7.1), a keyed hash of the tuple.
    std::uint32_t ts_offset(const four_tuple& t) const noexcept;
    /// Send the ACKs owed (the round's end: _ack_poller). False when none was owed.
    bool flush_owed_acks();
    class ack_flush_poller;
};

/// The state and counters of a socket made by a native `tcp` (nullopt for other sockets).
std::optional<tcp_info> native_tcp_info(const connected_socket& s);
/// Abort a native TCP connection at once: send a RST, drop both buffers, pending reads and writes
/// fail with ECONNABORTED (RFC 9293 3.10.5 ABORT). Throws std::invalid_argument for other sockets.
void native_tcp_abort(connected_socket& s);
/// Choose the congestion control of a native TCP connection (takes effect at once, keeping cwnd).
/// Throws std::invalid_argument for other sockets.
void native_tcp_set_congestion(connected_socket& s, tcp_congestion_algorithm algo);

}  // namespace reef::net
