// pollable_fd: a non-blocking file descriptor driven by the reactor's epoll, for sockets, pipes,
// eventfds — anything with readiness. No thread per descriptor: the reactor polls epoll with a
// zero timeout between task batches and blocks in it when the shard sleeps.
//
// The descriptor is registered once, edge-triggered, for input and output. Every operation is
// speculative: it tries the system call first and waits for readiness only after EAGAIN, so a
// request/response exchange costs the same calls a hand-written epoll loop makes (read, write),
// plus an epoll_wait shared by every descriptor of the shard. A short read of a stream socket
// means the kernel had no more data, so the next read waits for an edge instead of trying.
//
// Contract:
//  - Single-shard: create, use and destroy a pollable_fd on one shard, while its reactor runs.
//  - One reader and one writer at a time: at most one pending read-side operation (read_some,
//    recvmsg, accept, readable) and one write-side (write_some, sendmsg, connect, writeable).
//  - Errors: system calls failing with anything but EAGAIN/EINTR give std::system_error with the
//    errno. abort_reader/abort_writer fail the pending and every later operation of that side
//    with the exception given.
//  - Destroying the object closes the descriptor; a pending operation then fails with
//    broken_promise, so wait for pending futures (abort first) before destroying it.
#pragma once

#include "runtime/future.hh"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <utility>

namespace reef {

class reactor;

namespace internal {

// What the reactor sees of a registered descriptor; pollable_fd owns it.
struct pollable_fd_state {
    int fd = -1;
    bool stream = true;                 // short reads mean "drained" (stream sockets, pipes)
    bool readable = true;               // no EAGAIN since the last input edge: worth trying
    bool writeable = true;
    bool rdhup = false;                 // peer closed its side, or the descriptor failed
    bool not_socket = false;            // learnt from ENOTSOCK: write with writev
    std::optional<promise<>> pollin;    // a reader waits for an input edge
    std::optional<promise<>> pollout;
    std::optional<promise<>> pollrdhup;
    std::exception_ptr read_error;      // set by abort_reader
    std::exception_ptr write_error;

    // Called by the reactor with the epoll event mask.
    void on_events(std::uint32_t events) noexcept;
};

}  // namespace internal

class pollable_fd {
    std::unique_ptr<internal::pollable_fd_state> _s;

public:
    pollable_fd() noexcept = default;
    /// Take ownership of `fd` (set non-blocking here if it is not) and register it with this
    /// shard's reactor. `stream`: true for stream sockets and pipes (a short read drains), false
    /// for datagram sockets. Throws std::system_error if epoll refuses the descriptor.
    explicit pollable_fd(int fd, bool stream = true);
    pollable_fd(pollable_fd&&) noexcept = default;
    pollable_fd& operator=(pollable_fd&& x) noexcept;
    ~pollable_fd();

    int get() const noexcept { return _s ? _s->fd : -1; }
    explicit operator bool() const noexcept { return bool(_s); }

    /// Resolve once input is available (or the peer hung up / the descriptor failed).
    future<> readable();
    /// Resolve once output is possible.
    future<> writeable();
    /// Resolve once the peer has shut down its side or the descriptor failed (EPOLLRDHUP/HUP/ERR).
    future<> wait_rdhup();

    /// read(2): up to `len` bytes; 0 at end of stream.
    future<std::size_t> read_some(char* buf, std::size_t len);
    /// recvmsg(2) with `flags` (MSG_DONTWAIT is added); returns the byte count.
    future<std::size_t> recvmsg(::msghdr* msg, int flags = 0);
    /// recvmmsg(2): at least one message; returns how many were received.
    future<unsigned> recvmmsg(::mmsghdr* msgs, unsigned n, int flags = 0);
    /// sendmsg(2) with MSG_NOSIGNAL (a reset peer gives EPIPE, never SIGPIPE). May write less
    /// than the whole message (stream sockets); returns the byte count.
    future<std::size_t> sendmsg(const ::msghdr* msg, int flags = 0);
    /// sendmmsg(2) with MSG_NOSIGNAL: at least one message; returns how many were sent. An error
    /// on the first message fails the future; the caller retries the rest.
    future<unsigned> sendmmsg(::mmsghdr* msgs, unsigned n, int flags = 0);
    /// Write every byte of the iovec array (advancing through partial writes). The array is
    /// modified in place.
    future<> write_all(::iovec* iov, std::size_t iovcnt);
    /// accept4(2) a connection (non-blocking, close-on-exec); the peer's address is written to
    /// `*addr`/`*len` when given.
    future<pollable_fd> accept(::sockaddr* addr = nullptr, ::socklen_t* len = nullptr);
    /// connect(2) a non-blocking socket and wait for the outcome; the errno of a failed connection
    /// comes as std::system_error (e.g. ECONNREFUSED).
    future<> connect(const ::sockaddr* sa, ::socklen_t len);

    /// shutdown(2) one or both directions; errors other than ENOTCONN are thrown.
    void shutdown(int how);
    /// Fail the pending and every later read-side operation with `ex`.
    void abort_reader(std::exception_ptr ex) noexcept;
    /// Fail the pending and every later write-side operation with `ex`.
    void abort_writer(std::exception_ptr ex) noexcept;
};

}  // namespace reef
