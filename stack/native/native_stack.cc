#include "stack/native/native_stack.hh"
#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/smp.hh"
#include "stack/native/tcp_connection.hh"

#include <algorithm>
#include <cerrno>

namespace reef::net {

namespace native {
extern logger native_log;  // interface.cc
}

using native::ipv4_addr;

// What TCP needs from below (tcp_lower), and what IPv4 delivers to TCP (l4_protocol), on one
// shard.
class native_stack::tcp_glue final : public tcp_lower, public native::l4_protocol {
    native::interface& _ifc;
    class tcp* _tcp = nullptr;

public:
    explicit tcp_glue(native::interface& ifc) : _ifc(ifc) {}
    void attach(class tcp* t) noexcept { _tcp = t; }

    // ---- tcp_lower
    void send_segment(tcp_ipv4 src, tcp_ipv4 dst, packet seg) override {
        native::ip_send_options o;
        o.src = ipv4_addr(src);
        o.df = true;  // RFC 1191 path MTU discovery: TCP sizes its segments by mss_for()
        if (seg.offload().needs_csum) {
            seg.offload().protocol = native::ip_proto_tcp;
        }
        (void)_ifc.ip().send(ipv4_addr(dst), native::ip_proto_tcp, std::move(seg), o);
    }
    std::uint16_t mss_for(tcp_ipv4 dst) override { return std::uint16_t(_ifc.ip().path_mtu(ipv4_addr(dst)) - 40); }
    bool tx_checksum_offload() const noexcept override { return _ifc.dev().features().tx_l4_csum_offload; }
    std::size_t tx_room() noexcept override { return _ifc.dev().tx_room(); }
    unsigned shard_of_flow(tcp_ipv4 remote, std::uint16_t remote_port, tcp_ipv4 local,
                           std::uint16_t local_port) const noexcept override {
        auto r = ipv4_addr(remote).bytes(), l = ipv4_addr(local).bytes();
        auto& d = _ifc.dev();
        return d.shard_of(d.flow_hash(r.data(), l.data(), 4, remote_port, local_port));
    }
    tcp_ipv4 source_address_for(tcp_ipv4 dst) override {
        auto& cfg = _ifc.config();
        if (cfg.addr.is_any() || (!cfg.on_link(ipv4_addr(dst)) && cfg.gateway.is_any())) {
            return 0;
        }
        return cfg.addr.ip;
    }

    // ---- l4_protocol
    void receive(native::ip_packet&& p) override {
        bool verified = _ifc.dev().features().rx_csum_offload && !p.p.offload().reassembled;
        p.p.trim_front(p.ihl);
        _tcp->received(p.src.ip, p.dst.ip, std::move(p.p), verified);
    }
    void error(const native::icmp_error& e) override {
        tcp_icmp_error t;
        if (e.type == 3) {
            switch (e.code) {
            case 0:
            case 6: t.kind = tcp_icmp_kind::net_unreachable; break;
            case 2: t.kind = tcp_icmp_kind::protocol_unreachable; break;
            case 3: t.kind = tcp_icmp_kind::port_unreachable; break;
            case 4: t.kind = tcp_icmp_kind::frag_needed; break;
            case 9:
            case 10:
            case 13: t.kind = tcp_icmp_kind::admin_prohibited; break;
            default: t.kind = tcp_icmp_kind::host_unreachable; break;
            }
        } else if (e.type == 11) {
            t.kind = tcp_icmp_kind::time_exceeded;
        } else {
            t.kind = tcp_icmp_kind::host_unreachable;
        }
        t.local_addr = e.local.ip;
        t.remote_addr = e.remote.ip;
        t.local_port = e.local_port;
        t.remote_port = e.remote_port;
        if (e.quoted.size() >= 8) {
            t.seq = native::load32(e.quoted.data() + 4);
        }
        t.next_hop_mtu = e.mtu;
        _tcp->icmp_error(t);
    }
    unsigned shard_of(ipv4_addr remote, ipv4_addr local, std::uint16_t remote_port,
                      std::uint16_t local_port) const override {
        return shard_of_flow(remote.ip, remote_port, local.ip, local_port);
    }
};

native_stack::native_stack(std::shared_ptr<native::interface_group> g, tcp_config tcp_cfg)
    : _ifc(std::make_unique<native::interface>(std::move(g))), _glue(std::make_unique<tcp_glue>(*_ifc)),
      _tcp(std::make_unique<class tcp>(*_glue, tcp_cfg)) {
    _glue->attach(_tcp.get());
    _ifc->ip().set_protocol(native::ip_proto_tcp, _glue.get());
    _ifc->set_tx_ready_handler([t = _tcp.get()] { t->tx_ready(); });
    register_metrics();
}

namespace {

// Definitions of one metric group, all carrying the `device` label.
class metric_list {
    metrics::labels _base;

public:
    std::vector<metrics::metric_definition> defs;

