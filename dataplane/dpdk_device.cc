#include "dataplane/dpdk_device.hh"

#include "dataplane/eal.hh"
#include "runtime/coroutine.hh"
#include "runtime/future_util.hh"
#include "stack/net/checksum.hh"
#include "stack/net/ethernet.hh"

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_errno.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_memory.h>

#include <fmt/format.h>

#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <typeinfo>

namespace reef::dpdk {

namespace {

constexpr std::size_t eth_hdr = net::eth::header_len;
// Longest piece one attached mbuf carries (buf_len is 16 bits).
constexpr std::size_t max_ext_chunk = 32768;
// Most segments Reef sends in one frame, whatever the port allows.
constexpr unsigned max_tx_segments = 64;

std::atomic<unsigned> g_pool_serial{0};

using net::eth::l3_offset;
using net::eth::load_be16;

}  // namespace

// A zero-copy transmission: the packet's owner, kept until the PMD freed every mbuf attached to
// its memory. Made and destroyed on the sending shard; the free callback may run anywhere and
// only pushes it onto the sending shard's queue.
struct dpdk_device::completion {
    rte_mbuf_ext_shared_info shinfo;
    deleter owner;
    completion_queues_head* queue;
    completion* next = nullptr;
};

// The owner of a received frame's packet, constructed in the mbuf's private area (every RX pool
// has room for one): handing a received mbuf to the stack allocates nothing. Deleting it runs the
// class's own operator delete, which frees the mbuf the object lives in, after the destructors.
// transmit_local() recognizes it (rx_owner_mbuf) to send a received frame back in place.
struct dpdk_device::rx_owner final : deleter::impl {
    rx_owner() noexcept : impl(deleter()) {}
    static rte_mbuf* mbuf_of(void* self) noexcept {
        return reinterpret_cast<rte_mbuf*>(static_cast<char*>(self) - sizeof(rte_mbuf));
    }
    static void operator delete(void* self) noexcept { rte_pktmbuf_free(mbuf_of(self)); }
};

namespace {
constexpr std::uint16_t rx_priv_size =
    std::uint16_t((sizeof(dpdk_device::rx_owner) + RTE_MBUF_PRIV_ALIGN - 1) / RTE_MBUF_PRIV_ALIGN * RTE_MBUF_PRIV_ALIGN);
}

// One shard's completions. A free callback on the shard's own thread (the usual case: the PMD
// frees a sent frame inside rte_eth_tx_burst) pushes onto `local` without an atomic; only other
// threads use `top`. A locked instruction there waits for the stores before it to drain, and the
// PMD has just copied the frame (memif): it was 15% of a bulk transfer's time.
struct alignas(64) dpdk_device::completion_queues_head {
    std::atomic<completion*> top{nullptr};
    completion* local = nullptr;
    unsigned lcore = LCORE_ID_ANY;  // the shard thread's (set before traffic flows)
};

struct dpdk_device::completion_queues {
    std::unique_ptr<completion_queues_head[]> heads;
    explicit completion_queues(unsigned n) : heads(new completion_queues_head[n]) {}
};

struct dpdk_device::shard_part {
    rte_mempool* pool = nullptr;      // data mbufs (RX descriptors, copies)
    rte_mempool* ext_pool = nullptr;  // data-less mbufs for attached fragments
    std::unique_ptr<poller> queue_poller;
    std::vector<rte_mbuf*> txq;  // waiting for rte_eth_tx_burst
    // txq's frame lengths, kept apart: a sent mbuf may be freed already when tx_burst returns,
    // and reading every queued mbuf for each burst cost as much as the burst while the ring was
    // full (a third of the time in bulk with 8 connections).
    std::vector<std::uint32_t> txq_len;
    dpdk_shard_stats stats;
    std::size_t zc_outstanding = 0;  // completions made here and not yet run
    bool stopping = false;
};

// (inline: several calls per packet; only this file uses them)
inline dpdk_device::shard_part& dpdk_device::local_part() noexcept { return *_shards[this_shard_id()]; }
inline const dpdk_device::shard_part& dpdk_device::local_part() const noexcept { return *_shards[this_shard_id()]; }

class dpdk_device::queue_poller final : public pollfn {
    dpdk_device& _d;
    unsigned _queue;
    timer<> _wake;

public:
    queue_poller(dpdk_device& d, unsigned queue) : _d(d), _queue(queue), _wake([] {}) {}
    bool poll() override { return _d.poll_queue(); }
    bool pure_poll() override {
        auto& part = _d.local_part();
        auto& h = _d._completions->heads[this_shard_id()];
        if (!part.txq.empty() || h.local || h.top.load(std::memory_order_relaxed)) {
            return true;
        }
        return rte_eth_rx_queue_count(_d._cfg.port_id, std::uint16_t(_queue)) > 0;
    }
    // Most PMDs cannot wake a sleeping thread: sleep at most idle_wakeup_us, then poll again.
    bool try_enter_interrupt_mode() override {
        if (_d._cfg.idle_wakeup_us == 0) {
            return false;
        }
        _wake.arm(std::chrono::microseconds(_d._cfg.idle_wakeup_us));
        return true;
    }
    void exit_interrupt_mode() override { _wake.cancel(); }
};

dpdk_device_config dpdk_device_config::from_options(const dpdk_options& opts) {
    opts.validate();
    dpdk_device_config c;
    c.port_id = find_port(opts.port_index);
    c.rx_ring = opts.rx_ring;
    c.tx_ring = opts.tx_ring;
    c.mbufs_per_shard = opts.mbufs_per_shard;
    c.hw_queue_weight = opts.hw_queue_weight;
    c.idle_wakeup_us = opts.idle_wakeup_us;
    return c;
}

std::unique_ptr<dpdk_device> make_dpdk_device(const dpdk_options& opts) {
    return std::make_unique<dpdk_device>(dpdk_device_config::from_options(opts));
}

dpdk_device::dpdk_device(dpdk_device_config cfg) : _cfg(cfg) {
    if (!eal_running()) {
        throw eal_error("the DPDK EAL is not running: start it (start_eal) before making a DPDK device");
    }
    rte_eth_dev_info info{};
    int rc = rte_eth_dev_info_get(_cfg.port_id, &info);
    if (rc != 0) {
        throw eal_error(fmt::format("DPDK port {}: no such port ({})", _cfg.port_id, rte_strerror(-rc)));
    }
    char name[RTE_ETH_NAME_MAX_LEN] = {};
    rte_eth_dev_get_name_by_port(_cfg.port_id, name);
    _name = name;
    _driver = info.driver_name ? info.driver_name : "";
    if (info.device) {
        const rte_bus* bus = rte_dev_bus(info.device);
        _vdev = bus && std::strcmp(rte_bus_name(bus), "vdev") == 0;
        // memif's zero-copy client hands the peer offsets into its first memory region (the
        // first memseg list with memory, in rte_memseg_walk's order) for every descriptor it
        // sends: a fragment anywhere else (Reef's own heap, another list) would be read from the
        // wrong place. Only such memory may then go out without a copy.
        const rte_devargs* da = rte_dev_devargs(info.device);
        const char* args = da && da->args ? da->args : "";
        // Client is memif's default role.
        _memif_client = _driver == "net_memif" && !std::strstr(args, "role=server") && !std::strstr(args, "role=master");
        if (_memif_client && std::strstr(args, "zero-copy=yes")) {
            rte_memseg_walk(
                [](const rte_memseg_list* msl, const rte_memseg*, void* arg) {
                    *static_cast<const rte_memseg_list**>(arg) = msl;
                    return 1;  // the first is the one
                },
                &_zc_region);
        }
    }
    rte_ether_addr mac{};
    rte_eth_macaddr_get(_cfg.port_id, &mac);
    std::copy(std::begin(mac.addr_bytes), std::end(mac.addr_bytes), _mac.mac.begin());

    _queues = std::max(1u, std::min({smp::count, unsigned(info.max_rx_queues), unsigned(info.max_tx_queues)}));
    _hw_rss = _cfg.use_hw_rss && (info.flow_type_rss_offloads & RTE_ETH_RSS_PROTO_MASK) != 0;
    _reta_size = _hw_rss ? info.reta_size : 0;

    std::uint64_t want = RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
    if (_cfg.use_hw_offloads) {
        want |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM |
                RTE_ETH_TX_OFFLOAD_TCP_TSO;
    }
    _tx_offloads = want & info.tx_offload_capa;
    _features.tx_ip_csum_offload = _tx_offloads & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
    _features.tx_l4_csum_offload =
        (_tx_offloads & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) && (_tx_offloads & RTE_ETH_TX_OFFLOAD_UDP_CKSUM);
    _features.tx_tso =
        _features.tx_l4_csum_offload && _features.tx_ip_csum_offload && (_tx_offloads & RTE_ETH_TX_OFFLOAD_TCP_TSO);
    if (!_features.tx_tso) {
        _tx_offloads &= ~std::uint64_t(RTE_ETH_TX_OFFLOAD_TCP_TSO);
    }
    // A frame whose checksum the port could not judge is not verified: the stack checks checksums
    // itself; frames the port found bad are dropped here all the same.
    _features.rx_csum_offload = false;
    std::uint16_t mtu = 1500;
    if (rte_eth_dev_get_mtu(_cfg.port_id, &mtu) == 0 && mtu) {
        _features.mtu = mtu;
    }
    _features.max_frame_size = _features.tx_tso ? eth_hdr + 65535 : eth_hdr + _features.mtu;
    if (_tx_offloads & RTE_ETH_TX_OFFLOAD_MULTI_SEGS) {
        unsigned lim = max_tx_segments;
        if (info.tx_desc_lim.nb_seg_max) {
            lim = std::min<unsigned>(lim, info.tx_desc_lim.nb_seg_max);
        }
        if (info.tx_desc_lim.nb_mtu_seg_max) {
            lim = std::min<unsigned>(lim, info.tx_desc_lim.nb_mtu_seg_max);
        }
        _features.max_tx_fragments = std::max(1u, lim);
    } else {
        _features.max_tx_fragments = 1;
    }
    _shards.resize(smp::count);
    for (auto& p : _shards) {
        p = std::make_unique<shard_part>();
    }
    _completions = new completion_queues(smp::count);
    dpdk_log.info("port {} ({}, {}): {} queue(s) for {} shard(s){}, RSS {}, tx offloads {:#x}, mtu {}", _cfg.port_id,
                  _name, _driver, _queues, smp::count, _queues < smp::count ? " (software RSS)" : "",
                  _hw_rss ? "by the port" : "in software", _tx_offloads, _features.mtu);
}

dpdk_device::~dpdk_device() {
    if (_started && !_closed) {
        // Pollers registered in other shards' reactors would call into freed memory.
        dpdk_log.error("dpdk_device for port {} destroyed while running: call stop() first", _cfg.port_id);
        std::abort();
    }
    if (!_completions) {
        return;  // the constructor threw
    }
    if (engine_is_ready() && this_shard_id() < _shards.size()) {
        // Completions that arrived after stop() gave up waiting (frames freed late by a peer).
        run_completions();
    }
    free_pools(true);
    std::size_t out = 0;
    for (auto& p : _shards) {
        out += p->zc_outstanding;
    }
    if (out == 0) {
        delete _completions;
    } else {
        dpdk_log.warn("port {}: {} zero-copy transmissions never completed; their memory is leaked", _cfg.port_id, out);
    }
}


const dpdk_shard_stats& dpdk_device::local_dpdk_stats() const noexcept { return local_part().stats; }

// ---- lifecycle

future<> dpdk_device::start() {
    if (_started) {
        throw eal_error(fmt::format("DPDK port {}: start() called twice", _cfg.port_id));
    }
    _started = true;
    std::exception_ptr ex;
    try {
        co_await create_pools();
        co_await configure_port();
    } catch (...) {
        ex = std::current_exception();
    }
    if (ex) {
        if (_port_started) {
            rte_eth_dev_stop(_cfg.port_id);
        }
        rte_eth_dev_close(_cfg.port_id);
        _closed = true;
        free_pools(false);
        std::rethrow_exception(ex);
    }
    co_await start_base();
    co_await smp::invoke_on_all([this] { return net::run_as_task([this] { start_pollers(); }); });
}

future<> dpdk_device::create_pools() {
    unsigned serial = g_pool_serial.fetch_add(1);
    co_await smp::invoke_on_all([this, serial] {
        unsigned shard = this_shard_id();
        register_shard_thread(shard);
        _completions->heads[shard].lcore = rte_lcore_id();
        auto& part = local_part();
        int socket = int(rte_socket_id());
        if (socket < 0 || unsigned(socket) >= RTE_MAX_NUMA_NODES) {
            socket = SOCKET_ID_ANY;
        }
        unsigned n = _cfg.mbufs_per_shard;
        // A cache holds up to 1.5x its size per lcore; keep them a small part of the pool.
        unsigned cache = std::min(256u, n / 16);
        auto make = [&](const std::string& name, std::uint16_t priv, std::uint16_t room) {
            rte_mempool* p = rte_pktmbuf_pool_create(name.c_str(), n, cache, priv, room, socket);
            if (!p && socket != SOCKET_ID_ANY) {
                dpdk_log.warn("shard {}: no memory for pool {} on NUMA node {}; taking it from any node", shard, name,
                              socket);
                p = rte_pktmbuf_pool_create(name.c_str(), n, cache, priv, room, SOCKET_ID_ANY);
            }
            if (!p) {
                throw eal_error(fmt::format(
                    "shard {}: cannot create a pool of {} mbufs ({}): give DPDK more memory (hugepages, or --dpdk-args "
                    "\"-m MB\" with --no-huge) or lower --dpdk-mbufs-per-shard",
                    shard, n, rte_strerror(rte_errno)));
            }
            return p;
        };
        part.pool =
            make(fmt::format("rf{}p{}s{}", serial, _cfg.port_id, shard), rx_priv_size, RTE_MBUF_DEFAULT_BUF_SIZE);
        part.ext_pool = make(fmt::format("rf{}p{}s{}x", serial, _cfg.port_id, shard), 0, 0);
        part.txq.reserve(_cfg.tx_ring);
        part.txq_len.reserve(_cfg.tx_ring);
    });
}

future<> dpdk_device::configure_port() {
    const std::uint16_t port = _cfg.port_id;
    auto fail = [&](const char* what, int rc) {
        return eal_error(
            fmt::format("DPDK port {} ({}): {} failed: {}", port, _name, what, rte_strerror(rc < 0 ? -rc : rc)));
    };
    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(port, &info); rc != 0) {
        throw fail("reading its capabilities", rc);
    }
    rte_eth_conf conf{};
    conf.txmode.offloads = _tx_offloads;
    std::uint64_t rx_off = 0;
    if (_cfg.use_hw_offloads) {
        std::uint64_t csum =
            RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
        if ((info.rx_offload_capa & csum) == csum) {
            rx_off |= csum;
            _rx_csum_checked = true;
        }
    }
    const std::size_t room = RTE_MBUF_DEFAULT_BUF_SIZE - RTE_PKTMBUF_HEADROOM;
    if (_features.mtu + eth_hdr + 4 > room && (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER)) {
        rx_off |= RTE_ETH_RX_OFFLOAD_SCATTER;
    }
    std::vector<std::uint8_t> key(net::default_rss_key.begin(), net::default_rss_key.end());
    if (_hw_rss) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf =
            info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
        if (info.hash_key_size == key.size()) {
            conf.rx_adv_conf.rss_conf.rss_key = key.data();
            conf.rx_adv_conf.rss_conf.rss_key_len = std::uint8_t(key.size());
        }
        if (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_RSS_HASH) {
            rx_off |= RTE_ETH_RX_OFFLOAD_RSS_HASH;
        }
    }
    conf.rxmode.offloads = rx_off;
    if (int rc = rte_eth_dev_configure(port, std::uint16_t(_queues), std::uint16_t(_queues), &conf); rc != 0) {
        throw fail(fmt::format("configuring {} queue pair(s)", _queues).c_str(), rc);
    }
    std::uint16_t nb_rxd = std::uint16_t(std::min(_cfg.rx_ring, 65535u));
    std::uint16_t nb_txd = std::uint16_t(std::min(_cfg.tx_ring, 65535u));
    if (int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rxd, &nb_txd); rc != 0) {
        throw fail("sizing the rings", rc);
    }
    for (unsigned q = 0; q < _queues; ++q) {
        auto& part = *_shards[q];
        int socket = part.pool->socket_id;
        rte_eth_rxconf rxconf = info.default_rxconf;
        rxconf.offloads = rx_off;
        if (int rc = rte_eth_rx_queue_setup(port, std::uint16_t(q), nb_rxd, unsigned(socket), &rxconf, part.pool);
            rc != 0) {
            throw fail(fmt::format("setting up RX queue {} ({} descriptors)", q, nb_rxd).c_str(), rc);
        }
        rte_eth_txconf txconf = info.default_txconf;
        txconf.offloads = _tx_offloads;
        if (int rc = rte_eth_tx_queue_setup(port, std::uint16_t(q), nb_txd, unsigned(socket), &txconf); rc != 0) {
            throw fail(fmt::format("setting up TX queue {} ({} descriptors)", q, nb_txd).c_str(), rc);
        }
    }
    int rc = rte_eth_dev_start(port);
    if (rc != 0 && _memif_client) {
        // A memif client connects to its server's socket when it starts, and fails while the
        // server is not up yet: wait for it, as memif clients do, rather than make the order in
        // which two processes start matter.
        dpdk_log.info("port {} ({}): no memif server to connect to yet; retrying for up to {} s", port, _name,
                      memif_connect_wait.count());
        const auto deadline = steady_clock_type::now() + memif_connect_wait;
        while (rc != 0 && steady_clock_type::now() < deadline) {
            co_await sleep(std::chrono::milliseconds(100));
            rc = rte_eth_dev_start(port);
        }
    }
    if (rc != 0) {
        throw fail(_memif_client ? "connecting to its memif server (is the server up, and the socket path right?)"
                                 : "starting",
                   rc);
    }
    _port_started = true;

    if (_hw_rss && info.hash_key_size != key.size() && info.hash_key_size >= 4) {
        // The port takes another key size: use its own key and hash with it in software too.
        std::vector<std::uint8_t> own(info.hash_key_size);
        rte_eth_rss_conf rc{};
        rc.rss_key = own.data();
        rc.rss_key_len = info.hash_key_size;
        if (rte_eth_dev_rss_hash_conf_get(port, &rc) == 0) {
            key = std::move(own);
        } else {
            dpdk_log.warn("port {}: cannot read its RSS key; its hash is ignored and flows are hashed in software",
                          port);
            _hw_rss = false;
        }
    }
    std::size_t reta_entries = _reta_size ? _reta_size : 512;
    auto reta = net::build_reta(smp::count, _queues, _cfg.hw_queue_weight, reta_entries);
    if (_hw_rss && _reta_size && _queues > 1) {
        // Each entry's shard's own queue, or for a shard without one the queue that proxies for it.
        std::vector<rte_eth_rss_reta_entry64> conf64((_reta_size + RTE_ETH_RETA_GROUP_SIZE - 1) /
                                                     RTE_ETH_RETA_GROUP_SIZE);
        for (std::size_t i = 0; i < _reta_size; ++i) {
            auto& g = conf64[i / RTE_ETH_RETA_GROUP_SIZE];
            g.mask |= std::uint64_t(1) << (i % RTE_ETH_RETA_GROUP_SIZE);
            g.reta[i % RTE_ETH_RETA_GROUP_SIZE] = std::uint16_t(reta[i] % _queues);
        }
        if (int rc = rte_eth_dev_rss_reta_update(port, conf64.data(), _reta_size); rc != 0) {
            dpdk_log.warn(
                "port {}: programming its {}-entry RETA failed ({}); frames reaching the wrong queue are "
                "forwarded in software",
                port, _reta_size, rte_strerror(-rc));
        }
    }
    set_rss(net::rss_config{std::move(key), std::move(reta)});
    // Frames one shard may have queued or in flight to another: a share of its pool.
    unsigned others = std::max(1u, smp::count - 1);
    set_forward_limit(std::max<std::size_t>(forward_batch, _cfg.mbufs_per_shard / 4 / others));
}

