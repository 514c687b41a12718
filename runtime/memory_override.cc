// Replaces the C and C++ allocation functions with Reef's allocator. Built only with
// -Dallocator=reef, into a small static library that reef_runtime_dep links whole, so every
// executable built against the runtime defines malloc itself (shared libraries resolve to it by
// ELF interposition, as glibc's manual prescribes for replacing malloc).
//
// Pointers outside Reef's reservation can only come from glibc's own allocator (__libc_malloc,
// or memory handed out before this allocator was reachable); they are passed back to glibc.
//
// The operator new/delete definitions are weak: a program that replaces them itself (the unit
// tests that count allocations do) keeps its own, which then reach Reef through malloc.
#include "runtime/memory.hh"
#include "runtime/memory_impl.hh"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <new>

extern "C" {
void* __libc_realloc(void* p, std::size_t n);
void __libc_free(void* p);
}

namespace reef::memory::internal {

bool override_linked() noexcept { return true; }

void foreign_free(void* p) noexcept { __libc_free(p); }

}  // namespace reef::memory::internal

namespace {

namespace mi = reef::memory::internal;

inline void* set_enomem_if_null(void* p) noexcept {
    if (__builtin_expect(p == nullptr, 0)) {
        errno = ENOMEM;
    }
    return p;
}

inline void* aligned(std::size_t align, std::size_t n) noexcept {
    return set_enomem_if_null(mi::allocate_aligned_nothrow(align, n, nullptr));
}

inline void* attempt(std::size_t n, std::size_t align) noexcept {
    return align > 16 ? mi::allocate_aligned_nothrow(align, n, nullptr) : mi::allocate_fast(n);
}

// operator new's failure path: call the new-handler and retry until it gives up (throws, or there
// is none).
[[gnu::noinline]] void* new_failed(std::size_t n, std::size_t align) {
    for (;;) {
        std::new_handler h = std::get_new_handler();
        if (!h) {
            throw std::bad_alloc();
        }
        h();
        if (void* p = attempt(n, align)) {
            return p;
        }
    }
}

void* new_failed_nothrow(std::size_t n, std::size_t align) noexcept {
    try {
        return new_failed(n, align);
    } catch (...) {
        return nullptr;
    }
}

inline void* new_impl(std::size_t n, std::size_t align) {
    if (void* p = attempt(n, align); __builtin_expect(p != nullptr, 1)) {
        return p;
    }
    return new_failed(n, align);
}

inline void* new_nothrow_impl(std::size_t n, std::size_t align) noexcept {
    if (void* p = attempt(n, align); __builtin_expect(p != nullptr, 1)) {
        return p;
    }
    return new_failed_nothrow(n, align);
}

}  // namespace

extern "C" {

void* malloc(std::size_t n) noexcept { return set_enomem_if_null(mi::allocate_fast(n)); }

void free(void* p) noexcept { mi::free_fast(p); }

void* calloc(std::size_t nmemb, std::size_t size) noexcept {
    std::size_t n;
    if (__builtin_mul_overflow(nmemb, size, &n)) {
        errno = ENOMEM;
        return nullptr;
    }
    return set_enomem_if_null(mi::allocate_zeroed(n));
}

void* realloc(void* p, std::size_t n) noexcept {
    if (p && !mi::owns(p)) {
        return __libc_realloc(p, n);
    }
    void* q = mi::reallocate_nothrow(p, n);
    if (!q && n != 0) {
        errno = ENOMEM;
    }
    return q;
}

void* reallocarray(void* p, std::size_t nmemb, std::size_t size) noexcept {
    std::size_t n;
    if (__builtin_mul_overflow(nmemb, size, &n)) {
        errno = ENOMEM;
        return nullptr;
    }
    return realloc(p, n);
}

int posix_memalign(void** out, std::size_t align, std::size_t n) noexcept {
    if (align < sizeof(void*) || !std::has_single_bit(align)) {
        return EINVAL;
    }
    void* p = mi::allocate_aligned_nothrow(align, n, nullptr);
    if (!p) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}

void* aligned_alloc(std::size_t align, std::size_t n) noexcept {
    if (!std::has_single_bit(align)) {
        errno = EINVAL;
        return nullptr;
    }
    return aligned(align, n);
}

void* memalign(std::size_t align, std::size_t n) noexcept {
    // glibc's behaviour: a non-power-of-two alignment is rounded up.
    if (align > (std::size_t(1) << 62)) {
        errno = EINVAL;
        return nullptr;
    }
    return aligned(std::bit_ceil(std::max<std::size_t>(align, 1)), n);
}

void* valloc(std::size_t n) noexcept { return aligned(mi::page_bytes, n); }

void* pvalloc(std::size_t n) noexcept {
    if (n > SIZE_MAX - mi::page_bytes) {
        errno = ENOMEM;
        return nullptr;
    }
    return aligned(mi::page_bytes, (n + mi::page_bytes - 1) & ~(mi::page_bytes - 1));
}

std::size_t malloc_usable_size(void* p) noexcept { return mi::owned_usable_size(p); }

int malloc_trim(std::size_t) noexcept { return reef::memory::release_free_memory() > 0 ? 1 : 0; }

}  // extern "C"

#define REEF_WEAK __attribute__((weak))

REEF_WEAK void* operator new(std::size_t n) { return new_impl(n, 0); }
REEF_WEAK void* operator new[](std::size_t n) { return new_impl(n, 0); }
REEF_WEAK void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return new_nothrow_impl(n, 0); }
REEF_WEAK void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return new_nothrow_impl(n, 0); }
REEF_WEAK void* operator new(std::size_t n, std::align_val_t al) { return new_impl(n, std::size_t(al)); }
REEF_WEAK void* operator new[](std::size_t n, std::align_val_t al) { return new_impl(n, std::size_t(al)); }
REEF_WEAK void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return new_nothrow_impl(n, std::size_t(al));
}
REEF_WEAK void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return new_nothrow_impl(n, std::size_t(al));
}

REEF_WEAK void operator delete(void* p) noexcept { mi::free_fast(p); }
REEF_WEAK void operator delete[](void* p) noexcept { mi::free_fast(p); }
REEF_WEAK void operator delete(void* p, std::size_t) noexcept { mi::free_fast(p); }
REEF_WEAK void operator delete[](void* p, std::size_t) noexcept { mi::free_fast(p); }
REEF_WEAK void operator delete(void* p, std::align_val_t) noexcept { mi::free_fast(p); }
REEF_WEAK void operator delete[](void* p, std::align_val_t) noexcept { mi::free_fast(p); }
REEF_WEAK void operator delete(void* p, std::size_t, std::align_val_t) noexcept { mi::free_fast(p); }
REEF_WEAK void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { mi::free_fast(p); }
REEF_WEAK void operator delete(void* p, const std::nothrow_t&) noexcept { mi::free_fast(p); }
REEF_WEAK void operator delete[](void* p, const std::nothrow_t&) noexcept { mi::free_fast(p); }
REEF_WEAK void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { mi::free_fast(p); }
REEF_WEAK void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { mi::free_fast(p); }
