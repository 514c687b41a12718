// The DPDK options of a Reef dataplane (help section "DPDK options"), declared in one place like
// runtime/options.hh's groups: fields carry the defaults, register_options() adds each option to a
// CLI11 app with its help text and per-value validators, validate() checks what involves several
// options. eal.hh turns the values into the EAL's command line; dpdk_device.hh reads the port and
// queue settings.
//
// Errors name the option ("--dpdk-rx-ring: Value 5 not in range [32 - 32768]", "--vdev
// 'net_ring0' given twice"), so the bootstrap can print them as they are and exit 2.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace reef::dpdk {

struct dpdk_options {
    /// --dpdk-pmd: run the native stack over a DPDK port instead of the kernel. The other DPDK
    /// options take effect only with it (the bootstrap does not start the EAL otherwise).
    bool enabled = false;
    /// --dpdk-port-index: which DPDK port (in the EAL's order: PCI devices, then vdevs as given).
    unsigned port_index = 0;
    /// --vdev, repeatable: a virtual device, "<driver><id>[,key=value...]", e.g.
    /// "net_af_packet0,iface=veth0". Passed to the EAL as given.
    std::vector<std::string> vdevs;
    /// --dpdk-args: extra EAL arguments, split on whitespace and passed through (before the ones
    /// Reef derives, so Reef's lcore layout and file prefix cannot be overridden by accident;
    /// options Reef owns are rejected, see validate()).
    std::string eal_args;
    /// --no-huge: anonymous memory instead of hugepages (slower TLB-wise; tests, small machines).
    bool no_huge = false;
    /// --huge-dir: the hugetlbfs mount to use (default: the EAL finds one). Given explicitly, it
    /// must hold free hugepages or start-up fails rather than falling back to --no-huge.
    std::string huge_dir;
    /// --in-memory (default on; --no-in-memory to turn off): no files in /var/run/dpdk or
    /// hugetlbfs, no secondary processes. Off lets tools like dpdk-pdump attach.
    bool in_memory = true;
    /// --hw-queue-weight: share of the flows a shard that owns a hardware queue keeps for itself
    /// when there are fewer queues than shards (1 = as many as any shard, 0 = none: it only polls
    /// and forwards). See net::build_reta.
    float hw_queue_weight = 1.0f;
    /// --dpdk-rx-ring / --dpdk-tx-ring: descriptors per queue (rounded to what the port accepts).
    unsigned rx_ring = 1024;
    unsigned tx_ring = 1024;
    /// --dpdk-mbufs-per-shard: mbufs in each shard's pool (2^n - 1 uses the pool's ring best).
    unsigned mbufs_per_shard = 8191;
    /// --dpdk-idle-wakeup-us: a shard polling a queue may let its reactor sleep when idle (per
    /// the reactor's idle policy) for at most this long before it polls the queue again, as
    /// most PMDs cannot wake a sleeping thread. 0: never sleep while owning a queue.
    unsigned idle_wakeup_us = 250;

    /// Add the options to `app` (section "DPDK options"), bound to the fields above. Call once
    /// per app; the fields must outlive the app's parsing.
    void register_options(CLI::App& app);

    /// Checks across options (per-value checks ran while parsing): pool large enough for the
    /// rings, no duplicate vdev, --dpdk-args free of options Reef sets itself. Throws
    /// std::invalid_argument naming the option and what to change.
    void validate() const;

    /// --dpdk-args split on whitespace.
    std::vector<std::string> extra_eal_args() const;
};

/// Check one --vdev value: "<name>[,key=value...]" where name is a driver name followed by an
/// instance id ("net_ring0"). Returns an empty string when fine, else what is wrong.
std::string check_vdev(const std::string& vdev);

}  // namespace reef::dpdk
