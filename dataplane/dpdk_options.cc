#include "dataplane/dpdk_options.hh"

#include <fmt/format.h>

#include <cctype>
#include <set>
#include <sstream>
#include <stdexcept>

namespace reef::dpdk {

namespace {

// Bounds: beyond them no PMD accepts the ring, or the value is a unit mistake.
constexpr unsigned min_ring = 32;
constexpr unsigned max_ring = 32768;
constexpr unsigned max_mbufs = 16u << 20;
constexpr unsigned max_idle_wakeup_us = 1'000'000;
// What a pool needs beyond its RX ring's and TX ring's mbufs: bursts being processed, packets the
// stack holds, frames in flight to other shards.
constexpr unsigned pool_slack = 512;

// EAL options Reef derives itself (the lcore layout must match the shards; the prefix must be
// unique per process; the memory mode comes from --no-huge/--in-memory). Giving them through
// --dpdk-args would silently fight Reef's own, so they are refused with what to use instead.
struct owned_option {
    const char* name;
    const char* instead;
};
constexpr owned_option owned_options[] = {
    {"-l", "--cpuset/--smp (lcores follow the shards)"},
    {"-c", "--cpuset/--smp (lcores follow the shards)"},
    {"--lcores", "--cpuset/--smp (lcores follow the shards)"},
    {"--main-lcore", "--cpuset (the main lcore is shard 0's CPU)"},
    {"--vdev", "--vdev"},
    {"--no-huge", "--no-huge"},
    {"--huge-dir", "--huge-dir"},
    {"--in-memory", "--in-memory"},
    {"--file-prefix", "nothing: Reef makes a prefix unique to the process"},
};

}  // namespace

std::string check_vdev(const std::string& vdev) {
    if (vdev.empty()) {
        return "empty device";
    }
    for (char c : vdev) {
        if (std::isspace(static_cast<unsigned char>(c))) {
            return fmt::format("'{}' contains white space", vdev);
        }
    }
    auto comma = vdev.find(',');
    std::string name = vdev.substr(0, comma);
    if (name.empty()) {
        return fmt::format("'{}' has no device name before its arguments", vdev);
    }
    if (!std::isalpha(static_cast<unsigned char>(name[0]))) {
        return fmt::format("'{}': a device name starts with its driver's name, e.g. net_ring0", vdev);
    }
    for (char c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
            return fmt::format("'{}': device name '{}' may hold only letters, digits and '_'", vdev, name);
        }
    }
    while (comma != std::string::npos) {
        auto next = vdev.find(',', comma + 1);
        auto kv = vdev.substr(comma + 1, next == std::string::npos ? std::string::npos : next - comma - 1);
        auto eq = kv.find('=');
        if (kv.empty() || eq == 0 || eq == std::string::npos) {
            return fmt::format("'{}': argument '{}' is not key=value", vdev, kv);
        }
        comma = next;
    }
    return {};
}

