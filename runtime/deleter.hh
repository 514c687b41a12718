// deleter: the owner of some memory (or any resource) that a temporary_buffer points into.
//
// A deleter runs its action (free a malloc'ed block, destroy an object, call a function) exactly
// once, when the deleter and every share() of it are gone. Deleters chain: append(d) makes this
// deleter also own d, whose action runs after this one's.
//
// Contract:
//  - Single-shard: the reference count is a plain integer. A deleter and all its shares must be
//    destroyed on the shard that created them (a buffer sent to another shard goes inside a
//    foreign_ptr, which brings it back for destruction).
//  - Actions must not throw: they run from destructors (a throwing action terminates).
//  - Move-only; moves never allocate or throw. share() allocates at most once per deleter (the
//    first share of a make_free_deleter deleter, which is otherwise stored without allocation).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <new>
#include <type_traits>
#include <utility>

namespace reef {

class deleter final {
public:
    /// The shared, reference-counted part (defined below).
    struct impl;

private:
    // Either an impl* or, with the low bit set, a pointer to free() with no allocation at all:
    // malloc'ed memory and impl objects are both at least 2-aligned, so bit 0 is free for the tag.
    std::uintptr_t _v = 0;

    static constexpr std::uintptr_t raw_tag = 1;

    bool is_raw() const noexcept { return _v & raw_tag; }
    void* raw() const noexcept { return reinterpret_cast<void*>(_v & ~raw_tag); }
    impl* get_impl() const noexcept { return reinterpret_cast<impl*>(_v); }
    void upgrade_raw();

    struct raw_tag_t {};
    deleter(raw_tag_t, void* p) noexcept : _v(reinterpret_cast<std::uintptr_t>(p) | raw_tag) {}
    friend deleter make_free_deleter(void* p) noexcept;

    void destroy() noexcept;

public:
    /// An empty deleter: owns nothing.
    deleter() noexcept = default;
    /// Adopt an impl whose reference count (1 for a new impl) is transferred to this deleter.
    explicit deleter(impl* i) noexcept : _v(reinterpret_cast<std::uintptr_t>(i)) {}
    deleter(deleter&& x) noexcept : _v(std::exchange(x._v, 0)) {}
    deleter& operator=(deleter&& x) noexcept {
        if (this != &x) {
            // Take x first: x may live inside what we are about to release.
            std::uintptr_t v = std::exchange(x._v, 0);
            destroy();
            _v = v;
        }
        return *this;
    }
    deleter(const deleter&) = delete;
    deleter& operator=(const deleter&) = delete;
    ~deleter() { destroy(); }

    /// Another owner of the same resource: the action runs once the last owner is gone. Sharing a
    /// make_free_deleter deleter allocates once (turning it into a counted impl) and throws
    /// std::bad_alloc if that fails, leaving this deleter unchanged.
    deleter share();

    /// Make this deleter also own d: d's action runs after this deleter's, when this deleter and
    /// all its shares are gone. Appending to an empty deleter makes it d. Appending a deleter that
    /// is already in the chain does nothing more. May allocate: on std::bad_alloc this deleter is
    /// unchanged and d is released (its action runs if it was the last owner).
    void append(deleter d);

    /// The counted impl this deleter holds, or nullptr (empty, or a make_free_deleter deleter).
    /// For an owner that recognizes its own impl type: a device that finds its receive buffer in
    /// a packet it is asked to send, say.
    impl* peek_impl() const noexcept { return is_raw() ? nullptr : get_impl(); }
    /// Stop owning without running the action and return what was held (as peek_impl() saw it,
    /// reference included): the caller, who recognized the impl, now owns it. nullptr (and no
    /// change) for a raw free deleter or an empty one.
    impl* release_impl() noexcept {
        if (is_raw()) {
            return nullptr;
        }
        return reinterpret_cast<impl*>(std::exchange(_v, 0));
    }

    /// Does this deleter own anything?
    explicit operator bool() const noexcept { return _v != 0; }
    bool empty() const noexcept { return _v == 0; }
    /// Run the action now if this is the last owner (same as destroying the deleter).
    void reset() noexcept {
        destroy();
        _v = 0;
    }
};

/// Subclasses do their action in their destructor; the chained `next` deleter is released after it
/// (base members outlive the derived part).
struct deleter::impl {
    long refs = 1;
    deleter next;

