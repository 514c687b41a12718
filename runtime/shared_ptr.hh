// Reference-counted pointers for one shard: lw_shared_ptr<T>, shared_ptr<T> and weak_ptr<T>.
//
// Contract, for every type here:
//  - Single-shard. Reference counts are plain integers (no atomics), so a pointer and every copy of
//    it must stay on the shard that created the object: copying, destroying or even reading
//    use_count() from another thread is a data race. To hand an object to another shard, wrap the
//    pointer in foreign_ptr (which sends the final release back to the owner shard).
//  - The object is destroyed exactly once, when the last owning pointer goes away, on the thread
//    that drops it. A destructor that throws terminates the process (destructors are noexcept).
//  - Moves never allocate or throw and leave the source empty. Copies only touch the count.
//  - Self-assignment (copy or move) is safe and keeps the object alive.
//
// lw_shared_ptr<T> ("lightweight") keeps the count next to the object (or inside it, when T derives
// from enable_lw_shared_from_this<T>): one pointer wide, one allocation, no virtual calls. It is not
// polymorphic: an lw_shared_ptr<T> always points to a T created by make_lw_shared<T>.
//
// shared_ptr<T> uses a control block that knows the created type, so it converts to pointers to
// bases and back (static/dynamic/const_pointer_cast) and destroys the object through its real type
// even when the base has no virtual destructor. weak_ptr<T> observes a shared_ptr's object without
// owning it; the control block (and the object's memory, which make_shared allocates together with
// it) lives until the last weak_ptr goes, while the object itself is destroyed with the last
// shared_ptr.
#pragma once

#include "runtime/misuse.hh"

#include <compare>
#include <cstddef>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace reef {

template <typename T>
class lw_shared_ptr;
template <typename T>
class enable_lw_shared_from_this;
template <typename T>
class shared_ptr;
template <typename T>
class weak_ptr;
template <typename T>
class enable_shared_from_this;

template <typename T, typename... A>
lw_shared_ptr<T> make_lw_shared(A&&... a);
template <typename T, typename... A>
shared_ptr<T> make_shared(A&&... a);

// ------------------------------------------------------------------------------------------------
// lw_shared_ptr

namespace internal {

struct lw_shared_ptr_counter_base {
    long _count = 0;
};

// The allocation make_lw_shared<T> makes for a T that does not embed the count.
template <typename T>
struct lw_shared_ptr_no_esft final : lw_shared_ptr_counter_base {
    T _value;

    template <typename... A>
    explicit lw_shared_ptr_no_esft(A&&... a) : _value(std::forward<A>(a)...) {}
};

template <typename T>
concept has_lw_esft_tag = requires { typename T::reef_lw_esft_type; };

// How lw_shared_ptr<T> finds T and destroys it, given the counter. U is T without const.
template <typename U>
struct lw_shared_ptr_accessors {
    static constexpr bool esft() noexcept {
        if constexpr (has_lw_esft_tag<U>) {
            static_assert(std::is_same_v<typename U::reef_lw_esft_type, U>,
                          "lw_shared_ptr<Derived> where Derived inherits enable_lw_shared_from_this<Base> is not "
                          "supported (the count belongs to Base): use lw_shared_ptr<Base> or shared_ptr");
            return true;
        } else {
            return false;
        }
    }
    static U* to_value(lw_shared_ptr_counter_base* c) noexcept {
        if constexpr (esft()) {
            return static_cast<U*>(static_cast<enable_lw_shared_from_this<U>*>(c));
        } else {
            return &static_cast<lw_shared_ptr_no_esft<U>*>(c)->_value;
        }
    }
    static void dispose(lw_shared_ptr_counter_base* c) noexcept {
        if constexpr (esft()) {
            delete to_value(c);
        } else {
            delete static_cast<lw_shared_ptr_no_esft<U>*>(c);
        }
    }
};

}  // namespace internal

/// Base for types that want lw_shared_ptr to store the count inside the object, which saves the
/// wrapper and allows shared_from_this(). Only lw_shared_ptr<T> for exactly this T is supported
/// (checked at compile time); use shared_ptr for class hierarchies.
template <typename T>
class enable_lw_shared_from_this : private internal::lw_shared_ptr_counter_base {
    friend struct internal::lw_shared_ptr_accessors<T>;
    template <typename U>
    friend class lw_shared_ptr;
    template <typename X, typename... A>
    friend lw_shared_ptr<X> make_lw_shared(A&&...);

