// temporary_buffer<CharType>: a view of bytes plus the deleter that owns them.
//
// The unit of I/O: network packets, file reads and stream buffers all travel as temporary_buffers.
// A buffer can be shared (another view of the same memory, or of a sub-range) without copying;
// the memory is released when the last buffer sharing it is destroyed.
//
// Contract:
//  - Single-shard, like deleter: all shares of a buffer are destroyed on the shard that created
//    the memory (use foreign_ptr to lend one to another shard).
//  - Move-only; moves never throw and leave the source empty. Copies are explicit: share() (same
//    memory) or clone() (new memory).
//  - Ranges are the caller's responsibility: trim/trim_front/prefix/share(pos, len) past the end,
//    or operator[] out of range, is a bug caught by assertions in debug builds.
//  - Writing through get_write() is visible in every share of the same memory.
#pragma once

#include "runtime/deleter.hh"

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace reef {

template <typename CharType>
class temporary_buffer {
    static_assert(sizeof(CharType) == 1, "temporary_buffer holds bytes: char, signed/unsigned char, (u)int8_t");

    CharType* _buffer = nullptr;
    std::size_t _size = 0;
    deleter _deleter;

public:
    using value_type = CharType;
    using pointer = CharType*;
    using const_pointer = const CharType*;
    using iterator = CharType*;
    using const_iterator = const CharType*;
    using size_type = std::size_t;

    /// An empty buffer: no memory, no owner.
    temporary_buffer() noexcept = default;

    /// A new, uninitialized buffer of `size` bytes from malloc (freed by the last share). Throws
    /// std::bad_alloc if memory is short. size 0 gives an empty buffer without allocating.
    explicit temporary_buffer(std::size_t size) : _size(size) {
        if (size) {
            _buffer = static_cast<CharType*>(std::malloc(size));
            if (!_buffer) {
                throw std::bad_alloc();
            }
            _deleter = make_free_deleter(_buffer);
        }
    }

    /// A copy of [src, src + size) in new memory (see the size constructor for errors).
    temporary_buffer(const CharType* src, std::size_t size) : temporary_buffer(size) {
        if (size) {
            std::memcpy(_buffer, src, size);
        }
    }

    /// A view of [buf, buf + size) whose memory `d` keeps alive. Allocates nothing.
    temporary_buffer(CharType* buf, std::size_t size, deleter d) noexcept
        : _buffer(buf), _size(size), _deleter(std::move(d)) {}

    temporary_buffer(temporary_buffer&& x) noexcept
        : _buffer(std::exchange(x._buffer, nullptr)), _size(std::exchange(x._size, 0)),
          _deleter(std::move(x._deleter)) {}
    temporary_buffer& operator=(temporary_buffer&& x) noexcept {
        if (this != &x) {
            _buffer = std::exchange(x._buffer, nullptr);
            _size = std::exchange(x._size, 0);
            _deleter = std::move(x._deleter);
        }
        return *this;
    }
    temporary_buffer(const temporary_buffer&) = delete;
    temporary_buffer& operator=(const temporary_buffer&) = delete;

    /// A buffer of `size` bytes whose address is a multiple of `alignment` (a power of two), as
    /// O_DIRECT I/O needs. Throws std::invalid_argument for a bad alignment, std::bad_alloc when
    /// memory is short. Unlike the size constructor, size 0 still allocates (an aligned address).
    static temporary_buffer aligned(std::size_t alignment, std::size_t size) {
        if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
            throw std::invalid_argument("temporary_buffer::aligned: alignment must be a power of two");
        }
        void* p = nullptr;
        // posix_memalign wants a multiple of sizeof(void*); a larger alignment is still a multiple
        // of the one asked for.
        int r = ::posix_memalign(&p, std::max(alignment, sizeof(void*)), std::max<std::size_t>(size, 1));
        if (r != 0) {
            throw std::bad_alloc();
        }
        return temporary_buffer(static_cast<CharType*>(p), size, make_free_deleter(p));
    }

    /// A buffer holding a copy of `s`.
    static temporary_buffer copy_of(std::basic_string_view<CharType> s) {
        return temporary_buffer(s.data(), s.size());
    }

    const CharType* get() const noexcept { return _buffer; }
    /// Writable access; changes are seen by every share of this memory.
    CharType* get_write() noexcept { return _buffer; }
    std::size_t size() const noexcept { return _size; }
    bool empty() const noexcept { return _size == 0; }
    /// True if the buffer has bytes (same as !empty()).
    explicit operator bool() const noexcept { return _size != 0; }

    const CharType* begin() const noexcept { return _buffer; }
    const CharType* end() const noexcept { return _buffer + _size; }
    CharType* begin() noexcept { return _buffer; }
    CharType* end() noexcept { return _buffer + _size; }

    const CharType& operator[](std::size_t i) const noexcept {
        assert(i < _size && "temporary_buffer index out of range");
        return _buffer[i];
    }
    CharType& operator[](std::size_t i) noexcept {
        assert(i < _size && "temporary_buffer index out of range");
        return _buffer[i];
    }

    /// Another buffer over the same bytes; the memory lives until both are gone. Allocates only
    /// when the owner is a plain malloc block shared for the first time (std::bad_alloc then).
    temporary_buffer share() { return temporary_buffer(_buffer, _size, _deleter.share()); }
    /// Another buffer over bytes [pos, pos + len) of this one (which must be in range).
    temporary_buffer share(std::size_t pos, std::size_t len) {
        assert(pos <= _size && len <= _size - pos && "temporary_buffer::share range out of bounds");
        return temporary_buffer(_buffer + pos, len, _deleter.share());
    }

    /// Keep the first n bytes (n <= size()). The memory is not released until the buffer dies.
    void trim(std::size_t n) noexcept {
        assert(n <= _size && "temporary_buffer::trim past the end");
        _size = n;
    }
    /// Drop the first n bytes (n <= size()).
    void trim_front(std::size_t n) noexcept {
        assert(n <= _size && "temporary_buffer::trim_front past the end");
        _buffer += n;
        _size -= n;
    }
    /// This buffer, moved out and trimmed to its first n bytes (n <= size()).
    temporary_buffer prefix(std::size_t n) && noexcept {
        temporary_buffer ret(std::move(*this));
        ret.trim(n);
        return ret;
    }

    /// A copy of the bytes in new memory, independent of this buffer. An empty buffer clones to
    /// an empty buffer. Throws std::bad_alloc when memory is short.
    temporary_buffer clone() const { return temporary_buffer(_buffer, _size); }

    /// True when this buffer is the only owner of its memory: no share() of it (nor of the
    /// deleter it came with) is alive anywhere, so the bytes may be rewritten unseen. False for a
    /// buffer without an owner (a view). Lets a producer reuse a buffer once every consumer it
    /// lent a share to has let go, instead of allocating a new one.
    bool exclusive() const noexcept {
        if (!_deleter) {
            return false;
        }
        // The memory may belong to any link of a chained deleter: every link must be ours alone.
        for (const deleter::impl* i = _deleter.peek_impl(); i; i = i->next.peek_impl()) {
            if (i->refs != 1) {
                return false;
            }
        }
        return true;
    }

    /// Give up the memory: returns the deleter (the caller now keeps the memory alive) and leaves
    /// this buffer empty. Pointers taken from get() stay valid as long as the deleter lives.
    /// Read get()/size() before calling release() (not in the same argument list: the order in
    /// which arguments are evaluated is unspecified).
    deleter release() noexcept {
        _buffer = nullptr;
        _size = 0;
        return std::move(_deleter);
    }

    /// Byte-wise equality of contents (not identity).
    bool operator==(const temporary_buffer& x) const noexcept { return view() == x.view(); }
    bool operator==(std::basic_string_view<CharType> s) const noexcept { return view() == s; }

    std::basic_string_view<CharType> view() const noexcept { return {_buffer, _size}; }
    explicit operator std::basic_string_view<CharType>() const noexcept { return view(); }
};

}  // namespace reef
