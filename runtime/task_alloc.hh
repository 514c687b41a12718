// Per-thread free lists for the small, short-lived objects the runtime allocates on every unready
// future: continuations and coroutine frames. They are allocated and freed on the same shard, so a
// thread-local list needs no lock and costs a few instructions instead of a malloc call.
#pragma once

#include <cstddef>
#include <new>

namespace reef::internal {

class task_pool {
public:
    static constexpr std::size_t granule = 16;
    static constexpr std::size_t max_size = 1024;
    static constexpr std::size_t classes = max_size / granule + 1;
    // A list longer than this returns memory to the system allocator, so a burst does not pin
    // memory for ever.
    static constexpr unsigned max_cached = 512;

    struct node {
        node* next;
    };
    node* heads[classes];
    unsigned counts[classes];
};

// Zero-initialized, trivially destructible: no TLS guard on access.
inline thread_local task_pool tl_task_pool;

void task_pool_register_cleanup() noexcept;

inline void* task_alloc(std::size_t n) {
#ifndef __SANITIZE_ADDRESS__
    if (n <= task_pool::max_size) {
        auto& p = tl_task_pool;
        std::size_t c = (n + task_pool::granule - 1) / task_pool::granule;
        if (auto* h = p.heads[c]) {
            p.heads[c] = h->next;
            --p.counts[c];
            return h;
        }
        task_pool_register_cleanup();
        return ::operator new(c * task_pool::granule);
    }
#endif
    return ::operator new(n);
}

inline void task_free(void* ptr, std::size_t n) noexcept {
#ifndef __SANITIZE_ADDRESS__
    if (n <= task_pool::max_size) {
        auto& p = tl_task_pool;
        std::size_t c = (n + task_pool::granule - 1) / task_pool::granule;
        if (p.counts[c] < task_pool::max_cached) {
            auto* h = static_cast<task_pool::node*>(ptr);
            h->next = p.heads[c];
            p.heads[c] = h;
            ++p.counts[c];
            return;
        }
        ::operator delete(ptr, c * task_pool::granule);
        return;
    }
#endif
    ::operator delete(ptr, n);
}

/// Mix-in giving a class the pool's operator new/delete.
struct task_pool_allocated {
    static void* operator new(std::size_t n) { return task_alloc(n); }
    static void operator delete(void* p, std::size_t n) noexcept { task_free(p, n); }
};

}  // namespace reef::internal
