// The posix stack's stream sockets, listeners and the stack object itself. UDP is in posix_udp.cc.
#include "stack/posix/posix_stack.hh"

#include "runtime/log.hh"
#include "runtime/pollable_fd.hh"
#include "runtime/reactor.hh"
#include "runtime/shared_ptr.hh"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <unordered_set>
#include <system_error>
#include <vector>

namespace reef::net {

namespace {

logger plog("posix-stack");

std::system_error addr_error(int err, std::string_view what, const socket_address& sa) {
    return std::system_error(err, std::system_category(), fmt::format("{} {}", what, sa));
}

// Rethrow a system_error from the fd layer with the socket's address in the text, so the user
// reads "read from 127.0.0.1:40000: Connection reset by peer" rather than "read: ...".
template <typename T>
future<T> rethrow_with_address(std::exception_ptr ex, const char* what, const socket_address& sa) {
    try {
        std::rethrow_exception(std::move(ex));
    } catch (const std::system_error& e) {
        return make_exception_future<T>(addr_error(e.code().value(), what, sa));
    } catch (...) {
        return make_exception_future<T>(std::current_exception());
    }
}

template <typename T>
future<T> with_address(future<T>&& f, const char* what, const socket_address& sa) {
    if (f.available()) [[likely]] {
        return f.failed() ? rethrow_with_address<T>(f.get_exception(), what, sa) : std::move(f);
    }
    return std::move(f).then_wrapped([what, sa](future<T>&& r) {
        return r.failed() ? rethrow_with_address<T>(r.get_exception(), what, sa) : std::move(r);
    });
}

void set_int_option(int fd, int level, int opt, int value, const char* name) {
    if (::setsockopt(fd, level, opt, &value, sizeof(value)) != 0) {
        throw std::system_error(errno, std::system_category(), fmt::format("setsockopt({})", name));
    }
}

int get_int_option(int fd, int level, int opt) {
    int value = 0;
    ::socklen_t len = sizeof(value);
    if (::getsockopt(fd, level, opt, &value, &len) != 0) {
        throw std::system_error(errno, std::system_category(), "getsockopt");
    }
    return value;
}

socket_address sockname(int fd) {
    socket_address sa;
    ::socklen_t len = socket_address::max_length();
    if (::getsockname(fd, sa.as_posix_sockaddr(), &len) != 0) {
        return {};
    }
    return socket_address(sa.as_posix_sockaddr(), len);
}

bool is_inet(const socket_address& sa) { return sa.is_ipv4() || sa.is_ipv6(); }

// State shared by a connection's socket object, data source and sink: the descriptor closes when
// the last of them is gone, whatever order the application drops them in.
struct posix_connection {
    pollable_fd fd;
    socket_address local;
    socket_address remote;
    lw_shared_ptr<stack_stats> stats_ptr;  // outlives the stack if the app drops it first
    stack_stats& stats;
    posix_connection(pollable_fd f, socket_address l, socket_address r, lw_shared_ptr<stack_stats> st)
        : fd(std::move(f)), local(l), remote(r), stats_ptr(std::move(st)), stats(*stats_ptr) {}
    ~posix_connection() { ++stats.connections_closed; }
};

class posix_data_source final : public data_source_impl {
    lw_shared_ptr<posix_connection> _conn;
    std::size_t _buffer_size;
    temporary_buffer<char> _buf;
    // A consumer kept a small read lent out of _buf past the next get(): from then on small reads
    // are copied out, so that such a consumer pins at most one big buffer.
    bool _copy_small = false;

public:
    posix_data_source(lw_shared_ptr<posix_connection> c, std::size_t buffer_size)
        : _conn(std::move(c)), _buffer_size(std::max<std::size_t>(buffer_size, 512)) {}

    future<temporary_buffer<char>> get() override {
        // Wait for readiness here rather than inside read_some(): then a request that arrives
        // after a wait costs one continuation (readiness, read, buffer) instead of two.
        auto ready = _conn->fd.readable();
        if (ready.available() && !ready.failed()) [[likely]] {
            ready.ignore_ready_future();
            return read_now();
        }
        return ready.then_wrapped([this](future<>&& r) {
            if (r.failed()) [[unlikely]] {
                return rethrow_with_address<temporary_buffer<char>>(r.get_exception(), "read from", _conn->remote);
            }
            return read_now();
        });
    }

