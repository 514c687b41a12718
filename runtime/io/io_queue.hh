// The disk I/O scheduler: I/O priority classes and the per-shard fair queue in front of the disk.
//
// Every disk request carries an io_priority_class (the default class when the caller gives none).
// Each shard has one queue: requests wait there per class and are dispatched to the kernel in
// proportion to their classes' shares, measured in cost (an estimate of the disk time a request
// takes: one operation plus its bytes, with reads and writes weighted separately by the disk
// model). Dispatch stops at the model's limit: at most max_in_flight requests at the disk and,
// when an io-properties file gave the disk's figures, no more cost per second than the disk
// sustains (a token bucket). Without an io-properties file the queue keeps 32 requests in flight
// per shard and does not limit the rate (logged once at start-up).
//
// The model describes the whole disk; with N shards each shard's queue gets 1/N of its rates and
// in-flight limit.
//
// Classes are process-wide: created once (any thread), with shares that can be changed at run time
// from any thread and take effect at the next dispatch decision on every shard. Statistics are
// per shard and per class.
#pragma once

#include "runtime/future.hh"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace reef {

/// A named share of the disk. Cheap to copy (an index into the process-wide table).
class io_priority_class {
    unsigned _id = 0;
    explicit io_priority_class(unsigned id) noexcept : _id(id) {}

public:
    /// Most classes a process can create (the default class included).
    static constexpr unsigned max_classes = 32;
    /// Shares of the default class ("default").
    static constexpr unsigned default_shares = 1000;

    /// The default class.
    io_priority_class() noexcept = default;

    /// Create a class (any thread, any time). Throws std::invalid_argument for an empty or
    /// already used name or shares outside 1..1000000, std::runtime_error when max_classes exist.
    static io_priority_class create(std::string name, unsigned shares);
    /// The class of that name, if one was created ("default" always exists).
    static std::optional<io_priority_class> find(std::string_view name);
    /// Every class, the default first.
    static std::vector<io_priority_class> all();

    unsigned id() const noexcept { return _id; }
    std::string name() const;
    unsigned shares() const noexcept;
    /// Change the shares (1..1000000, else std::invalid_argument) for every shard; takes effect at
    /// each shard's next dispatch decision. Any thread.
    void set_shares(unsigned shares) const;

    bool operator==(const io_priority_class&) const noexcept = default;
};

/// One class's statistics on one shard (or summed over shards by io_class_stats_all).
/// Times are totals over completed requests; divide by `requests` for averages.
struct io_class_stats {
    std::string name;
    unsigned shares = 0;
    std::uint64_t requests = 0;           ///< completed requests (reads + writes)
    std::uint64_t reads = 0;
    std::uint64_t writes = 0;
    std::uint64_t read_bytes = 0;         ///< bytes transferred by completed reads
    std::uint64_t write_bytes = 0;
    std::uint64_t errors = 0;             ///< requests that completed with an error
    std::chrono::nanoseconds queue_time{0};  ///< time spent waiting in the queue for dispatch
    std::chrono::nanoseconds exec_time{0};   ///< time from dispatch to completion
    std::uint64_t queued = 0;             ///< waiting in the queue now
    std::uint64_t in_flight = 0;          ///< at the disk now
};

/// The calling shard's statistics for every class, the default first. Classes this shard never
/// used are listed with zero counts. Must run on a reactor thread.
std::vector<io_class_stats> io_class_stats_local();
/// The statistics of every class summed over all shards (smp::count). Call from any shard.
future<std::vector<io_class_stats>> io_class_stats_all();
/// Set the shares of the class called `name`: the control plane's entry point. Throws
/// std::invalid_argument for an unknown name (the message lists the known ones) or shares
/// outside 1..1000000. Any thread.
void set_io_class_shares(std::string_view name, unsigned shares);

/// What the calling shard's disk queue runs on: the backend name ("io_uring", "linux-aio",
/// "syscall-pool") and the limits it applies. Starts the shard's queue if it has not started.
struct io_queue_info {
    std::string backend;
    unsigned max_in_flight = 0;
    bool rate_limited = false;    ///< an io-properties file gave the disk's rates
    double read_iops = 0;         ///< this shard's share of the model (0 when not rate limited)
    double read_bandwidth = 0;
    double write_iops = 0;
    double write_bandwidth = 0;
};
io_queue_info local_io_queue_info();

}  // namespace reef
