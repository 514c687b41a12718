// An in-memory connected socket pair, for testing protocols (TLS, HTTP, RPC) without a network
// stack: what one end writes, the other reads, through bounded byte queues.
//
//   auto [client, server] = net::make_memory_socket_pair();
//   auto out = client.output();
//   auto in = server.input();
//
// Behaviour, chosen to match a TCP socket wherever the difference could hide a bug:
//  - Single-shard, like every socket: both ends, their streams and buffers live on the shard that
//    made the pair. No reactor poller or timer is involved; every wake-up is a scheduled
//    continuation, so runs are deterministic.
//  - Written buffers are passed to the peer without copying (the reader may get them split into
//    pieces of at most its connected_socket_input_stream_config::buffer_size bytes).
//  - Back-pressure: each direction holds at most `buffer_limit` unread bytes; a put() that leaves
//    more than that waits until the reader has brought it back to the limit. (Two ends that both
//    write more than the limit before reading deadlock, exactly as over TCP.)
//  - shutdown_output() and the output stream's close() are a FIN: the peer reads what was written
//    and then end of stream; a later write on this end fails with std::system_error(EPIPE).
//  - shutdown_input() and the input stream's close(): this end's pending and later reads return
//    end of stream; data the peer writes from then on is dropped (its writes still succeed).
//  - Destroying an end: the peer reads what was written, then end of stream; the peer's later
//    writes fail with std::system_error(EPIPE). wait_input_shutdown() of the peer resolves.
//  - memory_socket_reset(): a connection reset. Every pending and later read and write on both
//    ends fails with std::system_error(ECONNRESET).
//  - Two reads (or two writes) in flight on one end at a time is misuse (as for any stream):
//    the second fails with std::logic_error.
//  - Socket options (nodelay, keepalive) are stored and read back; they change nothing.
#pragma once

#include "stack/net/api.hh"
#include "stack/net/socket_address.hh"

#include <cstddef>
#include <utility>

namespace reef::net {

struct memory_socket_options {
    /// Unread bytes one direction holds before a writer waits (see back-pressure above). Must be
    /// at least 1.
    std::size_t buffer_limit = 64 * 1024;
    /// The first end's address (the second end's remote_address()).
    socket_address first_address = socket_address::unix_path("@reef-memory-socket/first");
    /// The second end's address (the first end's remote_address()).
    socket_address second_address = socket_address::unix_path("@reef-memory-socket/second");
};

/// Two connected sockets joined in memory: bytes written to `first` are read from `second` and
/// the other way round. Call on the shard that will use them. Throws std::invalid_argument if
/// opts.buffer_limit is 0.
std::pair<connected_socket, connected_socket> make_memory_socket_pair(memory_socket_options opts = {});

/// Simulate a connection reset on the pair `s` belongs to (either end; the other end may already
/// be destroyed): pending and later reads and writes on both ends fail with
/// std::system_error(ECONNRESET), and both ends' wait_input_shutdown() resolve. Throws
/// std::invalid_argument if `s` is not a memory socket.
void memory_socket_reset(connected_socket& s);

/// Bytes written to `s`'s peer-bound direction that the peer has not read yet (for tests of
/// back-pressure). Throws std::invalid_argument if `s` is not a memory socket.
std::size_t memory_socket_unread_by_peer(const connected_socket& s);

}  // namespace reef::net