void dpdk_options::register_options(CLI::App& app) {
    const char* section = "DPDK options";
    auto* pmd = app.add_flag("--dpdk-pmd", enabled,
                             "Run the native network stack over a DPDK port (kernel bypass) instead of kernel "
                             "sockets")
                    ->group(section);
    app.add_option("--dpdk-port-index", port_index,
                   "DPDK port to use, in the EAL's order (PCI devices first, then --vdev devices as given)")
        ->check(CLI::Range(0u, 1023u))
        ->capture_default_str()
        ->needs(pmd)
        ->group(section);
    app.add_option("--vdev", vdevs,
                   "Virtual device for the EAL, repeatable: <driver><id>[,key=value...], e.g. "
                   "net_af_packet0,iface=veth0 or net_tap0 or net_memif0,role=server")
        ->check(CLI::Validator([](std::string& v) { return check_vdev(v); }, "DEVICE"))
        ->type_size(1)
        ->allow_extra_args(false)
        ->needs(pmd)
        ->group(section);
    app.add_option("--dpdk-args", eal_args,
                   "Extra EAL arguments, split on spaces and passed through (e.g. \"-a 0000:03:00.0 "
                   "--log-level=pmd.net.*:debug\")")
        ->needs(pmd)
        ->group(section);
    auto* nohuge = app.add_flag("--no-huge", no_huge,
                                "Use anonymous memory instead of hugepages (without hugepages DPDK starts like "
                                "this anyway, with a warning)")
                       ->needs(pmd)
                       ->group(section);
    app.add_option("--huge-dir", huge_dir,
                   "Hugetlbfs mount to take hugepages from (default: the EAL's choice); it must hold free "
                   "hugepages")
        ->check(CLI::ExistingDirectory)
        ->excludes(nohuge)
        ->needs(pmd)
        ->group(section);
    app.add_flag("--in-memory,!--no-in-memory", in_memory,
                 "Keep DPDK's state in memory only: no files under /var/run/dpdk, no secondary processes "
                 "(--no-in-memory lets tools such as dpdk-pdump attach)")
        ->capture_default_str()
        ->group(section);
    app.add_option("--hw-queue-weight", hw_queue_weight,
                   "With fewer hardware queues than shards: share of the flows a queue-owning shard keeps "
                   "compared with other shards (1 = equal, 0 = none: it only polls and forwards)")
        ->check(CLI::Range(0.0f, 1.0f))
        ->capture_default_str()
        ->group(section);
    app.add_option("--dpdk-rx-ring", rx_ring, "RX descriptors per queue (adjusted to what the port accepts)")
        ->check(CLI::Range(min_ring, max_ring))
        ->capture_default_str()
        ->group(section);
    app.add_option("--dpdk-tx-ring", tx_ring, "TX descriptors per queue (adjusted to what the port accepts)")
        ->check(CLI::Range(min_ring, max_ring))
        ->capture_default_str()
        ->group(section);
    app.add_option("--dpdk-mbufs-per-shard", mbufs_per_shard,
                   "Packet buffers (mbufs) in each shard's pool, on the shard's NUMA node; at least the RX "
                   "plus TX ring sizes plus 512")
        ->check(CLI::Range(min_ring * 2 + pool_slack, max_mbufs))
        ->capture_default_str()
        ->group(section);
    app.add_option("--dpdk-idle-wakeup-us", idle_wakeup_us,
                   "Longest sleep (us) of an idle shard that polls a queue, when the reactor's idle policy "
                   "lets it sleep; 0: such shards never sleep")
        ->check(CLI::Range(0u, max_idle_wakeup_us))
        ->capture_default_str()
        ->group(section);
}

std::vector<std::string> dpdk_options::extra_eal_args() const {
    std::vector<std::string> out;
    std::istringstream in(eal_args);
    std::string a;
    while (in >> a) {
        out.push_back(a);
    }
    return out;
}

void dpdk_options::validate() const {
    if (rx_ring < min_ring || rx_ring > max_ring) {
        throw std::invalid_argument(fmt::format("--dpdk-rx-ring {}: must be in [{}, {}]", rx_ring, min_ring, max_ring));
    }
    if (tx_ring < min_ring || tx_ring > max_ring) {
        throw std::invalid_argument(fmt::format("--dpdk-tx-ring {}: must be in [{}, {}]", tx_ring, min_ring, max_ring));
    }
    if (!(hw_queue_weight >= 0.0f && hw_queue_weight <= 1.0f)) {
        throw std::invalid_argument(fmt::format("--hw-queue-weight {}: must be in [0, 1]", hw_queue_weight));
    }
    unsigned need = rx_ring + tx_ring + pool_slack;
    if (mbufs_per_shard < need) {
        throw std::invalid_argument(fmt::format(
            "--dpdk-mbufs-per-shard {} is too small for --dpdk-rx-ring {} and --dpdk-tx-ring {}: give at least {} "
            "(or smaller rings)",
            mbufs_per_shard, rx_ring, tx_ring, need));
    }
    if (no_huge && !huge_dir.empty()) {
        throw std::invalid_argument("--huge-dir and --no-huge exclude each other");
    }
    std::set<std::string> names;
    for (auto& v : vdevs) {
        if (auto err = check_vdev(v); !err.empty()) {
            throw std::invalid_argument(fmt::format("--vdev: {}", err));
        }
        auto name = v.substr(0, v.find(','));
        if (!names.insert(name).second) {
            throw std::invalid_argument(fmt::format("--vdev '{}' given twice: each device needs its own name", name));
        }
    }
    for (auto& a : extra_eal_args()) {
        for (auto& o : owned_options) {
            std::string_view n = o.name;
            std::string_view arg = a;
            // Short options may carry their value attached ("-l0-3"); long ones after '='.
            bool hit = n.size() == 2 ? arg.substr(0, 2) == n
                                     : (arg == n || arg.substr(0, n.size() + 1) == std::string(n) + "=");
            if (hit) {
                throw std::invalid_argument(
                    fmt::format("--dpdk-args: '{}' is set by Reef; use {} instead", a, o.instead));
            }
        }
    }
}

}  // namespace reef::dpdk
