// iotune: measure the disk under a directory and write the io-properties file the I/O scheduler
// reads (--io-properties-file).
//
//   iotune --duration 60 --properties-file io.yaml /var/lib/reef
//
// Four measurements, each at increasing parallelism (1, 2, 4, ... requests in flight): sequential
// 128 KiB writes and reads (bandwidth), random 4 KiB reads and writes (IOPS). For each, the chosen
// point is where throughput stops improving (less than 5% more) while latency keeps growing:
// beyond it more parallelism only queues. The random-read knee is the disk's useful parallelism
// (max_in_flight). --duration bounds the whole run; a progress bar shows the step and the
// estimated time left. All I/O is direct I/O through Reef's file API on shard 0, on a scratch file
// that is removed at the end.
//
// On a filesystem without O_DIRECT the figures would describe the page cache, not the disk, so
// iotune refuses (exit code 2) unless --allow-buffered.
#include "runtime/app_template.hh"
#include "runtime/coroutine.hh"
#include "runtime/io/file.hh"
#include "runtime/io/io_properties.hh"
#include "runtime/log.hh"
#include "runtime/reactor.hh"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;

namespace {

logger tlog("iotune");

enum class kind { seq_write, seq_read, rand_read, rand_write };
const char* name_of(kind k) {
    switch (k) {
    case kind::seq_write: return "sequential write";
    case kind::seq_read: return "sequential read";
    case kind::rand_read: return "random 4 KiB read";
    case kind::rand_write: return "random 4 KiB write";
    }
    return "?";
}

struct step_result {
    unsigned depth = 0;
    double ops_per_s = 0;
    double bytes_per_s = 0;
    double mean_latency_us = 0;
};

struct run_state {
    file f;
    std::uint64_t file_size = 0;
    std::size_t align = 4096;
    std::uint64_t next_seq = 0;
    std::uint64_t ops = 0;
    std::uint64_t bytes = 0;
    double latency_sum_us = 0;
    steady_clock_type::time_point deadline;
    std::exception_ptr error;
};

// Progress: steps done out of the most the run may take, and the time they take.
struct progress {
    unsigned done = 0;
    unsigned total = 0;
    std::chrono::duration<double> step{};
    bool tty = ::isatty(2);

