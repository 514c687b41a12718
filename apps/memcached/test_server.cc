// memcached_server over several shards (no sockets): keys are routed to their owner shard, a
// multi-get gathers values from every shard in request order, flush_all and stats span shards.
#include "apps/memcached/server.hh"

#include "smp_test.hh"

#include <string>

using namespace reef;
using namespace reef::memcached;

namespace {

future<std::string> request(memcached_server& s, std::string in) {
    std::string out;
    command c;
    parse_limits lim;
    lim.now = memcached::clock().now();
    lim.start_unix = memcached::clock().start_unix();
    std::size_t pos = 0;
    while (pos < in.size()) {
        c.clear();
        auto r = parse_request(std::string_view(in).substr(pos), c, lim);
        if (r.status == parse_status::need_more) {
            break;
        }
        auto f = s.run_command(c, out);
        co_await std::move(f);
        pos += r.consumed;
    }
    co_return out;
}

}  // namespace

REEF_SMP_TEST(memcached_server, keys_live_on_their_shard_and_multiget_keeps_order, 2) {
    sharded<memcached_server> servers;
    server_config cfg;
    cfg.memory_per_shard = 2 << 20;
    co_await servers.start(cfg, &servers);
    std::exception_ptr err;
    try {
        std::string sets, get = "get", expect;
        for (int i = 0; i < 30; ++i) {
            std::string k = "key" + std::to_string(i), v = "value" + std::to_string(i);
            sets += "set " + k + " " + std::to_string(i) + " 0 " + std::to_string(v.size()) + "\r\n" + v + "\r\n";
            get += " " + k;
            expect += "VALUE " + k + " " + std::to_string(i) + " " + std::to_string(v.size()) + "\r\n" + v + "\r\n";
        }
        expect += "END\r\n";
        auto f = request(servers.local(), sets);
        auto r = co_await std::move(f);
        EXPECT_EQ(r.size(), 30 * std::string("STORED\r\n").size());
        // Every key is on its owner shard only.
        for (unsigned sh = 0; sh < smp::count; ++sh) {
            auto items =
                co_await servers.invoke_on(sh, [](memcached_server& s) { return s.cache().stats().curr_items; });
            std::uint64_t want = 0;
            for (int i = 0; i < 30; ++i) {
                want += shard_of(key_hash("key" + std::to_string(i)), smp::count) == sh;
            }
            EXPECT_EQ(items, want) << "shard " << sh;
        }
        // The same multi-get from every shard gives the same reply, in request order.
        for (unsigned sh = 0; sh < smp::count; ++sh) {
            auto g = servers.invoke_on(sh, [get](memcached_server& s) { return request(s, get + "\r\n"); });
            EXPECT_EQ(co_await std::move(g), expect);
        }
        auto st = request(servers.local(), "stats\r\n");
        auto stats = co_await std::move(st);
        EXPECT_NE(stats.find("STAT curr_items 30\r\n"), std::string::npos) << stats;
        EXPECT_NE(stats.find("STAT threads 2\r\n"), std::string::npos);
        auto fl = request(servers.local(), "flush_all\r\n" + get + "\r\n");
        EXPECT_EQ(co_await std::move(fl), "OK\r\nEND\r\n");
        auto bad = request(servers.local(), "stats nonsense\r\n");
        EXPECT_EQ(co_await std::move(bad), "ERROR\r\n");
    } catch (...) {
        err = std::current_exception();
    }
    co_await servers.stop();
    if (err) {
        std::rethrow_exception(err);
    }
}
