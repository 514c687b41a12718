// The Reef allocator core: reservation, arenas, size classes, the chunk allocator, remote frees,
// budget and reclaim. runtime/memory.hh describes the design.
//
// Everything here may run inside malloc (in the reef build), so nothing below the public API
// allocates, throws or takes a lock other than the shared arena's mutex; process-wide state is
// constant-initialized, because malloc is called before any constructor runs.
#include "runtime/memory.hh"

#include "runtime/memory_impl.hh"

#include <fmt/format.h>

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#ifdef REEF_HAVE_NUMA
#include <numa.h>
#include <numaif.h>
#endif

namespace reef::memory::internal {

constinit span empty_span{};
constinit thread_local arena* tl_arena __attribute__((tls_model("initial-exec"))) = nullptr;

struct reclaimer_node {
    std::function<std::size_t(std::size_t)> fn;
    reclaimer_node* prev = nullptr;
    reclaimer_node* next = nullptr;
    arena* owner = nullptr;
};

namespace {

enum class thread_mode : std::uint8_t {
    none,    // has not allocated yet
    owner,   // owns tl_arena
    shared,  // uses the shared arena (no private one was free, or the thread is exiting)
};
constinit thread_local thread_mode tl_mode __attribute__((tls_model("initial-exec"))) = thread_mode::none;
// The NUMA node bind_to_local_numa_node() chose before the thread had an arena.
constinit thread_local int tl_numa_node = -1;

enum arena_state : int { unused = 0, owned = 1, orphaned = 2 };
enum init_state : int { not_started = 0, in_progress = 1, ready = 2, failed = 3 };

constinit std::atomic<int> g_init{not_started};
constinit std::atomic<std::uintptr_t> g_base{0};
constinit std::atomic<unsigned> g_num_arenas{0};
constinit std::atomic<unsigned> g_next_fresh{0};
constinit std::atomic<int> g_arena_state[max_arenas] = {};
constinit std::atomic<std::size_t> g_budget{0};
constinit std::atomic<bool> g_atfork_registered{false};
constinit std::atomic<bool> g_have_exit_key{false};
pthread_key_t g_exit_key;
pthread_mutex_t g_shared_mutex = PTHREAD_MUTEX_INITIALIZER;
bool g_shared_ready = false;  // guarded by g_shared_mutex

constexpr std::size_t madvise_on_free = std::size_t(4) << 20;
constexpr std::uint32_t outgoing_batch = 64;

[[noreturn]] void die(const char* what, const void* p) noexcept {
    char buf[256];
    int n = std::snprintf(buf, sizeof(buf), "reef::memory: %s (%p)\n", what, p);
    if (n > 0) {
        auto r = ::write(2, buf, std::size_t(std::min(n, int(sizeof(buf) - 1))));
        (void)r;
    }
    std::abort();
}

constexpr std::size_t round_up(std::size_t n, std::size_t to) noexcept { return (n + to - 1) & ~(to - 1); }

inline arena* arena_at(std::uintptr_t base, unsigned i) noexcept {
    return reinterpret_cast<arena*>(base + (std::uintptr_t(i) << arena_shift));
}
inline std::uint32_t index_of(arena* a, span* d) noexcept { return std::uint32_t(d - descriptors(a)); }

// ---- process-wide initialization ----------------------------------------------------------

void thread_exit(void* v) noexcept;

// Reserve max_arenas * 64 GiB, aligned to 64 GiB; fewer arenas if the address space is limited.
bool reserve() noexcept {
    for (unsigned n = max_arenas; n >= 2; n /= 2) {
        std::size_t len = std::size_t(n + 1) * arena_bytes;
        void* m = ::mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            continue;
        }
        auto start = reinterpret_cast<std::uintptr_t>(m);
        std::uintptr_t aligned = (start + arena_offset_mask) & ~arena_offset_mask;
        std::uintptr_t end = start + len;
        std::uintptr_t want_end = aligned + std::uintptr_t(n) * arena_bytes;
        if (aligned > start) {
            ::munmap(m, aligned - start);
        }
        if (end > want_end) {
            ::munmap(reinterpret_cast<void*>(want_end), end - want_end);
        }
        g_num_arenas.store(n, std::memory_order_relaxed);
        g_base.store(aligned, std::memory_order_relaxed);
        return true;
    }
    return false;
}

bool ensure_init() noexcept {
    int s = g_init.load(std::memory_order_acquire);
    if (s == ready) {
        return true;
    }
    if (s == failed) {
        return false;
    }
    int expected = not_started;
    if (g_init.compare_exchange_strong(expected, in_progress, std::memory_order_acq_rel)) {
        bool ok = reserve();
        // Without the key, exiting threads keep their arenas (memory stays valid; it is only not
        // recycled), so a failure here is not fatal.
        if (ok && ::pthread_key_create(&g_exit_key, thread_exit) == 0) {
            g_have_exit_key.store(true, std::memory_order_relaxed);
        }
        g_init.store(ok ? ready : failed, std::memory_order_release);
        return ok;
    }
    while ((s = g_init.load(std::memory_order_acquire)) == in_progress) {
        ::sched_yield();
    }
    return s == ready;
}

void atfork_prepare() noexcept { ::pthread_mutex_lock(&g_shared_mutex); }
void atfork_release() noexcept { ::pthread_mutex_unlock(&g_shared_mutex); }

// ---- arenas -------------------------------------------------------------------------------

arena* init_arena(unsigned i) noexcept {
    arena* a = arena_at(g_base.load(std::memory_order_relaxed), i);
    if (::mprotect(a, round_up(sizeof(arena), page_bytes), PROT_READ | PROT_WRITE) != 0) {
        return nullptr;
    }
    ::new (static_cast<void*>(a)) arena();
    for (auto& c : a->cur) {
        c = &empty_span;
    }
    a->index = i;
    a->top = first_data_chunk;
    a->committed = first_data_chunk;
    return a;
}

bool bind_arena(arena* a, int node) noexcept {
#ifdef REEF_HAVE_NUMA
    constexpr unsigned long words = 16;  // 1024 nodes
    unsigned long mask[words] = {};
    if (node < 0 || unsigned(node) >= words * 64) {
        return false;
    }
    mask[unsigned(node) / 64] |= 1UL << (unsigned(node) % 64);
    return ::syscall(SYS_mbind, a, arena_bytes, MPOL_PREFERRED, mask, words * 64 + 1, MPOL_MF_MOVE) == 0;
#else
    (void)a;
    (void)node;
    return false;
#endif
}

// Give the calling thread an arena: an orphaned one first (its contents and pending remote frees
// come with it), else a fresh one. nullptr: the thread uses the shared arena (or nothing works).
arena* attach_thread() noexcept {
    if (tl_mode != thread_mode::none) {
        return tl_arena;
    }
    if (!ensure_init()) {
        return nullptr;
    }
    unsigned priv = g_num_arenas.load(std::memory_order_relaxed) - 1;
    arena* a = nullptr;
    for (unsigned i = 0; i < priv && !a; ++i) {
        int s = orphaned;
        if (g_arena_state[i].load(std::memory_order_relaxed) == orphaned &&
            g_arena_state[i].compare_exchange_strong(s, owned, std::memory_order_acquire)) {
            a = arena_at(g_base.load(std::memory_order_relaxed), i);
        }
    }
    if (!a) {
        unsigned i = g_next_fresh.fetch_add(1, std::memory_order_relaxed);
        if (i < priv) {
            a = init_arena(i);
            if (a) {
                g_arena_state[i].store(owned, std::memory_order_relaxed);
            }
        }
    }
    if (!a) {
        tl_mode = thread_mode::shared;
        return nullptr;
    }
    tl_arena = a;
    tl_mode = thread_mode::owner;
    // These may allocate; the thread's arena already serves them.
    if (g_have_exit_key.load(std::memory_order_relaxed)) {
        ::pthread_setspecific(g_exit_key, a);
    }
    if (!g_atfork_registered.exchange(true, std::memory_order_relaxed)) {
        ::pthread_atfork(atfork_prepare, atfork_release, atfork_release);
    }
    if (tl_numa_node >= 0) {
        bind_arena(a, tl_numa_node);
    }
    return a;
}

// Runs f(shared arena) under the shared arena's mutex.
template <typename Func>
auto with_shared_arena(Func&& f) noexcept {
    ::pthread_mutex_lock(&g_shared_mutex);
    unsigned shared = g_num_arenas.load(std::memory_order_relaxed) - 1;
    if (!g_shared_ready) {
        g_shared_ready = init_arena(shared) != nullptr;
    }
    arena* a = g_shared_ready ? arena_at(g_base.load(std::memory_order_relaxed), shared) : nullptr;
    auto r = f(a);
    ::pthread_mutex_unlock(&g_shared_mutex);
    return r;
}

// ---- chunk allocator ----------------------------------------------------------------------

bool commit_chunks(arena* a, std::uint32_t upto) noexcept {
    if (upto <= a->committed) {
        return true;
    }
    std::uint32_t used = a->committed - first_data_chunk;
    std::uint32_t step = std::max<std::uint32_t>(32, std::min<std::uint32_t>(1024, used / 8));
    std::uint32_t target = std::min(chunks_per_arena, std::max(upto, a->committed + step));
    // Descriptors up to and including `target`: the neighbour check reads the one at the top.
    std::size_t ndesc = std::min<std::size_t>(std::size_t(target) + 1, chunks_per_arena);
    std::size_t desc_need = round_up(ndesc * sizeof(span), page_bytes);
    if (desc_need > a->desc_committed) {
        char* d = reinterpret_cast<char*>(descriptors(a));
        if (::mprotect(d + a->desc_committed, desc_need - a->desc_committed, PROT_READ | PROT_WRITE) != 0) {
            return false;
        }
        a->desc_committed = desc_need;
    }
    if (::mprotect(chunk_address(a, a->committed), std::size_t(target - a->committed) << chunk_shift,
                   PROT_READ | PROT_WRITE) != 0) {
        return false;
    }
    a->committed = target;
    return true;
}

unsigned bin_of(std::uint32_t n) noexcept {
    if (n <= exact_bins) {
        return n - 1;
    }
    return exact_bins + unsigned(31 - __builtin_clz(n)) - 6;
}

void bin_insert(arena* a, span* d) noexcept {
    unsigned b = bin_of(d->nchunks);
    d->prev = nullptr;
    d->next = a->bins[b];
    if (d->next) {
        d->next->prev = d;
    }
    a->bins[b] = d;
    a->bin_mask[b / 64] |= std::uint64_t(1) << (b % 64);
    d->listed = true;
}

void bin_remove(arena* a, span* d) noexcept {
    unsigned b = bin_of(d->nchunks);
    if (d->prev) {
        d->prev->next = d->next;
    } else {
        a->bins[b] = d->next;
    }
    if (d->next) {
        d->next->prev = d->prev;
    }
    if (!a->bins[b]) {
        a->bin_mask[b / 64] &= ~(std::uint64_t(1) << (b % 64));
    }
    d->listed = false;
}

int first_bin_from(arena* a, unsigned from) noexcept {
    for (unsigned w = from / 64; w < 2; ++w) {
        std::uint64_t m = a->bin_mask[w];
        if (w == from / 64) {
            m &= ~std::uint64_t(0) << (from % 64);
        }
        if (m) {
            return int(w * 64 + unsigned(__builtin_ctzll(m)));
        }
    }
    return -1;
}

void make_free_run(arena* a, std::uint32_t i, std::uint32_t n) noexcept {
    span* ds = descriptors(a);
    span* d = &ds[i];
    d->kind = chunk_kind::free_run;
    d->nchunks = n;
    if (n > 1) {
        span* t = &ds[i + n - 1];
        t->kind = chunk_kind::free_run;
        t->nchunks = n;
        t->listed = false;
    }
    bin_insert(a, d);
}

// Return chunks [i, i+n) to the free runs, merging with free neighbours.
void free_chunks(arena* a, std::uint32_t i, std::uint32_t n) noexcept {
    span* ds = descriptors(a);
    if (i > first_data_chunk && ds[i - 1].kind == chunk_kind::free_run) {
        std::uint32_t m = ds[i - 1].nchunks;
        bin_remove(a, &ds[i - m]);
        i -= m;
        n += m;
    }
    if (i + n < a->top && ds[i + n].kind == chunk_kind::free_run) {
        std::uint32_t m = ds[i + n].nchunks;
        bin_remove(a, &ds[i + n]);
        n += m;
    }
    make_free_run(a, i, n);
}

// Take n chunks: best fit among the exact bins, first fit in a power-of-two bin, else the top.
// Returns the first chunk's index, 0 on failure. `fresh`: the chunks were never used (zero).
std::uint32_t take_run(arena* a, std::uint32_t n, bool& fresh) noexcept {
    fresh = false;
    span* found = nullptr;
    unsigned b = bin_of(n);
    if (b >= exact_bins) {
        for (span* d = a->bins[b]; d; d = d->next) {
            if (d->nchunks >= n) {
                found = d;
                break;
            }
        }
        ++b;
    }
    if (!found) {
        int nb = first_bin_from(a, b);
        if (nb >= 0) {
            found = a->bins[nb];
        }
    }
    if (found) {
        std::uint32_t i = index_of(a, found);
        std::uint32_t m = found->nchunks;
        bin_remove(a, found);
        if (m > n) {
            make_free_run(a, i + n, m - n);
        }
        return i;
    }
    if (chunks_per_arena - a->top < n || !commit_chunks(a, a->top + n)) {
        return 0;
    }
    std::uint32_t i = a->top;
    a->top += n;
    fresh = true;
    return i;
}

// ---- budget and reclaim -------------------------------------------------------------------

bool drain_remote(arena* a) noexcept;

std::size_t call_reclaimer(reclaimer_node* r, std::size_t wanted) noexcept {
    try {
        return r->fn(wanted);
    } catch (...) {
        return 0;
    }
}

bool fits(arena* a, std::size_t bytes) noexcept {
    std::size_t limit = g_budget.load(std::memory_order_relaxed);
    return limit == 0 || a->in_use + bytes <= limit;
}

[[gnu::noinline]] bool charge_over_budget(arena* a, std::size_t bytes) noexcept {
    // Blocks other shards freed may empty spans here; that costs nothing to take back.
    if (a->remote.load(std::memory_order_relaxed)) {
        drain_remote(a);
    }
    if (!fits(a, bytes) && !a->in_reclaim && a->reclaimers) {
        a->in_reclaim = true;
        for (int round = 0; round < 16 && !fits(a, bytes); ++round) {
            std::size_t before = a->in_use;
            a->reclaim_cursor = a->reclaimers;
            while (a->reclaim_cursor && !fits(a, bytes)) {
                reclaimer_node* r = a->reclaim_cursor;
                a->reclaim_cursor = r->next;
                std::size_t limit = g_budget.load(std::memory_order_relaxed);
                std::size_t wanted = a->in_use + bytes - limit;
                std::size_t freed = call_reclaimer(r, wanted);
                ++a->reclaims;
                a->reclaimed_bytes += freed;
                if (a->remote.load(std::memory_order_relaxed)) {
                    drain_remote(a);
                }
            }
            if (a->in_use >= before) {
                break;  // the reclaimers have nothing more to give
            }
        }
        a->reclaim_cursor = nullptr;
        a->in_reclaim = false;
    }
    if (fits(a, bytes)) {
        a->in_use += bytes;
        return true;
    }
    return false;
}

// Charge `bytes` against the budget before any allocator structure is touched: reclaimers run
// from here and free (and allocate) through the same arena.
inline bool charge(arena* a, std::size_t bytes) noexcept {
    if (__builtin_expect(fits(a, bytes), 1)) {
        a->in_use += bytes;
        return true;
    }
    return charge_over_budget(a, bytes);
}

// ---- small objects ------------------------------------------------------------------------

void avail_push(arena* a, span* s) noexcept {
    span*& head = a->avail[s->cls];
    s->prev = nullptr;
    s->next = head;
    if (head) {
        head->prev = s;
    }
    head = s;
    s->listed = true;
}

void avail_remove(arena* a, span* s) noexcept {
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        a->avail[s->cls] = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    s->listed = false;
}

inline bool has_room(span* s) noexcept { return s->free || s->bump < classes.span_end[s->cls]; }

void set_current(arena* a, unsigned cls, span* s) noexcept {
    span* old = a->cur[cls];
    a->cur[cls] = s;
    if (old != &empty_span && old != s && has_room(old) && !old->listed) {
        avail_push(a, old);
    }
}

span* new_span(arena* a, unsigned cls) noexcept {
    if (!charge(a, chunk_bytes)) {
        return nullptr;
    }
    bool fresh;
    std::uint32_t i = take_run(a, 1, fresh);
    if (!i) {
        a->in_use -= chunk_bytes;
        return nullptr;
    }
    span* s = &descriptors(a)[i];
    s->free = nullptr;
    s->prev = s->next = nullptr;
    s->size = 0;
    s->used = 0;
    s->bump = 0;
    s->nchunks = 1;
    s->kind = chunk_kind::small;
    s->cls = std::uint8_t(cls);
    s->listed = false;
    return s;
}

void release_span(arena* a, span* s) noexcept {
    a->in_use -= chunk_bytes;
    free_chunks(a, index_of(a, s), 1);
}

// Carve the next blocks of a span into its (empty) free list, a few pages at a time so a new span
// does not touch all its memory at once.
bool extend_span(arena* a, span* s) noexcept {
    std::uint32_t size = classes.size[s->cls];
    std::uint32_t end = classes.span_end[s->cls];
    if (s->bump >= end) {
        return false;
    }
    std::uint32_t count = std::min((end - s->bump) / size, std::max<std::uint32_t>(4, 8192 / size));
    char* base = chunk_address(a, index_of(a, s)) + s->bump;
    for (std::uint32_t k = 0; k + 1 < count; ++k) {
        auto* b = reinterpret_cast<block*>(base + std::size_t(k) * size);
        b->next = reinterpret_cast<block*>(base + std::size_t(k + 1) * size);
    }
    reinterpret_cast<block*>(base + std::size_t(count - 1) * size)->next = s->free;
    s->free = reinterpret_cast<block*>(base);
    s->bump += count * size;
    return true;
}

void* small_alloc(arena* a, unsigned cls) noexcept {
    for (;;) {
        span* s = a->cur[cls];
        if (block* b = s->free) {
            s->free = b->next;
            ++s->used;
            return b;
        }
        if (s != &empty_span && extend_span(a, s)) {
            continue;
        }
        if (span* t = a->avail[cls]) {
            avail_remove(a, t);
            set_current(a, cls, t);
            continue;
        }
        if (a->remote.load(std::memory_order_relaxed) && drain_remote(a)) {
            continue;
        }
        span* n = new_span(a, cls);
        if (!n) {
            return nullptr;
        }
        set_current(a, cls, n);
    }
}

// ---- large objects ------------------------------------------------------------------------

void* large_alloc(arena* a, std::size_t n, std::size_t align, bool* zeroed) noexcept {
    if (n > arena_bytes / 2 || align > arena_bytes / 4) {
        return nullptr;
    }
    std::size_t bytes = round_up(std::max<std::size_t>(n, 1), page_bytes);
    auto nchunks = std::uint32_t((bytes + chunk_bytes - 1) >> chunk_shift);
    std::uint32_t align_chunks = align > chunk_bytes ? std::uint32_t(align >> chunk_shift) : 1;
    if (!charge(a, bytes)) {
        return nullptr;
    }
    bool fresh;
    span* ds = descriptors(a);
    std::uint32_t i;
    std::uint32_t prefix = 0;
    std::uint32_t suffix = 0;
    if (align_chunks == 1) {
        i = take_run(a, nchunks, fresh);
    } else {
        std::uint32_t total = nchunks + align_chunks - 1;
        std::uint32_t j = take_run(a, total, fresh);
        i = j ? (j + align_chunks - 1) & ~(align_chunks - 1) : 0;
        prefix = i - j;
        suffix = total - prefix - nchunks;
    }
    if (!i) {
        a->in_use -= bytes;
        return nullptr;
    }
    span* d = &ds[i];
    d->free = nullptr;
    d->prev = d->next = nullptr;
    d->size = bytes;
    d->nchunks = nchunks;
    d->kind = chunk_kind::large;
    d->listed = false;
    if (nchunks > 1) {
        ds[i + nchunks - 1].kind = chunk_kind::used_tail;
    }
    // The run's own boundary tags are set, so giving back the alignment slack cannot merge it.
    if (prefix) {
        free_chunks(a, i - prefix, prefix);
    }
    if (suffix) {
        free_chunks(a, i + nchunks, suffix);
    }
    ++a->large_allocations;
    if (zeroed) {
        *zeroed = fresh;
    }
    return chunk_address(a, i);
}

void large_free(arena* a, span* d) noexcept {
    std::uint32_t i = index_of(a, d);
    a->in_use -= d->size;
    if (d->size >= madvise_on_free) {
        ::madvise(chunk_address(a, i), d->size, MADV_DONTNEED);
    }
    free_chunks(a, i, d->nchunks);
}

// Resize a large allocation without moving it: shrink by giving back its tail chunks, grow into a
// free run (or the top) right after it.
bool resize_large_in_place(arena* a, span* d, std::size_t n) noexcept {
    std::size_t bytes = round_up(n, page_bytes);
    auto nch = std::uint32_t((bytes + chunk_bytes - 1) >> chunk_shift);
    std::uint32_t i = index_of(a, d);
    std::uint32_t old = d->nchunks;
    span* ds = descriptors(a);
    if (bytes <= d->size) {
        a->in_use -= d->size - bytes;
        d->size = bytes;
        if (nch < old) {
            d->nchunks = nch;
            if (nch > 1) {
                ds[i + nch - 1].kind = chunk_kind::used_tail;
            }
            free_chunks(a, i + nch, old - nch);
        }
        return true;
    }
    std::uint32_t extra = nch - old;
    std::uint32_t j = i + old;
    auto neighbour_fits = [&] {
        return extra == 0 || (j < a->top && ds[j].kind == chunk_kind::free_run && ds[j].nchunks >= extra) ||
               (j == a->top && chunks_per_arena - a->top >= extra);
    };
    if (!neighbour_fits()) {
        return false;
    }
    std::size_t more = bytes - d->size;
    if (!charge(a, more)) {
        return false;
    }
    // Reclaimers may have run during charge() and changed the neighbourhood: look again.
    if (!neighbour_fits()) {
        a->in_use -= more;
        return false;
    }
    if (extra > 0) {
        if (j < a->top) {
            std::uint32_t m = ds[j].nchunks;
            bin_remove(a, &ds[j]);
            if (m > extra) {
                make_free_run(a, j + extra, m - extra);
            }
        } else {
            if (!commit_chunks(a, a->top + extra)) {
                a->in_use -= more;
                return false;
            }
            a->top += extra;
        }
        d->nchunks = nch;
        ds[i + nch - 1].kind = chunk_kind::used_tail;
    }
    d->size = bytes;
    return true;
}

// ---- frees --------------------------------------------------------------------------------

// Free a block of arena `a` on the thread that owns it (or under the shared mutex).
void local_free(arena* a, void* p) noexcept {
    auto addr = reinterpret_cast<std::uintptr_t>(p);
    span* d = descriptor_of(a, addr);
    switch (d->kind) {
    case chunk_kind::small: {
#ifndef NDEBUG
        std::size_t off = addr & (chunk_bytes - 1);
        if (off % classes.size[d->cls] != 0 || off >= d->bump) {
            die("free of a pointer that is not the start of a block", p);
        }
#endif
        auto* b = static_cast<block*>(p);
        block* f = d->free;
        b->next = f;
        d->free = b;
        if (--d->used == 0 || f == nullptr) {
            small_free_transition(a, d);
        }
        return;
    }
    case chunk_kind::large:
        if (addr != reinterpret_cast<std::uintptr_t>(chunk_address(a, index_of(a, d)))) {
            die("free of a pointer into the middle of a large block", p);
        }
        large_free(a, d);
        return;
    default:
        die("free of a pointer that is not allocated (double free?)", p);
    }
}

void push_remote_chain(arena* owner, block* head, block* tail) noexcept {
    block* old = owner->remote.load(std::memory_order_relaxed);
    do {
        tail->next = old;
    } while (!owner->remote.compare_exchange_weak(old, head, std::memory_order_release, std::memory_order_relaxed));
}

void flush_outgoing(arena* a, unsigned target) noexcept {
    outgoing_list& o = a->outgoing[target];
    if (o.head) {
        push_remote_chain(arena_at(g_base.load(std::memory_order_relaxed), target), o.head, o.tail);
    }
    o = {};
    a->outgoing_mask &= ~(std::uint64_t(1) << target);
}

bool flush_all_outgoing(arena* a) noexcept {
    if (!a->outgoing_mask) {
        return false;
    }
    while (std::uint64_t m = a->outgoing_mask) {
        flush_outgoing(a, unsigned(__builtin_ctzll(m)));
    }
    return true;
}

void remote_free(arena* a, unsigned owner, block* b) noexcept {
    if (a) {
        ++a->remote_frees_sent;
        if (a->buffer_remote) {
            outgoing_list& o = a->outgoing[owner];
            b->next = o.head;
            o.head = b;
            if (!o.tail) {
                o.tail = b;
            }
            a->outgoing_mask |= std::uint64_t(1) << owner;
            if (++o.count >= outgoing_batch) {
                flush_outgoing(a, owner);
            }
            return;
        }
    }
    push_remote_chain(arena_at(g_base.load(std::memory_order_relaxed), owner), b, b);
}

bool drain_remote(arena* a) noexcept {
    block* b = a->remote.exchange(nullptr, std::memory_order_acquire);
    if (!b) {
        return false;
    }
    while (b) {
        block* next = b->next;
        local_free(a, b);
        ++a->cross_shard_frees;
        b = next;
    }
    return true;
}

// The calling thread leaves: its arena keeps its contents and becomes available to the next
// thread. Blocks freed into it from now on wait in its remote list.
void thread_exit(void* v) noexcept {
    auto* a = static_cast<arena*>(v);
    if (!a || a != tl_arena) {
        return;
    }
    flush_all_outgoing(a);
    drain_remote(a);
    for (reclaimer_node* r = a->reclaimers; r; r = r->next) {
        r->owner = nullptr;
    }
    a->reclaimers = nullptr;
    a->buffer_remote = false;
    tl_arena = nullptr;
    tl_mode = thread_mode::shared;
    g_arena_state[a->index].store(orphaned, std::memory_order_release);
}

struct owner_info {
    arena* a;
    unsigned index;
    unsigned count;
};

inline bool locate(const void* p, owner_info& o) noexcept {
    auto addr = reinterpret_cast<std::uintptr_t>(p);
    std::uintptr_t base = g_base.load(std::memory_order_relaxed);
    unsigned n = g_num_arenas.load(std::memory_order_relaxed);
    if (base == 0 || addr - base >= (std::uintptr_t(n) << arena_shift)) {
        return false;
    }
    o.index = unsigned((addr - base) >> arena_shift);
    o.a = arena_at(base, o.index);
    o.count = n;
    return true;
}

// The arena serving the calling thread: its own, or (a == nullptr, shared == true) the shared one.
void* with_thread_arena(void* (*f)(arena*, std::size_t, std::size_t, bool*), std::size_t n, std::size_t align,
                        bool* zeroed) noexcept {
    arena* a = tl_arena;
    if (!a) {
        a = attach_thread();
    }
    if (a) {
        // Frees this thread batched for other arenas go out at the latest here (or at 64 per
        // owner, or from the poller), so a thread that stopped polling strands nothing for long.
        if (a->outgoing_mask) {
            flush_all_outgoing(a);
        }
        void* p = f(a, n, align, zeroed);
        if (!p) {
            ++a->failed_allocations;
        }
        return p;
    }
    if (tl_mode != thread_mode::shared) {
        return nullptr;  // the reservation failed
    }
    return with_shared_arena([&](arena* s) -> void* {
        if (!s) {
            return nullptr;
        }
        void* p = f(s, n, align, zeroed);
        if (!p) {
            ++s->failed_allocations;
        }
        return p;
    });
}

void* alloc_any(arena* a, std::size_t n, std::size_t align, bool* zeroed) noexcept {
    if (n <= max_small && align <= 16) {
        if (zeroed) {
            *zeroed = false;
        }
        return small_alloc(a, size_class(n));
    }
    return large_alloc(a, n, align, zeroed);
}

}  // namespace

