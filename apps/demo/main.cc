// reef-demo: the runtime at work until Ctrl-C, SIGTERM or --duration.
//
// A small workload exercises every part of the single-shard runtime: a periodic timer, coroutines
// bouncing values through unready futures, a reef::thread doing CPU work that yields and sleeps
// with future::get(), and blocking calls handed to the syscall pool with run_blocking(). A status
// line per --report-interval shows what the reactor did (tasks, polls, sleeps, idle time, timers).
//
// Interface (the pytest smoke test depends on it): `reef-demo [--duration S] [--report-interval S]`
// plus the standard runtime options; logs a line containing "reef-demo started" when the workload
// starts and "reef-demo stopped" on a clean exit (status 0), on stderr through the logger.
#include "runtime/app_template.hh"
#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/reactor.hh"
#include "runtime/syscall_pool.hh"
#include "runtime/thread.hh"
#include "runtime/timer.hh"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

reef::logger dlog("demo");

// What the workload has done, and how it is told to stop. Lives in main(), outside the reactor, so
// the at_exit hook may use it after the demo coroutine has returned.
struct workload {
    bool stopping = false;
    bool failed = false;
    reef::promise<> stop_requested;
    reef::promise<> finished;  // resolved once every worker has returned
    std::uint64_t ticks = 0;
    std::uint64_t round_trips = 0;
    std::uint64_t thread_steps = 0;
    std::uint64_t primes_found = 0;
    std::uint64_t blocking_calls = 0;
    std::string loadavg = "?";

    void request_stop() {
        if (!stopping) {
            stopping = true;
            stop_requested.set_value();
        }
    }
    void fail(const char* worker, std::exception_ptr ex) {
        try {
            std::rethrow_exception(ex);
        } catch (const std::exception& e) {
            dlog.error("{} failed: {}", worker, e.what());
        } catch (...) {
            dlog.error("{} failed: unknown exception", worker);
        }
        failed = true;
        request_stop();
    }
};

reef::future<> delay(reef::steady_clock_type::duration d) {
    reef::promise<> pr;
    reef::timer<> t([&pr] { pr.set_value(); });
    t.arm(d);
    co_await pr.get_future();
}

// A value that comes back through an unready future: one task hop each way.
reef::future<std::uint64_t> bounce(std::uint64_t v) {
    reef::promise<std::uint64_t> pr;
    auto f = pr.get_future();
    reef::schedule(reef::make_task([pr = std::move(pr), v]() mutable { pr.set_value(v + 1); }));
    return f;
}

// Bursts of coroutine round trips through unready futures, 20 ms apart.
reef::future<> round_trip_worker(workload& w) {
    try {
        std::uint64_t v = 0;
        while (!w.stopping) {
            for (int i = 0; i < 1000 && !w.stopping; ++i) {
                v = co_await bounce(v);
                ++w.round_trips;
                co_await reef::coroutine::maybe_yield();
            }
            co_await delay(20ms);
        }
    } catch (...) {
        w.fail("coroutine worker", std::current_exception());
    }
}

bool is_prime(std::uint64_t n) {
    if (n < 2) {
        return false;
    }
    for (std::uint64_t d = 2; d * d <= n; ++d) {
        if (n % d == 0) {
            return false;
        }
    }
    return true;
}

// Sequential code in a reef::thread: CPU work that yields when the task quota is used up, and a
// sleep through future::get(), which suspends only this thread.
reef::future<> thread_worker(workload& w) {
    return reef::async([&w] {
        std::uint64_t n = 2;
        while (!w.stopping) {
            for (int i = 0; i < 5000; ++i, ++n) {
                w.primes_found += is_prime(n);
                reef::thread::maybe_yield();
            }
            ++w.thread_steps;
            delay(10ms).get();
        }
    }).handle_exception([&w](std::exception_ptr ex) { w.fail("thread worker", std::move(ex)); });
}

std::string read_loadavg() {
    std::string out = "?";
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
        char buf[64] = {};
        if (std::fscanf(f, "%63s", buf) == 1) {
            out = buf;
        }
        std::fclose(f);
    }
    return out;
}

// Blocking calls on the syscall pool, two at a time, every 100 ms.
reef::future<> blocking_worker(workload& w) {
    try {
        while (!w.stopping) {
            auto load = reef::run_blocking(read_loadavg);
            auto nap = reef::run_blocking([] { ::usleep(2000); });
            w.loadavg = co_await std::move(load);
            co_await std::move(nap);
            w.blocking_calls += 2;
            co_await delay(100ms);
        }
    } catch (...) {
        w.fail("blocking worker", std::current_exception());
    }
}

