#include "reactor_test.hh"
#include "runtime/log.hh"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace reef;

namespace {

struct captured_line {
    log_level level;
    std::string text;
};

// Collects log lines for the lifetime of the object and restores stderr output afterwards.
class log_capture {
    std::mutex _m;
    std::vector<captured_line> _lines;

public:
    log_capture() {
        log_registry::set_sink([this](log_level l, std::string_view line) {
            std::lock_guard g(_m);
            _lines.push_back({l, std::string(line)});
        });
    }
    ~log_capture() { log_registry::set_sink(nullptr); }
    std::vector<captured_line> lines() {
        std::lock_guard g(_m);
        return _lines;
    }
};

// Levels are process-wide; every test leaves them as it found them (info).
class log_test : public ::testing::Test {
protected:
    void TearDown() override { log_registry::set_all(log_level::info); }
};

}  // namespace

TEST_F(log_test, level_filters_messages) {
    logger lg("test_log_filter");
    EXPECT_EQ(lg.level(), log_level::info);
    log_capture cap;
    lg.set_level(log_level::warn);
    lg.error("e {}", 1);
    lg.warn("w {}", 2);
    lg.info("i {}", 3);
    lg.debug("d {}", 4);
    lg.trace("t {}", 5);
    auto lines = cap.lines();
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].level, log_level::error);
    EXPECT_THAT(lines[0].text, ::testing::HasSubstr("e 1"));
    EXPECT_EQ(lines[1].level, log_level::warn);
    EXPECT_THAT(lines[1].text, ::testing::HasSubstr("w 2"));
    EXPECT_TRUE(lg.is_enabled(log_level::warn));
    EXPECT_FALSE(lg.is_enabled(log_level::info));

    lg.set_level(log_level::trace);
    lg.trace("t {}", 6);
    lg.log(log_level::debug, "d {}", 7);
    lines = cap.lines();
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_THAT(lines[2].text, ::testing::HasSubstr("t 6"));
    EXPECT_THAT(lines[3].text, ::testing::HasSubstr("d 7"));
}

TEST_F(log_test, set_level_by_name) {
    logger a("test_log_by_name_a");
    logger b("test_log_by_name_b");
    EXPECT_TRUE(log_registry::set_level("test_log_by_name_a", log_level::debug));
    EXPECT_EQ(a.level(), log_level::debug);
    EXPECT_EQ(b.level(), log_level::info);
    EXPECT_FALSE(log_registry::set_level("no_such_logger", log_level::debug));

    // A duplicate name is reached too.
    logger a2("test_log_by_name_a");
    EXPECT_TRUE(log_registry::set_level("test_log_by_name_a", log_level::error));
    EXPECT_EQ(a.level(), log_level::error);
    EXPECT_EQ(a2.level(), log_level::error);
}

TEST_F(log_test, set_all_reaches_existing_and_later_loggers) {
    logger before("test_log_all_before");
    log_registry::set_all(log_level::error);
    EXPECT_EQ(before.level(), log_level::error);
    logger after("test_log_all_after");
    EXPECT_EQ(after.level(), log_level::error);
}

TEST_F(log_test, list_is_sorted_and_contains_every_logger) {
    logger z("test_log_list_z");
    logger a("test_log_list_a");
    a.set_level(log_level::trace);
    auto all = log_registry::list();
    EXPECT_TRUE(std::is_sorted(all.begin(), all.end(), [](auto& x, auto& y) { return x.first < y.first; }));
    auto find = [&](const std::string& n) {
        return std::find_if(all.begin(), all.end(), [&](auto& p) { return p.first == n; });
    };
    ASSERT_NE(find("test_log_list_a"), all.end());
    ASSERT_NE(find("test_log_list_z"), all.end());
    EXPECT_EQ(find("test_log_list_a")->second, log_level::trace);
    EXPECT_NE(find("reactor"), all.end());  // the runtime's own loggers are there
}

TEST_F(log_test, destroyed_logger_leaves_the_registry) {
    {
        logger tmp("test_log_temporary");
        EXPECT_TRUE(log_registry::set_level("test_log_temporary", log_level::debug));
    }
    EXPECT_FALSE(log_registry::set_level("test_log_temporary", log_level::debug));
}

