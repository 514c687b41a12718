// Shard affinity of active opens (issue 6): on 2 shards, connect() on each shard picks a local port
// whose 4-tuple, hashed as the NIC would hash the peer's replies (Toeplitz over src addr, dst addr,
// src port, dst port of the received frame), maps back to the calling shard.
#include "smp_test.hh"

#include "runtime/smp.hh"
#include "stack/native/tcp.hh"
#include "stack/native/tcp_header.hh"
#include "stack/net/toeplitz.hh"

#include <algorithm>
#include <array>
#include <memory>
#include <vector>

using namespace reef;
using namespace reef::net;

namespace {

constexpr tcp_ipv4 local_ip = 0xc6120001;   // 198.18.0.1
constexpr tcp_ipv4 remote_ip = 0xc6120002;  // 198.18.0.2

// A lower that records SYNs and spreads flows over the shards like a one-queue port with software
// RSS: Toeplitz hash of the received direction, modulo the shard count.
class rss_lower final : public tcp_lower {
    toeplitz _t;

public:
    std::vector<tcp_header> sent;

    void send_segment(tcp_ipv4, tcp_ipv4, packet seg) override {
        sent.push_back(tcp_header::read(seg.get_header(0, tcp_min_header_len)));
    }
    std::uint16_t mss_for(tcp_ipv4) override { return 1460; }
    bool tx_checksum_offload() const noexcept override { return false; }
    unsigned shard_of_flow(tcp_ipv4 remote, std::uint16_t remote_port, tcp_ipv4 local,
                           std::uint16_t local_port) const noexcept override {
        std::array<std::uint8_t, 12> in{};
        auto put32 = [&](std::size_t at, std::uint32_t v) {
            for (int i = 0; i < 4; ++i) {
                in[at + std::size_t(i)] = std::uint8_t(v >> (24 - 8 * i));
            }
        };
        put32(0, remote);
        put32(4, local);
        in[8] = std::uint8_t(remote_port >> 8);
        in[9] = std::uint8_t(remote_port);
        in[10] = std::uint8_t(local_port >> 8);
        in[11] = std::uint8_t(local_port);
        return _t.hash(in) % smp::count;
    }
    tcp_ipv4 source_address_for(tcp_ipv4) override { return local_ip; }
};

// On the calling shard: 64 connects; every SYN's source port hashes back here; all ports differ.
future<unsigned> connect_here() {
    rss_lower lower;
    tcp_config cfg;
    cfg.max_syn_retransmits = 0;
    auto t = std::make_unique<tcp>(lower, cfg);
    std::vector<future<connected_socket>> pending;
    for (unsigned i = 0; i < 64; ++i) {
        pending.push_back(t->connect(socket_address(inet_address::from_ipv4(remote_ip), 9000)));
    }
    unsigned wrong = 0;
    std::vector<std::uint16_t> ports;
    for (auto& h : lower.sent) {
        if (!h.has(tcp_flag::syn)) {
            continue;
        }
        ports.push_back(h.src_port);
        if (lower.shard_of_flow(remote_ip, 9000, local_ip, h.src_port) != this_shard_id()) {
            ++wrong;
        }
    }
    EXPECT_EQ(ports.size(), 64u);
    std::sort(ports.begin(), ports.end());
    EXPECT_EQ(std::unique(ports.begin(), ports.end()), ports.end());
    EXPECT_EQ(t->connection_count(), 64u);
    // Destroying the stack fails the pending connects (ECONNABORTED); collect them.
    t.reset();
    for (auto& f : pending) {
        try {
            co_await std::move(f);
            ADD_FAILURE() << "a connect without a SYN-ACK succeeded";
        } catch (...) {
        }
    }
    co_return wrong;
}

}  // namespace

REEF_SMP_TEST(tcp_shards, connect_picks_a_port_that_hashes_back_to_the_calling_shard, 2) {
    EXPECT_EQ(smp::count, 2u);
    for (unsigned shard = 0; shard < smp::count; ++shard) {
        auto wrong = co_await smp::submit_to(shard, [] { return connect_here(); });
        EXPECT_EQ(wrong, 0u) << "shard " << shard;
    }
}
