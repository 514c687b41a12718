#include "runtime/metrics_collectd.hh"

#include "runtime/coroutine.hh"
#include "runtime/gate.hh"
#include "runtime/log.hh"
#include "runtime/reactor.hh"
#include "runtime/smp.hh"
#include "runtime/timer.hh"

#include <fmt/format.h>

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <system_error>

namespace reef::metrics {

namespace {

logger collectd_log("collectd");

// Part types of the binary protocol.
constexpr std::uint16_t part_host = 0x0000;
constexpr std::uint16_t part_plugin = 0x0002;
constexpr std::uint16_t part_plugin_instance = 0x0003;
constexpr std::uint16_t part_type = 0x0004;
constexpr std::uint16_t part_type_instance = 0x0005;
constexpr std::uint16_t part_values = 0x0006;
constexpr std::uint16_t part_time_hr = 0x0008;
constexpr std::uint16_t part_interval_hr = 0x0009;
// Data source types of a values part.
constexpr std::uint8_t ds_gauge = 1;
constexpr std::uint8_t ds_derive = 2;
// collectd's DATA_MAX_NAME_LEN, terminating NUL included.
constexpr std::size_t max_name = 128;

void put_u16(std::string& p, std::uint16_t v) {
    p += char(v >> 8);
    p += char(v & 0xff);
}
void put_u64(std::string& p, std::uint64_t v) {
    for (int i = 7; i >= 0; --i) {
        p += char((v >> (i * 8)) & 0xff);
    }
}
void put_string(std::string& p, std::uint16_t type, std::string_view s) {
    put_u16(p, type);
    put_u16(p, std::uint16_t(4 + s.size() + 1));
    p += s;
    p += '\0';
}
void put_number(std::string& p, std::uint16_t type, std::uint64_t v) {
    put_u16(p, type);
    put_u16(p, 12);
    put_u64(p, v);
}
void put_value(std::string& p, std::uint8_t ds, double v) {
    put_u16(p, part_values);
    put_u16(p, 4 + 2 + 1 + 8);
    put_u16(p, 1);
    p += char(ds);
    if (ds == ds_gauge) {
        // GAUGE is the one little-endian field of the protocol.
        char b[8];
        std::memcpy(b, &v, 8);
        if constexpr (std::endian::native == std::endian::big) {
            std::reverse(b, b + 8);
        }
        p.append(b, 8);
    } else {
        put_u64(p, std::uint64_t(std::int64_t(std::llround(std::isfinite(v) ? v : 0.0))));
    }
}
std::uint64_t to_hr(double seconds) { return std::uint64_t(std::llround(seconds * double(1ull << 30))); }

// Keep what collectd and its writers (file names of csv/rrd) accept; fit the name limit.
std::string clean_name(std::string s) {
    for (auto& ch : s) {
        const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                        ch == '.' || ch == ':';
        if (!ok) {
            ch = '_';
        }
    }
    if (s.size() >= max_name) {
        // Cut, and keep distinct names distinct with a hash of the whole.
        auto h = std::hash<std::string>{}(s);
        s = s.substr(0, max_name - 1 - 9) + fmt::format("~{:08x}", std::uint32_t(h));
    }
    return s;
}

std::string type_instance(const std::string& name, const labels& l, std::string_view suffix) {
    std::string s = name;
    s += suffix;
    for (auto& [k, v] : l) {
        s += '.';
        s += k;
        s += '_';
        s += v;
    }
    return clean_name(std::move(s));
}

struct exporter {
    collectd_options opts;
    int fd = -1;
    sockaddr_storage dst{};
    socklen_t dst_len = 0;
    timer<> tick;
    gate pushes;
    bool pushing = false;
    collectd_stats stats;

    ~exporter() {
        if (fd >= 0) {
            ::close(fd);
        }
    }

    future<> push() {
        gate::holder h(pushes);
        pushing = true;
        std::vector<metric_family> fams;
        std::exception_ptr ex;
        try {
            auto f = collect(opts.prefix);  // named first: GCC 12 and temporaries in co_await
            fams = co_await std::move(f);
        } catch (...) {
            ex = std::current_exception();
        }
        pushing = false;
        if (ex) {
            ++stats.collect_errors;
            collectd_log.warn("cannot collect metrics: {}", exception_message(ex));
            co_return;
        }
        auto now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        auto interval = std::chrono::duration<double>(opts.period).count();
        auto packets = encode_collectd(fams, opts.host, opts.instance, now, interval);
        for (auto& p : packets) {
            if (::sendto(fd, p.data(), p.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&dst), dst_len) < 0) {
                ++stats.send_errors;
                collectd_log.debug("send to collectd {}: {}", opts.address, std::strerror(errno));
            } else {
                ++stats.packets_sent;
            }
        }
        for (auto& f : fams) {
            stats.values_sent += f.samples.size() * (f.type == metric_type::histogram ? 2 : 1);
        }
        ++stats.pushes;
    }
};

thread_local std::unique_ptr<exporter> the_exporter;
thread_local collectd_stats last_stats;

void check_shard0(const char* what) {
    if (this_shard_id() != 0) {
        throw std::logic_error(fmt::format("{} must be called on shard 0", what));
    }
}

}  // namespace

