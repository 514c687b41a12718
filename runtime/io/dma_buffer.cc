#include "runtime/io/dma_buffer.hh"

#include "runtime/deleter.hh"

#include <sys/mman.h>

#include <array>
#include <cstdint>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>

namespace reef::io::internal {

namespace {

constexpr std::size_t chunk_size = std::size_t(2) << 20;  // one x86-64 huge page
constexpr unsigned min_shift = 14;                        // 16 KiB: below, malloc is as good
constexpr unsigned max_shift = 21;                        // a whole chunk
constexpr unsigned n_classes = max_shift - min_shift + 1;

// `len` bytes (a multiple of chunk_size) of anonymous memory at a chunk_size-aligned address,
// advised as huge pages; nullptr if the system has no address space or memory to give.
char* map_aligned(std::size_t len) noexcept {
    std::size_t over = len + chunk_size;
    void* m = ::mmap(nullptr, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        return nullptr;
    }
    auto base = reinterpret_cast<std::uintptr_t>(m);
    auto start = (base + chunk_size - 1) & ~(chunk_size - 1);
    if (start > base) {
        ::munmap(m, start - base);
    }
    auto end = start + len;
    if (base + over > end) {
        ::munmap(reinterpret_cast<void*>(end), base + over - end);
    }
    // Advice only: with transparent huge pages disabled this is ordinary memory, still correct.
    ::madvise(reinterpret_cast<void*>(start), len, MADV_HUGEPAGE);
    return reinterpret_cast<char*>(start);
}

struct pool {
    std::mutex m;
    // Free blocks per size class. Each list's capacity covers every block ever cut for its class,
    // so giving a block back never reallocates (and cannot throw).
    std::array<std::vector<char*>, n_classes> free;
    std::array<std::size_t, n_classes> carved{};  // blocks ever cut for each class
    std::vector<char*> chunks;
    std::size_t outstanding = 0;
    bool orphaned = false;  // the thread is gone: the last block given back deletes the pool

    ~pool() {
        for (char* c : chunks) {
            ::munmap(c, chunk_size);
        }
    }

    // Under m. nullptr when no chunk can be mapped.
    char* take(unsigned cls) {
        auto& fl = free[cls];
        if (fl.empty()) {
            std::size_t bs = std::size_t(1) << (cls + min_shift);
            std::size_t blocks = chunk_size / bs;
            // Reserve first: once the chunk is mapped nothing may throw.
            chunks.reserve(chunks.size() + 1);
            fl.reserve(carved[cls] + blocks);
            char* c = map_aligned(chunk_size);
            if (!c) {
                return nullptr;
            }
            chunks.push_back(c);
            carved[cls] += blocks;
            // Highest address first, so blocks leave the list in address order.
            for (std::size_t off = chunk_size; off > 0; off -= bs) {
                fl.push_back(c + off - bs);
            }
        }
        char* b = fl.back();
        fl.pop_back();
        ++outstanding;
        return b;
    }
};

void give_back(pool* p, char* b, unsigned cls) noexcept {
    bool last;
    {
        std::lock_guard lk(p->m);
        p->free[cls].push_back(b);
        --p->outstanding;
        last = p->orphaned && p->outstanding == 0;
    }
    if (last) {
        delete p;
    }
}

// The calling thread's pool, created on first use; at thread exit it is deleted at once, or by
// whichever thread frees its last outstanding block.
struct pool_owner {
    pool* p = nullptr;
    pool& get() {
        if (!p) {
            p = new pool;
        }
        return *p;
    }
    ~pool_owner() {
        if (!p) {
            return;
        }
        bool last;
        {
            std::lock_guard lk(p->m);
            p->orphaned = true;
            last = p->outstanding == 0;
        }
        if (last) {
            delete p;
        }
    }
};

thread_local pool_owner t_pool;

unsigned ceil_log2(std::size_t n) noexcept {
    return n <= 1 ? 0 : unsigned(64 - __builtin_clzll(static_cast<unsigned long long>(n - 1)));
}

}  // namespace

temporary_buffer<char> allocate_dma_buffer(std::size_t size, std::size_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
        throw std::invalid_argument("DMA buffer alignment must be a power of two");
    }
    std::size_t need = std::max(size, alignment);
    if (need < (std::size_t(1) << min_shift) || alignment > chunk_size) {
        return temporary_buffer<char>::aligned(alignment, size);
    }
    unsigned shift = ceil_log2(need);
    if (shift > max_shift) {
        // Mapped on its own, in whole chunks.
        std::size_t len = (size + chunk_size - 1) & ~(chunk_size - 1);
        char* c = map_aligned(len);
        if (!c) {
            return temporary_buffer<char>::aligned(alignment, size);
        }
        try {
            return temporary_buffer<char>(c, size, make_deleter([c, len] { ::munmap(c, len); }));
        } catch (...) {
            ::munmap(c, len);
            throw;
        }
    }
    unsigned cls = shift - min_shift;
    pool& p = t_pool.get();
    char* b;
    {
        std::lock_guard lk(p.m);
        b = p.take(cls);
    }
    if (!b) {
        return temporary_buffer<char>::aligned(alignment, size);
    }
    pool* pp = &p;
    try {
        return temporary_buffer<char>(b, size, make_deleter([pp, b, cls] { give_back(pp, b, cls); }));
    } catch (...) {
        give_back(pp, b, cls);
        throw;
    }
}

dma_pool_stats local_dma_pool_stats() noexcept {
    dma_pool_stats s;
    pool* p = t_pool.p;
    if (!p) {
        return s;
    }
    std::lock_guard lk(p->m);
    s.chunk_bytes = p->chunks.size() * chunk_size;
    for (auto& fl : p->free) {
        s.free_blocks += fl.size();
    }
    s.outstanding = p->outstanding;
    return s;
}

}  // namespace reef::io::internal
