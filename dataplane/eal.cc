#include "dataplane/eal.hh"

#include "runtime/reactor.hh"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_log.h>

#include <fmt/format.h>

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>

namespace reef::dpdk {

logger dpdk_log("dpdk");

namespace {

std::atomic<bool> g_running{false};
std::atomic<bool> g_attempted{false};

// ---- DPDK's log, through Reef's logger

// Recent EAL lines at warning level or worse, kept to explain a failure.
struct log_capture {
    std::mutex mutex;
    std::deque<std::string> problems;
    static constexpr std::size_t keep = 32;
};
log_capture g_capture;

void emit_dpdk_line(std::string_view line) {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
        line.remove_suffix(1);
    }
    if (line.empty()) {
        return;
    }
    int lvl = rte_log_cur_msg_loglevel();
    log_level l = lvl <= int(RTE_LOG_ERR)       ? log_level::error
                  : lvl == int(RTE_LOG_WARNING) ? log_level::warn
                  : lvl == int(RTE_LOG_NOTICE)  ? log_level::info
                                                : log_level::debug;
    dpdk_log.log(l, "{}", line);
    if (lvl <= int(RTE_LOG_WARNING)) {
        std::lock_guard g(g_capture.mutex);
        g_capture.problems.emplace_back(line);
        if (g_capture.problems.size() > log_capture::keep) {
            g_capture.problems.pop_front();
        }
    }
}

// fopencookie write: DPDK may write a message in several pieces; each thread assembles its own
// lines.
ssize_t log_stream_write(void*, const char* buf, std::size_t size) {
    thread_local std::string partial;
    partial.append(buf, size);
    std::size_t start = 0;
    for (std::size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
        emit_dpdk_line(std::string_view(partial).substr(start, nl - start));
    }
    partial.erase(0, start);
    return ssize_t(size);
}

void install_log_stream() {
    static FILE* stream = [] {
        cookie_io_functions_t io{};
        io.write = log_stream_write;
        FILE* f = ::fopencookie(nullptr, "w", io);
        if (f) {
            ::setvbuf(f, nullptr, _IOLBF, 0);
        }
        return f;
    }();
    if (stream) {
        rte_openlog_stream(stream);
    }
}

std::vector<std::string> take_problems() {
    std::lock_guard g(g_capture.mutex);
    std::vector<std::string> out(g_capture.problems.begin(), g_capture.problems.end());
    g_capture.problems.clear();
    return out;
}

std::string with_context(std::string msg, const std::vector<std::string>& lines) {
    if (!lines.empty()) {
        msg += "\nDPDK said:";
        for (auto& l : lines) {
            msg += "\n  " + l;
        }
    }
    return msg;
}

// ---- hugepages

std::uint64_t parse_size_suffix(const std::string& v) {
    std::uint64_t n = 0;
    std::size_t i = 0;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') {
        n = n * 10 + std::uint64_t(v[i] - '0');
        ++i;
    }
    if (i < v.size()) {
        switch (v[i]) {
        case 'k':
        case 'K': n <<= 10; break;
        case 'm':
        case 'M': n <<= 20; break;
        case 'g':
        case 'G': n <<= 30; break;
        default: break;
        }
    }
    return n;
}

std::uint64_t default_hugepage_size() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    std::uint64_t v = 0;
    std::string unit;
    while (in >> key >> v) {
        std::getline(in, unit);
        if (key == "Hugepagesize:") {
            return v << 10;
        }
    }
    return 2u << 20;
}

std::uint64_t free_hugepages(std::uint64_t page_size) {
    std::ifstream in(fmt::format("/sys/kernel/mm/hugepages/hugepages-{}kB/free_hugepages", page_size >> 10));
    std::uint64_t n = 0;
    in >> n;
    return n;
}

std::string cpu_list(const std::vector<unsigned>& cpus) {
    std::string s;
    for (unsigned c : cpus) {
        s += s.empty() ? std::to_string(c) : "," + std::to_string(c);
    }
    return s;
}

bool has_arg(const std::vector<std::string>& args, std::initializer_list<std::string_view> names) {
    for (auto& a : args) {
        for (auto n : names) {
            if (a == n ||
                (a.size() > n.size() && a.compare(0, n.size(), n) == 0 && (a[n.size()] == '=' || n.size() == 2))) {
                return true;
            }
        }
    }
    return false;
}

std::string vdev_name(const std::string& vdev) { return vdev.substr(0, vdev.find(',')); }

// "net_af_packet0" -> "net_af_packet".
std::string driver_of(const std::string& name) {
    auto end = name.find_last_not_of("0123456789");
    return end == std::string::npos ? name : name.substr(0, end + 1);
}

}  // namespace

