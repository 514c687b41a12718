// The posix network stack: kernel sockets driven by the reactor's epoll (runtime/pollable_fd.hh).
// No thread per connection; every shard listens on the same address with SO_REUSEPORT so the
// kernel spreads connections over shards; stream writes are gathered into one sendmsg per batch
// of buffers; UDP moves batches of datagrams per recvmmsg/sendmmsg.
#pragma once

#include "runtime/shared_ptr.hh"
#include "stack/net/api.hh"

#include <memory>

namespace reef::net {

/// A posix stack for the calling shard (install it with set_local_stack, or let
/// start_network_stack pick it with --network-stack posix). Stream sockets get TCP_NODELAY by
/// default: output_stream already coalesces small writes, so Nagle would only add latency.
std::unique_ptr<network_stack> make_posix_stack();

namespace posix {

/// UDP channel over a kernel socket (used by the posix stack's make_udp_channel).
udp_channel make_udp_channel(const socket_address& local, const udp_channel_options& opts,
                             lw_shared_ptr<stack_stats> stats);

}  // namespace posix

}  // namespace reef::net
