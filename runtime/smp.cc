#include "runtime/smp.hh"

#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/memory.hh"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <latch>
#include <mutex>
#include <pthread.h>
#include <sched.h>
#include <set>
#include <stdexcept>
#include <thread>

namespace reef {

static logger smplog("smp");

std::vector<unsigned> parse_cpuset(const std::string& s) {
    std::set<unsigned> cpus;
    std::size_t pos = 0;
    auto bad = [&](const std::string& part) {
        return std::invalid_argument(fmt::format("invalid cpuset '{}': bad element '{}' (expected e.g. 0-3,8)", s, part));
    };
    auto number = [&](const std::string& t, const std::string& part) -> unsigned {
        if (t.empty() || t.size() > 6 || !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            throw bad(part);
        }
        return unsigned(std::stoul(t));
    };
    if (s.empty()) {
        throw std::invalid_argument("invalid cpuset '': empty");
    }
    while (pos <= s.size()) {
        auto comma = s.find(',', pos);
        std::string part = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        auto dash = part.find('-');
        if (dash == std::string::npos) {
            cpus.insert(number(part, part));
        } else {
            unsigned a = number(part.substr(0, dash), part);
            unsigned b = number(part.substr(dash + 1), part);
            if (b < a) {
                throw bad(part);
            }
            for (unsigned c = a; c <= b; ++c) {
                cpus.insert(c);
            }
        }
        if (comma == std::string::npos) {
            break;
        }
        pos = comma + 1;
    }
    return {cpus.begin(), cpus.end()};
}

std::vector<unsigned> available_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<unsigned> out;
    if (::sched_getaffinity(0, sizeof(set), &set) != 0) {
        unsigned n = std::max(1u, std::thread::hardware_concurrency());
        for (unsigned i = 0; i < n; ++i) {
            out.push_back(i);
        }
        return out;
    }
    for (unsigned i = 0; i < CPU_SETSIZE; ++i) {
        if (CPU_ISSET(i, &set)) {
            out.push_back(i);
        }
    }
    return out;
}

std::vector<unsigned> resolve_shard_cpus(const smp_options& opts) {
    auto avail = available_cpus();
    std::vector<unsigned> cpus = avail;
    if (!opts.cpuset.empty()) {
        std::vector<unsigned> missing;
        for (unsigned c : opts.cpuset) {
            if (!std::binary_search(avail.begin(), avail.end(), c)) {
                missing.push_back(c);
            }
        }
        if (!missing.empty()) {
            throw std::invalid_argument(fmt::format("--cpuset names CPUs this process cannot use: {} (available: {})",
                                                    fmt::join(missing, ","), fmt::join(avail, ",")));
        }
        cpus = opts.cpuset;
    }
    unsigned n = opts.smp ? opts.smp : unsigned(cpus.size());
    if (n > cpus.size()) {
        throw std::invalid_argument(fmt::format("--smp {} is more than the {} CPUs available ({})", n, cpus.size(),
                                                fmt::join(cpus, ",")));
    }
    cpus.resize(n);
    return cpus;
}

