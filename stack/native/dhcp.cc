#include "stack/native/dhcp.hh"

#include "runtime/log.hh"
#include "stack/native/interface.hh"

#include <fmt/format.h>

#include <random>
#include <stdexcept>

namespace reef::net::native {

extern logger native_log;

namespace {

constexpr std::uint8_t msg_discover = 1, msg_offer = 2, msg_request = 3, msg_ack = 5, msg_nak = 6;
constexpr std::uint32_t magic_cookie = 0x63825363;
constexpr std::size_t bootp_len = 236;  // fixed BOOTP fields before the magic cookie

// The parts of a DHCP message the client uses.
struct dhcp_message {
    std::uint8_t type = 0;
    std::uint32_t xid = 0;
    ipv4_addr yiaddr;
    ipv4_addr server_id, netmask, router;
    std::optional<std::uint32_t> lease, t1, t2;
    std::optional<std::uint16_t> mtu;
    std::uint8_t chaddr[6] = {};
};

// Parse a BOOTREPLY; false for anything malformed (options running past the end included).
bool parse(const std::string& b, dhcp_message& m) {
    if (b.size() < bootp_len + 4 || b[0] != 2 || load32(b.data() + bootp_len) != magic_cookie) {
        return false;
    }
    m.xid = load32(b.data() + 4);
    m.yiaddr = load_ip(b.data() + 16);
    std::memcpy(m.chaddr, b.data() + 28, 6);
    std::size_t i = bootp_len + 4;
    while (i < b.size()) {
        std::uint8_t code = std::uint8_t(b[i]);
        if (code == 0) {
            ++i;
            continue;
        }
        if (code == 255) {
            break;
        }
        if (i + 1 >= b.size()) {
            return false;
        }
        std::size_t len = std::uint8_t(b[i + 1]);
        const char* v = b.data() + i + 2;
        if (i + 2 + len > b.size()) {
            return false;
        }
        switch (code) {
        case 53:
            if (len == 1) m.type = std::uint8_t(v[0]);
            break;
        case 54:
            if (len == 4) m.server_id = load_ip(v);
            break;
        case 1:
            if (len == 4) m.netmask = load_ip(v);
            break;
        case 3:
            if (len >= 4) m.router = load_ip(v);
            break;
        case 51:
            if (len == 4) m.lease = load32(v);
            break;
        case 58:
            if (len == 4) m.t1 = load32(v);
            break;
        case 59:
            if (len == 4) m.t2 = load32(v);
            break;
        case 26:
            if (len == 2) m.mtu = load16(v);
            break;
        default: break;
        }
        i += 2 + len;
    }
    return m.type != 0;
}

}  // namespace

dhcp_client::dhcp_client(interface& ifc) : _ifc(ifc), _timer([this] { on_timer(); }) {}

dhcp_client::~dhcp_client() {
    if (_acquired) {
        _acquired->set_exception(std::make_exception_ptr(std::runtime_error("DHCP: the native stack stopped")));
    }
}

future<ipv4_config> dhcp_client::acquire() {
    _acquired.emplace();
    auto f = _acquired->get_future();
    _started = clock::now();
    start_selecting(clock::now() + _ifc.opts().dhcp_timeout);
    return f;
}

void dhcp_client::start_selecting(clock::time_point deadline) {
    _state = state::selecting;
    _xid = std::uint32_t(std::random_device()());
    _retry = _ifc.opts().dhcp_retry;
    _deadline = deadline;
    send_discover();
    retransmit_later();
}

void dhcp_client::retransmit_later() {
    auto at = clock::now() + _retry;
    if (_state == state::selecting || _state == state::requesting) {
        at = std::min(at, _deadline);
    }
    _timer.arm(at);
}

// A BOOTREQUEST with the options every message carries, then `extra` options.
static packet build_request(const ethernet_address& mac, std::uint32_t xid, std::uint8_t type, ipv4_addr ciaddr,
                            bool broadcast, const std::string& extra, std::uint16_t secs) {
    std::string b(bootp_len, '\0');
    b[0] = 1;  // BOOTREQUEST
    b[1] = 1;  // Ethernet
    b[2] = 6;
    store32(b.data() + 4, xid);
    store16(b.data() + 8, secs);
    store16(b.data() + 10, broadcast ? 0x8000 : 0);  // ask for broadcast replies: we may have no address yet
    store_ip(b.data() + 12, ciaddr);
    std::memcpy(b.data() + 28, mac.mac.data(), 6);
    b.resize(bootp_len + 4);
    store32(b.data() + bootp_len, magic_cookie);
    b += std::string{53, 1, char(type)};
    b += std::string{61, 7, 1};  // client identifier: type 1 (Ethernet) + MAC
    b.append(reinterpret_cast<const char*>(mac.mac.data()), 6);
    b += std::string{55, 5, 1, 3, 6, 26, 51};  // parameters: netmask, router, DNS, MTU, lease
    b += extra;
    b.push_back(char(255));
    if (b.size() < 300) {
        b.resize(300, '\0');  // BOOTP's minimum message size some servers insist on
    }
    // UDP header in front (checksum filled by ipv4::send).
    std::string u(sizeof(udp_hdr), '\0');
    store16(u.data(), 68);
    store16(u.data() + 2, 67);
    store16(u.data() + 4, std::uint16_t(sizeof(udp_hdr) + b.size()));
    packet p((u + b).data(), u.size() + b.size());
    p.offload().protocol = ip_proto_udp;
    p.offload().needs_csum = true;
    return p;
}

static std::string option_ip(std::uint8_t code, ipv4_addr a) {
    std::string s{char(code), 4};
    s.resize(6);
    store_ip(s.data() + 2, a);
    return s;
}

void dhcp_client::send_discover() {
    ++_discovers;
    ++_ifc.stats().dhcp.discovers;
    auto secs = std::uint16_t(std::chrono::duration_cast<std::chrono::seconds>(clock::now() - _started).count());
    auto p = build_request(_ifc.mac(), _xid, msg_discover, {}, true, {}, secs);
    ip_send_options o;
    o.broadcast_mac = true;
    o.src = ipv4_addr();
    (void)_ifc.ip().send(ipv4_addr(0xffffffffu), ip_proto_udp, std::move(p), o);
}

void dhcp_client::send_request(bool broadcast) {
    ++_ifc.stats().dhcp.requests;
    std::string extra;
    ipv4_addr ciaddr;
    if (_state == state::requesting) {
        // RFC 2131 4.3.2, SELECTING: server identifier and requested address, ciaddr zero.
        extra = option_ip(50, _offered) + option_ip(54, _server);
    } else {
        ciaddr = _ifc.config().addr;  // RENEWING/REBINDING: ciaddr, no server identifier
    }
    auto secs = std::uint16_t(std::chrono::duration_cast<std::chrono::seconds>(clock::now() - _started).count());
    auto p = build_request(_ifc.mac(), _xid, msg_request, ciaddr, ciaddr.is_any(), extra, secs);
    ip_send_options o;
    if (broadcast) {
        o.broadcast_mac = true;
        o.src = ciaddr;
        (void)_ifc.ip().send(ipv4_addr(0xffffffffu), ip_proto_udp, std::move(p), o);
    } else {
        (void)_ifc.ip().send(_server, ip_proto_udp, std::move(p), o);
    }
}

void dhcp_client::fail_acquire() {
    _state = state::idle;
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - _started);
    auto msg = fmt::format(
        "DHCP: no answer from a DHCP server on {} ({}) within {} ms ({} DISCOVER sent); check the link and the "
        "server, raise --dhcp-timeout, or configure the address with --host-ipv4-addr",
        _ifc.dev().name(), _ifc.mac().to_string(), waited.count(), _discovers);
    auto ex = std::make_exception_ptr(std::runtime_error(msg));
    _ifc.group()->fail_config(ex);
    if (_acquired) {
        auto pr = std::move(*_acquired);
        _acquired.reset();
        pr.set_exception(ex);
    }
}

