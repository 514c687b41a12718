// need_preempt(): has the current task quota expired? Read on every ready-future fast path, so it
// is a plain thread-local load. The reactor's quota timer sets the flag from a signal handler.
#pragma once

namespace reef {
namespace internal {
// volatile: written by the SIGALRM-like quota signal on this same thread.
inline thread_local volatile bool preempt_requested = false;
}  // namespace internal

/// True once the running task batch has used up its quota (--task-quota-ms). Long loops should
/// check it and yield (co_await coroutine::maybe_yield()) so timers, I/O and other groups run.
inline bool need_preempt() noexcept { return __builtin_expect(internal::preempt_requested, false); }

}  // namespace reef
