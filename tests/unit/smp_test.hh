// Running multi-shard tests: REEF_SMP_TEST(suite, name, shards) { ... } runs the coroutine body on
// shard 0 of a fresh set of `shards` reactors (unpinned, sleeping when idle).
#pragma once

#include "runtime/coroutine.hh"
#include "runtime/smp.hh"

#include <gtest/gtest.h>

#include <exception>
#include <functional>

namespace reef::testing {

inline void run_on_shards(unsigned shards, std::function<future<>()> f) {
    smp_options o;
    o.smp = shards;
    o.thread_affinity = false;
    reactor_config cfg;
    cfg.handle_termination_signals = false;
    cfg.idle = idle_policy::sleep;
    std::exception_ptr ex;
    smp::run(o, cfg, [&]() -> future<int> {
        return futurize_invoke(f).then_wrapped([&](future<>&& fut) {
            if (fut.failed()) {
                ex = fut.get_exception();
            }
            return 0;
        });
    });
    if (ex) {
        std::rethrow_exception(ex);
    }
}

}  // namespace reef::testing

#define REEF_SMP_TEST(suite, name, shards)                                                          \
    static ::reef::future<> reef_smp_test_body_##suite##_##name();                                   \
    TEST(suite, name) { ::reef::testing::run_on_shards(shards, &reef_smp_test_body_##suite##_##name); } \
    static ::reef::future<> reef_smp_test_body_##suite##_##name()
