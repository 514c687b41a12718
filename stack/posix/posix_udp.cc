// The posix stack's UDP channel: datagrams move between the kernel and the shard in batches —
// recvmmsg fills up to `batch` datagrams per call, and sends made during one task batch leave in
// one sendmmsg.
#include "runtime/circular_buffer.hh"
#include "runtime/coroutine.hh"
#include "runtime/pollable_fd.hh"
#include "runtime/reactor.hh"
#include "stack/posix/posix_stack.hh"

#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <system_error>
#include <vector>

namespace reef::net::posix {

namespace {

std::system_error addr_error(int err, std::string_view what, const socket_address& sa) {
    return std::system_error(err, std::system_category(), fmt::format("{} {}", what, sa));
}

int errno_of(const std::exception_ptr& ex) {
    try {
        std::rethrow_exception(ex);
    } catch (const std::system_error& e) {
        return e.code().value();
    } catch (...) {
        return EIO;
    }
}

// Room for one IP_PKTINFO or IPV6_PKTINFO control message.
constexpr std::size_t control_size = CMSG_SPACE(std::max(sizeof(::in_pktinfo), sizeof(::in6_pktinfo)));

// Everything a channel owns, shared with its in-flight flush so that dropping the channel while a
// send batch waits for socket room is safe.
struct udp_state {
    pollable_fd fd;
    socket_address local;
    udp_channel_options opts;
    lw_shared_ptr<stack_stats> stats;
    bool input_shut = false;
    bool output_shut = false;

    // Receive side: one arena of batch * max_datagram_size bytes; each datagram is copied out to a
    // buffer of its own size, so the arena is reused at once and a small datagram never pins it.
    std::unique_ptr<char[]> arena;
    std::vector<::mmsghdr> rmsgs;
    std::vector<::iovec> riov;
    std::vector<socket_address> rnames;
    std::vector<char> rcontrol;
    circular_buffer<datagram> ready;

    // Send side.
    struct pending_send {
        socket_address dst;
        packet p;
        promise<> done;
    };
    std::deque<pending_send> queue;
    bool flushing = false;
    std::vector<::mmsghdr> smsgs;
    std::vector<::iovec> siov;

    udp_state(pollable_fd f, socket_address l, udp_channel_options o, lw_shared_ptr<stack_stats> s)
        : fd(std::move(f)), local(l), opts(o), stats(std::move(s)) {}

    void prepare_receive() {
        unsigned n = opts.batch;
        arena.reset(new char[n * opts.max_datagram_size]);
        rmsgs.assign(n, {});
        riov.assign(n, {});
        rnames.assign(n, {});
        rcontrol.assign(n * control_size, 0);
    }

    void reset_receive_headers() {
        for (unsigned i = 0; i < rmsgs.size(); ++i) {
            riov[i] = ::iovec{arena.get() + i * opts.max_datagram_size, opts.max_datagram_size};
            auto& h = rmsgs[i].msg_hdr;
            h = {};
            h.msg_name = rnames[i].as_posix_sockaddr();
            h.msg_namelen = socket_address::max_length();
            h.msg_iov = &riov[i];
            h.msg_iovlen = 1;
            h.msg_control = rcontrol.data() + i * control_size;
            h.msg_controllen = control_size;
            rmsgs[i].msg_len = 0;
        }
    }

    socket_address destination_of(const ::msghdr& h) const {
        for (auto* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(const_cast<::msghdr*>(&h), c)) {
            if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                ::in_pktinfo pi;
                std::memcpy(&pi, CMSG_DATA(c), sizeof(pi));
                return socket_address(inet_address(pi.ipi_addr), local.port());
            }
            if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
                ::in6_pktinfo pi;
                std::memcpy(&pi, CMSG_DATA(c), sizeof(pi));
                return socket_address(inet_address(pi.ipi6_addr, pi.ipi6_ifindex), local.port());
            }
        }
        return local;
    }

    void take_batch(unsigned n) {
        ++stats->receive_calls;
        for (unsigned i = 0; i < n; ++i) {
            auto& h = rmsgs[i].msg_hdr;
            std::size_t len = std::min<std::size_t>(rmsgs[i].msg_len, opts.max_datagram_size);
            datagram d;
            d.data = packet(static_cast<const char*>(riov[i].iov_base), len);
            d.src = socket_address(static_cast<const ::sockaddr*>(h.msg_name), h.msg_namelen);
            d.dst = destination_of(h);
            d.truncated = (h.msg_flags & MSG_TRUNC) != 0;
            if (d.truncated) {
                ++stats->datagrams_truncated;
            }
            ++stats->datagrams_received;
            ready.push_back(std::move(d));
        }
    }

    void fail_queued(const std::exception_ptr& ex) {
        for (auto& s : queue) {
            s.done.set_exception(ex);
        }
        queue.clear();
    }
};

