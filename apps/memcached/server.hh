// reef-memcached's per-shard server: the shard's part of the cache, its TCP listener and its UDP
// channel. Run one per shard with sharded<memcached_server>; every shard listens on the same
// address (load balanced by the stack) and owns the keys that hash to it (shard_of(key_hash)).
//
// A request arriving on a shard that does not own its key runs on the owner through
// smp::submit_to (the keys of one multi-get going to the same shard travel in one message);
// requests whose keys are all local run at once, with no message and no coroutine frame. Requests of one connection are
// answered in order: the next request is parsed only once the previous one has been answered.
//
// Contract: start() with the sharded<> that holds every shard's instance (for forwarding and
// for the commands that span shards: flush_all, stats); listen()/bind_udp() then serve() on each
// shard; stop() ends everything (connections see their input shut down and finish the request
// in hand).
#pragma once

#include "apps/memcached/protocol.hh"
#include "apps/memcached/storage.hh"
#include "runtime/future.hh"
#include "runtime/gate.hh"
#include "runtime/metrics.hh"
#include "runtime/scheduling.hh"
#include "runtime/sharded.hh"
#include "runtime/timer.hh"
#include "stack/net/api.hh"

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace reef::memcached {

struct server_config {
    std::size_t memory_per_shard = 64u << 20;  ///< this shard's share of -m
    std::size_t max_item_size = 1u << 20;      ///< -I
    std::size_t max_connections = 1024;        ///< this shard's share of -c
    std::size_t total_memory = 64u << 20;      ///< -m (for stats)
    std::size_t total_connections = 1024;      ///< -c (for stats)
    scheduling_group sweep_group;              ///< where the periodic expiry sweep runs
};

/// Counters of one shard's server (besides the cache's).
struct server_stats {
    std::uint64_t curr_connections = 0, total_connections = 0, rejected_connections = 0;
    std::uint64_t bytes_read = 0, bytes_written = 0;
    std::uint64_t udp_requests = 0, udp_bad_frames = 0, udp_replies = 0, udp_send_errors = 0;
    std::uint64_t forwarded_ops = 0;  ///< key operations run on another shard
    std::uint64_t cmd_meta = 0, cmd_binary = 0, cmd_text = 0;
    std::uint64_t fastpath_gets = 0, fastpath_sets = 0;

    server_stats& operator+=(const server_stats& o) noexcept;
};

/// One shard's view for stats: everything summed by `stats`.
struct shard_report {
    cache_stats cache;
    server_stats server;
    lsa::region_stats region;
    std::size_t memory_limit = 0;
};

/// The server clock every shard reads (set up once before the shards start).
server_clock& clock() noexcept;

class memcached_server {
    server_config _cfg;
    sharded<memcached_server>* _all = nullptr;
    cache_shard _cache;
    net::server_socket _listener;
    net::udp_channel _udp;
    gate _gate;
    std::unordered_set<net::connected_socket*> _live;
    server_stats _stats;
    timer<lowres_clock> _sweep_timer;
    timer<lowres_clock> _flush_timer;
    metrics::metric_groups _metrics;
    bool _stopping = false;

    void register_metrics();

    future<> accept_loop(gate::holder h);
    future<> handle_connection(net::connected_socket s, net::socket_address peer, gate::holder h);
    future<> udp_loop(gate::holder h);
    future<> handle_datagram(net::datagram d);

public:
    memcached_server(server_config cfg, sharded<memcached_server>* all);

    /// Listen for TCP on `addr` on this shard (load balanced with the other shards). Throws
    /// std::system_error naming the address.
    void listen(net::socket_address addr);
    /// Open the UDP channel (SO_REUSEPORT). Throws std::system_error naming the address.
    void bind_udp(net::socket_address addr);
    /// Start the accept loop, the UDP loop and the expiry sweep, and register this shard's metrics
    /// (memcached_*: hits, misses, evictions, items, bytes, connections, commands by protocol,
    /// LSA segments). Call once.
    void serve();
    /// Stop accepting, end every connection and the UDP loop; resolves when all finished.
    future<> stop();

    net::socket_address tcp_address() const noexcept { return _listener.local_address(); }
    std::optional<net::socket_address> udp_address() const;

    /// Run one request's processing: the reply of `c` is appended to `out`. Returns false when
    /// the connection must close after sending `out`. Runs keyed ops on their owner shards. With
    /// `stream`, a long multi-get reply is written to it in parts as it is built (`out` is then
    /// emptied); without, such a reply is capped (SERVER_ERROR out of memory writing get response).
    future<bool> run_command(command& c, std::string& out, output_stream<char>* stream = nullptr);
    /// Run the ops of `c` on their owner shards (one message per remote shard); `results` gets one
    /// entry per op, in order.
    future<> run_ops(command& c, std::vector<op_result>& results);
    /// The keyed ops of `c` (all owned by this shard) run here, at once, at server time `now`.
    void run_local(command& c, std::vector<op_result>& results, std::uint32_t now);
    /// True when every op of `c` belongs to this shard.
    bool all_local(const command& c) const noexcept;

    /// Invalidate every item now (delay 0) or after `delay` seconds, on this shard.
    void flush(std::int64_t delay);
    /// Zero this shard's counters (stats reset).
    void reset_stats() noexcept;
    shard_report report() const;
    /// Every shard's report summed, as memcached's `stats <arg>` lines; nullopt for an unknown arg.
    future<std::optional<std::vector<stat_line>>> gather_stats(std::string arg);

    cache_shard& cache() noexcept { return _cache; }
    server_stats& stats() noexcept { return _stats; }
    const server_config& config() const noexcept { return _cfg; }
};

}  // namespace reef::memcached
