#include "ctl/agent/agent_methods.hh"

#include "runtime/coroutine.hh"
#include "runtime/io/io_queue.hh"
#include "runtime/log.hh"
#include "runtime/memory.hh"
#include "runtime/metrics.hh"
#include "runtime/reactor.hh"
#include "runtime/scheduling.hh"
#include "runtime/smp.hh"
#include "stack/native/native_stack.hh"
#include "stack/native/tcp.hh"
#include "stack/native/tcp_connection.hh"
#include "stack/net/api.hh"
#include "stack/net/device.hh"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>

#ifndef REEF_VERSION
#define REEF_VERSION "unknown"
#endif

namespace reef::ctl {

namespace {

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

// ------------------------------------------------------------------------------------------------
// shards

struct shard_info {
    unsigned shard = 0;
    int cpu = -1;
    reactor::stats st;
    double uptime_s = 0;
    std::size_t queued = 0;
    memory::statistics mem;
    std::string idle_policy;
    double idle_poll_us = 0;
    double task_quota_ms = 0;
    double stall_threshold_ms = 0;
};

shard_info local_shard_info() {
    shard_info i;
    i.shard = this_shard_id();
    auto& cpus = smp::shard_cpus();
    i.cpu = i.shard < cpus.size() ? int(cpus[i.shard]) : -1;
    i.st = engine().get_stats();
    i.uptime_s = seconds(steady_clock_type::now() - engine().start_time());
    for (auto sg : all_scheduling_groups()) {
        i.queued += scheduling_group_stats(sg).queue_length;
    }
    i.mem = memory::stats();
    auto& cfg = engine().config();
    i.idle_policy = to_string(cfg.idle);
    i.idle_poll_us = double(cfg.idle_poll.count());
    i.task_quota_ms = double(cfg.task_quota.count()) / 1000.0;
    i.stall_threshold_ms = double(cfg.stall_threshold.count());
    return i;
}

json to_json(const shard_info& i) {
    double idle_s = seconds(i.st.idle_time);
    double idle_poll_s = seconds(i.st.idle_poll_time);
    auto pct = [&](double s) { return i.uptime_s > 0 ? std::clamp(100.0 * s / i.uptime_s, 0.0, 100.0) : 0.0; };
    double idle = pct(idle_s);
    double idle_poll = pct(idle_poll_s);
    return json{
        {"shard", i.shard},
        {"cpu", i.cpu < 0 ? json(nullptr) : json(i.cpu)},
        {"tasks_processed", i.st.tasks_processed},
        {"tasks_queued", i.queued},
        {"idle_pct", idle},
        // A polling shard is never asleep: its load is what neither sleeping nor empty polling took.
        {"idle_poll_pct", idle_poll},
        {"busy_pct", std::clamp(100.0 - idle - idle_poll, 0.0, 100.0)},
        // Raw seconds, so a reader can difference two samples over a window of its own.
        {"uptime_s", i.uptime_s},
        {"idle_s", idle_s},
        {"idle_poll_s", idle_poll_s},
        {"polls", i.st.polls},
        {"sleeps", i.st.sleeps},
        {"stalls", i.st.stalls},
        {"task_quota_violations", i.st.quota_violations},
        {"memory",
         {{"allocated", i.mem.allocated},
          {"free_cached", i.mem.free_cached},
          {"in_use", i.mem.in_use},
          {"budget", i.mem.budget},
          {"cross_shard_frees", i.mem.cross_shard_frees}}},
        {"idle_policy", i.idle_policy},
        {"idle_poll_us", i.idle_poll_us},
        {"task_quota_ms", i.task_quota_ms},
        {"stall_threshold_ms", i.stall_threshold_ms},
    };
}

// The shards a request names: "shard" absent or "all" -> every shard; else one index.
std::vector<unsigned> shards_of(const params_view& p) {
    std::vector<unsigned> out;
    auto* s = p.has("shard") ? &p.raw()["shard"] : nullptr;
    if (!s || (s->is_string() && s->get<std::string>() == "all")) {
        for (unsigned i = 0; i < smp::count; ++i) {
            out.push_back(i);
        }
        return out;
    }
    out.push_back(unsigned(p.integer("shard", 0, std::int64_t(smp::count) - 1)));
    return out;
}

future<json> shards_list(const json& params) {
    params_view p(params, "shards.list");
    p.allow_only({"shard"});
    auto which = shards_of(p);
    json out = json::array();
    for (auto s : which) {
        auto f = smp::submit_to(s, [] { return local_shard_info(); });
        out.push_back(to_json(co_await std::move(f)));
    }
    co_return json{{"shards", std::move(out)}};
}

struct shard_settings {
    std::optional<idle_policy> policy;
    std::optional<std::chrono::microseconds> idle_poll;
    std::optional<std::chrono::microseconds> quota;
    std::optional<std::chrono::milliseconds> stall;
};

future<json> shards_set(const json& params, const agent_config& cfg) {
    params_view p(params, "shards.set");
    p.allow_only({"shard", "idle_policy", "idle_poll_us", "task_quota_ms", "stall_threshold_ms", "hw_queue_weight"});
    auto which = shards_of(p);
    shard_settings s;
    if (auto v = p.opt_string("idle_policy")) {
        try {
            s.policy = parse_idle_policy(*v);
        } catch (const std::invalid_argument&) {
            throw rpc_error(error_code::invalid_params,
                            fmt::format("shards.set: idle_policy '{}' is not poll, sleep or adaptive", *v));
        }
    }
    if (auto v = p.opt_integer("idle_poll_us", 0, 10'000'000)) {
        s.idle_poll = std::chrono::microseconds(*v);
    }
    if (auto v = p.opt_number("task_quota_ms", 0.001, 60'000)) {
        s.quota = std::chrono::microseconds(std::max<std::int64_t>(1, std::llround(*v * 1000.0)));
    }
    if (auto v = p.opt_integer("stall_threshold_ms", 1, 3'600'000)) {
        s.stall = std::chrono::milliseconds(*v);
    }
    if (p.has("hw_queue_weight")) {
        (void)p.number("hw_queue_weight", 0, 1);
        if (!cfg.device) {
            throw rpc_error(error_code::unavailable,
                            "shards.set: hw_queue_weight applies to a port, and this dataplane has no port");
        }
        throw rpc_error(error_code::unsupported,
                        fmt::format("shards.set: port {} cannot change its software-RSS queue weight while running "
                                    "(the device has no live RETA update); restart with --hw-queue-weight",
                                    cfg.device->name()));
    }
    if (!s.policy && !s.idle_poll && !s.quota && !s.stall) {
        throw rpc_error(error_code::invalid_params,
                        "shards.set: nothing to set (give idle_policy, idle_poll_us, task_quota_ms, "
                        "stall_threshold_ms or hw_queue_weight)");
    }
    json out = json::array();
    for (auto shard : which) {
        auto f = smp::submit_to(shard, [s] {
            auto& r = engine();
            if (s.policy || s.idle_poll) {
                r.set_idle_policy(s.policy.value_or(r.config().idle), s.idle_poll.value_or(r.config().idle_poll));
            }
            if (s.quota) {
                r.set_task_quota(*s.quota);
            }
            if (s.stall) {
                r.set_stall_threshold(*s.stall);
            }
            return local_shard_info();
        });
        out.push_back(to_json(co_await std::move(f)));
    }
    co_return json{{"shards", std::move(out)}};
}

// ------------------------------------------------------------------------------------------------
// ports

net::device& need_device(const agent_config& cfg, std::string_view method) {
    if (!cfg.device) {
        throw rpc_error(error_code::unavailable,
                        fmt::format("{}: no port: this dataplane runs without a DPDK port (no --dpdk-pmd)", method));
    }
    return *cfg.device;
}

std::string hex(const std::vector<std::uint8_t>& b) {
    std::string s;
    for (auto x : b) {
        s += fmt::format("{:02x}", x);
    }
    return s;
}

json ports_list(const json& params, const agent_config& cfg) {
    params_view p(params, "ports.list");
    p.allow_only({});
    auto& dev = need_device(cfg, "ports.list");
    auto link = dev.get_link_status();
    auto& rss = dev.rss();
    std::vector<unsigned> per_shard(smp::count, 0);
    for (auto e : rss.reta) {
        if (e < per_shard.size()) {
            ++per_shard[e];
        }
    }
    auto& f = dev.features();
    json port = {
        {"name", dev.name()},
        {"driver", cfg.driver_name},
        {"mac", dev.hw_address().to_string()},
        {"link", {{"up", link.up}, {"speed_mbps", link.speed_mbps}, {"full_duplex", link.full_duplex}}},
        {"queues", dev.hw_queues_count()},
        {"shards", smp::count},
        {"software_rss", dev.hw_queues_count() < smp::count},
        {"mtu", f.mtu},
        {"rss", {{"key", hex(rss.key)}, {"reta_size", rss.reta.size()}, {"reta_entries_per_shard", per_shard}}},
        {"offloads",
         {{"tx_ip_csum", f.tx_ip_csum_offload},
          {"tx_l4_csum", f.tx_l4_csum_offload},
          {"rx_csum", f.rx_csum_offload},
          {"tso", f.tx_tso}}},
    };
    return json{{"ports", json::array({std::move(port)})}};
}

json to_json(const net::device_stats& s) {
    return json{
        {"rx_packets", s.rx_packets},
        {"rx_bytes", s.rx_bytes},
        {"tx_packets", s.tx_packets},
        {"tx_bytes", s.tx_bytes},
        {"rx_dropped", s.rx_dropped_runt + s.rx_dropped_bad_length + s.rx_dropped_chain + s.rx_dropped_no_handler +
                           s.rx_dropped_nomem + s.sw_rss_dropped},
        {"tx_dropped", s.tx_dropped},
        {"rx_dropped_runt", s.rx_dropped_runt},
        {"rx_dropped_bad_length", s.rx_dropped_bad_length},
        {"rx_dropped_chain", s.rx_dropped_chain},
        {"rx_dropped_no_handler", s.rx_dropped_no_handler},
        {"rx_dropped_nomem", s.rx_dropped_nomem},
        {"rx_hooked", s.rx_hooked},
        {"sw_rss_forwarded", s.sw_rss_forwarded},
        {"sw_rss_received", s.sw_rss_received},
        {"sw_rss_dropped", s.sw_rss_dropped},
        {"tx_proxied", s.tx_proxied},
        {"tx_blocked", s.tx_blocked},
    };
}

future<json> ports_stats(const json& params, const agent_config& cfg) {
    params_view p(params, "ports.stats");
    p.allow_only({"port", "hw"});
    auto& dev = need_device(cfg, "ports.stats");
    if (auto name = p.opt_string("port"); name && *name != dev.name()) {
        throw rpc_error(error_code::not_found,
                        fmt::format("ports.stats: no port '{}' (this dataplane has {})", *name, dev.name()));
    }
    bool hw = p.opt_boolean("hw").value_or(true);
    net::device* d = &dev;
    json shards = json::array();
    net::device_stats total;
    for (unsigned s = 0; s < smp::count; ++s) {
        auto f = smp::submit_to(s, [d] { return d->local_stats(); });
        auto st = co_await std::move(f);
        auto j = to_json(st);
        j["shard"] = s;
        shards.push_back(std::move(j));
        total.rx_packets += st.rx_packets;
        total.rx_bytes += st.rx_bytes;
        total.tx_packets += st.tx_packets;
        total.tx_bytes += st.tx_bytes;
        total.rx_dropped_runt += st.rx_dropped_runt;
        total.rx_dropped_bad_length += st.rx_dropped_bad_length;
        total.rx_dropped_chain += st.rx_dropped_chain;
        total.rx_dropped_no_handler += st.rx_dropped_no_handler;
        total.rx_dropped_nomem += st.rx_dropped_nomem;
        total.tx_dropped += st.tx_dropped;
        total.rx_hooked += st.rx_hooked;
        total.sw_rss_forwarded += st.sw_rss_forwarded;
        total.sw_rss_received += st.sw_rss_received;
        total.sw_rss_dropped += st.sw_rss_dropped;
        total.tx_proxied += st.tx_proxied;
        total.tx_blocked += st.tx_blocked;
    }
    json out = {{"port", dev.name()}, {"totals", to_json(total)}, {"shards", std::move(shards)}};
    if (hw && cfg.port_counters) {
        json h = json::object();
        for (auto& [n, v] : cfg.port_counters()) {
            h[n] = v;
        }
        out["hw"] = std::move(h);
    }
    co_return out;
}

// ------------------------------------------------------------------------------------------------
// metrics

json to_json(const std::vector<metrics::metric_family>& fams) {
    json out = json::array();
    for (auto& f : fams) {
        json samples = json::array();
        for (auto& s : f.samples) {
            json labels = json::object();
            for (auto& [n, v] : s.lbls) {
                labels[n] = v;
            }
            json j = {{"labels", std::move(labels)}};
            if (f.type == metrics::metric_type::histogram && s.value.hist) {
                auto& h = *s.value.hist;
                json buckets = json::array();
                for (std::size_t i = 0; i < h.bounds.size() && i < h.buckets.size(); ++i) {
                    buckets.push_back({{"le", h.bounds[i]}, {"count", h.buckets[i]}});
                }
                j["count"] = h.count;
                j["sum"] = h.sum;
                j["buckets"] = std::move(buckets);
            } else {
                j["value"] = s.value.value;
            }
            samples.push_back(std::move(j));
        }
        out.push_back({{"name", f.name},
                       {"type", metrics::to_string(f.type)},
                       {"help", f.help},
                       {"samples", std::move(samples)}});
    }
    return out;
}

future<json> metrics_get(const json& params) {
    params_view p(params, "metrics.get");
    p.allow_only({"prefix", "format"});
    auto prefix = p.opt_string("prefix").value_or("");
    auto format = p.opt_string("format").value_or("json");
    if (format != "json" && format != "prometheus") {
        throw rpc_error(error_code::invalid_params,
                        fmt::format("metrics.get: format '{}' is not json or prometheus", format));
    }
    auto f = metrics::collect(prefix);
    auto fams = co_await std::move(f);
    if (format == "prometheus") {
        co_return json{{"text", metrics::to_prometheus(fams)}};
    }
    co_return json{{"metrics", to_json(fams)}};
}

// ------------------------------------------------------------------------------------------------
// logging

json log_get(const json& params) {
    params_view p(params, "log.get");
    p.allow_only({"logger"});
    auto only = p.opt_string("logger");
    json out = json::array();
    for (auto& [name, level] : log_registry::list()) {
        if (!only || *only == name) {
            out.push_back({{"name", name}, {"level", to_string(level)}});
        }
    }
    if (only && out.empty()) {
        throw rpc_error(error_code::not_found, fmt::format("log.get: no logger '{}'", *only));
    }
    return json{{"loggers", std::move(out)}};
}

json log_set_level(const json& params) {
    params_view p(params, "log.set_level");
    p.allow_only({"logger", "level"});
    auto level_s = p.string("level");
    log_level level;
    try {
        level = parse_log_level(level_s);
    } catch (const std::invalid_argument&) {
        throw rpc_error(error_code::invalid_params,
                        fmt::format("log.set_level: level '{}' is not error, warn, info, debug or trace", level_s));
    }
    auto logger_name = p.opt_string("logger");
    if (!logger_name || *logger_name == "all" || *logger_name == "*") {
        log_registry::set_all(level);
    } else if (!log_registry::set_level(*logger_name, level)) {
        throw rpc_error(error_code::not_found, fmt::format("log.set_level: no logger '{}'", *logger_name));
    }
    json out = json::array();
    for (auto& [name, l] : log_registry::list()) {
        if (!logger_name || *logger_name == "all" || *logger_name == "*" || *logger_name == name) {
            out.push_back({{"name", name}, {"level", to_string(l)}});
        }
    }
    return json{{"loggers", std::move(out)}};
}

// ------------------------------------------------------------------------------------------------
// scheduling groups

future<json> sched_groups_list(const json& params) {
    params_view p(params, "sched.groups.list");
    p.allow_only({});
    auto groups = all_scheduling_groups();
    std::vector<unsigned> ids;
    for (auto sg : groups) {
        ids.push_back(sg.id());
    }
    // Per shard, the stats of every group shard 0 knows (groups exist on every shard).
    std::vector<std::vector<reactor::group_stats>> per_shard;
    for (unsigned s = 0; s < smp::count; ++s) {
        auto f = smp::submit_to(s, [ids] {
            std::vector<reactor::group_stats> v;
            for (auto id : ids) {
                v.push_back(engine().scheduling_group_exists(id) ? scheduling_group_stats(scheduling_group(id))
                                                                 : reactor::group_stats{});
            }
            return v;
        });
        per_shard.push_back(co_await std::move(f));
    }
    json out = json::array();
    for (std::size_t g = 0; g < ids.size(); ++g) {
        json shards = json::array();
        double runtime = 0;
        std::uint64_t tasks = 0;
        std::size_t queued = 0;
        for (unsigned s = 0; s < per_shard.size(); ++s) {
            auto& st = per_shard[s][g];
            runtime += seconds(st.runtime);
            tasks += st.tasks_processed;
            queued += st.queue_length;
            shards.push_back({{"shard", s},
                              {"runtime_s", seconds(st.runtime)},
                              {"tasks_processed", st.tasks_processed},
                              {"queue_length", st.queue_length},
                              {"longest_wait_ms", seconds(st.longest_wait) * 1000}});
        }
        out.push_back({{"name", per_shard[0][g].name},
                       {"id", ids[g]},
                       {"shares", per_shard[0][g].shares},
                       {"runtime_s", runtime},
                       {"tasks_processed", tasks},
                       {"queue_length", queued},
                       {"shards", std::move(shards)}});
    }
    co_return json{{"groups", std::move(out)}};
}

future<json> sched_groups_set(const json& params) {
    params_view p(params, "sched.groups.set");
    p.allow_only({"group", "shares"});
    auto name = p.string("group");
    auto shares = p.number("shares", 1, 1'000'000);
    auto sg = find_scheduling_group(name);
    if (!sg) {
        std::vector<std::string> names;
        for (auto g : all_scheduling_groups()) {
            names.push_back(scheduling_group_name(g));
        }
        throw rpc_error(error_code::not_found, fmt::format("sched.groups.set: no scheduling group '{}' (groups: {})",
                                                           name, fmt::join(names, ", ")));
    }
    auto f = set_scheduling_group_shares(*sg, float(shares));
    co_await std::move(f);
    co_return json{{"group", name}, {"shares", scheduling_group_shares(*sg)}};
}

// ------------------------------------------------------------------------------------------------
// disk I/O classes

future<json> io_classes_list(const json& params) {
    params_view p(params, "io.classes.list");
    p.allow_only({});
    auto f = io_class_stats_all();
    auto all = co_await std::move(f);
    json out = json::array();
    for (auto& c : all) {
        out.push_back({{"name", c.name},
                       {"shares", c.shares},
                       {"requests", c.requests},
                       {"reads", c.reads},
                       {"writes", c.writes},
                       {"read_bytes", c.read_bytes},
                       {"write_bytes", c.write_bytes},
                       {"bytes", c.read_bytes + c.write_bytes},
                       {"errors", c.errors},
                       {"queue_time_s", seconds(c.queue_time)},
                       {"exec_time_s", seconds(c.exec_time)},
                       {"queued", c.queued},
                       {"in_flight", c.in_flight}});
    }
    co_return json{{"classes", std::move(out)}};
}

json io_classes_set(const json& params) {
    params_view p(params, "io.classes.set");
    p.allow_only({"class", "shares"});
    auto name = p.string("class");
    auto shares = unsigned(p.integer("shares", 1, 1'000'000));
    auto pc = io_priority_class::find(name);
    if (!pc) {
        std::vector<std::string> names;
        for (auto c : io_priority_class::all()) {
            names.push_back(c.name());
        }
        throw rpc_error(error_code::not_found,
                        fmt::format("io.classes.set: no I/O class '{}' (classes: {})", name, fmt::join(names, ", ")));
    }
    pc->set_shares(shares);
    return json{{"class", name}, {"shares", pc->shares()}};
}

// ------------------------------------------------------------------------------------------------
// everything else

json runtime_status(const json& params, const agent_config& cfg) {
    params_view p(params, "runtime.status");
    p.allow_only({});
    return json{
        {"app", cfg.app_name},
        {"pid", ::getpid()},
        {"uptime_s", seconds(steady_clock_type::now() - engine().start_time())},
        {"shards", smp::count},
        {"stack", cfg.stack_name},
        {"port", cfg.device ? json(std::string(cfg.device->name())) : json(nullptr)},
        {"state", engine().stopping() ? "stopping" : "running"},
        {"ctl_socket", agent_socket_path()},
        {"build", REEF_VERSION},
        {"protocol", protocol_version},
        {"app_methods", app_methods()},
    };
}

// One shard's TCP table, copied on that shard (snapshots hold no references into its TCP).
std::vector<net::tcp_connection_snapshot> local_connections() {
    auto* ns = dynamic_cast<net::native_stack*>(net::has_local_stack() ? &net::local_stack() : nullptr);
    return ns ? ns->tcp().connections() : std::vector<net::tcp_connection_snapshot>{};
}

json to_json(unsigned shard, const net::tcp_connection_snapshot& c) {
    auto us = [](std::chrono::microseconds d) { return std::int64_t(d.count()); };
    const auto& i = c.info;
    return json{
        {"shard", shard},
        {"local", c.local.to_string()},
        {"remote", c.remote.to_string()},
        {"state", i.state},
        {"send_queued", i.send_queued},
        {"recv_queued", i.recv_queued},
        {"mss", i.mss},
        {"cwnd", i.cwnd},
        {"ssthresh", i.ssthresh},
        {"srtt_us", us(i.srtt)},
        {"rto_us", us(i.rto)},
        {"snd_wnd", i.snd_wnd},
        {"rcv_wnd", i.rcv_wnd},
        {"snd_wscale", i.snd_wscale},
        {"rcv_wscale", i.rcv_wscale},
        {"sack", i.sack},
        {"timestamps", i.timestamps},
        {"window_scaling", i.wscale},
        {"congestion", i.congestion == net::tcp_congestion_algorithm::cubic ? "cubic" : "newreno"},
        {"retransmits", i.retransmits},
        {"rto_expirations", i.rto_expirations},
        {"bytes_acked", i.bytes_acked},
        {"bytes_received", i.bytes_received},
        {"zero_window_probes", i.zero_window_probes},
    };
}

future<json> stack_connections(const json& params, const agent_config& cfg) {
    params_view p(params, "stack.connections");
    p.allow_only({"shard", "state"});
    if (cfg.stack_name != "native") {
        throw rpc_error(error_code::unsupported,
                        fmt::format("stack.connections lists the native stack's TCP table; this dataplane runs "
                                    "the {} stack, whose connections the kernel lists (ss -tnp)",
                                    cfg.stack_name));
    }
    auto state = p.opt_string("state");
    std::vector<std::string_view> states;
    for (auto st : net::tcp_connection_states) {
        states.emplace_back(net::tcp_state_name(st));
    }
    if (state && std::find(states.begin(), states.end(), *state) == states.end()) {
        throw rpc_error(error_code::invalid_params, fmt::format("stack.connections: unknown state '{}' (states: {})",
                                                                *state, fmt::join(states, ", ")));
    }
    auto which = shards_of(p);
    json out = json::array();
    for (auto s : which) {
        auto f = smp::submit_to(s, [] { return local_connections(); });
        auto conns = co_await std::move(f);
        for (auto& c : conns) {
            if (!state || *state == c.info.state) {
                out.push_back(to_json(s, c));
            }
        }
    }
    auto n = out.size();
    co_return json{{"connections", std::move(out)}, {"count", n}};
}

const std::vector<std::string>& builtin_names() {
    static const std::vector<std::string> n = {
        "io.classes.list",   "io.classes.set",   "log.get",      "log.set_level", "metrics.get",
        "ports.list",        "ports.stats",      "reef.methods", "reef.version",  "runtime.status",
        "sched.groups.list", "sched.groups.set", "shards.list",  "shards.set",    "stack.connections",
    };
    return n;
}

thread_local std::unique_ptr<metrics::metric_groups> agent_metrics;

}  // namespace

std::vector<std::string> agent_methods::names() {
    auto n = builtin_names();
    std::sort(n.begin(), n.end());
    return n;
}

future<json> agent_methods::call(const std::string& method, const json& params) {
    if (method == "reef.version") {
        params_view(params, method).allow_only({});
        co_return json{
            {"protocol", protocol_version}, {"build", REEF_VERSION}, {"server", "reef-agent"}, {"app", _cfg.app_name}};
    }
    if (method == "reef.methods") {
        params_view(params, method).allow_only({});
        auto all = names();
        for (auto& a : app_methods()) {
            all.push_back(a);
        }
        co_return json{{"methods", all}};
    }
    if (method == "runtime.status") {
        co_return runtime_status(params, _cfg);
    }
    if (method == "shards.list") {
        auto f = shards_list(params);
        co_return co_await std::move(f);
    }
    if (method == "shards.set") {
        auto f = shards_set(params, _cfg);
        co_return co_await std::move(f);
    }
    if (method == "ports.list") {
        co_return ports_list(params, _cfg);
    }
    if (method == "ports.stats") {
        auto f = ports_stats(params, _cfg);
        co_return co_await std::move(f);
    }
    if (method == "metrics.get") {
        auto f = metrics_get(params);
        co_return co_await std::move(f);
    }
    if (method == "log.get") {
        co_return log_get(params);
    }
    if (method == "log.set_level") {
        co_return log_set_level(params);
    }
    if (method == "sched.groups.list") {
        auto f = sched_groups_list(params);
        co_return co_await std::move(f);
    }
    if (method == "sched.groups.set") {
        auto f = sched_groups_set(params);
        co_return co_await std::move(f);
    }
    if (method == "io.classes.list") {
        auto f = io_classes_list(params);
        co_return co_await std::move(f);
    }
    if (method == "io.classes.set") {
        co_return io_classes_set(params);
    }
    if (method == "stack.connections") {
        auto f = stack_connections(params, _cfg);
        co_return co_await std::move(f);
    }
    throw rpc_error(error_code::method_not_found, fmt::format("method not found: {}", method));
}

future<> start_agent_metrics(net::device* dev) {
    co_await metrics::register_runtime_metrics();
    co_await smp::invoke_on_all([dev] {
        auto mg = std::make_unique<metrics::metric_groups>();
        if (net::has_local_stack()) {
            auto* st = &net::local_stack().stats();
            auto c = [st](auto field) { return [st, field] { return double(st->*field); }; };
            using S = net::stack_stats;
            metrics::labels l{{"stack", std::string(net::local_stack().name())}};
            mg->add_group(
                "reef_net",
                {
                    metrics::make_counter("connections_accepted_total", "TCP connections accepted",
                                          c(&S::connections_accepted), l),
                    metrics::make_counter("connections_connected_total", "TCP connections made",
                                          c(&S::connections_connected), l),
                    metrics::make_counter("connections_closed_total", "TCP connections closed",
                                          c(&S::connections_closed), l),
                    metrics::make_counter("connections_failed_total", "Connect errors and resets",
                                          c(&S::connections_failed), l),
                    metrics::make_counter("received_bytes_total", "Stream bytes received", c(&S::bytes_received), l),
                    metrics::make_counter("sent_bytes_total", "Stream bytes sent", c(&S::bytes_sent), l),
                    metrics::make_counter("datagrams_received_total", "UDP datagrams received",
                                          c(&S::datagrams_received), l),
                    metrics::make_counter("datagrams_sent_total", "UDP datagrams sent", c(&S::datagrams_sent), l),
                    metrics::make_counter("datagrams_truncated_total", "UDP datagrams cut to the receive size",
                                          c(&S::datagrams_truncated), l),
                });
        }
        // Disk I/O classes come and go (created at run time): label sets produced at collection.
        auto per_class = [](auto value) {
            return [value] {
                std::vector<std::pair<metrics::labels, metrics::metric_value>> out;
                for (auto& c : io_class_stats_local()) {
                    out.emplace_back(metrics::labels{{"class", c.name}}, metrics::metric_value{value(c), {}});
                }
                return out;
            };
        };
        using C = io_class_stats;
        mg->add_group(
            "reef_io",
            {
                metrics::make_dynamic("requests_total", "Completed disk requests", metrics::metric_type::counter,
                                      per_class([](const C& c) { return double(c.requests); })),
                metrics::make_dynamic("read_bytes_total", "Bytes read from disk", metrics::metric_type::counter,
                                      per_class([](const C& c) { return double(c.read_bytes); })),
                metrics::make_dynamic("write_bytes_total", "Bytes written to disk", metrics::metric_type::counter,
                                      per_class([](const C& c) { return double(c.write_bytes); })),
                metrics::make_dynamic("errors_total", "Disk requests that failed", metrics::metric_type::counter,
                                      per_class([](const C& c) { return double(c.errors); })),
                metrics::make_dynamic("queue_seconds_total", "Time requests waited in the I/O scheduler",
                                      metrics::metric_type::counter,
                                      per_class([](const C& c) { return seconds(c.queue_time); })),
                metrics::make_dynamic("queued", "Requests waiting in the I/O scheduler now",
                                      metrics::metric_type::gauge,
                                      per_class([](const C& c) { return double(c.queued); })),
                metrics::make_dynamic("in_flight", "Requests at the disk now", metrics::metric_type::gauge,
                                      per_class([](const C& c) { return double(c.in_flight); })),
                metrics::make_dynamic("shares", "The class's shares", metrics::metric_type::gauge,
                                      per_class([](const C& c) { return double(c.shares); })),
            });
        if (dev) {
            auto* ds = &dev->local_stats();
            auto c = [ds](auto field) { return [ds, field] { return double(ds->*field); }; };
            using D = net::device_stats;
            metrics::labels l{{"port", std::string(dev->name())}};
            mg->add_group(
                "reef_port",
                {
                    metrics::make_counter("rx_packets_total", "Frames received", c(&D::rx_packets), l),
                    metrics::make_counter("rx_bytes_total", "Bytes received", c(&D::rx_bytes), l),
                    metrics::make_counter("tx_packets_total", "Frames sent", c(&D::tx_packets), l),
                    metrics::make_counter("tx_bytes_total", "Bytes sent", c(&D::tx_bytes), l),
                    metrics::make_counter("tx_dropped_total", "Frames dropped on send (ring full, too large)",
                                          c(&D::tx_dropped), l),
                    metrics::make_counter(
                        "rx_dropped_total", "Frames dropped on receive (malformed, no memory)",
                        [ds] {
                            return double(ds->rx_dropped_runt + ds->rx_dropped_bad_length + ds->rx_dropped_chain +
                                          ds->rx_dropped_no_handler + ds->rx_dropped_nomem);
                        },
                        l),
                    metrics::make_counter("rx_hooked_total", "Frames consumed by the packet hook", c(&D::rx_hooked), l),
                    metrics::make_counter("sw_rss_forwarded_total", "Frames polled here and sent to their owner shard",
                                          c(&D::sw_rss_forwarded), l),
                    metrics::make_counter("sw_rss_received_total", "Frames other shards forwarded here",
                                          c(&D::sw_rss_received), l),
                    metrics::make_counter("sw_rss_dropped_total", "Frames dropped: too many in flight to the owner",
                                          c(&D::sw_rss_dropped), l),
                });
        }
        agent_metrics = std::move(mg);
    });
}

future<> stop_agent_metrics() {
    co_await smp::invoke_on_all([] { agent_metrics.reset(); });
}

}  // namespace reef::ctl