    lw_shared_ptr_counter_base* counter() const noexcept {
        return const_cast<lw_shared_ptr_counter_base*>(static_cast<const lw_shared_ptr_counter_base*>(this));
    }
    void check_owned() const {
        if (_count == 0) {
            report_misuse("shared_from_this() on an object not owned by an lw_shared_ptr "
                          "(not created by make_lw_shared, or called from its constructor or destructor)");
        }
    }

protected:
    enable_lw_shared_from_this() noexcept = default;
    // A copy is a new object with its own (zero) count; the count is not part of the value.
    enable_lw_shared_from_this(const enable_lw_shared_from_this&) noexcept : lw_shared_ptr_counter_base() {}
    enable_lw_shared_from_this& operator=(const enable_lw_shared_from_this&) noexcept { return *this; }
    ~enable_lw_shared_from_this() = default;

public:
    using reef_lw_esft_type = T;

    /// Another owning pointer to this object. Misuse (see misuse.hh) if the object is not owned by
    /// an lw_shared_ptr, including from inside its constructor or destructor.
    lw_shared_ptr<T> shared_from_this();
    lw_shared_ptr<const T> shared_from_this() const;
};

/// A single-shard, non-atomic, non-polymorphic shared pointer (see the file comment).
template <typename T>
class lw_shared_ptr {
    using U = std::remove_const_t<T>;
    using accessors = internal::lw_shared_ptr_accessors<U>;
    internal::lw_shared_ptr_counter_base* _c = nullptr;

    // Takes a new reference on c.
    explicit lw_shared_ptr(internal::lw_shared_ptr_counter_base* c) noexcept : _c(c) { ++_c->_count; }

    template <typename X, typename... A>
    friend lw_shared_ptr<X> make_lw_shared(A&&...);
    template <typename X>
    friend class lw_shared_ptr;
    template <typename X>
    friend class enable_lw_shared_from_this;

// GCC 12 inlines two pointers' destructors, cannot see that only the last decrement reaches zero,
// and reports the other decrement as a use after free (a known false positive of
// -Wuse-after-free on reference counts).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif
    void release_ref() noexcept {
        if (_c && --_c->_count == 0) {
            accessors::dispose(std::exchange(_c, nullptr));
        }
    }
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic pop
#endif

public:
    using element_type = T;

    lw_shared_ptr() noexcept = default;
    lw_shared_ptr(std::nullptr_t) noexcept {}
    lw_shared_ptr(const lw_shared_ptr& x) noexcept : _c(x._c) {
        if (_c) {
            ++_c->_count;
        }
    }
    lw_shared_ptr(lw_shared_ptr&& x) noexcept : _c(std::exchange(x._c, nullptr)) {}
    /// lw_shared_ptr<const T> from lw_shared_ptr<T>.
    template <typename X>
        requires(std::is_same_v<const X, T> && !std::is_same_v<X, T>)
    lw_shared_ptr(const lw_shared_ptr<X>& x) noexcept : _c(x._c) {
        if (_c) {
            ++_c->_count;
        }
    }
    template <typename X>
        requires(std::is_same_v<const X, T> && !std::is_same_v<X, T>)
    lw_shared_ptr(lw_shared_ptr<X>&& x) noexcept : _c(std::exchange(x._c, nullptr)) {}
    ~lw_shared_ptr() { release_ref(); }

    lw_shared_ptr& operator=(const lw_shared_ptr& x) noexcept {
        if (_c != x._c) {
            lw_shared_ptr tmp(x);
            std::swap(_c, tmp._c);
        }
        return *this;
    }
    lw_shared_ptr& operator=(lw_shared_ptr&& x) noexcept {
        if (this != &x) {
            // Move first: x may be owned (indirectly) by the object we are about to release.
            lw_shared_ptr tmp(std::move(x));
            std::swap(_c, tmp._c);
        }
        return *this;
    }
    lw_shared_ptr& operator=(std::nullptr_t) noexcept {
        reset();
        return *this;
    }

    /// Drop this reference (destroying the object if it was the last).
    void reset() noexcept {
        lw_shared_ptr tmp(std::move(*this));
    }