// ---- entry points shared with the malloc override -----------------------------------------

void* allocate_slow(std::size_t n) noexcept { return with_thread_arena(alloc_any, n, 16, nullptr); }

void small_free_transition(arena* a, span* s) noexcept {
    if (s == a->cur[s->cls]) {
        return;
    }
    if (s->used == 0) {
        if (s->listed) {
            avail_remove(a, s);
        }
        release_span(a, s);
        return;
    }
    if (!s->listed) {
        avail_push(a, s);
    }
}

void free_slow(void* p) noexcept {
    if (!p) {
        return;
    }
    owner_info o;
    if (!locate(p, o)) {
        foreign_free(p);
        return;
    }
    arena* a = tl_arena;
    if (o.a == a) {
        local_free(a, p);
        return;
    }
    if (o.index == o.count - 1 && tl_mode == thread_mode::shared) {
        with_shared_arena([&](arena*) {
            local_free(o.a, p);
            return 0;
        });
        return;
    }
    remote_free(a, o.index, static_cast<block*>(p));
}

__attribute__((weak)) void foreign_free(void* p) noexcept {
    die("free of a pointer this allocator did not allocate", p);
}

bool owns(const void* p) noexcept {
    owner_info o;
    return locate(p, o);
}

std::size_t owned_usable_size(const void* p) noexcept {
    owner_info o;
    if (!locate(p, o)) {
        return 0;
    }
    span* d = descriptor_of(o.a, reinterpret_cast<std::uintptr_t>(p));
    switch (d->kind) {
    case chunk_kind::small:
        return classes.size[d->cls];
    case chunk_kind::large:
        return d->size;
    default:
        return 0;
    }
}

