// The protocols on one cache: text, meta and binary requests in, memcached's replies out, byte for
// byte; incremental parsing (requests split anywhere), bounded lines, swallowed data blocks.
#include "apps/memcached/protocol.hh"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

using namespace reef::memcached;

namespace {

struct session {
    cache_shard cache{8 << 20, 1 << 20};
    parse_limits lim;
    std::string pending;
    std::uint64_t swallow = 0;
    bool closed = false;

    session() {
        lim.now = 100;
        lim.start_unix = 1'700'000'000;
    }

    // Feed bytes; returns the replies to every whole request.
    std::string feed(std::string_view in) {
        std::string out;
        pending.append(in);
        command c;
        while (!closed) {
            if (swallow) {
                std::size_t n = std::min<std::uint64_t>(swallow, pending.size());
                pending.erase(0, n);
                swallow -= n;
                if (swallow) {
                    break;
                }
            }
            c.clear();
            auto r = parse_request(pending, c, lim);
            if (r.status == parse_status::need_more) {
                break;
            }
            switch (c.kind) {
            case cmd_kind::keyed: {
                std::vector<op_result> res;
                for (auto& o : c.ops) {
                    res.push_back(execute_op(cache, o, lim.now));
                }
                format_reply(c, res, out);
                break;
            }
            case cmd_kind::reply:
                out += c.immediate;
                closed = c.close_after;
                break;
            case cmd_kind::quit:
                out += c.immediate;
                closed = true;
                break;
            case cmd_kind::flush_all:
                cache.flush_all();
                format_simple(c, out);
                break;
            case cmd_kind::stats:
                format_stats(c, {{"curr_items", std::to_string(cache.stats().curr_items)}}, out);
                break;
            default: format_simple(c, out); break;
            }
            pending.erase(0, r.consumed);
            swallow = r.swallow;
        }
        return out;
    }
    // Feeds one byte at a time: the same replies must come out.
    std::string trickle(std::string_view in) {
        std::string out;
        for (char ch : in) {
            out += feed(std::string_view(&ch, 1));
        }
        return out;
    }
};

std::string bin_req(std::uint8_t opcode, std::string_view key, std::string_view extras = {},
                    std::string_view value = {}, std::uint64_t cas = 0, std::uint32_t opaque = 0x01020304) {
    std::string h(24, '\0');
    h[0] = char(0x80);
    h[1] = char(opcode);
    h[2] = char(key.size() >> 8);
    h[3] = char(key.size());
    h[4] = char(extras.size());
    std::uint32_t body = std::uint32_t(extras.size() + key.size() + value.size());
    for (int i = 0; i < 4; ++i) {
        h[8 + i] = char(body >> (24 - 8 * i));
    }
    std::memcpy(&h[12], &opaque, 4);
    for (int i = 0; i < 8; ++i) {
        h[16 + i] = char(cas >> (56 - 8 * i));
    }
    return h + std::string(extras) + std::string(key) + std::string(value);
}

std::uint16_t bin_status(std::string_view r, std::size_t at = 0) {
    return std::uint16_t((std::uint8_t(r[at + 6]) << 8) | std::uint8_t(r[at + 7]));
}

std::string be32s(std::uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i) {
        s[i] = char(v >> (24 - 8 * i));
    }
    return s;
}

}  // namespace

