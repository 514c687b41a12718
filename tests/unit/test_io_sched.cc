// The I/O scheduler: classes, shares and their run-time changes, fairness on a saturated queue.
//
// The queue is saturated deterministically by a test disk model (io-properties) with a small
// in-flight limit and a bandwidth the real disk easily exceeds: requests then wait in the queue
// and the fair queue alone decides who goes next, so the 1:4 split does not depend on the disk.
#include "runtime/future_util.hh"
#include "runtime/io/file.hh"
#include "runtime/io/io_properties.hh"
#include "runtime/io/io_queue.hh"
#include "runtime/smp.hh"
#include "tests/unit/io_test.hh"
#include "tests/unit/reactor_test.hh"
#include "tests/unit/smp_test.hh"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>

using namespace reef;
using namespace std::chrono_literals;

namespace {

io_priority_class get_class(const std::string& name, unsigned shares) {
    if (auto c = io_priority_class::find(name)) {
        c->set_shares(shares);
        return *c;
    }
    return io_priority_class::create(name, shares);
}

TEST(io_priority_class, create_find_and_set_shares) {
    auto c = get_class("test_sched_a", 250);
    EXPECT_EQ(c.name(), "test_sched_a");
    EXPECT_EQ(c.shares(), 250u);
    auto found = io_priority_class::find("test_sched_a");
    ASSERT_TRUE(found);
    EXPECT_EQ(found->id(), c.id());
    set_io_class_shares("test_sched_a", 700);
    EXPECT_EQ(c.shares(), 700u);
    EXPECT_THROW(io_priority_class::create("test_sched_a", 10), std::invalid_argument);
    EXPECT_THROW(io_priority_class::create("", 10), std::invalid_argument);
    EXPECT_THROW(io_priority_class::create("test_sched_zero", 0), std::invalid_argument);
    EXPECT_THROW(c.set_shares(0), std::invalid_argument);
    try {
        set_io_class_shares("no_such_class", 10);
        ADD_FAILURE() << "set shares of an unknown class";
    } catch (const std::invalid_argument& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("no_such_class"), std::string::npos) << m;
        EXPECT_NE(m.find("default"), std::string::npos) << m;  // the known classes are listed
    }
    EXPECT_EQ(io_priority_class().name(), "default");
    EXPECT_EQ(io_priority_class::all().front().name(), "default");
}

// One competitor: keeps one read of class `pc` in flight until `deadline`, adding the bytes of
// the reads that finished before it to `*bytes`.
future<> read_until(file f, io_priority_class pc, steady_clock_type::time_point deadline, std::uint64_t* bytes,
                    unsigned seed) {
    const std::size_t block = 65536;
    const std::uint64_t blocks = (std::uint64_t(16) << 20) / block;
    auto buf = allocate_aligned_buffer(block, f.dma_alignment());
    std::mt19937_64 rng(seed);
    while (steady_clock_type::now() < deadline) {
        auto n = co_await f.dma_read((rng() % blocks) * block, buf.get_write(), block, pc);
        if (steady_clock_type::now() < deadline) {
            *bytes += n;
        }
    }
}

// Two classes keep `depth` reads each queued for `duration`; returns the bytes each got.
future<std::pair<std::uint64_t, std::uint64_t>> compete(file f, io_priority_class a, io_priority_class b,
                                                         std::chrono::milliseconds duration) {
    const unsigned depth = 8;
    std::uint64_t bytes[2] = {0, 0};
    auto deadline = steady_clock_type::now() + duration;
    std::vector<future<>> readers;
    for (unsigned i = 0; i < depth; ++i) {
        readers.push_back(read_until(f, a, deadline, &bytes[0], 2 * i));
        readers.push_back(read_until(f, b, deadline, &bytes[1], 2 * i + 1));
    }
    for (auto& r : readers) {
        co_await std::move(r);
    }
    co_return std::pair<std::uint64_t, std::uint64_t>(bytes[0], bytes[1]);
}

class io_fairness : public ::testing::Test {
protected:
    void SetUp() override {
        io::io_config cfg;
        io::disk_properties d;
        d.mountpoint = "/test";
        d.read_iops = 1e6;
        d.read_bandwidth = 100e6;  // ~1500 64 KiB reads/s: any real disk is faster
        d.write_iops = 1e6;
        d.write_bandwidth = 100e6;
        d.max_in_flight = 2;
        cfg.disk = d;
        cfg.properties_origin = "test";
        io::set_io_config(cfg);
    }
    void TearDown() override { io::set_io_config({}); }
};

future<file> make_test_file(const reef::testing::temp_dir& d) {
    auto f = co_await open_file_dma(d.file("fair"), open_flags::rw | open_flags::create);
    auto buf = allocate_aligned_buffer(1 << 20, f.dma_alignment());
    std::memset(buf.get_write(), 'x', buf.size());
    for (unsigned i = 0; i < 16; ++i) {
        co_await f.dma_write(std::uint64_t(i) << 20, buf.get(), buf.size());
    }
    co_return f;
}

