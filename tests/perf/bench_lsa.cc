// LSA churn: a cache-like workload (values of random sizes, a live set held at a fixed share of the
// budget, random frees) on an LSA region and, with the identical sequence of operations, on glibc
// malloc. Shows fragmentation side by side: the LSA's occupancy after compaction (live bytes / segment
// bytes in use) against live bytes / RSS for malloc.
//
// Each phase runs in its own child process so that neither heap nor RSS leaks into the other. The
// LSA phase runs for --seconds; the malloc phase then replays exactly as many operations (same seed,
// same sizes, same frees).
//
//   bench_lsa [--seconds 60] [--budget-mib 256] [--live-fraction 0.8] [--min-size 50]
//             [--max-size 2000] [--seed 1] [--json PATH]
#include "runtime/lsa.hh"

#include <fmt/format.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using clk = std::chrono::steady_clock;
constexpr double MiB = 1024.0 * 1024.0;

struct config {
    double seconds = 60;
    std::size_t budget = 256 * 1024 * 1024;
    double live_fraction = 0.8;
    std::size_t min_size = 50;
    std::size_t max_size = 2000;
    std::uint64_t seed = 1;
    std::string json;
};

// Sent from a child to the parent through a pipe (plain data only).
struct lsa_result {
    std::uint64_t ops = 0;
    double churn_seconds = 0;
    std::uint64_t live_bytes = 0;
    std::uint64_t live_objects = 0;
    double occupancy_churn = 0;  // steady state, before the final compaction
    double occupancy_after = 0;  // after compact_all()
    std::uint64_t segments_in_use_churn = 0;
    std::uint64_t segments_in_use_after = 0;
    std::uint64_t bytes_allocated_churn = 0;
    std::uint64_t bytes_moved_churn = 0;
    std::uint64_t bytes_moved_final = 0;
    std::uint64_t segments_compacted_churn = 0;
    std::uint64_t segments_compacted_final = 0;
    double final_compaction_ms = 0;
    std::uint64_t rss_churn = 0;     // process RSS above the baseline, end of churn
    std::uint64_t rss_released = 0;  // after compaction, reclaim and malloc_trim
    bool verified = false;
};

struct malloc_result {
    std::uint64_t ops = 0;
    double churn_seconds = 0;
    std::uint64_t live_bytes = 0;
    std::uint64_t live_objects = 0;
    std::uint64_t rss = 0;          // process RSS above the baseline, end of churn
    std::uint64_t rss_trimmed = 0;  // after malloc_trim(0)
    std::uint64_t arena_bytes = 0;  // mallinfo2: arena + mmapped
    bool verified = false;
};

std::uint64_t rss_bytes() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f) {
        throw std::runtime_error("cannot read /proc/self/statm");
    }
    unsigned long size = 0, resident = 0;
    int n = std::fscanf(f, "%lu %lu", &size, &resident);
    std::fclose(f);
    if (n != 2) {
        throw std::runtime_error("cannot parse /proc/self/statm");
    }
    return std::uint64_t(resident) * std::uint64_t(sysconf(_SC_PAGESIZE));
}

// The operation stream, identical for both allocators: allocate while the live set is below the
// target, otherwise free a random live object. Objects are named by slots; an object's first four
// bytes hold its slot (what a hash table entry's key would be), the rest a byte derived from it.
template <typename Allocator>
class churn {
    const config& _cfg;
    Allocator& _a;
    std::mt19937_64 _rng;
    std::uniform_int_distribution<std::size_t> _size;
    std::size_t _target;
    std::vector<std::uint32_t> _sizes;  // by slot
    std::vector<std::uint32_t> _live;   // slots of live objects, in no order
    std::vector<std::uint32_t> _free_slots;

public:
    std::vector<void*> table;  // by slot: the object's address (the LSA migrator keeps it current)
    std::size_t live_bytes = 0;
    std::uint64_t ops = 0;
    std::uint64_t allocated_bytes = 0;

