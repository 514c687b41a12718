#include "ctl/protocol/protocol.hh"

#include <gtest/gtest.h>

using namespace reef::ctl;

namespace {

request parse_ok(std::string_view line) {
    auto r = parse_request(line);
    EXPECT_TRUE(std::holds_alternative<request>(r)) << line;
    return std::get<request>(r);
}

request_error parse_bad(std::string_view line) {
    auto r = parse_request(line);
    EXPECT_TRUE(std::holds_alternative<request_error>(r)) << line;
    return std::holds_alternative<request_error>(r) ? std::get<request_error>(r)
                                                    : request_error{nullptr, rpc_error(0, "")};
}

}  // namespace

TEST(ctl_codec, parses_requests_and_notifications) {
    auto r = parse_ok(R"({"jsonrpc":"2.0","id":7,"method":"shards.list","params":{"shard":1}})");
    EXPECT_EQ(r.id, 7);
    EXPECT_EQ(r.method, "shards.list");
    EXPECT_EQ(r.params["shard"], 1);
    EXPECT_FALSE(r.notification);
    auto s = parse_ok(R"({"jsonrpc":"2.0","id":"abc","method":"x"})");
    EXPECT_EQ(s.id, "abc");
    EXPECT_TRUE(s.params.is_null());
    auto n = parse_ok(R"({"jsonrpc":"2.0","method":"log.set_level","params":{"level":"debug"}})");
    EXPECT_TRUE(n.notification);
}

TEST(ctl_codec, rejects_malformed_requests_with_the_right_code) {
    EXPECT_EQ(parse_bad("{bad").error.code(), error_code::parse_error);
    EXPECT_EQ(parse_bad("").error.code(), error_code::parse_error);
    EXPECT_EQ(parse_bad("42").error.code(), error_code::invalid_request);
    EXPECT_EQ(parse_bad("[]").error.code(), error_code::invalid_request);
    auto no_version = parse_bad(R"({"id":3,"method":"x"})");
    EXPECT_EQ(no_version.error.code(), error_code::invalid_request);
    EXPECT_EQ(no_version.id, 3);  // the id is kept, so the client can match the error
    EXPECT_NE(std::string(no_version.error.what()).find("jsonrpc"), std::string::npos);
    EXPECT_EQ(parse_bad(R"({"jsonrpc":"1.0","id":1,"method":"x"})").error.code(), error_code::invalid_request);
    EXPECT_EQ(parse_bad(R"({"jsonrpc":"2.0","id":1})").error.code(), error_code::invalid_request);
    EXPECT_EQ(parse_bad(R"({"jsonrpc":"2.0","id":1,"method":5})").error.code(), error_code::invalid_request);
    EXPECT_EQ(parse_bad(R"({"jsonrpc":"2.0","id":1,"method":""})").error.code(), error_code::invalid_request);
    EXPECT_EQ(parse_bad(R"({"jsonrpc":"2.0","id":{},"method":"x"})").error.code(), error_code::invalid_request);
    EXPECT_EQ(parse_bad(R"({"jsonrpc":"2.0","id":1,"method":"x","params":3})").error.code(),
              error_code::invalid_request);
    EXPECT_EQ(parse_bad(R"({"jsonrpc":"2.0","id":1,"method":"x","extra":3})").error.code(),
              error_code::invalid_request);
}

TEST(ctl_codec, responses_round_trip) {
    auto ok =
        parse_response(to_line(make_result(5, {{"a", 1}})).substr(0, to_line(make_result(5, {{"a", 1}})).size() - 1));
    EXPECT_EQ(ok.id, 5);
    ASSERT_TRUE(ok.result);
    EXPECT_EQ((*ok.result)["a"], 1);
    EXPECT_FALSE(ok.error);
    auto line = to_line(make_error("x", error_code::not_found, "no logger 'foo'", {{"known", {"a"}}}));
    EXPECT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1);  // one line
    auto err = parse_response(line.substr(0, line.size() - 1));
    ASSERT_TRUE(err.error);
    EXPECT_EQ(err.error->code(), error_code::not_found);
    EXPECT_STREQ(err.error->what(), "no logger 'foo'");
    EXPECT_EQ(err.error->data()["known"][0], "a");
    EXPECT_THROW(parse_response("{"), rpc_error);
    EXPECT_THROW(parse_response(R"({"jsonrpc":"2.0","id":1})"), rpc_error);
    EXPECT_THROW(parse_response(R"({"jsonrpc":"2.0","id":1,"result":1,"error":{}})"), rpc_error);
    EXPECT_THROW(parse_response(R"({"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}})"), rpc_error);
}

TEST(ctl_codec, request_builder_and_invalid_utf8) {
    auto r = make_request(1, "metrics.get", {{"prefix", "reef_"}});
    EXPECT_EQ(r["jsonrpc"], "2.0");
    EXPECT_EQ(r["params"]["prefix"], "reef_");
    EXPECT_FALSE(make_request(2, "reef.version").contains("params"));
    // A message quoting bad input with invalid UTF-8 must still serialize.
    json bad = make_error(nullptr, error_code::invalid_params, std::string("bad \xff\xfe value"));
    EXPECT_NO_THROW(to_line(bad));
}

