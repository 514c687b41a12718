// memcached_floor: the least a kernel-socket memcached server can do per request, written by hand
// without Reef, as a third server in tests/bench/run_memcached.sh. It answers memcaslap's text
// protocol subset (get with one or more keys, set with or without noreply, version; anything
// else gets ERROR) from a std::unordered_map, on one thread with a level-triggered epoll set: one read per
// readable connection, every whole request in it answered, one write of all the replies. With
// --busy-poll it never sleeps (epoll_wait with a zero timeout), like a polling reactor.
//
// What it is for: on loopback most of a request is kernel work and a single memcaslap thread is
// close to saturated, so the ops/s this program reaches bound what any server can show against
// stock memcached on the same machine in the same run.
//
// Usage: memcached_floor [--address A] [--port P] [--busy-poll]   (default 127.0.0.1:11311)
// Prints "ready <address>:<port>" on stdout once listening. Stops on SIGINT/SIGTERM.
#include "floor_server.hh"

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
#include <string_view>
#include <unordered_map>

namespace {

using floor_util::stop_requested;

[[noreturn]] void die(const char* what) { floor_util::die("memcached_floor", what); }

constexpr std::size_t read_size = 16384;
constexpr std::size_t max_request = 2 * 1024 * 1024;  // a request line and value, at most
char buffer[read_size];

struct item {
    std::string flags;
    std::string data;
};

struct connection {
    std::string in;         // received bytes not yet answered (a partial request)
    std::string out;        // replies the socket did not take yet: the connection waits for EPOLLOUT
};

class floor_server {
    floor_util::listening _l;
    std::unordered_map<int, connection> _conns;
    std::unordered_map<std::string, item> _items;
    std::string _reply;

    void close_conn(int fd) {
        _conns.erase(fd);
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

    static std::string_view next_token(std::string_view& line) {
        std::size_t b = line.find_first_not_of(' ');
        if (b == std::string_view::npos) {
            line = {};
            return {};
        }
        line.remove_prefix(b);
        std::size_t e = line.find(' ');
        auto tok = line.substr(0, e);
        line.remove_prefix(e == std::string_view::npos ? line.size() : e);
        return tok;
    }

    // Answer every whole request at the front of `in` into _reply; returns the bytes consumed.
    std::size_t answer(std::string_view in) {
        std::size_t done = 0;
        while (done < in.size()) {
            std::string_view rest = in.substr(done);
            std::size_t nl = rest.find('\n');
            if (nl == std::string_view::npos) {
                break;
            }
            std::string_view line = rest.substr(0, nl);
            if (!line.empty() && line.back() == '\r') {
                line.remove_suffix(1);
            }
            std::size_t consumed = nl + 1;
            auto cmd = next_token(line);
            if (cmd == "get") {
                for (auto key = next_token(line); !key.empty(); key = next_token(line)) {
                    auto it = _items.find(std::string(key));
                    if (it != _items.end()) {
                        _reply.append("VALUE ").append(key).append(" ").append(it->second.flags);
                        _reply.append(" ").append(std::to_string(it->second.data.size())).append("\r\n");
                        _reply.append(it->second.data).append("\r\n");
                    }
                }
                _reply.append("END\r\n");
            } else if (cmd == "set") {
                auto key = next_token(line);
                auto flags = next_token(line);
                next_token(line);  // exptime: items here never expire
                auto bytes = next_token(line);
                bool noreply = next_token(line) == "noreply";
                char* end = nullptr;
                std::string bytes_s(bytes);
                unsigned long n = std::strtoul(bytes_s.c_str(), &end, 10);
                if (key.empty() || bytes.empty() || *end != '\0' || n > max_request) {
                    _reply.append("CLIENT_ERROR bad command line format\r\n");
                } else {
                    if (rest.size() < consumed + n + 2) {
                        break;  // the value has not all arrived
                    }
                    auto& it = _items[std::string(key)];
                    it.flags.assign(flags);
                    it.data.assign(rest.substr(consumed, n));
                    consumed += n + 2;
                    if (!noreply) {
                        _reply.append("STORED\r\n");
                    }
                }
            } else if (cmd == "version") {
                _reply.append("VERSION memcached_floor\r\n");
            } else {
                _reply.append("ERROR\r\n");
            }
            done += consumed;
        }
        return done;
    }

    // Write [p, p+n); what the socket did not take goes to c.out. False: the connection failed and
    // was closed.
    bool send_or_keep(int fd, connection& c, const char* p, std::size_t n) {
        ssize_t w = floor_util::write_ready(fd, p, n);
        if (w < 0) {
            close_conn(fd);
            return false;
        }
        if (std::size_t(w) < n) {
            c.out.assign(p + w, n - std::size_t(w));
        }
        return true;
    }

    void on_readable(int fd, connection& c) {
        ssize_t r = ::read(fd, buffer, read_size);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close_conn(fd);
            return;
        }
        if (r < 0) {
            return;
        }
        _reply.clear();
        if (c.in.empty()) {
            std::string_view got(buffer, std::size_t(r));
            std::size_t used = answer(got);
            c.in.assign(got.substr(used));
        } else {
            c.in.append(buffer, std::size_t(r));
            c.in.erase(0, answer(c.in));
        }
        if (c.in.size() > max_request) {
            close_conn(fd);  // no newline, or a value larger than any set may carry
            return;
        }
        if (!_reply.empty() && send_or_keep(fd, c, _reply.data(), _reply.size()) && !c.out.empty()) {
            set_events(fd, EPOLLOUT);  // read nothing more until the replies are gone
        }
    }

    void on_writable(int fd, connection& c) {
        std::string out = std::move(c.out);
        c.out.clear();
        if (send_or_keep(fd, c, out.data(), out.size()) && c.out.empty()) {
            set_events(fd, EPOLLIN);
        }
    }

public:
    explicit floor_server(const floor_util::listening& l) : _l(l) {}

    void run(bool busy_poll) {
        constexpr int max_events = 256;
        epoll_event events[max_events];
        while (!stop_requested) {
            int n = ::epoll_wait(_l.ep, events, max_events, busy_poll ? 0 : -1);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                die("epoll_wait");
            }
            for (int i = 0; i < n; ++i) {
                int fd = events[i].data.fd;
                if (fd == _l.listener) {
                    floor_util::accept_ready("memcached_floor", _l, [this](int c) { _conns.emplace(c, connection{}); });
                    continue;
                }
                auto it = _conns.find(fd);
                if (it == _conns.end()) {
                    continue;
                }
                if (!it->second.out.empty()) {
                    on_writable(fd, it->second);
                } else {
                    // EPOLLIN, or EPOLLHUP/EPOLLERR: the read reports EOF or the error.
                    on_readable(fd, it->second);
                }
            }
        }
    }
};

}  // namespace

int main(int argc, char** argv) {
    const char* prog = "memcached_floor";
    std::string address = "127.0.0.1";
    int port = 11311;
    bool busy_poll = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--address" && i + 1 < argc) {
            address = argv[++i];
        } else if (a == "--port" && i + 1 < argc) {
            port = floor_util::parse_port(prog, argv[++i]);
        } else if (a == "--busy-poll") {
            busy_poll = true;
        } else {
            std::fprintf(stderr, "memcached_floor: unknown argument '%s'\n"
                                 "usage: memcached_floor [--address A] [--port P] [--busy-poll]\n",
                         argv[i]);
            return 2;
        }
    }
    floor_util::handle_signals();
    auto l = floor_util::listen_or_exit(prog, address, port);
    floor_server(l).run(busy_poll);
    ::close(l.ep);
    ::close(l.listener);
    return 0;
}
