// DHCP client (RFC 2131, options of RFC 2132) of the native stack. Runs on shard 0 only: DHCP
// replies that land on another shard (UDP to port 68, wherever its 4-tuple hashes) are copied to
// shard 0 by the UDP layer.
//
// A timer-driven state machine (no coroutine outlives the interface):
//  selecting  -- DISCOVER broadcast, retransmitted after dhcp_retry, doubling up to 8 s, until an
//                OFFER arrives or dhcp_timeout passes (acquire() then fails with a
//                std::runtime_error saying no server answered, how long and how many DISCOVERs);
//  requesting -- REQUEST broadcast for the offered address (server identifier, requested address)
//                until ACK (bound), NAK (back to selecting) or the same timeout;
//  bound      -- the lease is applied on every shard; at T1 (option 58, else half the lease):
//  renewing   -- REQUEST unicast to the server, retransmitted every half of the time left to T2
//                (at least dhcp_retry); an ACK extends the lease (bound again);
//  rebinding  -- from T2 (option 59, else 7/8 of the lease) the REQUEST is broadcast to any
//                server; when the lease ends without an ACK (or on a NAK) the address is removed
//                from every shard and discovery starts again (without a deadline).
#pragma once

#include "runtime/future.hh"
#include "runtime/timer.hh"
#include "stack/native/ipv4.hh"
#include "stack/native/wire.hh"

#include <chrono>
#include <optional>

namespace reef::net::native {

class interface;

class dhcp_client {
public:
    using clock = steady_clock_type;
    enum class state { idle, selecting, requesting, bound, renewing, rebinding };

    explicit dhcp_client(interface& ifc);
    ~dhcp_client();
    dhcp_client(const dhcp_client&) = delete;
    dhcp_client& operator=(const dhcp_client&) = delete;

    /// Start discovery; resolves with the first lease's configuration (already applied), or
    /// fails with std::runtime_error when no server answered within dhcp_timeout. Call once.
    future<ipv4_config> acquire();
    /// A UDP datagram to port 68 (on shard 0).
    void receive(ip_packet&& p);
    state current_state() const noexcept { return _state; }
    /// The server that granted the lease (0 before).
    ipv4_addr server() const noexcept { return _server; }

private:
    interface& _ifc;
    state _state = state::idle;
    std::uint32_t _xid = 0;
    ipv4_addr _offered, _server;
    std::chrono::milliseconds _retry{};
    clock::time_point _deadline{};  // selecting/requesting give up then (max(): never)
    clock::time_point _t1{}, _t2{}, _lease_end{};
    unsigned _discovers = 0;
    clock::time_point _started{};
    std::optional<promise<ipv4_config>> _acquired;
    timer<clock> _timer;

    void start_selecting(clock::time_point deadline);
    void send_discover();
    void send_request(bool broadcast);
    void on_timer();
    void retransmit_later();
    void lose_lease();
    void fail_acquire();
    void bind(const ipv4_config& cfg, std::uint32_t lease_s, std::optional<std::uint32_t> t1_s,
              std::optional<std::uint32_t> t2_s);
};

}  // namespace reef::net::native
