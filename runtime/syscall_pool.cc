#include "runtime/syscall_pool.hh"

#include <csignal>
#include <pthread.h>
#include <string>

namespace reef {

namespace internal {

class syscall_pool::completion_poller final : public pollfn {
    syscall_pool& _pool;

public:
    explicit completion_poller(syscall_pool& p) : _pool(p) {}
    bool poll() override { return _pool.reap(); }
    bool pure_poll() override { return _pool._done_count.load(std::memory_order_acquire) != 0; }
    // Workers call reactor::wakeup() after each completion, so sleeping is always safe.
    bool try_enter_interrupt_mode() override { return true; }
};

syscall_pool::syscall_pool(reactor& r, unsigned nthreads) : _reactor(r) {
    _poller = std::make_unique<completion_poller>(*this);
    _reactor.register_poller(_poller.get());
    // Pool threads must never receive the process's signals (SIGINT, the reactor's quota signal).
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    try {
        for (unsigned i = 0; i < std::max(1u, nthreads); ++i) {
            _threads.emplace_back([this] { worker(); });
            auto name = "reef-syscall-" + std::to_string(r.id());
            pthread_setname_np(_threads.back().native_handle(), name.substr(0, 15).c_str());
        }
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        throw;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

syscall_pool::~syscall_pool() {
    {
        std::lock_guard g(_submit_mutex);
        _stop = true;
    }
    _submit_cv.notify_all();
    for (auto& t : _threads) {
        t.join();
    }
    _reactor.unregister_poller(_poller.get());
    // Complete what finished; what never ran is dropped (its waiter sees broken_promise).
    reap();
    for (auto* w : _submitted) {
        delete w;
    }
}

void syscall_pool::submit(work_item* w) {
    {
        std::lock_guard g(_submit_mutex);
        _submitted.push_back(w);
    }
    _submit_cv.notify_one();
}

void syscall_pool::worker() noexcept {
    for (;;) {
        work_item* w;
        {
            std::unique_lock lk(_submit_mutex);
            _submit_cv.wait(lk, [this] { return _stop || !_submitted.empty(); });
            if (_stop) {
                return;
            }
            w = _submitted.front();
            _submitted.pop_front();
        }
        w->process();
        {
            std::lock_guard g(_done_mutex);
            _done.push_back(w);
            _done_count.store(_done.size(), std::memory_order_release);
        }
        _reactor.wakeup();
    }
}

bool syscall_pool::reap() noexcept {
    if (_done_count.load(std::memory_order_acquire) == 0) {
        return false;
    }
    std::vector<work_item*> done;
    {
        std::lock_guard g(_done_mutex);
        done.swap(_done);
        _done_count.store(0, std::memory_order_relaxed);
    }
    for (auto* w : done) {
        w->complete();
    }
    return true;
}

}  // namespace internal

internal::syscall_pool& reactor::syscall_pool() {
    if (!_syscall_pool) {
        _syscall_pool = std::make_unique<internal::syscall_pool>(*this, _cfg.blocking_threads);
    }
    return *_syscall_pool;
}

}  // namespace reef
