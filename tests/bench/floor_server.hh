// What the hand-written floor servers (epoll_echo_floor, memcached_floor) share: SIGINT/SIGTERM
// ending their loop, a listening TCP socket in a new epoll set, accepting connections into it and
// writing what a non-blocking socket takes. Plain C++, no Reef code.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace floor_util {

inline volatile std::sig_atomic_t stop_requested = 0;

[[noreturn]] inline void die(const char* prog, const char* what) {
    std::fprintf(stderr, "%s: %s: %s\n", prog, what, std::strerror(errno));
    std::exit(1);
}

/// SIGINT and SIGTERM set stop_requested (no SA_RESTART: a blocked epoll_wait returns EINTR and
/// the loop ends); SIGPIPE is ignored (a write to a reset peer gives EPIPE).
inline void handle_signals() {
    struct sigaction act {};
    act.sa_handler = [](int) { stop_requested = 1; };
    ::sigaction(SIGINT, &act, nullptr);
    ::sigaction(SIGTERM, &act, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
}

/// "--port" value: 0-65535, else a message naming it and exit(2).
inline int parse_port(const char* prog, const char* s) {
    char* end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > 65535) {
        std::fprintf(stderr, "%s: --port: '%s' is not a port 0-65535\n", prog, s);
        std::exit(2);
    }
    return int(v);
}

struct listening {
    int listener;
    int ep;  // an epoll set holding the listener (data.fd = listener), level-triggered
    unsigned port;
};

/// Listen on address:port (port 0 picks one) and print "ready <address>:<port>" on stdout. A bad
/// address is a message and exit(2); a failing system call, a message and exit(1).
inline listening listen_or_exit(const char* prog, const std::string& address, int port) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(std::uint16_t(port));
    if (::inet_pton(AF_INET, address.c_str(), &sa.sin_addr) != 1) {
        std::fprintf(stderr, "%s: --address: '%s' is not an IPv4 address\n", prog, address.c_str());
        std::exit(2);
    }
    int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0) {
        die(prog, "socket");
    }
    int one = 1;
    ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(listener, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0) {
        die(prog, "bind");
    }
    if (::listen(listener, 1024) < 0) {
        die(prog, "listen");
    }
    socklen_t len = sizeof(sa);
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&sa), &len);
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        die(prog, "epoll_create1");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listener;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) < 0) {
        die(prog, "epoll_ctl(ADD listener)");
    }
    unsigned bound = ntohs(sa.sin_port);
    std::printf("ready %s:%u\n", address.c_str(), bound);
    std::fflush(stdout);
    return {listener, ep, bound};
}

/// Accept every pending connection on `l.listener`: non-blocking, TCP_NODELAY (as memcached and
/// Reef's posix stack: replies do not wait for Nagle), added to `l.ep` for EPOLLIN (data.fd = fd),
/// then handed to on_accept(fd). Transient failures (EMFILE, ECONNABORTED) are reported and the
/// rest left for the next readiness; others end the process.
template <typename OnAccept>
void accept_ready(const char* prog, const listening& l, OnAccept&& on_accept) {
    for (;;) {
        int fd = ::accept4(l.listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return;
            }
            if (errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
                std::fprintf(stderr, "%s: accept: %s\n", prog, std::strerror(errno));
                return;
            }
            die(prog, "accept4");
        }
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (::epoll_ctl(l.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            die(prog, "epoll_ctl(ADD)");
        }
        on_accept(fd);
    }
}

/// Write as much of [p, p + n) as the non-blocking socket takes now: the bytes written (n when
/// all), or -1 when the connection failed (the caller closes it).
inline ssize_t write_ready(int fd, const char* p, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
        ssize_t w = ::write(fd, p + done, n - done);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            return -1;
        }
        done += std::size_t(w);
    }
    return ssize_t(done);
}

}  // namespace floor_util
