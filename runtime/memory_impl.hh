// Internals of the Reef allocator (runtime/memory.hh describes the design): the arena layout and
// the inline fast paths shared by memory.cc and memory_override.cc, so malloc and operator new
// inline them instead of paying a second call. Not part of the public API.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace reef::memory::internal {

inline constexpr unsigned arena_shift = 36;  // 64 GiB per arena
inline constexpr std::uintptr_t arena_bytes = std::uintptr_t(1) << arena_shift;
inline constexpr std::uintptr_t arena_offset_mask = arena_bytes - 1;
inline constexpr unsigned max_arenas = 64;  // the last one is the shared, locked fallback
inline constexpr unsigned chunk_shift = 16;  // 64 KiB
inline constexpr std::size_t chunk_bytes = std::size_t(1) << chunk_shift;
inline constexpr std::uint32_t chunks_per_arena = std::uint32_t(1) << (arena_shift - chunk_shift);
inline constexpr std::size_t page_bytes = 4096;
inline constexpr std::size_t max_small = 16384;
inline constexpr unsigned num_classes = 36;

// Size classes: 16..128 by 16, then four per power of two up to 16 KiB. Every class is a multiple
// of 16, and every power of two among them aligns its blocks to itself (spans are chunk-aligned),
// which allocate_aligned() relies on.
constexpr std::size_t compute_class_size(unsigned c) {
    if (c < 8) {
        return 16 * (c + 1);
    }
    unsigned k = 7 + (c - 8) / 4;  // 2^k < size <= 2^(k+1)
    unsigned j = (c - 8) % 4;
    return (std::size_t(1) << k) + (std::size_t(j) + 1) * (std::size_t(1) << (k - 2));
}

struct class_tables {
    std::uint32_t size[num_classes];
    std::uint32_t span_end[num_classes];  // bytes of the span usable for blocks
    std::uint8_t by_granule[65];          // class of sizes up to 1024, indexed by (n + 15) / 16
};

constexpr class_tables make_class_tables() {
    class_tables t{};
    for (unsigned c = 0; c < num_classes; ++c) {
        t.size[c] = std::uint32_t(compute_class_size(c));
        t.span_end[c] = std::uint32_t(chunk_bytes / t.size[c] * t.size[c]);
    }
    for (unsigned g = 0; g <= 64; ++g) {
        std::size_t n = g == 0 ? 1 : g * 16;
        unsigned c = 0;
        while (t.size[c] < n) {
            ++c;
        }
        t.by_granule[g] = std::uint8_t(c);
    }
    return t;
}

inline constexpr class_tables classes = make_class_tables();
static_assert(classes.size[num_classes - 1] == max_small);

/// The class of a size in 1..max_small (0 is treated as 1).
inline unsigned size_class(std::size_t n) noexcept {
    if (n <= 1024) {
        return classes.by_granule[(n + 15) >> 4];
    }
    unsigned k = 63 - unsigned(__builtin_clzll(n - 1));
    return 8 + (k - 7) * 4 + unsigned((n - 1) >> (k - 2)) - 4;
}

struct block {
    block* next;
};

enum class chunk_kind : std::uint8_t {
    none = 0,   // metadata or never used (beyond the arena's top)
    small,      // a span of one size class
    large,      // first chunk of a large allocation
    used_tail,  // last chunk of a multi-chunk large allocation
    free_run,   // first or last chunk of a free run (both carry the run length)
};

// One per 64 KiB chunk of an arena. For a small span (always one chunk) it holds the span's state;
// for runs (large allocations, free runs) the first and last descriptors are the boundary tags.
struct span {
    block* free;       // small: free blocks
    span* prev;        // small: avail list; free_run: bin list
    span* next;
    std::size_t size;  // large: page-rounded size
    std::uint32_t used;     // small: live blocks
    std::uint32_t bump;     // small: offset of the first never-carved block
    std::uint32_t nchunks;  // large, free_run: run length
    chunk_kind kind;
    std::uint8_t cls;
    bool listed;  // small: in the avail list; free_run: in a bin
    std::uint8_t pad;
};
static_assert(sizeof(span) == 48);

// Runs of up to 64 chunks have an exact bin each; longer runs one bin per power of two.
inline constexpr unsigned exact_bins = 64;
inline constexpr unsigned num_bins = exact_bins + (arena_shift - chunk_shift) - 6 + 1;

// Remote frees batched for one owner arena by a polling thread.
struct outgoing_list {
    block* head;
    block* tail;
    std::uint32_t count;
};

struct reclaimer_node;

