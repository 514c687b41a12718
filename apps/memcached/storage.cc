#include "apps/memcached/storage.hh"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <new>

namespace reef::memcached {

std::uint64_t key_hash(std::string_view key) noexcept {
    // 8 bytes at a time, mixed with a multiply-rotate, then a full avalanche (MurmurHash3's
    // finalizer) so that both the low bits (the bucket) and the high half (the shard) are spread.
    std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ (key.size() * 0xff51afd7ed558ccdULL);
    const char* p = key.data();
    std::size_t n = key.size();
    while (n >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        h = (h ^ (w * 0xc4ceb9fe1a85ec53ULL));
        h = ((h << 29) | (h >> 35)) * 0x9e3779b97f4a7c15ULL;
        p += 8;
        n -= 8;
    }
    if (n) {
        std::uint64_t w = 0;
        std::memcpy(&w, p, n);
        h = (h ^ (w * 0xc4ceb9fe1a85ec53ULL));
        h = ((h << 29) | (h >> 35)) * 0x9e3779b97f4a7c15ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

namespace {

// Read for every request: the coarse clock costs a few ns where the precise one costs a TSC read,
// and memcached's times are in seconds anyway.
std::int64_t steady_seconds() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return std::int64_t(ts.tv_sec);
}

}  // namespace

server_clock::server_clock() : _start_unix(std::time(nullptr) - 2), _start_mono(steady_seconds() - 2) {}

std::uint32_t server_clock::now() const noexcept { return std::uint32_t(steady_seconds() - _start_mono + _offset); }

std::uint32_t to_expiry(std::int64_t exptime, std::uint32_t now, std::int64_t start_unix) noexcept {
    if (exptime == 0) {
        return 0;
    }
    if (exptime < 0) {
        return 1;  // in the past of every server time: expired at once
    }
    if (exptime > max_relative_exptime) {
        if (exptime <= start_unix) {
            return 1;
        }
        std::int64_t rel = exptime - start_unix;
        return rel > std::int64_t(UINT32_MAX) ? UINT32_MAX : std::uint32_t(rel);
    }
    return std::uint32_t(std::int64_t(now) + exptime);
}

cache_stats& cache_stats::operator+=(const cache_stats& o) noexcept {
    cmd_get += o.cmd_get;
    get_hits += o.get_hits;
    get_misses += o.get_misses;
    get_expired += o.get_expired;
    get_flushed += o.get_flushed;
    cmd_set += o.cmd_set;
    cmd_touch += o.cmd_touch;
    touch_hits += o.touch_hits;
    touch_misses += o.touch_misses;
    delete_hits += o.delete_hits;
    delete_misses += o.delete_misses;
    incr_hits += o.incr_hits;
    incr_misses += o.incr_misses;
    decr_hits += o.decr_hits;
    decr_misses += o.decr_misses;
    cas_hits += o.cas_hits;
    cas_misses += o.cas_misses;
    cas_badval += o.cas_badval;
    cmd_flush += o.cmd_flush;
    evictions += o.evictions;
    expired_unfetched += o.expired_unfetched;
    evicted_unfetched += o.evicted_unfetched;
    reclaimed += o.reclaimed;
    total_items += o.total_items;
    curr_items += o.curr_items;
    bytes += o.bytes;
    store_too_large += o.store_too_large;
    store_no_memory += o.store_no_memory;
    return *this;
}

// The item object: this header, the key, then the value (inline) or the chunks' handle indexes.
// Links (chain, LRU) are handle indexes, so the region moves items with memcpy.
// The header is the per-item overhead every cached value pays (10 M small items: 10 M headers),
// so it is packed to 44 bytes: only 4-byte fields (the 64-bit cas is two words), the low 32 bits
// of the key hash (all the bucket index ever uses), a 16-bit flush generation (flush_all() frees
// everything when it wraps) and one byte of flags. With 16-byte LSA alignment a 32-byte key and
// a 100-byte value then take 176 bytes instead of 192.
struct cache_shard::item {
    std::uint32_t cas_words[2];
    std::uint32_t hash;  // low 32 bits of key_hash()
    std::uint32_t next;  // hash chain
    std::uint32_t lru_prev;
    std::uint32_t lru_next;
    std::uint32_t expiry;
    std::uint32_t last_access;
    std::uint32_t flags;
    std::uint32_t value_len;
    std::uint16_t gen;  // flush generation at store time
    std::uint8_t key_len;
    std::uint8_t chunked : 1;
    std::uint8_t fetched : 1;
    std::uint8_t in_lru : 1;
    std::uint8_t active : 1;  // used since it last reached the LRU tail (see evict_one)

    std::uint64_t cas() const noexcept {
        std::uint64_t c;
        std::memcpy(&c, cas_words, sizeof(c));
        return c;
    }
    void set_cas(std::uint64_t c) noexcept { std::memcpy(cas_words, &c, sizeof(c)); }
    char* key() noexcept { return reinterpret_cast<char*>(this + 1); }
    const char* key() const noexcept { return reinterpret_cast<const char*>(this + 1); }
    std::string_view key_view() const noexcept { return {key(), key_len}; }
    char* body() noexcept { return key() + key_len; }
    const char* body() const noexcept { return key() + key_len; }
    std::size_t chunks() const noexcept { return (value_len + chunk_size - 1) / chunk_size; }
    std::uint32_t chunk(std::size_t i) const noexcept {
        std::uint32_t c;
        std::memcpy(&c, body() + 4 * i, 4);
        return c;
    }
};

namespace {
constexpr std::size_t item_header_size = 44;
}

std::size_t cache_shard::item_size(std::size_t key_len, std::size_t value_len) noexcept {
    return sizeof(item) + key_len + value_len;
}

cache_shard::cache_shard(std::size_t memory_bytes, std::size_t max_item_size)
    : _region(std::max(memory_bytes, 2 * lsa::region::segment_size)), _max_item_size(max_item_size),
      _buckets(1024, nil) {
    static_assert(sizeof(item) == item_header_size);
    _region.set_evictor([this] { return evict_one(); });
}

cache_shard::~cache_shard() { _region.set_evictor({}); }

cache_shard::item* cache_shard::at(std::uint32_t idx) const noexcept { return _region.get<item>(lsa::handle(idx)); }

std::uint32_t cache_shard::find(std::string_view key, std::uint64_t hash) const noexcept {
    for (std::uint32_t i = _buckets[hash & (_buckets.size() - 1)]; i != nil;) {
        const item* it = at(i);
        if (it->hash == std::uint32_t(hash) && it->key_view() == key) {
            return i;
        }
        i = it->next;
    }
    return nil;
}

bool cache_shard::is_dead(const item* it, std::uint32_t now) const noexcept {
    return it->gen != _gen || (it->expiry != 0 && it->expiry <= now);
}

std::uint32_t cache_shard::find_live(std::string_view key, std::uint64_t hash, std::uint32_t now, int* why) {
    std::uint32_t i = find(key, hash);
    if (i == nil) {
        return nil;
    }
    item* it = at(i);
    if (!is_dead(it, now)) {
        return i;
    }
    if (why) {
        *why = it->gen != _gen ? 2 : 1;
    }
    if (it->gen == _gen && !it->fetched) {
        ++_stats.expired_unfetched;
    }
    ++_stats.reclaimed;
    unlink_and_free(i);
    return nil;
}

void cache_shard::lru_unlink(std::uint32_t idx) noexcept {
    item* it = at(idx);
    if (!it->in_lru) {
        return;
    }
    if (it->lru_prev != nil) {
        at(it->lru_prev)->lru_next = it->lru_next;
    } else {
        _lru_head = it->lru_next;
    }
    if (it->lru_next != nil) {
        at(it->lru_next)->lru_prev = it->lru_prev;
    } else {
        _lru_tail = it->lru_prev;
    }
    it->lru_prev = it->lru_next = nil;
    it->in_lru = 0;
}

void cache_shard::lru_push_front(std::uint32_t idx) noexcept {
    item* it = at(idx);
    it->lru_prev = nil;
    it->lru_next = _lru_head;
    if (_lru_head != nil) {
        at(_lru_head)->lru_prev = idx;
    } else {
        _lru_tail = idx;
    }
    _lru_head = idx;
    it->in_lru = 1;
}

void cache_shard::index_insert(std::uint32_t idx) noexcept {
    item* it = at(idx);
    auto& b = _buckets[it->hash & (_buckets.size() - 1)];
    it->next = b;
    b = idx;
}

void cache_shard::index_remove(std::uint32_t idx) noexcept {
    const item* it = at(idx);
    std::uint32_t* link = &_buckets[it->hash & (_buckets.size() - 1)];
    while (*link != nil) {
        if (*link == idx) {
            *link = it->next;
            return;
        }
        link = &at(*link)->next;
    }
}

void cache_shard::maybe_grow() {
    if (_stats.curr_items <= _buckets.size()) {
        return;
    }
    std::vector<std::uint32_t> nb;
    try {
        nb.assign(_buckets.size() * 2, nil);
    } catch (const std::bad_alloc&) {
        return;  // longer chains, still correct
    }
    // The allocation above may have made the region evict (through the allocator's reclaimer), so
    // the chains are walked only now.
    const std::size_t mask = nb.size() - 1;
    for (std::uint32_t head : _buckets) {
        for (std::uint32_t i = head; i != nil;) {
            item* it = at(i);
            std::uint32_t next = it->next;
            auto& b = nb[it->hash & mask];
            it->next = b;
            b = i;
            i = next;
        }
    }
    _buckets.swap(nb);
    _sweep_pos = 0;
}

void cache_shard::unlink_and_free(std::uint32_t idx) noexcept {
    index_remove(idx);
    lru_unlink(idx);
    item* it = at(idx);
    _stats.bytes -= it->key_len + it->value_len;
    --_stats.curr_items;
    if (it->chunked) {
        const std::size_t n = it->chunks();
        for (std::size_t c = 0; c < n; ++c) {
            _region.free(lsa::handle(at(idx)->chunk(c)));  // free() never moves objects
        }
    }
    _region.free(lsa::handle(idx));
}

bool cache_shard::evict_one() {
    // Second chance: an item used since it was last here goes back to the head, unmarked. At
    // most max_second_chances of them per eviction, so that a cache where everything is hot
    // costs a bounded walk, not a pass over every item; then the tail goes, used or not.
    constexpr int max_second_chances = 64;
    for (int spared = 0; _lru_tail != nil && spared < max_second_chances; ++spared) {
        item* tail = at(_lru_tail);
        if (!tail->active) {
            break;
        }
        tail->active = 0;
        std::uint32_t idx = _lru_tail;
        lru_unlink(idx);
        lru_push_front(idx);
    }
    if (_lru_tail == nil) {
        return false;
    }
    std::uint32_t victim = _lru_tail;
    const item* it = at(victim);
    ++_stats.evictions;
    if (!it->fetched) {
        ++_stats.evicted_unfetched;
    }
    unlink_and_free(victim);
    return true;
}

void cache_shard::copy_value(std::uint32_t idx, std::string& out) const {
    const item* it = at(idx);
    if (!it->chunked) {
        out.append(it->body(), it->value_len);
        return;
    }
    std::size_t left = it->value_len;
    for (std::size_t c = 0; left; ++c) {
        std::size_t n = std::min(left, chunk_size);
        out.append(_region.get<char>(lsa::handle(it->chunk(c))), n);
        left -= n;
    }
}

std::uint32_t cache_shard::make_item(std::string_view key, std::uint64_t hash, std::uint32_t flags,
                                     std::uint32_t expiry, std::size_t value_len, std::uint32_t old_idx, bool old_first,
                                     std::string_view value) {
    // The value is [old][value] (append), [value][old] (prepend) or [value]; `old` is read through
    // its handle after every allocation, since allocating may move it (the caller took it off the
    // LRU, so it cannot be evicted meanwhile).
    auto fill = [&](char* dst, std::size_t off, std::size_t len) {
        std::size_t old_len = old_idx == nil ? 0 : at(old_idx)->value_len;
        std::size_t old_at = old_first ? 0 : value.size();
        std::size_t new_at = old_first ? old_len : 0;
        auto copy_from_old = [&](std::size_t from, std::size_t n, char* d) {
            const item* o = at(old_idx);
            while (n) {
                if (!o->chunked) {
                    std::memcpy(d, o->body() + from, n);
                    return;
                }
                std::size_t c = from / chunk_size, in = from % chunk_size;
                std::size_t k = std::min(n, chunk_size - in);
                std::memcpy(d, _region.get<char>(lsa::handle(o->chunk(c))) + in, k);
                d += k;
                from += k;
                n -= k;
            }
        };
        // Two ranges; copy each one's overlap with [off, off+len).
        auto overlap = [&](std::size_t at_, std::size_t size, auto&& copy) {
            std::size_t b = std::max(off, at_), e = std::min(off + len, at_ + size);
            if (b < e) {
                copy(b - at_, e - b, dst + (b - off));
            }
        };
        if (old_len) {
            overlap(old_at, old_len, copy_from_old);
        }
        overlap(new_at, value.size(),
                [&](std::size_t from, std::size_t n, char* d) { std::memcpy(d, value.data() + from, n); });
    };

    const bool chunked = item_size(key.size(), value_len) > chunk_size;
    const std::size_t nchunks = chunked ? (value_len + chunk_size - 1) / chunk_size : 0;
    std::vector<std::uint32_t> chunks;
    lsa::handle h;
    try {
        chunks.reserve(nchunks);
        for (std::size_t c = 0; c < nchunks; ++c) {
            std::size_t n = std::min(chunk_size, value_len - c * chunk_size);
            chunks.push_back(_region.alloc_handle(n).index());
        }
        h = _region.alloc_handle(sizeof(item) + key.size() + (chunked ? 4 * nchunks : value_len));
    } catch (...) {
        for (auto c : chunks) {
            _region.free(lsa::handle(c));
        }
        throw;
    }
    // No region call from here on: addresses are stable.
    item* it = _region.get<item>(h);
    it->set_cas(0);
    it->hash = std::uint32_t(hash);
    it->next = nil;
    it->lru_prev = it->lru_next = nil;
    it->expiry = expiry;
    it->last_access = 0;
    it->flags = flags;
    it->value_len = std::uint32_t(value_len);
    it->gen = _gen;
    it->key_len = std::uint8_t(key.size());
    it->chunked = chunked;
    it->fetched = 0;
    it->in_lru = 0;
    it->active = 0;
    std::memcpy(it->key(), key.data(), key.size());
    if (!chunked) {
        fill(it->body(), 0, value_len);
    } else {
        for (std::size_t c = 0; c < nchunks; ++c) {
            std::memcpy(it->body() + 4 * c, &chunks[c], 4);
            std::size_t n = std::min(chunk_size, value_len - c * chunk_size);
            fill(_region.get<char>(lsa::handle(chunks[c])), c * chunk_size, n);
        }
    }
    return h.index();
}

void cache_shard::info_of(const item* it, std::uint32_t idx, bool want_value, item_info& info) const {
    info.flags = it->flags;
    info.cas = it->cas();
    info.expiry = it->expiry;
    info.last_access = it->last_access;
    info.fetched_before = it->fetched;
    info.size = it->value_len;
    info.value.clear();
    if (want_value) {
        info.value.reserve(it->value_len);
        copy_value(idx, info.value);
    }
}

std::optional<item_info> cache_shard::get(std::string_view key, std::uint64_t hash, std::uint32_t now, bool want_value,
                                          std::optional<std::uint32_t> touch_expiry) {
    std::optional<item_info> r(std::in_place);
    if (!get(key, hash, now, want_value, touch_expiry, *r)) {
        r.reset();
    }
    return r;
}

bool cache_shard::get(std::string_view key, std::uint64_t hash, std::uint32_t now, bool want_value,
                      std::optional<std::uint32_t> touch_expiry, item_info& out) {
    if (touch_expiry) {
        ++_stats.cmd_touch;
    }
    ++_stats.cmd_get;
    int why = 0;
    std::uint32_t i = find_live(key, hash, now, &why);
    if (i == nil) {
        ++_stats.get_misses;
        if (why == 1) {
            ++_stats.get_expired;
        } else if (why == 2) {
            ++_stats.get_flushed;
        }
        if (touch_expiry) {
            ++_stats.touch_misses;
        }
        return false;
    }
    ++_stats.get_hits;
    if (touch_expiry) {
        ++_stats.touch_hits;
        at(i)->expiry = *touch_expiry;
    }
    // Copying the value may allocate; the allocator's reclaimer must not move items meanwhile.
    lsa::region::reclaim_lock lock(_region);
    item* it = at(i);
    info_of(it, i, want_value, out);
    it->fetched = 1;
    it->active = 1;
    it->last_access = now;
    return true;
}

std::optional<item_info> cache_shard::peek(std::string_view key, std::uint64_t hash, std::uint32_t now) {
    std::uint32_t i = find_live(key, hash, now);
    if (i == nil) {
        return std::nullopt;
    }
    lsa::region::reclaim_lock lock(_region);
    std::optional<item_info> info(std::in_place);
    info_of(at(i), i, false, *info);
    return info;
}

store_result cache_shard::store(store_mode mode, std::string_view key, std::uint64_t hash, std::uint32_t flags,
                                std::uint32_t expiry, std::string_view value, std::uint32_t now,
                                std::uint64_t compare_cas, std::uint64_t explicit_cas) {
    ++_stats.cmd_set;
    std::uint32_t old = find_live(key, hash, now);
    if (mode == store_mode::cas) {
        if (old == nil) {
            ++_stats.cas_misses;
            return {store_status::not_found};
        }
        if (at(old)->cas() != compare_cas) {
            ++_stats.cas_badval;
            return {store_status::exists};
        }
        ++_stats.cas_hits;
    } else if (compare_cas != 0 && old != nil && at(old)->cas() != compare_cas) {
        return {store_status::exists};
    } else if (compare_cas != 0 && old == nil) {
        return {store_status::not_found};
    }
    if ((mode == store_mode::add && old != nil) ||
        (old == nil && (mode == store_mode::replace || mode == store_mode::append || mode == store_mode::prepend))) {
        if (mode == store_mode::add) {
            // memcached's add of an existing key counts as an access to it.
            at(old)->active = 1;
        }
        return {store_status::not_stored};
    }
    const bool concat = mode == store_mode::append || mode == store_mode::prepend;
    const std::size_t len = value.size() + (concat ? at(old)->value_len : 0);
    if (item_size(key.size(), len) > _max_item_size) {
        ++_stats.store_too_large;
        if (mode == store_mode::set && old != nil) {
            unlink_and_free(old);
        }
        return {store_status::too_large};
    }
    if (concat) {
        flags = at(old)->flags;
        expiry = at(old)->expiry;
    }
    if (old != nil) {
        lru_unlink(old);  // so that making room cannot evict it
    }
    std::uint32_t idx;
    try {
        idx = make_item(key, hash, flags, expiry, len, concat ? old : nil, mode == store_mode::append, value);
    } catch (const std::bad_alloc&) {
        ++_stats.store_no_memory;
        if (old != nil) {
            lru_push_front(old);
        }
        return {store_status::no_memory};
    }
    if (old != nil) {
        unlink_and_free(old);
    }
    item* it = at(idx);
    it->set_cas(explicit_cas ? explicit_cas : _next_cas++);
    it->last_access = now;
    std::uint64_t cas = it->cas();
    _stats.bytes += key.size() + len;
    ++_stats.curr_items;
    ++_stats.total_items;
    index_insert(idx);
    lru_push_front(idx);
    maybe_grow();
    return {store_status::stored, cas};
}

arith_result cache_shard::arith(std::string_view key, std::uint64_t hash, bool incr, std::uint64_t delta,
                                std::uint32_t now, std::uint64_t compare_cas, std::optional<std::uint32_t> autoviv,
                                std::uint64_t initial) {
    auto& hits = incr ? _stats.incr_hits : _stats.decr_hits;
    auto& misses = incr ? _stats.incr_misses : _stats.decr_misses;
    std::uint32_t old = find_live(key, hash, now);
    arith_result r;
    std::uint64_t v = 0;
    std::uint32_t flags = 0, expiry = 0;
    if (old == nil) {
        ++misses;
        if (!autoviv) {
            r.status = arith_status::not_found;
            return r;
        }
        v = initial;
        expiry = *autoviv;
        r.created = true;
    } else {
        const item* it = at(old);
        if (compare_cas != 0 && it->cas() != compare_cas) {
            r.status = arith_status::exists;
            return r;
        }
        std::string cur;
        {
            lsa::region::reclaim_lock lock(_region);
            if (it->value_len > 64) {
                r.status = arith_status::non_numeric;
                return r;
            }
            copy_value(old, cur);
        }
        // memcached's rule: decimal digits, optionally followed by spaces (decr pads), at most a
        // 64-bit value.
        std::size_t end = cur.find_last_not_of(' ');
        if (end == std::string::npos) {
            r.status = arith_status::non_numeric;
            return r;
        }
        std::size_t digits = end + 1;
        if (digits > 20) {
            r.status = arith_status::non_numeric;
            return r;
        }
        unsigned __int128 acc = 0;
        for (std::size_t k = 0; k < digits; ++k) {
            char ch = cur[k];
            if (ch < '0' || ch > '9') {
                r.status = arith_status::non_numeric;
                return r;
            }
            acc = acc * 10 + unsigned(ch - '0');
        }
        if (acc > UINT64_MAX) {
            r.status = arith_status::non_numeric;
            return r;
        }
        ++hits;
        v = std::uint64_t(acc);
        if (incr) {
            v += delta;  // wraps, as memcached's does
        } else {
            v = delta > v ? 0 : v - delta;
        }
        it = at(old);
        flags = it->flags;
        expiry = it->expiry;
    }
    char buf[24];
    int n = std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v));
    auto st = store(old == nil ? store_mode::add : store_mode::set, key, hash, flags, expiry,
                    std::string_view(buf, std::size_t(n)), now);
    --_stats.cmd_set;  // not a set as far as the stats go
    if (st.status != store_status::stored) {
        r.status = arith_status::no_memory;
        return r;
    }
    r.status = arith_status::ok;
    r.value = v;
    r.cas = st.cas;
    return r;
}

