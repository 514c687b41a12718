// reef-memcached's UDP fast path (--udp-fastpath): a packet hook on the DPDK device that answers
// memcached UDP requests straight from the received frame, without the network stack, a socket or
// a future (the seed's "packet filter" path).
//
// What is answered: an untagged Ethernet frame to the device's MAC carrying a whole IPv4 datagram
// (no fragment, valid header checksum) of UDP to `port` (and to `address` when one is set), whose
// payload is one memcached UDP request (frame header: sequence 0 of 1 datagram) holding exactly
// one text or binary get (one key) or set, for a key this shard owns. The reply is written over
// the request in the same buffer (MACs, addresses and ports swapped; IPv4 total length, header
// checksum, UDP length and checksum recomputed) when it fits in one datagram of at most 1400
// bytes of memcached payload and in the buffer's room; the hook returns hook_action::reply.
//
// Everything else (another shard's key, a multi-key get, a reply too large, other commands, any
// frame not addressed to us) passes on to the stack unchanged, where the normal UDP path serves it.
// Malformed frames are counted and passed on too; nothing here trusts a length before checking it.
#pragma once

#include "apps/memcached/server.hh"
#include "runtime/sharded.hh"
#include "stack/net/device.hh"

#include <cstddef>
#include <cstdint>
#include <optional>

namespace reef::memcached {

struct fast_path_stats {
    std::uint64_t answered = 0;   ///< requests answered in place
    std::uint64_t malformed = 0;  ///< IPv4/UDP frames with inconsistent headers (passed on)
    std::uint64_t passed = 0;     ///< frames left to the stack
};

enum class fast_path_verdict { answered, malformed, not_ours };

/// The fast path's decision and rewrite, without the device: checks the frame (`len` bytes at
/// `frame`, `room` usable) as described above and, when it can, runs the request on `cache` (which
/// must be the calling shard's: keys of another shard, per shard_of(hash, shards) != shard, are
/// not served) and rewrites the frame into the reply, setting `len` to its length.
/// `port` in host order; `address` IPv4 in network order or nullopt for any.
fast_path_verdict answer_in_place(char* frame, std::size_t& len, std::size_t room, const net::ethernet_address& own_mac,
                                  std::uint16_t port, std::optional<std::uint32_t> address, cache_shard& cache,
                                  unsigned shard, unsigned shards, server_stats* stats) noexcept;

/// One shard's fast path. Run one per shard with sharded<udp_fast_path>; install() on each.
class udp_fast_path {
    std::uint16_t _port;
    std::optional<std::uint32_t> _address;
    sharded<memcached_server>* _servers;
    fast_path_stats _stats;
    bool _installed = false;

public:
    udp_fast_path(std::uint16_t port, std::optional<std::uint32_t> address, sharded<memcached_server>* servers)
        : _port(port), _address(address), _servers(servers) {}

    /// Set this shard's packet hook on reef::app::device() (which must exist: --dpdk-pmd). The
    /// hook refers to this object and to this shard's server: uninstall() before either goes.
    void install();
    /// Remove the hook (if installed and the device is still there). Idempotent.
    void uninstall() noexcept;
    future<> stop() {
        uninstall();
        return make_ready_future<>();
    }
    const fast_path_stats& stats() const noexcept { return _stats; }
};

}  // namespace reef::memcached
