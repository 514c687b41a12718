#include "stack/native/udp.hh"

#include "stack/native/interface.hh"
#include "stack/net/checksum.hh"

#include <fmt/format.h>

#include <cerrno>
#include <system_error>

namespace reef::net::native {

namespace {

std::system_error addr_error(int err, std::string_view what, const socket_address& sa) {
    return std::system_error(err, std::system_category(), fmt::format("{} {}", what, sa));
}

constexpr std::size_t max_udp_payload = 65507;  // 65535 - IPv4 header - UDP header
constexpr std::size_t max_remembered_errors = 64;

std::uint64_t error_key(ipv4_addr ip, std::uint16_t port) noexcept { return (std::uint64_t(ip.ip) << 16) | port; }

}  // namespace

struct udp::channel_state {
    udp* layer;  // nullptr once the stack is gone
    std::uint16_t port;
    ipv4_addr bound;  // 0: any
    udp_channel_options opts;
    stack_stats* stats;
    std::size_t queue_limit;
    circular_buffer<datagram> ready;
    std::optional<promise<datagram>> waiting;
    bool input_shut = false;
    bool output_shut = false;
    std::unordered_map<std::uint64_t, int> errors;  // ICMP errors per destination, reported once

    socket_address local() const { return socket_address(bound.to_inet(), port); }
};

class native_udp_channel final : public udp_channel_impl {
    udp::channel_state _st;

public:
    native_udp_channel(udp& layer, std::uint16_t port, ipv4_addr bound, const udp_channel_options& opts,
                       stack_stats* stats)
        : _st{&layer, port, bound, opts, stats, layer._ifc.opts().udp_receive_queue, {}, {}} {
        layer._channels[port] = &_st;
    }
    ~native_udp_channel() override { close(); }

    socket_address local_address() const override { return _st.local(); }

    future<datagram> receive() override {
        if (!_st.ready.empty()) {
            auto d = std::move(_st.ready.front());
            _st.ready.pop_front();
            return make_ready_future<datagram>(std::move(d));
        }
        if (_st.input_shut) {
            return make_exception_future<datagram>(addr_error(ECONNABORTED, "receive on", _st.local()));
        }
        if (_st.waiting) {
            return make_exception_future<datagram>(
                std::logic_error("udp_channel::receive: another receive() is pending"));
        }
        _st.waiting.emplace();
        return _st.waiting->get_future();
    }

    future<> send(const socket_address& dst, packet p) override {
        if (_st.output_shut || !_st.layer) {
            return make_exception_future<>(addr_error(EPIPE, "send to", dst));
        }
        auto* layer = _st.layer;
        auto& ust = layer->_ifc.stats().udp;
        if (!dst.is_ipv4()) {
            ++ust.tx_errors;
            return make_exception_future<>(addr_error(EAFNOSUPPORT, "send to", dst));
        }
        if (p.len() > max_udp_payload) {
            ++ust.tx_errors;
            return make_exception_future<>(addr_error(EMSGSIZE, "send to", dst));
        }
        ipv4_addr to = ipv4_addr::from(dst.addr());
        if (!_st.errors.empty()) {
            auto it = _st.errors.find(error_key(to, dst.port()));
            if (it != _st.errors.end()) {
                int err = it->second;
                _st.errors.erase(it);
                ++ust.tx_errors;
                return make_exception_future<>(addr_error(err, "send to", dst));
            }
        }
        std::size_t len = sizeof(udp_hdr) + p.len();
        auto* h = p.prepend_header<udp_hdr>();
        store16(h->src_port, _st.port);
        store16(h->dst_port, dst.port());
        store16(h->len, std::uint16_t(len));
        store16(h->csum, 0);
        auto& oi = p.offload();
        oi.protocol = ip_proto_udp;
        oi.needs_csum = true;
        oi.udp_hdr_len = sizeof(udp_hdr);
        ip_send_options o;
        o.src = _st.bound;
        int err = layer->_ifc.ip().send(to, ip_proto_udp, std::move(p), o);
        if (err) {
            ++ust.tx_errors;
            return make_exception_future<>(addr_error(err, "send to", dst));
        }
        ++ust.tx_datagrams;
        ++_st.stats->datagrams_sent;
        return make_ready_future<>();
    }

    void shutdown_input() override {
        if (_st.input_shut) {
            return;
        }
        _st.input_shut = true;
        _st.ready.clear();
        if (_st.waiting) {
            auto pr = std::move(*_st.waiting);
            _st.waiting.reset();
            pr.set_exception(addr_error(ECONNABORTED, "receive on", _st.local()));
        }
    }

    void shutdown_output() override { _st.output_shut = true; }

    bool is_closed() const override { return _st.input_shut && _st.output_shut; }

