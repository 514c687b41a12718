// reef-memcached's storage: one cache_shard per shard, holding the keys that hash to that shard.
//
// Items live in the shard's LSA region (runtime/lsa.hh), each reached through an lsa::handle, so
// compaction may move them at any time the region is called: nothing here keeps a raw item
// address across a region call. One item is one LSA object (header, key, value) when it fits in
// `chunk_size`; a larger value is split into chunks of chunk_size bytes, each its own object,
// whose handles the item object lists (LSA objects are limited to one segment).
//
// The index is an open hash table of chains threaded through the items (a chain link is a handle
// index); the LRU list is threaded the same way. The region's evictor drops the least recently
// used item, so a store at the shard's memory share evicts instead of failing. A hit does not
// relink the item (that costs three random cache misses: its two neighbours and the head); it
// marks it active, and an active item reaching the tail gets a second chance at the head (CLOCK,
// as memcached's segmented LRU marks items active instead of bumping them on every hit).
//
// Time: every call that needs it takes `now`, the server's clock in seconds (see server_clock);
// expiry follows memcached's rules (to_expiry). Items expire lazily (a lookup of an expired item
// frees it and misses) and sweep() frees expired and flushed items in bounded steps.
//
// Threading: a cache_shard belongs to its shard; nothing here is thread-safe. Keys are routed to
// shards by shard_of(key_hash(key)).
#pragma once

#include "runtime/lsa.hh"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace reef::memcached {

/// The key hash used for both shard routing and the hash table (64 bits, seedless, stable).
std::uint64_t key_hash(std::string_view key) noexcept;
/// The shard owning a key hash among `shards` shards.
inline unsigned shard_of(std::uint64_t hash, unsigned shards) noexcept { return unsigned((hash >> 32) % shards); }

/// The longest key memcached accepts.
constexpr std::size_t max_key_length = 250;
/// memcached's boundary between relative and absolute expiration times (30 days).
constexpr std::int64_t max_relative_exptime = 60 * 60 * 24 * 30;

/// The server clock: seconds since a point 2 s before the process started (so that 0 can mean
/// "never" and 1 "already expired"), and the wall-clock time of that point.
class server_clock {
    std::int64_t _start_unix;  // unix time of server time 0
    std::int64_t _start_mono;  // steady seconds at server time 0
    std::int64_t _offset = 0;  // added by tests (advance())

public:
    server_clock();
    /// Current server time (seconds, >= 2).
    std::uint32_t now() const noexcept;
    /// Unix time of server time 0 (memcached's process_started).
    std::int64_t start_unix() const noexcept { return _start_unix; }
    /// Move the clock forward (tests).
    void advance(std::int64_t seconds) noexcept { _offset += seconds; }
};

/// memcached's realtime(): a client exptime to an absolute server time. 0: never; negative:
/// already expired; up to 30 days: relative to `now`; above: a unix time (already expired when
/// at or before the server's start).
std::uint32_t to_expiry(std::int64_t exptime, std::uint32_t now, std::int64_t start_unix) noexcept;

enum class store_mode : std::uint8_t { set, add, replace, append, prepend, cas };

enum class store_status : std::uint8_t {
    stored,
    not_stored,  ///< add of an existing key, replace/append/prepend of a missing one
    exists,      ///< cas mismatch
    not_found,   ///< cas of a missing key
    too_large,   ///< item over the size limit (value unchanged)
    no_memory,   ///< nothing could be evicted to make room
};

enum class arith_status : std::uint8_t { ok, not_found, non_numeric, exists, no_memory };
enum class delete_status : std::uint8_t { deleted, not_found, exists };

