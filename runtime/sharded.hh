// sharded<Service>: one instance of a service per shard, each owned and used only by its shard.
// Code reaches another shard's instance by sending it work (invoke_on, invoke_on_all,
// map_reduce), never by pointer.
//
// foreign_ptr<P>: a smart pointer that may be handed to another shard but is always destroyed on
// the shard that created it.
#pragma once

#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/smp.hh"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace reef {

/// A start() argument computed on each shard: sharded_parameter(func, args...) calls
/// func(args...) on every shard and passes the result to that shard's constructor.
template <typename Func, typename... Args>
class sharded_parameter {
    Func _func;
    std::tuple<Args...> _args;

public:
    explicit sharded_parameter(Func func, Args... args) : _func(std::move(func)), _args(std::move(args)...) {}
    auto evaluate() const { return std::apply(_func, _args); }
};

namespace internal {
template <typename T>
struct is_sharded_parameter : std::false_type {};
template <typename F, typename... A>
struct is_sharded_parameter<sharded_parameter<F, A...>> : std::true_type {};

// map_reduce0's (initial, reduce) as a map_reduce reducer object.
template <typename Initial, typename Reduce>
struct fold_reducer {
    Initial acc;
    Reduce op;
    template <typename V>
    void operator()(V&& v) {
        acc = op(std::move(acc), std::forward<V>(v));
    }
    Initial get() { return std::move(acc); }
};

template <typename T>
decltype(auto) unwrap_sharded_arg(T& arg) {
    if constexpr (is_sharded_parameter<std::decay_t<T>>::value) {
        return arg.evaluate();
    } else {
        return (arg);
    }
}
}  // namespace internal

template <typename Service>
class sharded {
    std::vector<Service*> _instances;  // slot i is written and read only on shard i
    bool _started = false;

public:
    sharded() = default;
    sharded(const sharded&) = delete;
    sharded& operator=(const sharded&) = delete;
    /// Must be stopped first; destroying a started sharded<> is a bug and aborts with a message.
    ~sharded() {
        if (_started) {
            std::fprintf(stderr, "reef: sharded<> destroyed without stop()\n");
            std::abort();
        }
    }

    /// Construct one Service on every shard with copies of args (sharded_parameter arguments are
    /// evaluated per shard; pass references with std::ref). If any constructor throws, the
    /// instances already built are stopped and destroyed and the exception is passed on.
    template <typename... Args>
    future<> start(Args&&... args) {
        _instances.assign(smp::count, nullptr);
        _started = true;
        // Not a coroutine: GCC 12 destroys the captures of a temporary closure inside a co_await
        // expression twice (see coroutine.hh), and these captures are the user's arguments.
        auto make = [this, args = std::make_tuple(std::forward<Args>(args)...)]() mutable {
            std::apply([this](auto&... a) { _instances[this_shard_id()] = new Service(internal::unwrap_sharded_arg(a)...); },
                       args);
        };
        return smp::invoke_on_all(std::move(make)).handle_exception([this](std::exception_ptr ex) {
            return stop().then([ex] { return make_exception_future<>(ex); });
        });
    }

    /// Stop every instance (calling its stop() -> future<> if it has one) and destroy it on its
    /// own shard.
    future<> stop() {
        if (!_started) {
            co_return;
        }
        co_await smp::invoke_on_all([this]() -> future<> {
            Service* s = _instances[this_shard_id()];
            _instances[this_shard_id()] = nullptr;
            if (!s) {
                co_return;
            }
            if constexpr (requires(Service & x) { x.stop(); }) {
                try {
                    co_await futurize_invoke([s] { return s->stop(); });
                } catch (...) {
                    delete s;
                    throw;
                }
            }
            delete s;
        });
        _started = false;
    }

    /// This shard's instance.
    Service& local() noexcept { return *_instances[this_shard_id()]; }
    bool local_is_initialized() const noexcept {
        return this_shard_id() < _instances.size() && _instances[this_shard_id()] != nullptr;
    }

    /// Run func(Service&, args...) on `shard`'s instance; returns its result.
    template <typename Func, typename... Args>
    auto invoke_on(unsigned shard, Func func, Args... args) {
        return smp::submit_to(shard, [this, func = std::move(func), args...]() mutable {
            return std::invoke(func, *_instances[this_shard_id()], args...);
        });
    }

