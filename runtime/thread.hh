// reef::thread: a stackful thread of execution inside the reactor. Code in a thread may call
// future::get(), which suspends the thread (not the reactor) until the future is ready; this
// suits code that is easier to write sequentially, and code ported from blocking APIs.
//
// Each thread has its own stack (default 128 KiB) with an inaccessible guard page below it, so a
// stack overflow faults instead of corrupting memory. Threads are scheduled like tasks, in the
// scheduling group given at creation, and must yield in long loops (thread::maybe_yield()).
#pragma once

#include "runtime/future.hh"
#include "runtime/task.hh"

#include <cstddef>
#include <functional>
#include <memory>

namespace reef {

struct thread_attributes {
    scheduling_group sched_group = current_scheduling_group();
    std::size_t stack_size = 128 * 1024;
};

namespace internal {
class thread_context;
}

class thread {
    std::unique_ptr<internal::thread_context> _context;

public:
    thread() noexcept;
    /// Start `func` in a new thread; it begins running when the reactor next runs tasks.
    explicit thread(std::function<void()> func);
    thread(thread_attributes attr, std::function<void()> func);
    thread(thread&&) noexcept;
    thread& operator=(thread&&) noexcept;
    /// A thread must be joined (and the join future waited for) before it is destroyed.
    ~thread();

    /// Resolves when the thread's function returns; carries its exception if it threw.
    /// Call once.
    future<> join();

    /// Is the caller running inside a reef::thread?
    static bool running_in_thread() noexcept;
    /// Let other tasks run, then continue. Only inside a thread.
    static void yield();
    /// Yield only if the task quota is used up.
    static void maybe_yield();
    static bool should_yield() noexcept;
};

/// Run func(args...) in a new reef::thread and return its result as a future.
template <typename Func, typename... A>
auto async(thread_attributes attr, Func&& func, A&&... args) {
    using R = std::invoke_result_t<Func, A...>;
    struct state {
        std::decay_t<Func> func;
        std::tuple<std::decay_t<A>...> args;
        promise<R> pr;
        reef::thread th;
    };
    auto s = std::make_unique<state>(state{std::forward<Func>(func), {std::forward<A>(args)...}, {}, {}});
    auto result = s->pr.get_future();
    auto* sp = s.get();
    sp->th = reef::thread(attr, [sp] {
        try {
            if constexpr (std::is_void_v<R>) {
                std::apply(sp->func, std::move(sp->args));
                sp->pr.set_value();
            } else {
                sp->pr.set_value(std::apply(sp->func, std::move(sp->args)));
            }
        } catch (...) {
            sp->pr.set_exception(std::current_exception());
        }
    });
    (void)sp->th.join().finally([s = std::move(s)] {});
    return result;
}

template <typename Func, typename... A>
auto async(Func&& func, A&&... args) {
    return async(thread_attributes{}, std::forward<Func>(func), std::forward<A>(args)...);
}

}  // namespace reef
