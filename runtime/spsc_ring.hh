// A bounded single-producer/single-consumer ring of pointers between two threads: the only
// shared-memory channel between shards. The producer and consumer each keep their index on their
// own cache line plus a cached copy of the other side's, so in steady state a batch costs one
// release store on each side and no cache line bounces per item.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>

namespace reef::internal {

inline constexpr std::size_t cache_line_size = 64;

template <typename T>
class spsc_ring {
    static_assert(std::is_trivially_copyable_v<T>);

    // Written by the producer.
    struct alignas(cache_line_size) producer_side {
        std::atomic<std::size_t> tail{0};  // published: items [head, tail) are readable
        std::size_t local_tail = 0;        // items written but not yet published
        std::size_t cached_head = 0;       // consumer's head as last seen
    };
    // Written by the consumer.
    struct alignas(cache_line_size) consumer_side {
        std::atomic<std::size_t> head{0};
        std::size_t cached_tail = 0;
    };

    producer_side _p;
    consumer_side _c;
    std::size_t _capacity;
    std::size_t _mask;
    std::unique_ptr<T[]> _items;

public:
    /// capacity is rounded up to a power of two.
    explicit spsc_ring(std::size_t capacity) {
        std::size_t c = 1;
        while (c < capacity) {
            c <<= 1;
        }
        _capacity = c;
        _mask = c - 1;
        _items = std::make_unique<T[]>(c);
    }

    std::size_t capacity() const noexcept { return _capacity; }

    // ---- producer ----
    /// Room for at least n more items (looking at the consumer's progress only when needed)?
    bool producer_has_room(std::size_t n = 1) noexcept {
        if (_p.local_tail + n - _p.cached_head <= _capacity) {
            return true;
        }
        _p.cached_head = _c.head.load(std::memory_order_acquire);
        return _p.local_tail + n - _p.cached_head <= _capacity;
    }
    /// Write one item; the caller checked producer_has_room(). Not visible until publish().
    void push(T v) noexcept { _items[_p.local_tail++ & _mask] = v; }
    /// Make pushed items visible to the consumer. Returns whether anything was published.
    bool publish() noexcept {
        if (_p.local_tail == _p.tail.load(std::memory_order_relaxed)) {
            return false;
        }
        _p.tail.store(_p.local_tail, std::memory_order_release);
        return true;
    }

    // ---- consumer ----
    /// Pop up to max items into out; returns how many.
    std::size_t pop(T* out, std::size_t max) noexcept {
        std::size_t head = _c.head.load(std::memory_order_relaxed);
        if (head == _c.cached_tail) {
            _c.cached_tail = _p.tail.load(std::memory_order_acquire);
            if (head == _c.cached_tail) {
                return 0;
            }
        }
        std::size_t n = std::min(max, _c.cached_tail - head);
        for (std::size_t i = 0; i < n; ++i) {
            out[i] = _items[(head + i) & _mask];
        }
        _c.head.store(head + n, std::memory_order_release);
        return n;
    }
    /// Is anything published and not yet popped? (Consumer side; cheap.)
    bool consumer_has_items() noexcept {
        std::size_t head = _c.head.load(std::memory_order_relaxed);
        if (head != _c.cached_tail) {
            return true;
        }
        _c.cached_tail = _p.tail.load(std::memory_order_acquire);
        return head != _c.cached_tail;
    }
};

}  // namespace reef::internal
