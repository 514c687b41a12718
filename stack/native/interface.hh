// The native stack's per-shard interface over a net::device: L2 input (MAC filter, demux by
// ethertype), L2 output, the IPv4 configuration, and the protocol layers of that shard (ARP,
// IPv4/ICMP, UDP, and on shard 0 the DHCP client).
//
// One interface per shard and device; the shards of one device share an interface_group: the
// device, the options, a slot per shard pointing at that shard's interface (each slot read and
// written only by its own shard), the UDP port registry (mutex), and on shard 0 the current
// configuration that shards started later wait for (DHCP).
//
// Cross-shard calls always go through the group (`with_interface`): a message to shard k finds
// k's interface in its slot, or nothing when it is gone, so nothing ever points at a destroyed
// interface. Packets never cross shards (their memory is the shard's): what must move (a
// reassembled datagram, a DHCP reply, a UDP datagram for a port bound elsewhere) is copied.
//
// Receive path (on the shard the device delivered the frame to): frames not for our MAC or the
// broadcast address are dropped (multicast too: nothing here needs it), one VLAN tag is skipped,
// ARP goes to shard 0's table, IPv4 to this shard's ipv4 layer, anything else is counted.
#pragma once

#include "runtime/future.hh"
#include "runtime/smp.hh"
#include "stack/native/arp.hh"
#include "stack/native/dhcp.hh"
#include "stack/native/ipv4.hh"
#include "stack/native/native_options.hh"
#include "stack/native/native_stats.hh"
#include "stack/native/udp.hh"
#include "stack/native/wire.hh"
#include "stack/net/api.hh"
#include "stack/net/device.hh"

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace reef::net::native {

/// The configuration `opts` gives statically (--host-ipv4-addr...) for a device of MTU
/// `device_mtu`. Throws std::invalid_argument naming the bad option.
ipv4_config static_config(const native_options& opts, std::uint16_t device_mtu);

class interface;

/// What the shards of one device share (see the file comment).
class interface_group {
public:
    interface_group(device& dev, const native_options& opts);

    device& dev;
    const native_options opts;

    /// This shard's interface, or nullptr (not created yet, or destroyed).
    interface* local() const noexcept {
        return _slots[this_shard_id()];
    }
    void set_local(interface* i) noexcept { _slots[this_shard_id()] = i; }

    // ---- UDP port registry (any shard)
    /// Bind `port` (0: a free ephemeral one) on this shard. Returns the port, or 0 when taken.
    std::uint16_t bind_udp(std::uint16_t port, bool reuse_port);
    void unbind_udp(std::uint16_t port) noexcept;
    /// A shard (other than this one) where `port` is bound, chosen by `hash` among them; nullopt
    /// when none.
    std::optional<unsigned> udp_owner(std::uint16_t port, std::uint32_t hash) const;

    // ---- configuration (shard 0)
    /// Shard 0: the configuration once known (at once for static ones).
    future<ipv4_config> wait_config();
    /// Shard 0: publish the configuration (resolves waiters).
    void publish_config(const ipv4_config& cfg);
    /// Shard 0: configuration failed (DHCP timeout): waiters get `ex`.
    void fail_config(std::exception_ptr ex);

private:
    std::vector<interface*> _slots;
    struct port_use {
        bool reuse_port = false;
        std::vector<unsigned> shards;
    };
    mutable std::mutex _ports_mutex;
    std::map<std::uint16_t, port_use> _ports;
    std::uint16_t _next_ephemeral = 49152;
    // shard 0 only
    std::optional<ipv4_config> _config;
    std::exception_ptr _config_error;
    std::vector<promise<ipv4_config>> _config_waiters;
};

/// Run f(interface&) on `shard` if the group has an interface there (else nothing).
template <typename Func>
void with_interface(const std::shared_ptr<interface_group>& g, unsigned shard, Func f) {
    (void)smp::submit_to(shard, [g, f = std::move(f)]() mutable {
        if (auto* i = g->local()) {
            f(*i);
        }
    }).handle_exception([](std::exception_ptr) {});
}

class interface {
public:
    /// Create this shard's interface over `g->dev` and install it as the device's receive handler
    /// on this shard. The configuration comes later (set_config).
    explicit interface(std::shared_ptr<interface_group> g);
    /// Removes the receive handler; packets queued here are dropped, pending futures fail.
    ~interface();
    interface(const interface&) = delete;
    interface& operator=(const interface&) = delete;

    // ---- layers of this shard
    class arp& arp() noexcept {
        return _arp;
    }
    class ipv4& ip() noexcept {
        return _ip;
    }
    class udp& udp() noexcept {
        return _udp;
    }
    /// Shard 0 with --dhcp: the client (else nullptr).
    dhcp_client* dhcp() noexcept { return _dhcp.get(); }
    void start_dhcp();

    const std::shared_ptr<interface_group>& group() const noexcept { return _g; }
    device& dev() const noexcept { return _g->dev; }
    const native_options& opts() const noexcept { return _g->opts; }
    const ethernet_address& mac() const noexcept { return _mac; }
    const ipv4_config& config() const noexcept { return _cfg; }
    native_stats& stats() noexcept { return _stats; }
    const native_stats& stats() const noexcept { return _stats; }

    /// Apply a configuration on this shard (a new address forgets ARP and reassembly state). On
    /// shard 0 also publishes it to the group and sends a gratuitous ARP when there is an
    /// address; `everywhere` (shard 0) pushes it to the other shards too.
    void set_config(const ipv4_config& cfg, bool everywhere = false);

    /// L2 input (the device's receive handler).
    void receive(packet p);
    /// Prepend an Ethernet header (our MAC as source) and hand the frame to the device.
    void send_frame(const ethernet_address& dst, std::uint16_t ethertype, packet p);
    /// What runs when the device has room again after a tx_room() of 0 (device::
    /// set_tx_ready_handler on this shard; empty to remove). TCP is the only sender that waits.
    void set_tx_ready_handler(std::function<void()> h) { _g->dev.set_tx_ready_handler(std::move(h)); }

private:
    std::shared_ptr<interface_group> _g;
    ethernet_address _mac;
    ipv4_config _cfg;
    native_stats _stats;
    class arp _arp;
    class ipv4 _ip;
    class udp _udp;
    std::unique_ptr<dhcp_client> _dhcp;
};

/// The group of `dev`'s interfaces, created on first use and shared by every shard's stack over
/// `dev` (released with the last of them).
std::shared_ptr<interface_group> group_for(device& dev, const native_options& opts);

/// A copy of a packet's bytes that may cross shards, and back.
struct portable_ip_packet {
    ipv4_addr src, dst;
    std::uint8_t proto = 0, ttl = 0;
    std::uint16_t ihl = 20;
    bool to_broadcast = false;
    std::string bytes;

    static portable_ip_packet from(const ip_packet& p);
    ip_packet to_packet() &&;
};

}  // namespace reef::net::native