    /// Run func(Service&) on every shard's instance.
    template <typename Func>
    future<> invoke_on_all(Func func) {
        return smp::invoke_on_all([this, func]() mutable {
            return futurize_invoke(func, *_instances[this_shard_id()]).discard_result();
        });
    }
    template <typename Func>
    future<> invoke_on_others(Func func) {
        return smp::invoke_on_others([this, func]() mutable {
            return futurize_invoke(func, *_instances[this_shard_id()]).discard_result();
        });
    }

    /// map(Service&) on every shard, concurrently; results reduced on the calling shard in shard
    /// order with reduce(accumulator, value) starting from initial.
    template <typename Mapper, typename Initial, typename Reduce>
    future<Initial> map_reduce0(Mapper map, Initial initial, Reduce reduce) {
        // A reducer object over (initial, reduce): one implementation serves both forms.
        return map_reduce(internal::fold_reducer<Initial, Reduce>{std::move(initial), std::move(reduce)}, std::move(map));
    }

    /// Like map_reduce0, with a reducer object: reducer(value) is called per result and
    /// reducer.get() gives the final value.
    template <typename Reducer, typename Mapper>
    auto map_reduce(Reducer reducer, Mapper map) -> future<decltype(reducer.get())> {
        using R = typename futurize_t<std::invoke_result_t<Mapper, Service&>>::value_type;
        std::vector<futurize_t<R>> fs;
        fs.reserve(smp::count);
        for (unsigned s = 0; s < smp::count; ++s) {
            fs.push_back(invoke_on(s, map));
        }
        std::exception_ptr ex;
        for (auto& f : fs) {
            try {
                auto v = co_await std::move(f);
                if (!ex) {
                    reducer(std::move(v));
                }
            } catch (...) {
                if (!ex) {
                    ex = std::current_exception();
                }
            }
        }
        if (ex) {
            std::rethrow_exception(ex);
        }
        co_return reducer.get();
    }
};

/// Owns a pointer (unique_ptr, lw_shared_ptr, ...) created on one shard; may be moved to other
/// shards, and is destroyed on the shard that created it (a message is sent when the last
/// owner is elsewhere). Dereference it only on shards where the pointee is safe to read.
template <typename PtrType>
class foreign_ptr {
    PtrType _value;
    unsigned _owner;

    void destroy() noexcept {
        if (!_value) {
            return;
        }
        if (!engine_is_ready() || _owner == this_shard_id()) {
            _value = PtrType();
            return;
        }
        (void)smp::submit_to(_owner, [v = std::move(_value)]() mutable {
            auto dying = std::move(v);  // destroyed here, on the owner shard
        });
    }

public:
    using element_type = typename std::pointer_traits<PtrType>::element_type;

    foreign_ptr() noexcept : _value(), _owner(engine_is_ready() ? this_shard_id() : 0) {}
    explicit foreign_ptr(PtrType p) noexcept : _value(std::move(p)), _owner(engine_is_ready() ? this_shard_id() : 0) {}
    foreign_ptr(foreign_ptr&& x) noexcept : _value(std::move(x._value)), _owner(x._owner) { x._value = PtrType(); }
    foreign_ptr& operator=(foreign_ptr&& x) noexcept {
        if (this != &x) {
            destroy();
            _value = std::move(x._value);
            x._value = PtrType();
            _owner = x._owner;
        }
        return *this;
    }
    ~foreign_ptr() { destroy(); }

    element_type* get() const noexcept { return &*_value; }
    element_type& operator*() const noexcept { return *_value; }
    element_type* operator->() const noexcept { return &*_value; }
    explicit operator bool() const noexcept { return bool(_value); }
    unsigned get_owner_shard() const noexcept { return _owner; }
    /// Give up ownership (the caller becomes responsible for destroying it on the owner).
    PtrType release() noexcept { return std::exchange(_value, PtrType()); }
    void reset() noexcept { destroy(); }
    /// A copy made on the owner shard (for copyable pointers such as lw_shared_ptr).
    future<foreign_ptr> copy() const {
        return smp::submit_to(_owner, [v = &_value] { return foreign_ptr(PtrType(*v)); });
    }
};

template <typename PtrType>
foreign_ptr<PtrType> make_foreign(PtrType p) {
    return foreign_ptr<PtrType>(std::move(p));
}

}  // namespace reef
