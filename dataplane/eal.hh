// Starting DPDK's Environment Abstraction Layer (EAL) from Reef's options, and the lcore identity
// of shard threads.
//
// Threads: the EAL starts on the main thread, before smp::run, and makes it the main lcore
// (lcore 0) on shard 0's CPU (or, when shards are not pinned, on the whole cpuset); the EAL
// launches no worker threads. Every other shard thread registers itself as a non-EAL lcore with
// rte_thread_register() from smp_options::shard_init (add_shard_init() chains it there), so each
// shard has its own lcore id and thus its own per-lcore mempool caches; the registration is undone
// when the shard's reactor exits. Registering requires DPDK's multi-process support to be off,
// which it is for a primary process with no secondaries (the EAL refuses secondaries afterwards).
//
// Memory: hugepages when a hugetlbfs mount has free pages; otherwise anonymous memory (--no-huge)
// with a warning, unless --huge-dir named a mount explicitly (then it is an error). DPDK's log
// goes through Reef's logger "dpdk" (levels mapped: ERR and worse -> error, WARNING -> warn,
// NOTICE -> info, INFO/DEBUG -> debug).
//
// Errors: everything that stops the dataplane from starting throws eal_error with a message that
// says what to change (an unknown vdev driver, a vdev its driver could not start, a missing port,
// no hugepages in --huge-dir); the EAL's own error lines are appended. The bootstrap prints it
// and exits 2. The EAL can be started once per process: after a failure (or after stop_eal) the
// process must exit to try again.
#pragma once

#include "dataplane/dpdk_options.hh"
#include "runtime/log.hh"
#include "runtime/smp.hh"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace reef::dpdk {

extern logger dpdk_log;

/// The dataplane cannot start (or a port cannot be used): the message says why and what to change.
class eal_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// What the machine offers in hugepages.
struct hugepage_status {
    bool usable = false;  ///< some hugetlbfs mount (the one in --huge-dir if given) has free pages
    std::string mount;    ///< the mount found (the first with free pages)
    std::uint64_t free_bytes = 0;
    std::string reason;  ///< why not usable
};

/// Look at /proc/mounts and /sys/kernel/mm/hugepages. With `huge_dir` non-empty only that mount
/// counts. Never throws.
hugepage_status detect_hugepages(const std::string& huge_dir = {});

/// The EAL command line (argv[0] included) start_eal uses for these options, for `shards` shards
/// on `shard_cpus` (empty: not pinned, the process's allowed CPUs), with hugepages as `huge` says.
/// Throws eal_error when --huge-dir has no hugepages. Pure apart from reading the process id and
/// allowed CPUs; exposed for tests and for logging.
std::vector<std::string> make_eal_args(const dpdk_options& opts, unsigned shards,
                                       const std::vector<unsigned>& shard_cpus, const hugepage_status& huge);

/// Start the EAL on the calling thread, which must be the one that will run shard 0 (smp::run's
/// caller), before smp::run. `smp` is the configuration smp::run will get (validated here with
/// resolve_shard_cpus). Checks that every --vdev became a port and that --dpdk-port-index exists.
/// The calling thread's CPU affinity is left as it was (smp::run pins it). Throws eal_error (or
/// std::invalid_argument for bad options) and leaves the EAL unusable for this process.
void start_eal(const dpdk_options& opts, const smp_options& smp);

/// Has start_eal succeeded (and stop_eal not run)?
bool eal_running() noexcept;

/// Release the EAL's resources (rte_eal_cleanup) at process exit, after smp::run returned and
/// every device was destroyed. Does nothing if the EAL is not running.
void stop_eal() noexcept;

/// Make the calling shard thread an lcore (no-op for the main lcore, one already registered, or
/// when the EAL is not running), and arrange for rte_thread_unregister when its reactor exits.
/// Run on each shard from smp_options::shard_init. Throws eal_error when DPDK has no lcore id
/// left (RTE_MAX_LCORE).
void register_shard_thread(unsigned shard);

/// Chain register_shard_thread into o.shard_init (after any init already there).
void add_shard_init(smp_options& o);

/// The DPDK port id of the index-th available port. Throws eal_error naming the ports there are
/// ("no DPDK port 3: 1 port available (net_ring0)").
std::uint16_t find_port(unsigned index);

/// Names of the available ports, in port order.
std::vector<std::string> port_names();

}  // namespace reef::dpdk