struct arena {
    span* cur[num_classes];    // the span each class allocates from
    span* avail[num_classes];  // spans with free blocks, other than cur
    span* bins[num_bins];      // free runs
    std::uint64_t bin_mask[2];
    std::uint32_t index;
    std::uint32_t top;         // first chunk never used
    std::uint32_t committed;   // chunks below this are readable and writable
    std::size_t desc_committed;  // bytes of the descriptor array that are committed
    std::size_t in_use;        // bytes charged against the budget
    bool in_reclaim;
    bool buffer_remote;        // this thread polls: batch its remote frees
    std::uint64_t outgoing_mask;
    outgoing_list outgoing[max_arenas];
    reclaimer_node* reclaimers;
    reclaimer_node* reclaim_cursor;  // next reclaimer to call; kept valid across unregistration
    // Statistics the arena keeps itself; stats() computes the byte counts by walking descriptors.
    std::uint64_t cross_shard_frees;
    std::uint64_t remote_frees_sent;
    std::uint64_t large_allocations;
    std::uint64_t reclaims;
    std::size_t reclaimed_bytes;
    std::uint64_t failed_allocations;
    // Written by other threads: on its own cache line.
    alignas(64) std::atomic<block*> remote;
    char pad_after_remote[64 - sizeof(std::atomic<block*>)];
};

inline constexpr std::size_t desc_offset = 65536;
static_assert(sizeof(arena) <= desc_offset);
inline constexpr std::uint32_t first_data_chunk =
    std::uint32_t((desc_offset + std::size_t(chunks_per_arena) * sizeof(span) + chunk_bytes - 1) / chunk_bytes);

inline span* descriptors(arena* a) noexcept {
    return reinterpret_cast<span*>(reinterpret_cast<char*>(a) + desc_offset);
}
inline span* descriptor_of(arena* a, std::uintptr_t p) noexcept {
    return descriptors(a) + ((p & arena_offset_mask) >> chunk_shift);
}
inline char* chunk_address(arena* a, std::uint32_t idx) noexcept {
    return reinterpret_cast<char*>(a) + (std::size_t(idx) << chunk_shift);
}

// A span's current-class sentinel: never has free blocks, so the fast path falls through.
extern constinit span empty_span;

// The calling thread's private arena, or nullptr (none yet, or using the shared one).
extern constinit thread_local arena* tl_arena __attribute__((tls_model("initial-exec")));

void* allocate_slow(std::size_t n) noexcept;
void free_slow(void* p) noexcept;
void small_free_transition(arena* a, span* s) noexcept;

[[gnu::always_inline]] inline void* allocate_fast(std::size_t n) noexcept {
    arena* a = tl_arena;
    if (__builtin_expect(a != nullptr && n <= max_small, 1)) {
        span* s = a->cur[size_class(n)];
        block* b = s->free;
        if (__builtin_expect(b != nullptr, 1)) {
            s->free = b->next;
            ++s->used;
            return b;
        }
    }
    return allocate_slow(n);
}

// Pointers of other arenas go to the owner; pointers this allocator did not hand out go to
// foreign_free().
[[gnu::always_inline]] inline void free_fast(void* p) noexcept {
    arena* a = tl_arena;
    auto addr = reinterpret_cast<std::uintptr_t>(p);
    if (__builtin_expect((addr & ~arena_offset_mask) == reinterpret_cast<std::uintptr_t>(a) && a != nullptr, 1)) {
        span* s = descriptor_of(a, addr);
        if (__builtin_expect(s->kind == chunk_kind::small, 1)) {
            auto* b = static_cast<block*>(p);
            block* f = s->free;
            b->next = f;
            s->free = b;
            std::uint32_t used = --s->used;
            // The span was exhausted (it may need listing) or is now empty (it may go back).
            if (__builtin_expect(f == nullptr || used == 0, 0)) {
                small_free_transition(a, s);
            }
            return;
        }
    }
    free_slow(p);
}

/// Called for a pointer outside the reservation: aborts, unless the malloc override is linked
/// (then it goes to glibc's free: it came from __libc_malloc).
void foreign_free(void* p) noexcept;
/// True when memory_override.cc is linked (a weak default in memory.cc says false).
bool override_linked() noexcept;
/// Is `p` inside the reservation? (false before the allocator is initialized)
bool owns(const void* p) noexcept;
/// usable size of an owned pointer.
std::size_t owned_usable_size(const void* p) noexcept;
/// Aligned allocation; `align` a power of two. `zeroed` (optional) is set when the memory is known
/// to be zero (fresh chunks), so calloc can skip clearing it.
void* allocate_aligned_nothrow(std::size_t align, std::size_t n, bool* zeroed) noexcept;
void* allocate_zeroed(std::size_t n) noexcept;
void* reallocate_nothrow(void* p, std::size_t n) noexcept;

}  // namespace reef::memory::internal
