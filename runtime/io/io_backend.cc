#include "runtime/io/io_backend.hh"

#include "runtime/reactor.hh"

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <system_error>
#include <time.h>
#include <unistd.h>
#include <vector>

namespace reef::io::internal {

namespace {

// ------------------------------------------------------------------------------------------------
// syscall pool: pread/pwrite on the reactor's helper threads. Used for files on filesystems
// without O_DIRECT (their page-cache I/O can block on anything) and when no kernel interface for
// asynchronous I/O is available.

class syscall_pool_backend final : public io_backend {
    io_completion_sink& _sink;

public:
    explicit syscall_pool_backend(io_completion_sink& sink) : _sink(sink) {}
    const char* name() const noexcept override { return "syscall-pool"; }

    void submit(io_request* r) noexcept override {
        auto call = [op = r->op, fd = r->fd, pos = r->pos, addr = r->addr, len = r->len]() noexcept -> long {
            ssize_t n;
            auto off = off_t(pos);
            switch (op) {
            case io_op::read: n = ::pread(fd, addr, len, off); break;
            case io_op::write: n = ::pwrite(fd, addr, len, off); break;
            case io_op::readv: n = ::preadv(fd, static_cast<const iovec*>(addr), int(len), off); break;
            case io_op::writev: n = ::pwritev(fd, static_cast<const iovec*>(addr), int(len), off); break;
            default: n = -1; errno = EINVAL;
            }
            return n < 0 ? -long(errno) : long(n);
        };
        // The pool reports a call it never ran (the reactor stopping) as an exception.
        auto f = engine().run_blocking(call);
        (void)f.then_wrapped([this, r](future<long>&& res) noexcept {
            long v = res.failed() ? (res.ignore_ready_future(), -long(ECANCELED)) : res.get();
            _sink.complete(r, v);
        });
    }
    void flush() noexcept override {}
    bool reap() noexcept override { return false; }  // completions arrive through the pool's poller
    bool has_completions() noexcept override { return false; }
    void drain() noexcept override {}  // the pool finishes its calls when the reactor stops
};

// ------------------------------------------------------------------------------------------------
// linux-aio: io_setup/io_submit with completions signalled on an eventfd (IOCB_FLAG_RESFD) and
// read from the completion ring the kernel maps into the process, without a system call.

long sys_io_setup(unsigned nr, aio_context_t* ctx) { return ::syscall(SYS_io_setup, nr, ctx); }
long sys_io_destroy(aio_context_t ctx) { return ::syscall(SYS_io_destroy, ctx); }
long sys_io_submit(aio_context_t ctx, long n, iocb** iocbs) { return ::syscall(SYS_io_submit, ctx, n, iocbs); }
long sys_io_getevents(aio_context_t ctx, long min, long max, io_event* ev, timespec* ts) {
    return ::syscall(SYS_io_getevents, ctx, min, max, ev, ts);
}

// The layout of the ring at the context's address (fs/aio.c); stable since Linux 2.6.
struct aio_ring {
    unsigned id;
    unsigned nr;
    unsigned head;
    unsigned tail;
    unsigned magic;
    unsigned compat_features;
    unsigned incompat_features;
    unsigned header_length;
    io_event io_events[];
};
constexpr unsigned aio_ring_magic = 0xa10a10a1;

class aio_backend final : public io_backend {
    io_completion_sink& _sink;
    aio_context_t _ctx = 0;
    int _efd = -1;
    unsigned _depth;
    std::vector<iocb*> _pending;  // prepared, not yet accepted by io_submit
    std::size_t _in_flight = 0;   // accepted by the kernel, not yet reaped
    aio_ring* _ring = nullptr;    // null when the ring cannot be read directly

public:
    aio_backend(unsigned depth, io_completion_sink& sink) : _sink(sink), _depth(depth) {
        if (sys_io_setup(depth, &_ctx) != 0) {
            int e = errno;
            throw std::system_error(e, std::system_category(),
                                    e == EAGAIN ? fmt::format("io_setup({}): /proc/sys/fs/aio-max-nr is too small", depth)
                                                : fmt::format("io_setup({})", depth));
        }
        _efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (_efd < 0) {
            int e = errno;
            sys_io_destroy(_ctx);
            throw std::system_error(e, std::system_category(), "eventfd");
        }
        auto* ring = reinterpret_cast<aio_ring*>(_ctx);
        if (ring->magic == aio_ring_magic && ring->incompat_features == 0) {
            _ring = ring;
        }
        _pending.reserve(depth);
    }
    ~aio_backend() override {
        drain();
        sys_io_destroy(_ctx);
        ::close(_efd);
    }
    const char* name() const noexcept override { return "linux-aio"; }