    future<> close() override {
        // Wake a read that is still waiting (the stream was closed under it) with end of stream.
        return futurize_invoke([this] { _conn->fd.shutdown(SHUT_RD); });
    }

private:
    future<temporary_buffer<char>> read_now() {
        // The buffer of the last read is reused when its bytes were copied out or the share lent
        // for them is gone (a small read).
        if (_buf.size() != _buffer_size || !_buf.exclusive()) {
            _copy_small = _copy_small || _buf.size() == _buffer_size;
            _buf = temporary_buffer<char>(_buffer_size);
        }
        auto f = _conn->fd.read_some(_buf.get_write(), _buf.size());
        if (f.available() && !f.failed()) [[likely]] {
            return make_ready_future<temporary_buffer<char>>(take(f.get()));
        }
        // Readiness without data (a spurious edge), or an error.
        return f.then_wrapped([this](future<std::size_t>&& r) {
            if (r.failed()) [[unlikely]] {
                return rethrow_with_address<temporary_buffer<char>>(r.get_exception(), "read from", _conn->remote);
            }
            return make_ready_future<temporary_buffer<char>>(take(r.get()));
        });
    }

    temporary_buffer<char> take(std::size_t n) {
        ++_conn->stats.receive_calls;
        _conn->stats.bytes_received += n;
        if (n == 0) {
            return {};
        }
        // A small read is lent as a share of the big buffer, which is reused if the consumer lets
        // go of it before the next get() (most do: they parse or copy at once). One that keeps it
        // pins the whole buffer; after the first such, small reads are copied out instead.
        if (n <= _buffer_size / 8) {
            if (_copy_small) {
                return temporary_buffer<char>(_buf.get(), n);
            }
            return _buf.share(0, n);
        }
        _buf.trim(n);
        return std::move(_buf);
    }
};

class posix_data_sink final : public data_sink_impl {
    lw_shared_ptr<posix_connection> _conn;
    std::vector<temporary_buffer<char>> _bufs;  // kept alive while their bytes are written
    std::vector<::iovec> _iov;

public:
    explicit posix_data_sink(lw_shared_ptr<posix_connection> c) : _conn(std::move(c)) {}

    future<> put(temporary_buffer<char> data) override {
        _bufs.clear();
        _bufs.push_back(std::move(data));
        return write_bufs();
    }

    future<> put(std::vector<temporary_buffer<char>> data) override {
        _bufs = std::move(data);
        return write_bufs();
    }

    future<> close() override {
        return futurize_invoke([this] { _conn->fd.shutdown(SHUT_WR); });
    }

    std::size_t buffer_size_hint() const noexcept override { return 8192; }

private:
    future<> write_bufs() {
        _iov.clear();
        std::size_t total = 0;
        for (auto& b : _bufs) {
            if (!b.empty()) {
                _iov.push_back(::iovec{b.get_write(), b.size()});
                total += b.size();
            }
        }
        ++_conn->stats.send_calls;
        _conn->stats.bytes_sent += total;
        auto f = _conn->fd.write_all(_iov.data(), _iov.size());
        if (f.available() && !f.failed()) [[likely]] {
            _bufs.clear();
            return f;
        }
        return with_address(std::move(f), "write to", _conn->remote).then([this] { _bufs.clear(); });
    }
};

class posix_connected_socket final : public connected_socket_impl {
    lw_shared_ptr<posix_connection> _conn;
    bool _tcp;

public:
    posix_connected_socket(lw_shared_ptr<posix_connection> c, bool tcp) : _conn(std::move(c)), _tcp(tcp) {}

    data_source source(const connected_socket_input_stream_config& cfg) override {
        return data_source(std::make_unique<posix_data_source>(_conn, cfg.buffer_size));
    }
    data_sink sink() override { return data_sink(std::make_unique<posix_data_sink>(_conn)); }
    void shutdown_input() override { _conn->fd.shutdown(SHUT_RD); }
    void shutdown_output() override { _conn->fd.shutdown(SHUT_WR); }

