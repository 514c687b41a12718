#include "stack/native/interface.hh"

#include "runtime/log.hh"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

namespace reef::net::native {

logger native_log("native");

ipv4_addr ipv4_addr::parse(const std::string& s) {
    inet_address a;
    try {
        a = inet_address::parse(s);
    } catch (const std::invalid_argument&) {
        throw std::invalid_argument(fmt::format("invalid IPv4 address '{}'", s));
    }
    if (!a.is_ipv4()) {
        throw std::invalid_argument(fmt::format("invalid IPv4 address '{}': not IPv4", s));
    }
    return from(a);
}

ipv4_config static_config(const native_options& opts, std::uint16_t device_mtu) {
    ipv4_config c;
    auto parse = [](const std::string& v, const char* opt) {
        try {
            return ipv4_addr::parse(v);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(fmt::format("{}: {}", opt, e.what()));
        }
    };
    c.addr = parse(opts.host_ipv4_addr, "--host-ipv4-addr");
    if (c.addr.is_any() || c.addr.is_broadcast() || c.addr.is_multicast()) {
        throw std::invalid_argument(fmt::format("--host-ipv4-addr: {} cannot be a host address", opts.host_ipv4_addr));
    }
    c.netmask = parse(opts.netmask_ipv4_addr, "--netmask-ipv4-addr");
    // A netmask is ones then zeros.
    std::uint32_t inv = ~c.netmask.ip;
    if ((inv & (inv + 1)) != 0) {
        throw std::invalid_argument(fmt::format("--netmask-ipv4-addr: '{}' is not a netmask", opts.netmask_ipv4_addr));
    }
    if (!opts.gw_ipv4_addr.empty()) {
        c.gateway = parse(opts.gw_ipv4_addr, "--gw-ipv4-addr");
        if (!c.gateway.is_any() && !c.on_link(c.gateway)) {
            throw std::invalid_argument(fmt::format("--gw-ipv4-addr: {} is not in {}/{}", opts.gw_ipv4_addr,
                                                    opts.host_ipv4_addr, opts.netmask_ipv4_addr));
        }
    }
    c.mtu = device_mtu;
    if (opts.mtu != 0) {
        if (opts.mtu < 68 || opts.mtu > device_mtu) {
            throw std::invalid_argument(
                fmt::format("--mtu: {} is outside 68-{} (the device's MTU)", opts.mtu, device_mtu));
        }
        c.mtu = opts.mtu;
    }
    return c;
}

// ---- group

interface_group::interface_group(device& d, const native_options& o) : dev(d), opts(o), _slots(smp::count, nullptr) {}

std::uint16_t interface_group::bind_udp(std::uint16_t port, bool reuse_port) {
    std::lock_guard lock(_ports_mutex);
    unsigned self = this_shard_id();
    if (port == 0) {
        for (unsigned i = 0; i < 16384; ++i) {
            std::uint16_t p = _next_ephemeral;
            _next_ephemeral = _next_ephemeral == 65535 ? 49152 : _next_ephemeral + 1;
            if (!_ports.count(p)) {
                port = p;
                break;
            }
        }
        if (port == 0) {
            return 0;
        }
    }
    auto [it, fresh] = _ports.try_emplace(port);
    auto& u = it->second;
    if (!fresh) {
        bool mine = std::find(u.shards.begin(), u.shards.end(), self) != u.shards.end();
        if (!reuse_port || !u.reuse_port || mine) {
            return 0;
        }
    }
    u.reuse_port = reuse_port;
    u.shards.push_back(self);
    return port;
}

void interface_group::unbind_udp(std::uint16_t port) noexcept {
    std::lock_guard lock(_ports_mutex);
    auto it = _ports.find(port);
    if (it == _ports.end()) {
        return;
    }
    auto& v = it->second.shards;
    v.erase(std::remove(v.begin(), v.end(), this_shard_id()), v.end());
    if (v.empty()) {
        _ports.erase(it);
    }
}

std::optional<unsigned> interface_group::udp_owner(std::uint16_t port, std::uint32_t hash) const {
    std::lock_guard lock(_ports_mutex);
    auto it = _ports.find(port);
    if (it == _ports.end() || it->second.shards.empty()) {
        return std::nullopt;
    }
    auto& v = it->second.shards;
    unsigned s = v[hash % v.size()];
    if (s == this_shard_id()) {
        return std::nullopt;
    }
    return s;
}

future<ipv4_config> interface_group::wait_config() {
    if (_config) {
        return make_ready_future<ipv4_config>(*_config);
    }
    if (_config_error) {
        return make_exception_future<ipv4_config>(_config_error);
    }
    _config_waiters.emplace_back();
    return _config_waiters.back().get_future();
}

void interface_group::publish_config(const ipv4_config& cfg) {
    _config = cfg;
    for (auto& w : _config_waiters) {
        w.set_value(cfg);
    }
    _config_waiters.clear();
}

void interface_group::fail_config(std::exception_ptr ex) {
    _config_error = ex;
    for (auto& w : _config_waiters) {
        w.set_exception(ex);
    }
    _config_waiters.clear();
}

namespace {

std::mutex groups_mutex;
std::unordered_map<device*, std::weak_ptr<interface_group>> groups;

}  // namespace

std::shared_ptr<interface_group> group_for(device& dev, const native_options& opts) {
    std::lock_guard lock(groups_mutex);
    auto& w = groups[&dev];
    auto g = w.lock();
    if (!g) {
        g = std::make_shared<interface_group>(dev, opts);
        w = g;
    }
    return g;
}

// ---- portable packets

portable_ip_packet portable_ip_packet::from(const ip_packet& p) {
    return portable_ip_packet{p.src, p.dst, p.proto, p.ttl, p.ihl, p.to_broadcast, p.p.to_string()};
}

ip_packet portable_ip_packet::to_packet() && {
    ip_packet r;
    r.src = src;
    r.dst = dst;
    r.proto = proto;
    r.ttl = ttl;
    r.ihl = ihl;
    r.to_broadcast = to_broadcast;
    r.p = packet(bytes.data(), bytes.size());
    return r;
}

// ---- interface

interface::interface(std::shared_ptr<interface_group> g)
    : _g(std::move(g)), _mac(_g->dev.hw_address()), _arp(*this), _ip(*this), _udp(*this) {
    _cfg.mtu = _g->dev.features().mtu;
    _g->set_local(this);
    _g->dev.set_receive_handler([this](packet p) { receive(std::move(p)); });
}

interface::~interface() {
    _g->dev.set_receive_handler({});
    _g->dev.set_tx_ready_handler({});
    _dhcp.reset();
    _arp.flush();
    _ip.clear_reassembly();
    if (this_shard_id() == 0) {
        _g->fail_config(std::make_exception_ptr(std::runtime_error("native stack stopped before it was configured")));
    }
    _g->set_local(nullptr);
}

void interface::start_dhcp() { _dhcp = std::make_unique<dhcp_client>(*this); }

void interface::set_config(const ipv4_config& cfg, bool everywhere) {
    bool addr_changed = cfg.addr != _cfg.addr || cfg.netmask != _cfg.netmask || cfg.gateway != _cfg.gateway;
    _cfg = cfg;
    if (addr_changed) {
        _arp.flush();
        _ip.clear_reassembly();
    }
    if (this_shard_id() != 0) {
        return;
    }
    if (!cfg.addr.is_any()) {
        _g->publish_config(cfg);
        if (addr_changed) {
            _arp.send_gratuitous();
        }
    }
    if (everywhere) {
        for (unsigned s = 1; s < smp::count; ++s) {
            with_interface(_g, s, [cfg](interface& i) { i.set_config(cfg); });
        }
    }
}

void interface::receive(packet p) {
    ++_stats.l2.rx_frames;
    // The Ethernet header and a VLAN tag if there is one, contiguous.
    std::size_t head = std::min(p.len(), eth::header_len + eth::vlan_tag_len);
    auto* h = head >= eth::header_len ? p.get_header(0, head) : nullptr;
    std::size_t l3;
    std::uint16_t type;
    if (!h || !eth::l3_offset(h, head, l3, type)) {
        ++_stats.l2.rx_dropped_short;
        return;
    }
    ethernet_address dst;
    std::memcpy(dst.mac.data(), h, 6);
    if (dst != _mac && !dst.is_broadcast()) {
        ++_stats.l2.rx_dropped_not_ours;
        return;
    }
    p.trim_front(l3);
    if (type == eth::type_ipv4) {
        _ip.receive(std::move(p));
    } else if (type == eth::type_arp) {
        if (this_shard_id() == 0) {
            _arp.receive(std::move(p));
        } else {
            // Only shard 0 keeps the authoritative table (device_base sends ARP there; a frame
            // may still come here, e.g. injected by a hook): copy it over.
            with_interface(
                _g, 0, [bytes = p.to_string()](interface& i) { i.arp().receive(packet(bytes.data(), bytes.size())); });
        }
    } else {
        ++_stats.l2.rx_dropped_unknown_type;
    }
}

void interface::send_frame(const ethernet_address& dst, std::uint16_t ethertype, packet p) {
    auto* h = p.prepend_header<eth_hdr>();
    std::memcpy(h->dst, dst.mac.data(), 6);
    std::memcpy(h->src, _mac.mac.data(), 6);
    store16(h->type, ethertype);
    ++_stats.l2.tx_frames;
    _g->dev.send(std::move(p));
}

}  // namespace reef::net::native
