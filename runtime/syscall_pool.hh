// The syscall thread pool behind reactor::run_blocking(): blocking calls with no asynchronous form
// (open, unlink, rename, fsync of metadata, getaddrinfo) run on helper threads so the reactor
// never blocks. The reactor polls for completions; a sleeping reactor is woken by wakeup().
#pragma once

#include "runtime/future.hh"
#include "runtime/reactor.hh"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace reef::internal {

class syscall_pool {
public:
    struct work_item {
        virtual ~work_item() = default;
        virtual void process() noexcept = 0;   // on a pool thread
        virtual void complete() noexcept = 0;  // back on the reactor; deletes the item
    };

    syscall_pool(reactor& r, unsigned nthreads);
    ~syscall_pool();
    void submit(work_item* w);
    std::size_t threads() const noexcept { return _threads.size(); }

private:
    class completion_poller;

    reactor& _reactor;
    std::mutex _submit_mutex;
    std::condition_variable _submit_cv;
    std::deque<work_item*> _submitted;
    bool _stop = false;
    std::mutex _done_mutex;
    std::vector<work_item*> _done;
    std::atomic<std::size_t> _done_count{0};
    std::vector<std::thread> _threads;
    std::unique_ptr<pollfn> _poller;

    void worker() noexcept;
    bool reap() noexcept;
};

}  // namespace reef::internal

namespace reef {

template <typename Func>
auto reactor::run_blocking(Func&& func) -> futurize_t<std::invoke_result_t<Func>> {
    using R = std::invoke_result_t<Func>;
    static_assert(!is_future_v<R>, "run_blocking runs plain blocking functions, not ones returning futures");
    struct item final : internal::syscall_pool::work_item {
        std::decay_t<Func> f;
        promise<R> pr;
        std::optional<internal::value_or_monostate<R>> result;
        std::exception_ptr ex;
        explicit item(Func&& fn) : f(std::forward<Func>(fn)) {}
        void process() noexcept override {
            try {
                if constexpr (std::is_void_v<R>) {
                    f();
                    result.emplace();
                } else {
                    result.emplace(f());
                }
            } catch (...) {
                ex = std::current_exception();
            }
        }
        void complete() noexcept override {
            if (ex) {
                pr.set_exception(std::move(ex));
            } else if constexpr (std::is_void_v<R>) {
                pr.set_value();
            } else {
                pr.set_value(std::move(*result));
            }
            delete this;
        }
    };
    auto* it = new item(std::forward<Func>(func));
    auto fut = it->pr.get_future();
    syscall_pool().submit(it);
    return fut;
}

/// run_blocking on the calling shard's reactor.
template <typename Func>
auto run_blocking(Func&& func) {
    return engine().run_blocking(std::forward<Func>(func));
}

}  // namespace reef