    T* get() const noexcept { return _c ? accessors::to_value(_c) : nullptr; }
    T& operator*() const noexcept { return *accessors::to_value(_c); }
    T* operator->() const noexcept { return accessors::to_value(_c); }
    explicit operator bool() const noexcept { return _c != nullptr; }

    /// Number of lw_shared_ptr owning the object; 0 for an empty pointer.
    long use_count() const noexcept { return _c ? _c->_count : 0; }
    /// True if this is the only owner.
    bool owned() const noexcept { return _c && _c->_count == 1; }

    void swap(lw_shared_ptr& x) noexcept { std::swap(_c, x._c); }
};

template <typename T, typename... A>
lw_shared_ptr<T> make_lw_shared(A&&... a) {
    static_assert(!std::is_const_v<T>, "make_lw_shared<const T>: make a T and convert the pointer");
    using accessors = internal::lw_shared_ptr_accessors<T>;
    if constexpr (accessors::esft()) {
        T* p = new T(std::forward<A>(a)...);
        return lw_shared_ptr<T>(static_cast<enable_lw_shared_from_this<T>*>(p)->counter());
    } else {
        return lw_shared_ptr<T>(new internal::lw_shared_ptr_no_esft<T>(std::forward<A>(a)...));
    }
}

template <typename T>
lw_shared_ptr<T> enable_lw_shared_from_this<T>::shared_from_this() {
    check_owned();
    return lw_shared_ptr<T>(counter());
}
template <typename T>
lw_shared_ptr<const T> enable_lw_shared_from_this<T>::shared_from_this() const {
    check_owned();
    return lw_shared_ptr<const T>(counter());
}

template <typename T, typename X>
bool operator==(const lw_shared_ptr<T>& a, const lw_shared_ptr<X>& b) noexcept {
    return a.get() == b.get();
}
template <typename T, typename X>
std::strong_ordering operator<=>(const lw_shared_ptr<T>& a, const lw_shared_ptr<X>& b) noexcept {
    return std::compare_three_way()(a.get(), b.get());
}
template <typename T>
bool operator==(const lw_shared_ptr<T>& a, std::nullptr_t) noexcept {
    return !a;
}

// ------------------------------------------------------------------------------------------------
// shared_ptr / weak_ptr

namespace internal {

// Counts for a shared_ptr object. _weak counts weak_ptrs plus one for all shared_ptrs together, so
// the block is freed exactly once: when the object is gone and no weak_ptr remains.
class shared_ptr_control_block {
public:
    long _strong = 1;
    long _weak = 1;

    void add_strong() noexcept { ++_strong; }
    void add_weak() noexcept { ++_weak; }
    void release_strong() noexcept {
        if (--_strong == 0) {
            destroy_object();
            release_weak();
        }
    }
    void release_weak() noexcept {
        if (--_weak == 0) {
            destroy_self();
        }
    }

protected:
    ~shared_ptr_control_block() = default;
    virtual void destroy_object() noexcept = 0;
    virtual void destroy_self() noexcept = 0;
};

// make_shared's single allocation: the counts and the object, destroyed through its real type.
template <typename T>
class shared_ptr_inplace final : public shared_ptr_control_block {
    union {
        T _value;
    };

public:
    template <typename... A>
    explicit shared_ptr_inplace(A&&... a) {
        new (&_value) T(std::forward<A>(a)...);
    }
    ~shared_ptr_inplace() {}
    T* value() noexcept { return &_value; }

protected:
    void destroy_object() noexcept override { _value.~T(); }
    void destroy_self() noexcept override { delete this; }
};

// Untyped part of enable_shared_from_this, so make_shared can find it for any base.
class shared_from_this_base {
protected:
    shared_ptr_control_block* _reef_ctrl = nullptr;

    template <typename X, typename... A>
    friend shared_ptr<X> reef::make_shared(A&&...);

    shared_from_this_base() noexcept = default;
    // Copies are new objects that no shared_ptr owns yet.
    shared_from_this_base(const shared_from_this_base&) noexcept {}
    shared_from_this_base& operator=(const shared_from_this_base&) noexcept { return *this; }
    ~shared_from_this_base() = default;
};

}  // namespace internal

