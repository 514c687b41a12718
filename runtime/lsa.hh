// Log-structured allocator (LSA) for cache objects.
//
// A general-purpose allocator fragments under a cache's workload (many small values of random sizes,
// freed in an order unrelated to allocation): freed holes are too small or in the wrong size class
// for the next value, and memory stays resident although it holds little live data. LSA keeps live
// data dense instead: objects are bump-allocated into fixed-size segments, and compaction moves the
// live objects out of the sparsest segments so that whole segments become free again. Moving an
// object requires that whoever refers to it can be told its new address, so every object is either
// reached through a `handle` (an index into the region's indirection table, updated by the region)
// or carries a `migrator` (a callback that moves it and fixes up the references to it, e.g. the slot
// of a hash table).
//
// Threading: a region belongs to one shard. Nothing here is thread-safe; no locks, no atomics.
//
// Addresses are stable only between region calls that may move objects: any allocation (which may
// compact), compact*(), reclaim() and set_budget() may move every object. Re-read addresses through
// handles (get()) or through the structures the migrators update after such a call. free() and
// get() never move anything.
#pragma once

#include "runtime/memory.hh"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace reef::lsa {

/// Moves an object to a new address during compaction. Implementations are usually one per object
/// type (or per container) and shared by all its objects.
class migrator {
public:
    /// Moves the `size`-byte object at `src` to `dst` (uninitialized memory of at least `size` bytes,
    /// 16-byte aligned) and updates every reference to it. After the call the region treats `src` as
    /// dead raw memory: destroy whatever lives there (a move-construct-then-destroy migrator does).
    /// Must not call into the region (no allocation, free or compaction) and cannot fail.
    virtual void migrate(void* src, void* dst, std::size_t size) noexcept = 0;

protected:
    ~migrator() = default;
};

/// Names an object allocated with region::alloc_handle() or region::make_handle(). A handle stays
/// valid until the object is freed; its index may then be reused by a later allocation. Handles are
/// plain values (copyable, 4 bytes) and meaningful only for the region that issued them.
class handle {
    static constexpr std::uint32_t invalid_index = UINT32_MAX;
    std::uint32_t _index = invalid_index;

public:
    constexpr handle() noexcept = default;
    constexpr explicit handle(std::uint32_t index) noexcept : _index(index) {}
    constexpr std::uint32_t index() const noexcept { return _index; }
    /// False for a default-constructed handle.
    constexpr explicit operator bool() const noexcept { return _index != invalid_index; }
    friend constexpr bool operator==(handle, handle) noexcept = default;
};

/// Counters and gauges of one region; see region::statistics().
struct region_stats {
    std::size_t segments_total = 0;   // segments held: in use + free pool
    std::size_t segments_free = 0;    // empty segments kept in the free pool (includes the reserve)
    std::size_t segments_in_use = 0;  // segments holding objects (closed ones + the open one)
    std::size_t objects_live = 0;
    std::size_t bytes_allocated = 0;  // payload bytes of live objects (as requested, no headers)
    double occupancy = 0;             // bytes_allocated / (segments_in_use * segment_size); 0 if none
    std::uint64_t allocations = 0;
    std::uint64_t frees = 0;               // includes evictions
    std::uint64_t segments_compacted = 0;  // segments evacuated by compaction
    std::uint64_t bytes_moved = 0;         // payload bytes moved by compaction
    std::uint64_t objects_evicted = 0;     // objects freed by the evictor
    std::uint64_t bytes_evicted = 0;       // their payload bytes
    std::uint64_t segments_released = 0;   // segments given back to the system allocator
};

namespace internal {

// The migrator of make<T>()/make_handle<T>(): moves by move construction and destroys the source,
// so T's move constructor is where T fixes up references to itself (e.g. an intrusive back-link).
template <typename T>
class move_migrator final : public migrator {
public:
    void migrate(void* src, void* dst, std::size_t) noexcept override {
        T* from = std::launder(static_cast<T*>(src));
        new (dst) T(std::move(*from));
        from->~T();
    }
};

template <typename T>
inline constinit move_migrator<T> move_migrator_instance{};

}  // namespace internal