void dpdk_device::start_pollers() {
    unsigned shard = this_shard_id();
    if (shard < _queues) {
        local_part().queue_poller = std::make_unique<poller>(std::make_unique<queue_poller>(*this, shard));
    }
}

future<> dpdk_device::stop() {
    if (!_started || _closed) {
        co_return;
    }
    co_await smp::invoke_on_all([this] {
        return net::run_as_task([this] {
            auto& part = local_part();
            part.stopping = true;
            part.queue_poller.reset();
            for (auto* m : part.txq) {
                rte_pktmbuf_free(m);
            }
            stats().tx_dropped += part.txq.size();
            part.txq.clear();
            part.txq_len.clear();
        });
    });
    co_await stop_base();
    if (_port_started) {
        if (int rc = rte_eth_dev_stop(_cfg.port_id); rc != 0) {
            dpdk_log.warn("port {}: stop failed: {}", _cfg.port_id, rte_strerror(-rc));
        }
        _port_started = false;
    }
    // Closing releases the queues, and with them the mbufs the PMD still held.
    rte_eth_dev_close(_cfg.port_id);
    _closed = true;

    // Zero-copy frames the PMD (or a peer port) freed have queued their completions; run them on
    // their shards, waiting a little for frames still held elsewhere.
    auto deadline = steady_clock_type::now() + std::chrono::seconds(1);
    while (true) {
        std::size_t out = 0;
        for (unsigned s = 0; s < smp::count; ++s) {
            out += co_await smp::submit_to(s, [this] {
                run_completions();
                return local_part().zc_outstanding;
            });
        }
        if (out == 0) {
            break;
        }
        if (steady_clock_type::now() > deadline) {
            dpdk_log.warn("port {}: {} zero-copy frames were not freed by the driver within 1 s", _cfg.port_id, out);
            break;
        }
        co_await sleep(std::chrono::milliseconds(1));
    }
    free_pools(false);
}