    churn(const config& cfg, Allocator& a)
        : _cfg(cfg), _a(a), _rng(cfg.seed), _size(cfg.min_size, cfg.max_size),
          _target(std::size_t(double(cfg.budget) * cfg.live_fraction)) {
        // Sized (and touched) up front for twice the expected object count, so the bookkeeping is
        // in the RSS baseline rather than in the measured growth.
        std::size_t expected = 2 * _target / ((cfg.min_size + cfg.max_size) / 2) + 1024;
        table.assign(expected, nullptr);
        _sizes.assign(expected, 0);
        _live.assign(expected, 0);
        _live.clear();
        _free_slots.assign(expected, 0);
        for (std::size_t i = 0; i < expected; ++i) {
            _free_slots[i] = std::uint32_t(expected - 1 - i);
        }
    }

    std::size_t live_objects() const { return _live.size(); }

    void step() {
        ++ops;
        if (live_bytes >= _target) {
            std::size_t i = _rng() % _live.size();
            std::uint32_t slot = _live[i];
            _live[i] = _live.back();
            _live.pop_back();
            _a.free(table[slot]);
            table[slot] = nullptr;
            live_bytes -= _sizes[slot];
            _free_slots.push_back(slot);
            return;
        }
        std::size_t size = _size(_rng);
        if (_free_slots.empty()) {
            _free_slots.push_back(std::uint32_t(table.size()));
            table.push_back(nullptr);
            _sizes.push_back(0);
        }
        std::uint32_t slot = _free_slots.back();
        _free_slots.pop_back();
        auto* p = static_cast<char*>(_a.alloc(size));
        std::memcpy(p, &slot, sizeof(slot));
        std::memset(p + sizeof(slot), int(slot & 0xff), size - sizeof(slot));
        table[slot] = p;
        _sizes[slot] = std::uint32_t(size);
        _live.push_back(slot);
        live_bytes += size;
        allocated_bytes += size;
    }

    void fill() {
        while (live_bytes < _target) {
            step();
        }
    }

    bool verify() const {
        for (std::uint32_t slot : _live) {
            auto* p = static_cast<const unsigned char*>(table[slot]);
            std::uint32_t stored;
            std::memcpy(&stored, p, sizeof(stored));
            if (stored != slot || p[_sizes[slot] - 1] != (slot & 0xff)) {
                return false;
            }
        }
        return true;
    }
};

// LSA objects with a migrator that updates the slot table, as a cache's hash table would.
struct lsa_allocator {
    reef::lsa::region region;
    struct table_migrator final : reef::lsa::migrator {
        std::vector<void*>* table = nullptr;
        void migrate(void* src, void* dst, std::size_t size) noexcept override {
            std::memcpy(dst, src, size);
            std::uint32_t slot;
            std::memcpy(&slot, dst, sizeof(slot));
            (*table)[slot] = dst;
        }
    } migrator;

    explicit lsa_allocator(std::size_t budget) : region(budget) {}
    void* alloc(std::size_t size) { return region.alloc(migrator, size); }
    void free(void* p) { region.free(p); }
};

struct malloc_allocator {
    void* alloc(std::size_t size) {
        void* p = std::malloc(size);
        if (!p) {
            throw std::bad_alloc();
        }
        return p;
    }
    void free(void* p) { std::free(p); }
};

