#include "stack/native/arp.hh"

#include "stack/native/interface.hh"

#include "runtime/coarse_clock.hh"

#include <algorithm>

namespace reef::net::native {

namespace {
constexpr std::uint16_t op_request = 1;
constexpr std::uint16_t op_reply = 2;
}  // namespace

arp::arp(interface& ifc) : _ifc(ifc), _tick([this] { on_tick(); }) {}

arp::~arp() { flush(); }

bool arp::owner() const noexcept { return this_shard_id() == 0; }

std::size_t arp::queued() const noexcept {
    std::size_t n = 0;
    for (auto& [ip, e] : _table) {
        n += e.queue.size();
    }
    return n;
}

void arp::flush() {
    for (auto& [ip, e] : _table) {
        _ifc.stats().arp.queue_dropped += e.queue.size();
        for (auto& w : e.waiters) {
            w.set_value(std::nullopt);
        }
    }
    _table.clear();
    _tick.cancel();
}

std::optional<ethernet_address> arp::lookup(ipv4_addr ip) const {
    auto it = _table.find(ip.ip);
    if (it == _table.end() || !it->second.resolved || it->second.expires <= coarse_steady_now()) {
        return std::nullopt;
    }
    return it->second.mac;
}

void arp::transmit(const ethernet_address& mac, packet&& p) { _ifc.send_frame(mac, eth::type_ipv4, std::move(p)); }

void arp::enqueue(entry& e, packet&& p) {
    if (e.queue.size() >= std::max<std::size_t>(_ifc.opts().arp_queue_limit, 1)) {
        e.queue.pop_front();
        ++_ifc.stats().arp.queue_dropped;
    }
    e.queue.push_back(std::move(p));
}

void arp::send(ipv4_addr next_hop, packet ip_packet) {
    auto [it, fresh] = _table.try_emplace(next_hop.ip);
    auto& e = it->second;
    // Every packet sent passes here: the coarse clock (an entry lives a few ms past its expiry
    // at most) instead of a precise read per packet.
    if (e.resolved && e.expires > coarse_steady_now()) {
        transmit(e.mac, std::move(ip_packet));
        return;
    }
    if (e.resolved) {
        // Expired: resolve again; the packet waits like any other.
        e.resolved = false;
        e.tries = 0;
        e.asked_owner = false;
        ++_ifc.stats().arp.expired;
    }
    enqueue(e, std::move(ip_packet));
    if (owner()) {
        if (e.tries == 0) {
            e.tries = 1;
            send_request(next_hop);
        }
        arm_tick();
        return;
    }
    if (!e.asked_owner) {
        e.asked_owner = true;
        ++_ifc.stats().arp.remote_lookups;
        auto g = _ifc.group();
        unsigned self = this_shard_id();
        (void)smp::submit_to(0, [g, next_hop] {
            if (auto* i = g->local()) {
                return i->arp().resolve(next_hop);
            }
            return make_ready_future<std::optional<ethernet_address>>(std::nullopt);
        }).then_wrapped([g, next_hop, self](future<std::optional<ethernet_address>>&& f) {
            std::optional<ethernet_address> mac;
            if (!f.failed()) {
                mac = f.get_value();
            } else {
                f.ignore_ready_future();
            }
            // Back on this shard: the interface may be gone meanwhile.
            if (auto* i = g->local(); i && this_shard_id() == self) {
                i->arp().remote_answer(next_hop, mac);
            }
        });
    }
    arm_tick();
}

void arp::remote_answer(ipv4_addr ip, std::optional<ethernet_address> mac) {
    auto it = _table.find(ip.ip);
    if (it == _table.end()) {
        return;
    }
    auto& e = it->second;
    e.asked_owner = false;
    if (e.resolved) {
        return;  // a replica push got here first
    }
    if (!mac) {
        fail(ip.ip, e);
        return;
    }
    // The owner's entry lives arp_cache_timeout from its learning; ours at most as long.
    resolved(e, *mac, clock::now() + _ifc.opts().arp_cache_timeout);
}

future<std::optional<ethernet_address>> arp::resolve(ipv4_addr ip) {
    auto now = clock::now();
    auto [it, fresh] = _table.try_emplace(ip.ip);
    auto& e = it->second;
    if (e.resolved && e.expires > now) {
        return make_ready_future<std::optional<ethernet_address>>(e.mac);
    }
    if (e.resolved) {
        e.resolved = false;
        e.tries = 0;
        ++_ifc.stats().arp.expired;
    }
    e.waiters.emplace_back();
    auto f = e.waiters.back().get_future();
    if (e.tries == 0) {
        e.tries = 1;
        send_request(ip);
    }
    arm_tick();
    return f;
}

void arp::resolved(entry& e, const ethernet_address& mac, clock::time_point expires) {
    e.mac = mac;
    e.resolved = true;
    e.tries = 0;
    e.expires = expires;
    ++_ifc.stats().arp.resolved;
    auto q = std::move(e.queue);
    e.queue.clear();
    auto waiters = std::move(e.waiters);
    e.waiters.clear();
    for (auto& w : waiters) {
        w.set_value(mac);
    }
    for (auto& p : q) {
        transmit(mac, std::move(p));
    }
}

void arp::fail(std::uint32_t ip, entry& e) {
    ++_ifc.stats().arp.failed;
    _ifc.stats().arp.queue_dropped += e.queue.size();
    auto waiters = std::move(e.waiters);
    _table.erase(ip);
    for (auto& w : waiters) {
        w.set_value(std::nullopt);
    }
}

void arp::learn(ipv4_addr ip, const ethernet_address& mac) {
    auto expires = clock::now() + _ifc.opts().arp_cache_timeout;
    resolved(_table[ip.ip], mac, expires);
    arm_tick();
    auto g = _ifc.group();
    for (unsigned s = 1; s < smp::count; ++s) {
        with_interface(g, s, [ip, mac, expires](interface& i) { i.arp().learn_replica(ip, mac, expires); });
    }
}

void arp::learn_replica(ipv4_addr ip, ethernet_address mac, clock::time_point expires) {
    auto& e = _table[ip.ip];
    e.asked_owner = false;
    resolved(e, mac, expires);
    arm_tick();
}

void arp::receive(packet p) {
    auto& st = _ifc.stats().arp;
    auto* h = p.get_header<arp_hdr>(0);
    if (!h || load16(h->htype) != 1 || load16(h->ptype) != eth::type_ipv4 || h->hlen != 6 || h->plen != 4) {
        ++st.rx_dropped_malformed;
        return;
    }
    std::uint16_t op = load16(h->op);
    if (op != op_request && op != op_reply) {
        ++st.rx_dropped_malformed;
        return;
    }
    ethernet_address sha;
    std::memcpy(sha.mac.data(), h->sha, 6);
    ipv4_addr spa = load_ip(h->spa);
    ipv4_addr tpa = load_ip(h->tpa);
    if (sha.is_multicast()) {
        ++st.rx_dropped_malformed;  // nobody owns a multicast/broadcast hardware address
        return;
    }
    op == op_request ? ++st.rx_requests : ++st.rx_replies;
    ipv4_addr self = _ifc.config().addr;
    // RFC 826 "merge": refresh a sender we already know, whoever the frame is for. Address 0 is
    // a probe (RFC 5227): nothing to learn.
    bool merged = false;
    if (!spa.is_any() && spa != self) {
        auto it = _table.find(spa.ip);
        if (it != _table.end()) {
            learn(spa, sha);
            merged = true;
        }
    }
    if (self.is_any() || tpa != self) {
        if (op == op_request) {
            ++st.rx_ignored_not_for_us;
        }
        return;
    }
    if (!merged && !spa.is_any() && spa != self) {
        learn(spa, sha);
    }
    if (op == op_request) {
        send_reply(spa, sha);
    }
}

void arp::send_arp(std::uint16_t op, const ethernet_address& eth_dst, const ethernet_address& tha, ipv4_addr tpa) {
    packet p(std::size_t(1));
    auto* h = p.prepend_header<arp_hdr>();
    store16(h->htype, 1);
    store16(h->ptype, eth::type_ipv4);
    h->hlen = 6;
    h->plen = 4;
    store16(h->op, op);
    std::memcpy(h->sha, _ifc.mac().mac.data(), 6);
    store_ip(h->spa, _ifc.config().addr);
    std::memcpy(h->tha, tha.mac.data(), 6);
    store_ip(h->tpa, tpa);
    _ifc.send_frame(eth_dst, eth::type_arp, std::move(p));
}

void arp::send_request(ipv4_addr target) {
    ++_ifc.stats().arp.tx_requests;
    send_arp(op_request, broadcast_mac, ethernet_address{}, target);
}

void arp::send_reply(ipv4_addr target_ip, const ethernet_address& target_mac) {
    ++_ifc.stats().arp.tx_replies;
    send_arp(op_reply, target_mac, target_mac, target_ip);
}

void arp::send_gratuitous() {
    ipv4_addr self = _ifc.config().addr;
    if (self.is_any()) {
        return;
    }
    ++_ifc.stats().arp.tx_gratuitous;
    send_arp(op_request, broadcast_mac, ethernet_address{}, self);
}

void arp::arm_tick() {
    if (!_tick.armed() && !_table.empty()) {
        auto period = std::min(_ifc.opts().arp_retry_interval, _ifc.opts().arp_cache_timeout);
        _tick.arm_periodic(std::max(period, std::chrono::milliseconds(1)));
    }
}

// Retries of pending resolutions (shard 0; other shards wait for shard 0's answer), and the
// sweep of expired entries.
void arp::on_tick() {
    auto now = clock::now();
    for (auto it = _table.begin(); it != _table.end();) {
        auto& e = it->second;
        auto cur = it++;
        if (e.resolved) {
            if (e.expires <= now) {
                ++_ifc.stats().arp.expired;
                _table.erase(cur);
            }
            continue;
        }
        if (!owner()) {
            continue;
        }
        if (e.tries >= _ifc.opts().arp_retries) {
            fail(cur->first, e);
            continue;
        }
        ++e.tries;
        send_request(ipv4_addr(cur->first));
    }
    if (_table.empty()) {
        _tick.cancel();
    }
}

}  // namespace reef::net::native