TEST(ctl_framing, splits_lines_across_feeds) {
    line_reader r(100);
    std::string line;
    r.feed("{\"a\":");
    EXPECT_EQ(r.next(line), line_reader::status::need_more);
    r.feed("1}\n{\"b\":2}\r\n{\"c\"");
    EXPECT_EQ(r.next(line), line_reader::status::line);
    EXPECT_EQ(line, "{\"a\":1}");
    EXPECT_EQ(r.next(line), line_reader::status::line);
    EXPECT_EQ(line, "{\"b\":2}");  // CRLF accepted
    EXPECT_EQ(r.next(line), line_reader::status::need_more);
    r.feed(":3}\n");
    EXPECT_EQ(r.next(line), line_reader::status::line);
    EXPECT_EQ(line, "{\"c\":3}");
    EXPECT_EQ(r.buffered(), 0u);
}

TEST(ctl_framing, oversized_line_is_reported_once_and_skipped) {
    line_reader r(10);
    std::string line;
    // Arrives in pieces, with no end in sight: reported as soon as it passes the bound.
    r.feed("0123456789abc");
    EXPECT_EQ(r.next(line), line_reader::status::too_long);
    EXPECT_EQ(r.next(line), line_reader::status::need_more);
    r.feed("more and more");
    EXPECT_EQ(r.next(line), line_reader::status::need_more);
    EXPECT_EQ(r.buffered(), 0u);  // nothing of it is kept
    r.feed("end\nok\n");
    EXPECT_EQ(r.next(line), line_reader::status::line);
    EXPECT_EQ(line, "ok");
    // Arrives whole with its end: reported, and the next line still comes through.
    r.feed(std::string(20, 'x') + "\nfine\n");
    EXPECT_EQ(r.next(line), line_reader::status::too_long);
    EXPECT_EQ(r.next(line), line_reader::status::line);
    EXPECT_EQ(line, "fine");
    // Exactly the bound is fine.
    r.feed(std::string(10, 'y') + "\n");
    EXPECT_EQ(r.next(line), line_reader::status::line);
    EXPECT_EQ(line.size(), 10u);
}

TEST(ctl_params, typed_access_names_the_parameter) {
    json p = {{"s", "x"},           {"i", 5},       {"f", 2.5},     {"b", true}, {"o", json::object()},
              {"a", json::array()}, {"n", nullptr}, {"whole", 4.0}, {"neg", -1}};
    params_view v(p, "m.x");
    EXPECT_EQ(v.string("s"), "x");
    EXPECT_EQ(v.integer("i"), 5);
    EXPECT_EQ(v.integer("whole"), 4);
    EXPECT_EQ(v.number("f"), 2.5);
    EXPECT_EQ(v.number("i"), 5.0);
    EXPECT_TRUE(v.boolean("b"));
    EXPECT_TRUE(v.object("o").is_object());
    EXPECT_TRUE(v.array("a").is_array());
    EXPECT_FALSE(v.opt_string("n"));  // null is absent
    EXPECT_FALSE(v.has("missing"));
    auto code_and_text = [](auto f) -> std::pair<int, std::string> {
        try {
            f();
        } catch (const rpc_error& e) {
            return {e.code(), e.what()};
        }
        return {0, ""};
    };
    auto [c1, t1] = code_and_text([&] { (void)v.integer("s"); });
    EXPECT_EQ(c1, error_code::invalid_params);
    EXPECT_EQ(t1, "m.x: parameter 's' must be an integer, got string \"x\"");
    auto [c2, t2] = code_and_text([&] { (void)v.string("missing"); });
    EXPECT_EQ(c2, error_code::invalid_params);
    EXPECT_EQ(t2, "m.x: parameter 'missing' is required");
    auto [c3, t3] = code_and_text([&] { (void)v.integer("neg", 0, 10); });
    EXPECT_EQ(c3, error_code::invalid_params);
    EXPECT_NE(t3.find("out of range [0, 10]"), std::string::npos);
    EXPECT_EQ(code_and_text([&] { (void)v.integer("f"); }).first, error_code::invalid_params);
    EXPECT_EQ(code_and_text([&] { (void)v.boolean("i"); }).first, error_code::invalid_params);
    EXPECT_EQ(code_and_text([&] { (void)v.number("f", 3, 4); }).first, error_code::invalid_params);
    auto [c4, t4] = code_and_text([&] { v.allow_only({"s", "i"}); });
    EXPECT_EQ(c4, error_code::invalid_params);
    EXPECT_NE(t4.find("unknown parameter"), std::string::npos);
}

TEST(ctl_params, params_must_be_named) {
    EXPECT_NO_THROW(params_view(nullptr, "m"));
    EXPECT_THROW(params_view(json::array({1}), "m"), rpc_error);
    json none = nullptr;
    params_view v(none, "m");
    EXPECT_NO_THROW(v.allow_only({}));
    EXPECT_FALSE(v.has("x"));
}

TEST(ctl_codec, error_names) {
    EXPECT_EQ(error_name(error_code::parse_error), "parse error");
    EXPECT_EQ(error_name(error_code::permission_denied), "permission denied");
    EXPECT_EQ(error_name(12345), "error");
}