/// A memory region for movable objects, made of fixed-size segments and limited by a budget.
///
/// Memory model: segments of `segment_size` bytes come from the system allocator (aligned to their
/// size, so an object's segment is found from its address). Objects are bump-allocated in the open
/// segment, each behind a 16-byte header (size, liveness, how to move it), 16-byte aligned. A freed
/// object is only marked dead; its segment returns to the free pool as soon as its last live object
/// goes. The budget caps the segments held (in use + free pool), so live bytes never exceed it.
/// One segment of the budget is the reserve: normal allocation never takes it, so compaction always
/// has somewhere to move objects to.
///
/// When an allocation needs a new segment and the region is at its budget, the region compacts
/// (evacuates the sparsest closed segment, one per step, so a step moves at most one segment's live
/// data) if that segment is below the eviction threshold; otherwise it calls the evictor to free
/// objects in the user's LRU order, and only when there is nothing left to evict does it compact
/// fuller segments. If nothing helps the allocation throws std::bad_alloc; the region stays
/// consistent.
///
/// Object size limit: max_object_size (a segment minus headers, ~128 KiB). Larger values throw
/// std::invalid_argument: they belong in the general allocator (or split into chunks by the
/// caller), since a value spanning segments could not be moved by a single segment's evacuation.
///
/// The destructor releases all segments without running any destructor: destroy typed objects
/// (destroy<T>) before the region goes away.
class region {
public:
    static constexpr std::size_t segment_size = 128 * 1024;
    static constexpr std::size_t object_alignment = 16;

private:
    // In-band descriptor at the start of every segment.
    struct segment {
        region* owner;
        std::uint64_t close_seq;   // value of _close_seq when the segment was closed
        std::uint32_t used;        // bump offset from the segment start
        std::uint32_t live_bytes;  // footprint (header + rounded payload) of live objects
        std::uint32_t live_objects;
        std::uint32_t heap_index;  // position in _closed, or npos
        std::uint8_t state;
    };
    struct object_header {
        std::uint32_t size;  // payload bytes as requested
        std::uint32_t bits;  // live_bit | handle_bit | handle index << handle_shift
        migrator* mig;       // null: moved with memcpy (handle objects only)
    };
    static_assert(sizeof(object_header) == object_alignment);

    static constexpr std::size_t segment_header_size =
        (sizeof(segment) + object_alignment - 1) & ~(object_alignment - 1);

public:
    static constexpr std::size_t segment_usable = segment_size - segment_header_size;
    /// The largest object: a whole segment less the segment and object headers.
    static constexpr std::size_t max_object_size = segment_usable - sizeof(object_header);
    /// Segments whose live data fill less than this fraction are worth evacuating by default.
    static constexpr double default_compaction_threshold = 0.95;
    /// Segments evacuated by one compact() call by default (each moves at most one segment of data).
    static constexpr std::size_t default_compaction_batch = 4;
    /// Under pressure (an allocation at the budget, reclaim()), a segment at least this full is not
    /// evacuated while the evictor can evict instead: moving 85% of a segment to gain 15% is the most
    /// a cache should pay per segment won.
    static constexpr double default_eviction_threshold = 0.85;

    /// A region holding at most `budget_bytes` (rounded down to whole segments; at least two: one to
    /// allocate into and the compaction reserve). Allocates the reserve segment at once, and
    /// registers with the calling thread's allocator as a reclaimer (memory::register_reclaimer),
    /// so an allocation over the shard's budget first makes the region give memory back. Throws
    /// std::invalid_argument for a budget below two segments, std::bad_alloc if the reserve cannot be
    /// allocated.
    explicit region(std::size_t budget_bytes);
    ~region();
    region(const region&) = delete;
    region& operator=(const region&) = delete;

    /// Allocates `size` bytes (16-byte aligned, uninitialized) moved by `m` during compaction; `m`
    /// must outlive the object. May compact and evict first (other objects may move). Throws
    /// std::invalid_argument if size > max_object_size, std::bad_alloc if the budget is exhausted and
    /// nothing can be compacted or evicted, or whatever the evictor throws; on a throw nothing was
    /// allocated (but objects may have moved or been evicted).
    void* alloc(migrator& m, std::size_t size);

    /// Like alloc(), for an object reached through the returned handle (get() gives its address).
    /// With `m` null the object is moved with memcpy, so it must be trivially relocatable bytes;
    /// otherwise `m` moves it and the region updates the handle.
    handle alloc_handle(std::size_t size, migrator* m = nullptr);

    /// Current address of a live handle's object (valid until the next call that may move objects).
    void* get(handle h) const noexcept { return reinterpret_cast<void*>(_handles[h.index()]); }
    template <typename T>
    T* get(handle h) const noexcept {
        return std::launder(static_cast<T*>(get(h)));
    }

