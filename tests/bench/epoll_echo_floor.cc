// epoll_echo_floor: the baseline of the echo benchmark. The least work a kernel-socket TCP echo
// server can do per request, written by hand without Reef: one thread, a level-triggered epoll set,
// read into one static buffer and write the same bytes straight back. tests/bench/run_echo.sh
// divides Reef's server CPU time per request by this program's, so it is kept lean (no
// allocation per request, one read and one write system call per batch of received bytes) but
// correct: partial writes keep the unsent bytes per connection and wait for EPOLLOUT, and the
// connection reads nothing more until they are gone (so a client that does not read cannot make
// the server buffer without limit).
//
// Usage: epoll_echo_floor [--address A] [--port P]   (default 127.0.0.1:7000; port 0 picks one)
// Prints "ready <address>:<port>" on stdout once listening. Stops on SIGINT/SIGTERM.
#include "floor_server.hh"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using floor_util::stop_requested;

[[noreturn]] void die(const char* what) { floor_util::die("epoll_echo_floor", what); }

// Bytes a connection could not write yet. Only connections with a short write have one.
struct pending {
    std::vector<char> data;
    std::size_t sent = 0;
};

constexpr std::size_t buffer_size = 16384;
char buffer[buffer_size];

class floor_server {
    floor_util::listening _l;
    std::unordered_map<int, pending> _pending;

    void close_conn(int fd) {
        _pending.erase(fd);
        ::close(fd);  // also removes it from the epoll set
    }

    void set_events(int fd, std::uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        if (::epoll_ctl(_l.ep, EPOLL_CTL_MOD, fd, &ev) < 0) {
            die("epoll_ctl(MOD)");
        }
    }

    // Write [p, p+n); keep what the socket did not take and switch the fd to EPOLLOUT.
    void send_or_keep(int fd, const char* p, std::size_t n) {
        ssize_t w = floor_util::write_ready(fd, p, n);
        if (w < 0) {
            close_conn(fd);
        } else if (std::size_t(w) < n) {
            auto& pd = _pending[fd];
            pd.data.assign(p + w, p + n);
            pd.sent = 0;
            set_events(fd, EPOLLOUT);
        }
    }

    void on_readable(int fd) {
        ssize_t r = ::read(fd, buffer, buffer_size);
        if (r > 0) {
            send_or_keep(fd, buffer, std::size_t(r));
        } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close_conn(fd);
        }
    }

    void on_writable(int fd) {
        auto it = _pending.find(fd);
        if (it == _pending.end()) {
            return;
        }
        auto& pd = it->second;
        ssize_t w = floor_util::write_ready(fd, pd.data.data() + pd.sent, pd.data.size() - pd.sent);
        if (w < 0) {
            close_conn(fd);
            return;
        }
        pd.sent += std::size_t(w);
        if (pd.sent == pd.data.size()) {
            _pending.erase(it);
            set_events(fd, EPOLLIN);
        }
    }

public:
    explicit floor_server(const floor_util::listening& l) : _l(l) {}

    void run() {
        constexpr int max_events = 256;
        epoll_event events[max_events];
        while (!stop_requested) {
            int n = ::epoll_wait(_l.ep, events, max_events, -1);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                die("epoll_wait");
            }
            for (int i = 0; i < n; ++i) {
                int fd = events[i].data.fd;
                if (fd == _l.listener) {
                    floor_util::accept_ready("epoll_echo_floor", _l, [](int) {});
                } else if (events[i].events & EPOLLOUT) {
                    on_writable(fd);
                } else {
                    // EPOLLIN, or EPOLLHUP/EPOLLERR: the read reports EOF or the error.
                    on_readable(fd);
                }
            }
        }
    }
};

}  // namespace

int main(int argc, char** argv) {
    const char* prog = "epoll_echo_floor";
    std::string address = "127.0.0.1";
    int port = 7000;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--address" && i + 1 < argc) {
            address = argv[++i];
        } else if (a == "--port" && i + 1 < argc) {
            port = floor_util::parse_port(prog, argv[++i]);
        } else {
            std::fprintf(stderr, "usage: epoll_echo_floor [--address IPV4] [--port P]\n");
            return 2;
        }
    }
    floor_util::handle_signals();
    auto l = floor_util::listen_or_exit(prog, address, port);
    floor_server(l).run();
    ::close(l.ep);
    ::close(l.listener);
    return 0;
}