/// A single-shard, non-atomic shared pointer that supports class hierarchies (see file comment).
/// Create objects with make_shared<T>(args...). A shared_ptr<Base> obtained from a
/// shared_ptr<Derived> destroys the object as a Derived.
template <typename T>
class shared_ptr {
    T* _p = nullptr;
    internal::shared_ptr_control_block* _c = nullptr;

    template <typename X>
    friend class shared_ptr;
    template <typename X>
    friend class weak_ptr;
    template <typename X>
    friend class enable_shared_from_this;
    template <typename X, typename... A>
    friend shared_ptr<X> make_shared(A&&...);
    template <typename X, typename Y>
    friend shared_ptr<X> static_pointer_cast(const shared_ptr<Y>&) noexcept;
    template <typename X, typename Y>
    friend shared_ptr<X> static_pointer_cast(shared_ptr<Y>&&) noexcept;
    template <typename X, typename Y>
    friend shared_ptr<X> dynamic_pointer_cast(const shared_ptr<Y>&) noexcept;
    template <typename X, typename Y>
    friend shared_ptr<X> const_pointer_cast(const shared_ptr<Y>&) noexcept;

    // Adopts one strong reference already counted in c.
    shared_ptr(internal::shared_ptr_control_block* c, T* p) noexcept : _p(p), _c(c) {}
    // Shares c (takes a new strong reference), pointing at p (an object or subobject c owns).
    static shared_ptr share(internal::shared_ptr_control_block* c, T* p) noexcept {
        if (c) {
            c->add_strong();
        }
        return shared_ptr(c, p);
    }

public:
    using element_type = T;
    using weak_type = weak_ptr<T>;

    shared_ptr() noexcept = default;
    shared_ptr(std::nullptr_t) noexcept {}
    shared_ptr(const shared_ptr& x) noexcept : _p(x._p), _c(x._c) {
        if (_c) {
            _c->add_strong();
        }
    }
    shared_ptr(shared_ptr&& x) noexcept : _p(std::exchange(x._p, nullptr)), _c(std::exchange(x._c, nullptr)) {}
    /// From a pointer to a derived class (or to non-const): shares ownership.
    template <typename X>
        requires(!std::is_same_v<X, T> && std::is_convertible_v<X*, T*>)
    shared_ptr(const shared_ptr<X>& x) noexcept : _p(x._p), _c(x._c) {
        if (_c) {
            _c->add_strong();
        }
    }
    template <typename X>
        requires(!std::is_same_v<X, T> && std::is_convertible_v<X*, T*>)
    shared_ptr(shared_ptr<X>&& x) noexcept : _p(std::exchange(x._p, nullptr)), _c(std::exchange(x._c, nullptr)) {}
    ~shared_ptr() {
        if (_c) {
            _c->release_strong();
        }
    }

    shared_ptr& operator=(const shared_ptr& x) noexcept {
        shared_ptr tmp(x);
        swap(tmp);
        return *this;
    }
    shared_ptr& operator=(shared_ptr&& x) noexcept {
        if (this != &x) {
            shared_ptr tmp(std::move(x));
            swap(tmp);
        }
        return *this;
    }
    template <typename X>
        requires(!std::is_same_v<X, T> && std::is_convertible_v<X*, T*>)
    shared_ptr& operator=(const shared_ptr<X>& x) noexcept {
        shared_ptr tmp(x);
        swap(tmp);
        return *this;
    }
    template <typename X>
        requires(!std::is_same_v<X, T> && std::is_convertible_v<X*, T*>)
    shared_ptr& operator=(shared_ptr<X>&& x) noexcept {
        shared_ptr tmp(std::move(x));
        swap(tmp);
        return *this;
    }
    shared_ptr& operator=(std::nullptr_t) noexcept {
        reset();
        return *this;
    }

    /// Drop this reference (destroying the object if it was the last owner).
    void reset() noexcept {
        shared_ptr tmp(std::move(*this));
    }
    void swap(shared_ptr& x) noexcept {
        std::swap(_p, x._p);
        std::swap(_c, x._c);
    }

    T* get() const noexcept { return _p; }
    T& operator*() const noexcept { return *_p; }
    T* operator->() const noexcept { return _p; }
    explicit operator bool() const noexcept { return _p != nullptr; }

    /// Number of shared_ptr owning the object (weak_ptrs not included); 0 when empty.
    long use_count() const noexcept { return _c ? _c->_strong : 0; }

