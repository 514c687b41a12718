#include "runtime/deleter.hh"
#include "runtime/temporary_buffer.hh"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace reef;
using namespace std::string_view_literals;

namespace {

// A buffer over malloc'ed memory whose deleter counts how often it ran (it must run exactly once).
temporary_buffer<char> counted_buffer(std::string_view content, int& deletions) {
    char* p = static_cast<char*>(std::malloc(content.size()));
    std::memcpy(p, content.data(), content.size());
    return temporary_buffer<char>(p, content.size(), make_deleter([p, &deletions] {
        ++deletions;
        std::free(p);
    }));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// deleter

TEST(deleter, runs_once_after_last_share) {
    int runs = 0;
    {
        deleter d = make_deleter([&] { ++runs; });
        EXPECT_TRUE(d);
        deleter s1 = d.share();
        deleter s2 = s1.share();
        d = deleter();  // move-assign an empty one: drops one owner
        EXPECT_EQ(runs, 0);
        s1.reset();
        EXPECT_EQ(runs, 0);
        deleter moved(std::move(s2));
        EXPECT_FALSE(s2);  // NOLINT(bugprone-use-after-move): moved-from deleter is empty
        EXPECT_EQ(runs, 0);
    }
    EXPECT_EQ(runs, 1);
}

TEST(deleter, empty_deleter) {
    deleter d;
    EXPECT_FALSE(d);
    EXPECT_TRUE(d.empty());
    deleter s = d.share();
    EXPECT_FALSE(s);
    EXPECT_TRUE(make_free_deleter(nullptr).empty());
}

TEST(deleter, free_deleter_shares) {
    // ASan checks that the block is freed exactly once, after the last share.
    void* p = std::malloc(64);
    std::memset(p, 0xab, 64);
    deleter d = make_free_deleter(p);
    deleter s = d.share();  // upgrades the allocation-free form to a counted one
    d.reset();
    EXPECT_EQ(static_cast<unsigned char*>(p)[63], 0xab);  // still owned by s
    deleter s2 = s.share();
    s = deleter();
    EXPECT_EQ(static_cast<unsigned char*>(p)[0], 0xab);
}

TEST(deleter, object_deleter_keeps_object_alive) {
    std::string text(1000, 'x');
    const char* data = text.data();
    deleter d = make_object_deleter(std::move(text));
    temporary_buffer<char> b(const_cast<char*>(data), 1000, std::move(d));
    EXPECT_EQ(b[999], 'x');
    auto shared = b.share(10, 5);
    b = temporary_buffer<char>();
    EXPECT_EQ(shared, "xxxxx"sv);  // the string is still alive through the share

    struct counted {
        int* destroyed;
        explicit counted(int* d) : destroyed(d) {}
        counted(counted&& x) noexcept : destroyed(std::exchange(x.destroyed, nullptr)) {}
        ~counted() {
            if (destroyed) {
                ++*destroyed;
            }
        }
    };
    int destroyed = 0;
    {
        deleter od = make_object_deleter(counted(&destroyed));
        deleter os = od.share();
        od.reset();
        EXPECT_EQ(destroyed, 0);
    }
    EXPECT_EQ(destroyed, 1);
}

TEST(deleter, append_runs_both_in_order) {
    std::vector<int> order;
    {
        deleter a = make_deleter([&] { order.push_back(1); });
        a.append(make_deleter([&] { order.push_back(2); }));
        a.append(make_deleter([&] { order.push_back(3); }));
        EXPECT_TRUE(order.empty());
    }
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(deleter, append_to_shared_deleter_does_not_affect_other_owners) {
    std::vector<int> order;
    deleter a = make_deleter([&] { order.push_back(1); });
    deleter other = a.share();
    a.append(make_deleter([&] { order.push_back(2); }));
    // `a` now owns both; `other` only the first. Dropping `a` releases the appended one at once.
    a.reset();
    EXPECT_EQ(order, (std::vector<int>{2}));
    other.reset();
    EXPECT_EQ(order, (std::vector<int>{2, 1}));
}

TEST(deleter, append_free_deleter_and_empty) {
    int runs = 0;
    deleter e;
    e.append(make_deleter([&] { ++runs; }));  // appending to empty adopts it
    EXPECT_TRUE(e);
    e.append(deleter());  // appending nothing changes nothing
    deleter f = make_free_deleter(std::malloc(16));
    f.append(std::move(e));  // the raw free form is upgraded to hold a chain
    EXPECT_EQ(runs, 0);
    f.reset();
    EXPECT_EQ(runs, 1);
}

TEST(deleter, append_same_chain_is_ignored) {
    int runs = 0;
    deleter a = make_deleter([&] { ++runs; });
    a.append(a.share());  // would be a cycle; must be a no-op
    a.reset();
    EXPECT_EQ(runs, 1);
}

// ---------------------------------------------------------------------------------------------
// temporary_buffer

TEST(temporary_buffer, basics) {
    temporary_buffer<char> empty;
    EXPECT_TRUE(empty.empty());
    EXPECT_FALSE(empty);
    EXPECT_EQ(empty.size(), 0u);
    EXPECT_EQ(empty.begin(), empty.end());

    temporary_buffer<char> b(5);
    std::memcpy(b.get_write(), "hello", 5);
    EXPECT_EQ(b.size(), 5u);
    EXPECT_TRUE(b);
    EXPECT_EQ(b[1], 'e');
    EXPECT_EQ(std::string(b.begin(), b.end()), "hello");
    EXPECT_EQ(b, "hello"sv);
    EXPECT_FALSE(b == "hellO"sv);
    EXPECT_EQ(b.get(), b.get_write());
    b[0] = 'j';
    EXPECT_EQ(b, "jello"sv);

    auto c = temporary_buffer<char>::copy_of("jello");
    EXPECT_EQ(b, c);
    EXPECT_NE(b.get(), c.get());
    EXPECT_FALSE(c == temporary_buffer<char>::copy_of("jell"));

    temporary_buffer<char> z(0);
    EXPECT_TRUE(z.empty());
    EXPECT_EQ(z, ""sv);
}

TEST(temporary_buffer, sharing_keeps_memory_alive_until_last_share) {
    int deletions = 0;
    auto b = counted_buffer("0123456789", deletions);
    auto whole = b.share();
    auto mid = b.share(3, 4);
    EXPECT_EQ(mid, "3456"sv);
    EXPECT_EQ(mid.get(), b.get() + 3);  // same memory, no copy
    EXPECT_EQ(whole.get(), b.get());
    // Writes are visible through every share.
    b.get_write()[4] = '#';
    EXPECT_EQ(mid, "3#56"sv);

    b = temporary_buffer<char>();
    EXPECT_EQ(deletions, 0);
    whole = temporary_buffer<char>();
    EXPECT_EQ(deletions, 0);
    auto mid2 = std::move(mid);
    EXPECT_TRUE(mid.empty());  // NOLINT(bugprone-use-after-move): moved-from buffer is empty
    EXPECT_EQ(deletions, 0);
    EXPECT_EQ(mid2, "3#56"sv);
    mid2 = temporary_buffer<char>();
    EXPECT_EQ(deletions, 1);
}

TEST(temporary_buffer, malloc_buffer_shares_are_freed_once) {
    // The size constructor uses the allocation-free free() deleter; sharing must upgrade it.
    // ASan reports a double free or a leak if this goes wrong.
    std::vector<temporary_buffer<char>> shares;
    {
        temporary_buffer<char> b(100);
        std::memset(b.get_write(), 'a', 100);
        for (std::size_t i = 0; i < 10; ++i) {
            shares.push_back(b.share(i * 10, 10));
        }
    }
    for (auto& s : shares) {
        EXPECT_EQ(s, "aaaaaaaaaa"sv);
    }
}

TEST(temporary_buffer, trim_trim_front_prefix) {
    auto b = temporary_buffer<char>::copy_of("abcdefghij");
    const char* base = b.get();
    b.trim_front(2);
    EXPECT_EQ(b, "cdefghij"sv);
    EXPECT_EQ(b.get(), base + 2);
    b.trim(5);
    EXPECT_EQ(b, "cdefg"sv);
    b.trim_front(0);
    b.trim(5);
    EXPECT_EQ(b, "cdefg"sv);
    auto p = std::move(b).prefix(3);
    EXPECT_EQ(p, "cde"sv);
    EXPECT_EQ(p.get(), base + 2);
    EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move): prefix() moves out of the buffer
    p.trim_front(3);
    EXPECT_TRUE(p.empty());
    EXPECT_EQ(p.size(), 0u);
}

TEST(temporary_buffer, share_ranges) {
    auto b = temporary_buffer<char>::copy_of("0123456789");
    EXPECT_EQ(b.share(0, 10), "0123456789"sv);
    EXPECT_EQ(b.share(0, 0), ""sv);
    EXPECT_EQ(b.share(10, 0), ""sv);
    EXPECT_EQ(b.share(9, 1), "9"sv);
    EXPECT_EQ(b.share(2, 3), "234"sv);
    auto s = b.share(2, 6);
    auto ss = s.share(1, 2);  // a share of a share
    EXPECT_EQ(ss, "34"sv);
    EXPECT_EQ(ss.get(), b.get() + 3);
}

TEST(temporary_buffer, clone_is_independent) {
    int deletions = 0;
    auto b = counted_buffer("original", deletions);
    auto c = b.clone();
    EXPECT_EQ(c, b);
    EXPECT_NE(c.get(), b.get());
    c.get_write()[0] = 'O';
    EXPECT_EQ(b, "original"sv);
    EXPECT_EQ(c, "Original"sv);
    b = temporary_buffer<char>();
    EXPECT_EQ(deletions, 1);  // the clone does not keep the original alive
    EXPECT_EQ(c, "Original"sv);
    EXPECT_TRUE(temporary_buffer<char>().clone().empty());
}

TEST(temporary_buffer, release_hands_over_ownership) {
    int deletions = 0;
    auto b = counted_buffer("data", deletions);
    const char* p = b.get();
    deleter d = b.release();
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(b.get(), nullptr);
    EXPECT_EQ(deletions, 0);
    EXPECT_EQ(std::string_view(p, 4), "data");  // still alive: d owns it
    d.reset();
    EXPECT_EQ(deletions, 1);
}

TEST(temporary_buffer, aligned) {
    for (std::size_t align : {1u, 2u, 8u, 16u, 64u, 512u, 4096u}) {
        for (std::size_t size : {0u, 1u, 100u, 4096u, 10000u}) {
            auto b = temporary_buffer<char>::aligned(align, size);
            EXPECT_EQ(b.size(), size);
            EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.get()) % align, 0u) << align << " " << size;
            if (size) {
                std::memset(b.get_write(), 1, size);  // the whole range is writable (ASan checks)
            }
            auto s = b.share();
            b = temporary_buffer<char>();
            EXPECT_EQ(s.size(), size);
        }
    }
    EXPECT_THROW(temporary_buffer<char>::aligned(3, 10), std::invalid_argument);
    EXPECT_THROW(temporary_buffer<char>::aligned(0, 10), std::invalid_argument);
}