TEST(log, parse_levels) {
    EXPECT_EQ(parse_log_level("error"), log_level::error);
    EXPECT_EQ(parse_log_level("warn"), log_level::warn);
    EXPECT_EQ(parse_log_level("WARNING"), log_level::warn);
    EXPECT_EQ(parse_log_level("Info"), log_level::info);
    EXPECT_EQ(parse_log_level("debug"), log_level::debug);
    EXPECT_EQ(parse_log_level("TRACE"), log_level::trace);
    for (auto l : {log_level::error, log_level::warn, log_level::info, log_level::debug, log_level::trace}) {
        EXPECT_EQ(parse_log_level(to_string(l)), l);
    }
}

TEST(log, parse_errors_name_the_bad_value) {
    for (const char* bad : {"loud", "", "inf", "debug "}) {
        try {
            (void)parse_log_level(bad);
            ADD_FAILURE() << "no exception for '" << bad << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_THAT(e.what(), ::testing::HasSubstr(std::string("'") + bad + "'"));
        }
    }
}

TEST_F(log_test, sink_receives_formatted_lines_with_logger_name) {
    logger lg("test_log_format");
    log_capture cap;
    lg.info("answer is {} ({})", 42, "forty-two");
    auto lines = cap.lines();
    ASSERT_EQ(lines.size(), 1u);
    // "2024-01-02 03:04:05.678 INFO  test_log_format - answer is 42 (forty-two)\n", no shard
    // outside a reactor.
    const std::string& text = lines[0].text;
    const std::string stamp = "dddd-dd-dd dd:dd:dd.ddd ";
    ASSERT_GT(text.size(), stamp.size()) << text;
    for (size_t i = 0; i < stamp.size(); ++i) {
        if (stamp[i] == 'd') {
            EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(text[i]))) << "column " << i << ": " << text;
        } else {
            EXPECT_EQ(text[i], stamp[i]) << "column " << i << ": " << text;
        }
    }
    EXPECT_EQ(text.substr(stamp.size()), "INFO  test_log_format - answer is 42 (forty-two)\n");
    EXPECT_EQ(lines[0].level, log_level::info);
}

TEST_F(log_test, lines_logged_on_a_reactor_carry_its_shard_id) {
    logger lg("test_log_shard");
    log_capture cap;
    reef::testing::run_in_reactor([&]() -> future<> {
        lg.warn("from the reactor");
        co_return;
    });
    lg.warn("after the reactor");
    std::vector<std::string> ours;
    for (auto& l : cap.lines()) {
        if (l.text.find("test_log_shard") != std::string::npos) {
            ours.push_back(l.text);
        }
    }
    ASSERT_EQ(ours.size(), 2u);
    EXPECT_THAT(ours[0], ::testing::HasSubstr("WARN  [shard 0] test_log_shard - from the reactor\n"));
    EXPECT_THAT(ours[1], ::testing::HasSubstr("WARN  test_log_shard - after the reactor\n"));
    EXPECT_THAT(ours[1], ::testing::Not(::testing::HasSubstr("[shard")));
}

TEST_F(log_test, sink_is_called_from_several_threads) {
    logger lg("test_log_threads");
    log_capture cap;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&lg, t] {
            for (int i = 0; i < 100; ++i) {
                lg.info("thread {} line {}", t, i);
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    int ours = 0;
    for (auto& l : cap.lines()) {
        if (l.text.find("test_log_threads - thread ") != std::string::npos && l.text.back() == '\n') {
            ++ours;
        }
    }
    EXPECT_EQ(ours, 400);
}

TEST_F(log_test, set_sink_nullptr_restores_stderr) {
    logger lg("test_log_stderr");
    {
        log_capture cap;
        lg.info("captured");
        EXPECT_EQ(cap.lines().size(), 1u);
    }
    ::testing::internal::CaptureStderr();
    lg.info("to stderr");
    auto err = ::testing::internal::GetCapturedStderr();
    EXPECT_THAT(err, ::testing::HasSubstr("test_log_stderr - to stderr\n"));
}

TEST(log, exception_message_names_what_was_thrown) {
    EXPECT_EQ(reef::exception_message(std::make_exception_ptr(std::runtime_error("disk full"))), "disk full");
    EXPECT_EQ(reef::exception_message(std::make_exception_ptr(42)), "unknown error");
    EXPECT_EQ(reef::exception_message(nullptr), "no error");
}
