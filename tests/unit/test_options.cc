#include "runtime/app_template.hh"
#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/options.hh"
#include "runtime/syscall_pool.hh"
#include "runtime/reactor.hh"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

using namespace reef;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

logger test_a_log("test_options_a");
logger test_b_log("test_options_b");

// A fabricated command line: argv[0] plus the given arguments, alive as long as the object.
class command_line {
    std::vector<std::string> _args;
    std::vector<char*> _argv;

public:
    command_line(std::initializer_list<std::string> args) {
        _args.push_back("test_options");
        _args.insert(_args.end(), args);
        for (auto& a : _args) {
            _argv.push_back(a.data());
        }
        _argv.push_back(nullptr);
    }
    int argc() const { return int(_args.size()); }
    char** argv() { return _argv.data(); }
};

struct run_result {
    int code;
    bool main_ran;
    std::string out;
    std::string err;
};

// Run app.run() on the arguments with a main that records that it ran and returns 0.
run_result run_app(app_template& app, std::initializer_list<std::string> args) {
    command_line cl(args);
    run_result r{-1, false, {}, {}};
    ::testing::internal::CaptureStdout();
    ::testing::internal::CaptureStderr();
    r.code = app.run(cl.argc(), cl.argv(), [&] {
        r.main_ran = true;
        return make_ready_future<int>(0);
    });
    r.err = ::testing::internal::GetCapturedStderr();
    r.out = ::testing::internal::GetCapturedStdout();
    return r;
}

class options_test : public ::testing::Test {
protected:
    void TearDown() override { log_registry::set_all(log_level::info); }
};

}  // namespace

TEST(options, defaults) {
    runtime_options o;
    EXPECT_DOUBLE_EQ(o.reactor.task_quota_ms, 0.5);
    EXPECT_EQ(o.reactor.idle_policy, "adaptive");
    EXPECT_EQ(o.reactor.idle_poll_us, 200u);
    EXPECT_EQ(o.reactor.stall_threshold_ms, 25u);
    EXPECT_EQ(o.reactor.blocking_threads, 1u);
    EXPECT_TRUE(o.log.log_levels.empty());

    auto cfg = o.reactor.to_reactor_config();
    reactor_config d;
    EXPECT_EQ(cfg.task_quota, d.task_quota);
    EXPECT_EQ(cfg.task_quota, 500us);
    EXPECT_EQ(cfg.idle, idle_policy::adaptive);
    EXPECT_EQ(cfg.idle_poll, 200us);
    EXPECT_EQ(cfg.stall_threshold, 25ms);
    EXPECT_EQ(cfg.blocking_threads, 1u);
}

TEST(options, empty_command_line_keeps_the_defaults) {
    app_template app("t", "test");
    reactor_config seen;
    command_line cl({});
    int code = app.run(cl.argc(), cl.argv(), [&] {
        seen = engine().config();
        return make_ready_future<int>(0);
    });
    EXPECT_EQ(code, 0);
    EXPECT_EQ(seen.task_quota, 500us);
    EXPECT_EQ(seen.idle, idle_policy::adaptive);
    EXPECT_EQ(seen.idle_poll, 200us);
    EXPECT_EQ(seen.stall_threshold, 25ms);
    EXPECT_EQ(seen.blocking_threads, 1u);
    EXPECT_TRUE(seen.handle_termination_signals);
}

TEST_F(options_test, every_option_is_parsed_and_reaches_the_reactor) {
    app_template app("t", "test");
    int count = 0;
    app.options().add_option("--count", count, "an app option");
    reactor_config seen;
    log_level a_level = log_level::info;
    log_level b_level = log_level::info;
    command_line cl({"--task-quota-ms", "2.5", "--idle-policy", "poll", "--idle-poll-us", "50",
                     "--stall-threshold-ms", "100", "--blocking-threads", "3", "--log-level", "warn",
                     "--log-level", "test_options_a=trace", "--count", "7"});
    int code = app.run(cl.argc(), cl.argv(), [&]() -> future<int> {
        seen = engine().config();
        a_level = test_a_log.level();
        b_level = test_b_log.level();
        // The pool is created with the configured number of threads.
        co_await engine().run_blocking([] {});
        EXPECT_EQ(engine().syscall_pool().threads(), 3u);
        co_return count == 7 ? 12 : 13;
    });
    EXPECT_EQ(code, 12);  // main's value, after it saw --count
    EXPECT_EQ(seen.task_quota, 2500us);
    EXPECT_EQ(seen.idle, idle_policy::poll);
    EXPECT_EQ(seen.idle_poll, 50us);
    EXPECT_EQ(seen.stall_threshold, 100ms);
    EXPECT_EQ(seen.blocking_threads, 3u);
    EXPECT_EQ(a_level, log_level::trace);
    EXPECT_EQ(b_level, log_level::warn);

    auto& c = app.configuration();
    EXPECT_DOUBLE_EQ(c.reactor.task_quota_ms, 2.5);
    EXPECT_EQ(c.reactor.idle_policy, "poll");
    EXPECT_EQ(c.reactor.idle_poll_us, 50u);
    EXPECT_EQ(c.reactor.stall_threshold_ms, 100u);
    EXPECT_EQ(c.reactor.blocking_threads, 3u);
    EXPECT_THAT(c.log.log_levels, ::testing::ElementsAre("warn", "test_options_a=trace"));
}