// Send everything queued, one sendmmsg per `batch` datagrams; each datagram's promise resolves
// when the kernel took it, or fails with the error the kernel gave for it.
future<> flush(lw_shared_ptr<udp_state> st) {
    while (!st->queue.empty() && !st->output_shut) {
        unsigned n = unsigned(std::min<std::size_t>(st->queue.size(), st->opts.batch));
        std::size_t niov = 0;
        for (unsigned i = 0; i < n; ++i) {
            niov += st->queue[i].p.nr_frags();
        }
        st->smsgs.assign(n, {});
        st->siov.resize(niov);
        std::size_t k = 0;
        for (unsigned i = 0; i < n; ++i) {
            auto& q = st->queue[i];
            auto& h = st->smsgs[i].msg_hdr;
            h.msg_name = const_cast<::sockaddr*>(q.dst.as_posix_sockaddr());
            h.msg_namelen = q.dst.length();
            h.msg_iov = st->siov.data() + k;
            for (auto& f : q.p.fragments()) {
                st->siov[k++] = ::iovec{f.base, f.size};
            }
            h.msg_iovlen = std::size_t(st->siov.data() + k - h.msg_iov);
        }
        ++st->stats->send_calls;
        unsigned sent = 0;
        std::exception_ptr err;
        try {
            sent = co_await st->fd.sendmmsg(st->smsgs.data(), n);
        } catch (...) {
            err = std::current_exception();
        }
        if (err) {
            // sendmmsg reports the error of the first datagram it could not send.
            auto& q = st->queue.front();
            q.done.set_exception(addr_error(errno_of(err), "send to", q.dst));
            st->queue.pop_front();
            continue;
        }
        st->stats->datagrams_sent += sent;
        for (unsigned i = 0; i < sent; ++i) {
            st->queue.front().done.set_value();
            st->queue.pop_front();
        }
    }
    if (!st->queue.empty()) {
        st->fail_queued(std::make_exception_ptr(addr_error(EPIPE, "send on", st->local)));
    }
    st->flushing = false;
}

class posix_udp_channel final : public udp_channel_impl {
    lw_shared_ptr<udp_state> _st;

public:
    explicit posix_udp_channel(lw_shared_ptr<udp_state> st) : _st(std::move(st)) {}
    ~posix_udp_channel() override { close(); }

    socket_address local_address() const override { return _st->local; }

    future<datagram> receive() override {
        auto& st = *_st;
        if (!st.ready.empty()) {
            auto d = std::move(st.ready.front());
            st.ready.pop_front();
            return make_ready_future<datagram>(std::move(d));
        }
        if (st.input_shut) {
            return make_exception_future<datagram>(addr_error(ECONNABORTED, "receive on", st.local));
        }
        if (!st.arena) {
            st.prepare_receive();
        }
        st.reset_receive_headers();
        return st.fd.recvmmsg(st.rmsgs.data(), unsigned(st.rmsgs.size())).then([st = _st](unsigned n) {
            st->take_batch(n);
            auto d = std::move(st->ready.front());
            st->ready.pop_front();
            return d;
        });
    }

    future<> send(const socket_address& dst, packet p) override {
        auto& st = *_st;
        if (st.output_shut) {
            return make_exception_future<>(addr_error(EPIPE, "send to", dst));
        }
        st.queue.push_back(udp_state::pending_send{dst, std::move(p), promise<>()});
        auto f = st.queue.back().done.get_future();
        if (!st.flushing) {
            // Flush after the tasks that are ready now: every send they make joins this batch.
            st.flushing = true;
            engine().add_task(make_task([st = _st] { (void)flush(st); }));
        }
        return f;
    }

    void shutdown_input() override {
        auto& st = *_st;
        if (!st.input_shut) {
            st.input_shut = true;
            st.ready.clear();
            st.fd.abort_reader(std::make_exception_ptr(addr_error(ECONNABORTED, "receive on", st.local)));
        }
    }

    void shutdown_output() override {
        auto& st = *_st;
        if (!st.output_shut) {
            st.output_shut = true;
            st.fd.abort_writer(std::make_exception_ptr(addr_error(EPIPE, "send on", st.local)));
            if (!st.flushing) {
                st.fail_queued(std::make_exception_ptr(addr_error(EPIPE, "send on", st.local)));
            }
        }
    }

    bool is_closed() const override { return _st->input_shut && _st->output_shut; }

    void close() override {
        shutdown_input();
        shutdown_output();
    }
};

void set_option(int fd, int level, int opt, int value, const char* name) {
    if (::setsockopt(fd, level, opt, &value, sizeof(value)) != 0) {
        throw std::system_error(errno, std::system_category(), fmt::format("setsockopt({})", name));
    }
}

}  // namespace

udp_channel make_udp_channel(const socket_address& local, const udp_channel_options& opts,
                             lw_shared_ptr<stack_stats> stats) {
    if (!local.is_ipv4() && !local.is_ipv6()) {
        throw std::invalid_argument(fmt::format("UDP channel on {}: not an IPv4 or IPv6 address", local));
    }
    if (opts.batch == 0 || opts.max_datagram_size == 0) {
        throw std::invalid_argument("UDP channel: batch and max_datagram_size must be positive");
    }
    int fd = ::socket(local.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw addr_error(errno, "UDP channel on", local);
    }
    pollable_fd pfd(fd, false);
    if (opts.reuse_address) {
        set_option(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    }
    if (opts.reuse_port) {
        set_option(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    }
    // The destination address of each datagram (for a channel bound to "any").
    if (local.is_ipv4()) {
        set_option(fd, IPPROTO_IP, IP_PKTINFO, 1, "IP_PKTINFO");
    } else {
        set_option(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO");
    }
    if (::bind(fd, local.as_posix_sockaddr(), local.length()) != 0) {
        throw addr_error(errno, "UDP channel on", local);
    }
    socket_address bound;
    ::socklen_t len = socket_address::max_length();
    if (::getsockname(fd, bound.as_posix_sockaddr(), &len) != 0) {
        throw addr_error(errno, "UDP channel on", local);
    }
    auto st = make_lw_shared<udp_state>(std::move(pfd), socket_address(bound.as_posix_sockaddr(), len), opts,
                                        std::move(stats));
    return udp_channel(std::make_unique<posix_udp_channel>(std::move(st)));
}

}  // namespace reef::net::posix