    void show(kind k, unsigned depth) const {
        const int width = 30;
        int filled = total ? int(width * done / total) : width;
        double left = step.count() * (total - done);
        auto line = fmt::format("[{}{}] {:3}%  {} at depth {}  (at most {:.0f} s left)", std::string(filled, '#'),
                                std::string(width - filled, ' '), total ? 100 * done / total : 100, name_of(k), depth,
                                left);
        if (tty) {
            std::fprintf(stderr, "\r%-100s", line.c_str());
        } else {
            std::fprintf(stderr, "%s\n", line.c_str());
        }
        std::fflush(stderr);
    }
    void finish() const {
        if (tty) {
            std::fprintf(stderr, "\n");
        }
    }
};

future<> worker(run_state& st, kind k, unsigned id) {
    bool seq = k == kind::seq_write || k == kind::seq_read;
    bool write = k == kind::seq_write || k == kind::rand_write;
    std::size_t len = seq ? 128 * 1024 : std::max<std::size_t>(4096, st.align);
    auto buf = allocate_aligned_buffer(len, st.align);
    std::memset(buf.get_write(), int('a' + id % 26), len);
    std::mt19937_64 rng(id * 7919 + unsigned(k));
    std::uint64_t slots = st.file_size / len;
    try {
        while (steady_clock_type::now() < st.deadline) {
            std::uint64_t pos;
            if (seq) {
                pos = st.next_seq;
                st.next_seq = (st.next_seq + len) % (slots * len);
            } else {
                pos = (rng() % slots) * len;
            }
            auto t0 = steady_clock_type::now();
            std::size_t n = write ? co_await st.f.dma_write(pos, buf.get(), len)
                                  : co_await st.f.dma_read(pos, buf.get_write(), len);
            auto t1 = steady_clock_type::now();
            if (t1 < st.deadline) {
                ++st.ops;
                st.bytes += n;
                st.latency_sum_us += std::chrono::duration<double, std::micro>(t1 - t0).count();
            }
        }
    } catch (...) {
        if (!st.error) {
            st.error = std::current_exception();
        }
    }
}

future<step_result> run_step(run_state& st, kind k, unsigned depth, std::chrono::duration<double> length) {
    st.ops = 0;
    st.bytes = 0;
    st.latency_sum_us = 0;
    auto start = steady_clock_type::now();
    st.deadline = start + std::chrono::duration_cast<steady_clock_type::duration>(length);
    std::vector<future<>> workers;
    for (unsigned i = 0; i < depth; ++i) {
        workers.push_back(worker(st, k, i));
    }
    for (auto& w : workers) {
        co_await std::move(w);
    }
    if (st.error) {
        std::rethrow_exception(st.error);
    }
    double secs = std::chrono::duration<double>(st.deadline - start).count();
    step_result r;
    r.depth = depth;
    r.ops_per_s = double(st.ops) / secs;
    r.bytes_per_s = double(st.bytes) / secs;
    r.mean_latency_us = st.ops ? st.latency_sum_us / double(st.ops) : 0;
    co_return r;
}

// The knee: the last depth whose throughput beat the previous one by at least 5%. Past it,
// latency grows (requests queue) with no throughput to show for it.
future<step_result> measure(run_state& st, kind k, unsigned max_depth, std::chrono::duration<double> step,
                            progress& prog, unsigned steps_per_phase) {
    step_result best;
    unsigned taken = 0;
    for (unsigned depth = 1; depth <= max_depth; depth *= 2) {
        prog.show(k, depth);
        auto r = co_await run_step(st, k, depth, step);
        ++prog.done;
        ++taken;
        tlog.debug("{} depth {}: {:.0f} ops/s, {:.1f} MB/s, mean latency {:.0f} us", name_of(k), depth, r.ops_per_s,
                   r.bytes_per_s / 1e6, r.mean_latency_us);
        if (best.depth && r.ops_per_s < best.ops_per_s * 1.05) {
            break;
        }
        best = r;
    }
    prog.done += steps_per_phase - taken;  // steps this phase did not need
    co_return best;
}

}  // namespace