void* allocate_aligned_nothrow(std::size_t align, std::size_t n, bool* zeroed) noexcept {
    if (zeroed) {
        *zeroed = false;
    }
    if (align <= 16) {
        if (n <= max_small) {
            return allocate_fast(n);
        }
        return with_thread_arena(alloc_any, n, 16, zeroed);
    }
    std::size_t need = std::max(n, align);
    if (need <= max_small) {
        // Power-of-two classes align their blocks to their size.
        return allocate_fast(std::bit_ceil(need));
    }
    return with_thread_arena(alloc_any, n, align, zeroed);
}

void* allocate_zeroed(std::size_t n) noexcept {
    bool zeroed = false;
    void* p = n <= max_small ? allocate_fast(n) : allocate_aligned_nothrow(16, n, &zeroed);
    if (p && !zeroed) {
        std::memset(p, 0, n);
    }
    return p;
}

void* reallocate_nothrow(void* p, std::size_t n) noexcept {
    if (!p) {
        return allocate_fast(n);
    }
    if (n == 0) {
        free_fast(p);
        return nullptr;
    }
    owner_info o;
    if (!locate(p, o)) {
        die("reallocate of a pointer this allocator did not allocate", p);
    }
    auto addr = reinterpret_cast<std::uintptr_t>(p);
    span* d = descriptor_of(o.a, addr);
    std::size_t old;
    if (d->kind == chunk_kind::small) {
        old = classes.size[d->cls];
        // Same class, or shrinking by less than half: keep the block.
        if (n <= old && (n > old / 2 || old == classes.size[0])) {
            return p;
        }
    } else if (d->kind == chunk_kind::large) {
        old = d->size;
        if (n > max_small && o.a == tl_arena) {
            if (resize_large_in_place(o.a, d, n)) {
                return p;
            }
        } else if (n <= old && n > old / 2) {
            return p;
        }
    } else {
        die("reallocate of a pointer that is not allocated", p);
    }
    void* q = allocate_fast(n);
    if (!q) {
        return nullptr;
    }
    std::memcpy(q, p, std::min(old, n));
    free_fast(p);
    return q;
}