namespace internal {

smp_message_queue::smp_message_queue(unsigned from, unsigned to, std::size_t capacity)
    : _from(from), _to(to), _requests(capacity), _responses(capacity), _max_inflight(_requests.capacity()) {}

smp_message_queue::~smp_message_queue() {
    for (std::size_t i = 0; i < _blocked.size(); ++i) {
        delete _blocked[i];
    }
}

void smp_message_queue::enqueue(smp_work_item* item) noexcept {
    // Room is guaranteed: at most _max_inflight == capacity items are between the two shards.
    _requests.push(item);
    if (++_unpublished_requests >= batch) {
        flush_requests();
    }
}

bool smp_message_queue::flush_requests() noexcept {
    if (_unpublished_requests == 0) {
        return false;
    }
    _unpublished_requests = 0;
    _requests.publish();
    smp_target_reactor(_to)->wakeup();
    return true;
}

bool smp_message_queue::process_completions() noexcept {
    smp_work_item* items[batch];
    std::size_t n = _responses.pop(items, batch);
    if (n == 0) {
        return false;
    }
    _stats.completed += n;
    _inflight -= n;
    for (std::size_t i = 0; i < n; ++i) {
        items[i]->complete();
    }
    while (!_blocked.empty() && _inflight < _max_inflight) {
        ++_inflight;
        auto* item = _blocked.front();
        _blocked.pop_front();
        enqueue(item);
    }
    return true;
}

bool smp_message_queue::process_incoming() noexcept {
    smp_work_item* items[batch];
    std::size_t n = _requests.pop(items, batch);
    if (n == 0) {
        return false;
    }
    _stats.received += n;
    for (std::size_t i = 0; i < n; ++i) {
        items[i]->process();
    }
    return true;
}

void smp_message_queue::respond(smp_work_item* item) noexcept {
    _responses.push(item);
    if (++_unpublished_responses >= batch) {
        flush_responses();
    }
}

bool smp_message_queue::flush_responses() noexcept {
    if (_unpublished_responses == 0) {
        return false;
    }
    _unpublished_responses = 0;
    _responses.publish();
    smp_target_reactor(_from)->wakeup();
    return true;
}

namespace {

// Each shard's poller: runs requests addressed to it, completes its own requests' responses, and
// publishes what it queued. Other shards wake it with reactor::wakeup() after publishing, so it
// can always sleep.
class smp_poller final : public pollfn {
    unsigned _self;

public:
    // Constructed on the shard's thread, after pinning: the place to bind its memory to its node.
    explicit smp_poller(unsigned self) : _self(self) { memory::bind_to_local_numa_node(); }
    bool poll() override {
        // Blocks other shards freed into this shard's memory, and this shard's batched frees of theirs.
        bool work = memory::drain_remote_frees();
        for (unsigned o = 0; o < smp::count; ++o) {
            if (o == _self) {
                continue;
            }
            auto& in = smp::queue(o, _self);
            auto& out = smp::queue(_self, o);
            work |= in.process_incoming();
            work |= out.process_completions();
            work |= in.flush_responses();
            work |= out.flush_requests();
        }
        return work;
    }
    bool pure_poll() override {
        if (memory::has_remote_frees()) {
            return true;
        }
        for (unsigned o = 0; o < smp::count; ++o) {
            if (o == _self) {
                continue;
            }
            auto& in = smp::queue(o, _self);
            auto& out = smp::queue(_self, o);
            if (in.has_incoming() || out.has_completions() || in.has_unflushed_responses() ||
                out.has_unflushed_requests()) {
                return true;
            }
        }
        return false;
    }
};

std::vector<reactor*> g_reactors;

void pin_to(unsigned cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set) != 0) {
        smplog.warn("could not pin shard {} to CPU {}", this_shard_id(), cpu);
    }
}

}  // namespace

reactor* smp_target_reactor(unsigned shard) noexcept { return g_reactors[shard]; }

}  // namespace internal