delete_status cache_shard::remove(std::string_view key, std::uint64_t hash, std::uint32_t now,
                                  std::uint64_t compare_cas) {
    std::uint32_t i = find_live(key, hash, now);
    if (i == nil) {
        ++_stats.delete_misses;
        return delete_status::not_found;
    }
    if (compare_cas != 0 && at(i)->cas() != compare_cas) {
        return delete_status::exists;
    }
    ++_stats.delete_hits;
    unlink_and_free(i);
    return delete_status::deleted;
}

bool cache_shard::touch(std::string_view key, std::uint64_t hash, std::uint32_t expiry, std::uint32_t now) {
    ++_stats.cmd_touch;
    std::uint32_t i = find_live(key, hash, now);
    if (i == nil) {
        ++_stats.touch_misses;
        return false;
    }
    ++_stats.touch_hits;
    item* it = at(i);
    it->expiry = expiry;
    it->last_access = now;
    it->active = 1;
    return true;
}

void cache_shard::flush_all() noexcept {
    ++_stats.cmd_flush;
    if (++_gen == 0) [[unlikely]] {
        free_all_flushed();
    }
}

void cache_shard::free_all_flushed() noexcept {
    for (auto& head : _buckets) {
        while (head != nil) {
            ++_stats.reclaimed;
            unlink_and_free(head);  // unlinks it from this chain: head moves on
        }
    }
}

std::size_t cache_shard::sweep(std::uint32_t now, std::size_t max_buckets) {
    std::size_t freed = 0;
    for (std::size_t n = 0; n < max_buckets && n < _buckets.size(); ++n) {
        if (_sweep_pos >= _buckets.size()) {
            _sweep_pos = 0;
        }
        for (std::uint32_t i = _buckets[_sweep_pos]; i != nil;) {
            item* it = at(i);
            std::uint32_t next = it->next;
            if (is_dead(it, now)) {
                if (it->gen == _gen && !it->fetched) {
                    ++_stats.expired_unfetched;
                }
                ++_stats.reclaimed;
                unlink_and_free(i);
                ++freed;
            }
            i = next;
        }
        ++_sweep_pos;
    }
    return freed;
}

}  // namespace reef::memcached