__attribute__((weak)) bool override_linked() noexcept { return false; }

}  // namespace reef::memory::internal

namespace reef::memory {

using namespace internal;

void* allocate(std::size_t size) {
    void* p = allocate_fast(size);
    if (!p) {
        throw std::bad_alloc();
    }
    return p;
}

void* try_allocate(std::size_t size) noexcept { return allocate_fast(size); }

void* try_allocate_aligned(std::size_t align, std::size_t size) noexcept {
    if (!std::has_single_bit(align)) {
        return nullptr;
    }
    return allocate_aligned_nothrow(align, size, nullptr);
}

void* allocate_aligned(std::size_t align, std::size_t size) {
    if (!std::has_single_bit(align)) {
        throw std::invalid_argument(fmt::format("memory::allocate_aligned: alignment {} is not a power of two", align));
    }
    void* p = allocate_aligned_nothrow(align, size, nullptr);
    if (!p) {
        throw std::bad_alloc();
    }
    return p;
}

void free(void* ptr) noexcept { free_fast(ptr); }

void free(void* ptr, [[maybe_unused]] std::size_t size) noexcept {
    assert(!ptr || owned_usable_size(ptr) >= size);
    free_fast(ptr);
}

std::size_t usable_size(void* ptr) noexcept { return owned_usable_size(ptr); }

void* try_reallocate(void* ptr, std::size_t size) noexcept { return reallocate_nothrow(ptr, size); }

void* reallocate(void* ptr, std::size_t size) {
    void* p = reallocate_nothrow(ptr, size);
    if (!p && size != 0) {
        throw std::bad_alloc();
    }
    return p;
}

int arena_of(const void* ptr) noexcept {
    owner_info o;
    return locate(ptr, o) ? int(o.index) : -1;
}

statistics stats() noexcept {
    statistics r;
    r.budget = g_budget.load(std::memory_order_relaxed);
    arena* a = tl_arena;
    if (!a) {
        return r;
    }
    r.arena = int(a->index);
    r.in_use = a->in_use;
    r.cross_shard_frees = a->cross_shard_frees;
    r.remote_frees_sent = a->remote_frees_sent;
    r.large_allocations = a->large_allocations;
    r.reclaims = a->reclaims;
    r.reclaimed_bytes = a->reclaimed_bytes;
    r.failed_allocations = a->failed_allocations;
    span* ds = descriptors(a);
    for (std::uint32_t i = first_data_chunk; i < a->top;) {
        span& d = ds[i];
        switch (d.kind) {
        case chunk_kind::small: {
            std::size_t live = std::size_t(d.used) * classes.size[d.cls];
            r.allocated += live;
            r.free_cached += classes.span_end[d.cls] - live;
            i += 1;
            break;
        }
        case chunk_kind::large:
            r.allocated += d.size;
            i += d.nchunks;
            break;
        case chunk_kind::free_run:
            r.free_cached += std::size_t(d.nchunks) << chunk_shift;
            i += d.nchunks;
            break;
        default:
            die("corrupt chunk descriptor", &d);
        }
    }
    return r;
}

void configure(std::size_t total_bytes, unsigned shards) {
    if (shards == 0) {
        throw std::invalid_argument("memory::configure: the number of shards must be at least 1");
    }
    std::size_t per = total_bytes / shards;
    if (per < min_shard_memory) {
        throw std::invalid_argument(fmt::format("--memory {} bytes ({} MiB) over {} shard(s) leaves {} MiB per shard, "
                                                "below the minimum of {} MiB per shard",
                                                total_bytes, total_bytes >> 20, shards, per >> 20,
                                                min_shard_memory >> 20));
    }
    g_budget.store(per, std::memory_order_relaxed);
}

void remove_budget() noexcept { g_budget.store(0, std::memory_order_relaxed); }

std::size_t shard_budget() noexcept { return g_budget.load(std::memory_order_relaxed); }

reclaimer_registration& reclaimer_registration::operator=(reclaimer_registration&& o) noexcept {
    if (this != &o) {
        unregister();
        _node = o._node;
        o._node = nullptr;
    }
    return *this;
}

void reclaimer_registration::unregister() noexcept {
    reclaimer_node* n = _node;
    if (!n) {
        return;
    }
    _node = nullptr;
    if (arena* a = n->owner) {
        if (a != tl_arena) {
            die("reclaimer_registration destroyed on a thread other than the one that registered it", n);
        }
        if (a->reclaim_cursor == n) {
            a->reclaim_cursor = n->next;
        }
        if (n->prev) {
            n->prev->next = n->next;
        } else {
            a->reclaimers = n->next;
        }
        if (n->next) {
            n->next->prev = n->prev;
        }
    }
    delete n;
}

reclaimer_registration register_reclaimer(std::function<std::size_t(std::size_t)> fn) {
    arena* a = tl_arena ? tl_arena : attach_thread();
    if (!a) {
        throw std::runtime_error("memory::register_reclaimer: the calling thread has no private arena");
    }
    auto* n = new reclaimer_node;
    n->fn = std::move(fn);
    n->owner = a;
    // Appended, so reclaimers run in registration order.
    reclaimer_node** link = &a->reclaimers;
    reclaimer_node* prev = nullptr;
    while (*link) {
        prev = *link;
        link = &prev->next;
    }
    n->prev = prev;
    *link = n;
    return reclaimer_registration(n);
}

bool drain_remote_frees() noexcept {
    arena* a = tl_arena;
    if (!a) {
        return false;
    }
    // The caller polls regularly, so batching this thread's remote frees cannot strand them.
    a->buffer_remote = true;
    bool work = flush_all_outgoing(a);
    work |= drain_remote(a);
    return work;
}

bool has_remote_frees() noexcept {
    arena* a = tl_arena;
    return a && (a->outgoing_mask != 0 || a->remote.load(std::memory_order_relaxed) != nullptr);
}

std::size_t release_free_memory() noexcept {
    arena* a = tl_arena;
    if (!a) {
        return 0;
    }
    std::size_t released = 0;
    for (span* bin : a->bins) {
        for (span* d = bin; d; d = d->next) {
            std::size_t len = std::size_t(d->nchunks) << chunk_shift;
            if (::madvise(chunk_address(a, index_of(a, d)), len, MADV_DONTNEED) == 0) {
                released += len;
            }
        }
    }
    return released;
}

bool bind_to_local_numa_node() noexcept {
#ifdef REEF_HAVE_NUMA
    if (numa_available() < 0 || numa_num_configured_nodes() <= 1) {
        return false;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof(set), &set) != 0) {
        return false;
    }
    int node = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &set)) {
            continue;
        }
        int n = numa_node_of_cpu(cpu);
        if (n < 0 || (node >= 0 && n != node)) {
            return false;  // unpinned, or spread over nodes: let the kernel place pages
        }
        node = n;
    }
    if (node < 0) {
        return false;
    }
    tl_numa_node = node;
    return tl_arena ? bind_arena(tl_arena, node) : true;
#else
    return false;
#endif
}

bool is_malloc_replaced() noexcept { return override_linked(); }

}  // namespace reef::memory
