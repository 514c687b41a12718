#include "runtime/pollable_fd.hh"

#include "runtime/reactor.hh"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace reef {

namespace internal {

void pollable_fd_state::on_events(std::uint32_t events) noexcept {
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        readable = true;
        if (pollin) {
            pollin->set_value();
            pollin.reset();
        }
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
        writeable = true;
        if (pollout) {
            pollout->set_value();
            pollout.reset();
        }
    }
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        rdhup = true;
        if (pollrdhup) {
            pollrdhup->set_value();
            pollrdhup.reset();
        }
    }
}

}  // namespace internal

namespace {

std::system_error errno_error(int err, const char* what) { return std::system_error(err, std::system_category(), what); }

bool would_block(int err) noexcept { return err == EAGAIN || err == EWOULDBLOCK; }

}  // namespace

pollable_fd::pollable_fd(int fd, bool stream) : _s(std::make_unique<internal::pollable_fd_state>()) {
    _s->fd = fd;
    _s->stream = stream;
    int fl = ::fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) {
        ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    try {
        engine().register_fd(_s.get());
    } catch (...) {
        ::close(fd);
        throw;
    }
}

pollable_fd& pollable_fd::operator=(pollable_fd&& x) noexcept {
    if (this != &x) {
        this->~pollable_fd();
        new (this) pollable_fd(std::move(x));
    }
    return *this;
}

pollable_fd::~pollable_fd() {
    if (_s) {
        if (engine_is_ready()) {
            engine().unregister_fd(_s.get());
        }
        ::close(_s->fd);
    }
}

static future<> do_readable(internal::pollable_fd_state& s) {
    if (s.read_error) {
        return make_exception_future<>(s.read_error);
    }
    if (s.readable) {
        return make_ready_future<>();
    }
    s.pollin.emplace();
    return s.pollin->get_future();
}

static future<> do_writeable(internal::pollable_fd_state& s) {
    if (s.write_error) {
        return make_exception_future<>(s.write_error);
    }
    if (s.writeable) {
        return make_ready_future<>();
    }
    s.pollout.emplace();
    return s.pollout->get_future();
}


future<> pollable_fd::wait_rdhup() {
    auto& s = *_s;
    if (s.rdhup) {
        return make_ready_future<>();
    }
    s.pollrdhup.emplace();
    return s.pollrdhup->get_future();
}

static future<std::size_t> do_read_some(internal::pollable_fd_state& s, char* buf, std::size_t len) {
    while (true) {
        if (s.read_error) [[unlikely]] {
            return make_exception_future<std::size_t>(s.read_error);
        }
        if (s.readable) {
            auto r = ::read(s.fd, buf, len);
            if (r >= 0) {
                // Drained: the next read waits for an edge. Not after a hang-up, whose edge is
                // spent: the end of stream (or error) behind the data must still be read.
                if (s.stream && std::size_t(r) < len && !s.rdhup) {
                    s.readable = false;
                }
                return make_ready_future<std::size_t>(std::size_t(r));
            }
            if (errno == EINTR) {
                continue;
            }
            if (!would_block(errno)) {
                return make_exception_future<std::size_t>(errno_error(errno, "read"));
            }
            s.readable = false;
        }
        return do_readable(s).then([&s, buf, len] { return do_read_some(s, buf, len); });
    }
}

static future<std::size_t> do_recvmsg(internal::pollable_fd_state& s, ::msghdr* msg, int flags) {
    while (true) {
        if (s.read_error) [[unlikely]] {
            return make_exception_future<std::size_t>(s.read_error);
        }
        if (s.readable) {
            auto r = ::recvmsg(s.fd, msg, flags | MSG_DONTWAIT);
            if (r >= 0) {
                return make_ready_future<std::size_t>(std::size_t(r));
            }
            if (errno == EINTR) {
                continue;
            }
            if (!would_block(errno)) {
                return make_exception_future<std::size_t>(errno_error(errno, "recvmsg"));
            }
            s.readable = false;
        }
        return do_readable(s).then([&s, msg, flags] { return do_recvmsg(s, msg, flags); });
    }
}

