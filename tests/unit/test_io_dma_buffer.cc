// allocate_aligned_buffer and its per-thread pool of huge-page chunks (runtime/io/dma_buffer.hh).
#include "runtime/io/dma_buffer.hh"
#include "runtime/io/file.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

using namespace reef;
using reef::io::internal::local_dma_pool_stats;

namespace {

std::uintptr_t addr(const temporary_buffer<char>& b) { return reinterpret_cast<std::uintptr_t>(b.get()); }

TEST(io_dma_buffer, every_size_is_aligned_writable_and_exact) {
    for (std::size_t align : {std::size_t(512), std::size_t(4096), std::size_t(65536)}) {
        for (std::size_t size : {std::size_t(0), std::size_t(1), std::size_t(4096), std::size_t(16383),
                                 std::size_t(16384), std::size_t(16385), std::size_t(131072), std::size_t(2) << 20,
                                 (std::size_t(2) << 20) + 4096, std::size_t(5) << 20}) {
            auto b = allocate_aligned_buffer(size, align);
            EXPECT_EQ(b.size(), size) << "size " << size << " alignment " << align;
            EXPECT_EQ(addr(b) % align, 0u) << "size " << size << " alignment " << align;
            std::memset(b.get_write(), 0x5a, size);
        }
    }
}

TEST(io_dma_buffer, a_bad_alignment_is_refused) {
    EXPECT_THROW(allocate_aligned_buffer(4096, 3000), std::invalid_argument);
    EXPECT_THROW(allocate_aligned_buffer(1 << 20, 0), std::invalid_argument);
}

TEST(io_dma_buffer, blocks_are_reused_and_never_overlap) {
    auto before = local_dma_pool_stats();
    std::uintptr_t first;
    {
        auto b = allocate_aligned_buffer(128 << 10, 4096);
        first = addr(b);
        EXPECT_EQ(local_dma_pool_stats().outstanding, before.outstanding + 1);
    }
    EXPECT_EQ(local_dma_pool_stats().outstanding, before.outstanding);
    {
        // The block just freed is the next one handed out: no new memory per buffer.
        auto b = allocate_aligned_buffer(128 << 10, 4096);
        EXPECT_EQ(addr(b), first);
    }
    // More 64 KiB buffers than one chunk holds: a second chunk, and all distinct and disjoint.
    auto chunks_before = local_dma_pool_stats().chunk_bytes;
    std::vector<temporary_buffer<char>> bufs;
    for (int i = 0; i < 40; ++i) {
        bufs.push_back(allocate_aligned_buffer(64 << 10, 4096));
        std::memset(bufs.back().get_write(), i, bufs.back().size());
    }
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> ranges;
    for (auto& b : bufs) {
        ranges.emplace_back(addr(b), addr(b) + b.size());
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i) {
        EXPECT_LE(ranges[i - 1].second, ranges[i].first);
    }
    for (int i = 0; i < 40; ++i) {
        auto* p = bufs[std::size_t(i)].get();
        EXPECT_TRUE(std::all_of(p, p + (64 << 10), [i](char c) { return c == char(i); })) << "buffer " << i;
    }
    EXPECT_GT(local_dma_pool_stats().chunk_bytes, chunks_before);
    bufs.clear();
    EXPECT_EQ(local_dma_pool_stats().outstanding, before.outstanding);
}

TEST(io_dma_buffer, a_buffer_outlives_the_thread_that_allocated_it) {
    // The thread's pool is orphaned when it exits; the last buffer freed here releases it
    // (ASan/LSan would report a leak or a use after free).
    temporary_buffer<char> kept[2];
    std::thread t([&] {
        kept[0] = allocate_aligned_buffer(256 << 10, 4096);
        kept[1] = allocate_aligned_buffer(4 << 20, 4096);
        std::memset(kept[0].get_write(), 1, kept[0].size());
        std::memset(kept[1].get_write(), 2, kept[1].size());
    });
    t.join();
    EXPECT_EQ(kept[0][100], 1);
    EXPECT_EQ(kept[1][100], 2);
    kept[0] = temporary_buffer<char>();
    kept[1] = temporary_buffer<char>();
}

}  // namespace
