#include "stack/native/native_stack.hh"

#include "runtime/coroutine.hh"
#include "runtime/smp.hh"

#include <cerrno>

namespace reef::net {

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
}

native_stack::~native_stack() { _ifc->ip().set_protocol(native::ip_proto_tcp, nullptr); }

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