static future<unsigned> do_recvmmsg(internal::pollable_fd_state& s, ::mmsghdr* msgs, unsigned n, int flags) {
    while (true) {
        if (s.read_error) [[unlikely]] {
            return make_exception_future<unsigned>(s.read_error);
        }
        if (s.readable) {
            int r = ::recvmmsg(s.fd, msgs, n, flags | MSG_DONTWAIT, nullptr);
            if (r > 0) {
                if (unsigned(r) < n) {
                    s.readable = false;  // the queue had fewer datagrams than we asked for
                }
                return make_ready_future<unsigned>(unsigned(r));
            }
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r < 0 && !would_block(errno)) {
                return make_exception_future<unsigned>(errno_error(errno, "recvmmsg"));
            }
            s.readable = false;
        }
        return do_readable(s).then([&s, msgs, n, flags] { return do_recvmmsg(s, msgs, n, flags); });
    }
}

static future<std::size_t> do_sendmsg(internal::pollable_fd_state& s, const ::msghdr* msg, int flags) {
    while (true) {
        if (s.write_error) [[unlikely]] {
            return make_exception_future<std::size_t>(s.write_error);
        }
        if (s.writeable) {
            auto r = ::sendmsg(s.fd, msg, flags | MSG_NOSIGNAL | MSG_DONTWAIT);
            if (r >= 0) {
                return make_ready_future<std::size_t>(std::size_t(r));
            }
            if (errno == EINTR) {
                continue;
            }
            if (!would_block(errno)) {
                return make_exception_future<std::size_t>(errno_error(errno, "sendmsg"));
            }
            s.writeable = false;
        }
        return do_writeable(s).then([&s, msg, flags] { return do_sendmsg(s, msg, flags); });
    }
}

static future<unsigned> do_sendmmsg(internal::pollable_fd_state& s, ::mmsghdr* msgs, unsigned n, int flags) {
    while (true) {
        if (s.write_error) [[unlikely]] {
            return make_exception_future<unsigned>(s.write_error);
        }
        if (s.writeable) {
            int r = ::sendmmsg(s.fd, msgs, n, flags | MSG_NOSIGNAL | MSG_DONTWAIT);
            if (r > 0) {
                return make_ready_future<unsigned>(unsigned(r));
            }
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r < 0 && !would_block(errno)) {
                return make_exception_future<unsigned>(errno_error(errno, "sendmmsg"));
            }
            s.writeable = false;
        }
        return do_writeable(s).then([&s, msgs, n, flags] { return do_sendmmsg(s, msgs, n, flags); });
    }
}

static future<> do_write_all(internal::pollable_fd_state& s, ::iovec* iov, std::size_t iovcnt) {
    while (iovcnt > 0) {
        if (s.write_error) [[unlikely]] {
            return make_exception_future<>(s.write_error);
        }
        if (!s.writeable) {
            return do_writeable(s).then([&s, iov, iovcnt] { return do_write_all(s, iov, iovcnt); });
        }
        ::msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = std::min<std::size_t>(iovcnt, IOV_MAX);
        // sendmsg for its MSG_NOSIGNAL (a reset peer must not raise SIGPIPE); descriptors that
        // are not sockets (pipes) take writev.
        auto r = s.not_socket ? ::writev(s.fd, iov, int(msg.msg_iovlen)) : ::sendmsg(s.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0 && errno == ENOTSOCK && !s.not_socket) {
            s.not_socket = true;
            continue;
        }
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (!would_block(errno)) {
                return make_exception_future<>(errno_error(errno, "write"));
            }
            s.writeable = false;
            continue;
        }
        auto done = std::size_t(r);
        while (iovcnt > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            ++iov;
            --iovcnt;
        }
        if (iovcnt > 0) {
            iov->iov_base = static_cast<char*>(iov->iov_base) + done;
            iov->iov_len -= done;
            // A partial write means the socket buffer is full: wait for room.
            s.writeable = false;
        }
    }
    return make_ready_future<>();
}