TEST(temporary_buffer, construct_from_pointer_and_deleter) {
    static char storage[] = "static bytes";
    int runs = 0;
    temporary_buffer<char> b(storage, 6, make_deleter([&] { ++runs; }));
    EXPECT_EQ(b, "static"sv);
    EXPECT_EQ(b.get(), storage);
    // A buffer may be built over memory owned by another buffer's deleter.
    // Take the pointer before release(): release() empties b, and argument order is unspecified.
    char* p = b.get_write();
    temporary_buffer<char> view(p + 1, 3, b.release());
    EXPECT_EQ(view, "tat"sv);
    EXPECT_EQ(runs, 0);
    view = temporary_buffer<char>();
    EXPECT_EQ(runs, 1);
}

TEST(temporary_buffer, unsigned_char_buffers) {
    temporary_buffer<unsigned char> b(4);
    for (unsigned i = 0; i < 4; ++i) {
        b[i] = static_cast<unsigned char>(0xf0 + i);
    }
    auto s = b.share(1, 2);
    EXPECT_EQ(s[0], 0xf1);
    EXPECT_EQ(s[1], 0xf2);
    auto c = s.clone();
    EXPECT_TRUE(c == s);
}

TEST(temporary_buffer, exclusive_only_while_no_share_is_alive) {
    temporary_buffer<char> b(64);
    EXPECT_TRUE(b.exclusive());  // the allocation-free free() deleter: nobody else can hold it
    {
        auto s = b.share(0, 8);
        EXPECT_FALSE(b.exclusive());
        EXPECT_FALSE(s.exclusive());
    }
    EXPECT_TRUE(b.exclusive());  // the share is gone: the bytes may be rewritten unseen

    // A view owns nothing, so it may never rewrite what it points at.
    temporary_buffer<char> view(b.get_write(), 8, deleter());
    EXPECT_FALSE(view.exclusive());
    EXPECT_FALSE(temporary_buffer<char>().exclusive());
}

TEST(temporary_buffer, exclusive_looks_at_every_link_of_a_chained_deleter) {
    // The memory belongs to the inner deleter; the buffer's own (outer) link is unshared, but
    // someone else still holds the inner one.
    int runs = 0;
    auto inner = make_deleter([&] { ++runs; });
    auto other_owner = inner.share();
    auto outer = make_deleter(std::move(inner), [] {});
    static char storage[16];
    temporary_buffer<char> b(storage, sizeof storage, std::move(outer));
    EXPECT_FALSE(b.exclusive());
    other_owner.reset();
    EXPECT_EQ(runs, 0);
    EXPECT_TRUE(b.exclusive());
    b = temporary_buffer<char>();
    EXPECT_EQ(runs, 1);
}