std::vector<std::string> encode_collectd(const std::vector<metric_family>& families, const std::string& host,
                                         const std::string& instance, double time, double interval) {
    std::string head;
    put_string(head, part_host, clean_name(host));
    put_number(head, part_time_hr, to_hr(time));
    put_number(head, part_interval_hr, to_hr(interval));
    put_string(head, part_plugin, "reef");
    put_string(head, part_plugin_instance, instance.empty() ? std::string() : clean_name(instance));

    std::vector<std::string> packets;
    std::string cur = head;
    std::string cur_type;
    auto emit = [&](const char* type, const std::string& ti, std::uint8_t ds, double v) {
        std::string chunk;
        put_string(chunk, part_type_instance, ti);
        put_value(chunk, ds, v);
        std::string type_part;
        put_string(type_part, part_type, type);
        if (cur.size() + type_part.size() + chunk.size() > collectd_max_packet) {
            packets.push_back(std::move(cur));
            cur = head;
            cur_type.clear();
        }
        // The type part is state: send it only when it changes within a packet.
        if (cur_type != type) {
            cur += type_part;
            cur_type = type;
        }
        cur += chunk;
    };
    for (auto& f : families) {
        for (auto& s : f.samples) {
            switch (f.type) {
            case metric_type::counter:
                emit("derive", type_instance(f.name, s.lbls, ""), ds_derive, s.value.value);
                break;
            case metric_type::gauge: emit("gauge", type_instance(f.name, s.lbls, ""), ds_gauge, s.value.value); break;
            case metric_type::histogram:
                if (s.value.hist) {
                    emit("derive", type_instance(f.name, s.lbls, "_count"), ds_derive, double(s.value.hist->count));
                    emit("gauge", type_instance(f.name, s.lbls, "_sum"), ds_gauge, s.value.hist->sum);
                }
                break;
            }
        }
    }
    if (cur.size() > head.size()) {
        packets.push_back(std::move(cur));
    }
    return packets;
}

future<> start_collectd_export(collectd_options opts) {
    check_shard0("start_collectd_export");
    if (the_exporter) {
        throw std::logic_error("collectd export already started");
    }
    if (opts.period.count() <= 0) {
        throw std::invalid_argument("--collectd-period must be positive");
    }
    // "host:port" or "[v6]:port".
    std::string host, port;
    const auto& a = opts.address;
    if (!a.empty() && a.front() == '[') {
        auto close = a.find(']');
        if (close == std::string::npos || close + 1 >= a.size() || a[close + 1] != ':') {
            throw std::invalid_argument(fmt::format("collectd address \"{}\": expected [address]:port", a));
        }
        host = a.substr(1, close - 1);
        port = a.substr(close + 2);
    } else {
        auto colon = a.rfind(':');
        if (colon == std::string::npos || colon == 0) {
            throw std::invalid_argument(fmt::format("collectd address \"{}\": expected host:port", a));
        }
        host = a.substr(0, colon);
        port = a.substr(colon + 1);
    }
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535) {
        throw std::invalid_argument(fmt::format("collectd address \"{}\": bad port", a));
    }
    auto ex = std::make_unique<exporter>();
    // getaddrinfo may block (DNS): off the reactor thread.
    auto resolved = engine().run_blocking([host, port, e = ex.get()]() -> int {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_DGRAM;
        addrinfo* res = nullptr;
        int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
        if (rc == 0) {
            std::memcpy(&e->dst, res->ai_addr, res->ai_addrlen);
            e->dst_len = res->ai_addrlen;
            ::freeaddrinfo(res);
        }
        return rc;
    });
    int rc = co_await std::move(resolved);
    if (rc != 0) {
        throw std::invalid_argument(fmt::format("collectd address \"{}\": {}", a, ::gai_strerror(rc)));
    }
    if (the_exporter) {
        throw std::logic_error("collectd export already started");
    }
    ex->fd = ::socket(ex->dst.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ex->fd < 0) {
        throw std::system_error(errno, std::system_category(), "collectd export: socket");
    }
    if (opts.host.empty()) {
        char name[256] = {};
        ::gethostname(name, sizeof(name) - 1);
        opts.host = name;
    }
    ex->opts = std::move(opts);
    auto* e = ex.get();
    e->tick.set_callback([e] {
        // A push still running (a slow shard) is not doubled up.
        if (!e->pushing && !e->pushes.is_closed()) {
            (void)e->push();
        }
    });
    e->tick.arm_periodic(std::chrono::duration_cast<timer<>::duration>(e->opts.period));
    collectd_log.info("pushing metrics to collectd at {} every {} ms", e->opts.address, e->opts.period.count());
    the_exporter = std::move(ex);
}

future<> push_collectd_now() {
    check_shard0("push_collectd_now");
    if (!the_exporter) {
        throw std::logic_error("collectd export not started");
    }
    co_await the_exporter->push();
}

future<> stop_collectd_export() {
    check_shard0("stop_collectd_export");
    if (!the_exporter) {
        co_return;
    }
    auto ex = std::move(the_exporter);
    ex->tick.cancel();
    co_await ex->pushes.close();
    last_stats = ex->stats;
}

collectd_stats get_collectd_stats() noexcept { return the_exporter ? the_exporter->stats : last_stats; }

}  // namespace reef::metrics