void dpdk_device::free_pools(bool final) noexcept {
    std::size_t kept = 0;
    for (auto& part : _shards) {
        for (rte_mempool** p : {&part->pool, &part->ext_pool}) {
            if (!*p) {
                continue;
            }
            if (rte_mempool_in_use_count(*p) == 0) {
                rte_mempool_free(*p);
                *p = nullptr;
            } else if (final) {
                kept += rte_mempool_in_use_count(*p);
            }
        }
    }
    if (kept) {
        dpdk_log.warn(
            "port {}: {} mbufs are still in use (packets kept past stop(), or frames in another port's "
            "ring); their pools are leaked",
            _cfg.port_id, kept);
    }
}

std::size_t dpdk_device::mbufs_in_use() const noexcept {
    std::size_t n = 0;
    for (auto& part : _shards) {
        if (part->pool) {
            n += rte_mempool_in_use_count(part->pool);
        }
        if (part->ext_pool) {
            n += rte_mempool_in_use_count(part->ext_pool);
        }
    }
    return n;
}

// ---- receive

bool dpdk_device::poll_queue() noexcept {
    auto& part = local_part();
    unsigned q = this_shard_id();
    bool work = false;
    rte_mbuf* bufs[burst];
    std::uint16_t n = rte_eth_rx_burst(_cfg.port_id, std::uint16_t(q), bufs, burst);
    if (n) {
        ++part.stats.rx_bursts;
        auto& st = stats();
        unsigned k = 0;
        for (unsigned i = 0; i < n; ++i) {
            if (rx_frame_ok(bufs[i], st, part.stats)) {
                bufs[k++] = bufs[i];
            } else {
                rte_pktmbuf_free(bufs[i]);
            }
        }
        on_received_burst(std::span<rte_mbuf*>(bufs, k));
        work = true;
    }
    if (!part.txq.empty()) {
        flush_tx();
        work = true;
    }
    // Unconditional: a send() may have drained the queue since the sender was told to wait.
    wake_tx_if_room();
    work |= run_completions();
    return work;
}

