// A task is the unit the reactor runs: a continuation, a resumed coroutine, a woken thread.
#pragma once

#include <cstdint>

namespace reef {

/// How many scheduling groups a process may have (group 0, "main", included).
inline constexpr unsigned max_scheduling_groups = 16;

/// A CPU scheduling class. Tasks inherit the group of the code that created them; the CPU
/// scheduler divides the shard's time between groups by their shares. Group 0 is "main".
class scheduling_group {
    unsigned _id = 0;

public:
    constexpr scheduling_group() noexcept = default;
    constexpr explicit scheduling_group(unsigned id) noexcept : _id(id) {}
    constexpr unsigned id() const noexcept { return _id; }
    constexpr bool operator==(const scheduling_group&) const noexcept = default;
};

namespace internal {
// The group of the code running now on this thread; set by the reactor around each task.
inline thread_local scheduling_group current_sg;
}  // namespace internal

inline scheduling_group current_scheduling_group() noexcept { return internal::current_sg; }

/// Something the reactor can run once. `run_and_dispose()` runs it and frees it (or hands it on);
/// it must not throw. Tasks are single-threaded: created, scheduled and run on one shard.
class task {
protected:
    scheduling_group _sg;

public:
    explicit task(scheduling_group sg = current_scheduling_group()) noexcept : _sg(sg) {}
    virtual void run_and_dispose() noexcept = 0;
    scheduling_group group() const noexcept { return _sg; }
    void set_group(scheduling_group sg) noexcept { _sg = sg; }

protected:
    // Not virtual: tasks are disposed of by run_and_dispose(), never deleted through a task*.
    ~task() = default;
};

/// Queue a task on this shard's reactor, at the back of its scheduling group's queue.
void schedule(task* t) noexcept;
/// Queue a task at the front: for work that resumes something already waiting (a resolved
/// promise whose waiter should run before newer work).
void schedule_urgent(task* t) noexcept;

}  // namespace reef
