// The per-shard disk queue behind io_queue.hh's API (internal to runtime/io; file.cc submits
// through it). One per shard, created on the shard's first disk request and destroyed with its
// reactor (after waiting for the requests at the disk).
#pragma once

#include "runtime/circular_buffer.hh"
#include "runtime/io/io_backend.hh"
#include "runtime/io/io_queue.hh"
#include "runtime/reactor.hh"
#include "runtime/timer.hh"

#include <array>
#include <memory>

namespace reef::io::internal {

class io_queue final : public io_completion_sink {
public:
    /// Reads get_io_config() and sets up the backend (logging the choice). Throws only if even
    /// the syscall pool fallback cannot start.
    io_queue();
    ~io_queue() override;
    io_queue(const io_queue&) = delete;
    io_queue& operator=(const io_queue&) = delete;

    /// Queue a request in class `pc`; resolves with the byte count, or fails with
    /// std::system_error carrying the errno. `addr` (and the iovecs it may point to) must stay
    /// valid until the future resolves. `buffered`: run it in the syscall pool.
    future<std::size_t> submit(io_op op, bool buffered, int fd, std::uint64_t pos, void* addr, std::size_t len,
                               std::size_t bytes, io_priority_class pc) noexcept;

    void complete(io_request* r, long result) noexcept override;

    io_queue_info info() const;
    io_class_stats stats(unsigned class_id) const;

    // The poller's view.
    bool poll() noexcept;
    bool pure_poll() noexcept;
    bool try_enter_interrupt_mode() noexcept;
    void exit_interrupt_mode() noexcept;

private:
    struct class_state {
        circular_buffer<io_request*> q;
        double vtime = 0;  // cost dispatched / shares
        io_class_stats st;
    };

    std::unique_ptr<io_backend> _backend;
    std::unique_ptr<io_backend> _pool;  // buffered requests; created on the first one
    std::array<class_state, io_priority_class::max_classes> _classes;
    std::size_t _queued = 0;
    double _last_vtime = 0;
    unsigned _max_in_flight;
    unsigned _in_flight = 0;
    bool _rate_limited = false;
    double _tokens = 0;      // disk time (ns) this shard may still dispatch; may go negative
    double _token_cap = 0;
    steady_clock_type::time_point _last_refill{};
    timer<steady_clock_type> _token_timer;
    disk_properties _model;  // this shard's share
    double _read_op_cost, _read_byte_cost, _write_op_cost, _write_byte_cost;  // ns of disk time
    int _notify_fd = -1;     // the backend's completion eventfd, a sleep wake-up of the reactor
    std::unique_ptr<pollfn> _poller;

    double cost_of(io_op op, std::size_t bytes) const noexcept;
    io_backend& backend_for(const io_request* r);
    bool dispatch() noexcept;
    void refill() noexcept;
};

/// The calling shard's queue, created on first use.
io_queue& local_io_queue();
/// The calling shard's queue if it has started, else null.
io_queue* local_io_queue_if_started() noexcept;

}  // namespace reef::io::internal
