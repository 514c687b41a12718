// Reef's per-shard memory allocator.
//
// Every thread that allocates through this API owns an arena: a 64 GiB slice of one large virtual
// address reservation made on first use (PROT_NONE, MAP_NORESERVE; pages are committed as the
// arena grows). The arena of any pointer is computed from its address, so small objects carry no
// header. Shard threads get their arena at their first allocation, so it is local to the CPU they
// were pinned to; other threads (the syscall pool, plain std::threads) get arenas the same way.
// When a thread exits its arena is orphaned with its contents intact and handed to the next thread
// that needs one. When all 63 private arenas are owned by live threads, further threads share one
// fallback arena behind a mutex (correct, but slower: such programs should have fewer threads).
//
// Layout of an arena: metadata (the arena header, one 48-byte descriptor per 64 KiB chunk), then
// data chunks. Sizes up to max_small_size are rounded to one of 36 size classes (16-byte steps up
// to 128 B, then four classes per power of two) and carved from one-chunk spans; each span keeps
// its own free list, and the arena keeps the current span of each class, so allocating or freeing
// a small object on its owner thread touches no lock and no atomic. Larger allocations take a run
// of whole chunks from the arena's chunk allocator (boundary-tag coalescing; runs of 4 MiB and more
// are returned to the kernel with madvise when freed) and are charged page-rounded.
//
// A free of memory owned by another arena (a cross-shard free) is pushed onto the owner's
// lock-free multi-producer list; a thread that polls (calls drain_remote_frees()) batches these
// pushes per owner and publishes them from its poller, at 64 per owner, or at its next allocation
// slow path, whichever comes first. The owner takes the list back on its allocation slow path and from its reactor
// poller (drain_remote_frees(), called by smp's poller), so the memory returns to the shard it
// belongs to. Remote frees to an orphaned arena wait there for its next owner.
//
// Budget: configure() gives every arena the same byte budget (the --memory value split evenly over
// the shards). Chunks in use (small spans and large allocations) count against it; cached free
// chunks do not. An allocation that would exceed it first takes back remote frees, then calls the
// reclaimers registered on that thread (the LSA registers one), and fails if still over: the C++
// API throws std::bad_alloc, malloc returns nullptr with errno ENOMEM. Failure never changes any
// existing allocation.
//
// NUMA: with libnuma, bind_to_local_numa_node() (called by each shard at start-up) makes the
// kernel prefer the node of the shard's CPUs for its arena, when the machine has more than one
// node and the thread is pinned within one node; otherwise it does nothing.
//
// With -Dallocator=reef, runtime/memory_override.cc routes malloc, free, calloc, realloc,
// posix_memalign, aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size and operator
// new/delete to this allocator (REEF_ALLOCATOR_REEF is then defined for code built against the
// runtime). In the default system build the API below works the same on its own arenas, and
// malloc stays glibc's (ASan and UBSan builds use that configuration).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