lsa_result run_lsa(const config& cfg) {
    lsa_result r;
    lsa_allocator a(cfg.budget);
    churn<lsa_allocator> c(cfg, a);
    a.migrator.table = &c.table;  // before any allocation: compaction may start during fill()
    std::uint64_t base = rss_bytes();
    c.fill();
    std::uint64_t filled = c.allocated_bytes;
    auto t0 = clk::now();
    auto deadline = t0 + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(cfg.seconds));
    for (;;) {
        for (int i = 0; i < 4096; ++i) {
            c.step();
        }
        if (clk::now() >= deadline) {
            break;
        }
    }
    r.churn_seconds = std::chrono::duration<double>(clk::now() - t0).count();
    r.ops = c.ops;
    r.bytes_allocated_churn = c.allocated_bytes - filled;
    auto st = a.region.statistics();
    r.occupancy_churn = st.occupancy;
    r.segments_in_use_churn = st.segments_in_use;
    r.bytes_moved_churn = st.bytes_moved;
    r.segments_compacted_churn = st.segments_compacted;
    r.rss_churn = rss_bytes() - base;

    auto c0 = clk::now();
    while (!a.region.compact_all()) {
    }
    r.final_compaction_ms = std::chrono::duration<double, std::milli>(clk::now() - c0).count();
    st = a.region.statistics();
    r.occupancy_after = st.occupancy;
    r.segments_in_use_after = st.segments_in_use;
    r.bytes_moved_final = st.bytes_moved - r.bytes_moved_churn;
    r.segments_compacted_final = st.segments_compacted - r.segments_compacted_churn;
    r.live_bytes = st.bytes_allocated;
    r.live_objects = st.objects_live;
    r.verified = c.verify() && st.bytes_allocated == c.live_bytes && st.objects_live == c.live_objects();
    a.region.reclaim(SIZE_MAX / 2);
    malloc_trim(0);
    std::uint64_t now = rss_bytes();
    r.rss_released = now > base ? now - base : 0;
    return r;
}

malloc_result run_malloc(const config& cfg, std::uint64_t ops) {
    malloc_result r;
    malloc_allocator a;
    churn<malloc_allocator> c(cfg, a);
    std::uint64_t base = rss_bytes();
    c.fill();
    auto t0 = clk::now();
    while (c.ops < ops) {
        c.step();
    }
    r.churn_seconds = std::chrono::duration<double>(clk::now() - t0).count();
    r.ops = c.ops;
    r.live_bytes = c.live_bytes;
    r.live_objects = c.live_objects();
    r.verified = c.verify();
    r.rss = rss_bytes() - base;
    struct mallinfo2 mi = mallinfo2();
    r.arena_bytes = mi.arena + mi.hblkhd;
    malloc_trim(0);
    std::uint64_t now = rss_bytes();
    r.rss_trimmed = now > base ? now - base : 0;
    return r;
}

// Runs fn() in a child process and returns its result.
template <typename Result, typename Fn>
Result in_child(Fn fn) {
    int fds[2];
    if (pipe(fds) != 0) {
        throw std::runtime_error("pipe failed");
    }
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) {
        throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
        close(fds[0]);
        int code = 0;
        try {
            Result r = fn();
            const char* p = reinterpret_cast<const char*>(&r);
            std::size_t left = sizeof(r);
            while (left > 0) {
                ssize_t n = write(fds[1], p, left);
                if (n <= 0) {
                    code = 3;
                    break;
                }
                p += n;
                left -= std::size_t(n);
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "bench_lsa: %s\n", e.what());
            code = 2;
        }
        _exit(code);
    }
    close(fds[1]);
    Result r;
    char* p = reinterpret_cast<char*>(&r);
    std::size_t got = 0;
    while (got < sizeof(r)) {
        ssize_t n = read(fds[0], p + got, sizeof(r) - got);
        if (n <= 0) {
            break;
        }
        got += std::size_t(n);
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (got != sizeof(r) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw std::runtime_error("benchmark phase failed in its child process");
    }
    return r;
}