    explicit metric_list(std::string_view device) : _base{{"device", std::string(device)}} {}

    void counter(std::string name, std::string help, const std::uint64_t& var) {
        defs.push_back(metrics::make_counter(std::move(name) + "_total", std::move(help), var, _base));
    }
    /// One sample of `name`_total per reason, all with one help text.
    void drops(std::string name, const std::string& help,
               std::initializer_list<std::pair<const char*, const std::uint64_t*>> reasons) {
        for (auto& [reason, var] : reasons) {
            auto l = _base;
            l.emplace_back("reason", reason);
            defs.push_back(metrics::make_counter(name + "_total", help, *var, std::move(l)));
        }
    }
    void gauge(std::string name, std::string help, std::function<double()> fn) {
        defs.push_back(metrics::make_gauge(std::move(name), std::move(help), std::move(fn), _base));
    }
    /// A gauge with one sample per value of label `label`, as `fn` gives them at collection.
    void gauge_by(std::string name, std::string help, std::string label,
                  std::function<std::vector<std::pair<std::string, double>>()> fn) {
        defs.push_back(metrics::make_dynamic(std::move(name), std::move(help), metrics::metric_type::gauge,
                                             [base = _base, label = std::move(label), fn = std::move(fn)] {
                                                 std::vector<std::pair<metrics::labels, metrics::metric_value>> out;
                                                 for (auto& [value, v] : fn()) {
                                                     auto l = base;
                                                     l.emplace_back(label, value);
                                                     out.emplace_back(std::move(l), metrics::metric_value{v, {}});
                                                 }
                                                 return out;
                                             }));
    }
};

}  // namespace

void native_stack::register_metrics() {
    const auto& ns = _ifc->stats();
    const auto& ts = _tcp->stats();
    auto device = _ifc->dev().name();

    metric_list l2(device);
    l2.counter("rx_frames", "Frames received", ns.l2.rx_frames);
    l2.counter("tx_frames", "Frames sent", ns.l2.tx_frames);
    l2.drops("rx_dropped", "Received frames dropped, by reason",
             {{"not_ours", &ns.l2.rx_dropped_not_ours},
              {"unknown_type", &ns.l2.rx_dropped_unknown_type},
              {"short", &ns.l2.rx_dropped_short}});

    metric_list arp(device);
    arp.counter("rx_requests", "ARP requests received", ns.arp.rx_requests);
    arp.counter("rx_replies", "ARP replies received", ns.arp.rx_replies);
    arp.drops("rx_dropped", "ARP messages dropped or ignored, by reason",
              {{"malformed", &ns.arp.rx_dropped_malformed}, {"not_for_us", &ns.arp.rx_ignored_not_for_us}});
    arp.counter("tx_requests", "ARP requests sent (resolutions and retries)", ns.arp.tx_requests);
    arp.counter("tx_replies", "ARP replies sent", ns.arp.tx_replies);
    arp.counter("tx_gratuitous", "Gratuitous ARPs sent", ns.arp.tx_gratuitous);
    arp.counter("resolved", "Entries learned or refreshed", ns.arp.resolved);
    arp.counter("expired", "Entries aged out of the cache", ns.arp.expired);
    arp.counter("failed", "Resolutions that ran out of retries", ns.arp.failed);
    arp.counter("queue_dropped", "Packets dropped waiting for ARP (queue full or resolution failed)",
                ns.arp.queue_dropped);
    arp.counter("remote_lookups", "Misses on this shard asked of shard 0", ns.arp.remote_lookups);
    arp.gauge("entries", "Entries in this shard's ARP table", [this] { return double(_ifc->arp().size()); });
    arp.gauge("queued_packets", "Packets waiting for an ARP resolution",
              [this] { return double(_ifc->arp().queued()); });

    metric_list ip(device);
    ip.counter("rx_packets", "IPv4 packets received", ns.ip.rx_packets);
    ip.counter("rx_delivered", "Datagrams handed to ICMP, UDP or TCP", ns.ip.rx_delivered);
    ip.drops("rx_dropped", "Received IPv4 packets dropped, by reason",
             {{"too_short", &ns.ip.rx_dropped_too_short},
              {"bad_version", &ns.ip.rx_dropped_bad_version},
              {"bad_header_length", &ns.ip.rx_dropped_bad_header_length},
              {"bad_total_length", &ns.ip.rx_dropped_bad_total_length},
              {"bad_checksum", &ns.ip.rx_dropped_bad_checksum},
              {"ttl_zero", &ns.ip.rx_dropped_ttl_zero},
              {"not_for_us", &ns.ip.rx_dropped_not_for_us},
              {"bad_source", &ns.ip.rx_dropped_bad_source},
              {"unknown_protocol", &ns.ip.rx_dropped_unknown_protocol}});
    ip.counter("rx_options_skipped", "Received packets whose IP options were skipped", ns.ip.rx_options_skipped);
    ip.counter("tx_packets", "IPv4 packets sent (fragments counted one by one)", ns.ip.tx_packets);
    ip.drops("tx_dropped", "IPv4 datagrams not sent, by reason",
             {{"no_route", &ns.ip.tx_dropped_no_route}, {"too_big", &ns.ip.tx_dropped_too_big}});
    ip.counter("frag_created", "Fragments sent", ns.ip.frag_created);
    ip.counter("frag_datagrams", "Datagrams sent fragmented", ns.ip.frag_datagrams);
    ip.counter("reasm_fragments", "Fragments received", ns.ip.reasm_fragments);
    ip.counter("reasm_ok", "Datagrams reassembled", ns.ip.reasm_ok);
    ip.drops("reasm_dropped", "Fragments or datagrams dropped by reassembly, by reason",
             {{"overlap", &ns.ip.reasm_dropped_overlap},
              {"oversize", &ns.ip.reasm_dropped_oversize},
              {"malformed", &ns.ip.reasm_dropped_malformed},
              {"timeout", &ns.ip.reasm_dropped_timeout},
              {"memory", &ns.ip.reasm_dropped_memory}});
    ip.counter("reasm_forwarded", "Reassembled datagrams sent to their flow's shard", ns.ip.reasm_forwarded);
    ip.gauge("reasm_bytes", "Bytes held by reassembly (fragments and bookkeeping)",
             [this] { return double(_ifc->ip().reassembly_bytes()); });
    ip.gauge("reasm_datagrams", "Datagrams being reassembled",
             [this] { return double(_ifc->ip().reassembly_datagrams()); });

    metric_list icmp(device);
    icmp.counter("rx_messages", "ICMP messages received (valid)", ns.icmp.rx_messages);
    icmp.counter("rx_echo_requests", "Echo requests received", ns.icmp.rx_echo_requests);
    icmp.counter("rx_echo_replies", "Echo replies received", ns.icmp.rx_echo_replies);
    icmp.counter("rx_dest_unreachable", "Destination unreachable messages received", ns.icmp.rx_dest_unreachable);
    icmp.counter("rx_frag_needed", "Fragmentation-needed messages received", ns.icmp.rx_frag_needed);
    icmp.counter("rx_time_exceeded", "Time exceeded messages received", ns.icmp.rx_time_exceeded);
    icmp.drops("rx_dropped", "ICMP messages dropped, by reason", {{"malformed", &ns.icmp.rx_dropped_malformed}});
    icmp.counter("tx_messages", "ICMP messages sent", ns.icmp.tx_messages);
    icmp.counter("tx_echo_replies", "Echo replies sent", ns.icmp.tx_echo_replies);
    icmp.counter("tx_port_unreachable", "Port unreachable errors sent", ns.icmp.tx_port_unreachable);
    icmp.counter("tx_proto_unreachable", "Protocol unreachable errors due (before the rate limit)",
                 ns.icmp.tx_proto_unreachable);
    icmp.counter("tx_rate_limited", "ICMP errors not sent because of the rate limit", ns.icmp.tx_rate_limited);
    icmp.counter("errors_to_udp", "Received errors delivered to UDP", ns.icmp.errors_to_udp);
    icmp.counter("errors_to_tcp", "Received errors delivered to TCP", ns.icmp.errors_to_tcp);

    metric_list udp(device);
    udp.counter("rx_datagrams", "Datagrams delivered to a channel", ns.udp.rx_datagrams);
    udp.drops("rx_dropped", "Received datagrams dropped, by reason",
              {{"short", &ns.udp.rx_dropped_short},
               {"bad_checksum", &ns.udp.rx_dropped_bad_checksum},
               {"queue_full", &ns.udp.rx_dropped_queue_full}});
    udp.counter("rx_zero_checksum", "Datagrams accepted without a checksum", ns.udp.rx_zero_checksum);
    udp.counter("rx_no_port", "Datagrams to a port nobody bound (port unreachable due)", ns.udp.rx_no_port);
    udp.counter("rx_forwarded", "Datagrams sent to the shard where their port is bound", ns.udp.rx_forwarded);
    udp.counter("tx_datagrams", "Datagrams sent", ns.udp.tx_datagrams);
    udp.counter("tx_errors", "Sends refused (too big, no route, shut down, ICMP error)", ns.udp.tx_errors);

    metric_list dhcp(device);
    dhcp.counter("discovers", "DHCPDISCOVERs sent", ns.dhcp.discovers);
    dhcp.counter("offers", "DHCPOFFERs received", ns.dhcp.offers);
    dhcp.counter("requests", "DHCPREQUESTs sent", ns.dhcp.requests);
    dhcp.counter("acks", "DHCPACKs received", ns.dhcp.acks);
    dhcp.counter("naks", "DHCPNAKs received", ns.dhcp.naks);
    dhcp.counter("renewals", "Lease renewals", ns.dhcp.renewals);
    dhcp.counter("rebinds", "Lease rebinds", ns.dhcp.rebinds);
    dhcp.counter("leases_lost", "Leases that expired unrenewed", ns.dhcp.leases_lost);
    dhcp.counter("rx_dropped", "DHCP messages dropped (malformed or not ours)", ns.dhcp.rx_dropped);

    metric_list tcp(device);
    tcp.counter("active_opens", "connect() attempts (SYN sent)", ts.active_opens);
    tcp.counter("passive_opens", "Connections created by a listener", ts.passive_opens);
    tcp.counter("attempt_fails", "Failed connect()s and dropped half-open connections", ts.attempt_fails);
    tcp.counter("established_resets", "Resets of established or close-wait connections", ts.established_resets);
    tcp.counter("established", "Connections that reached ESTABLISHED", ts.established);
    tcp.counter("segments_in", "Segments received (valid checksum and header)", ts.segments_in);
    tcp.counter("segments_out", "Segments sent, retransmissions included", ts.segments_out);
    tcp.counter("retransmitted_segments", "Segments retransmitted", ts.retransmitted_segments);
    tcp.counter("fast_retransmits", "Retransmissions by loss recovery (not RTO)", ts.fast_retransmits);
    tcp.counter("rto_expirations", "Retransmission timeouts", ts.rto_expirations);
    tcp.counter("sack_recoveries", "SACK-based recovery episodes (RFC 6675)", ts.sack_recoveries);
    tcp.counter("reno_recoveries", "NewReno recovery episodes (RFC 6582)", ts.reno_recoveries);
    tcp.counter("timeouts", "Connections aborted after the retransmission limit", ts.timeouts);
    tcp.counter("keepalive_probes", "Keepalive probes sent", ts.keepalive_probes);
    tcp.counter("keepalive_timeouts", "Connections aborted by keepalive", ts.keepalive_timeouts);
    tcp.counter("zero_window_probes", "Zero-window probes sent", ts.zero_window_probes);
    tcp.counter("delayed_acks", "ACKs sent by the delayed-ACK timer", ts.delayed_acks);
    tcp.counter("round_acks", "ACKs of in-order data sent at the end of a reactor round", ts.round_acks);
    tcp.counter("resets_sent", "RSTs sent", ts.resets_sent);
    tcp.counter("resets_received", "RSTs received", ts.resets_received);
    tcp.counter("challenge_acks", "RFC 5961 challenge ACKs sent", ts.challenge_acks);
    tcp.counter("challenge_acks_suppressed", "Challenge ACKs over the RFC 5961 rate limit",
                ts.challenge_acks_suppressed);
    tcp.counter("syn_cookies_sent", "SYN cookies sent", ts.syn_cookies_sent);
    tcp.counter("syn_cookies_accepted", "Connections established from a valid cookie", ts.syn_cookies_accepted);
    tcp.counter("syn_cookies_failed", "ACKs to a listener with a bad cookie", ts.syn_cookies_failed);
    tcp.counter("listen_overflows", "SYNs dropped: accept queue full", ts.listen_overflows);
    tcp.counter("time_wait_reused", "TIME_WAIT connections replaced by a new SYN", ts.time_wait_reused);
    tcp.counter("icmp_errors", "ICMP errors matching a connection", ts.icmp_errors);
    tcp.counter("pmtu_updates", "Path MTU reductions applied", ts.pmtu_updates);
    tcp.drops("rx_dropped", "Received segments dropped, by reason",
              {{"bad_checksum", &ts.drop_bad_checksum},
               {"bad_header", &ts.drop_bad_header},
               {"bad_options", &ts.drop_bad_options},
               {"bad_flags", &ts.drop_bad_flags},
               {"out_of_window", &ts.drop_out_of_window},
               {"paws", &ts.drop_paws},
               {"bad_ack", &ts.drop_bad_ack},
               {"no_socket", &ts.drop_no_socket},
               {"listen_bad", &ts.drop_listen_bad},
               {"memory", &ts.drop_memory},
               {"icmp_invalid", &ts.drop_icmp_invalid}});
    // Every RFC 9293 state but LISTEN gets a sample, 0 included, so a dashboard sees each one.
    tcp.gauge_by("connections", "Connections by state (every state but LISTEN)", "state", [this] {
        std::vector<std::pair<std::string, double>> out;
        for (auto st : tcp_connection_states) {
            out.emplace_back(tcp_state_name(st), 0.0);
        }
        for (auto& c : _tcp->connections()) {
            auto it = std::find_if(out.begin(), out.end(), [&](auto& e) { return e.first == c.info.state; });
            if (it == out.end()) {
                out.emplace_back(c.info.state, 1.0);
            } else {
                it->second += 1;
            }
        }
        return out;
    });

    // A name clash (a second stack over a device of the same name on this shard, as tests may
    // build) must not stop the stack: it then runs without metrics, and says so.
    try {
        _metrics.add_group("reef_native_l2", std::move(l2.defs));
        _metrics.add_group("reef_native_arp", std::move(arp.defs));
        _metrics.add_group("reef_native_ipv4", std::move(ip.defs));
        _metrics.add_group("reef_native_icmp", std::move(icmp.defs));
        _metrics.add_group("reef_native_udp", std::move(udp.defs));
        _metrics.add_group("reef_native_dhcp", std::move(dhcp.defs));
        _metrics.add_group("reef_native_tcp", std::move(tcp.defs));
    } catch (const std::invalid_argument& e) {
        _metrics.clear();
        native::native_log.warn("native stack on {}: metrics not registered: {}", device, e.what());
    }
}

native_stack::~native_stack() {
    _ifc->set_tx_ready_handler({});
    _ifc->ip().set_protocol(native::ip_proto_tcp, nullptr);
}

future<> native_stack::stop() {
    using namespace std::chrono_literals;
    return _tcp->shutdown(1000ms);
}

server_socket native_stack::listen(socket_address sa, listen_options opts) {
    auto s = _tcp->listen(sa, opts);
    return s;
}

future<connected_socket> native_stack::connect(socket_address sa, socket_address local) {
    return _tcp->connect(sa, local);
}

udp_channel native_stack::make_udp_channel(const socket_address& local, const udp_channel_options& opts) {
    return _ifc->udp().make_channel(local, opts, &_stats);
}

future<std::unique_ptr<native_stack>> make_native_stack(device& dev, const native_options& opts, tcp_config tcp_cfg) {
    // Validate before touching the device: a bad option fails every shard the same way.
    std::optional<native::ipv4_config> cfg;
    if (!opts.dhcp) {
        cfg = native::static_config(opts, dev.features().mtu);
    }
    auto g = native::group_for(dev, opts);
    auto stack = std::make_unique<native_stack>(g, tcp_cfg);
    auto& ifc = stack->iface();
    if (cfg) {
        ifc.set_config(*cfg);
    } else if (this_shard_id() == 0) {
        ifc.start_dhcp();
        auto acquired = ifc.dhcp()->acquire();
        co_await std::move(acquired);
    } else {
        // Shard 0 leases the address; its set_config reaches this shard too, possibly first.
        auto waited = smp::submit_to(0, [g] { return g->wait_config(); });
        auto c = co_await std::move(waited);
        ifc.set_config(c);
    }
    co_return stack;
}

}  // namespace reef::net
