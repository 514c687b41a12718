// Pushing the metrics registry to collectd with its binary network protocol (what collectd's
// "network" plugin listens for, UDP port 25826 by default).
//
// Every period, shard 0 collects every shard's metrics (metrics::collect) and sends them as UDP
// datagrams of at most 1452 bytes. Each value is identified as
//     <host>/reef[-<instance>]/<type>-<type_instance>
// where type is "derive" for counters (collectd computes the rate), "gauge" for gauges, and for a
// histogram "derive" for <name>_count and "gauge" for <name>_sum; type_instance is the metric's
// name followed by ".<label>_<value>" for each label ("shard" included), with characters other
// than [A-Za-z0-9_.:] replaced by '_' and cut to collectd's 127-byte limit. Both types are in
// collectd's standard types.db.
//
// The packets carry, in order: host, time_hr, interval_hr, plugin, plugin_instance (at the start of
// each packet), then type, type_instance and a one-value values part per sample. Numbers in part
// headers, times and DERIVE values are big-endian; GAUGE values are little-endian doubles, as the
// protocol specifies.
//
// The socket is a kernel UDP socket of shard 0 (the runtime does not depend on the network stack),
// so collectd must be reachable through the kernel even when the native stack owns the NIC.
#pragma once

#include "runtime/future.hh"
#include "runtime/metrics.hh"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace reef::metrics {

struct collectd_options {
    /// Where collectd listens: "host:port" or "[v6]:port" (a name is resolved once, at start).
    std::string address;
    /// How often values are sent (> 0).
    std::chrono::milliseconds period{std::chrono::seconds(10)};
    /// The host field; empty: this machine's host name.
    std::string host;
    /// The plugin instance (e.g. the program name); empty: none.
    std::string instance;
    /// Only metrics whose name starts with this are sent ("": all).
    std::string prefix;
};

/// What the exporter did (on shard 0).
struct collectd_stats {
    std::uint64_t pushes = 0;  ///< collections sent
    std::uint64_t packets_sent = 0;
    std::uint64_t values_sent = 0;
    std::uint64_t send_errors = 0;  ///< datagrams the kernel refused (e.g. ECONNREFUSED, ENOBUFS)
    std::uint64_t collect_errors = 0;
};

/// Largest datagram sent: collectd's default buffer size (Ethernet MTU minus IPv6 and UDP headers).
inline constexpr std::size_t collectd_max_packet = 1452;

/// Start pushing to collectd every `opts.period`; the first push happens one period after the
/// start. Call on shard 0 of a running smp. Fails with std::invalid_argument for a malformed
/// address, an unknown host or a non-positive period; with std::logic_error if already started
/// (stop first). The metrics of every shard are read at each push.
future<> start_collectd_export(collectd_options opts);
/// Stop pushing (waits for a push in progress) and close the socket. Call on shard 0 (at exit of
/// the app, before the shards stop). Does nothing when not started.
future<> stop_collectd_export();
/// Send one push now (in addition to the periodic ones) and wait for it. Shard 0, after start.
future<> push_collectd_now();
/// The exporter's counters (shard 0; zero when never started).
collectd_stats get_collectd_stats() noexcept;

/// The packets for `families` (exposed for tests): each at most collectd_max_packet bytes, each
/// starting with the host/time/interval/plugin parts. `time` and `interval` in seconds.
std::vector<std::string> encode_collectd(const std::vector<metric_family>& families, const std::string& host,
                                         const std::string& instance, double time, double interval);

}  // namespace reef::metrics