    void close() override {
        shutdown_input();
        shutdown_output();
        if (_st.layer) {
            _st.layer->unbind(_st.port);
            _st.layer = nullptr;
        }
    }
};

udp::udp(interface& ifc) : _ifc(ifc) {}

udp::~udp() {
    // Channels outliving the stack (a misuse api.hh forbids) fail instead of touching it.
    for (auto& [port, st] : _channels) {
        st->layer = nullptr;
        _ifc.group()->unbind_udp(port);
    }
}

void udp::unbind(std::uint16_t port) noexcept {
    _channels.erase(port);
    _ifc.group()->unbind_udp(port);
}

udp_channel udp::make_channel(const socket_address& local, const udp_channel_options& opts, stack_stats* stats) {
    if (!local.is_ipv4()) {
        throw addr_error(EAFNOSUPPORT, "UDP channel on", local);
    }
    if (opts.max_datagram_size == 0) {
        throw std::invalid_argument("UDP channel: max_datagram_size must be positive");
    }
    ipv4_addr bound = ipv4_addr::from(local.addr());
    if (!bound.is_any() && bound != _ifc.config().addr) {
        throw addr_error(EADDRNOTAVAIL, "UDP channel on", local);
    }
    std::uint16_t port = local.port();
    if (port != 0 && _channels.count(port)) {
        throw addr_error(EADDRINUSE, "UDP channel on", local);
    }
    std::uint16_t got = _ifc.group()->bind_udp(port, opts.reuse_port);
    if (got == 0) {
        throw addr_error(port ? EADDRINUSE : EAGAIN, "UDP channel on", local);
    }
    try {
        return udp_channel(std::make_unique<native_udp_channel>(*this, got, bound, opts, stats));
    } catch (...) {
        _channels.erase(got);
        _ifc.group()->unbind_udp(got);
        throw;
    }
}

bool udp::validate(ip_packet& p) {
    auto& st = _ifc.stats().udp;
    std::size_t l4 = p.l4_len();
    auto* h = l4 >= sizeof(udp_hdr) ? p.p.get_header<udp_hdr>(p.ihl) : nullptr;
    if (!h) {
        ++st.rx_dropped_short;
        return false;
    }
    std::size_t ulen = load16(h->len);
    if (ulen < sizeof(udp_hdr) || ulen > l4) {
        ++st.rx_dropped_short;
        return false;
    }
    std::uint16_t csum;
    std::memcpy(&csum, h->csum, 2);
    if (ulen < l4) {
        p.p.trim_back(l4 - ulen);
    }
    if (csum == 0) {
        ++st.rx_zero_checksum;  // RFC 768: the sender computed none
        return true;
    }
    // The device verified what it received whole; a reassembled datagram it never saw whole.
    if (_ifc.dev().features().rx_csum_offload && !p.p.offload().reassembled) {
        return true;
    }
    checksummer c;
    auto s = p.src.bytes(), d = p.dst.bytes();
    add_ipv4_pseudo_header(c, s.data(), d.data(), ip_proto_udp, ulen);
    add_packet_range(c, p.p, p.ihl, ulen);
    if (c.folded_sum() != 0xffff) {
        ++st.rx_dropped_bad_checksum;
        return false;
    }
    return true;
}

void udp::receive(ip_packet&& p) {
    if (!validate(p)) {
        return;
    }
    auto& st = _ifc.stats().udp;
    auto* h = p.p.get_header<udp_hdr>(p.ihl);
    std::uint16_t sport = load16(h->src_port), dport = load16(h->dst_port);
    if (dport == 68 && sport == 67 && _ifc.opts().dhcp) {
        if (this_shard_id() == 0) {
            if (auto* c = _ifc.dhcp()) {
                c->receive(std::move(p));
            }
        } else {
            with_interface(_ifc.group(), 0, [pp = portable_ip_packet::from(p)](interface& i) mutable {
                if (auto* c = i.dhcp()) {
                    c->receive(std::move(pp).to_packet());
                }
            });
        }
        return;
    }
    auto it = _channels.find(dport);
    if (it != _channels.end()) {
        deliver(*it->second, std::move(p));
        return;
    }
    auto hash = std::uint32_t(p.src.ip ^ (std::uint32_t(sport) << 16 | dport));
    if (auto owner = _ifc.group()->udp_owner(dport, hash)) {
        ++st.rx_forwarded;
        with_interface(_ifc.group(), *owner, [pp = portable_ip_packet::from(p)](interface& i) mutable {
            i.udp().receive_forwarded(std::move(pp).to_packet());
        });
        return;
    }
    ++st.rx_no_port;
    _ifc.ip().send_unreachable(p, 3);
}

void udp::receive_forwarded(ip_packet&& p) {
    auto* h = p.p.get_header<udp_hdr>(p.ihl);
    auto it = h ? _channels.find(load16(h->dst_port)) : _channels.end();
    if (it == _channels.end()) {
        // Closed while the datagram travelled.
        ++_ifc.stats().udp.rx_no_port;
        return;
    }
    deliver(*it->second, std::move(p));
}

void udp::deliver(channel_state& ch, ip_packet&& p) {
    auto& st = _ifc.stats().udp;
    if (ch.input_shut) {
        return;
    }
    auto* h = p.p.get_header<udp_hdr>(p.ihl);
    datagram d;
    d.src = socket_address(p.src.to_inet(), load16(h->src_port));
    d.dst = socket_address(p.dst.to_inet(), ch.port);
    p.p.trim_front(p.ihl + sizeof(udp_hdr));
    if (p.p.len() > ch.opts.max_datagram_size) {
        p.p.trim_back(p.p.len() - ch.opts.max_datagram_size);
        d.truncated = true;
        ++ch.stats->datagrams_truncated;
    }
    d.data = std::move(p.p);
    if (ch.waiting) {
        ++st.rx_datagrams;
        ++ch.stats->datagrams_received;
        auto pr = std::move(*ch.waiting);
        ch.waiting.reset();
        pr.set_value(std::move(d));
        return;
    }
    if (ch.ready.size() >= ch.queue_limit) {
        ++st.rx_dropped_queue_full;
        return;
    }
    ++st.rx_datagrams;
    ++ch.stats->datagrams_received;
    ch.ready.push_back(std::move(d));
}

void udp::error(const icmp_error& e) {
    auto it = _channels.find(e.local_port);
    if (it == _channels.end()) {
        return;
    }
    auto& errs = it->second->errors;
    if (errs.size() >= max_remembered_errors) {
        errs.clear();
    }
    errs[error_key(e.remote, e.remote_port)] = e.error;
}

}  // namespace reef::net::native
