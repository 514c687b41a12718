#include "stack/net/packet.hh"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <ostream>

namespace reef::net {

namespace {

// Memory the packet allocates itself (copies, headroom, linearized bytes): the deleter link and
// the bytes in one malloc block, chained in front of the packet's previous owner, so taking new
// memory never costs a second allocation for the deleter whatever state the owner is in.
struct data_block final : deleter::impl {
    explicit data_block(deleter next) noexcept : impl(std::move(next)) {}
    char* data() noexcept { return reinterpret_cast<char*>(this + 1); }

    static void* allocate(std::size_t size) {
        void* p = std::malloc(sizeof(data_block) + size);
        if (!p) {
            throw std::bad_alloc();
        }
        return p;
    }
    // Built with placement new on allocate()'s memory; `delete` from deleter::destroy lands here.
    static void operator delete(void* p) noexcept { std::free(p); }
};

// Raw memory from data_block::allocate until adopt() makes it the head of an owner chain.
class pending_block {
    void* _mem;
    char* _data;

public:
    explicit pending_block(std::size_t size)
        : _mem(data_block::allocate(size)), _data(static_cast<char*>(_mem) + sizeof(data_block)) {}
    pending_block(const pending_block&) = delete;
    pending_block& operator=(const pending_block&) = delete;
    ~pending_block() { std::free(_mem); }