    /// Marks the object dead (no destructor runs). Its segment is returned to the free pool at once
    /// if this was its last live object. Never moves objects or allocates. Freeing a dead object or
    /// one of another region is reported with report_misuse() (detection is best-effort: the memory
    /// of a dead object may already hold another one).
    void free(void* p);
    /// Frees a handle's object and the handle (its index may be reused by later allocations).
    void free(handle h);

    /// Constructs a T in the region; T's move constructor moves it during compaction (and is where T
    /// must fix up any pointer to itself: a plain T* kept elsewhere goes stale at the next
    /// compaction). If T's constructor throws, the memory is freed and the exception propagates.
    template <typename T, typename... Args>
    T* make(Args&&... args) {
        check_type<T>();
        void* p = alloc(internal::move_migrator_instance<T>, sizeof(T));
        try {
            return new (p) T(std::forward<Args>(args)...);
        } catch (...) {
            free(p);
            throw;
        }
    }
    /// Runs ~T() and frees the object.
    template <typename T>
    void destroy(T* p) {
        p->~T();
        free(static_cast<void*>(p));
    }

    /// Constructs a T reached through a handle (moved by T's move constructor, handle updated by the
    /// region). Exceptions as make().
    template <typename T, typename... Args>
    handle make_handle(Args&&... args) {
        check_type<T>();
        handle h = alloc_handle(sizeof(T), &internal::move_migrator_instance<T>);
        try {
            new (get(h)) T(std::forward<Args>(args)...);
        } catch (...) {
            free(h);
            throw;
        }
        return h;
    }
    template <typename T>
    void destroy(handle h) {
        get<T>(h)->~T();
        free(h);
    }

    /// Evacuates the sparsest closed segment if its live data fill less than `occupancy` of it and
    /// there is a destination for them (the open segment's free space or the reserve). Returns true
    /// if a segment was evacuated (it is then in the free pool). Moves at most one segment of data.
    bool compact_segment_if_below(double occupancy);

    /// One bounded compaction step: evacuates up to `max_segments` of the sparsest closed segments
    /// whose occupancy is below `threshold`; segments filled by this very call are not evacuated
    /// again. Returns the number of segments evacuated.
    std::size_t compact(double threshold = default_compaction_threshold,
                        std::size_t max_segments = default_compaction_batch);

    /// Full compaction: evacuates, sparsest first, every segment closed before the call whose
    /// occupancy is below `threshold`. Checks need_preempt() after each segment (at least one is done)
    /// and then returns false so a reactor task can yield and call again; returns true when done.
    bool compact_all(double threshold = default_compaction_threshold);

    /// Sets the evictor, called when an allocation needs room, the region is at its budget and
    /// compaction cannot help. It must free at least one object of this region (region::free, in its
    /// own LRU order) and return true, or return false when it has nothing left to evict (a call that
    /// frees nothing also counts as false). It must not allocate from this region. An exception it
    /// throws propagates out of the allocation (or reclaim) that called it.
    void set_evictor(std::function<bool()> evictor) { _evictor = std::move(evictor); }

    /// Sets the occupancy (live bytes / segment, in [0, 1]) at or above which, under pressure, the
    /// region prefers evicting to compacting (see default_eviction_threshold). 1 compacts whenever
    /// compaction can make room; 0 always evicts first. Throws std::invalid_argument outside [0, 1].
    void set_eviction_threshold(double occupancy);

    /// Changes the budget (same rounding and minimum as the constructor; throws std::invalid_argument
    /// below two segments). Lowering it releases free segments at once and then compacts and evicts
    /// (as reclaim()) until the region fits; if it cannot (no evictor), the region stays over budget
    /// and allocations that need a segment throw std::bad_alloc until frees bring it back under.
    void set_budget(std::size_t budget_bytes);
    std::size_t budget() const noexcept { return _budget_segments * segment_size; }

    /// Memory-pressure hook for the shard's allocator: gives at least `bytes` back to the system if
    /// it can, by releasing free segments, then compacting segments below the eviction threshold,
    /// then evicting, then (nothing left to evict) compacting any segment with free space. The
    /// reserve segment is kept. Returns the bytes released (whole segments). While a reclaim_lock is
    /// held, or from inside the evictor, only free segments are released (no object moves or is
    /// evicted); from inside a migrator nothing is released.
    std::size_t reclaim(std::size_t bytes);

    /// While alive, reclaim() does not move or evict objects: hold one across code that keeps raw
    /// addresses of region objects while calling code that may allocate from the system allocator
    /// (which may call reclaim under pressure). Allocations from the region itself still compact.
    class reclaim_lock {
        region& _r;