hugepage_status detect_hugepages(const std::string& huge_dir) {
    hugepage_status st;
    std::ifstream mounts("/proc/mounts");
    std::string line;
    bool any_mount = false;
    std::string wanted = huge_dir;
    while (wanted.size() > 1 && wanted.back() == '/') {
        wanted.pop_back();
    }
    while (std::getline(mounts, line)) {
        std::istringstream ls(line);
        std::string dev, dir, type, options;
        ls >> dev >> dir >> type >> options;
        if (type != "hugetlbfs") {
            continue;
        }
        if (!wanted.empty() && dir != wanted) {
            continue;
        }
        any_mount = true;
        std::uint64_t page = default_hugepage_size();
        std::istringstream os(options);
        for (std::string o; std::getline(os, o, ',');) {
            if (o.rfind("pagesize=", 0) == 0) {
                page = parse_size_suffix(o.substr(9));
            }
        }
        std::uint64_t n = free_hugepages(page);
        if (n > 0 && !st.usable) {
            st.usable = true;
            st.mount = dir;
            st.free_bytes = n * page;
        }
    }
    if (!st.usable) {
        if (!any_mount) {
            st.reason = wanted.empty() ? "no hugetlbfs mount (mount -t hugetlbfs nodev /dev/hugepages)"
                                       : fmt::format("{} is not a hugetlbfs mount", wanted);
        } else {
            st.reason = "no free hugepages (echo 512 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)";
        }
    }
    return st;
}

std::vector<std::string> make_eal_args(const dpdk_options& opts, unsigned shards,
                                       const std::vector<unsigned>& shard_cpus, const hugepage_status& huge) {
    auto extra = opts.extra_eal_args();
    std::vector<std::string> args{"reef"};
    // Passed-through arguments first: the ones Reef adds below are refused there (validate()).
    args.insert(args.end(), extra.begin(), extra.end());

    // Main lcore 0 on shard 0's CPU; unpinned shards leave it the whole cpuset.
    std::string cpus = shard_cpus.empty() ? cpu_list(available_cpus()) : std::to_string(shard_cpus[0]);
    args.push_back("--lcores");
    args.push_back(shard_cpus.empty() ? fmt::format("0@({})", cpus) : fmt::format("0@{}", cpus));

    // A prefix of this process's own keeps several dataplanes (and tests) on one machine apart.
    args.push_back(fmt::format("--file-prefix=reef-{}", ::getpid()));

    bool no_huge = opts.no_huge;
    if (!no_huge && !huge.usable) {
        if (!opts.huge_dir.empty()) {
            throw eal_error(fmt::format("--huge-dir {}: {}; free some hugepages there or run with --no-huge",
                                        opts.huge_dir, huge.reason));
        }
        no_huge = true;
    }
    if (no_huge) {
        args.push_back("--no-huge");
        // --in-memory needs dynamic memory, which --no-huge does not have; --no-shconf gives the
        // part that matters here (no files under /var/run/dpdk).
        if (opts.in_memory) {
            args.push_back("--no-shconf");
        }
        if (!has_arg(extra, {"-m", "--socket-mem"})) {
            // Anonymous memory is reserved up front: each shard's pool (an mbuf with its headers
            // is about 2.5 KiB), twice for a second port or pool resizing, plus the EAL's own.
            std::uint64_t per_shard_mb = (std::uint64_t(opts.mbufs_per_shard) * 2560 * 2 + (1u << 20) - 1) >> 20;
            args.push_back("-m");
            args.push_back(std::to_string(128 + per_shard_mb * std::max(shards, 1u)));
        }
    } else {
        if (!opts.huge_dir.empty()) {
            args.push_back("--huge-dir=" + opts.huge_dir);
        }
        if (opts.in_memory) {
            args.push_back("--in-memory");
        }
    }
    if (!opts.vdevs.empty() && !has_arg(extra, {"-a", "--allow", "-b", "--block", "--no-pci"})) {
        args.push_back("--no-pci");
    }
    if (!has_arg(extra, {"--telemetry", "--no-telemetry"})) {
        // The control plane exports port statistics; the telemetry socket would be a second door.
        args.push_back("--no-telemetry");
    }
    for (auto& v : opts.vdevs) {
        args.push_back("--vdev=" + v);
    }
    return args;
}

