// The native network stack: Reef's own TCP/IP over a net::device (network_stack "native").
//
//   auto stack = co_await net::make_native_stack(device, opts);   // on every shard
//   net::set_local_stack(std::move(stack));
//
// or, in any reef::app started with --dpdk-pmd, `--network-stack native` (the app registers the
// factory over its device; the options are those of native_options.hh).
//
// Each shard has its own native_stack over its own interface (stack/native/interface.hh): its
// part of the ARP table, its IPv4 reassembly, its UDP channels and TCP connections. The shards of
// one device cooperate through their interface_group (ARP answers and PMTU changes pushed from
// shard to shard, UDP datagrams for ports bound elsewhere forwarded, DHCP on shard 0).
//
// IPv4 only: supports_ipv6() is false, IPv6 frames are counted and dropped.
//
// Metrics: each shard's stack registers its counters (native_stats.hh and tcp_stats) in the
// metrics registry (runtime/metrics.hh) when it is created and unregisters them when destroyed,
// so `metrics.get` on the control socket and /metrics show them per shard (label `shard`), with
// the label `device` (the device's name). Every field of native_stats.hh and tcp_stats is a
// counter named reef_native_<layer>_<field>_total (layers l2, arp, ipv4, icmp, udp, dhcp, tcp),
// except the drops: one counter per layer and direction with a `reason` label,
//   reef_native_l2_rx_dropped_total{reason}     not_ours unknown_type short
//   reef_native_arp_rx_dropped_total{reason}    malformed not_for_us
//   reef_native_ipv4_rx_dropped_total{reason}   too_short bad_version bad_header_length
//                                               bad_total_length bad_checksum ttl_zero not_for_us
//                                               bad_source unknown_protocol
//   reef_native_ipv4_tx_dropped_total{reason}   no_route too_big
//   reef_native_ipv4_reasm_dropped_total{reason} overlap oversize malformed timeout memory
//   reef_native_icmp_rx_dropped_total{reason}   malformed
//   reef_native_udp_rx_dropped_total{reason}    short bad_checksum queue_full
//   reef_native_dhcp_rx_dropped_total           (malformed or not ours)
//   reef_native_tcp_rx_dropped_total{reason}    bad_checksum bad_header bad_options bad_flags
//                                               out_of_window paws bad_ack no_socket listen_bad
//                                               memory icmp_invalid
// and the gauges reef_native_ipv4_reasm_bytes, reef_native_ipv4_reasm_datagrams,
// reef_native_arp_entries, reef_native_arp_queued_packets and reef_native_tcp_connections{state}
// (one sample per RFC 9293 state but LISTEN: SYN_SENT ... TIME_WAIT, CLOSED; 0 included).
#pragma once

#include "runtime/future.hh"
#include "runtime/metrics.hh"
#include "stack/native/interface.hh"
#include "stack/native/native_options.hh"
#include "stack/native/native_stats.hh"
#include "stack/native/tcp.hh"
#include "stack/net/api.hh"
#include "stack/net/device.hh"

#include <memory>

namespace reef::net {

/// One shard's native stack. Create it with make_native_stack; destroy it (reset_local_stack)
/// after its sockets and before the device stops.
class native_stack final : public network_stack {
public:
    /// Use make_native_stack (this does not configure the interface).
    explicit native_stack(std::shared_ptr<native::interface_group> g, tcp_config tcp_cfg = {});
    ~native_stack() override;

    std::string_view name() const noexcept override { return "native"; }
    /// TCP listener on this shard (see tcp::listen). Throws std::system_error naming the address.
    server_socket listen(socket_address sa, listen_options opts) override;
    /// TCP connection from this shard (see tcp::connect).
    future<connected_socket> connect(socket_address sa, socket_address local) override;
    /// UDP channel on this shard (see stack/native/udp.hh for the semantics).
    udp_channel make_udp_channel(const socket_address& local, const udp_channel_options& opts) override;
    bool supports_ipv6() const noexcept override { return false; }
    const stack_stats& stats() const noexcept override { return _stats; }
    /// Orderly end of this shard's TCP before the process exits: stop accepting, give closing
    /// connections up to a second to deliver their FIN, then reset the rest (tcp::shutdown), so
    /// peers see FIN or RST instead of a silent half-open connection.
    future<> stop() override;

    /// This shard's interface (layers, configuration).
    native::interface& iface() noexcept { return *_ifc; }
    /// This shard's counters below TCP.
    const native::native_stats& native_statistics() const noexcept { return _ifc->stats(); }
    /// This shard's TCP.
    class tcp& tcp() noexcept {
        return *_tcp;
    }

private:
    class tcp_glue;

    stack_stats _stats;
    std::unique_ptr<native::interface> _ifc;
    std::unique_ptr<tcp_glue> _glue;
    std::unique_ptr<class tcp> _tcp;
    // Last: unregistered before the counters it reads are destroyed.
    metrics::metric_groups _metrics;

    void register_metrics();
};

/// Create the calling shard's native stack over `dev` (call on every shard; `dev` started or
/// about to be, and outliving the stacks). The configuration is static (options'
/// --host-ipv4-addr...: std::invalid_argument naming a bad option) or, with opts.dhcp, leased by
/// shard 0's DHCP client: the other shards wait for it; the future fails with a
/// std::runtime_error saying no server answered after dhcp_timeout. Shard 0 announces the address
/// with a gratuitous ARP.
future<std::unique_ptr<native_stack>> make_native_stack(device& dev, const native_options& opts,
                                                        tcp_config tcp_cfg = {});

}  // namespace reef::net
