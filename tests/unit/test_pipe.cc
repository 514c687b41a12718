#include "reactor_test.hh"
#include "runtime/pipe.hh"
#include "sync_test_util.hh"

#include <memory>
#include <optional>
#include <vector>

using namespace reef;
using reef::testing::fails_with;
using reef::testing::settle;
using reef::testing::yield_once;

REEF_TEST(pipe, write_then_read_in_order) {
    reef::pipe<int> p(4);
    co_await p.writer.write(1);
    co_await p.writer.write(2);
    auto a = co_await p.reader.read();
    auto b = co_await p.reader.read();
    EXPECT_EQ(a, std::optional<int>(1));
    EXPECT_EQ(b, std::optional<int>(2));
}

REEF_TEST(pipe, read_waits_for_write) {
    reef::pipe<int> p(1);
    auto r = p.reader.read();
    co_await settle(3);
    EXPECT_FALSE(r.available());
    co_await p.writer.write(7);
    EXPECT_EQ(co_await std::move(r), std::optional<int>(7));
}

REEF_TEST(pipe, write_waits_for_room) {
    reef::pipe<int> p(1);
    co_await p.writer.write(1);
    auto w = p.writer.write(2);
    co_await settle(3);
    EXPECT_FALSE(w.available());
    EXPECT_EQ(co_await p.reader.read(), std::optional<int>(1));
    co_await std::move(w);
    EXPECT_EQ(co_await p.reader.read(), std::optional<int>(2));
}

REEF_TEST(pipe, eof_after_writer_destroyed_drains_items_first) {
    reef::pipe<int> p(4);
    co_await p.writer.write(1);
    co_await p.writer.write(2);
    { auto w = std::move(p.writer); }
    EXPECT_EQ(co_await p.reader.read(), std::optional<int>(1));
    EXPECT_EQ(co_await p.reader.read(), std::optional<int>(2));
    EXPECT_EQ(co_await p.reader.read(), std::nullopt);
    EXPECT_EQ(co_await p.reader.read(), std::nullopt);  // stays at end-of-stream
}

REEF_TEST(pipe, eof_wakes_waiting_readers) {
    reef::pipe<int> p(2);
    auto r1 = p.reader.read();
    auto r2 = p.reader.read();
    co_await yield_once();
    p.writer = pipe_writer<int>();
    EXPECT_EQ(co_await std::move(r1), std::nullopt);
    EXPECT_EQ(co_await std::move(r2), std::nullopt);
}

REEF_TEST(pipe, writes_waiting_for_room_are_delivered_before_eof) {
    reef::pipe<int> p(1);
    co_await p.writer.write(1);
    auto w = p.writer.write(2);
    { auto gone = std::move(p.writer); }
    EXPECT_EQ(co_await p.reader.read(), std::optional<int>(1));
    co_await std::move(w);
    EXPECT_EQ(co_await p.reader.read(), std::optional<int>(2));
    EXPECT_EQ(co_await p.reader.read(), std::nullopt);
}

REEF_TEST(pipe, broken_pipe_when_reader_destroyed) {
    reef::pipe<int> p(1);
    co_await p.writer.write(1);
    auto blocked = p.writer.write(2);  // waits for room that will never come
    { auto r = std::move(p.reader); }
    EXPECT_TRUE(co_await fails_with<broken_pipe_exception>(std::move(blocked)));
    EXPECT_TRUE(co_await fails_with<broken_pipe_exception>(p.writer.write(3)));
}

REEF_TEST(pipe, producer_consumer_move_only) {
    reef::pipe<std::unique_ptr<int>> p(2);
    auto producer = [](pipe_writer<std::unique_ptr<int>> w) -> future<> {
        for (int i = 0; i < 50; ++i) {
            co_await w.write(std::make_unique<int>(i));
        }
        // w destroyed here: end-of-stream
    };
    auto prod = producer(std::move(p.writer));
    std::vector<int> got;
    for (;;) {
        auto item = co_await p.reader.read();
        if (!item) {
            break;
        }
        got.push_back(**item);
    }
    co_await std::move(prod);
    REEF_ASSERT(got.size() == 50u);
    for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(got[i], i);
    }
}

REEF_TEST(pipe, ends_freed_in_either_order) {
    // Leaks or double frees here are caught by the ASan build.
    {
        reef::pipe<int> p(1);
        co_await p.writer.write(1);
        { auto r = std::move(p.reader); }
    }
    {
        reef::pipe<int> p(1);
        { auto w = std::move(p.writer); }
        EXPECT_EQ(co_await p.reader.read(), std::nullopt);
    }
}