config parse(int argc, char** argv) {
    config cfg;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                throw std::invalid_argument(fmt::format("{} needs a value", a));
            }
            return argv[++i];
        };
        if (a == "--seconds") {
            cfg.seconds = std::stod(value());
        } else if (a == "--budget-mib") {
            cfg.budget = std::size_t(std::stoul(value())) * 1024 * 1024;
        } else if (a == "--live-fraction") {
            cfg.live_fraction = std::stod(value());
        } else if (a == "--min-size") {
            cfg.min_size = std::stoul(value());
        } else if (a == "--max-size") {
            cfg.max_size = std::stoul(value());
        } else if (a == "--seed") {
            cfg.seed = std::stoull(value());
        } else if (a == "--json") {
            cfg.json = value();
        } else if (a == "--help" || a == "-h") {
            std::printf(
                "usage: bench_lsa [--seconds 60] [--budget-mib 256] [--live-fraction 0.8] [--min-size 50]\n"
                "                 [--max-size 2000] [--seed 1] [--json PATH]\n");
            std::exit(0);
        } else {
            throw std::invalid_argument(fmt::format("unknown option {}", a));
        }
    }
    if (cfg.seconds <= 0 || cfg.live_fraction <= 0 || cfg.live_fraction >= 1 || cfg.min_size < 8 ||
        cfg.max_size < cfg.min_size || cfg.max_size > reef::lsa::region::max_object_size) {
        throw std::invalid_argument(
            "bad option value (need seconds > 0, 0 < live-fraction < 1, "
            "8 <= min-size <= max-size <= LSA max object size)");
    }
    return cfg;
}

}  // namespace