    explicit impl(deleter n) noexcept : next(std::move(n)) {}
    virtual ~impl() = default;
};

namespace internal {

template <typename Func>
struct lambda_deleter_impl final : deleter::impl {
    Func _func;
    lambda_deleter_impl(deleter next, Func&& f) : impl(std::move(next)), _func(std::move(f)) {}
    ~lambda_deleter_impl() override { _func(); }
};

template <typename T>
struct object_deleter_impl final : deleter::impl {
    T _obj;
    template <typename U>
    object_deleter_impl(deleter next, U&& obj) : impl(std::move(next)), _obj(std::forward<U>(obj)) {}
};

struct free_deleter_impl final : deleter::impl {
    void* _p;
    free_deleter_impl(deleter next, void* p) noexcept : impl(std::move(next)), _p(p) {}
    ~free_deleter_impl() override { std::free(_p); }
};

}  // namespace internal

/// A deleter that calls func() (which must not throw) when the last owner goes, then releases
/// `next`. If allocation fails, throws std::bad_alloc without calling func.
template <typename Func>
deleter make_deleter(deleter next, Func&& func) {
    static_assert(std::is_invocable_v<std::decay_t<Func>&>, "a deleter action is called with no arguments");
    using F = std::decay_t<Func>;
    return deleter(new internal::lambda_deleter_impl<F>(std::move(next), F(std::forward<Func>(func))));
}
template <typename Func>
deleter make_deleter(Func&& func) {
    return make_deleter(deleter(), std::forward<Func>(func));
}

/// A deleter that std::free()s p. Allocates nothing; free(nullptr) being a no-op, a null p gives an
/// empty deleter.
inline deleter make_free_deleter(void* p) noexcept {
    return p ? deleter(deleter::raw_tag_t{}, p) : deleter();
}
/// free(p), then release `next`.
inline deleter make_free_deleter(deleter next, void* p) {
    if (!next) {
        return make_free_deleter(p);
    }
    return deleter(new internal::free_deleter_impl(std::move(next), p));
}

/// A deleter that owns obj (moved in from an rvalue, copied from an lvalue) and destroys it when
/// the last owner goes: e.g. keep a std::string or a vector alive while buffers point into it.
/// On std::bad_alloc obj is untouched.
template <typename T>
deleter make_object_deleter(deleter next, T&& obj) {
    return deleter(new internal::object_deleter_impl<std::decay_t<T>>(std::move(next), std::forward<T>(obj)));
}
template <typename T>
deleter make_object_deleter(T&& obj) {
    return make_object_deleter(deleter(), std::forward<T>(obj));
}

inline void deleter::destroy() noexcept {
    if (is_raw()) {
        std::free(raw());
    } else if (auto* i = get_impl(); i && --i->refs == 0) {
        delete i;
    }
}

inline deleter deleter::share() {
    if (_v == 0) {
        return deleter();
    }
    if (is_raw()) {
        upgrade_raw();
    }
    ++get_impl()->refs;
    return deleter(get_impl());
}

inline void deleter::upgrade_raw() {
    auto* i = new internal::free_deleter_impl(deleter(), raw());
    _v = reinterpret_cast<std::uintptr_t>(static_cast<impl*>(i));
}

inline void deleter::append(deleter d) {
    if (!d) {
        return;
    }
    if (!*this) {
        *this = std::move(d);
        return;
    }
    // Walk to the end of the chain while we are the only owner of each link; a link others share
    // must not change (they would start owning d), so it is wrapped in a new link instead.
    deleter* cur = this;
    for (;;) {
        if (cur->_v == d._v) {
            return;  // already in the chain
        }
        if (cur->is_raw()) {
            cur->upgrade_raw();
        }
        impl* i = cur->get_impl();
        if (i->refs != 1) {
            // Allocation happens before anything is moved, so a bad_alloc leaves *cur intact.
            deleter wrapped = make_object_deleter(std::move(d), std::move(*cur));
            *cur = std::move(wrapped);
            return;
        }
        if (!i->next) {
            i->next = std::move(d);
            return;
        }
        cur = &i->next;
    }
}

}  // namespace reef
