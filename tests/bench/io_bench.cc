// io_bench: one disk workload through Reef's file API, for tests/bench/run_disk_io.sh to compare
// with fio on the same file. `--depth` coroutines on shard 0 each keep one request in flight for
// `--duration` seconds: random (randread, randwrite) or sequential (read, write; the offsets are
// shared so together they stream through the file). Prints one JSON line:
//   {"mode": "randread", "block_size": 4096, "depth": 32, "seconds": 10.0, "ops": ..., "iops": ...,
//    "bw_bytes": ..., "backend": "io_uring", "reactor_polls": ..., "reactor_sleeps": ..., "reactor_fd_polls": ...,
//    "idle_s": ...}
// The file must exist and be at least --size bytes (the script lays it out first).
#include "runtime/app_template.hh"
#include "runtime/coroutine.hh"
#include "runtime/io/file.hh"
#include "runtime/io/io_queue.hh"
#include "runtime/reactor.hh"

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace reef;

namespace {

struct state {
    file f;
    bool write = false;
    bool random = false;
    std::size_t bs = 4096;
    std::uint64_t slots = 0;
    std::uint64_t next = 0;
    std::uint64_t ops = 0;
    std::uint64_t bytes = 0;
    steady_clock_type::time_point deadline;
    std::uint64_t polls0 = 0, sleeps0 = 0, fd_polls0 = 0;  // reactor statistics at the start
    std::chrono::nanoseconds idle0{0};
};

future<> worker(state& st, unsigned id) {
    auto buf = allocate_aligned_buffer(st.bs, st.f.dma_alignment());
    std::memset(buf.get_write(), int(id), st.bs);
    std::mt19937_64 rng(id + 1);
    while (steady_clock_type::now() < st.deadline) {
        std::uint64_t slot;
        if (st.random) {
            slot = rng() % st.slots;
        } else {
            slot = st.next;
            st.next = (st.next + 1) % st.slots;
        }
        std::size_t n = st.write ? co_await st.f.dma_write(slot * st.bs, buf.get(), st.bs)
                                 : co_await st.f.dma_read(slot * st.bs, buf.get_write(), st.bs);
        ++st.ops;
        st.bytes += n;
    }
}

}  // namespace

int main(int argc, char** argv) {
    app_template app("io_bench", "One disk workload through Reef's file API (see tests/bench/run_disk_io.sh)");
    std::string path, mode = "randread", size_str = "1G";
    std::size_t bs = 4096;
    unsigned depth = 32;
    double duration = 10;
    app.options().add_option("--file", path, "The file to use (it must exist)")->required();
    app.options()
        .add_option("--mode", mode, "randread, randwrite, read or write")
        ->check(CLI::IsMember({"randread", "randwrite", "read", "write"}))
        ->capture_default_str();
    app.options().add_option("--block-size", bs, "Bytes per request")->capture_default_str();
    app.options()
        .add_option("--depth", depth, "Requests in flight")
        ->check(CLI::Range(1u, 4096u))
        ->capture_default_str();
    app.options().add_option("--duration", duration, "Seconds")->check(CLI::Range(0.1, 3600.0))->capture_default_str();
    app.options().add_option("--size", size_str, "Bytes of the file to use (e.g. 1G)")->capture_default_str();
    return app.run(argc, argv, [&]() -> future<int> {
        state st;
        st.write = mode == "write" || mode == "randwrite";
        st.random = mode == "randread" || mode == "randwrite";
        st.bs = bs;
        st.slots = parse_memory_size(size_str) / bs;
        if (st.slots == 0) {
            std::fprintf(stderr, "io_bench: --size is smaller than --block-size\n");
            co_return 2;
        }
        st.f = co_await open_file_dma(path, st.write ? open_flags::rw : open_flags::ro);
        auto start = steady_clock_type::now();
        auto rs0 = engine().get_stats();
        st.polls0 = rs0.polls;
        st.sleeps0 = rs0.sleeps;
        st.fd_polls0 = rs0.fd_polls;
        st.idle0 = rs0.idle_time;
        st.deadline =
            start + std::chrono::duration_cast<steady_clock_type::duration>(std::chrono::duration<double>(duration));
        std::vector<future<>> workers;
        for (unsigned i = 0; i < depth; ++i) {
            workers.push_back(worker(st, i));
        }
        for (auto& w : workers) {
            co_await std::move(w);
        }
        double secs = std::chrono::duration<double>(steady_clock_type::now() - start).count();
        auto rs = engine().get_stats();
        auto backend = local_io_queue_info().backend;
        co_await st.f.close();
        // The reactor's loops and sleeps per request show where its time goes (docs/disk-io.md).
        std::printf("%s\n",
                    fmt::format("{{\"mode\": \"{}\", \"block_size\": {}, \"depth\": {}, \"seconds\": {:.3f}, "
                                "\"ops\": {}, \"iops\": {:.1f}, \"bw_bytes\": {:.1f}, \"backend\": \"{}\", "
                                "\"reactor_polls\": {}, \"reactor_sleeps\": {}, \"reactor_fd_polls\": {}, "
                                "\"idle_s\": {:.3f}}}",
                                mode, bs, depth, secs, st.ops, double(st.ops) / secs, double(st.bytes) / secs, backend,
                                rs.polls - st.polls0, rs.sleeps - st.sleeps0, rs.fd_polls - st.fd_polls0,
                                std::chrono::duration<double>(rs.idle_time - st.idle0).count())
                        .c_str());
        co_return 0;
    });
}