void dhcp_client::on_timer() {
    auto now = clock::now();
    switch (_state) {
    case state::selecting:
    case state::requesting:
        if (now >= _deadline) {
            if (_acquired) {
                fail_acquire();
                return;
            }
            start_selecting(clock::time_point::max());
            return;
        }
        if (_state == state::selecting) {
            send_discover();
        } else {
            send_request(true);
        }
        _retry = std::min(_retry * 2, std::chrono::milliseconds(8000));
        retransmit_later();
        return;
    case state::bound:
        _state = state::renewing;
        ++_ifc.stats().dhcp.renewals;
        _xid = std::uint32_t(std::random_device()());
        break;
    case state::renewing:
    case state::rebinding: break;
    case state::idle: return;
    }
    if (_state == state::renewing && now >= _t2) {
        _state = state::rebinding;
        ++_ifc.stats().dhcp.rebinds;
    }
    if (_state == state::renewing) {
        send_request(false);
        // RFC 2131 4.4.5: wait half the time left until T2 (here at least dhcp_retry).
        auto wait = std::max<clock::duration>((_t2 - now) / 2, _ifc.opts().dhcp_retry);
        _timer.arm(std::min(now + wait, _t2));
        return;
    }
    if (now >= _lease_end) {
        lose_lease();
        return;
    }
    send_request(true);
    auto wait = std::max<clock::duration>((_lease_end - now) / 2, _ifc.opts().dhcp_retry);
    _timer.arm(std::min(now + wait, _lease_end));
}

