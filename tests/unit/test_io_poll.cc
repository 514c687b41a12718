// How the reactor waits for disk completions: while awake it reads the completion ring and makes
// no epoll_wait for the disk (the backend's eventfd is only a sleep wake-up, see
// reactor::add_sleep_wakeup_fd), and a sleeping reactor is still woken by a completion.
#include "runtime/future_util.hh"
#include "runtime/io/file.hh"
#include "runtime/io/io_properties.hh"
#include "runtime/io/io_queue.hh"
#include "runtime/reactor.hh"
#include "runtime/timer.hh"
#include "tests/unit/io_test.hh"
#include "tests/unit/reactor_test.hh"

#include <gtest/gtest.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

using namespace reef;
using namespace std::chrono_literals;
using reef::testing::temp_dir;

namespace {

// ------------------------------------------------------------------------------------------------
// The reactor API on its own: an eventfd added with add_sleep_wakeup_fd ends a sleep, and an awake
// reactor never polls it.

// Reads the eventfd when polled; about to sleep, tells the writer thread to write it.
class eventfd_poller final : public pollfn {
    int _fd;
    std::atomic<bool>& _sleeping;
    promise<>& _done;
    bool _fired = false;

public:
    unsigned sleeps_offered = 0;
    eventfd_poller(int fd, std::atomic<bool>& sleeping, promise<>& done) : _fd(fd), _sleeping(sleeping), _done(done) {}
    bool poll() override {
        std::uint64_t v = 0;
        if (::read(_fd, &v, sizeof(v)) == sizeof(v) && !_fired) {
            _fired = true;
            _done.set_value();
            return true;
        }
        return false;
    }
    bool pure_poll() override { return false; }
    bool try_enter_interrupt_mode() override {
        ++sleeps_offered;
        // The write may come before epoll_pwait starts: an edge already pending ends it at once.
        _sleeping.store(true, std::memory_order_release);
        return true;
    }
};

REEF_TEST(io_poll, sleep_wakeup_fd_ends_the_sleep_and_is_never_polled_awake) {
    int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    REEF_ASSERT(efd >= 0);
    engine().add_sleep_wakeup_fd(efd);
    std::atomic<bool> sleeping{false};
    promise<> done;
    auto woken = done.get_future();
    eventfd_poller p(efd, sleeping, done);
    engine().register_poller(&p);
    auto before = engine().get_stats();
    // Nothing else is pending (no timers but this fallback): only the eventfd can end the sleep
    // in time. The fallback turns a missed wake-up into a failure instead of a hang.
    bool timed_out = false;
    timer<steady_clock_type> fallback([&] {
        timed_out = true;
        std::uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(efd, &one, sizeof(one));
    });
    fallback.arm(60s);
    std::thread writer([&] {
        while (!sleeping.load(std::memory_order_acquire)) {
            std::this_thread::sleep_for(1ms);
        }
        std::uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(efd, &one, sizeof(one));
    });
    co_await std::move(woken);
    writer.join();
    fallback.cancel();
    auto after = engine().get_stats();
    engine().unregister_poller(&p);
    engine().remove_sleep_wakeup_fd(efd);
    ::close(efd);
    EXPECT_FALSE(timed_out) << "the reactor slept through the eventfd";
    EXPECT_GE(p.sleeps_offered, 1u);
    EXPECT_GE(after.sleeps - before.sleeps, 1u);
    // A wake-up descriptor is not a registered descriptor: no epoll_wait while awake.
    EXPECT_EQ(after.fd_polls, before.fd_polls);
}

// ------------------------------------------------------------------------------------------------
// Disk requests on both backends.

class io_poll : public ::testing::TestWithParam<io::backend_choice> {
protected:
    void run(std::function<future<>()> body, idle_policy idle) {
        io::io_config cfg;
        cfg.backend = GetParam();
        io::set_io_config(cfg);
        auto rc = reef::testing::test_reactor_config();
        rc.idle = idle;
        rc.idle_poll = 0us;
        reef::testing::run_in_reactor(
            [&]() -> future<> {
                EXPECT_EQ(local_io_queue_info().backend, io::to_string(GetParam()));
                return body();
            },
            rc);
        io::set_io_config({});
    }
};

std::string backend_name(const ::testing::TestParamInfo<io::backend_choice>& p) {
    return p.param == io::backend_choice::io_uring ? "io_uring" : "linux_aio";
}

// Writes `blocks` 4 KiB blocks, each filled with its index, then reads them back `depth` at a
// time and checks them. Returns the number of blocks read back intact.
future<unsigned> write_and_read_back(std::string path, unsigned blocks, unsigned depth) {
    auto f = co_await open_file_dma(path, open_flags::rw | open_flags::create);
    std::size_t bs = std::max<std::size_t>(4096, f.dma_alignment());
    for (unsigned i = 0; i < blocks; ++i) {
        auto b = allocate_aligned_buffer(bs, f.dma_alignment());
        std::memset(b.get_write(), int(i & 0xff), bs);
        co_await f.dma_write(std::uint64_t(i) * bs, b.get(), bs);
    }
    unsigned good = 0;
    for (unsigned first = 0; first < blocks; first += depth) {
        std::vector<future<bool>> reads;
        for (unsigned i = first; i < std::min(blocks, first + depth); ++i) {
            reads.push_back(f.dma_read(std::uint64_t(i) * bs, bs).then([i, bs](temporary_buffer<char> b) {
                return b.size() == bs && std::all_of(b.begin(), b.end(), [i](char c) { return c == char(i & 0xff); });
            }));
        }
        for (auto& r : reads) {
            good += co_await std::move(r) ? 1 : 0;
        }
    }
    co_await f.close();
    co_return good;
}

// The point of the change: a polling reactor with disk requests in flight reads the completion
// ring and makes no epoll_wait (fd_polls counts them) for the disk.
TEST_P(io_poll, a_polling_reactor_makes_no_epoll_wait_for_disk_completions) {
    run(
        []() -> future<> {
            temp_dir d;
            auto before = engine().get_stats();
            unsigned good = co_await write_and_read_back(d.file("f"), 256, 32);
            auto after = engine().get_stats();
            EXPECT_EQ(good, 256u);
            EXPECT_EQ(after.fd_polls, before.fd_polls);
            EXPECT_GT(after.polls, before.polls);
        },
        idle_policy::poll);
}

// A reactor that sleeps as soon as it is idle: every request is waited for asleep, and its
// completion (io_uring's deferred completions included) must wake the reactor through the
// backend's eventfd. A missed wake-up fails through the fallback timer instead of hanging.
TEST_P(io_poll, completions_wake_a_sleeping_reactor) {
    run(
        []() -> future<> {
            temp_dir d;
            bool timed_out = false;
            auto work = write_and_read_back(d.file("f"), 64, 1);
            auto deadline = steady_clock_type::now() + 120s;
            unsigned good = 0;
            try {
                good = co_await with_timeout(deadline, std::move(work));
            } catch (const timed_out_error&) {
                timed_out = true;
            }
            EXPECT_FALSE(timed_out) << "a completion did not wake the sleeping reactor";
            EXPECT_EQ(good, 64u);
            EXPECT_GT(engine().get_stats().sleeps, 0u);
        },
        idle_policy::sleep);
}

INSTANTIATE_TEST_SUITE_P(backends, io_poll,
                         ::testing::Values(io::backend_choice::io_uring, io::backend_choice::linux_aio), backend_name);

}  // namespace
