// runtime/metrics_collectd: the binary protocol encoding (decoded back here, packet sizes), the
// option checks, and values arriving at a real collectd (collectd-core's /usr/sbin/collectd with
// its network plugin on 127.0.0.1 and the csv plugin writing what it received).
#include "reactor_test.hh"
#include "smp_test.hh"

#include "runtime/future_util.hh"
#include "runtime/metrics.hh"
#include "runtime/metrics_collectd.hh"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

using namespace reef;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// A decoded values part with the identifier in force when it came.
struct decoded_value {
    std::string host, plugin, plugin_instance, type, type_instance;
    std::uint8_t ds = 0;
    double gauge = 0;
    std::int64_t derive = 0;
    std::uint64_t time_hr = 0, interval_hr = 0;
};

std::uint64_t be64(const unsigned char* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
        v = (v << 8) | p[i];
    }
    return v;
}

// An independent reading of the protocol: parts of type, length (big-endian), body.
std::vector<decoded_value> decode(const std::string& pkt) {
    std::vector<decoded_value> out;
    decoded_value cur;
    std::size_t pos = 0;
    auto* p = reinterpret_cast<const unsigned char*>(pkt.data());
    while (pos + 4 <= pkt.size()) {
        unsigned type = (p[pos] << 8) | p[pos + 1];
        unsigned len = (p[pos + 2] << 8) | p[pos + 3];
        EXPECT_GE(len, 4u);
        EXPECT_LE(pos + len, pkt.size());
        if (len < 4 || pos + len > pkt.size()) {
            break;
        }
        const unsigned char* body = p + pos + 4;
        std::string str(reinterpret_cast<const char*>(body), len > 4 ? len - 5 : 0);
        switch (type) {
        case 0: cur.host = str; break;
        case 2: cur.plugin = str; break;
        case 3: cur.plugin_instance = str; break;
        case 4: cur.type = str; break;
        case 5: cur.type_instance = str; break;
        case 8: cur.time_hr = be64(body); break;
        case 9: cur.interval_hr = be64(body); break;
        case 6: {
            EXPECT_EQ(len, 15u);
            EXPECT_EQ((body[0] << 8) | body[1], 1);
            decoded_value v = cur;
            v.ds = body[2];
            if (v.ds == 1) {
                std::memcpy(&v.gauge, body + 3, 8);
            } else {
                v.derive = std::int64_t(be64(body + 3));
            }
            out.push_back(v);
            break;
        }
        default: ADD_FAILURE() << "unexpected part type " << type;
        }
        if (type != 6 && type != 8 && type != 9) {
            EXPECT_EQ(body[len - 5], 0) << "strings are NUL-terminated";
        }
        pos += len;
    }
    EXPECT_EQ(pos, pkt.size());
    return out;
}

metrics::metric_family family(std::string name, metrics::metric_type t,
                              std::vector<std::pair<std::string, double>> vals) {
    metrics::metric_family f;
    f.name = std::move(name);
    f.type = t;
    for (auto& [shard, v] : vals) {
        metrics::sample s;
        s.lbls = {{"shard", shard}};
        s.value.value = v;
        f.samples.push_back(std::move(s));
    }
    return f;
}

}  // namespace

TEST(metrics_collectd, encodes_the_binary_protocol) {
    std::vector<metrics::metric_family> fams;
    fams.push_back(family("requests_total", metrics::metric_type::counter, {{"0", 12345}, {"1", 7}}));
    fams.push_back(family("queue_length", metrics::metric_type::gauge, {{"0", 2.5}}));
    metrics::metric_family h;
    h.name = "latency_seconds";
    h.type = metrics::metric_type::histogram;
    metrics::sample hs;
    hs.lbls = {{"op", "get/put"}, {"shard", "0"}};
    hs.value.hist = metrics::histogram_value{{0.1}, {3}, 4, 0.75};
    h.samples.push_back(hs);
    fams.push_back(h);

    auto packets = metrics::encode_collectd(fams, "node1", "httpd", 1000.5, 10);
    ASSERT_EQ(packets.size(), 1u);
    auto vals = decode(packets[0]);
    ASSERT_EQ(vals.size(), 5u);
    EXPECT_EQ(vals[0].host, "node1");
    EXPECT_EQ(vals[0].plugin, "reef");
    EXPECT_EQ(vals[0].plugin_instance, "httpd");
    EXPECT_EQ(vals[0].time_hr, std::uint64_t(1000.5 * (1ull << 30)));
    EXPECT_EQ(vals[0].interval_hr, 10ull << 30);
    EXPECT_EQ(vals[0].type, "derive");
    EXPECT_EQ(vals[0].type_instance, "requests_total.shard_0");
    EXPECT_EQ(vals[0].ds, 2);
    EXPECT_EQ(vals[0].derive, 12345);
    EXPECT_EQ(vals[1].type_instance, "requests_total.shard_1");
    EXPECT_EQ(vals[1].derive, 7);
    EXPECT_EQ(vals[2].type, "gauge");
    EXPECT_EQ(vals[2].ds, 1);
    EXPECT_EQ(vals[2].gauge, 2.5);
    EXPECT_EQ(vals[3].type, "derive");
    EXPECT_EQ(vals[3].type_instance, "latency_seconds_count.op_get_put.shard_0");
    EXPECT_EQ(vals[3].derive, 4);
    EXPECT_EQ(vals[4].type, "gauge");
    EXPECT_EQ(vals[4].type_instance, "latency_seconds_sum.op_get_put.shard_0");
    EXPECT_EQ(vals[4].gauge, 0.75);
}

