// Microbenchmarks of the runtime core, with the baselines the issue names measured in the same
// binary: std::promise/std::future and a Boost.Asio io_context::post chain.
//
// Every case reports, beside its time, allocations and reactor tasks per iteration (counters
// "allocs" and "tasks"), as Seastar's perf_tests do: a regression in either shows even where the
// time is noisy. The benchmarks run inside a reef::thread on a live reactor, so code that needs
// the event loop (unready futures, yields, run_blocking) waits with future::get().
#include "runtime/coroutine.hh"
#include "runtime/reactor.hh"
#include "runtime/semaphore.hh"
#include "runtime/syscall_pool.hh"
#include "runtime/thread.hh"

#include <benchmark/benchmark.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <cstdlib>
#include <future>
#include <new>
#include <vector>

// Allocation counting: every operator new in this process bumps a thread-local counter. Both new
// and delete are replaced (on malloc/free), which GCC's mismatched-new-delete check cannot see.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
namespace {
thread_local std::uint64_t g_allocs = 0;
}

void* operator new(std::size_t n) {
    ++g_allocs;
    if (void* p = std::malloc(n ? n : 1)) {
        return p;
    }
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    ++g_allocs;
    if (void* p = std::malloc(n ? n : 1)) {
        return p;
    }
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace reef;

namespace {

// Snapshots allocation and task counts around the timed loop and reports them per iteration.
class per_iteration_counters {
    benchmark::State& _state;
    std::uint64_t _allocs;
    std::uint64_t _tasks;
    double _ops_per_iter;

public:
    explicit per_iteration_counters(benchmark::State& s, double ops_per_iter = 1)
        : _state(s), _allocs(g_allocs), _tasks(engine().get_stats().tasks_processed), _ops_per_iter(ops_per_iter) {}
    ~per_iteration_counters() {
        double n = double(_state.iterations()) * _ops_per_iter;
        if (n > 0) {
            _state.counters["allocs"] = double(g_allocs - _allocs) / n;
            _state.counters["tasks"] = double(engine().get_stats().tasks_processed - _tasks) / n;
        }
    }
};

// ---- futures, ready path -----------------------------------------------------------------------

void future_then_ready(benchmark::State& state) {
    per_iteration_counters c(state);
    int i = 0;
    for (auto _ : state) {
        auto f = make_ready_future<int>(i++).then([](int x) { return x + 1; });
        benchmark::DoNotOptimize(f.get());
    }
}
BENCHMARK(future_then_ready);

void future_then_ready_chain5(benchmark::State& state) {
    per_iteration_counters c(state);
    int i = 0;
    for (auto _ : state) {
        auto f = make_ready_future<int>(i++)
                     .then([](int x) { return x + 1; })
                     .then([](int x) { return x + 1; })
                     .then([](int x) { return x + 1; })
                     .then([](int x) { return x + 1; })
                     .then([](int x) { return x + 1; });
        benchmark::DoNotOptimize(f.get());
    }
}
BENCHMARK(future_then_ready_chain5);

// A promise handed to its future and read back: the same work std::promise/std::future do below.
void future_promise_handoff(benchmark::State& state) {
    per_iteration_counters c(state);
    int i = 0;
    for (auto _ : state) {
        promise<int> p;
        auto f = p.get_future();
        p.set_value(i++);
        benchmark::DoNotOptimize(f.get());
    }
}
BENCHMARK(future_promise_handoff);

// ---- futures, unready path ---------------------------------------------------------------------

// Time from set_value to the continuation having run: a promise, one continuation, resolved, and
// the loop run until the continuation ran. Batched so the thread switch of get() is amortized.
void future_set_value_to_continuation(benchmark::State& state) {
    constexpr int batch = 256;
    per_iteration_counters c(state, batch);
    std::vector<promise<int>> ps(batch);
    std::vector<future<int>> fs;
    fs.reserve(batch);
    int sum = 0;
    for (auto _ : state) {
        state.PauseTiming();
        ps.clear();
        ps.resize(batch);
        fs.clear();
        for (auto& p : ps) {
            fs.push_back(p.get_future().then([&sum](int x) { sum += x; return x; }));
        }
        state.ResumeTiming();
        for (auto& p : ps) {
            p.set_value(1);
        }
        fs.back().get();  // all continuations ran in order before the last one
    }
    benchmark::DoNotOptimize(sum);
    state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(future_set_value_to_continuation);

// One link of a chain through unready futures: the first future waits on a promise, each then()
// allocates a continuation; resolving runs the whole chain. Reported per link.
template <int Links>
void future_unready_chain(benchmark::State& state) {
    per_iteration_counters c(state, Links);
    for (auto _ : state) {
        promise<int> p;
        auto f = p.get_future();
        for (int i = 0; i < Links; ++i) {
            f = f.then([](int x) { return x + 1; });
        }
        p.set_value(0);
        benchmark::DoNotOptimize(f.get());
    }
    state.SetItemsProcessed(state.iterations() * Links);
}
BENCHMARK_TEMPLATE(future_unready_chain, 5);
BENCHMARK_TEMPLATE(future_unready_chain, 100);

// ---- coroutines --------------------------------------------------------------------------------

future<> coro_empty() { co_return; }

future<int> coro_await_ready(int x) { co_return co_await make_ready_future<int>(x) + 1; }

future<int> coro_await(future<int> f) { co_return co_await std::move(f) + 1; }

void coroutine_empty(benchmark::State& state) {
    per_iteration_counters c(state);
    for (auto _ : state) {
        auto f = coro_empty();
        benchmark::DoNotOptimize(f.available());
        f.get();
    }
}
BENCHMARK(coroutine_empty);

void coroutine_await_ready(benchmark::State& state) {
    per_iteration_counters c(state);
    int i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(coro_await_ready(i++).get());
    }
}
BENCHMARK(coroutine_await_ready);

// A coroutine suspended on an unready future, resumed by set_value: per coroutine.
void coroutine_await_unready(benchmark::State& state) {
    constexpr int batch = 256;
    per_iteration_counters c(state, batch);
    std::vector<promise<int>> ps(batch);
    std::vector<future<int>> fs;
    fs.reserve(batch);
    for (auto _ : state) {
        state.PauseTiming();
        ps.clear();
        ps.resize(batch);
        fs.clear();
        state.ResumeTiming();
        for (auto& p : ps) {
            fs.push_back(coro_await(p.get_future()));
        }
        for (auto& p : ps) {
            p.set_value(1);
        }
        benchmark::DoNotOptimize(fs.back().get());
    }
    state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(coroutine_await_unready);

future<> maybe_yield_loop(int n) {
    for (int i = 0; i < n; ++i) {
        co_await coroutine::maybe_yield();
    }
}

void coroutine_maybe_yield(benchmark::State& state) {
    constexpr int n = 1000;
    per_iteration_counters c(state, n);
    for (auto _ : state) {
        maybe_yield_loop(n).get();
    }
    state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(coroutine_maybe_yield);

// ---- semaphore, thread, syscall pool -----------------------------------------------------------

void semaphore_wait_signal(benchmark::State& state) {
    per_iteration_counters c(state);
    semaphore sem(1);
    for (auto _ : state) {
        auto f = sem.wait();
        sem.signal();
        f.get();
    }
}
BENCHMARK(semaphore_wait_signal);

// A waiter queued on an empty semaphore and released by signal(): the contended path.
void semaphore_wait_signal_contended(benchmark::State& state) {
    constexpr int batch = 256;
    per_iteration_counters c(state, batch);
    semaphore sem(0);
    std::vector<future<>> fs;
    fs.reserve(batch);
    for (auto _ : state) {
        fs.clear();
        for (int i = 0; i < batch; ++i) {
            fs.push_back(sem.wait());
        }
        sem.signal(batch);
        for (auto& f : fs) {
            f.get();
        }
    }
    state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(semaphore_wait_signal_contended);

// thread::yield(): the running thread is queued and switched out, the reactor switches back in.
void thread_context_switch(benchmark::State& state) {
    per_iteration_counters c(state);
    for (auto _ : state) {
        reef::thread::yield();
    }
}
BENCHMARK(thread_context_switch);

void run_blocking_round_trip(benchmark::State& state) {
    per_iteration_counters c(state);
    for (auto _ : state) {
        benchmark::DoNotOptimize(run_blocking([] { return 1; }).get());
    }
}
BENCHMARK(run_blocking_round_trip)->UseRealTime();

// ---- baselines ---------------------------------------------------------------------------------

void baseline_std_future_handoff(benchmark::State& state) {
    per_iteration_counters c(state);
    int i = 0;
    for (auto _ : state) {
        std::promise<int> p;
        auto f = p.get_future();
        p.set_value(i++);
        benchmark::DoNotOptimize(f.get());
    }
}
BENCHMARK(baseline_std_future_handoff);

// A handler that posts the next one, `Links` times, then io_context::run(): the Asio analogue of
// a continuation chain. Reported per link.
template <int Links>
void baseline_asio_post_chain(benchmark::State& state) {
    per_iteration_counters c(state, Links);
    boost::asio::io_context io(1);
    for (auto _ : state) {
        int left = Links;
        struct stepper {
            boost::asio::io_context* io;
            int* left;
            void operator()() const {
                if (--*left > 0) {
                    boost::asio::post(*io, stepper{io, left});
                }
            }
        };
        boost::asio::post(io, stepper{&io, &left});
        io.restart();
        io.run();
        benchmark::DoNotOptimize(left);
    }
    state.SetItemsProcessed(state.iterations() * Links);
}
BENCHMARK_TEMPLATE(baseline_asio_post_chain, 5);
BENCHMARK_TEMPLATE(baseline_asio_post_chain, 100);

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 2;
    }
    reactor_config cfg;
    cfg.idle = idle_policy::poll;
    cfg.handle_termination_signals = true;
    // Each benchmark runs as one long task inside a reef::thread. With the normal 0.5 ms quota,
    // need_preempt() would turn true early in every run and send ready futures down the
    // scheduling path, measuring the preempted case instead of the fast path; and the stall
    // detector would report the benchmark loop itself.
    cfg.task_quota = std::chrono::seconds(3600);
    cfg.stall_threshold = std::chrono::hours(24);
    // Google Benchmark's reporters want more stack than a reef::thread's default.
    thread_attributes attr;
    attr.stack_size = 8 << 20;
    return run_reactor(cfg, [attr] {
        return async(attr, [] {
            benchmark::RunSpecifiedBenchmarks();
            benchmark::Shutdown();
            return 0;
        });
    });
}