namespace reef::memory {

/// Largest size served from the size classes; larger requests take whole 64 KiB chunks.
inline constexpr std::size_t max_small_size = 16384;
/// The smallest budget per shard configure() accepts.
inline constexpr std::size_t min_shard_memory = std::size_t(32) << 20;

/// Allocate `size` bytes aligned to 16 from the calling thread's arena (size 0 gives a unique
/// minimal block). Throws std::bad_alloc when the shard's budget is exceeded after reclaim, or the
/// address space or the kernel's memory is exhausted; nothing is allocated then.
void* allocate(std::size_t size);
/// Same, aligned to `align`, which must be a power of two (std::invalid_argument otherwise).
void* allocate_aligned(std::size_t align, std::size_t size);
/// allocate() that returns nullptr instead of throwing.
void* try_allocate(std::size_t size) noexcept;
/// allocate_aligned() that returns nullptr on failure or a bad alignment.
void* try_allocate_aligned(std::size_t align, std::size_t size) noexcept;

/// Free a block from allocate*() or reallocate(), from any thread (nullptr does nothing). A block
/// owned by another arena is queued back to its owner. A pointer that this allocator did not hand
/// out aborts the process with a message (it is a memory-corruption bug).
void free(void* ptr) noexcept;
/// Same; `size` is the size that was requested (only checked in debug builds).
void free(void* ptr, std::size_t size) noexcept;

/// Bytes usable at `ptr` (at least the requested size; 0 for nullptr). Callable from any thread
/// while the block is live.
std::size_t usable_size(void* ptr) noexcept;

/// Resize a block, keeping its contents up to the smaller size. nullptr allocates; size 0 frees
/// `ptr` and returns nullptr. The block may move (always into the calling thread's arena when it
/// moves). Throws std::bad_alloc on failure, and `ptr` is then left untouched.
void* reallocate(void* ptr, std::size_t size);
/// reallocate() that returns nullptr on failure (leaving `ptr` untouched).
void* try_reallocate(void* ptr, std::size_t size) noexcept;

/// The arena that owns `ptr` (0 .. 63), or -1 if this allocator did not hand it out.
int arena_of(const void* ptr) noexcept;

/// Statistics of one arena.
struct statistics {
    int arena = -1;                          ///< the arena's index; -1 if the thread has none yet
    std::size_t allocated = 0;               ///< bytes in live blocks (class or page-rounded sizes)
    std::size_t free_cached = 0;             ///< bytes kept for reuse: free blocks in spans, free chunks
    std::size_t in_use = 0;                  ///< bytes charged against the budget (spans + large)
    std::size_t budget = 0;                  ///< this arena's budget; 0 means unlimited
    std::uint64_t cross_shard_frees = 0;     ///< blocks freed by other threads and taken back here
    std::uint64_t remote_frees_sent = 0;     ///< blocks of other arenas this thread freed
    std::uint64_t large_allocations = 0;     ///< allocations above max_small_size
    std::uint64_t reclaims = 0;              ///< reclaimer calls made under budget pressure
    std::size_t reclaimed_bytes = 0;         ///< bytes the reclaimers reported freeing
    std::uint64_t failed_allocations = 0;    ///< allocations refused (budget or system)
};
/// The calling thread's arena (for a shard: the shard's). Walks the arena's chunk descriptors, so
/// it costs O(chunks in use): fine for metrics and tests, not for a hot path. A thread without an
/// arena (it never allocated through this allocator) gets zeros and arena == -1.
statistics stats() noexcept;

/// Split `total_bytes` evenly over `shards` and make the share every arena's budget. Throws
/// std::invalid_argument, naming the values, if shards is 0 or a share is below
/// min_shard_memory. Arenas already above the new budget keep their memory; their next chunk
/// allocations go through reclaim.
void configure(std::size_t total_bytes, unsigned shards);
/// Remove the budget (the default): only the address space and the kernel limit allocations.
void remove_budget() noexcept;
/// The current per-arena budget; 0 when unlimited.
std::size_t shard_budget() noexcept;

namespace internal {
struct reclaimer_node;
}

/// Keeps a reclaimer registered; destroying it (or unregister()) removes the reclaimer. Must be
/// destroyed on the thread that registered it (a reclaimer belongs to that thread's arena). If that
/// thread exited first, destroying it only frees the registration.
class reclaimer_registration {
    internal::reclaimer_node* _node = nullptr;

public:
    reclaimer_registration() noexcept = default;
    explicit reclaimer_registration(internal::reclaimer_node* n) noexcept : _node(n) {}
    reclaimer_registration(reclaimer_registration&& o) noexcept : _node(o._node) { o._node = nullptr; }
    reclaimer_registration& operator=(reclaimer_registration&& o) noexcept;
    reclaimer_registration(const reclaimer_registration&) = delete;
    reclaimer_registration& operator=(const reclaimer_registration&) = delete;
    ~reclaimer_registration() { unregister(); }
    void unregister() noexcept;
    explicit operator bool() const noexcept { return _node != nullptr; }
};

/// Register `fn` to be called on this thread when one of its allocations would exceed the
/// budget. It receives how many bytes are wanted and returns how many it freed (through free(),
/// in this thread's arena). Reclaimers run in registration order, inside the failing allocation;
/// they may allocate, but an allocation made while reclaiming does not reclaim again (it fails if
/// over budget). An exception from a reclaimer counts as 0 bytes freed. Throws std::runtime_error
/// if the calling thread has no private arena (more than 63 threads alive).
[[nodiscard]] reclaimer_registration register_reclaimer(std::function<std::size_t(std::size_t wanted)> fn);

/// Take back the blocks other threads freed into this thread's arena, and publish the remote
/// frees this thread batched. Returns true if there was anything to do. Never allocates. smp's
/// poller calls it on every shard; the first call also makes this thread batch its remote frees
/// from then on (they are published by the next call, at 64 per owner, or at the thread's next
/// allocation slow path), so call it only from a thread that keeps calling it.
bool drain_remote_frees() noexcept;
/// Whether drain_remote_frees() would find work (no side effects; for a poller's pure_poll).
bool has_remote_frees() noexcept;

/// Return the calling thread's free chunks to the kernel (madvise DONTNEED); they stay reserved
/// and are reused on demand. Returns the bytes released. malloc_trim() calls it in the reef build.
std::size_t release_free_memory() noexcept;

/// NUMA placement for the calling shard: when built with libnuma, the machine has more than one
/// node and the thread's CPU affinity lies within one node, the thread's arena (now, or when it is
/// created) prefers that node (mbind MPOL_PREFERRED, moving pages already touched). Returns true if
/// it bound. smp calls it on every shard at start-up.
bool bind_to_local_numa_node() noexcept;

/// True when malloc and operator new are this allocator (built with -Dallocator=reef).
bool is_malloc_replaced() noexcept;

}  // namespace reef::memory