    public:
        explicit reclaim_lock(region& r) noexcept : _r(r) { ++_r._reclaim_locks; }
        ~reclaim_lock() { --_r._reclaim_locks; }
        reclaim_lock(const reclaim_lock&) = delete;
        reclaim_lock& operator=(const reclaim_lock&) = delete;
    };

    region_stats statistics() const noexcept;

    /// Payload size of a live object (as requested at allocation).
    std::size_t object_size(const void* p) const noexcept { return header_of(p)->size; }

private:
    // Lets the shard's allocator ask this region for memory back when the shard is over its
    // --memory budget (compaction and eviction through reclaim()).
    memory::reclaimer_registration _allocator_reclaimer;

    enum : std::uint8_t { seg_free, seg_open, seg_closed, seg_evacuating };
    static constexpr std::uint32_t npos = UINT32_MAX;
    static constexpr std::uint32_t live_bit = 1;
    static constexpr std::uint32_t handle_bit = 2;
    static constexpr unsigned handle_shift = 2;
    static constexpr std::size_t max_handles = std::size_t(1) << (32 - handle_shift);

    std::size_t _budget_segments;
    std::size_t _segments_in_use = 0;  // open + closed (+ one being evacuated)
    segment* _open = nullptr;
    std::vector<segment*> _closed;  // min-heap on live_bytes
    std::vector<segment*> _pool;    // free segments; the last one kept is the reserve
    std::uint64_t _close_seq = 0;
    // Handle table: a live entry holds the object's address; a free one (low bit set) links to the
    // next free index (shifted left by one), npos-terminated.
    std::vector<std::uintptr_t> _handles;
    std::uint32_t _free_handle = npos;
    std::function<bool()> _evictor;
    double _eviction_threshold = default_eviction_threshold;
    bool _evicting = false;
    bool _compacting = false;  // inside evacuate(): migrators are running
    unsigned _reclaim_locks = 0;
    region_stats _stats;  // counters only; gauges are computed by statistics()

    template <typename T>
    static constexpr void check_type() {
        static_assert(alignof(T) <= object_alignment, "lsa: over-aligned types are not supported");
        static_assert(sizeof(T) <= max_object_size, "lsa: type larger than a segment");
        static_assert(std::is_nothrow_move_constructible_v<T>, "lsa: T must be nothrow move-constructible");
    }
    static std::size_t footprint(std::size_t size) noexcept {
        return sizeof(object_header) + ((size + object_alignment - 1) & ~(object_alignment - 1));
    }
    static object_header* header_of(const void* p) noexcept {
        return reinterpret_cast<object_header*>(const_cast<char*>(static_cast<const char*>(p)) - sizeof(object_header));
    }
    static segment* segment_of(const object_header* h) noexcept {
        return reinterpret_cast<segment*>(reinterpret_cast<std::uintptr_t>(h) & ~std::uintptr_t(segment_size - 1));
    }
    static std::size_t room(const segment* s) noexcept { return segment_size - s->used; }
    static double segment_occupancy(const segment* s) noexcept { return double(s->live_bytes) / segment_usable; }
    static std::size_t budget_to_segments(std::size_t budget_bytes);

    static void check_size(std::size_t size);
    void* allocate_object(std::size_t size, migrator* m, std::uint32_t handle_bits);
    object_header* place(std::size_t fp, bool compacting);
    void refill(std::size_t fp);
    void reserve_bookkeeping(std::size_t segments);
    segment* system_segment();
    segment* take_segment(bool compacting);
    void open_segment(segment* s) noexcept;
    void close_open() noexcept;
    void release_to_pool(segment* s) noexcept;
    void rewind(segment* s) noexcept;
    std::size_t release_free_segments(std::size_t max) noexcept;
    bool has_destination(std::size_t bytes);
    void evacuate(segment* s) noexcept;
    bool compact_one(double threshold, std::uint64_t closed_before);
    bool compact_for_allocation(std::size_t fp, double threshold);
    bool evict_one();
    std::size_t reclaim_segments(std::size_t want);
    void free_object(object_header* h);
    std::uint32_t take_handle_slot();
    void put_handle_slot(std::uint32_t index) noexcept;

    void heap_push(segment* s) noexcept;
    void heap_remove(segment* s) noexcept;
    void heap_sift_up(std::size_t i) noexcept;
    void heap_sift_down(std::size_t i) noexcept;
    void heap_set(std::size_t i, segment* s) noexcept {
        _closed[i] = s;
        s->heap_index = std::uint32_t(i);
    }
};

}  // namespace reef::lsa