int main(int argc, char** argv) {
    config cfg;
    try {
        cfg = parse(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_lsa: %s\n", e.what());
        return 2;
    }
    constexpr double target = 0.90;
    try {
        auto lsa = in_child<lsa_result>([&] { return run_lsa(cfg); });
        auto mal = in_child<malloc_result>([&] { return run_malloc(cfg, lsa.ops); });

        double lsa_mem = double(lsa.segments_in_use_after * reef::lsa::region::segment_size);
        double mal_occ = mal.rss ? double(mal.live_bytes) / double(mal.rss) : 0;
        double mal_occ_trim = mal.rss_trimmed ? double(mal.live_bytes) / double(mal.rss_trimmed) : 0;
        bool pass = lsa.verified && mal.verified && lsa.occupancy_after >= target;

        fmt::print(
            "LSA churn: budget {:.0f} MiB, live target {:.0f}% ({:.1f} MiB), sizes {}-{} B, {:.0f} s, "
            "{} ops ({} objects live)\n",
            double(cfg.budget) / MiB, cfg.live_fraction * 100, double(cfg.budget) * cfg.live_fraction / MiB,
            cfg.min_size, cfg.max_size, lsa.churn_seconds, lsa.ops, lsa.live_objects);
        fmt::print("{:<44}{:>16}{:>16}\n", "", "LSA", "glibc malloc");
        fmt::print("{:<44}{:>16.1f}{:>16.1f}\n", "live bytes (MiB)", double(lsa.live_bytes) / MiB,
                   double(mal.live_bytes) / MiB);
        fmt::print("{:<44}{:>16.2f}{:>16.2f}\n", "churn throughput (M ops/s)",
                   double(lsa.ops) / lsa.churn_seconds / 1e6, double(mal.ops) / mal.churn_seconds / 1e6);
        fmt::print("{:<44}{:>16.1f}{:>16.1f}\n", "memory during churn (MiB: segments | RSS)",
                   double(lsa.segments_in_use_churn * reef::lsa::region::segment_size) / MiB, double(mal.rss) / MiB);
        fmt::print("{:<44}{:>16.3f}{:>16.3f}\n", "occupancy during churn (live / memory)", lsa.occupancy_churn,
                   mal_occ);
        fmt::print("{:<44}{:>16.1f}{:>16.1f}\n", "memory after compaction | trim (MiB)", lsa_mem / MiB,
                   double(mal.rss_trimmed) / MiB);
        fmt::print("{:<44}{:>16.3f}{:>16.3f}\n", "occupancy after compaction | trim", lsa.occupancy_after,
                   mal_occ_trim);
        fmt::print("{:<44}{:>16.1f}{:>16}\n", "RSS after reclaim + malloc_trim (MiB)", double(lsa.rss_released) / MiB,
                   "-");
        fmt::print("{:<44}{:>16.1f}{:>16}\n", "bytes moved during churn (MiB)", double(lsa.bytes_moved_churn) / MiB,
                   "-");
        fmt::print("{:<44}{:>16.3f}{:>16}\n", "  per byte allocated",
                   double(lsa.bytes_moved_churn) / double(lsa.bytes_allocated_churn), "-");
        fmt::print("{:<44}{:>16.1f}{:>16}\n", "bytes moved by final compaction (MiB)",
                   double(lsa.bytes_moved_final) / MiB, "-");
        fmt::print("{:<44}{:>16.1f}{:>16}\n", "final compaction time (ms)", lsa.final_compaction_ms, "-");
        fmt::print("{:<44}{:>16}{:>16}\n", "contents verified", lsa.verified ? "yes" : "NO",
                   mal.verified ? "yes" : "NO");
        fmt::print("target: LSA occupancy after compaction >= {:.2f}: {}\n", target, pass ? "met" : "NOT MET");

        if (!cfg.json.empty()) {
            std::FILE* f = std::fopen(cfg.json.c_str(), "w");
            if (!f) {
                throw std::runtime_error("cannot write " + cfg.json);
            }
            fmt::print(
                f,
                "{{\n"
                "  \"benchmark\": \"lsa_churn\",\n"
                "  \"config\": {{\"seconds\": {}, \"budget_bytes\": {}, \"live_fraction\": {}, "
                "\"min_size\": {}, \"max_size\": {}, \"seed\": {}}},\n"
                "  \"lsa\": {{\"ops\": {}, \"churn_seconds\": {:.3f}, \"live_bytes\": {}, \"live_objects\": {}, "
                "\"occupancy_churn\": {:.4f}, \"occupancy_after_compaction\": {:.4f}, "
                "\"segments_in_use_churn\": {}, \"segments_in_use_after\": {}, \"segment_size\": {}, "
                "\"bytes_allocated_churn\": {}, \"bytes_moved_churn\": {}, \"bytes_moved_final\": {}, "
                "\"segments_compacted_churn\": {}, "
                "\"segments_compacted_final\": {}, \"final_compaction_ms\": {:.2f}, \"rss_churn_bytes\": {}, "
                "\"rss_after_release_bytes\": {}, \"verified\": {}}},\n"
                "  \"glibc\": {{\"ops\": {}, \"churn_seconds\": {:.3f}, \"live_bytes\": {}, \"live_objects\": {}, "
                "\"rss_bytes\": {}, \"occupancy\": {:.4f}, \"rss_after_trim_bytes\": {}, "
                "\"occupancy_after_trim\": {:.4f}, \"arena_bytes\": {}, \"verified\": {}}},\n"
                "  \"target_occupancy\": {}, \"target_met\": {}\n"
                "}}\n",
                cfg.seconds, cfg.budget, cfg.live_fraction, cfg.min_size, cfg.max_size, cfg.seed, lsa.ops,
                lsa.churn_seconds, lsa.live_bytes, lsa.live_objects, lsa.occupancy_churn, lsa.occupancy_after,
                lsa.segments_in_use_churn, lsa.segments_in_use_after, reef::lsa::region::segment_size,
                lsa.bytes_allocated_churn, lsa.bytes_moved_churn, lsa.bytes_moved_final, lsa.segments_compacted_churn,
                lsa.segments_compacted_final, lsa.final_compaction_ms, lsa.rss_churn, lsa.rss_released, lsa.verified,
                mal.ops, mal.churn_seconds, mal.live_bytes, mal.live_objects, mal.rss, mal_occ, mal.rss_trimmed,
                mal_occ_trim, mal.arena_bytes, mal.verified, target, pass);
            std::fclose(f);
            fmt::print("results: {}\n", cfg.json);
        }
        // A missed target is reported, not an error; corrupted contents are.
        return lsa.verified && mal.verified ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_lsa: %s\n", e.what());
        return 2;
    }
}