    void submit(io_request* r) noexcept override {
        auto& cb = r->aio;
        cb = {};
        switch (r->op) {
        case io_op::read: cb.aio_lio_opcode = IOCB_CMD_PREAD; break;
        case io_op::write: cb.aio_lio_opcode = IOCB_CMD_PWRITE; break;
        case io_op::readv: cb.aio_lio_opcode = IOCB_CMD_PREADV; break;
        case io_op::writev: cb.aio_lio_opcode = IOCB_CMD_PWRITEV; break;
        }
        cb.aio_fildes = std::uint32_t(r->fd);
        cb.aio_buf = reinterpret_cast<std::uint64_t>(r->addr);
        cb.aio_nbytes = r->len;
        cb.aio_offset = std::int64_t(r->pos);
        cb.aio_data = reinterpret_cast<std::uint64_t>(r);
        cb.aio_flags = IOCB_FLAG_RESFD;
        cb.aio_resfd = std::uint32_t(_efd);
        _pending.push_back(&cb);
    }

    void flush() noexcept override {
        std::size_t done = 0;
        while (done < _pending.size()) {
            long n = sys_io_submit(_ctx, long(_pending.size() - done), _pending.data() + done);
            if (n > 0) {
                done += std::size_t(n);
                _in_flight += std::size_t(n);
                continue;
            }
            int e = n == 0 ? EAGAIN : errno;
            if (e == EAGAIN || e == EINTR) {
                break;  // the kernel is short of resources: retry at the next poll
            }
            // io_submit stops at the first request it refuses; fail that one and go on.
            auto* r = reinterpret_cast<io_request*>(_pending[done]->aio_data);
            ++done;
            _sink.complete(r, -long(e));
        }
        _pending.erase(_pending.begin(), _pending.begin() + long(done));
    }

    bool has_completions() noexcept override {
        if (_ring) {
            return __atomic_load_n(&_ring->tail, __ATOMIC_ACQUIRE) != _ring->head;
        }
        return false;  // the eventfd wakes the reactor
    }

    bool reap() noexcept override {
        if (_in_flight == 0) {
            return false;
        }
        io_event events[64];
        long n;
        if (_ring) {
            n = 0;
            unsigned head = _ring->head;
            unsigned tail = __atomic_load_n(&_ring->tail, __ATOMIC_ACQUIRE);
            while (head != tail && n < 64) {
                events[n++] = _ring->io_events[head];
                head = (head + 1) % _ring->nr;
            }
            __atomic_store_n(&_ring->head, head, __ATOMIC_RELEASE);
        } else {
            timespec zero{};
            n = sys_io_getevents(_ctx, 0, 64, events, &zero);
            if (n <= 0) {
                return false;
            }
        }
        for (long i = 0; i < n; ++i) {
            --_in_flight;
            _sink.complete(reinterpret_cast<io_request*>(events[i].data), long(events[i].res));
        }
        return n > 0;
    }

    int notify_fd() const noexcept override { return _efd; }

    bool clear_notifications() noexcept override {
        std::uint64_t v = 0;
        return ::read(_efd, &v, sizeof(v)) == sizeof(v) && v != 0;
    }

    void drain() noexcept override {
        flush();
        for (auto* cb : _pending) {
            _sink.complete(reinterpret_cast<io_request*>(cb->aio_data), -long(ECANCELED));
        }
        _pending.clear();
        while (_in_flight > 0) {
            io_event events[64];
            long n = sys_io_getevents(_ctx, 1, 64, events, nullptr);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                break;
            }
            for (long i = 0; i < n; ++i) {
                --_in_flight;
                _sink.complete(reinterpret_cast<io_request*>(events[i].data), long(events[i].res));
            }
        }
    }
};

}  // namespace

std::unique_ptr<io_backend> make_syscall_pool_backend(io_completion_sink& sink) {
    return std::make_unique<syscall_pool_backend>(sink);
}

std::unique_ptr<io_backend> make_io_backend(backend_choice choice, unsigned depth, io_completion_sink& sink,
                                            std::string& why) {
    std::string uring_failure;
    if (choice == backend_choice::io_uring || choice == backend_choice::auto_select) {
        if (!have_io_uring()) {
            uring_failure = "this build has no io_uring support (liburing was not found)";
        } else {
            try {
                auto b = make_io_uring_backend(depth, sink);
                why = choice == backend_choice::io_uring ? "disk I/O backend io_uring (--reactor-backend io_uring)"
                                                         : "disk I/O backend io_uring (auto: the kernel allows it)";
                return b;
            } catch (const std::exception& e) {
                uring_failure = e.what();
            }
        }
    }
    std::string aio_failure;
    try {
        auto b = std::make_unique<aio_backend>(depth, sink);
        if (choice == backend_choice::linux_aio) {
            why = "disk I/O backend linux-aio (--reactor-backend linux-aio)";
        } else if (choice == backend_choice::io_uring) {
            why = fmt::format("disk I/O backend linux-aio: io_uring was asked for but cannot be used ({}); falling back",
                              uring_failure);
        } else {
            why = fmt::format("disk I/O backend linux-aio (auto: io_uring cannot be used: {})", uring_failure);
        }
        return b;
    } catch (const std::exception& e) {
        aio_failure = e.what();
    }
    why = fmt::format("disk I/O backend syscall-pool (slow: blocking calls on helper threads): {}linux-aio cannot be "
                      "used ({}); falling back",
                      uring_failure.empty() ? std::string() : fmt::format("io_uring cannot be used ({}), ", uring_failure),
                      aio_failure);
    return make_syscall_pool_backend(sink);
}

}  // namespace reef::io::internal
