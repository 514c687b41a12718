// Disk I/O backends: the kernel interfaces that carry a shard's disk requests, behind one small
// interface (the model is Seastar's reactor_backend): io_uring (liburing), linux-aio (raw
// io_setup/io_submit through <linux/aio_abi.h>), and the syscall pool (pread/pwrite on helper
// threads) for filesystems without O_DIRECT and as the last resort when neither kernel interface
// can be set up.
//
// Internal to runtime/io: the I/O queue (io_queue.hh) owns one backend per shard and is the only
// caller. Everything runs on the owning shard.
#pragma once

#include "runtime/clocks.hh"
#include "runtime/future.hh"
#include "runtime/io/io_properties.hh"

#include <linux/aio_abi.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace reef::io::internal {

enum class io_op : std::uint8_t { read, write, readv, writev };

inline bool is_write(io_op op) noexcept { return op == io_op::write || op == io_op::writev; }

/// One disk request from submission to completion. Created by the queue, completed (and deleted)
/// by it when the backend reports the result.
struct io_request {
    io_op op = io_op::read;
    bool buffered = false;   // runs in the syscall pool whatever the backend (no O_DIRECT here)
    std::uint8_t retries = 0;  // resubmissions after EAGAIN/EINTR
    int fd = -1;
    std::uint64_t pos = 0;
    void* addr = nullptr;    // the buffer, or the iovec array for readv/writev
    std::size_t len = 0;     // bytes, or the iovec count for readv/writev
    std::size_t bytes = 0;   // total bytes, for cost and statistics
    unsigned class_id = 0;
    double cost = 0;
    steady_clock_type::time_point queued_at{};
    steady_clock_type::time_point dispatched_at{};
    promise<std::size_t> pr;
    ::iocb aio{};            // linux-aio's control block lives in the request
};

/// Where a backend reports each finished request: `result` is the byte count, or -errno.
class io_completion_sink {
public:
    virtual ~io_completion_sink() = default;
    virtual void complete(io_request* r, long result) noexcept = 0;
};

class io_backend {
public:
    virtual ~io_backend() = default;
    /// "io_uring", "linux-aio" or "syscall-pool".
    virtual const char* name() const noexcept = 0;
    /// Hand a request to the kernel (possibly batched until flush()). Never throws: a request the
    /// kernel refuses completes with -errno through the sink.
    virtual void submit(io_request* r) noexcept = 0;
    /// Push batched submissions to the kernel, and collect completions the kernel holds back
    /// until asked (io_uring's deferred task work), so that reap() finds them. The poller calls
    /// it once per reactor loop; it makes no system call when there is nothing to submit or
    /// collect.
    virtual void flush() noexcept = 0;
    /// Report finished requests to the sink, from the completion ring without a system call;
    /// true if there were any.
    virtual bool reap() noexcept = 0;
    /// Whether reap() (after flush()) would find something, without doing it or a system call.
    virtual bool has_completions() noexcept = 0;
    /// A descriptor that becomes readable when a completion arrives (for the sleeping reactor), or
    /// -1 when the backend wakes the reactor itself.
    virtual int notify_fd() const noexcept { return -1; }
    /// About to sleep: make completions signal notify_fd() (a polling reactor does not need the
    /// signal, and io_uring skips it while disarmed), and drain it so its next edge wakes the
    /// reactor. True if notifications were pending (something may have completed since the last
    /// reap).
    virtual bool clear_notifications() noexcept { return false; }
    /// Awake again: completions need not signal notify_fd().
    virtual void disarm_notifications() noexcept {}
    /// Block until every submitted request has completed (reported to the sink). For shutdown.
    virtual void drain() noexcept = 0;
};

/// Create the backend `choice` asks for, falling back (io_uring -> linux-aio -> syscall pool) when
/// one cannot be set up; `why` receives the log line explaining the choice. `depth` is the most
/// requests the queue keeps in flight.
std::unique_ptr<io_backend> make_io_backend(backend_choice choice, unsigned depth, io_completion_sink& sink,
                                            std::string& why);

/// The io_uring backend; throws std::system_error (or std::runtime_error without liburing) when
/// it cannot be set up.
std::unique_ptr<io_backend> make_io_uring_backend(unsigned depth, io_completion_sink& sink);

/// The syscall pool executor, also used for buffered requests whatever the backend.
std::unique_ptr<io_backend> make_syscall_pool_backend(io_completion_sink& sink);

/// Whether this build has the io_uring backend (liburing was found).
bool have_io_uring() noexcept;

}  // namespace reef::io::internal