    /// The bytes (still valid after adopt()).
    char* data() const noexcept { return _data; }
    /// Make the block own its bytes and `owner` (the previous chain): owner becomes the block.
    void adopt(deleter& owner) noexcept {
        auto* b = new (std::exchange(_mem, nullptr)) data_block(std::move(owner));
        owner = deleter(b);
    }
};

}  // namespace

packet::impl::impl(std::size_t n) { reserve(n); }

packet::impl::~impl() {
    if (frags != inline_storage) {
        delete[] frags;
    }
}

void packet::impl::reserve(std::size_t n) {
    if (n <= capacity) {
        return;
    }
    std::size_t cap = std::max(n, capacity * 2);
    auto* a = new fragment[cap];
    std::copy_n(frags, nr_frags, a);
    if (frags != inline_storage) {
        delete[] frags;
    }
    frags = a;
    capacity = cap;
}

packet::impl& packet::ensure_impl() {
    if (!_impl) {
        _impl = new impl();
    }
    return *_impl;
}

packet::packet(std::size_t reserve_fragments) : _impl(new impl(reserve_fragments)) {}

packet::packet(fragment f, deleter d) : _impl(new impl()) {
    _impl->owner = std::move(d);
    _impl->push_back_unchecked(f);
}

packet::packet(const fragment* frags, std::size_t n, deleter d)
    : _impl(n <= inline_frags ? new impl() : new impl(n)) {
    _impl->owner = std::move(d);
    for (std::size_t k = 0; k < n; ++k) {
        _impl->push_back_unchecked(frags[k]);
    }
}

packet::packet(const char* data, std::size_t len) : _impl(new impl()) {
    if (len == 0) {
        return;
    }
    // The constructor body may throw: _impl is a plain pointer, so free it by hand.
    std::unique_ptr<impl> guard(_impl);
    // Copies keep default_headroom in front of the data, so prepending headers later is free and
    // the packet stays one fragment.
    pending_block blk(default_headroom + len);
    char* front = blk.data() + default_headroom;
    std::memcpy(front, data, len);
    blk.adopt(_impl->owner);
    _impl->headroom_begin = blk.data();
    _impl->headroom_front = front;
    _impl->push_back_unchecked(fragment{front, len});
    guard.release();
}

packet::packet(temporary_buffer<char> buf) : _impl(new impl()) {
    fragment f{buf.get_write(), buf.size()};
    _impl->owner = buf.release();
    _impl->push_back_unchecked(f);
}

packet::packet(std::vector<temporary_buffer<char>> bufs) {
    std::size_t n = 0;
    for (auto& b : bufs) {
        n += b.empty() ? 0 : 1;
    }
    auto i = std::make_unique<impl>(n);
    for (auto& b : bufs) {
        i->push_back_unchecked(fragment{b.get_write(), b.size()});
    }
    if (bufs.size() == 1) {
        i->owner = bufs.front().release();
    } else if (!bufs.empty()) {
        // One owner for all of them: the buffers' bytes do not move when the vector does.
        i->owner = make_object_deleter(std::move(bufs));
    }
    _impl = i.release();
}

// The appending/prepending constructors delegate to the move constructor first: once it has run
// the packet counts as constructed, so an exception from the body runs ~packet and releases p.
packet::packet(packet&& p, fragment f) : packet(std::move(p)) {
    impl& i = ensure_impl();
    if (f.size == 0) {
        return;
    }
    i.reserve(i.nr_frags + 1);
    pending_block blk(f.size);
    std::memcpy(blk.data(), f.base, f.size);
    char* copy = blk.data();
    blk.adopt(i.owner);
    i.push_back_unchecked(fragment{copy, f.size});
}

packet::packet(packet&& p, fragment f, deleter d) : packet(std::move(p)) {
    impl& i = ensure_impl();
    i.reserve(i.nr_frags + 1);
    i.owner.append(std::move(d));
    i.push_back_unchecked(f);
}

packet::packet(packet&& p, temporary_buffer<char> buf) : packet(std::move(p)) {
    impl& i = ensure_impl();
    i.reserve(i.nr_frags + 1);
    fragment f{buf.get_write(), buf.size()};
    i.owner.append(buf.release());
    i.push_back_unchecked(f);
}

packet::packet(fragment f, packet&& p) : packet(std::move(p)) {
    ensure_impl();
    if (f.size) {
        std::memcpy(prepend_uninitialized_header(f.size), f.base, f.size);
    }
}

void packet::append(packet&& p) {
    if (!p._impl || this == &p) {
        return;
    }
    if (!_impl) {
        _impl = std::exchange(p._impl, nullptr);
        return;
    }
    impl& i = *_impl;
    impl& o = *p._impl;
    try {
        i.reserve(i.nr_frags + o.nr_frags);
        i.owner.append(std::move(o.owner));
    } catch (...) {
        // p's owner may be gone already (deleter::append releases it on failure): its fragments
        // could point to freed memory.
        p.reset();
        throw;
    }
    std::copy_n(o.frags, o.nr_frags, i.frags + i.nr_frags);
    i.nr_frags += o.nr_frags;
    i.len += o.len;
    p.reset();
}

char* packet::get_header_slow(std::size_t offset, std::size_t size) {
    if (!_impl || offset >= _impl->len || size > _impl->len - offset) {
        return nullptr;
    }
    impl& i = *_impl;
    std::size_t start = 0;
    for (std::size_t k = 0; k < i.nr_frags; ++k) {
        const fragment& f = i.frags[k];
        if (offset < start + f.size) {
            if (offset + size <= start + f.size) {
                return f.base + (offset - start);
            }
            return linearize_range(k, start, offset, size);
        }
        start += f.size;
    }
    return nullptr;  // unreachable: offset < len
}

char* packet::linearize_range(std::size_t first, std::size_t first_start, std::size_t offset, std::size_t size) {
    impl& i = *_impl;
    const std::size_t end = offset + size;
    // Find the last fragment the range touches.
    std::size_t last = first;
    std::size_t last_start = first_start;
    while (last_start + i.frags[last].size < end) {
        last_start += i.frags[last].size;
        ++last;
    }
    const std::size_t last_end = last_start + i.frags[last].size;
    const bool has_prefix = offset > first_start;
    const bool has_suffix = end < last_end;
    const fragment prefix{i.frags[first].base, offset - first_start};
    const fragment suffix{i.frags[last].base + (end - last_start), last_end - end};
    const std::size_t middle = (has_prefix ? 1 : 0) + 1 + (has_suffix ? 1 : 0);
    const std::size_t tail = i.nr_frags - last - 1;
    const std::size_t new_n = first + middle + tail;

    pending_block blk(size);
    i.reserve(new_n);
    // Copy the bytes out before the fragment array is rearranged.
    char* out = blk.data();
    std::size_t pos = first_start;
    for (std::size_t k = first; k <= last; ++k) {
        const fragment& f = i.frags[k];
        std::size_t from = std::max(offset, pos);
        std::size_t to = std::min(end, pos + f.size);
        std::memcpy(out, f.base + (from - pos), to - from);
        out += to - from;
        pos += f.size;
    }
    std::memmove(i.frags + first + middle, i.frags + last + 1, tail * sizeof(fragment));
    std::size_t k = first;
    if (has_prefix) {
        i.frags[k++] = prefix;
    }
    char* result = blk.data();
    i.frags[k++] = fragment{result, size};
    if (has_suffix) {
        i.frags[k++] = suffix;
    }
    i.nr_frags = new_n;
    blk.adopt(i.owner);
    return result;
}

char* packet::prepend_uninitialized_header(std::size_t size) {
    assert(size > 0 && "packet::prepend_uninitialized_header of 0 bytes");
    impl& i = ensure_impl();
    if (i.headroom_front && i.nr_frags && i.frags[0].base == i.headroom_front &&
        static_cast<std::size_t>(i.headroom_front - i.headroom_begin) >= size) {
        // The first fragment starts where the last header went: extend it backwards into bytes
        // no one has seen.
        i.headroom_front -= size;
        i.frags[0].base = i.headroom_front;
        i.frags[0].size += size;
        i.len += size;
        return i.headroom_front;
    }
    const std::size_t room = std::max(size, default_headroom);
    pending_block blk(room);
    i.reserve(i.nr_frags + 1);
    std::memmove(i.frags + 1, i.frags, i.nr_frags * sizeof(fragment));
    char* front = blk.data() + (room - size);
    i.frags[0] = fragment{front, size};
    ++i.nr_frags;
    i.len += size;
    i.headroom_begin = blk.data();
    i.headroom_front = front;
    blk.adopt(i.owner);
    return front;
}

void packet::trim_front(std::size_t n) noexcept {
    assert(n <= len() && "packet::trim_front past the end");
    if (n == 0) {
        return;
    }
    impl& i = *_impl;
    i.len -= n;
    std::size_t drop = 0;
    while (n && n >= i.frags[drop].size) {
        n -= i.frags[drop].size;
        ++drop;
    }
    if (n) {
        i.frags[drop].base += n;
        i.frags[drop].size -= n;
    }
    if (drop) {
        std::memmove(i.frags, i.frags + drop, (i.nr_frags - drop) * sizeof(fragment));
        i.nr_frags -= drop;
    }
}

void packet::trim_back(std::size_t n) noexcept {
    assert(n <= len() && "packet::trim_back past the end");
    if (n == 0) {
        return;
    }
    impl& i = *_impl;
    i.len -= n;
    while (n) {
        fragment& f = i.frags[i.nr_frags - 1];
        if (n < f.size) {
            f.size -= n;
            break;
        }
        n -= f.size;
        --i.nr_frags;
    }
}

packet packet::share() {
    if (!_impl) {
        return packet();
    }
    return share(0, _impl->len);
}

packet packet::share(std::size_t offset, std::size_t len) {
    assert(offset <= this->len() && len <= this->len() - offset && "packet::share range out of bounds");
    if (!_impl) {
        return packet();
    }
    impl& i = *_impl;
    // Count the fragments the range touches first, so the new impl allocates once.
    const std::size_t end = offset + len;
    std::size_t first = 0, start = 0;
    while (first < i.nr_frags && start + i.frags[first].size <= offset) {
        start += i.frags[first].size;
        ++first;
    }
    std::size_t last = first, pos = start;
    while (last < i.nr_frags && pos < end) {
        pos += i.frags[last].size;
        ++last;
    }
    auto n = std::make_unique<impl>(last - first);
    n->owner = i.owner.share();
    n->offload = i.offload;
    n->rss_hash = i.rss_hash;
    pos = start;
    for (std::size_t k = first; k < last; ++k) {
        const fragment& f = i.frags[k];
        std::size_t from = std::max(offset, pos);
        std::size_t to = std::min(end, pos + f.size);
        n->push_back_unchecked(fragment{f.base + (from - pos), to - from});
        pos += f.size;
    }
    packet p;
    p._impl = n.release();
    return p;
}

void packet::linearize() {
    if (nr_frags() <= 1) {
        return;
    }
    impl& i = *_impl;
    // The copy replaces every fragment, so the old owner goes (its action runs if this packet was
    // the last user of that memory).
    pending_block blk(i.len);
    char* out = blk.data();
    for (std::size_t k = 0; k < i.nr_frags; ++k) {
        std::memcpy(out, i.frags[k].base, i.frags[k].size);
        out += i.frags[k].size;
    }
    deleter old = std::move(i.owner);
    blk.adopt(i.owner);
    i.frags[0] = fragment{blk.data(), i.len};
    i.nr_frags = 1;
    i.headroom_begin = i.headroom_front = nullptr;
    old.reset();
}

temporary_buffer<char> packet::to_buffer() const {
    temporary_buffer<char> b(len());
    char* out = b.get_write();
    for (const fragment& f : fragments()) {
        std::memcpy(out, f.base, f.size);
        out += f.size;
    }
    return b;
}

std::string packet::to_string() const {
    std::string s;
    s.reserve(len());
    for (const fragment& f : fragments()) {
        s.append(f.base, f.size);
    }
    return s;
}

std::vector<temporary_buffer<char>> packet::release_into_buffers() && {
    std::vector<temporary_buffer<char>> bufs;
    if (!_impl) {
        return bufs;
    }
    impl& i = *_impl;
    bufs.reserve(i.nr_frags);
    for (std::size_t k = 0; k + 1 < i.nr_frags; ++k) {
        bufs.emplace_back(i.frags[k].base, i.frags[k].size, i.owner.share());
    }
    if (i.nr_frags) {
        const fragment& f = i.frags[i.nr_frags - 1];
        bufs.emplace_back(f.base, f.size, std::move(i.owner));
    }
    destroy();
    return bufs;
}

deleter packet::release() && {
    if (!_impl) {
        return deleter();
    }
    deleter d = std::move(_impl->owner);
    destroy();
    return d;
}

std::ostream& operator<<(std::ostream& os, const packet& p) {
    return os << "packet(len=" << p.len() << ", frags=" << p.nr_frags() << ")";
}

}  // namespace reef::net
