// The io_uring backend (liburing). Submissions are batched in the submission ring and pushed with
// one io_uring_enter per reactor loop; completions are read from the completion ring without a
// system call.
//
// Where the kernel has it (6.1), the ring is set up with DEFER_TASKRUN: a finished request is
// queued for this thread, which posts it to the completion ring when it asks (GETEVENTS), instead
// of being interrupted for it. The kernel flags the ring (TASKRUN_FLAG) when such work waits, so
// the poller enters the kernel only then, and with the submissions of the same loop: one
// io_uring_enter collects a whole batch. Older kernels run completions on an interrupt of this
// thread (task work); the poller then only reads the ring.
//
// An eventfd registered with the ring is what the sleeping reactor's epoll waits on. It is
// disarmed (IORING_CQ_EVENTFD_DISABLED) while the reactor polls, so completions do not pay for
// signalling it, and armed just before the reactor sleeps.
#include "runtime/io/io_backend.hh"
#include "runtime/io/io_log.hh"

#include <fmt/format.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

#ifdef REEF_HAVE_LIBURING
#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>
#endif

namespace reef::io::internal {

#ifdef REEF_HAVE_LIBURING

bool have_io_uring() noexcept { return true; }

namespace {

class io_uring_backend final : public io_backend {
    io_completion_sink& _sink;
    ::io_uring _ring{};
    int _efd = -1;
    unsigned _unsubmitted = 0;   // prepared in the ring, not yet pushed with io_uring_enter
    std::size_t _in_flight = 0;  // prepared or submitted, not yet reaped
    bool _deferred = false;      // DEFER_TASKRUN: completions wait for a GETEVENTS enter
    bool _can_disarm = false;    // the kernel lets us disarm the eventfd

    // Completions the kernel holds until this thread enters it: deferred task work, or an
    // overflowed completion ring. A read of the shared ring flags, no system call.
    bool kernel_holds_completions() const noexcept {
        return IO_URING_READ_ONCE(*_ring.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW);
    }

public:
    io_uring_backend(unsigned depth, io_completion_sink& sink) : _sink(sink) {
        // The completion ring is twice the submission ring; the queue never keeps more than
        // `depth` requests in flight, so completions cannot overflow it.
        unsigned entries = 1;
        while (entries < depth) {
            entries <<= 1;
        }
        // DEFER_TASKRUN needs SINGLE_ISSUER: only this (the shard's) thread submits and reaps.
        // A kernel that does not know the flags refuses them with EINVAL; anything else (EPERM
        // from a seccomp profile, ENOMEM) would fail the plain setup too.
        constexpr unsigned deferred =
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
        int r = ::io_uring_queue_init(entries, &_ring, deferred);
        _deferred = r == 0;
        if (r == -EINVAL) {
            r = ::io_uring_queue_init(entries, &_ring, 0);
        }
        if (r < 0) {
            throw std::system_error(-r, std::system_category(),
                                    r == -EPERM || r == -ENOSYS
                                        ? fmt::format("io_uring_setup({}) (disabled by the kernel or the container's "
                                                      "seccomp profile?)",
                                                      entries)
                                        : fmt::format("io_uring_setup({})", entries));
        }
        _efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (_efd < 0) {
            int e = errno;
            ::io_uring_queue_exit(&_ring);
            throw std::system_error(e, std::system_category(), "eventfd");
        }
        r = ::io_uring_register_eventfd(&_ring, _efd);
        if (r < 0) {
            ::close(_efd);
            ::io_uring_queue_exit(&_ring);
            throw std::system_error(-r, std::system_category(), "io_uring_register_eventfd");
        }
        // Fails (EOPNOTSUPP) only before Linux 5.8: the eventfd then simply stays armed.
        _can_disarm = ::io_uring_cq_eventfd_toggle(&_ring, false) == 0;
        io_log.debug("io_uring ring of {} entries, completions {}", entries,
                     _deferred ? "deferred until collected (DEFER_TASKRUN)" : "posted by task work");
    }
    ~io_uring_backend() override {
        drain();
        ::io_uring_queue_exit(&_ring);
        ::close(_efd);
    }
    const char* name() const noexcept override { return "io_uring"; }

