// The io_uring backend (liburing). Submissions are batched in the submission ring and pushed with
// one io_uring_enter per reactor poll; completions are read from the completion ring without a
// system call. An eventfd registered with the ring is what the sleeping reactor's epoll waits on.
#include "runtime/io/io_backend.hh"

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
    unsigned _unsubmitted = 0;  // prepared in the ring, not yet pushed with io_uring_enter
    std::size_t _in_flight = 0;   // prepared or submitted, not yet reaped

public:
    io_uring_backend(unsigned depth, io_completion_sink& sink) : _sink(sink) {
        // The completion ring is twice the submission ring; the queue never keeps more than
        // `depth` requests in flight, so completions cannot overflow it.
        unsigned entries = 1;
        while (entries < depth) {
            entries <<= 1;
        }
        int r = ::io_uring_queue_init(entries, &_ring, 0);
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
        while (_unsubmitted) {
            int n = ::io_uring_submit(&_ring);
            if (n >= 0) {
                _unsubmitted -= std::min(_unsubmitted, unsigned(n));
                if (n == 0) {
                    break;
                }
                continue;
            }
            // EAGAIN/EBUSY: the kernel is short of resources or completions must be reaped first;
            // the entries stay in the ring and go with the next poll's flush.
            break;
        }
    }

    bool has_completions() noexcept override { return ::io_uring_cq_ready(&_ring) != 0; }

    bool reap() noexcept override {
        if (_in_flight == 0) {
            return false;
        }
        ::io_uring_cqe* cqes[64];
        unsigned n = ::io_uring_peek_batch_cqe(&_ring, cqes, 64);
        if (n == 0) {
            return false;
        }
        io_request* reqs[64];
        long res[64];
        for (unsigned i = 0; i < n; ++i) {
            reqs[i] = static_cast<io_request*>(::io_uring_cqe_get_data(cqes[i]));
            res[i] = cqes[i]->res;
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
        std::uint64_t v = 0;
        return ::read(_efd, &v, sizeof(v)) == sizeof(v) && v != 0;
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
