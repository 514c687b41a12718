// Log-structured allocator: segments, bump allocation, compaction by evacuation, eviction, reclaim.
//
// Invariants (outside a compaction step):
//  - held segments (in use + pool) <= budget, except right after the budget was lowered;
//  - the pool holds at least one segment (the reserve) whenever the region is not over budget, and
//    normal allocation never takes the last pool segment, so an evacuation always has a destination;
//  - every closed segment has at least one live object and is in the _closed min-heap, keyed by the
//    footprint of its live objects (a segment whose last object dies goes to the pool at once);
//  - the open segment is in no heap; when its last object dies its bump pointer is rewound.
#include "runtime/lsa.hh"

#include "runtime/misuse.hh"
#include "runtime/preempt.hh"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#if defined(__SANITIZE_ADDRESS__)
#define REEF_LSA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REEF_LSA_ASAN 1
#endif
#endif

#ifdef REEF_LSA_ASAN
#include <sanitizer/asan_interface.h>
// Free space and dead objects' payloads are poisoned, so ASan reports a use of a freed object or of
// an address kept across a compaction (the object has moved; the old place is dead).
#define REEF_LSA_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define REEF_LSA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define REEF_LSA_POISON(p, n) ((void)(p), (void)(n))
#define REEF_LSA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace reef::lsa {

namespace {

char* bytes(void* p) noexcept { return static_cast<char*>(p); }

}  // namespace

std::size_t region::budget_to_segments(std::size_t budget_bytes) {
    std::size_t n = budget_bytes / segment_size;
    if (n < 2) {
        throw std::invalid_argument("lsa: region budget below two segments (256 KiB)");
    }
    return n;
}

region::region(std::size_t budget_bytes) : _budget_segments(budget_to_segments(budget_bytes)) {
    reserve_bookkeeping(_budget_segments);
    segment* s = system_segment();
    if (!s) {
        throw std::bad_alloc();
    }
    _pool.push_back(s);
    try {
        _allocator_reclaimer = memory::register_reclaimer([this](std::size_t wanted) { return reclaim(wanted); });
    } catch (const std::runtime_error&) {
        // The thread has no private arena (only past 63 live threads): the region still works,
        // the allocator just cannot ask it for memory.
    }
}

region::~region() {
    _allocator_reclaimer.unregister();
    auto drop = [](segment* s) {
        REEF_LSA_UNPOISON(s, segment_size);
        std::free(s);
    };
    if (_open) {
        drop(_open);
    }
    for (segment* s : _closed) {
        drop(s);
    }
    for (segment* s : _pool) {
        drop(s);
    }
}

// Pool and heap never hold more than all held segments, so with this capacity pushing onto them
// (in free(), in the middle of an evacuation) never allocates.
void region::reserve_bookkeeping(std::size_t segments) {
    auto grow = [segments](std::vector<segment*>& v) {
        if (v.capacity() < segments) {
            v.reserve(std::max(segments, v.capacity() * 2));
        }
    };
    grow(_closed);
    grow(_pool);
}