/// Per-shard counters (memcached's stats names in comments where they differ).
struct cache_stats {
    std::uint64_t cmd_get = 0, get_hits = 0, get_misses = 0, get_expired = 0, get_flushed = 0;
    std::uint64_t cmd_set = 0, cmd_touch = 0, touch_hits = 0, touch_misses = 0;
    std::uint64_t delete_hits = 0, delete_misses = 0;
    std::uint64_t incr_hits = 0, incr_misses = 0, decr_hits = 0, decr_misses = 0;
    std::uint64_t cas_hits = 0, cas_misses = 0, cas_badval = 0;
    std::uint64_t cmd_flush = 0;
    std::uint64_t evictions = 0;  ///< items dropped by the LRU to make room
    std::uint64_t expired_unfetched = 0, evicted_unfetched = 0;
    std::uint64_t reclaimed = 0;    ///< expired/flushed items freed (lazily or by the sweep)
    std::uint64_t total_items = 0;  ///< items ever stored
    std::uint64_t curr_items = 0;   ///< gauge
    std::uint64_t bytes = 0;        ///< gauge: key + value bytes of current items
    std::uint64_t store_too_large = 0, store_no_memory = 0;

    cache_stats& operator+=(const cache_stats& o) noexcept;
};

/// What a lookup found (value copied out, so that it may travel to another shard).
struct item_info {
    std::uint32_t flags = 0;
    std::uint64_t cas = 0;
    std::uint32_t expiry = 0;       ///< absolute server time, 0: never
    std::uint32_t last_access = 0;  ///< server time of the previous access
    bool fetched_before = false;    ///< fetched before this access
    std::size_t size = 0;           ///< value length
    std::string value;              ///< filled only when asked for
};

/// The result of arith(): the new value and its cas when status is ok.
struct arith_result {
    arith_status status = arith_status::not_found;
    std::uint64_t value = 0;
    std::uint64_t cas = 0;
    bool created = false;  ///< autovivified
};

struct store_result {
    store_status status = store_status::stored;
    std::uint64_t cas = 0;  ///< the stored item's cas (when stored)
};

class cache_shard {
public:
    /// `memory_bytes`: this shard's share of -m (the LSA budget; at least two LSA segments are
    /// used whatever is asked). `max_item_size`: -I (header + key + value beyond it: too_large).
    cache_shard(std::size_t memory_bytes, std::size_t max_item_size);
    ~cache_shard();
    cache_shard(const cache_shard&) = delete;
    cache_shard& operator=(const cache_shard&) = delete;

    /// Look `key` up (`hash` = key_hash(key)). A hit updates the LRU and the access time, and
    /// with `touch_expiry` sets the item's expiry (gat). Copies the value into info.value when
    /// `want_value`. An expired or flushed item is freed and misses. Counts get/touch stats as
    /// `count_as_touch` says (gat counts both).
    std::optional<item_info> get(std::string_view key, std::uint64_t hash, std::uint32_t now, bool want_value,
                                 std::optional<std::uint32_t> touch_expiry = std::nullopt);
    /// get() into `out`, whose value string keeps its capacity from one call to the next (a hit
    /// then allocates nothing). Returns false on a miss, leaving `out` unspecified.
    bool get(std::string_view key, std::uint64_t hash, std::uint32_t now, bool want_value,
             std::optional<std::uint32_t> touch_expiry, item_info& out);
    /// Like get() without counting or changing anything but the LRU (meta `me`, tests).
    std::optional<item_info> peek(std::string_view key, std::uint64_t hash, std::uint32_t now);

    /// Store per `mode`. `expiry` is absolute (to_expiry). `compare_cas` for mode cas (and the
    /// meta C flag for other modes when nonzero); `explicit_cas` (meta E) sets the new item's cas
    /// instead of the next counter value. append/prepend keep the old flags and expiry. A value
    /// over the limit: too_large, and for set the old item is removed (memcached does so, to not
    /// serve stale data).
    store_result store(store_mode mode, std::string_view key, std::uint64_t hash, std::uint32_t flags,
                       std::uint32_t expiry, std::string_view value, std::uint32_t now, std::uint64_t compare_cas = 0,
                       std::uint64_t explicit_cas = 0);