    void submit(io_request* r) noexcept override {
        ::io_uring_sqe* sqe = ::io_uring_get_sqe(&_ring);
        if (!sqe) {
            flush();
            sqe = ::io_uring_get_sqe(&_ring);
            if (!sqe) {
                _sink.complete(r, -long(EAGAIN));
                return;
            }
        }
        switch (r->op) {
        case io_op::read: ::io_uring_prep_read(sqe, r->fd, r->addr, unsigned(r->len), r->pos); break;
        case io_op::write: ::io_uring_prep_write(sqe, r->fd, r->addr, unsigned(r->len), r->pos); break;
        case io_op::readv:
            ::io_uring_prep_readv(sqe, r->fd, static_cast<const iovec*>(r->addr), unsigned(r->len), r->pos);
            break;
        case io_op::writev:
            ::io_uring_prep_writev(sqe, r->fd, static_cast<const iovec*>(r->addr), unsigned(r->len), r->pos);
            break;
        }
        ::io_uring_sqe_set_data(sqe, r);
        ++_unsubmitted;
        ++_in_flight;
    }

    void flush() noexcept override {
        bool collect = _in_flight > _unsubmitted && kernel_holds_completions();
        if (!_unsubmitted && !collect) {
            return;
        }
        do {
            // One io_uring_enter both submits and, when asked, runs the deferred completions.
            int n = collect ? ::io_uring_submit_and_get_events(&_ring) : ::io_uring_submit(&_ring);
            collect = false;
            if (n < 0) {
                // EAGAIN/EBUSY: the kernel is short of resources or completions must be reaped
                // first; the entries stay in the ring and go with the next loop's flush.
                break;
            }
            _unsubmitted -= std::min(_unsubmitted, unsigned(n));
            if (n == 0) {
                break;
            }
        } while (_unsubmitted);
    }

    bool has_completions() noexcept override {
        return ::io_uring_cq_ready(&_ring) != 0 || (_in_flight && kernel_holds_completions());
    }

    bool reap() noexcept override {
        if (_in_flight == 0) {
            return false;
        }
        // Read the ring directly: liburing's peek would enter the kernel by itself when it finds
        // the ring empty with work deferred; flush() does that, together with the submissions.
        io_request* reqs[64];
        long res[64];
        unsigned n = 0;
        unsigned head;
        ::io_uring_cqe* cqe;
        io_uring_for_each_cqe(&_ring, head, cqe) {
            reqs[n] = static_cast<io_request*>(::io_uring_cqe_get_data(cqe));
            res[n] = cqe->res;
            if (++n == 64) {
                break;
            }
        }
        if (n == 0) {
            return false;
        }
        // Free the ring slots before completing: completion may submit more.
        ::io_uring_cq_advance(&_ring, n);
        _in_flight -= n;
        for (unsigned i = 0; i < n; ++i) {
            _sink.complete(reqs[i], res[i]);
        }
        return true;
    }

    int notify_fd() const noexcept override { return _efd; }

    bool clear_notifications() noexcept override {
        if (_can_disarm) {
            ::io_uring_cq_eventfd_toggle(&_ring, true);
            // The kernel flags deferred work before it checks whether the eventfd is armed; we
            // arm before the caller checks the flags (has_completions), so one of us sees the
            // other.
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
        }
        std::uint64_t v = 0;
        return ::read(_efd, &v, sizeof(v)) == sizeof(v) && v != 0;
    }

    void disarm_notifications() noexcept override {
        if (_can_disarm) {
            ::io_uring_cq_eventfd_toggle(&_ring, false);
        }
    }

    void drain() noexcept override {
        flush();
        while (_in_flight > 0) {
            if (_unsubmitted) {
                ::io_uring_submit(&_ring);
                _unsubmitted = 0;
            }
            ::io_uring_cqe* cqe = nullptr;
            int r = ::io_uring_wait_cqe(&_ring, &cqe);
            if (r == -EINTR) {
                continue;
            }
            if (r < 0) {
                break;
            }
            auto* req = static_cast<io_request*>(::io_uring_cqe_get_data(cqe));
            long res = cqe->res;
            ::io_uring_cqe_seen(&_ring, cqe);
            --_in_flight;
            _sink.complete(req, res);
        }
    }
};

}  // namespace

std::unique_ptr<io_backend> make_io_uring_backend(unsigned depth, io_completion_sink& sink) {
    return std::make_unique<io_uring_backend>(depth, sink);
}

#else

bool have_io_uring() noexcept { return false; }

std::unique_ptr<io_backend> make_io_uring_backend(unsigned, io_completion_sink&) {
    throw std::runtime_error("this build has no io_uring support (liburing was not found)");
}

#endif

}  // namespace reef::io::internal
