// Scheduling groups: named CPU classes with shares. Every shard has a run queue per group; the
// reactor runs the group with the least CPU time per share, so groups receive CPU in proportion
// to their shares while they all have work (an idle group's share goes to the others). Tasks
// inherit the group of the code that created them, so a request handled in a group stays there
// through all its continuations.
#pragma once

#include "runtime/future.hh"
#include "runtime/reactor.hh"
#include "runtime/task.hh"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace reef {

/// Create a group on every shard (from any shard; ids are allocated on shard 0). Fails with
/// std::invalid_argument for a duplicate name or non-positive shares, std::runtime_error when
/// all max_scheduling_groups are in use.
future<scheduling_group> create_scheduling_group(std::string name, float shares);
/// Remove a group on every shard; it must have no queued tasks. The main group cannot go.
future<> destroy_scheduling_group(scheduling_group sg);
/// Change a group's shares on every shard.
future<> set_scheduling_group_shares(scheduling_group sg, float shares);

/// The group of that name, if it exists.
std::optional<scheduling_group> find_scheduling_group(const std::string& name);
/// Every existing group, main first.
std::vector<scheduling_group> all_scheduling_groups();
/// Name and shares as this shard knows them.
std::string scheduling_group_name(scheduling_group sg);
float scheduling_group_shares(scheduling_group sg);
/// This shard's statistics for the group.
reactor::group_stats scheduling_group_stats(scheduling_group sg);

namespace internal {
template <typename Func>
class group_task final : public task, public task_pool_allocated {
    using futurator = futurize<std::invoke_result_t<Func>>;
    Func _func;
    typename futurator::promise_type _pr;

public:
    group_task(scheduling_group sg, Func&& f) : task(sg), _func(std::move(f)) {}
    auto get_future() { return _pr.get_future(); }
    void run_and_dispose() noexcept override {
        // The future returned by _func may still need _func's captures: keep them until then.
        auto f = futurator::invoke(_func);
        if (f.available()) {
            f.forward_to(std::move(_pr));
            delete this;
            return;
        }
        (void)f.then_wrapped([this](auto&& r) noexcept {
            r.forward_to(std::move(_pr));
            delete this;
        });
    }
};
}  // namespace internal

/// Run func in group sg (its continuations stay in sg) and return its result. Runs at once when
/// already in sg; otherwise it is queued in sg's run queue. func is kept alive until the future
/// it returns has resolved, so a coroutine lambda may be passed.
template <typename Func>
auto with_scheduling_group(scheduling_group sg, Func&& func) -> futurize_t<std::invoke_result_t<Func>> {
    if (sg == current_scheduling_group()) {
        using R = std::invoke_result_t<Func>;
        if constexpr (is_future_v<R>) {
            // As on the queued path, func (a coroutine lambda's captures) lives until its
            // future resolves.
            auto holder = std::make_unique<std::decay_t<Func>>(std::forward<Func>(func));
            auto f = futurize_invoke(*holder);
            if (f.available()) {
                return f;
            }
            return f.finally([h = std::move(holder)] {});
        } else {
            return futurize_invoke(std::forward<Func>(func));
        }
    }
    auto* t = new internal::group_task<std::decay_t<Func>>(sg, std::forward<Func>(func));
    auto f = t->get_future();
    schedule(t);
    return f;
}

}  // namespace reef
