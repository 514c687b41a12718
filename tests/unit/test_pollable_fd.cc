// pollable_fd: speculative I/O with edge-triggered readiness from the reactor's epoll.
#include "reactor_test.hh"
#include "sync_test_util.hh"

#include "runtime/pollable_fd.hh"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string>

using namespace reef;

namespace {

std::pair<pollable_fd, pollable_fd> make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe2");
    }
    return {pollable_fd(fds[0]), pollable_fd(fds[1])};
}

std::pair<pollable_fd, pollable_fd> make_socketpair(int type = SOCK_STREAM) {
    int fds[2];
    if (::socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
        throw std::runtime_error("socketpair");
    }
    bool stream = type == SOCK_STREAM;
    return {pollable_fd(fds[0], stream), pollable_fd(fds[1], stream)};
}

}  // namespace

REEF_TEST(pollable_fd, read_waits_for_data) {
    auto [r, w] = make_pipe();
    char buf[16];
    auto f = r.read_some(buf, sizeof(buf));
    co_await reef::testing::yield_once();
    EXPECT_FALSE(f.available()) << "nothing written yet";
    REEF_ASSERT(::write(w.get(), "hello", 5) == 5);
    auto n = co_await std::move(f);
    EXPECT_EQ(std::string(buf, n), "hello");
}

REEF_TEST(pollable_fd, short_read_waits_for_the_next_edge_without_a_syscall) {
    auto [r, w] = make_pipe();
    REEF_ASSERT(::write(w.get(), "abc", 3) == 3);
    char buf[16];
    EXPECT_EQ(co_await r.read_some(buf, sizeof(buf)), 3u);
    // The read was short: the pipe is drained, so the next read is not even tried.
    auto f = r.read_some(buf, sizeof(buf));
    EXPECT_FALSE(f.available());
    REEF_ASSERT(::write(w.get(), "de", 2) == 2);
    EXPECT_EQ(co_await std::move(f), 2u);
}

REEF_TEST(pollable_fd, end_of_stream_reads_zero) {
    auto [r, w] = make_pipe();
    auto f = r.read_some(nullptr, 0);
    (void)co_await std::move(f);
    w = pollable_fd();  // close the writer
    char buf[4];
    EXPECT_EQ(co_await r.read_some(buf, sizeof(buf)), 0u);
}

REEF_TEST(pollable_fd, write_all_waits_for_room) {
    auto [a, b] = make_socketpair();
    // Far more than a unix socket buffer holds: write_all must wait for the reader.
    std::string big(4 << 20, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) {
        big[i] = char(i * 31);
    }
    ::iovec iov{big.data(), big.size()};
    auto w = a.write_all(&iov, 1);
    co_await reef::testing::yield_once();
    EXPECT_FALSE(w.available());
    std::string got;
    std::string buf(65536, '\0');
    while (got.size() < big.size()) {
        auto n = co_await b.read_some(buf.data(), buf.size());
        got.append(buf.data(), n);
    }
    co_await std::move(w);
    EXPECT_TRUE(got == big);
}

REEF_TEST(pollable_fd, abort_reader_fails_pending_and_later_reads) {
    auto [r, w] = make_pipe();
    char buf[4];
    auto f = r.read_some(buf, sizeof(buf));
    co_await reef::testing::yield_once();
    r.abort_reader(std::make_exception_ptr(reef::testing::custom_error()));
    EXPECT_TRUE(co_await reef::testing::fails_with<reef::testing::custom_error>(std::move(f)));
    EXPECT_TRUE(co_await reef::testing::fails_with<reef::testing::custom_error>(r.read_some(buf, sizeof(buf))));
    // The writer side is untouched.
    ::iovec iov{const_cast<char*>("ok"), 2};
    co_await w.write_all(&iov, 1);
}

REEF_TEST(pollable_fd, datagram_reads_are_not_taken_as_drained) {
    auto [a, b] = make_socketpair(SOCK_DGRAM);
    REEF_ASSERT(::send(a.get(), "one", 3, 0) == 3);
    REEF_ASSERT(::send(a.get(), "two", 3, 0) == 3);
    char buf[64];
    ::iovec iov{buf, sizeof(buf)};
    ::msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    EXPECT_EQ(co_await b.recvmsg(&msg), 3u);
    // A datagram shorter than the buffer says nothing about the queue: the second one is read
    // at once.
    auto f = b.recvmsg(&msg);
    EXPECT_TRUE(f.available());
    EXPECT_EQ(co_await std::move(f), 3u);
    EXPECT_EQ(std::string(buf, 3), "two");
}

REEF_TEST(pollable_fd, rdhup_resolves_when_the_peer_closes) {
    auto [a, b] = make_socketpair();
    auto f = a.wait_rdhup();
    co_await reef::testing::yield_once();
    EXPECT_FALSE(f.available());
    b = pollable_fd();
    co_await std::move(f);
}

REEF_TEST(pollable_fd, reactor_counts_descriptor_events) {
    auto [r, w] = make_pipe();
    auto before = engine().get_stats().fd_events;
    char buf[4];
    auto f = r.read_some(buf, sizeof(buf));
    REEF_ASSERT(::write(w.get(), "z", 1) == 1);
    co_await std::move(f);
    EXPECT_GT(engine().get_stats().fd_events, before);
}