// A fresh free segment from the system allocator (not yet in the pool), or null.
region::segment* region::system_segment() {
    try {
        reserve_bookkeeping(_segments_in_use + _pool.size() + 1);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
    void* mem = std::aligned_alloc(segment_size, segment_size);
    if (!mem) {
        return nullptr;
    }
    auto* s = static_cast<segment*>(mem);
    s->owner = this;
    s->close_seq = 0;
    s->used = segment_header_size;
    s->live_bytes = 0;
    s->live_objects = 0;
    s->heap_index = npos;
    s->state = seg_free;
    REEF_LSA_POISON(bytes(s) + segment_header_size, segment_usable);
    return s;
}

// A segment to open. Normal allocation keeps the reserve (the last pool segment, and one segment of
// the budget); compaction may take it, as it gives a segment back when the evacuation completes.
region::segment* region::take_segment(bool compacting) {
    if (compacting) {
        if (!_pool.empty()) {
            segment* s = _pool.back();
            _pool.pop_back();
            return s;
        }
        return _segments_in_use + _pool.size() < _budget_segments ? system_segment() : nullptr;
    }
    if (_segments_in_use + 1 >= _budget_segments) {
        return nullptr;
    }
    if (_pool.size() > 1) {
        segment* s = _pool.back();
        _pool.pop_back();
        return s;
    }
    return system_segment();
}

void region::open_segment(segment* s) noexcept {
    s->state = seg_open;
    s->used = segment_header_size;
    s->live_bytes = 0;
    s->live_objects = 0;
    s->heap_index = npos;
    _open = s;
    ++_segments_in_use;
}

void region::close_open() noexcept {
    segment* s = _open;
    if (!s) {
        return;
    }
    _open = nullptr;
    if (s->live_objects == 0) {
        release_to_pool(s);
        return;
    }
    s->state = seg_closed;
    s->close_seq = ++_close_seq;
    heap_push(s);
}

void region::release_to_pool(segment* s) noexcept {
    REEF_LSA_POISON(bytes(s) + segment_header_size, segment_usable);
    s->state = seg_free;
    s->used = segment_header_size;
    s->live_bytes = 0;
    s->live_objects = 0;
    s->heap_index = npos;
    --_segments_in_use;
    _pool.push_back(s);
}

void region::rewind(segment* s) noexcept {
    REEF_LSA_POISON(bytes(s) + segment_header_size, s->used - segment_header_size);
    s->used = segment_header_size;
}

// Gives up to `max` pool segments back to the system, keeping the reserve. An open segment without
// live objects is retired first so that an emptied region can shrink to the reserve alone.
std::size_t region::release_free_segments(std::size_t max) noexcept {
    if (_open && _open->live_objects == 0) {
        segment* s = _open;
        _open = nullptr;
        release_to_pool(s);
    }
    std::size_t n = 0;
    while (n < max && _pool.size() > 1) {
        segment* s = _pool.back();
        _pool.pop_back();
        REEF_LSA_UNPOISON(s, segment_size);
        std::free(s);
        ++n;
        ++_stats.segments_released;
    }
    return n;
}

// Where the next object of footprint `fp` goes. Callers guarantee a segment is available: refill()
// for allocations, has_destination() before an evacuation.
region::object_header* region::place(std::size_t fp, bool compacting) {
    if (!_open || room(_open) < fp) {
        segment* s = take_segment(compacting);
        close_open();
        open_segment(s);
    }
    auto* h = reinterpret_cast<object_header*>(bytes(_open) + _open->used);
    _open->used += std::uint32_t(fp);
    return h;
}

// Makes the open segment able to hold `fp` bytes: a new segment within the budget, else compaction
// of a segment below the eviction threshold, else eviction, else compaction of any segment that
// makes room, else std::bad_alloc. (Evacuating a nearly full segment to gain a few bytes would move
// a whole segment per allocation; evicting is what a cache wants then.) The open segment is closed
// first (its tail is too small), so it can be the one compacted: its holes count like any other
// segment's. Each compaction step leaves an open segment with room for `fp`, so the loop ends.
void region::refill(std::size_t fp) {
    for (;;) {
        if (_open && room(_open) >= fp) {
            return;
        }
        if (segment* s = take_segment(false)) {
            close_open();
            open_segment(s);
            return;
        }
        close_open();
        if (compact_for_allocation(fp, _eviction_threshold) || evict_one() || compact_for_allocation(fp, 1.0)) {
            continue;
        }
        throw std::bad_alloc();
    }
}

void region::check_size(std::size_t size) {
    if (size > max_object_size) {
        throw std::invalid_argument(
            "lsa: object larger than region::max_object_size; large values belong in "
            "the general allocator");
    }
}

void* region::allocate_object(std::size_t size, migrator* m, std::uint32_t handle_bits) {
    check_size(size);
    if (_evicting || _compacting) {
        report_misuse("lsa: allocation from the region's own evictor or migrator");
    }
    std::size_t fp = footprint(size);
    if (!_open || room(_open) < fp) {
        refill(fp);
    }
    object_header* h = place(fp, false);
    REEF_LSA_UNPOISON(h, sizeof(object_header) + size);
    h->size = std::uint32_t(size);
    h->bits = handle_bits | live_bit;
    h->mig = m;
    _open->live_bytes += std::uint32_t(fp);
    ++_open->live_objects;
    ++_stats.allocations;
    ++_stats.objects_live;
    _stats.bytes_allocated += size;
    return h + 1;
}

void* region::alloc(migrator& m, std::size_t size) { return allocate_object(size, &m, 0); }

handle region::alloc_handle(std::size_t size, migrator* m) {
    check_size(size);  // before taking a handle slot
    std::uint32_t index = take_handle_slot();
    void* p;
    try {
        p = allocate_object(size, m, handle_bit | (index << handle_shift));
    } catch (...) {
        put_handle_slot(index);
        throw;
    }
    _handles[index] = reinterpret_cast<std::uintptr_t>(p);
    return handle(index);
}

std::uint32_t region::take_handle_slot() {
    if (_free_handle != npos) {
        std::uint32_t index = _free_handle;
        _free_handle = std::uint32_t(_handles[index] >> 1);
        _handles[index] = 0;
        return index;
    }
    if (_handles.size() >= max_handles) {
        throw std::bad_alloc();
    }
    _handles.push_back(0);
    return std::uint32_t(_handles.size() - 1);
}

void region::put_handle_slot(std::uint32_t index) noexcept {
    _handles[index] = (std::uintptr_t(_free_handle) << 1) | 1;
    _free_handle = index;
}

void region::free(void* p) {
    object_header* h = header_of(p);
    if (h->bits & handle_bit) {
        report_misuse("lsa: free(void*) of a handle object; free its handle");
    }
    free_object(h);
}

void region::free(handle h) {
    if (!h || h.index() >= _handles.size() || (_handles[h.index()] & 1)) {
        report_misuse("lsa: free of an invalid or already freed handle");
    }
    free_object(header_of(get(h)));
    put_handle_slot(h.index());
}

void region::free_object(object_header* h) {
    segment* s = segment_of(h);
    if (s->owner != this) {
        report_misuse("lsa: free of an object of another region");
    }
    if (_compacting) {
        report_misuse("lsa: free from a migrator");
    }
    if (!(h->bits & live_bit) || (s->state != seg_open && s->state != seg_closed)) {
        report_misuse("lsa: free of a dead object");
    }
    std::size_t fp = footprint(h->size);
    h->bits &= ~live_bit;
    REEF_LSA_POISON(h + 1, fp - sizeof(object_header));
    s->live_bytes -= std::uint32_t(fp);
    --s->live_objects;
    ++_stats.frees;
    --_stats.objects_live;
    _stats.bytes_allocated -= h->size;
    if (_evicting) {
        ++_stats.objects_evicted;
        _stats.bytes_evicted += h->size;
    }
    if (s->state == seg_open) {
        if (s->live_objects == 0) {
            rewind(s);
        }
    } else if (s->live_objects == 0) {
        heap_remove(s);
        release_to_pool(s);
    } else {
        heap_sift_up(s->heap_index);
    }
}

// Can `bytes` of live data be moved now? Into the open segment's free tail, or a segment from the
// pool (allocated from the system if the reserve is missing and the budget allows).
bool region::has_destination(std::size_t bytes) {
    if (_open && room(_open) >= bytes) {
        return true;
    }
    if (!_pool.empty()) {
        return true;
    }
    if (_segments_in_use + _pool.size() < _budget_segments) {
        if (segment* s = system_segment()) {
            _pool.push_back(s);
            return true;
        }
    }
    return false;
}

// Moves every live object of `s` into the open segment (opening the pool's segment when it fills:
// the data of one segment always fit in a fresh one) and returns `s` to the pool.
void region::evacuate(segment* s) noexcept {
    _compacting = true;
    heap_remove(s);
    s->state = seg_evacuating;
    char* base = bytes(s);
    for (std::size_t off = segment_header_size; off < s->used;) {
        auto* h = reinterpret_cast<object_header*>(base + off);
        std::size_t fp = footprint(h->size);
        off += fp;
        if (!(h->bits & live_bit)) {
            continue;
        }
        object_header* d = place(fp, true);
        REEF_LSA_UNPOISON(d, sizeof(object_header) + h->size);
        *d = *h;
        _open->live_bytes += std::uint32_t(fp);
        ++_open->live_objects;
        void* src = h + 1;
        void* dst = d + 1;
        if (h->mig) {
            h->mig->migrate(src, dst, h->size);
        } else {
            std::memcpy(dst, src, h->size);
        }
        if (h->bits & handle_bit) {
            _handles[h->bits >> handle_shift] = reinterpret_cast<std::uintptr_t>(dst);
        }
        _stats.bytes_moved += h->size;
    }
    ++_stats.segments_compacted;
    release_to_pool(s);
    _compacting = false;
}

bool region::compact_one(double threshold, std::uint64_t closed_before) {
    if (_closed.empty()) {
        return false;
    }
    segment* s = _closed.front();
    if (s->close_seq > closed_before || segment_occupancy(s) >= threshold || !has_destination(s->live_bytes)) {
        return false;
    }
    evacuate(s);
    return true;
}

// Evacuates the sparsest segment (into a fresh segment: there is no open one here) if it is below
// `threshold` and what is left of that segment afterwards still fits an object of footprint `fp`.
bool region::compact_for_allocation(std::size_t fp, double threshold) {
    if (_closed.empty()) {
        return false;
    }
    segment* s = _closed.front();
    if (segment_occupancy(s) >= threshold || s->live_bytes + fp > segment_usable || !has_destination(s->live_bytes)) {
        return false;
    }
    evacuate(s);
    return true;
}

bool region::evict_one() {
    if (!_evictor || _evicting) {
        return false;
    }
    struct guard {
        bool& flag;
        explicit guard(bool& f) noexcept : flag(f) { flag = true; }
        ~guard() { flag = false; }
    } g(_evicting);
    std::uint64_t frees_before = _stats.frees;
    bool more = _evictor();
    return more && _stats.frees != frees_before;
}

void region::set_eviction_threshold(double occupancy) {
    if (!(occupancy >= 0 && occupancy <= 1)) {
        throw std::invalid_argument("lsa: eviction threshold must be within [0, 1]");
    }
    _eviction_threshold = occupancy;
}

bool region::compact_segment_if_below(double occupancy) { return compact_one(occupancy, _close_seq); }

std::size_t region::compact(double threshold, std::size_t max_segments) {
    std::uint64_t closed_before = _close_seq;
    std::size_t n = 0;
    while (n < max_segments && compact_one(threshold, closed_before)) {
        ++n;
    }
    return n;
}

bool region::compact_all(double threshold) {
    std::uint64_t closed_before = _close_seq;
    while (compact_one(threshold, closed_before)) {
        if (need_preempt()) {
            return false;
        }
    }
    return true;
}

std::size_t region::reclaim_segments(std::size_t want) {
    if (_compacting) {
        return 0;  // a migrator allocated from the system allocator, which asked for memory back
    }
    std::size_t released = release_free_segments(want);
    // Inside the evictor (which may allocate from the system allocator) the user holds addresses of
    // region objects, as under a reclaim_lock.
    if (released >= want || _reclaim_locks || _evicting) {
        return released;
    }
    std::uint64_t closed_before = _close_seq;
    while (released < want) {
        if (!compact_one(_eviction_threshold, closed_before) && !evict_one() && !compact_one(1.0, closed_before)) {
            break;
        }
        released += release_free_segments(want - released);
    }
    return released;
}

std::size_t region::reclaim(std::size_t bytes) {
    return reclaim_segments((bytes + segment_size - 1) / segment_size) * segment_size;
}

void region::set_budget(std::size_t budget_bytes) {
    std::size_t n = budget_to_segments(budget_bytes);
    reserve_bookkeeping(n);
    _budget_segments = n;
    std::size_t held = _segments_in_use + _pool.size();
    if (held > n) {
        reclaim_segments(held - n);
    }
}

region_stats region::statistics() const noexcept {
    region_stats st = _stats;
    st.segments_in_use = _segments_in_use;
    st.segments_free = _pool.size();
    st.segments_total = _segments_in_use + _pool.size();
    st.occupancy = _segments_in_use ? double(st.bytes_allocated) / double(_segments_in_use * segment_size) : 0.0;
    return st;
}

void region::heap_push(segment* s) noexcept {
    _closed.push_back(s);
    s->heap_index = std::uint32_t(_closed.size() - 1);
    heap_sift_up(_closed.size() - 1);
}

void region::heap_remove(segment* s) noexcept {
    std::size_t i = s->heap_index;
    segment* last = _closed.back();
    _closed.pop_back();
    s->heap_index = npos;
    if (last != s) {
        heap_set(i, last);
        heap_sift_up(i);
        heap_sift_down(last->heap_index);
    }
}

void region::heap_sift_up(std::size_t i) noexcept {
    segment* s = _closed[i];
    while (i > 0) {
        std::size_t parent = (i - 1) / 2;
        if (_closed[parent]->live_bytes <= s->live_bytes) {
            break;
        }
        heap_set(i, _closed[parent]);
        i = parent;
    }
    heap_set(i, s);
}

void region::heap_sift_down(std::size_t i) noexcept {
    segment* s = _closed[i];
    std::size_t n = _closed.size();
    for (;;) {
        std::size_t c = 2 * i + 1;
        if (c >= n) {
            break;
        }
        if (c + 1 < n && _closed[c + 1]->live_bytes < _closed[c]->live_bytes) {
            ++c;
        }
        if (_closed[c]->live_bytes >= s->live_bytes) {
            break;
        }
        heap_set(i, _closed[c]);
        i = c;
    }
    heap_set(i, s);
}

}  // namespace reef::lsa
