// The disk model the I/O scheduler works from, and the process-wide disk I/O configuration.
//
// The model (what one disk sustains: read and write IOPS and bandwidth, and how many requests it
// takes in flight before latency only grows) comes from an io-properties file that apps/iotune
// writes after measuring the disk, given with --io-properties-file. The file is YAML or JSON:
//
//     # written by iotune
//     disks:
//       - mountpoint: /var/lib/reef
//         read_iops: 95000
//         read_bandwidth: 545000000     # bytes per second
//         write_iops: 85000
//         write_bandwidth: 510000000
//         max_in_flight: 32             # optional; default 32
//
// or {"disks": [{"mountpoint": "/var/lib/reef", "read_iops": 95000, ...}]}. Only the first disk's
// model is used (every file of a shard goes through one queue); further entries are ignored with
// a warning. Unknown fields are errors, so a misspelt field is not silently ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace reef::io {

/// One disk as iotune measured it.
struct disk_properties {
    std::string mountpoint;
    double read_iops = 0;          ///< random 4 KiB reads per second at the chosen depth
    double read_bandwidth = 0;     ///< sequential read bytes per second
    double write_iops = 0;
    double write_bandwidth = 0;
    unsigned max_in_flight = 32;   ///< requests the disk takes at once before latency only grows
};

/// A malformed io-properties file. what() names the file, the line and the field, e.g.
/// "io.yaml, line 5: read_iops: expected a positive number, got 'fast'".
class io_properties_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Parse the text of an io-properties file (YAML or JSON, see the file comment). `origin` names
/// the file in error messages. Throws io_properties_error.
disk_properties parse_io_properties(std::string_view text, std::string_view origin);
/// Read and parse a file. Throws io_properties_error (also for a file that cannot be read, with
/// the errno text).
disk_properties load_io_properties(const std::string& path);
/// The YAML text iotune writes for `d`; parse_io_properties reads it back unchanged.
std::string format_io_properties(const disk_properties& d, std::string_view comment = {});

/// Which kernel interface submits disk I/O.
enum class backend_choice {
    auto_select,  ///< io_uring where the kernel allows it, else linux-aio, else the syscall pool
    io_uring,
    linux_aio,
};
/// "auto", "io_uring" or "linux-aio"; throws std::invalid_argument naming the bad value.
backend_choice parse_backend_choice(std::string_view s);
const char* to_string(backend_choice c) noexcept;

/// The process-wide disk I/O configuration. Each shard reads it when it first does disk I/O, so
/// set it before the shards start (the --reactor-backend and --io-properties-file options do).
struct io_config {
    backend_choice backend = backend_choice::auto_select;
    /// Empty: no io-properties file; a conservative default model is used (logged once).
    std::optional<disk_properties> disk;
    /// Where `disk` came from, for log lines.
    std::string properties_origin;
};

/// Replace the configuration shards created from now on will use. Thread-safe.
void set_io_config(io_config cfg);
/// A copy of the current configuration. Thread-safe.
io_config get_io_config();

}  // namespace reef::io