void start_eal(const dpdk_options& opts, const smp_options& smp) {
    if (g_attempted.exchange(true)) {
        throw eal_error(g_running ? "the DPDK EAL is already running in this process"
                                  : "the DPDK EAL failed to start earlier; it can be started once per process");
    }
    opts.validate();
    auto cpus = resolve_shard_cpus(smp);
    unsigned shards = unsigned(cpus.size());
    auto huge = detect_hugepages(opts.huge_dir);
    auto args = make_eal_args(opts, shards, smp.thread_affinity ? cpus : std::vector<unsigned>{}, huge);
    if (!opts.no_huge && !huge.usable) {
        dpdk_log.warn(
            "no usable hugepages ({}): starting DPDK with --no-huge (slower; pass --no-huge to silence "
            "this)",
            huge.reason);
    }
    if (shards > RTE_MAX_LCORE) {
        throw eal_error(fmt::format("{} shards but this DPDK build has at most {} lcores: use fewer shards (--smp)",
                                    shards, RTE_MAX_LCORE));
    }
    std::string cmdline;
    for (auto& a : args) {
        cmdline += (cmdline.empty() ? "" : " ") + a;
    }
    dpdk_log.info("starting the EAL: {}", cmdline);

    install_log_stream();
    take_problems();

    cpu_set_t before;
    bool have_mask = ::pthread_getaffinity_np(::pthread_self(), sizeof(before), &before) == 0;
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    int r = rte_eal_init(int(argv.size() - 1), argv.data());
    int err = rte_errno;
    if (have_mask) {
        // smp::run decides the pinning (and restores this mask when it returns).
        ::pthread_setaffinity_np(::pthread_self(), sizeof(before), &before);
    }
    auto problems = take_problems();
    if (r < 0) {
        for (auto& l : problems) {
            auto p = l.find("Unable to parse device '");
            if (p != std::string::npos) {
                auto start = p + 24;
                auto name = l.substr(start, l.find('\'', start) - start);
                throw eal_error(with_context(
                    fmt::format(
                        "vdev '{}': unknown driver '{}' (no such DPDK driver is installed: check the name, e.g. "
                        "net_ring0, net_tap0, net_af_packet0,iface=IF, net_memif0)",
                        name, driver_of(name)),
                    problems));
            }
        }
        throw eal_error(with_context(
            fmt::format("the DPDK EAL failed to start ({}); EAL arguments: {}", rte_strerror(err), cmdline), problems));
    }
    g_running = true;
    // A vdev whose driver exists but could not start (bad arguments, missing interface) does not
    // fail rte_eal_init: it is just missing from the ports.
    for (auto& v : opts.vdevs) {
        auto name = vdev_name(v);
        std::uint16_t pid;
        if (rte_eth_dev_get_port_by_name(name.c_str(), &pid) != 0) {
            std::vector<std::string> mine;
            for (auto& l : problems) {
                if (l.find(name) != std::string::npos || l.find("probe") != std::string::npos) {
                    mine.push_back(l);
                }
            }
            throw eal_error(with_context(fmt::format("vdev '{}': its driver could not start it (check its arguments "
                                                     "and that the interface or socket it names exists)",
                                                     v),
                                         mine));
        }
    }
    (void)find_port(opts.port_index);
    dpdk_log.info("EAL started: {} port(s), {}", rte_eth_dev_count_avail(),
                  huge.usable && !opts.no_huge ? "hugepages from " + huge.mount : std::string("no hugepages"));
}

bool eal_running() noexcept { return g_running; }

void stop_eal() noexcept {
    if (g_running.exchange(false)) {
        rte_eal_cleanup();
    }
}

void register_shard_thread(unsigned shard) {
    if (!g_running || rte_lcore_id() != LCORE_ID_ANY) {
        return;
    }
    if (rte_thread_register() != 0) {
        throw eal_error(fmt::format("shard {}: DPDK cannot give this thread an lcore id ({}); at most {} lcores exist",
                                    shard, rte_strerror(rte_errno), RTE_MAX_LCORE));
    }
    dpdk_log.debug("shard {} is lcore {}", shard, rte_lcore_id());
    if (engine_is_ready()) {
        engine().at_exit([] {
            rte_thread_unregister();
            return make_ready_future<>();
        });
    }
}

void add_shard_init(smp_options& o) {
    o.shard_init = [prev = std::move(o.shard_init)](unsigned shard) {
        if (prev) {
            prev(shard);
        }
        register_shard_thread(shard);
    };
}

std::vector<std::string> port_names() {
    std::vector<std::string> names;
    std::uint16_t pid;
    RTE_ETH_FOREACH_DEV(pid) {
        char name[RTE_ETH_NAME_MAX_LEN];
        if (rte_eth_dev_get_name_by_port(pid, name) == 0) {
            names.emplace_back(name);
        } else {
            names.push_back(fmt::format("port{}", pid));
        }
    }
    return names;
}

std::uint16_t find_port(unsigned index) {
    unsigned i = 0;
    std::uint16_t pid;
    RTE_ETH_FOREACH_DEV(pid) {
        if (i++ == index) {
            return pid;
        }
    }
    auto names = port_names();
    if (names.empty()) {
        throw eal_error(
            fmt::format("no DPDK port {}: no port available (give a --vdev, or bind a NIC to a DPDK "
                        "driver and allow it with --dpdk-args \"-a PCI_ADDRESS\")",
                        index));
    }
    std::string list;
    for (auto& n : names) {
        list += list.empty() ? n : ", " + n;
    }
    throw eal_error(fmt::format("no DPDK port {}: {} port{} available ({}); change --dpdk-port-index", index,
                                names.size(), names.size() == 1 ? "" : "s", list));
}

}  // namespace reef::dpdk