void dhcp_client::lose_lease() {
    ++_ifc.stats().dhcp.leases_lost;
    native_log.warn("DHCP lease of {} on {} ended without renewal: address removed, discovering again",
                    _ifc.config().addr.to_string(), _ifc.dev().name());
    auto cfg = _ifc.config();
    cfg.addr = ipv4_addr();
    cfg.gateway = ipv4_addr();
    _ifc.set_config(cfg, true);
    start_selecting(clock::time_point::max());
}

void dhcp_client::bind(const ipv4_config& cfg, std::uint32_t lease_s, std::optional<std::uint32_t> t1_s,
                       std::optional<std::uint32_t> t2_s) {
    auto now = clock::now();
    using secs = std::chrono::seconds;
    // RFC 2131 4.4.5 defaults: T1 = 0.5 * lease, T2 = 0.875 * lease.
    auto lease = std::chrono::duration_cast<clock::duration>(secs(lease_s));
    auto t1 = t1_s ? std::chrono::duration_cast<clock::duration>(secs(*t1_s)) : lease / 2;
    auto t2 = t2_s ? std::chrono::duration_cast<clock::duration>(secs(*t2_s)) : lease * 7 / 8;
    t2 = std::min(t2, lease);
    t1 = std::min(t1, t2);
    _lease_end = now + lease;
    _t1 = now + t1;
    _t2 = now + t2;
    _state = state::bound;
    bool changed = !(cfg == _ifc.config());
    if (changed) {
        native_log.info("DHCP: {} leased {}/{} gateway {} mtu {} from {} for {} s", _ifc.dev().name(),
                        cfg.addr.to_string(), cfg.netmask.to_string(), cfg.gateway.to_string(), cfg.mtu,
                        _server.to_string(), lease_s);
        _ifc.set_config(cfg, true);
    }
    if (lease_s == 0xffffffffu) {
        _timer.cancel();  // infinite lease
    } else {
        _timer.arm(_t1);
    }
    if (_acquired) {
        auto pr = std::move(*_acquired);
        _acquired.reset();
        pr.set_value(cfg);
    }
}

void dhcp_client::receive(ip_packet&& p) {
    auto& st = _ifc.stats().dhcp;
    p.p.trim_front(p.ihl + sizeof(udp_hdr));
    dhcp_message m;
    if (!parse(p.p.to_string(), m) || m.xid != _xid || std::memcmp(m.chaddr, _ifc.mac().mac.data(), 6) != 0) {
        ++st.rx_dropped;
        return;
    }
    switch (m.type) {
    case msg_offer:
        if (_state != state::selecting || m.yiaddr.is_any()) {
            ++st.rx_dropped;
            return;
        }
        ++st.offers;
        _offered = m.yiaddr;
        _server = m.server_id.is_any() ? p.src : m.server_id;
        _state = state::requesting;
        _retry = _ifc.opts().dhcp_retry;
        send_request(true);
        retransmit_later();
        return;
    case msg_ack: {
        if (_state != state::requesting && _state != state::renewing && _state != state::rebinding) {
            ++st.rx_dropped;
            return;
        }
        if (m.yiaddr.is_any()) {
            ++st.rx_dropped;
            return;
        }
        ++st.acks;
        if (!m.server_id.is_any()) {
            _server = m.server_id;
        }
        ipv4_config cfg;
        cfg.addr = m.yiaddr;
        // Without option 1, the classful default (RFC 2131 leaves it to the client).
        cfg.netmask = !m.netmask.is_any()        ? m.netmask
                      : (m.yiaddr.ip >> 31) == 0 ? ipv4_addr(0xff000000u)
                      : (m.yiaddr.ip >> 30) == 2 ? ipv4_addr(0xffff0000u)
                                                 : ipv4_addr(0xffffff00u);
        cfg.gateway = m.router;
        std::uint16_t dev_mtu = _ifc.dev().features().mtu;
        cfg.mtu = dev_mtu;
        if (_ifc.opts().mtu) {
            cfg.mtu = std::min(cfg.mtu, _ifc.opts().mtu);
        }
        if (m.mtu && *m.mtu >= 68) {
            cfg.mtu = std::min(cfg.mtu, *m.mtu);
        }
        bind(cfg, m.lease.value_or(3600), m.t1, m.t2);
        return;
    }
    case msg_nak:
        ++st.naks;
        if (_state == state::requesting) {
            start_selecting(_deadline);  // the same deadline: a NAK is no answer
        } else if (_state == state::renewing || _state == state::rebinding) {
            lose_lease();
        }
        return;
    default: ++st.rx_dropped; return;
    }
}

}  // namespace reef::net::native