TEST(memcached_text, storage_and_retrieval) {
    session s;
    EXPECT_EQ(s.feed("set a 5 0 3\r\nabc\r\n"), "STORED\r\n");
    EXPECT_EQ(s.feed("get a\r\n"), "VALUE a 5 3\r\nabc\r\nEND\r\n");
    EXPECT_EQ(s.feed("get a b a\r\n"), "VALUE a 5 3\r\nabc\r\nVALUE a 5 3\r\nabc\r\nEND\r\n");
    auto gets = s.feed("gets a\r\n");
    EXPECT_TRUE(gets.starts_with("VALUE a 5 3 ")) << gets;
    EXPECT_EQ(s.feed("add a 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
    EXPECT_EQ(s.feed("replace zz 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
    EXPECT_EQ(s.feed("append a 0 0 2\r\nde\r\nprepend a 0 0 1\r\n_\r\nget a\r\n"),
              "STORED\r\nSTORED\r\nVALUE a 5 6\r\n_abcde\r\nEND\r\n");
    EXPECT_EQ(s.feed("set n 0 0 1 noreply\r\n9\r\nincr n 1\r\ndecr n 100\r\nincr n x\r\n"),
              "10\r\n0\r\nCLIENT_ERROR invalid numeric delta argument\r\n");
    EXPECT_EQ(s.feed("incr a 1\r\n"), "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
    EXPECT_EQ(s.feed("incr zz 1\r\n"), "NOT_FOUND\r\n");
    EXPECT_EQ(
        s.feed("delete a\r\ndelete a\r\ndelete n 0\r\ndelete n 5\r\n"),
        "DELETED\r\nNOT_FOUND\r\nDELETED\r\nCLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
    EXPECT_EQ(s.feed("touch zz 10\r\nset t 0 0 1\r\nx\r\ntouch t 10\r\n"), "NOT_FOUND\r\nSTORED\r\nTOUCHED\r\n");
    EXPECT_EQ(s.feed("gat 100 t\r\n"), "VALUE t 0 1\r\nx\r\nEND\r\n");
    EXPECT_EQ(s.feed("version\r\n"), "VERSION " + std::string(version_string) + "\r\n");
    EXPECT_EQ(s.feed("verbosity 1\r\nverbosity 1 noreply\r\n"), "OK\r\n");
    EXPECT_EQ(s.feed("flush_all\r\nget t\r\nflush_all noreply\r\n"), "OK\r\nEND\r\n");
}

TEST(memcached_text, cas_command) {
    session s;
    EXPECT_EQ(s.feed("cas k 0 0 1 1\r\nx\r\n"), "NOT_FOUND\r\n");
    s.feed("set k 0 0 1\r\nx\r\n");
    auto r = s.feed("gets k\r\n");
    auto cas = r.substr(std::string("VALUE k 0 1 ").size(), r.find("\r\n") - std::string("VALUE k 0 1 ").size());
    EXPECT_EQ(s.feed("cas k 0 0 1 " + cas + "1\r\ny\r\n"), "EXISTS\r\n");
    EXPECT_EQ(s.feed("cas k 0 0 1 " + cas + "\r\ny\r\n"), "STORED\r\n");
    EXPECT_EQ(s.feed("cas k 0 0 1 " + cas + "\r\nz\r\n"), "EXISTS\r\n");
}

TEST(memcached_text, bad_input_gets_memcacheds_errors) {
    session s;
    EXPECT_EQ(s.feed("bogus\r\n"), "ERROR\r\n");
    EXPECT_EQ(s.feed("\r\n"), "ERROR\r\n");
    EXPECT_EQ(s.feed("get\r\n"), "ERROR\r\n");
    EXPECT_EQ(s.feed("set k 0 0\r\n"), "ERROR\r\n");
    EXPECT_EQ(s.feed("set k x 0 1\r\nz\r\n"), "CLIENT_ERROR bad command line format\r\nERROR\r\n");
    EXPECT_EQ(s.feed("set k 0 0 -1\r\n"), "CLIENT_ERROR bad command line format\r\n");
    EXPECT_EQ(s.feed("set k 0 0 3\r\nabcde\r\n"), "CLIENT_ERROR bad data chunk\r\nERROR\r\n");
    std::string long_key(251, 'k');
    EXPECT_EQ(s.feed("get " + long_key + "\r\n"), "CLIENT_ERROR bad command line format\r\n");
    EXPECT_EQ(s.feed("set " + long_key + " 0 0 1\r\nx\r\n"), "CLIENT_ERROR bad command line format\r\nERROR\r\n");
    // Control characters are key bytes like any other (memcaslap's keys start with 0x10).
    EXPECT_EQ(s.feed("set a\x10"
                     "b 0 0 1\r\nx\r\nget a\x10"
                     "b\r\n"),
              "STORED\r\nVALUE a\x10"
              "b 0 1\r\nx\r\nEND\r\n");
    EXPECT_EQ(s.feed("touch k abc\r\n"), "CLIENT_ERROR invalid exptime argument\r\n");
    EXPECT_EQ(s.feed("flush_all abc\r\n"), "CLIENT_ERROR invalid exptime argument\r\n");
    EXPECT_EQ(s.feed("set k 0 0 1 noreply\r\nxyz\r\n"), "ERROR\r\n")
        << "noreply silences the error, not the next line's";
    EXPECT_EQ(s.feed("version with args\r\nshutdown\r\n"),
              "VERSION " + std::string(version_string) + "\r\nERROR: shutdown not enabled\r\n");
    // Too large: refused, the data swallowed, the connection goes on.
    std::string big(2 << 20, 'b');
    EXPECT_EQ(s.feed("set k 0 0 " + std::to_string(big.size()) + "\r\n" + big.substr(0, 1000)),
              "SERVER_ERROR object too large for cache\r\n");
    EXPECT_EQ(s.feed(big.substr(1000) + "\r\nget k\r\n"), "END\r\n");
    EXPECT_FALSE(s.closed);
    // A line with no end: refused and closed once it passes the limit.
    EXPECT_EQ(s.feed(std::string(3000, 'x')), "CLIENT_ERROR line too long\r\n");
    EXPECT_TRUE(s.closed);
}

TEST(memcached_text, requests_split_anywhere_and_pipelined) {
    session a, b;
    std::string script =
        "set k 1 0 5\r\nhello\r\nget k\r\nappend k 0 0 1\r\n!\r\ngets nope k\r\nincr k 1\r\ndelete k\r\nmn\r\n";
    auto whole = a.feed(script);
    auto bytes = b.trickle(script);
    EXPECT_EQ(whole.substr(0, 40), bytes.substr(0, 40));
    EXPECT_TRUE(whole.starts_with("STORED\r\nVALUE k 1 5\r\nhello\r\nEND\r\nSTORED\r\nVALUE k 1 6 ")) << whole;
    EXPECT_TRUE(
        whole.ends_with("END\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\nDELETED\r\nMN\r\n"))
        << whole;
    EXPECT_EQ(whole.size(), bytes.size());
}

TEST(memcached_meta, get_set_delete_arith) {
    session s;
    EXPECT_EQ(s.feed("ms foo 2 T0 F5\r\nhi\r\n"), "HD\r\n");
    EXPECT_EQ(s.feed("mg foo v f t s k Oabc\r\n"), "VA 2 f5 t-1 s2 kfoo Oabc\r\nhi\r\n");
    EXPECT_EQ(s.feed("mg foo\r\n"), "HD\r\n");
    EXPECT_EQ(s.feed("mg nope v\r\n"), "EN\r\n");
    EXPECT_EQ(s.feed("mg nope v q\r\nmn\r\n"), "MN\r\n");
    auto r = s.feed("mg foo c\r\n");
    ASSERT_TRUE(r.starts_with("HD c")) << r;
    std::string cas = r.substr(4, r.size() - 6);
    EXPECT_EQ(s.feed("ms foo 1 C999999\r\nx\r\n"), "EX\r\n");
    EXPECT_EQ(s.feed("ms foo 1 C" + cas + "\r\nx\r\n"), "HD\r\n");
    EXPECT_EQ(s.feed("ms foo 1 ME\r\ny\r\n"), "NS\r\n");
    EXPECT_EQ(s.feed("ms foo 1 MA\r\ny\r\nmg foo v\r\n"), "HD\r\nVA 2\r\nxy\r\n");
    EXPECT_EQ(s.feed("ms foo 1 q\r\nz\r\nmn\r\n"), "MN\r\n");
    EXPECT_EQ(s.feed("ms foo 2 T10\r\nabcd"), "CLIENT_ERROR bad data chunk\r\n");
    EXPECT_EQ(s.feed("md foo\r\nmd foo\r\nmd foo q\r\nmn\r\n"), "HD\r\nNF\r\nNF\r\nMN\r\n") << "q hides HD only";
    EXPECT_EQ(s.feed("ma cnt\r\n"), "NF\r\n");
    EXPECT_EQ(s.feed("ma cnt N0 J10 v\r\n"), "VA 2\r\n10\r\n");
    EXPECT_EQ(s.feed("ma cnt D5 v\r\nma cnt MD D20 v\r\n"), "VA 2\r\n15\r\nVA 1\r\n0\r\n");
    EXPECT_EQ(s.feed("mg cnt T30 t v\r\n"), "VA 1 t30\r\n0\r\n");
    EXPECT_TRUE(s.feed("me cnt\r\n").starts_with("ME cnt exp=30 la=0 cas="));
    EXPECT_EQ(s.feed("me nope\r\n"), "EN\r\n");
    EXPECT_EQ(s.feed("mg " + std::string(251, 'k') + " v\r\n"), "CLIENT_ERROR bad command line format\r\n");
    EXPECT_EQ(s.feed("mg foo !\r\n"), "CLIENT_ERROR invalid flag\r\n");
    EXPECT_EQ(s.feed("ms foo 1 Z\r\nx\r\nmn\r\n"), "CLIENT_ERROR invalid flag\r\nMN\r\n") << "data skipped";
    EXPECT_EQ(s.feed("mg\r\n"), "ERROR\r\n");
    // Base64 keys.
    EXPECT_EQ(s.feed("ms Zm9v 1 b\r\nq\r\nmg Zm9v b v k\r\n"), "HD\r\nVA 1 kZm9v\r\nq\r\n");
    EXPECT_EQ(s.feed("mg foo v\r\n"), "VA 1\r\nq\r\n");
}

TEST(memcached_binary, commands_and_statuses) {
    session s;
    std::string set_extras = be32s(0xdeadbeef) + be32s(0);
    auto r = s.feed(bin_req(0x01, "key", set_extras, "value"));
    ASSERT_EQ(r.size(), 24u);
    EXPECT_EQ(std::uint8_t(r[0]), 0x81);
    EXPECT_EQ(bin_status(r), 0);
    std::uint32_t opaque;
    std::memcpy(&opaque, &r[12], 4);
    EXPECT_EQ(opaque, 0x01020304u);
    r = s.feed(bin_req(0x00, "key"));
    ASSERT_EQ(r.size(), 24u + 4 + 5);
    EXPECT_EQ(r.substr(24), be32s(0xdeadbeef) + "value");
    r = s.feed(bin_req(0x0c, "key"));  // getk
    EXPECT_EQ(r.substr(24), be32s(0xdeadbeef) + "keyvalue");
    r = s.feed(bin_req(0x00, "nope"));
    EXPECT_EQ(bin_status(r), 1);
    EXPECT_EQ(r.substr(24), "Not found");
    EXPECT_EQ(s.feed(bin_req(0x09, "nope")), "") << "getq: a miss says nothing";
    EXPECT_EQ(bin_status(s.feed(bin_req(0x02, "key", set_extras, "v"))), 2) << "add of an existing key";
    EXPECT_EQ(bin_status(s.feed(bin_req(0x03, "nope", set_extras, "v"))), 1) << "replace of a missing key";
    EXPECT_EQ(bin_status(s.feed(bin_req(0x0e, "nope", "", "v"))), 5) << "append to a missing key";
    EXPECT_EQ(s.feed(bin_req(0x11, "q", set_extras, "v")), "") << "setq";
    // incr with an initial value, then a non-numeric value.
    std::string incr_extras = std::string(7, '\0') + "\x02" + std::string(7, '\0') + "\x07" + be32s(0);
    r = s.feed(bin_req(0x05, "n", incr_extras));
    EXPECT_EQ(bin_status(r), 0);
    EXPECT_EQ(r.substr(24), std::string(7, '\0') + "\x07");
    r = s.feed(bin_req(0x05, "n", incr_extras));
    EXPECT_EQ(r.substr(24), std::string(7, '\0') + "\x09");
    EXPECT_EQ(bin_status(s.feed(bin_req(0x05, "key", incr_extras))), 6);
    std::string no_create = std::string(16, '\0') + be32s(0xffffffff);
    EXPECT_EQ(bin_status(s.feed(bin_req(0x06, "none", no_create))), 1);
    EXPECT_EQ(bin_status(s.feed(bin_req(0x04, "key"))), 0);
    EXPECT_EQ(bin_status(s.feed(bin_req(0x04, "key"))), 1);
    r = s.feed(bin_req(0x0b, ""));
    EXPECT_EQ(r.substr(24), version_string);
    EXPECT_EQ(bin_status(s.feed(bin_req(0x0a, ""))), 0);
    EXPECT_EQ(bin_status(s.feed(bin_req(0x1c, "q", be32s(100)))), 0) << "touch";
    EXPECT_EQ(bin_status(s.feed(bin_req(0x08, ""))), 0) << "flush";
    EXPECT_EQ(bin_status(s.feed(bin_req(0x00, "q"))), 1);
    // Garbage: an unknown opcode is answered and the connection goes on; wrong extras get
    // "Invalid arguments" and the connection closes (as memcached).
    EXPECT_EQ(bin_status(s.feed(bin_req(0x77, ""))), 0x81);
    EXPECT_FALSE(s.closed);
    r = s.feed(bin_req(0x07, ""));  // quit
    EXPECT_EQ(bin_status(r), 0);
    EXPECT_TRUE(s.closed);
    session e1, e2;
    EXPECT_EQ(bin_status(e1.feed(bin_req(0x00, "k", "xxxx"))), 4);
    EXPECT_TRUE(e1.closed);
    EXPECT_EQ(bin_status(e2.feed(bin_req(0x01, "k", "", "v"))), 4);
    EXPECT_TRUE(e2.closed);
}

TEST(memcached_binary, split_and_contradictory_headers) {
    session s;
    std::string req = bin_req(0x01, "k", be32s(1) + be32s(0), "vvv") + bin_req(0x00, "k");
    auto out = s.trickle(req);
    EXPECT_EQ(out.size(), 24u + 24 + 4 + 3);
    session t;
    std::string bad = bin_req(0x00, "key");
    bad[11] = 1;  // body length 1 < key length 3
    EXPECT_EQ(bin_status(t.feed(bad)), 0x81);
    EXPECT_TRUE(t.closed);
}