    /// Ownership order (by control block), for ordered containers of pointers that may alias.
    template <typename X>
    bool owner_before(const shared_ptr<X>& x) const noexcept {
        return std::less<>()(_c, x._c);
    }
    template <typename X>
    bool owner_before(const weak_ptr<X>& x) const noexcept {
        return std::less<>()(_c, x._c);
    }
};

/// Construct a T owned by a shared_ptr, in one allocation. If T's constructor throws, the memory
/// is freed and the exception propagates. If T derives from enable_shared_from_this<B>, the object
/// is linked to its control block so shared_from_this() works once the constructor has returned.
template <typename T, typename... A>
shared_ptr<T> make_shared(A&&... a) {
    using U = std::remove_const_t<T>;
    auto* c = new internal::shared_ptr_inplace<U>(std::forward<A>(a)...);
    U* p = c->value();
    if constexpr (std::is_convertible_v<U*, internal::shared_from_this_base*>) {
        static_cast<internal::shared_from_this_base*>(p)->_reef_ctrl = c;
    }
    return shared_ptr<T>(c, p);
}

/// Base for types that need shared_from_this()/weak_from_this() when created by make_shared.
template <typename T>
class enable_shared_from_this : public internal::shared_from_this_base {
protected:
    enable_shared_from_this() noexcept = default;
    enable_shared_from_this(const enable_shared_from_this&) noexcept = default;
    enable_shared_from_this& operator=(const enable_shared_from_this&) noexcept = default;
    ~enable_shared_from_this() = default;

public:
    /// Another owner of this object. Throws std::bad_weak_ptr if no shared_ptr owns it (it was not
    /// created by make_shared, or this is called from its constructor or destructor).
    shared_ptr<T> shared_from_this() {
        if (!_reef_ctrl || _reef_ctrl->_strong == 0) {
            throw std::bad_weak_ptr();
        }
        return shared_ptr<T>::share(_reef_ctrl, static_cast<T*>(this));
    }
    shared_ptr<const T> shared_from_this() const {
        if (!_reef_ctrl || _reef_ctrl->_strong == 0) {
            throw std::bad_weak_ptr();
        }
        return shared_ptr<const T>::share(_reef_ctrl, static_cast<const T*>(this));
    }
    /// A weak_ptr to this object; empty if no shared_ptr owns it. Never throws.
    weak_ptr<T> weak_from_this() noexcept;
    weak_ptr<const T> weak_from_this() const noexcept;
};

/// Cast the pointer with static_cast, sharing ownership. The caller guarantees the object is a X.
template <typename X, typename Y>
shared_ptr<X> static_pointer_cast(const shared_ptr<Y>& p) noexcept {
    return shared_ptr<X>::share(p._c, static_cast<X*>(p._p));
}
template <typename X, typename Y>
shared_ptr<X> static_pointer_cast(shared_ptr<Y>&& p) noexcept {
    auto* x = static_cast<X*>(p._p);
    p._p = nullptr;
    return shared_ptr<X>(std::exchange(p._c, nullptr), x);
}
/// Cast with dynamic_cast: an empty pointer (and no new reference) if the object is not a X.
template <typename X, typename Y>
shared_ptr<X> dynamic_pointer_cast(const shared_ptr<Y>& p) noexcept {
    X* x = dynamic_cast<X*>(p._p);
    return x ? shared_ptr<X>::share(p._c, x) : shared_ptr<X>();
}
/// Add or remove const, sharing ownership.
template <typename X, typename Y>
shared_ptr<X> const_pointer_cast(const shared_ptr<Y>& p) noexcept {
    return shared_ptr<X>::share(p._c, const_cast<X*>(p._p));
}

template <typename T, typename X>
bool operator==(const shared_ptr<T>& a, const shared_ptr<X>& b) noexcept {
    return a.get() == b.get();
}
template <typename T, typename X>
std::strong_ordering operator<=>(const shared_ptr<T>& a, const shared_ptr<X>& b) noexcept {
    return std::compare_three_way()(a.get(), b.get());
}
template <typename T>
bool operator==(const shared_ptr<T>& a, std::nullptr_t) noexcept {
    return !a;
}