static future<pollable_fd> do_accept(internal::pollable_fd_state& s, ::sockaddr* addr, ::socklen_t* len) {
    while (true) {
        if (s.read_error) [[unlikely]] {
            return make_exception_future<pollable_fd>(s.read_error);
        }
        if (s.readable) {
            int fd = ::accept4(s.fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                try {
                    return make_ready_future<pollable_fd>(pollable_fd(fd, true));
                } catch (...) {
                    return make_exception_future<pollable_fd>(std::current_exception());
                }
            }
            // A connection that was reset while queued is not the listener's failure.
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (!would_block(errno)) {
                return make_exception_future<pollable_fd>(errno_error(errno, "accept"));
            }
            s.readable = false;
        }
        return do_readable(s).then([&s, addr, len] { return do_accept(s, addr, len); });
    }
}

static future<> do_connect(internal::pollable_fd_state& s, const ::sockaddr* sa, ::socklen_t len) {
    if (::connect(s.fd, sa, len) == 0) {
        return make_ready_future<>();
    }
    if (errno != EINPROGRESS) {
        return make_exception_future<>(errno_error(errno, "connect"));
    }
    // The outcome arrives as writability (success) or an error/hang-up edge.
    s.writeable = false;
    return do_writeable(s).then([&s] {
        int err = 0;
        ::socklen_t elen = sizeof(err);
        if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) {
            err = errno;
        }
        if (err != 0) {
            return make_exception_future<>(errno_error(err, "connect"));
        }
        return make_ready_future<>();
    });
}

void pollable_fd::shutdown(int how) {
    if (::shutdown(_s->fd, how) != 0 && errno != ENOTCONN) {
        throw errno_error(errno, "shutdown");
    }
}

void pollable_fd::abort_reader(std::exception_ptr ex) noexcept {
    auto& s = *_s;
    s.read_error = ex;
    if (s.pollin) {
        s.pollin->set_exception(std::move(ex));
        s.pollin.reset();
    }
}

void pollable_fd::abort_writer(std::exception_ptr ex) noexcept {
    auto& s = *_s;
    s.write_error = ex;
    if (s.pollout) {
        s.pollout->set_exception(std::move(ex));
        s.pollout.reset();
    }
}

future<std::size_t> pollable_fd::read_some(char* buf, std::size_t len) { return do_read_some(*_s, buf, len); }
future<std::size_t> pollable_fd::recvmsg(::msghdr* msg, int flags) { return do_recvmsg(*_s, msg, flags); }
future<unsigned> pollable_fd::recvmmsg(::mmsghdr* msgs, unsigned n, int flags) { return do_recvmmsg(*_s, msgs, n, flags); }
future<std::size_t> pollable_fd::sendmsg(const ::msghdr* msg, int flags) { return do_sendmsg(*_s, msg, flags); }
future<unsigned> pollable_fd::sendmmsg(::mmsghdr* msgs, unsigned n, int flags) { return do_sendmmsg(*_s, msgs, n, flags); }
future<> pollable_fd::write_all(::iovec* iov, std::size_t iovcnt) { return do_write_all(*_s, iov, iovcnt); }
future<pollable_fd> pollable_fd::accept(::sockaddr* addr, ::socklen_t* len) { return do_accept(*_s, addr, len); }
future<> pollable_fd::connect(const ::sockaddr* sa, ::socklen_t len) { return do_connect(*_s, sa, len); }
future<> pollable_fd::readable() { return do_readable(*_s); }
future<> pollable_fd::writeable() { return do_writeable(*_s); }

}  // namespace reef
