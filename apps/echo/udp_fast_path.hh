// reef-echo's UDP fast path (--udp-fast-path): a packet hook on the DPDK device that answers UDP
// echo requests without the network stack, by turning each request frame into its own reply.
//
// What is answered: an untagged Ethernet frame addressed to the device's own MAC, carrying a whole
// IPv4 datagram (no fragment) of protocol UDP to `port`, to `address` when one is set (else to
// any unicast address). The reply is the same frame, same memory, with the MACs, the IPv4
// addresses and the UDP ports swapped: the hook returns hook_action::reply and the device sends
// the received buffer back out (for DPDK, the RX mbuf itself: nothing allocated, nothing copied).
//
// Checksums are left as they are, on purpose: swapping two 16-bit-aligned fields changes neither
// the IPv4 header's one's complement sum nor the UDP pseudo-header sum (addition commutes), so a
// request with valid checksums gives a reply with valid checksums (pytests/test_dataplane.py
// checks both on the wire). The IPv4 header checksum is verified on receive (20-60 bytes, cheap);
// the UDP checksum is not (it would cost a pass over the payload): a request with a bad one gets
// a reply with the same bad one, which its sender drops.
//
// Malformed frames (shorter than their headers, IHL < 5, IPv4 total length beyond the frame or
// below its headers, UDP length beyond the IP payload or below 8, bad IPv4 header checksum) are
// counted and passed on, as is every frame that is not for us; nothing here trusts a length field
// before checking it against the frame.
#pragma once

#include "stack/net/device.hh"

#include <cstddef>
#include <cstdint>
#include <optional>

namespace reef::echo {

/// Counters of one shard's fast path.
struct fast_path_stats {
    std::uint64_t answered = 0;   ///< requests turned into replies and sent
    std::uint64_t malformed = 0;  ///< IPv4/UDP frames with inconsistent headers, passed on
    std::uint64_t passed = 0;     ///< other frames (not UDP to us), passed on
};

/// What answer_in_place did with a frame.
enum class fast_path_verdict {
    answered,   ///< the frame is now the reply (send it)
    malformed,  ///< left as it was
    not_ours,   ///< left as it was
};

/// The fast path's decision and rewrite, without the device: checks the `len`-byte frame at
/// `frame` as described above (`own_mac` is the device's, `port` the UDP port in host order,
/// `address` an IPv4 address in network order or nullopt for any) and, when it is a request,
/// rewrites it in place into the reply (same length).
fast_path_verdict answer_in_place(char* frame, std::size_t len, const net::ethernet_address& own_mac,
                                  std::uint16_t port, std::optional<std::uint32_t> address) noexcept;

/// One shard's fast path. Run one per shard with sharded<udp_fast_path>; install() on each.
class udp_fast_path {
    std::uint16_t _port;
    std::optional<std::uint32_t> _address;
    fast_path_stats _stats;
    bool _installed = false;

public:
    /// `port` in host order; `address` an IPv4 address in network order, or nullopt for any.
    udp_fast_path(std::uint16_t port, std::optional<std::uint32_t> address) : _port(port), _address(address) {}

    /// Set this shard's packet hook on reef::app::device() (which must exist: --dpdk-pmd). The
    /// hook refers to this object: uninstall() before it is destroyed.
    void install();
    /// Remove the hook (if installed, and the device is still there). Idempotent.
    void uninstall() noexcept;
    /// sharded<> calls it: uninstalls.
    future<> stop() {
        uninstall();
        return make_ready_future<>();
    }

    const fast_path_stats& stats() const noexcept { return _stats; }
};

}  // namespace reef::echo