TEST_F(io_fairness, shares_100_400_get_1_to_4_and_changes_take_effect) {
    reef::testing::temp_dir d;
    reef::testing::run_in_reactor([&]() -> future<> {
        auto info = local_io_queue_info();
        EXPECT_TRUE(info.rate_limited);
        EXPECT_EQ(info.max_in_flight, 2u);
        auto f = co_await make_test_file(d);
        auto a = get_class("fair_a", 100);
        auto b = get_class("fair_b", 400);
        auto [ba, bb] = co_await compete(f, a, b, 2500ms);
        REEF_ASSERT(ba > 0 && bb > 0);
        double ratio = double(bb) / double(ba);
        std::printf("shares 100:400: bytes %llu:%llu, ratio 1:%.3f\n", (unsigned long long)ba, (unsigned long long)bb, ratio);
        EXPECT_NEAR(ratio, 4.0, 4.0 * 0.15) << "bytes a " << ba << " b " << bb;

        // Shares changed at run time (as the control plane does, by name): the split reverses.
        set_io_class_shares("fair_a", 400);
        set_io_class_shares("fair_b", 100);
        auto [ca, cb] = co_await compete(f, a, b, 2500ms);
        REEF_ASSERT(ca > 0 && cb > 0);
        ratio = double(ca) / double(cb);
        std::printf("shares 400:100: bytes %llu:%llu, ratio %.3f:1\n", (unsigned long long)ca, (unsigned long long)cb, ratio);
        EXPECT_NEAR(ratio, 4.0, 4.0 * 0.15) << "bytes a " << ca << " b " << cb;

        // The statistics saw both classes' requests, with time spent queued.
        auto stats = io_class_stats_local();
        for (auto& s : stats) {
            if (s.name == "fair_a" || s.name == "fair_b") {
                EXPECT_GT(s.reads, 0u);
                EXPECT_GT(s.read_bytes, 0u);
                EXPECT_GT(s.queue_time.count(), 0);
                EXPECT_GT(s.exec_time.count(), 0);
                EXPECT_EQ(s.in_flight, 0u);
            }
        }
        co_await f.close();
    });
}

TEST_F(io_fairness, idle_class_does_not_bank_its_share) {
    // A class that was idle while another ran alone must not then monopolize the disk: after
    // joining it gets its share (here equal), not everything until it "catches up".
    reef::testing::temp_dir d;
    reef::testing::run_in_reactor([&]() -> future<> {
        auto f = co_await make_test_file(d);
        auto a = get_class("bank_a", 200);
        auto b = get_class("bank_b", 200);
        auto buf = allocate_aligned_buffer(65536, f.dma_alignment());
        for (unsigned i = 0; i < 200; ++i) {
            co_await f.dma_read(0, buf.get_write(), buf.size(), a);  // b idle meanwhile
        }
        auto [ba, bb] = co_await compete(f, a, b, 1000ms);
        REEF_ASSERT(ba > 0 && bb > 0);
        EXPECT_NEAR(double(bb) / double(ba), 1.0, 0.25) << "bytes a " << ba << " b " << bb;
        co_await f.close();
    });
}

future<> write_one_block(std::string path, io_priority_class c) {
    auto f = co_await open_file_dma(path, open_flags::rw | open_flags::create);
    auto buf = allocate_aligned_buffer(4096, f.dma_alignment());
    std::memset(buf.get_write(), 1, buf.size());
    co_await f.dma_write(0, buf.get(), buf.size(), c);
    co_await f.close();
}

REEF_SMP_TEST(io_stats, summed_over_shards, 2) {
    reef::testing::temp_dir d;
    auto c = get_class("smp_stats", 100);
    std::string dir = d.path();
    auto done = smp::invoke_on_all([dir, c] { return write_one_block(dir + "/s" + std::to_string(this_shard_id()), c); });
    co_await std::move(done);
    auto all = co_await io_class_stats_all();
    bool found = false;
    for (auto& s : all) {
        if (s.name == "smp_stats") {
            found = true;
            EXPECT_EQ(s.writes, 2u);
            EXPECT_EQ(s.write_bytes, 8192u);
        }
    }
    EXPECT_TRUE(found);
}

// Last: it leaves the class table full for the rest of the process.
TEST(io_priority_class_table, fills_up_with_a_clear_error) {
    // Other tests in this binary create a few classes; fill the rest.
    unsigned made = 0;
    try {
        for (unsigned i = 0; i < io_priority_class::max_classes + 1; ++i) {
            io_priority_class::create("filler_" + std::to_string(i), 1);
            ++made;
        }
        ADD_FAILURE() << "more than max_classes classes";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
    }
    EXPECT_LT(made, io_priority_class::max_classes);
}

}  // namespace