// The status line: reactor counters over the last interval, and the workload's totals.
class reporter {
    const workload& _w;
    reef::reactor::stats _last;
    reef::steady_clock_type::time_point _last_time;

public:
    explicit reporter(const workload& w)
        : _w(w), _last(reef::engine().get_stats()), _last_time(reef::steady_clock_type::now()) {}

    void report() {
        auto s = reef::engine().get_stats();
        auto now = reef::steady_clock_type::now();
        double wall = std::chrono::duration<double>(now - _last_time).count();
        double idle = std::chrono::duration<double>(s.idle_time - _last.idle_time).count();
        double idle_pct = wall > 0 ? 100.0 * idle / wall : 0.0;
        dlog.info("status: tasks {} (+{}), polls {} (+{}), sleeps {} (+{}), idle {:.1f}%, timers fired {} (+{}), "
                  "stalls {} | ticks {}, round trips {}, thread steps {} ({} primes), blocking calls {}, "
                  "loadavg {}",
                  s.tasks_processed, s.tasks_processed - _last.tasks_processed, s.polls, s.polls - _last.polls,
                  s.sleeps, s.sleeps - _last.sleeps, idle_pct, s.timers_fired, s.timers_fired - _last.timers_fired,
                  s.stalls, _w.ticks, _w.round_trips, _w.thread_steps, _w.primes_found, _w.blocking_calls,
                  _w.loadavg);
        _last = s;
        _last_time = now;
    }
};

reef::future<int> run_demo(workload& w, const reef::runtime_options& opts, double duration_s, double report_s) {
    // Ctrl-C and SIGTERM make the reactor run its at_exit hooks: this one stops the workload and
    // holds the exit until every worker has returned.
    reef::engine().at_exit([&w] {
        w.request_stop();
        return w.finished.get_future();
    });

    reef::timer<> heartbeat([&w] { ++w.ticks; });
    heartbeat.arm_periodic(10ms);
    reporter rep(w);
    reef::timer<reef::lowres_clock> report_timer([&rep] { rep.report(); });
    report_timer.arm_periodic(std::chrono::duration_cast<reef::lowres_clock::duration>(
        std::chrono::duration<double>(report_s)));
    reef::timer<> duration_timer([&w] {
        dlog.info("--duration elapsed, stopping");
        w.request_stop();
    });
    if (duration_s > 0) {
        duration_timer.arm(std::chrono::duration_cast<reef::steady_clock_type::duration>(
            std::chrono::duration<double>(duration_s)));
    }

    dlog.info("reef-demo started: idle policy {}, task quota {} ms, stall threshold {} ms, {} blocking thread(s); "
              "running {}",
              opts.reactor.idle_policy, opts.reactor.task_quota_ms, opts.reactor.stall_threshold_ms,
              opts.reactor.blocking_threads,
              duration_s > 0 ? fmt::format("for {} s", duration_s) : std::string("until SIGINT or SIGTERM"));

    auto coroutines = round_trip_worker(w);
    auto threaded = thread_worker(w);
    auto blocking = blocking_worker(w);

    co_await w.stop_requested.get_future();
    heartbeat.cancel();
    report_timer.cancel();
    duration_timer.cancel();
    // The workers cannot fail (each reports its own exception), so every one is awaited.
    co_await std::move(coroutines);
    co_await std::move(threaded);
    co_await std::move(blocking);

    rep.report();
    dlog.info("workload finished: {} ticks, {} round trips, {} thread steps, {} blocking calls", w.ticks,
              w.round_trips, w.thread_steps, w.blocking_calls);
    w.finished.set_value();
    co_return w.failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    reef::app_template app("reef-demo",
                           "Reef runtime demo: timers, coroutines, a reef::thread and run_blocking calls, "
                           "with a status line per report interval. Stops on Ctrl-C, SIGTERM or --duration.");
    double duration_s = 0;
    double report_s = 1.0;
    app.options()
        .add_option("--duration", duration_s, "Stop after this many seconds (0: run until SIGINT or SIGTERM)")
        ->check(CLI::Range(0.0, 1e9))
        ->capture_default_str();
    app.options()
        .add_option("--report-interval", report_s, "Seconds between status lines")
        ->check(CLI::Range(0.01, 1e6))
        ->capture_default_str();

    workload w;
    bool ran = false;
    int code = app.run(argc, argv, [&]() -> reef::future<int> {
        ran = true;
        return run_demo(w, app.configuration(), duration_s, report_s);
    });
    if (ran) {
        if (code == 0) {
            dlog.info("reef-demo stopped");
        } else {
            dlog.error("reef-demo failed (exit code {})", code);
        }
    }
    return code;
}