int main(int argc, char** argv) {
    app_template app("iotune", "Measure a disk and write the io-properties file Reef's I/O scheduler reads");
    std::string dir;
    std::string out_path = "io-properties.yaml";
    double duration = 60;
    bool allow_buffered = false;
    std::string file_size_str = "1G";
    unsigned max_depth = 128;
    app.options().add_option("directory", dir, "Directory on the disk to measure (a scratch file is created there)")
        ->required()
        ->check(CLI::ExistingDirectory);
    app.options()
        .add_option("--properties-file", out_path, "Where to write the io-properties file")
        ->capture_default_str();
    app.options()
        .add_option("--duration", duration, "Upper bound on the whole measurement (seconds)")
        ->check(CLI::Range(4.0, 86400.0))
        ->capture_default_str();
    app.options()
        .add_option("--file-size", file_size_str, "Size of the scratch file (e.g. 1G)")
        ->capture_default_str();
    app.options()
        .add_option("--max-depth", max_depth, "Highest parallelism tried (requests in flight)")
        ->check(CLI::Range(1u, 4096u))
        ->capture_default_str();
    app.options().add_flag("--allow-buffered", allow_buffered,
                           "Measure even on a filesystem without O_DIRECT (the figures then describe the page cache)");

    return app.run(argc, argv, [&]() -> future<int> {
        std::uint64_t file_size;
        try {
            file_size = parse_memory_size(file_size_str);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "iotune: --file-size: %s\n", e.what());
            co_return 2;
        }
        // The queue must not cap what is measured: an unlimited model with room for max_depth.
        auto cfg = io::get_io_config();
        io::disk_properties unlimited;
        unlimited.mountpoint = dir;
        unlimited.read_iops = unlimited.write_iops = 1e12;
        unlimited.read_bandwidth = unlimited.write_bandwidth = 1e15;
        unlimited.max_in_flight = max_depth;
        cfg.disk = unlimited;
        cfg.properties_origin = "iotune (measuring, no limit)";
        io::set_io_config(cfg);

        std::string path = dir + "/iotune-scratch.tmp";
        run_state st;
        st.f = co_await open_file_dma(path, open_flags::rw | open_flags::create | open_flags::truncate);
        if (st.f.is_buffered() && !allow_buffered) {
            co_await st.f.close();
            co_await remove_file(path);
            std::fprintf(stderr,
                         "iotune: %s is on a filesystem without O_DIRECT (tmpfs?): the figures would measure the page "
                         "cache, not a disk. Measure a directory on the disk, or pass --allow-buffered to measure "
                         "anyway.\n",
                         dir.c_str());
            co_return 2;
        }
        st.align = st.f.dma_alignment();
        st.file_size = file_size / (128 * 1024) * (128 * 1024);
        if (st.file_size == 0) {
            std::fprintf(stderr, "iotune: --file-size must be at least 128K\n");
            co_return 2;
        }
        int code = 0;
        try {
            // Allocated up front: the measurement is of the disk, not of block allocation.
            try {
                co_await st.f.allocate(0, st.file_size);
            } catch (const std::system_error&) {
            }
            co_await st.f.truncate(st.file_size);

            unsigned steps_per_phase = 0;
            for (unsigned d = 1; d <= max_depth; d *= 2) {
                ++steps_per_phase;
            }
            progress prog;
            prog.total = 4 * steps_per_phase;
            prog.step = std::chrono::duration<double>(std::max(0.25, duration / prog.total));
            tlog.info("measuring {} ({} scratch file, depths 1..{}, at most {:.0f} s)", dir, file_size_str, max_depth,
                      prog.step.count() * prog.total);

            io::disk_properties d;
            d.mountpoint = dir;
            auto sw = co_await measure(st, kind::seq_write, max_depth, prog.step, prog, steps_per_phase);
            auto sr = co_await measure(st, kind::seq_read, max_depth, prog.step, prog, steps_per_phase);
            auto rr = co_await measure(st, kind::rand_read, max_depth, prog.step, prog, steps_per_phase);
            auto rw = co_await measure(st, kind::rand_write, max_depth, prog.step, prog, steps_per_phase);
            prog.finish();
            d.write_bandwidth = std::max(1.0, sw.bytes_per_s);
            d.read_bandwidth = std::max(1.0, sr.bytes_per_s);
            d.read_iops = std::max(1.0, rr.ops_per_s);
            d.write_iops = std::max(1.0, rw.ops_per_s);
            d.max_in_flight = std::max({rr.depth, rw.depth, 1u});
            auto now = std::time(nullptr);
            char when[64];
            std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", std::localtime(&now));
            auto comment = fmt::format(
                "written by iotune on {} for {}\n"
                "sequential write {:.1f} MB/s at depth {}, sequential read {:.1f} MB/s at depth {}\n"
                "random 4 KiB read {:.0f} IOPS at depth {}, random 4 KiB write {:.0f} IOPS at depth {}",
                when, dir, sw.bytes_per_s / 1e6, sw.depth, sr.bytes_per_s / 1e6, sr.depth, rr.ops_per_s, rr.depth,
                rw.ops_per_s, rw.depth);
            auto text = io::format_io_properties(d, comment);
            std::ofstream out(out_path);
            out << text;
            out.close();
            if (!out) {
                throw std::runtime_error(fmt::format("cannot write {}", out_path));
            }
            std::fprintf(stdout, "%s", text.c_str());
            tlog.info("wrote {}", out_path);
        } catch (const std::exception& e) {
            tlog.error("measurement failed: {}", e.what());
            code = 1;
        }
        co_await st.f.close();
        co_await remove_file(path);
        co_return code;
    });
}
