// Execution stages (SEDA): batch calls of one function so they run together, back to back, with
// the function's code and data hot in the caches, instead of interleaved with unrelated work.
//
//     static thread_local auto parse_stage = make_execution_stage("parse", [] (request r) { ... });
//     future<reply> f = parse_stage(std::move(req));
//
// A call queues its arguments and returns a future; the first call of a batch schedules one flush
// task in the caller's scheduling group, which runs every call queued by then (each call's result
// goes to its future). The stage also registers a reactor poller, polled as soon as the current
// task batch ends: a batch still waiting then is moved to the front of its group's run queue. So
// batching never delays a call past the end of the quota it was made in (plus, when several groups
// compete, the time until its group is scheduled again), however long the group's run queue is.
// A long batch yields at the quota and continues in the group's next slice. A stage object
// belongs to one shard and must be created on a reactor thread (declare it thread_local).
#pragma once

#include "runtime/circular_buffer.hh"
#include "runtime/future.hh"
#include "runtime/preempt.hh"
#include "runtime/reactor.hh"
#include "runtime/task.hh"

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace reef {

struct execution_stage_stats {
    std::uint64_t calls = 0;          // calls queued
    std::uint64_t batches = 0;        // flushes that ran calls
    std::uint64_t calls_executed = 0; // calls run by flushes
    double average_batch() const noexcept { return batches ? double(calls_executed) / double(batches) : 0; }
};

template <typename Ret, typename... Args>
class concrete_execution_stage {
    using return_type = futurize_t<Ret>;
    using promise_type = typename return_type::promise_type;

    struct work_item {
        std::tuple<Args...> args;
        promise_type pr;
    };

    struct per_group;
    struct shared_state;
    // Embedded in the stage's (heap-allocated) state and reused; a flush task may still sit in the
    // reactor's queue when the stage is destroyed, so the state outlives the stage until the last
    // queued flush task has run.
    struct flush_task final : task {
        shared_state* st = nullptr;
        per_group* group = nullptr;
        bool urgent = false;
        void run_and_dispose() noexcept override {
            --st->queued;
            (urgent ? group->urgent_scheduled : group->scheduled) = false;
            if (!st->stage) {
                if (st->queued == 0) {
                    delete st;
                }
                return;
            }
            st->stage->flush(*group);
        }
    };
    struct per_group {
        circular_buffer<work_item> queue;
        flush_task flusher;         // queued behind the group's waiting tasks by the first call
        flush_task urgent_flusher;  // queued at the front by the poller when a task batch ends
        bool scheduled = false;
        bool urgent_scheduled = false;
    };
    struct shared_state {
        std::array<per_group, max_scheduling_groups> groups;
        concrete_execution_stage* stage = nullptr;  // nullptr once the stage is destroyed
        unsigned queued = 0;                        // flush tasks in the reactor's queues
    };

    // Polled at the end of every task batch: a batch still waiting then moves to the front of its
    // group's run queue, so it starts in the group's next slice instead of behind its queue.
    class quota_end_flusher final : public pollfn {
        concrete_execution_stage& _stage;

    public:
        explicit quota_end_flusher(concrete_execution_stage& s) : _stage(s) {}
        bool poll() override {
            if (_stage._pending == 0) {
                return false;
            }
            bool promoted = false;
            for (auto& g : _stage._st->groups) {
                if (!g.queue.empty() && !g.urgent_scheduled) {
                    g.urgent_scheduled = true;
                    ++_stage._st->queued;
                    schedule_urgent(&g.urgent_flusher);
                    promoted = true;
                }
            }
            return promoted;
        }
        bool pure_poll() override { return false; }  // calls pending have a flush task queued
    };

    std::string _name;
    std::function<Ret(Args...)> _fn;
    shared_state* _st;
    execution_stage_stats _stats;
    std::size_t _pending = 0;  // calls queued in all groups
    poller _poller;

    void schedule_flush(per_group& g) noexcept {
        g.scheduled = true;
        ++_st->queued;
        schedule(&g.flusher);
    }

    void flush(per_group& g) noexcept {
        if (g.queue.empty()) {
            return;  // the other flush task ran the batch
        }
        ++_stats.batches;
        while (!g.queue.empty()) {
            work_item wi = std::move(g.queue.front());
            g.queue.pop_front();
            --_pending;
            ++_stats.calls_executed;
            std::apply([&](Args&... a) { return futurize_invoke(_fn, std::move(a)...); }, wi.args)
                .forward_to(std::move(wi.pr));
            if (need_preempt() && !g.queue.empty()) {
                // Quota is over: the rest runs in the group's next slice (promoted by the poller).
                if (!g.scheduled) {
                    schedule_flush(g);
                }
                return;
            }
        }
    }

public:
    concrete_execution_stage(std::string name, std::function<Ret(Args...)> fn)
        : _name(std::move(name)), _fn(std::move(fn)), _st(new shared_state),
          _poller(std::make_unique<quota_end_flusher>(*this)) {
        _st->stage = this;
        for (unsigned i = 0; i < max_scheduling_groups; ++i) {
            auto& g = _st->groups[i];
            for (auto* f : {&g.flusher, &g.urgent_flusher}) {
                f->st = _st;
                f->group = &g;
                f->set_group(scheduling_group(i));
            }
            g.urgent_flusher.urgent = true;
        }
    }
    /// Calls still queued are dropped: their futures fail with broken_promise.
    ~concrete_execution_stage() {
        _st->stage = nullptr;
        for (auto& g : _st->groups) {
            g.queue.clear();
        }
        if (_st->queued == 0) {
            delete _st;
        }
    }
    concrete_execution_stage(const concrete_execution_stage&) = delete;
    concrete_execution_stage& operator=(const concrete_execution_stage&) = delete;

    /// Queue a call; its result (or exception) arrives in the returned future. Arguments are
    /// moved into the queue.
    return_type operator()(Args... args) {
        auto& g = _st->groups[current_scheduling_group().id()];
        ++_stats.calls;
        ++_pending;
        auto& wi = g.queue.emplace_back(work_item{std::tuple<Args...>(std::move(args)...), promise_type()});
        auto f = wi.pr.get_future();
        if (!g.scheduled) {
            schedule_flush(g);
        }
        return f;
    }

    const std::string& name() const noexcept { return _name; }
    const execution_stage_stats& get_stats() const noexcept { return _stats; }
};

namespace internal {
template <typename F>
struct stage_signature : stage_signature<decltype(&F::operator())> {};
template <typename R, typename C, typename... A>
struct stage_signature<R (C::*)(A...) const> {
    using type = concrete_execution_stage<R, std::decay_t<A>...>;
};
template <typename R, typename C, typename... A>
struct stage_signature<R (C::*)(A...)> {
    using type = concrete_execution_stage<R, std::decay_t<A>...>;
};
template <typename R, typename... A>
struct stage_signature<R (*)(A...)> {
    using type = concrete_execution_stage<R, std::decay_t<A>...>;
};
}  // namespace internal

/// Make a stage for fn (a lambda, functor or function pointer with a fixed signature).
template <typename Func>
auto make_execution_stage(std::string name, Func fn) {
    using stage = typename internal::stage_signature<std::decay_t<Func>>::type;
    return stage(std::move(name), std::move(fn));
}

}  // namespace reef