TEST(metrics_collectd, splits_packets_at_1452_bytes) {
    std::vector<metrics::metric_family> fams;
    std::vector<std::pair<std::string, double>> many;
    for (int i = 0; i < 500; ++i) {
        many.emplace_back(std::to_string(i), double(i));
    }
    fams.push_back(family("a_rather_long_metric_name_for_splitting_total", metrics::metric_type::counter, many));
    // A name past collectd's limit is cut (and stays unique).
    fams.push_back(family(std::string(300, 'x'), metrics::metric_type::gauge, {{"0", 1}}));
    auto packets = metrics::encode_collectd(fams, "h", "", 1, 1);
    EXPECT_GT(packets.size(), 5u);
    std::size_t total = 0;
    std::map<std::string, int> seen;
    for (auto& p : packets) {
        EXPECT_LE(p.size(), metrics::collectd_max_packet);
        auto vals = decode(p);
        total += vals.size();
        for (auto& v : vals) {
            EXPECT_EQ(v.host, "h");  // every packet carries the identifier parts itself
            EXPECT_FALSE(v.type.empty());
            EXPECT_LT(v.type_instance.size(), 128u);
            ++seen[v.type_instance];
        }
    }
    EXPECT_EQ(total, 501u);
    EXPECT_EQ(seen.size(), 501u);
}

REEF_SMP_TEST(metrics_collectd, rejects_bad_options, 1) {
    auto f1 = metrics::start_collectd_export({.address = "127.0.0.1"});
    EXPECT_THROW(co_await std::move(f1), std::invalid_argument);
    auto f2 = metrics::start_collectd_export({.address = "127.0.0.1:99999"});
    EXPECT_THROW(co_await std::move(f2), std::invalid_argument);
    auto f3 = metrics::start_collectd_export({.address = "127.0.0.1:25826", .period = 0ms});
    EXPECT_THROW(co_await std::move(f3), std::invalid_argument);
    auto f4 = metrics::start_collectd_export({.address = "[::1:25826"});
    EXPECT_THROW(co_await std::move(f4), std::invalid_argument);
    co_await metrics::stop_collectd_export();  // not started: nothing to do
}

namespace {

// A free UDP port on 127.0.0.1 (bound and released; collectd binds it right after).
int free_udp_port() {
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    socklen_t len = sizeof(sa);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    ::close(fd);
    return ntohs(sa.sin_port);
}

// The last value of every csv file under dir, by file name without its date suffix.
std::map<std::string, double> csv_values(const fs::path& dir) {
    std::map<std::string, double> out;
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(dir, ec)) {
        if (!e.is_regular_file()) {
            continue;
        }
        std::ifstream in(e.path());
        std::string line, last;
        while (std::getline(in, line)) {
            if (!line.empty() && line[0] != 'e') {  // skip the "epoch,value" header
                last = line;
            }
        }
        auto comma = last.find(',');
        if (comma == std::string::npos) {
            continue;
        }
        auto name = e.path().parent_path().filename().string() + "/" + e.path().filename().string();
        name = name.substr(0, name.rfind('-'));  // drop the -YYYY-MM-DD suffix
        name = name.substr(0, name.rfind('-'));
        name = name.substr(0, name.rfind('-'));
        out[name] = std::strtod(last.c_str() + comma + 1, nullptr);
    }
    return out;
}

}  // namespace