    void set_nodelay(bool on) override {
        if (_tcp) {
            set_int_option(fd(), IPPROTO_TCP, TCP_NODELAY, on, "TCP_NODELAY");
        }
    }
    bool get_nodelay() const override { return _tcp && get_int_option(fd(), IPPROTO_TCP, TCP_NODELAY) != 0; }
    void set_keepalive(bool on) override { set_int_option(fd(), SOL_SOCKET, SO_KEEPALIVE, on, "SO_KEEPALIVE"); }
    bool get_keepalive() const override { return get_int_option(fd(), SOL_SOCKET, SO_KEEPALIVE) != 0; }
    void set_keepalive_parameters(const tcp_keepalive_params& p) override {
        if (!_tcp) {
            throw std::invalid_argument("keepalive parameters apply to TCP sockets only");
        }
        set_int_option(fd(), IPPROTO_TCP, TCP_KEEPIDLE, int(p.idle.count()), "TCP_KEEPIDLE");
        set_int_option(fd(), IPPROTO_TCP, TCP_KEEPINTVL, int(p.interval.count()), "TCP_KEEPINTVL");
        set_int_option(fd(), IPPROTO_TCP, TCP_KEEPCNT, int(p.count), "TCP_KEEPCNT");
    }
    tcp_keepalive_params get_keepalive_parameters() const override {
        if (!_tcp) {
            throw std::invalid_argument("keepalive parameters apply to TCP sockets only");
        }
        return tcp_keepalive_params{std::chrono::seconds(get_int_option(fd(), IPPROTO_TCP, TCP_KEEPIDLE)),
                                    std::chrono::seconds(get_int_option(fd(), IPPROTO_TCP, TCP_KEEPINTVL)),
                                    unsigned(get_int_option(fd(), IPPROTO_TCP, TCP_KEEPCNT))};
    }
    socket_address local_address() const noexcept override { return _conn->local; }
    socket_address remote_address() const noexcept override { return _conn->remote; }
    future<> wait_input_shutdown() override { return _conn->fd.wait_rdhup(); }

private:
    int fd() const noexcept { return _conn->fd.get(); }
};

connected_socket make_connected(pollable_fd fd, const socket_address& local, const socket_address& remote,
                                lw_shared_ptr<stack_stats> stats) {
    bool tcp = is_inet(remote);
    if (tcp) {
        // output_stream coalesces small writes already; Nagle would only delay flushed replies.
        set_int_option(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
    }
    auto conn = make_lw_shared<posix_connection>(std::move(fd), local, remote, stats);
    return connected_socket(std::make_unique<posix_connected_socket>(std::move(conn), tcp));
}

class posix_server_socket final : public server_socket_impl {
    pollable_fd _fd;
    socket_address _local;
    lw_shared_ptr<stack_stats> _stats;
    // The stack's set of addresses this shard listens on (shared: either may go first).
    lw_shared_ptr<std::unordered_set<socket_address>> _listening;
    socket_address _key;
    socket_address _peer;  // filled by accept4
    ::socklen_t _peer_len = 0;

public:
    posix_server_socket(pollable_fd fd, socket_address local, lw_shared_ptr<stack_stats> stats,
                        lw_shared_ptr<std::unordered_set<socket_address>> listening,
                        socket_address key)
        : _fd(std::move(fd)), _local(local), _stats(stats), _listening(std::move(listening)), _key(key) {}
    ~posix_server_socket() override {
        if (_listening) {
            _listening->erase(_key);
        }
    }

    future<accept_result> accept() override {
        _peer_len = socket_address::max_length();
        auto f = _fd.accept(_peer.as_posix_sockaddr(), &_peer_len);
        return with_address(std::move(f), "accept on", _local).then([this](pollable_fd fd) {
            socket_address peer(_peer.as_posix_sockaddr(), _peer_len);
            ++_stats->connections_accepted;
            socket_address local = _local.is_unix() ? _local : sockname(fd.get());
            return accept_result{make_connected(std::move(fd), local, peer, _stats), peer};
        });
    }

    void abort_accept() override {
        // shutdown(SHUT_RD) on a listener makes the kernel drop its queue and wake pollers; the
        // error below is what a waiting accept() sees either way.
        _fd.shutdown(SHUT_RD);
        _fd.abort_reader(std::make_exception_ptr(addr_error(ECONNABORTED, "accept on", _local)));
    }

    socket_address local_address() const noexcept override { return _local; }
};

class posix_network_stack final : public network_stack {
    lw_shared_ptr<stack_stats> _stats = make_lw_shared<stack_stats>();
    lw_shared_ptr<std::unordered_set<socket_address>> _listening =
        make_lw_shared<std::unordered_set<socket_address>>();

public:
    std::string_view name() const noexcept override { return "posix"; }
    bool supports_ipv6() const noexcept override { return true; }
    const stack_stats& stats() const noexcept override { return *_stats; }

    server_socket listen(socket_address sa, listen_options opts) override {
        // SO_REUSEPORT would let this shard bind the same address twice without complaint; a
        // second listener on one shard is always a mistake, so say so.
        if (!sa.is_unix() && sa.port() != 0 && _listening->count(sa)) {
            throw addr_error(EADDRINUSE, "listen on", sa);
        }
        int fd = ::socket(sa.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            throw addr_error(errno, "listen on", sa);
        }
        pollable_fd pfd(fd, true);
        if (is_inet(sa)) {
            if (opts.reuse_address) {
                set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
            }
            if (opts.lb == load_balancing::per_shard) {
                set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
            }
            if (opts.recv_buffer_size) {
                set_int_option(fd, SOL_SOCKET, SO_RCVBUF, int(opts.recv_buffer_size), "SO_RCVBUF");
            }
            if (opts.send_buffer_size) {
                set_int_option(fd, SOL_SOCKET, SO_SNDBUF, int(opts.send_buffer_size), "SO_SNDBUF");
            }
        }
        if (::bind(fd, sa.as_posix_sockaddr(), sa.length()) != 0) {
            throw addr_error(errno, "listen on", sa);
        }
        if (::listen(fd, opts.backlog) != 0) {
            throw addr_error(errno, "listen on", sa);
        }
        socket_address local = sa.is_unix() ? sa : sockname(fd);
        lw_shared_ptr<std::unordered_set<socket_address>> track;
        if (!sa.is_unix()) {
            _listening->insert(local);
            track = _listening;
        }
        return server_socket(std::make_unique<posix_server_socket>(std::move(pfd), local, _stats, track, local));
    }

    future<connected_socket> connect(socket_address sa, socket_address local) override {
        int fd = ::socket(sa.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            ++_stats->connections_failed;
            return make_exception_future<connected_socket>(addr_error(errno, "connect to", sa));
        }
        auto pfd = std::make_unique<pollable_fd>(fd, true);
        if (!local.is_unspecified() && local.family() == sa.family()) {
            if (is_inet(local)) {
                set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
            }
            if (::bind(fd, local.as_posix_sockaddr(), local.length()) != 0) {
                ++_stats->connections_failed;
                return make_exception_future<connected_socket>(addr_error(errno, "bind (for connect) to", local));
            }
        }
        auto f = pfd->connect(sa.as_posix_sockaddr(), sa.length());
        return with_address(std::move(f), "connect to", sa)
            .then_wrapped([this, sa, pfd = std::move(pfd)](future<>&& r) mutable {
                if (r.failed()) {
                    ++_stats->connections_failed;
                    return make_exception_future<connected_socket>(r.get_exception());
                }
                ++_stats->connections_connected;
                socket_address l = sa.is_unix() ? socket_address{} : sockname(pfd->get());
                return make_ready_future<connected_socket>(make_connected(std::move(*pfd), l, sa, _stats));
            });
    }

    udp_channel make_udp_channel(const socket_address& local, const udp_channel_options& opts) override {
        return posix::make_udp_channel(local, opts, _stats);
    }
};

}  // namespace

std::unique_ptr<network_stack> make_posix_stack() { return std::make_unique<posix_network_stack>(); }

}  // namespace reef::net
