// The socket API every Reef app is written against. One API, two backends (network_stack): the
// posix stack (kernel sockets) and the native stack (Reef's own TCP/IP over a net::device). Apps
// call the free functions at the bottom (listen, connect, make_udp_channel); they never name a
// backend: start_network_stack() (stack/net/stack_options.hh) installs one on every shard.
//
// Contract, for every type here:
//  - Single-shard: a socket, its streams and its futures belong to the shard that created them.
//    Each shard has its own stack instance; a listening socket exists once per shard.
//  - Move-only handles; a moved-from handle must not be used.
//  - Errors travel in futures as std::system_error with the errno and text saying what failed
//    (e.g. "connect to 127.0.0.1:9: Connection refused"). A reset by the peer surfaces on the
//    reading side as std::system_error(ECONNRESET) rather than a silent end of stream.
//  - Streams: at most one read and one write in flight per socket, as for any input/output
//    stream; close() the output stream (which flushes) before dropping a socket you wrote to.
#pragma once

#include "runtime/future.hh"
#include "runtime/iostream.hh"
#include "stack/net/packet.hh"
#include "stack/net/socket_address.hh"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace reef::net {

/// TCP keepalive parameters (the kernel's TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT).
struct tcp_keepalive_params {
    std::chrono::seconds idle{7200};
    std::chrono::seconds interval{75};
    unsigned count = 9;
};

/// How connections are spread over shards.
enum class load_balancing {
    /// Every shard listens on the same address; the stack (SO_REUSEPORT in the kernel, the flow
    /// hash in the native stack) gives each connection to one of them. The default.
    per_shard,
    /// Only the listening shard accepts; use it for a listener that exists on one shard only.
    single_shard,
};

struct listen_options {
    bool reuse_address = true;  ///< SO_REUSEADDR: rebind while old connections sit in TIME_WAIT
    int backlog = 1024;         ///< pending-connection queue length
    load_balancing lb = load_balancing::per_shard;
    /// Receive/send buffer sizes for accepted sockets (0: the stack's default).
    std::size_t recv_buffer_size = 0;
    std::size_t send_buffer_size = 0;
};

/// Per-connection input configuration.
struct connected_socket_input_stream_config {
    /// Bytes read per receive (the posix stack's read size; a hint for the native stack).
    std::size_t buffer_size = 16384;
};

// ------------------------------------------------------------------------------------------------
// Backend interfaces (implemented by stacks; apps use the handles below)

class connected_socket_impl {
public:
    virtual ~connected_socket_impl() = default;
    virtual data_source source(const connected_socket_input_stream_config& cfg) = 0;
    virtual data_sink sink() = 0;
    virtual void shutdown_input() = 0;
    virtual void shutdown_output() = 0;
    virtual void set_nodelay(bool on) = 0;
    virtual bool get_nodelay() const = 0;
    virtual void set_keepalive(bool on) = 0;
    virtual bool get_keepalive() const = 0;
    virtual void set_keepalive_parameters(const tcp_keepalive_params& p) = 0;
    virtual tcp_keepalive_params get_keepalive_parameters() const = 0;
    virtual socket_address local_address() const noexcept = 0;
    virtual socket_address remote_address() const noexcept = 0;
    /// Resolves when the peer has closed its side or the socket failed (for idle connections).
    virtual future<> wait_input_shutdown() = 0;
};

/// A connected stream socket (TCP, or a unix-domain stream on the posix stack).
class connected_socket {
    std::unique_ptr<connected_socket_impl> _impl;

public:
    connected_socket() noexcept = default;
    explicit connected_socket(std::unique_ptr<connected_socket_impl> impl) noexcept : _impl(std::move(impl)) {}
    connected_socket(connected_socket&&) noexcept = default;
    connected_socket& operator=(connected_socket&&) noexcept = default;
    ~connected_socket();

    /// The socket's input. Call once; the stream must be closed (or the socket shut down for
    /// input) before the socket is destroyed if a read may be pending.
    input_stream<char> input(connected_socket_input_stream_config cfg = {});
    /// The socket's output. Call once. Writes smaller than `buffer_size` are coalesced; a
    /// flush() or a full buffer sends (writev of whole buffers, no copy of large writes).
    output_stream<char> output(std::size_t buffer_size = 8192);

    /// Stop receiving: a pending read returns end of stream. The other direction is untouched.
    void shutdown_input();
    /// Send FIN after what has been written so far (half-close); reads keep working.
    void shutdown_output();
    /// TCP_NODELAY: send small writes at once rather than waiting to coalesce (Nagle).
    void set_nodelay(bool on);
    bool get_nodelay() const;
    /// SO_KEEPALIVE and its parameters.
    void set_keepalive(bool on);
    bool get_keepalive() const;
    void set_keepalive_parameters(const tcp_keepalive_params& p);
    tcp_keepalive_params get_keepalive_parameters() const;
    socket_address local_address() const noexcept;
    socket_address remote_address() const noexcept;
    future<> wait_input_shutdown();

    explicit operator bool() const noexcept { return bool(_impl); }
    connected_socket_impl* impl() const noexcept { return _impl.get(); }
};

struct accept_result {
    connected_socket connection;
    socket_address remote_address;
};

class server_socket_impl {
public:
    virtual ~server_socket_impl() = default;
    virtual future<accept_result> accept() = 0;
    virtual void abort_accept() = 0;
    virtual socket_address local_address() const noexcept = 0;
};

/// A listening socket on this shard.
class server_socket {
    std::unique_ptr<server_socket_impl> _impl;

public:
    server_socket() noexcept = default;
    explicit server_socket(std::unique_ptr<server_socket_impl> impl) noexcept : _impl(std::move(impl)) {}
    server_socket(server_socket&&) noexcept = default;
    server_socket& operator=(server_socket&&) noexcept = default;
    ~server_socket();