int smp::run(const smp_options& opts, reactor_config cfg, std::function<future<int>()> main) {
    auto cpus = resolve_shard_cpus(opts);
    unsigned n = unsigned(cpus.size());
    count = n;
    // Shard 0 is the calling thread: give its CPU mask back when the shards stop, so a caller that
    // runs smp more than once (tests, tools) is not left pinned.
    cpu_set_t caller_mask;
    bool restore_mask = opts.thread_affinity &&
                        ::pthread_getaffinity_np(::pthread_self(), sizeof(caller_mask), &caller_mask) == 0;
    _cpus = opts.thread_affinity ? cpus : std::vector<unsigned>{};
    _queues.clear();
    _queues.resize(std::size_t(n) * n);
    for (unsigned a = 0; a < n; ++a) {
        for (unsigned b = 0; b < n; ++b) {
            if (a != b) {
                _queues[a * n + b] = std::make_unique<internal::smp_message_queue>(a, b, 1024);
            }
        }
    }
    internal::g_reactors.assign(n, nullptr);

    std::latch started(n);  // every shard has its reactor (or failed)
    // Shard 0's view of the other shards' shutdown; only shard 0 touches it.
    struct stop_state {
        unsigned expected = 0;
        unsigned stopped = 0;
        promise<> all;
    } stop;
    std::mutex error_mutex;
    std::exception_ptr start_error;
    std::vector<std::thread> threads;

    auto record_error = [&](std::exception_ptr e) {
        std::lock_guard g(error_mutex);
        if (!start_error) {
            start_error = e;
        }
    };

    // Shard 0 (this thread) first: if its reactor cannot be made, no other thread exists yet.
    if (opts.thread_affinity) {
        internal::pin_to(cpus[0]);
    }
    std::optional<reactor> r;
    std::optional<poller> p;
    try {
        r.emplace(0, cfg);
        p.emplace(std::make_unique<internal::smp_poller>(0));
        internal::g_reactors[0] = &*r;
    } catch (...) {
        p.reset();
        r.reset();
        internal::g_reactors.clear();
        _queues.clear();
        count = 1;
        if (restore_mask) {
            ::pthread_setaffinity_np(::pthread_self(), sizeof(caller_mask), &caller_mask);
        }
        throw;
    }

    // Shards other than 0 never take process signals: SIGINT/SIGTERM go to shard 0, which stops
    // everyone in order.
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGQUIT);
    ::pthread_sigmask(SIG_BLOCK, &block, &old);
    for (unsigned id = 1; id < n; ++id) {
        threads.emplace_back([&, id] {
            if (opts.thread_affinity) {
                // Pin before the reactor allocates anything, so its memory is local.
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(cpus[id], &set);
                ::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set);
            }
            std::optional<reactor> sr;
            std::optional<poller> sp;
            try {
                reactor_config c = cfg;
                c.handle_termination_signals = false;
                sr.emplace(id, c);
                sp.emplace(std::make_unique<internal::smp_poller>(id));
                internal::g_reactors[id] = &*sr;
                if (opts.shard_init) {
                    opts.shard_init(id);
                }
            } catch (...) {
                record_error(std::current_exception());
                internal::g_reactors[id] = nullptr;
                sp.reset();
                sr.reset();
                started.count_down();
                return;
            }
            // Runs last on the way out: tell shard 0 this shard is done with its hooks.
            sr->at_exit([&stop] {
                return smp::submit_to(0, [&stop] {
                    if (++stop.stopped == stop.expected) {
                        stop.all.set_value();
                    }
                });
            });
            started.count_down();
            sr->run();
            sp.reset();
            sr.reset();
        });
        auto name = "reef-shard-" + std::to_string(id);
        ::pthread_setname_np(threads.back().native_handle(), name.c_str());
    }
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);

    int code = 1;
    {
        try {
            if (opts.shard_init) {
                opts.shard_init(0);
            }
        } catch (...) {
            record_error(std::current_exception());
        }
        started.count_down();
        started.wait();
        bool failed_start = false;
        {
            std::lock_guard g(error_mutex);
            failed_start = bool(start_error);
        }
        // Registered first, so it runs last among shard 0's exit hooks: stop the other shards and
        // keep serving the rings until each has run its own hooks.
        r->at_exit([&stop]() -> future<> {
            for (unsigned s = 1; s < count; ++s) {
                if (internal::g_reactors[s]) {
                    ++stop.expected;
                    (void)smp::submit_to(s, [] { engine().exit(0); });
                }
            }
            if (stop.expected > stop.stopped) {
                co_await stop.all.get_future();
            }
        });
        r->add_task(make_task([&, failed_start] {
            if (failed_start) {
                smplog.error("a shard failed to start; stopping");
                engine().exit(1);
                return;
            }
            (void)futurize_invoke(main).then_wrapped([](future<int>&& f) {
                int c = 1;
                try {
                    c = f.get();
                } catch (const std::exception& e) {
                    smplog.error("main failed: {}", e.what());
                } catch (...) {
                    smplog.error("main failed: unknown exception");
                }
                engine().exit(c);
            });
        }));
        code = r->run();
        for (auto& t : threads) {
            t.join();
        }
        // Responses that arrived after shard 0 stopped polling.
        for (unsigned o = 1; o < n; ++o) {
            queue(0, o).process_completions();
        }
        p.reset();
        r.reset();
    }
    internal::g_reactors.clear();
    _queues.clear();
    count = 1;
    if (restore_mask) {
        ::pthread_setaffinity_np(::pthread_self(), sizeof(caller_mask), &caller_mask);
    }
    if (start_error) {
        std::rethrow_exception(start_error);
    }
    return code;
}

}  // namespace reef