/// A non-owning observer of a shared_ptr's object. lock() gives a shared_ptr while the object
/// lives and an empty one afterwards. Keeps the control block (and make_shared's allocation) alive,
/// not the object. Same single-shard rule as shared_ptr.
template <typename T>
class weak_ptr {
    T* _p = nullptr;  // meaningful only while _c->_strong > 0
    internal::shared_ptr_control_block* _c = nullptr;

    template <typename X>
    friend class weak_ptr;
    template <typename X>
    friend class shared_ptr;
    template <typename X>
    friend class enable_shared_from_this;

    weak_ptr(internal::shared_ptr_control_block* c, T* p) noexcept : _p(p), _c(c) {
        if (_c) {
            _c->add_weak();
        }
    }

public:
    using element_type = T;

    weak_ptr() noexcept = default;
    weak_ptr(const weak_ptr& x) noexcept : weak_ptr(x._c, x._p) {}
    weak_ptr(weak_ptr&& x) noexcept : _p(std::exchange(x._p, nullptr)), _c(std::exchange(x._c, nullptr)) {}
    template <typename X>
        requires std::is_convertible_v<X*, T*>
    weak_ptr(const shared_ptr<X>& x) noexcept : weak_ptr(x._c, x._p) {}
    /// From a weak_ptr to a derived class. The pointer is only converted while the object lives
    /// (a conversion may need to read the dead object's vtable); an expired source gives an expired
    /// weak_ptr.
    template <typename X>
        requires(!std::is_same_v<X, T> && std::is_convertible_v<X*, T*>)
    weak_ptr(const weak_ptr<X>& x) noexcept : weak_ptr(x._c, x.expired() ? nullptr : static_cast<T*>(x._p)) {}
    ~weak_ptr() {
        if (_c) {
            _c->release_weak();
        }
    }

    weak_ptr& operator=(const weak_ptr& x) noexcept {
        weak_ptr tmp(x);
        swap(tmp);
        return *this;
    }
    weak_ptr& operator=(weak_ptr&& x) noexcept {
        if (this != &x) {
            weak_ptr tmp(std::move(x));
            swap(tmp);
        }
        return *this;
    }
    template <typename X>
        requires std::is_convertible_v<X*, T*>
    weak_ptr& operator=(const shared_ptr<X>& x) noexcept {
        weak_ptr tmp(x);
        swap(tmp);
        return *this;
    }

    void reset() noexcept {
        weak_ptr tmp(std::move(*this));
    }
    void swap(weak_ptr& x) noexcept {
        std::swap(_p, x._p);
        std::swap(_c, x._c);
    }

    /// Owners of the object (0 once it is destroyed or for an empty weak_ptr).
    long use_count() const noexcept { return _c ? _c->_strong : 0; }
    /// True once the object is destroyed (or if this weak_ptr is empty).
    bool expired() const noexcept { return use_count() == 0; }
    /// A new owner of the object, or an empty shared_ptr if it is gone.
    shared_ptr<T> lock() const noexcept {
        return expired() ? shared_ptr<T>() : shared_ptr<T>::share(_c, _p);
    }

    template <typename X>
    bool owner_before(const weak_ptr<X>& x) const noexcept {
        return std::less<>()(_c, x._c);
    }
    template <typename X>
    bool owner_before(const shared_ptr<X>& x) const noexcept {
        return std::less<>()(_c, x._c);
    }
};

template <typename T>
weak_ptr<T> enable_shared_from_this<T>::weak_from_this() noexcept {
    if (!_reef_ctrl || _reef_ctrl->_strong == 0) {
        return weak_ptr<T>();
    }
    return weak_ptr<T>(_reef_ctrl, static_cast<T*>(this));
}
template <typename T>
weak_ptr<const T> enable_shared_from_this<T>::weak_from_this() const noexcept {
    if (!_reef_ctrl || _reef_ctrl->_strong == 0) {
        return weak_ptr<const T>();
    }
    return weak_ptr<const T>(_reef_ctrl, static_cast<const T*>(this));
}

}  // namespace reef

template <typename T>
struct std::hash<reef::lw_shared_ptr<T>> {
    std::size_t operator()(const reef::lw_shared_ptr<T>& p) const noexcept { return std::hash<T*>()(p.get()); }
};
template <typename T>
struct std::hash<reef::shared_ptr<T>> {
    std::size_t operator()(const reef::shared_ptr<T>& p) const noexcept { return std::hash<T*>()(p.get()); }
};