    /// The next connection. Only one accept() may be pending. After abort_accept() (or when the
    /// socket is destroyed) a pending and every later accept fails with std::system_error
    /// (ECONNABORTED).
    future<accept_result> accept();
    /// Stop accepting; wakes a pending accept() with an error. Idempotent.
    void abort_accept();
    /// The bound address (with the port the stack chose when listening on port 0).
    socket_address local_address() const noexcept;
    explicit operator bool() const noexcept { return bool(_impl); }
};

/// A received UDP datagram.
struct datagram {
    packet data;
    socket_address src;
    socket_address dst;   ///< the local address it was sent to (when the stack knows it)
    bool truncated = false;  ///< the datagram was larger than the channel's receive size
};

struct udp_channel_options {
    /// Largest datagram received without truncation; longer ones are cut and flagged.
    std::size_t max_datagram_size = 65507;
    /// Datagrams taken from the kernel per system call (recvmmsg/sendmmsg) on the posix stack.
    unsigned batch = 32;
    bool reuse_address = false;
    /// SO_REUSEPORT: every shard may bind the same address (the kernel spreads by flow).
    bool reuse_port = false;
};

class udp_channel_impl {
public:
    virtual ~udp_channel_impl() = default;
    virtual socket_address local_address() const = 0;
    virtual future<datagram> receive() = 0;
    virtual future<> send(const socket_address& dst, packet p) = 0;
    virtual void shutdown_input() = 0;
    virtual void shutdown_output() = 0;
    virtual bool is_closed() const = 0;
    virtual void close() = 0;
};

/// A UDP socket on this shard.
class udp_channel {
    std::unique_ptr<udp_channel_impl> _impl;

public:
    udp_channel() noexcept = default;
    explicit udp_channel(std::unique_ptr<udp_channel_impl> impl) noexcept : _impl(std::move(impl)) {}
    udp_channel(udp_channel&&) noexcept = default;
    udp_channel& operator=(udp_channel&&) noexcept = default;
    ~udp_channel();

    socket_address local_address() const;
    /// The next datagram. One receive() at a time. After shutdown_input()/close() it fails with
    /// std::system_error(ECONNABORTED).
    future<datagram> receive();
    /// Send one datagram (the packet's fragments are gathered, not copied). The future resolves
    /// when the stack has taken the datagram; sends may be batched with others of the same task
    /// batch. Fails with std::system_error (e.g. EMSGSIZE) naming the destination.
    future<> send(const socket_address& dst, packet p);
    future<> send(const socket_address& dst, std::string_view data);
    void shutdown_input();
    void shutdown_output();
    bool is_closed() const;
    /// Shut down both directions and release the socket.
    void close();
    explicit operator bool() const noexcept { return bool(_impl); }
};

// ------------------------------------------------------------------------------------------------
// Stacks

/// Per-stack statistics of this shard (counters for metrics).
struct stack_stats {
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_connected = 0;
    std::uint64_t connections_closed = 0;
    std::uint64_t connections_failed = 0;  ///< connect errors and resets
    std::uint64_t bytes_received = 0;
    std::uint64_t bytes_sent = 0;
    std::uint64_t datagrams_received = 0;
    std::uint64_t datagrams_sent = 0;
    std::uint64_t datagrams_truncated = 0;
    std::uint64_t receive_calls = 0;  ///< read/recvmmsg system calls (posix)
    std::uint64_t send_calls = 0;     ///< writev/sendmmsg system calls (posix)
};

/// A network stack instance on one shard.
class network_stack {
public:
    virtual ~network_stack() = default;
    /// "posix" or "native".
    virtual std::string_view name() const noexcept = 0;
    /// Listen on `sa` on this shard. Throws std::system_error naming the address when it cannot
    /// (e.g. "listen on 127.0.0.1:80: Address already in use").
    virtual server_socket listen(socket_address sa, listen_options opts) = 0;
    /// Connect to `sa`, from `local` when given. Fails with std::system_error naming the address.
    virtual future<connected_socket> connect(socket_address sa, socket_address local) = 0;
    virtual udp_channel make_udp_channel(const socket_address& local, const udp_channel_options& opts) = 0;
    virtual bool supports_ipv6() const noexcept = 0;
    virtual const stack_stats& stats() const noexcept = 0;
    /// The graceful end before the stack is destroyed (the at_exit hook of start_network_stack
    /// runs it, after the app's hooks closed its sockets): a stack that outlives its sockets'
    /// close (the native TCP) gets a bounded time to deliver what they queued, then resets what
    /// is left so peers do not wait for a host that is gone. Never fails. The posix stack has
    /// nothing to do: the kernel keeps delivering after close.
    virtual future<> stop() { return make_ready_future<>(); }
};

/// This shard's stack. Throws std::logic_error if none was started on this shard.
network_stack& local_stack();
/// Is a stack installed on this shard?
bool has_local_stack() noexcept;
/// Install `s` as this shard's stack (replacing and destroying an earlier one). Used by
/// start_network_stack(); tests may install a stack of their own.
void set_local_stack(std::unique_ptr<network_stack> s);
/// Destroy this shard's stack. Sockets of it must be gone.
void reset_local_stack() noexcept;

/// Convenience forms on this shard's stack.
server_socket listen(socket_address sa, listen_options opts = {});
future<connected_socket> connect(socket_address sa, socket_address local = {});
udp_channel make_udp_channel(const socket_address& local = {}, const udp_channel_options& opts = {});

}  // namespace reef::net