TEST_F(options_test, equals_syntax_and_comma_separated_log_levels) {
    app_template app("t", "test");
    auto r = run_app(app, {"--idle-policy=sleep", "--log-level=test_options_b=debug,error", "--task-quota-ms=1"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(r.main_ran);
    EXPECT_EQ(app.configuration().reactor.idle_policy, "sleep");
    EXPECT_DOUBLE_EQ(app.configuration().reactor.task_quota_ms, 1.0);
    EXPECT_THAT(app.configuration().log.log_levels, ::testing::ElementsAre("test_options_b=debug", "error"));
    // The global level does not undo the per-logger one, whatever their order.
    EXPECT_EQ(test_b_log.level(), log_level::debug);
    EXPECT_EQ(test_a_log.level(), log_level::error);
}

TEST_F(options_test, exception_from_main_gives_1) {
    app_template app("t", "test");
    command_line cl({});
    ::testing::internal::CaptureStderr();
    int code = app.run(cl.argc(), cl.argv(), []() -> future<int> { throw std::runtime_error("boom"); });
    auto err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(code, 1);
    EXPECT_THAT(err, HasSubstr("boom"));
}

TEST(options, help_prints_every_option_with_its_default_and_returns_0) {
    app_template app("demo-app", "A test application");
    double duration = 3;
    app.options().add_option("--duration", duration, "How long")->capture_default_str();
    auto r = run_app(app, {"--help"});
    EXPECT_EQ(r.code, 0);
    EXPECT_FALSE(r.main_ran);
    EXPECT_THAT(r.out, HasSubstr("A test application"));
    EXPECT_THAT(r.out, HasSubstr("demo-app"));
    for (const char* expected : {"--task-quota-ms", "=0.5", "--idle-policy", "=adaptive", "poll,sleep,adaptive",
                                 "--idle-poll-us", "=200", "--stall-threshold-ms", "=25", "--blocking-threads",
                                 "=1", "--log-level", "LOGGER=LEVEL", "--duration", "=3", "Reactor options",
                                 "Logging options"}) {
        EXPECT_THAT(r.out, HasSubstr(expected));
    }
    EXPECT_TRUE(r.err.empty()) << r.err;
}

struct bad_case {
    std::vector<std::string> args;
    std::string option;     // the option the error must name
    std::string also;       // another part the message must contain (the bad value), if any
};

TEST_F(options_test, unknown_and_malformed_options_fail_with_2_naming_the_option) {
    std::vector<bad_case> cases = {
        {{"--no-such-option"}, "--no-such-option", ""},
        {{"--task-quota-ms", "abc"}, "--task-quota-ms", "abc"},
        {{"--task-quota-ms", "0"}, "--task-quota-ms", ""},
        {{"--task-quota-ms=-1"}, "--task-quota-ms", "-1"},
        {{"--task-quota-ms"}, "--task-quota-ms", ""},  // value missing
        {{"--idle-policy", "spin"}, "--idle-policy", "spin"},
        {{"--idle-poll-us", "x"}, "--idle-poll-us", "x"},
        {{"--idle-poll-us=-5"}, "--idle-poll-us", "-5"},
        {{"--stall-threshold-ms", "0"}, "--stall-threshold-ms", "0"},
        {{"--stall-threshold-ms", "2.5"}, "--stall-threshold-ms", "2.5"},
        {{"--blocking-threads", "0"}, "--blocking-threads", "0"},
        {{"--blocking-threads", "5000"}, "--blocking-threads", "5000"},
        {{"--log-level", "loud"}, "--log-level", "loud"},
        {{"--log-level", "test_options_a=loud"}, "--log-level", "loud"},
        {{"--log-level", "no_such_logger=debug"}, "--log-level", "no_such_logger"},
        {{"--log-level", "=debug"}, "--log-level", "=debug"},
        {{"--log-level", "info,bogus"}, "--log-level", "bogus"},
    };
    for (auto& c : cases) {
        app_template app("t", "test");
        std::string joined;
        for (auto& a : c.args) {
            joined += a + " ";
        }
        std::vector<std::string> args = c.args;
        std::vector<char*> argv;
        std::string argv0 = "test_options";
        argv.push_back(argv0.data());
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        bool main_ran = false;
        ::testing::internal::CaptureStderr();
        int code = app.run(int(argv.size() - 1), argv.data(), [&] {
            main_ran = true;
            return make_ready_future<int>(0);
        });
        auto err = ::testing::internal::GetCapturedStderr();
        EXPECT_EQ(code, 2) << joined;
        EXPECT_FALSE(main_ran) << joined;
        EXPECT_THAT(err, HasSubstr(c.option)) << joined;
        if (!c.also.empty()) {
            EXPECT_THAT(err, HasSubstr(c.also)) << joined;
        }
    }
    // Nothing was applied by the failed runs.
    EXPECT_EQ(test_a_log.level(), log_level::info);
}

TEST(options, app_option_validators_give_2_too) {
    app_template app("t", "test");
    double duration = 0;
    app.options().add_option("--duration", duration, "How long")->check(CLI::NonNegativeNumber);
    auto r = run_app(app, {"--duration", "-3"});
    EXPECT_EQ(r.code, 2);
    EXPECT_FALSE(r.main_ran);
    EXPECT_THAT(r.err, HasSubstr("--duration"));
}

TEST(options, parse_log_level_setting) {
    auto all = parse_log_level_setting("DEBUG");
    EXPECT_TRUE(all.logger.empty());
    EXPECT_EQ(all.level, log_level::debug);
    auto one = parse_log_level_setting("test_options_a=warn");
    EXPECT_EQ(one.logger, "test_options_a");
    EXPECT_EQ(one.level, log_level::warn);
    auto unchecked = parse_log_level_setting("not_yet_created=trace", false);
    EXPECT_EQ(unchecked.logger, "not_yet_created");
    try {
        (void)parse_log_level_setting("not_yet_created=trace");
        ADD_FAILURE() << "unknown logger accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_THAT(e.what(), HasSubstr("'not_yet_created'"));
        EXPECT_THAT(e.what(), HasSubstr("test_options_a"));  // the known ones are listed
    }
    EXPECT_THROW((void)parse_log_level_setting("=info"), std::invalid_argument);
    EXPECT_THROW((void)parse_log_level_setting("test_options_a="), std::invalid_argument);
}

TEST_F(options_test, log_options_apply_global_first_then_per_logger) {
    log_options lo;
    lo.log_levels = {"test_options_a=debug", "error"};
    lo.apply();
    EXPECT_EQ(test_a_log.level(), log_level::debug);
    EXPECT_EQ(test_b_log.level(), log_level::error);

    log_options bad;
    bad.log_levels = {"trace", "test_options_a=nonsense"};
    EXPECT_THROW(bad.apply(), std::invalid_argument);
    EXPECT_EQ(test_b_log.level(), log_level::error);  // nothing applied from a bad list
}

TEST(options, reactor_options_reject_values_set_out_of_range) {
    reactor_options o;
    o.task_quota_ms = 0;
    EXPECT_THROW((void)o.to_reactor_config(), std::invalid_argument);
    o = reactor_options();
    o.idle_policy = "spin";
    EXPECT_THROW((void)o.to_reactor_config(), std::invalid_argument);
    o = reactor_options();
    o.task_quota_ms = 0.0015;  // rounds to the nearest microsecond
    EXPECT_EQ(o.to_reactor_config().task_quota, 2us);
}

TEST(options, sigterm_stops_an_app_with_0) {
    app_template app("t", "test");
    command_line cl({"--idle-policy", "sleep"});
    bool hook_ran = false;
    // Only the at_exit hook resolves what main waits for: the run can only end through SIGTERM.
    promise<> released_by_hook;
    ::testing::internal::CaptureStderr();
    int code = app.run(cl.argc(), cl.argv(), [&]() -> future<int> {
        engine().at_exit([&] {
            hook_ran = true;
            released_by_hook.set_value();
            return make_ready_future<>();
        });
        ::raise(SIGTERM);
        co_await released_by_hook.get_future();
        co_return 3;  // too late: the exit code is already 0
    });
    auto err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(code, 0);
    EXPECT_TRUE(hook_ran);
    EXPECT_THAT(err, HasSubstr("SIGTERM received"));
}

TEST(options, shards_are_started_as_asked) {
    app_template app("test_options", "test");
    command_line cl({"--smp", "2", "--thread-affinity", "false"});
    unsigned shards = 0;
    unsigned remote = 0;
    int code = app.run(cl.argc(), cl.argv(), [&]() -> future<int> {
        shards = smp::count;
        remote = co_await smp::submit_to(1, [] { return this_shard_id(); });
        co_return 0;
    });
    EXPECT_EQ(code, 0);
    EXPECT_EQ(shards, 2u);
    EXPECT_EQ(remote, 1u);
}

TEST(options, too_many_shards_or_missing_cpus_give_2_with_a_reason) {
    auto too_many = std::to_string(available_cpus().size() + 1);
    {
        app_template app("test_options", "test");
        auto r = run_app(app, {"--smp", too_many});
        EXPECT_EQ(r.code, 2);
        EXPECT_FALSE(r.main_ran);
        EXPECT_NE(r.err.find("--smp " + too_many), std::string::npos) << r.err;
    }
    {
        app_template app("test_options", "test");
        auto r = run_app(app, {"--cpuset", "0,4000"});
        EXPECT_EQ(r.code, 2);
        EXPECT_NE(r.err.find("4000"), std::string::npos) << r.err;
    }
    {
        app_template app("test_options", "test");
        auto r = run_app(app, {"--cpuset", "1-x"});
        EXPECT_EQ(r.code, 2);
        EXPECT_NE(r.err.find("--cpuset"), std::string::npos) << r.err;
    }
}

TEST(options, memory_sizes) {
    EXPECT_EQ(parse_memory_size("4096"), 4096u);
    EXPECT_EQ(parse_memory_size("512M"), 512u << 20);
    EXPECT_EQ(parse_memory_size("4G"), std::size_t(4) << 30);
    EXPECT_EQ(parse_memory_size("2GiB"), std::size_t(2) << 30);
    EXPECT_EQ(parse_memory_size("1t"), std::size_t(1) << 40);
    for (const char* bad : {"", "G", "1.5G", "12X", "-1", "1GG", "99999999999999999999"}) {
        EXPECT_THROW(parse_memory_size(bad), std::invalid_argument) << bad;
    }
}

TEST(options, memory_below_the_shard_minimum_or_malformed_gives_2) {
    {
        app_template app("test_options", "test");
        auto r = run_app(app, {"--smp", "1", "--memory", "1M"});
        EXPECT_EQ(r.code, 2);
        EXPECT_FALSE(r.main_ran);
        EXPECT_NE(r.err.find("--memory 1M"), std::string::npos) << r.err;
    }
    {
        app_template app("test_options", "test");
        auto r = run_app(app, {"--memory", "12X"});
        EXPECT_EQ(r.code, 2);
        EXPECT_NE(r.err.find("--memory"), std::string::npos) << r.err;
    }
}

TEST(options, before_start_hooks_amend_the_start_and_after_stop_hooks_run) {
    app_template app("t", "test");
    std::vector<std::string> order;
    std::atomic<unsigned> shard_inits{0};
    app.add_before_start([&](smp_options& o, reactor_config& cfg) {
        order.push_back("before1");
        o.smp = 2;
        o.thread_affinity = false;
        o.shard_init = [&](unsigned) { ++shard_inits; };
        cfg.task_quota = 3ms;
    });
    app.add_before_start([&](smp_options&, reactor_config&) { order.push_back("before2"); });
    app.add_after_stop([&] { order.push_back("after1"); });
    app.add_after_stop([&] { order.push_back("after2"); });
    reactor_config seen;
    unsigned shards = 0;
    command_line cl({});
    int code = app.run(cl.argc(), cl.argv(), [&] {
        order.push_back("main");
        seen = engine().config();
        shards = smp::count;
        return make_ready_future<int>(5);
    });
    EXPECT_EQ(code, 5);
    EXPECT_EQ(order, (std::vector<std::string>{"before1", "before2", "main", "after2", "after1"}));
    EXPECT_EQ(shards, 2u);
    EXPECT_EQ(seen.task_quota, 3ms);
    EXPECT_GE(shard_inits.load(), 1u);
}

TEST(options, a_failing_before_start_hook_is_a_usage_error) {
    app_template app("t", "test");
    bool after = false;
    app.add_before_start([](smp_options&, reactor_config&) { throw std::invalid_argument("--vdev 'x': no such driver"); });
    app.add_after_stop([&] { after = true; });
    auto r = run_app(app, {});
    EXPECT_EQ(r.code, 2);
    EXPECT_FALSE(r.main_ran);
    EXPECT_NE(r.err.find("--vdev 'x': no such driver"), std::string::npos) << r.err;
    EXPECT_TRUE(after) << "after-stop hooks release what earlier hooks started";
}
