#include "runtime/misuse.hh"
#include "runtime/task_alloc.hh"

#include <cstdio>
#include <cstdlib>

namespace reef {

namespace {
#ifdef NDEBUG
bool g_abort_on_misuse = false;
#else
bool g_abort_on_misuse = true;
#endif
}  // namespace

void set_abort_on_misuse(bool abort) noexcept { g_abort_on_misuse = abort; }
bool abort_on_misuse() noexcept { return g_abort_on_misuse; }

void report_misuse(const char* message) {
    if (g_abort_on_misuse) {
        std::fprintf(stderr, "reef: API misuse: %s\n", message);
        std::abort();
    }
    throw misuse_error(message);
}

namespace internal {
namespace {
struct task_pool_cleanup {
    ~task_pool_cleanup() {
        auto& p = tl_task_pool;
        for (std::size_t c = 0; c < task_pool::classes; ++c) {
            while (auto* h = p.heads[c]) {
                p.heads[c] = h->next;
                ::operator delete(h, c * task_pool::granule);
            }
            p.counts[c] = 0;
        }
    }
};
thread_local bool tl_cleanup_registered = false;
}  // namespace

void task_pool_register_cleanup() noexcept {
    if (!tl_cleanup_registered) {
        tl_cleanup_registered = true;
        // A thread_local with a destructor frees the cached blocks when the thread exits.
        static thread_local task_pool_cleanup cleanup;
        (void)cleanup;
    }
}
}  // namespace internal

}  // namespace reef
