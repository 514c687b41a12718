// ARP (RFC 826) for IPv4 over Ethernet, one instance per shard of an interface.
//
// Shard 0 owns the table: every ARP frame lands there (non-IP frames have no flow hash, so
// device_base gives them to shard 0), it sends the requests, retries them and answers for our
// address. Every change it learns is pushed to the other shards' copies over smp; a shard reads
// only its own copy, and a miss on shard k asks shard 0 (one smp call per unresolved address,
// whatever the number of packets waiting), then installs the answer locally.
//
// Packets to an unresolved next hop wait in a per-address queue of at most
// native_options::arp_queue_limit packets (the oldest is dropped beyond, like Linux's
// unres_qlen); they leave, in order, when the address resolves, and are dropped (counted) when
// resolution fails after arp_retries requests arp_retry_interval apart.
//
// Entries live arp_cache_timeout after they were learned; an expired entry is resolved again on
// its next use, and a periodic sweep (only armed while the table is not empty) removes the
// others. Learning follows RFC 826's merge rule: a frame from a sender already in the table
// refreshes it; a frame for our address adds its sender; requests for other addresses are
// ignored (counted, no entry, no reply).
#pragma once

#include "runtime/future.hh"
#include "runtime/timer.hh"
#include "stack/native/wire.hh"
#include "stack/net/packet.hh"

#include <deque>
#include <optional>
#include <unordered_map>
#include <vector>

namespace reef::net::native {

class interface;

class arp {
public:
    using clock = steady_clock_type;

    explicit arp(interface& ifc);
    ~arp();
    arp(const arp&) = delete;
    arp& operator=(const arp&) = delete;

    /// Send an IPv4 packet (IP header first) to `next_hop` on the link: Ethernet header added
    /// and sent at once when the address is known, else queued behind its resolution. This shard.
    void send(ipv4_addr next_hop, packet ip_packet);
    /// An ARP frame's payload (Ethernet header removed). Shard 0 (other shards forward to it).
    void receive(packet p);
    /// Broadcast a gratuitous ARP request for our address (shard 0; no-op without an address).
    void send_gratuitous();
    /// A copy of what shard 0 learned (runs on the other shards, from shard 0's push): install
    /// it and send what waited for it.
    void learn_replica(ipv4_addr ip, ethernet_address mac, clock::time_point expires);
    /// Shard 0: the address's MAC, resolving it (requests and retries) if needed; nullopt when
    /// resolution failed. Used by the other shards' misses.
    future<std::optional<ethernet_address>> resolve(ipv4_addr ip);
    /// Shard k: shard 0 answered the miss for `ip` (nullopt: resolution failed).
    void remote_answer(ipv4_addr ip, std::optional<ethernet_address> mac);

    /// The resolved, unexpired MAC of `ip` in this shard's copy (tests, diagnostics).
    std::optional<ethernet_address> lookup(ipv4_addr ip) const;
    /// Entries in this shard's table (resolved or not).
    std::size_t size() const noexcept { return _table.size(); }
    /// Packets waiting for resolution on this shard.
    std::size_t queued() const noexcept;
    /// Forget everything (address change); queued packets are dropped and counted.
    void flush();

private:
    struct entry {
        ethernet_address mac;
        clock::time_point expires{};
        bool resolved = false;
        bool asked_owner = false;  // shard k: a resolve() call to shard 0 is in flight
        unsigned tries = 0;        // shard 0: requests sent
        std::deque<packet> queue;
        std::vector<promise<std::optional<ethernet_address>>> waiters;  // shard 0: other shards' misses
    };

    interface& _ifc;
    std::unordered_map<std::uint32_t, entry> _table;
    timer<clock> _tick;

    bool owner() const noexcept;
    void enqueue(entry& e, packet&& p);
    void transmit(const ethernet_address& mac, packet&& p);
    void send_request(ipv4_addr target);
    void send_reply(ipv4_addr target_ip, const ethernet_address& target_mac);
    void send_arp(std::uint16_t op, const ethernet_address& eth_dst, const ethernet_address& tha, ipv4_addr tpa);
    // Shard 0: record ip -> mac, release what waited, push the change to the other shards.
    void learn(ipv4_addr ip, const ethernet_address& mac);
    void resolved(entry& e, const ethernet_address& mac, clock::time_point expires);
    void fail(std::uint32_t ip, entry& e);
    void arm_tick();
    void on_tick();
};

}  // namespace reef::net::native