    /// incr/decr by `delta` (64-bit unsigned: incr wraps, decr stops at 0). The value must be
    /// decimal digits (at most 20); anything else: non_numeric. With `autoviv`, a missing key is
    /// created with `initial` and expiry *autoviv (meta ma N/J).
    arith_result arith(std::string_view key, std::uint64_t hash, bool incr, std::uint64_t delta, std::uint32_t now,
                       std::uint64_t compare_cas = 0, std::optional<std::uint32_t> autoviv = std::nullopt,
                       std::uint64_t initial = 0);

    delete_status remove(std::string_view key, std::uint64_t hash, std::uint32_t now, std::uint64_t compare_cas = 0);
    /// Set a live item's expiry; false when missing.
    bool touch(std::string_view key, std::uint64_t hash, std::uint32_t expiry, std::uint32_t now);

    /// Invalidate every item stored before this call (they are freed lazily or by sweep()).
    void flush_all() noexcept;
    /// Free up to `max_buckets` buckets' worth of expired and flushed items, continuing where the
    /// previous call stopped. Returns the items freed.
    std::size_t sweep(std::uint32_t now, std::size_t max_buckets);

    const cache_stats& stats() const noexcept { return _stats; }
    cache_stats& stats() noexcept { return _stats; }
    lsa::region_stats region_statistics() const noexcept { return _region.statistics(); }
    std::size_t memory_limit() const noexcept { return _region.budget(); }
    /// Change this shard's memory share (cache_memlimit): lowering it evicts at once.
    void set_memory_limit(std::size_t bytes) { _region.set_budget(std::max(bytes, 2 * lsa::region::segment_size)); }
    std::size_t max_item_size() const noexcept { return _max_item_size; }
    /// Bytes an item of this key and value length takes against -I.
    static std::size_t item_size(std::size_t key_len, std::size_t value_len) noexcept;

    /// Values larger than this are split into chunks.
    static constexpr std::size_t chunk_size = 32 * 1024;

private:
    struct item;
    static constexpr std::uint32_t nil = UINT32_MAX;

    lsa::region _region;
    std::size_t _max_item_size;
    std::vector<std::uint32_t> _buckets;  // handle index of the chain's first item, or nil
    std::uint32_t _lru_head = nil;        // most recently used
    std::uint32_t _lru_tail = nil;
    std::uint64_t _next_cas = 1;
    std::uint16_t _gen = 0;  // flush generation: items of an older one were flushed (item::gen)
    std::size_t _sweep_pos = 0;
    cache_stats _stats;

    item* at(std::uint32_t idx) const noexcept;
    std::uint32_t find(std::string_view key, std::uint64_t hash) const noexcept;
    /// find() plus lazy expiry: an expired/flushed item is freed and nil returned (`why` says which).
    std::uint32_t find_live(std::string_view key, std::uint64_t hash, std::uint32_t now, int* why = nullptr);
    bool is_dead(const item* it, std::uint32_t now) const noexcept;
    void lru_unlink(std::uint32_t idx) noexcept;
    void lru_push_front(std::uint32_t idx) noexcept;
    void index_insert(std::uint32_t idx) noexcept;
    void index_remove(std::uint32_t idx) noexcept;
    void maybe_grow();
    /// Unlink from the index and the LRU, free the chunks and the item.
    void unlink_and_free(std::uint32_t idx) noexcept;
    /// Free every item (they were all flushed): flush_all() does it when the 16-bit generation
    /// wraps, so that no unswept item can carry a generation number that becomes current again.
    void free_all_flushed() noexcept;
    bool evict_one();
    /// Allocate and fill a new item (not linked anywhere yet). `parts` are concatenated as the
    /// value; a part may be a handle index into old item (read through the region after each
    /// allocation). Throws std::bad_alloc when nothing can be evicted.
    std::uint32_t make_item(std::string_view key, std::uint64_t hash, std::uint32_t flags, std::uint32_t expiry,
                            std::size_t value_len, std::uint32_t old_idx, bool old_first, std::string_view value);
    void copy_value(std::uint32_t idx, std::string& out) const;
    void info_of(const item* it, std::uint32_t idx, bool want_value, item_info& info) const;
};

}  // namespace reef::memcached