REEF_SMP_TEST(metrics_collectd, values_reach_a_real_collectd, 2) {
    const char* collectd = "/usr/sbin/collectd";
    if (::access(collectd, X_OK) != 0) {
        // collectd-core is a listed dependency (scripts/dev.sh): its absence is a setup error.
        ADD_FAILURE() << collectd << " is missing (apt-get install collectd-core)";
        co_return;
    }
    char tmpl[] = "/tmp/reef-collectd-XXXXXX";
    fs::path dir = ::mkdtemp(tmpl);
    const int port = free_udp_port();
    {
        std::ofstream conf(dir / "collectd.conf");
        conf << "Hostname \"reeftest\"\nFQDNLookup false\nBaseDir \"" << dir.string() << "\"\nPIDFile \""
             << (dir / "collectd.pid").string() << "\"\nPluginDir \"/usr/lib/collectd\"\n"
             << "TypesDB \"/usr/share/collectd/types.db\"\nInterval 1\n"
             << "LoadPlugin logfile\n<Plugin logfile>\n  LogLevel info\n  File \"" << (dir / "collectd.log").string()
             << "\"\n</Plugin>\nLoadPlugin network\nLoadPlugin csv\n"
             << "<Plugin network>\n  Listen \"127.0.0.1\" \"" << port << "\"\n</Plugin>\n"
             << "<Plugin csv>\n  DataDir \"" << (dir / "csv").string() << "\"\n  StoreRates false\n</Plugin>\n";
    }
    std::string conf_path = (dir / "collectd.conf").string();
    const char* argv[] = {collectd, "-f", "-C", conf_path.c_str(), nullptr};
    pid_t pid = -1;
    REEF_ASSERT(::posix_spawn(&pid, collectd, nullptr, nullptr, const_cast<char**>(argv), environ) == 0);

    // Metrics on both shards: a counter and a gauge per shard.
    std::uint64_t counter_value[2] = {12345, 678};
    double gauge_value[2] = {2.5, -1.25};
    std::vector<metrics::metric_groups> groups(smp::count);
    co_await smp::invoke_on_all([&] {
        auto s = this_shard_id();
        groups[s].add_group("collectdtest", {
                                                metrics::make_counter("events_total", "events", counter_value[s]),
                                                metrics::make_gauge("level", "level", gauge_value[s]),
                                            });
    });
    // Named first: GCC 12 mishandles temporaries with destructors inside a co_await expression.
    auto started = metrics::start_collectd_export(
        {.address = fmt::format("127.0.0.1:{}", port), .period = 200ms, .host = "reefhost", .instance = "testapp"});
    co_await std::move(started);
    // collectd needs a moment to bind; the periodic pushes repeat until the values are on disk.
    std::map<std::string, double> vals;
    const fs::path node = dir / "csv" / "reefhost";
    for (int i = 0; i < 150; ++i) {
        co_await sleep(100ms);
        vals = csv_values(node);
        if (vals.count("reef-testapp/derive-collectdtest_events_total.shard_1") &&
            vals.count("reef-testapp/gauge-collectdtest_level.shard_1") &&
            vals.count("reef-testapp/derive-collectdtest_events_total.shard_0") &&
            vals.count("reef-testapp/gauge-collectdtest_level.shard_0")) {
            break;
        }
    }
    auto st = metrics::get_collectd_stats();
    co_await metrics::stop_collectd_export();
    // Each shard's registrations are removed on that shard.
    co_await smp::invoke_on_all([&] { groups[this_shard_id()].clear(); });
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);

    EXPECT_GT(st.pushes, 0u);
    EXPECT_GT(st.packets_sent, 0u);
    EXPECT_EQ(vals["reef-testapp/derive-collectdtest_events_total.shard_0"], 12345);
    EXPECT_EQ(vals["reef-testapp/derive-collectdtest_events_total.shard_1"], 678);
    EXPECT_EQ(vals["reef-testapp/gauge-collectdtest_level.shard_0"], 2.5);
    EXPECT_EQ(vals["reef-testapp/gauge-collectdtest_level.shard_1"], -1.25);
    if (::testing::Test::HasFailure()) {
        std::ifstream log(dir / "collectd.log");
        std::stringstream ss;
        ss << log.rdbuf();
        ADD_FAILURE() << "collectd log:\n" << ss.str();
    }
    fs::remove_all(dir);
}