bool dpdk_device::rx_frame_ok(rte_mbuf* m, net::device_stats& st, dpdk_shard_stats& ds) const noexcept {
    if (m->pkt_len < eth_hdr) {
        ++st.rx_dropped_runt;
        return false;
    }
    char hdr[eth_hdr + 4 + 40];
    std::size_t avail = std::min<std::size_t>(m->pkt_len, sizeof(hdr));
    const char* h;
    if (m->nb_segs == 1 && !m->next) {
        // The common case: one segment, whose length must be the frame's.
        if (m->data_len != m->pkt_len) {
            ++st.rx_dropped_bad_length;
            return false;
        }
        h = rte_pktmbuf_mtod(m, const char*);
    } else {
        unsigned segs = 0;
        std::uint64_t sum = 0;
        for (rte_mbuf* s = m; s; s = s->next) {
            if (++segs > max_rx_segments) {
                ++st.rx_dropped_chain;
                return false;
            }
            sum += s->data_len;
        }
        if (sum != m->pkt_len || segs != m->nb_segs) {
            ++st.rx_dropped_bad_length;
            return false;
        }
        h = static_cast<const char*>(rte_pktmbuf_read(m, 0, std::uint32_t(avail), hdr));
    }
    std::size_t l3;
    std::uint16_t type;
    if (!h || !l3_offset(h, avail, l3, type)) {
        ++st.rx_dropped_runt;
        return false;
    }
    if (type == net::eth::type_ipv4) {
        if (avail < l3 + 20) {
            ++st.rx_dropped_bad_length;
            return false;
        }
        std::size_t ihl = std::size_t(h[l3] & 0x0f) * 4;
        std::size_t total = load_be16(h + l3 + 2);
        if ((h[l3] & 0xf0) != 0x40 || ihl < 20 || total < ihl || l3 + total > m->pkt_len) {
            ++st.rx_dropped_bad_length;
            return false;
        }
    } else if (type == net::eth::type_ipv6) {
        if (avail < l3 + 40) {
            ++st.rx_dropped_bad_length;
            return false;
        }
        std::size_t payload = load_be16(h + l3 + 4);
        if (l3 + 40 + payload > m->pkt_len) {
            ++st.rx_dropped_bad_length;
            return false;
        }
    }
    if (_rx_csum_checked) {
        auto ol = m->ol_flags;
        if ((ol & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_BAD ||
            (ol & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_BAD) {
            ++ds.rx_bad_csum;
            return false;
        }
    }
    return true;
}

bool dpdk_device::nic_hash(rte_mbuf* const& m, std::uint32_t& h) const noexcept {
    if (_hw_rss && (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH)) {
        h = m->hash.rss;
        return true;
    }
    return false;
}

std::span<const char> dpdk_device::frame_head(rte_mbuf* const& m) const noexcept {
    return {rte_pktmbuf_mtod(m, const char*), m->data_len};
}

std::size_t dpdk_device::frame_size(rte_mbuf* const& m) const noexcept { return m->pkt_len; }

net::packet dpdk_device::to_packet(rte_mbuf*&& frame) {
    rte_mbuf* m = std::exchange(frame, nullptr);
    net::fragment frags[max_rx_segments];
    std::size_t n = 0;
    for (rte_mbuf* s = m; s && n < max_rx_segments; s = s->next) {
        frags[n++] = net::fragment{rte_pktmbuf_mtod(s, char*), s->data_len};
    }
    // Every RX mbuf comes from a pool of this device (the queues' pools), which have the room.
    deleter d(new (rte_mbuf_to_priv(m)) rx_owner());
    return net::packet(frags, n, std::move(d));  // on bad_alloc, d frees the mbuf
}

bool dpdk_device::writable_view(rte_mbuf*& m, net::hook_frame& v) noexcept {
    // A chain, an mbuf attached to someone else's memory (a frame a peer port sent zero-copy,
    // with net_ring), or one shared: the hook must not write it.
    if (m->nb_segs != 1 || !RTE_MBUF_DIRECT(m) || rte_mbuf_refcnt_read(m) != 1) {
        return false;
    }
    v.data = rte_pktmbuf_mtod(m, char*);
    v.len = m->data_len;
    v.room = std::size_t(m->buf_len) - m->data_off;
    return true;
}

void dpdk_device::set_frame_len(rte_mbuf*& m, std::size_t len) noexcept {
    m->data_len = std::uint16_t(len);
    m->pkt_len = std::uint32_t(len);
    m->ol_flags = 0;  // the RX flags mean nothing on TX; the hook left the checksums right
    m->tx_offload = 0;
}

rte_mbuf* dpdk_device::rx_owner_mbuf(const net::packet& p) noexcept {
    // Only a packet that is exactly one whole-owned, unshared, single-segment received mbuf (its
    // bytes possibly trimmed or rewritten in place) can go back out as that mbuf.
    if (p.nr_frags() != 1) {
        return nullptr;
    }
    deleter::impl* i = p.owner().peek_impl();
    if (!i || i->refs != 1 || i->next || typeid(*i) != typeid(rx_owner)) {
        return nullptr;
    }
    rte_mbuf* m = rx_owner::mbuf_of(i);
    const net::fragment& f = p.frag(0);
    const char* buf = static_cast<const char*>(m->buf_addr);
    if (m->next || !RTE_MBUF_DIRECT(m) || rte_mbuf_refcnt_read(m) != 1 || f.base < buf ||
        f.base + f.size > buf + m->buf_len) {
        return nullptr;
    }
    return m;
}

void dpdk_device::free_frame(rte_mbuf*&& m) noexcept { rte_pktmbuf_free(std::exchange(m, nullptr)); }

// ---- transmit

bool dpdk_device::may_zero_copy(const char* addr) const noexcept {
    // A virtual device reads by virtual address (or copies); a real one DMAs, which needs memory
    // DPDK knows the IO address of.
    if (_zc_region) [[unlikely]] {
        return rte_mem_virt2memseg_list(addr) == _zc_region;
    }
    return _vdev || rte_mem_virt2memseg_list(addr) != nullptr;
}

bool dpdk_device::prepare_offloads(net::packet& p, rte_mbuf*, std::uint64_t& ol, std::uint16_t& l2, std::uint16_t& l3,
                                   std::uint16_t& l4) noexcept {
    auto& oi = p.offload();
    const char* eth = p.get_header(0, eth_hdr + 4 <= p.len() ? eth_hdr + 4 : eth_hdr);
    if (!eth) {
        return false;
    }
    std::size_t off;
    std::uint16_t type;
    if (!l3_offset(eth, std::min<std::size_t>(p.len(), eth_hdr + 4), off, type)) {
        return false;
    }
    l2 = std::uint16_t(off);
    std::uint8_t proto;
    char* ip;
    if (type == net::eth::type_ipv4) {
        ip = p.get_header(off, 20);
        if (!ip) {
            return false;
        }
        std::size_t ihl = std::size_t(ip[0] & 0x0f) * 4;
        if (ihl < 20 || !(ip = p.get_header(off, ihl))) {
            return false;
        }
        l3 = std::uint16_t(ihl);
        proto = std::uint8_t(ip[9]);
        ol |= RTE_MBUF_F_TX_IPV4;
        if (oi.needs_ip_csum) {
            ol |= RTE_MBUF_F_TX_IP_CKSUM;
            std::memset(ip + 10, 0, 2);
        }
    } else if (type == net::eth::type_ipv6) {
        ip = p.get_header(off, 40);
        if (!ip) {
            return false;
        }
        l3 = std::uint16_t(oi.ip_hdr_len > 40 ? oi.ip_hdr_len : 40);
        proto = oi.protocol ? oi.protocol : std::uint8_t(ip[6]);
        ol |= RTE_MBUF_F_TX_IPV6;
    } else {
        return false;
    }
    if (!oi.needs_csum && !oi.tso_seg_size) {
        l4 = 0;
        return true;
    }
    std::size_t l4off = off + l3;
    std::size_t field;
    if (proto == IPPROTO_TCP) {
        const char* th = p.get_header(l4off, 20);
        if (!th) {
            return false;
        }
        l4 = std::uint16_t((std::uint8_t(th[12]) >> 4) * 4);
        field = 16;
        ol |= oi.tso_seg_size ? RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_TCP_CKSUM : RTE_MBUF_F_TX_TCP_CKSUM;
    } else if (proto == IPPROTO_UDP && !oi.tso_seg_size) {
        l4 = 8;
        field = 6;
        ol |= RTE_MBUF_F_TX_UDP_CKSUM;
    } else {
        return false;
    }
    // The PMD expects the pseudo-header checksum (without the length for TSO) in the L4 field.
    // Copy the IP header first: reading the L4 field may move fragments.
    std::uint16_t phdr;
    if (type == net::eth::type_ipv4) {
        rte_ipv4_hdr iph;
        std::memcpy(&iph, p.get_header(off, 20), sizeof(iph));
        phdr = rte_ipv4_phdr_cksum(&iph, ol);
    } else {
        rte_ipv6_hdr iph;
        std::memcpy(&iph, p.get_header(off, 40), sizeof(iph));
        iph.proto = proto;
        if (l3 > 40) {
            iph.payload_len = rte_cpu_to_be_16(std::uint16_t(rte_be_to_cpu_16(iph.payload_len) - (l3 - 40)));
        }
        phdr = rte_ipv6_phdr_cksum(&iph, ol);
    }
    char* csum = p.get_header(l4off + field, 2);
    if (!csum) {
        return false;
    }
    std::memcpy(csum, &phdr, 2);
    return true;
}

rte_mbuf* dpdk_device::build_mbuf(net::packet&& pkt, bool allow_zc) noexcept {
    net::packet p = std::move(pkt);  // released (memory freed or handed to a completion) on return
    auto& part = local_part();
    auto& ds = part.stats;
    if (!p || p.len() == 0 || !part.pool) {
        return nullptr;
    }
    // ---- offloads, or software checksums
    auto& oi = p.offload();
    std::uint64_t ol = 0;
    std::uint16_t l2 = 0, l3 = 0, l4 = 0;
    if (oi.tso_seg_size && !_features.tx_tso) {
        if (p.len() > eth_hdr + _features.mtu) {
            ++ds.tx_bad_offload;
            return nullptr;
        }
        oi.tso_seg_size = 0;
    }
    if (oi.needs_csum || oi.needs_ip_csum || oi.tso_seg_size) {
        bool hw = (!oi.needs_ip_csum || _features.tx_ip_csum_offload) &&
                  (!oi.needs_csum || _features.tx_l4_csum_offload) && (!oi.tso_seg_size || _features.tx_tso);
        bool ok;
        if (hw) {
            ok = prepare_offloads(p, nullptr, ol, l2, l3, l4);
        } else {
            try {
                ok = net::fill_checksums(p);
            } catch (...) {
                ok = false;
            }
        }
        if (!ok) {
            ++ds.tx_bad_offload;
            return nullptr;
        }
    }

    // ---- plan the chain: attached fragments and copied runs
    const std::size_t room = rte_pktmbuf_data_room_size(part.pool) - RTE_PKTMBUF_HEADROOM;
    const std::size_t thr = std::max<std::size_t>(_cfg.zero_copy_threshold, 1);
    const unsigned max_segs = _features.max_tx_fragments;
    auto frags = p.fragments();
    auto plan = [&](bool zc, unsigned& nsegs, unsigned& next) {
        nsegs = next = 0;
        std::size_t copy_room = 0;
        for (auto& f : frags) {
            const char* b = f.base;
            std::size_t n = f.size;
            while (n) {
                std::size_t chunk;
                if (zc && n >= thr && may_zero_copy(b)) {
                    chunk = std::min(n, max_ext_chunk);
                    ++nsegs;
                    ++next;
                    copy_room = 0;
                } else {
                    if (copy_room == 0) {
                        ++nsegs;
                        copy_room = room;
                    }
                    chunk = std::min(n, copy_room);
                    copy_room -= chunk;
                }
                b += chunk;
                n -= chunk;
            }
        }
    };
    unsigned nsegs, next;
    plan(allow_zc, nsegs, next);
    if (nsegs > max_segs && allow_zc) {
        allow_zc = false;
        plan(false, nsegs, next);
        ++ds.tx_linearized;
    } else if (nsegs > max_segs) {
        ++ds.tx_linearized;
    }
    if (nsegs > max_segs) {
        // Fewer segments than this is impossible when copying into full mbufs.
        dpdk_log.debug("port {}: a {}-byte frame needs {} segments, the port takes {}", _cfg.port_id, p.len(), nsegs,
                       max_segs);
        return nullptr;
    }

    // ---- allocate everything first, so that nothing can fail half-way
    rte_mbuf* data[max_tx_segments];
    rte_mbuf* ext[max_tx_segments];
    unsigned ndata = nsegs - next;
    if (ndata && rte_pktmbuf_alloc_bulk(part.pool, data, ndata) != 0) {
        ++ds.tx_no_mbuf;
        return nullptr;
    }
    completion* c = nullptr;
    if (next) {
        c = new (std::nothrow) completion;
        if (!c || rte_pktmbuf_alloc_bulk(part.ext_pool, ext, next) != 0) {
            delete c;
            for (unsigned i = 0; i < ndata; ++i) {
                rte_pktmbuf_free(data[i]);
            }
            ++ds.tx_no_mbuf;
            return nullptr;
        }
        c->shinfo.free_cb = &dpdk_device::ext_free_cb;
        c->shinfo.fcb_opaque = c;
        rte_mbuf_ext_refcnt_set(&c->shinfo, std::uint16_t(next));
        c->queue = &_completions->heads[this_shard_id()];
    }

    // ---- fill, following the plan
    // IO addresses of zero-copy fragments. A virtual device reads by virtual address, and in VA
    // mode the IO address is the virtual one. In PA mode a real device's fragment lies in a DPDK
    // memseg (may_zero_copy), whose IO address is its base's plus the offset:
    // rte_mem_virt2iova would open and read /proc/self/pagemap for every fragment.
    const bool va = _vdev || rte_eal_iova_mode() == RTE_IOVA_VA;
    auto iova_of = [va](char* b) -> rte_iova_t {
        if (va) {
            return rte_iova_t(reinterpret_cast<std::uintptr_t>(b));
        }
        if (const rte_memseg* ms = rte_mem_virt2memseg(b, nullptr); ms && ms->iova != RTE_BAD_IOVA) {
            return ms->iova + rte_iova_t(b - static_cast<char*>(ms->addr));
        }
        return rte_mem_virt2iova(b);
    };
    rte_mbuf* head = nullptr;
    rte_mbuf* tail = nullptr;
    rte_mbuf* cur = nullptr;  // mbuf being copied into
    unsigned di = 0, ei = 0;
    std::size_t copied = 0;
    auto link = [&](rte_mbuf* m) {
        if (!head) {
            head = m;
        } else {
            tail->next = m;
        }
        tail = m;
    };
    for (auto& f : frags) {
        char* b = f.base;
        std::size_t n = f.size;
        while (n) {
            std::size_t chunk;
            if (allow_zc && n >= thr && may_zero_copy(b)) {
                chunk = std::min(n, max_ext_chunk);
                rte_mbuf* m = ext[ei++];
                rte_iova_t iova = iova_of(b);
                rte_pktmbuf_attach_extbuf(m, b, iova, std::uint16_t(chunk), &c->shinfo);
                m->data_len = std::uint16_t(chunk);
                link(m);
                cur = nullptr;
            } else {
                if (!cur || rte_pktmbuf_tailroom(cur) == 0) {
                    cur = data[di++];
                    link(cur);
                }
                chunk = std::min<std::size_t>(n, rte_pktmbuf_tailroom(cur));
                std::memcpy(rte_pktmbuf_mtod_offset(cur, char*, cur->data_len), b, chunk);
                cur->data_len = std::uint16_t(cur->data_len + chunk);
                copied += chunk;
            }
            b += chunk;
            n -= chunk;
        }
    }
    head->nb_segs = std::uint16_t(nsegs);
    head->pkt_len = std::uint32_t(p.len());
    head->ol_flags |= ol;
    head->l2_len = l2;
    head->l3_len = l3;
    head->l4_len = l4;
    if (ol & RTE_MBUF_F_TX_TCP_SEG) {
        head->tso_segsz = oi.tso_seg_size;
    }
    ds.tx_copied_bytes += copied;
    if (c) {
        ds.tx_zero_copy_frags += next;
        c->owner = std::move(p).release();
        ++part.zc_outstanding;
    }
    return head;
}

void dpdk_device::ext_free_cb(void*, void* opaque) {
    // Any thread: hand the completion to its shard (lock-free push; the shard's poller runs it).
    auto* c = static_cast<completion*>(opaque);
    auto* h = c->queue;
    if (h->lcore != LCORE_ID_ANY && h->lcore == rte_lcore_id()) {
        c->next = h->local;
        h->local = c;
        return;
    }
    auto& q = h->top;
    completion* top = q.load(std::memory_order_relaxed);
    do {
        c->next = top;
    } while (!q.compare_exchange_weak(top, c, std::memory_order_release, std::memory_order_relaxed));
}

bool dpdk_device::run_completions() noexcept {
    auto& h = _completions->heads[this_shard_id()];
    completion* local = std::exchange(h.local, nullptr);
    completion* remote =
        h.top.load(std::memory_order_relaxed) ? h.top.exchange(nullptr, std::memory_order_acquire) : nullptr;
    if (!local && !remote) {
        return false;
    }
    auto& part = local_part();
    for (completion* c : {local, remote}) {
        while (c) {
            completion* next = c->next;
            delete c;  // releases the packet's memory, here on its shard
            --part.zc_outstanding;
            c = next;
        }
    }
    return true;
}

std::optional<rte_mbuf*> dpdk_device::to_frame(net::packet&& p) noexcept {
    // Copied: this shard has no poller to run zero-copy completions.
    rte_mbuf* m = build_mbuf(std::move(p), false);
    if (!m) {
        return std::nullopt;
    }
    return m;
}

void dpdk_device::transmit_local(net::packet&& p) noexcept {
    auto& part = local_part();
    if (part.stopping) {
        net::packet dead = std::move(p);
        ++stats().tx_dropped;
        return;
    }
    auto& oi = p.offload();
    if (!oi.needs_csum && !oi.needs_ip_csum && !oi.tso_seg_size) {
        if (rte_mbuf* m = rx_owner_mbuf(p)) {
            // A received frame sent back (a packet hook answering in place): the same mbuf goes out.
            const net::fragment f = p.frag(0);
            std::move(p).release().release_impl();  // the mbuf is the TX ring's now
            m->data_off = std::uint16_t(f.base - static_cast<char*>(m->buf_addr));
            m->data_len = std::uint16_t(f.size);
            m->pkt_len = std::uint32_t(f.size);
            m->nb_segs = 1;
            m->ol_flags = 0;
            m->tx_offload = 0;
            ++part.stats.tx_in_place;
            queue_tx(part, m);
            return;
        }
    }
    rte_mbuf* m = build_mbuf(std::move(p), true);
    if (!m) {
        ++stats().tx_dropped;
        return;
    }
    queue_tx(part, m);
}

void dpdk_device::transmit_frame(rte_mbuf*&& m) noexcept { queue_tx(local_part(), std::exchange(m, nullptr)); }

std::size_t dpdk_device::tx_queued() const noexcept { return local_part().txq.size(); }

void dpdk_device::queue_tx(shard_part& part, rte_mbuf* m) noexcept {
    if (part.stopping) {
        rte_pktmbuf_free(m);
        ++stats().tx_dropped;
        return;
    }
    if (part.txq.size() >= _cfg.tx_ring) {
        flush_tx();
        if (part.txq.size() >= _cfg.tx_ring) {
            rte_pktmbuf_free(m);
            ++stats().tx_dropped;
            return;
        }
    }
    part.txq.push_back(m);  // reserved to tx_ring at start: no allocation
    part.txq_len.push_back(m->pkt_len);
    // Each time another burst is ready; while the port's ring is full the poller retries, and
    // trying again for every frame queued would only find it full again.
    if (part.txq.size() % burst == 0) {
        flush_tx();
    }
}

unsigned dpdk_device::flush_tx() noexcept {
    auto& part = local_part();
    auto& q = part.txq;
    std::size_t total = std::min<std::size_t>(q.size(), 65535);
    if (!total) {
        return 0;
    }
    std::uint16_t sent = rte_eth_tx_burst(_cfg.port_id, std::uint16_t(this_shard_id()), q.data(), std::uint16_t(total));
    if (sent) {
        auto& lens = part.txq_len;
        std::uint64_t bytes = 0;
        for (std::size_t i = 0; i < sent; ++i) {
            bytes += lens[i];
        }
        ++part.stats.tx_bursts;
        auto& st = stats();
        st.tx_packets += sent;
        st.tx_bytes += bytes;
        q.erase(q.begin(), q.begin() + sent);
        lens.erase(lens.begin(), lens.begin() + sent);
    }
    if (sent < total) {
        ++part.stats.tx_ring_full;
    }
    return sent;
}

// ---- information

net::link_status dpdk_device::get_link_status() const {
    rte_eth_link link{};
    net::link_status ls;
    if (rte_eth_link_get_nowait(_cfg.port_id, &link) == 0) {
        ls.up = link.link_status == RTE_ETH_LINK_UP;
        ls.speed_mbps = link.link_speed == RTE_ETH_SPEED_NUM_UNKNOWN ? 0 : link.link_speed;
        ls.full_duplex = link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX;
    }
    return ls;
}

rte_eth_stats dpdk_device::port_stats() const {
    rte_eth_stats s{};
    if (rte_eth_stats_get(_cfg.port_id, &s) != 0) {
        s = rte_eth_stats{};
    }
    return s;
}

std::vector<xstat> dpdk_device::xstats() const {
    std::vector<xstat> out;
    int n = rte_eth_xstats_get_names(_cfg.port_id, nullptr, 0);
    if (n <= 0) {
        return out;
    }
    std::vector<rte_eth_xstat_name> names(static_cast<std::size_t>(n));
    std::vector<rte_eth_xstat> values(static_cast<std::size_t>(n));
    int nn = rte_eth_xstats_get_names(_cfg.port_id, names.data(), unsigned(n));
    int nv = rte_eth_xstats_get(_cfg.port_id, values.data(), unsigned(n));
    if (nn <= 0 || nv <= 0) {
        return out;
    }
    out.reserve(std::size_t(nv));
    for (int i = 0; i < std::min(nn, nv); ++i) {
        auto id = values[std::size_t(i)].id;
        if (id < std::uint64_t(nn)) {
            out.push_back(xstat{names[id].name, values[std::size_t(i)].value});
        }
    }
    return out;
}

}  // namespace reef::dpdk
