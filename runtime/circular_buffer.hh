// A growable ring buffer (power-of-two capacity): O(1) push/pop at both ends, no allocation once
// grown to the working size. The reactor's run queues and many runtime queues use it.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace reef {

template <typename T>
class circular_buffer {
    T* _buf = nullptr;
    std::size_t _cap = 0;    // power of two, or 0
    std::size_t _begin = 0;  // free-running indices; masked on access
    std::size_t _end = 0;

    std::size_t mask(std::size_t i) const noexcept { return i & (_cap - 1); }
    void grow() {
        std::size_t ncap = _cap ? _cap * 2 : 16;
        T* nbuf = std::allocator<T>().allocate(ncap);
        std::size_t n = size();
        for (std::size_t i = 0; i < n; ++i) {
            T& src = _buf[mask(_begin + i)];
            new (&nbuf[i]) T(std::move(src));
            src.~T();
        }
        if (_buf) {
            std::allocator<T>().deallocate(_buf, _cap);
        }
        _buf = nbuf;
        _cap = ncap;
        _begin = 0;
        _end = n;
    }

public:
    circular_buffer() noexcept = default;
    circular_buffer(circular_buffer&& x) noexcept
        : _buf(std::exchange(x._buf, nullptr)), _cap(std::exchange(x._cap, 0)),
          _begin(std::exchange(x._begin, 0)), _end(std::exchange(x._end, 0)) {}
    circular_buffer& operator=(circular_buffer&& x) noexcept {
        if (this != &x) {
            this->~circular_buffer();
            new (this) circular_buffer(std::move(x));
        }
        return *this;
    }
    ~circular_buffer() {
        clear();
        if (_buf) {
            std::allocator<T>().deallocate(_buf, _cap);
        }
    }

    std::size_t size() const noexcept { return _end - _begin; }
    bool empty() const noexcept { return _begin == _end; }
    std::size_t capacity() const noexcept { return _cap; }

    template <typename... A>
    T& emplace_back(A&&... a) {
        if (size() == _cap) {
            grow();
        }
        T* p = new (&_buf[mask(_end)]) T(std::forward<A>(a)...);
        ++_end;
        return *p;
    }
    void push_back(T v) { emplace_back(std::move(v)); }
    template <typename... A>
    T& emplace_front(A&&... a) {
        if (size() == _cap) {
            grow();
        }
        T* p = new (&_buf[mask(_begin - 1)]) T(std::forward<A>(a)...);
        --_begin;
        return *p;
    }
    void push_front(T v) { emplace_front(std::move(v)); }

    T& front() noexcept { return _buf[mask(_begin)]; }
    const T& front() const noexcept { return _buf[mask(_begin)]; }
    T& back() noexcept { return _buf[mask(_end - 1)]; }
    const T& back() const noexcept { return _buf[mask(_end - 1)]; }
    T& operator[](std::size_t i) noexcept { return _buf[mask(_begin + i)]; }
    const T& operator[](std::size_t i) const noexcept { return _buf[mask(_begin + i)]; }

    void pop_front() noexcept {
        _buf[mask(_begin)].~T();
        ++_begin;
    }
    void pop_back() noexcept {
        --_end;
        _buf[mask(_end)].~T();
    }
    void clear() noexcept {
        while (!empty()) {
            pop_front();
        }
    }
};

}  // namespace reef
