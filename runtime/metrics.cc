#include "runtime/metrics.hh"

#include "runtime/coroutine.hh"
#include "runtime/memory.hh"
#include "runtime/reactor.hh"
#include "runtime/scheduling.hh"
#include "runtime/smp.hh"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

namespace reef::metrics {

std::string_view to_string(metric_type t) noexcept {
    switch (t) {
    case metric_type::counter: return "counter";
    case metric_type::gauge: return "gauge";
    case metric_type::histogram: return "histogram";
    }
    return "untyped";
}

// ------------------------------------------------------------------------------------------------
// histogram

histogram::histogram(std::vector<double> upper_bounds) : _bounds(std::move(upper_bounds)) {
    if (_bounds.empty()) {
        throw std::invalid_argument("histogram: no bucket bounds");
    }
    for (std::size_t i = 0; i < _bounds.size(); ++i) {
        if (!std::isfinite(_bounds[i])) {
            throw std::invalid_argument(fmt::format("histogram: bucket bound {} is not finite", _bounds[i]));
        }
        if (i > 0 && !(_bounds[i] > _bounds[i - 1])) {
            throw std::invalid_argument(
                fmt::format("histogram: bucket bounds not ascending ({} after {})", _bounds[i], _bounds[i - 1]));
        }
    }
    _counts.assign(_bounds.size() + 1, 0);
}

void histogram::observe(double v) noexcept {
    if (std::isnan(v)) [[unlikely]] {
        // Counted, but kept out of the sum: one NaN would make every later sum NaN.
        ++_counts.back();
        return;
    }
    auto it = std::lower_bound(_bounds.begin(), _bounds.end(), v);
    ++_counts[std::size_t(it - _bounds.begin())];
    _sum += v;
}

histogram_value histogram::value() const {
    histogram_value hv;
    hv.bounds = _bounds;
    hv.buckets.resize(_bounds.size());
    std::uint64_t acc = 0;
    for (std::size_t i = 0; i < _bounds.size(); ++i) {
        acc += _counts[i];
        hv.buckets[i] = acc;
    }
    hv.count = acc + _counts.back();
    hv.sum = _sum;
    return hv;
}

std::vector<double> exponential_buckets(double start, double factor, unsigned count) {
    if (!(start > 0) || !(factor > 1) || count == 0) {
        throw std::invalid_argument(fmt::format(
            "exponential_buckets: need start > 0, factor > 1, count > 0 (got {}, {}, {})", start, factor, count));
    }
    std::vector<double> b(count);
    double v = start;
    for (auto& x : b) {
        x = v;
        v *= factor;
    }
    return b;
}

std::vector<double> linear_buckets(double start, double width, unsigned count) {
    if (!(width > 0) || count == 0) {
        throw std::invalid_argument(
            fmt::format("linear_buckets: need width > 0, count > 0 (got {}, {})", width, count));
    }
    std::vector<double> b(count);
    for (unsigned i = 0; i < count; ++i) {
        b[i] = start + width * i;
    }
    return b;
}

// ------------------------------------------------------------------------------------------------
// definitions

metric_definition make_counter(std::string name, std::string help, std::function<double()> fn, labels l) {
    return metric_definition{std::move(name),
                             std::move(help),
                             metric_type::counter,
                             std::move(l),
                             [fn = std::move(fn)] {
                                 return metric_value{fn(), {}};
                             },
                             {}};
}

metric_definition make_gauge(std::string name, std::string help, std::function<double()> fn, labels l) {
    return metric_definition{std::move(name),
                             std::move(help),
                             metric_type::gauge,
                             std::move(l),
                             [fn = std::move(fn)] {
                                 return metric_value{fn(), {}};
                             },
                             {}};
}

metric_definition make_histogram(std::string name, std::string help, const histogram& h, labels l) {
    return make_histogram(
        std::move(name), std::move(help), [p = &h] { return p->value(); }, std::move(l));
}

metric_definition make_histogram(std::string name, std::string help, std::function<histogram_value()> fn, labels l) {
    return metric_definition{std::move(name),
                             std::move(help),
                             metric_type::histogram,
                             std::move(l),
                             [fn = std::move(fn)] {
                                 return metric_value{0, fn()};
                             },
                             {}};
}

metric_definition make_dynamic(std::string name, std::string help, metric_type type,
                               std::function<std::vector<std::pair<labels, metric_value>>()> fn) {
    return metric_definition{std::move(name), std::move(help), type, {}, {}, std::move(fn)};
}

// ------------------------------------------------------------------------------------------------
// the per-shard registry

namespace {

bool valid_metric_name(std::string_view n) noexcept {
    if (n.empty()) {
        return false;
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
        char c = n[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
        if (!ok) {
            return false;
        }
    }
    return true;
}

bool valid_label_name(std::string_view n) noexcept {
    if (n.empty() || n.starts_with("__")) {
        return false;
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
        char c = n[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
        if (!ok) {
            return false;
        }
    }
    return true;
}

// Sorts `l` by name and checks the names; throws std::invalid_argument naming the metric.
void normalize_labels(const std::string& metric, metric_type type, labels& l) {
    std::sort(l.begin(), l.end());
    for (std::size_t i = 0; i < l.size(); ++i) {
        const auto& name = l[i].first;
        if (!valid_label_name(name)) {
            throw std::invalid_argument(fmt::format("metric {}: invalid label name '{}'", metric, name));
        }
        if (name == "shard") {
            throw std::invalid_argument(
                fmt::format("metric {}: label 'shard' is reserved (added automatically)", metric));
        }
        if (type == metric_type::histogram && name == "le") {
            throw std::invalid_argument(fmt::format("metric {}: label 'le' is reserved for histogram buckets", metric));
        }
        if (i > 0 && l[i - 1].first == name) {
            throw std::invalid_argument(fmt::format("metric {}: label '{}' given twice", metric, name));
        }
    }
}

struct entry {
    std::string name;
    metric_definition def;
};

struct family_info {
    metric_type type;
    std::string help;
    std::size_t users = 0;
};

struct registry {
    std::uint64_t next_id = 1;
    std::map<std::uint64_t, entry> entries;
    std::map<std::string, family_info, std::less<>> families;
    std::set<std::pair<std::string, labels>> keys;  // static label sets, for duplicate detection
};

// A registry per thread: each shard's metrics are touched only by that shard.
registry& local_registry() {
    static thread_local registry r;
    return r;
}

labels with_shard(const labels& l, unsigned shard) {
    labels out;
    out.reserve(l.size() + 1);
    out = l;
    out.emplace_back("shard", std::to_string(shard));
    std::sort(out.begin(), out.end());
    return out;
}

// Orders samples by their labels, comparing the shard label as a number so shard 10 follows 9.
bool sample_less(const sample& a, const sample& b) {
    auto key = [](const labels& l) {
        std::vector<std::pair<std::string, std::string>> k;
        long shard = -1;
        for (auto& [n, v] : l) {
            if (n == "shard") {
                std::from_chars(v.data(), v.data() + v.size(), shard);
            } else {
                k.emplace_back(n, v);
            }
        }
        return std::make_pair(std::move(k), shard);
    };
    return key(a.lbls) < key(b.lbls);
}

}  // namespace

metric_groups::metric_groups(metric_groups&& o) noexcept : _ids(std::move(o._ids)), _shard(o._shard) {
    o._ids.clear();
    o._shard = -1;
}

metric_groups& metric_groups::operator=(metric_groups&& o) noexcept {
    if (this != &o) {
        clear();
        _ids = std::move(o._ids);
        _shard = o._shard;
        o._ids.clear();
        o._shard = -1;
    }
    return *this;
}

metric_groups& metric_groups::add_group(std::string_view group, std::vector<metric_definition> defs) {
    int shard = engine_is_ready() ? int(this_shard_id()) : 0;
    if (_shard >= 0 && _shard != shard && !_ids.empty()) {
        throw std::logic_error("metric_groups: add_group() on another shard than earlier calls");
    }
    auto& reg = local_registry();
    // Validate the whole group first, so a bad definition registers nothing.
    std::vector<entry> staged;
    std::set<std::pair<std::string, labels>> new_keys;
    std::map<std::string, std::pair<metric_type, std::string>> new_families;
    for (auto& d : defs) {
        std::string full = group.empty() ? d.name : fmt::format("{}_{}", group, d.name);
        if (!valid_metric_name(full)) {
            throw std::invalid_argument(fmt::format("invalid metric name '{}'", full));
        }
        if (!d.read && !d.read_many) {
            throw std::invalid_argument(fmt::format("metric {}: no read function", full));
        }
        normalize_labels(full, d.type, d.extra_labels);
        auto check_family = [&](metric_type t, const std::string& help) {
            if (t != d.type || help != d.help) {
                throw std::invalid_argument(
                    fmt::format("metric {}: already registered as a {} with help '{}' (now a {} with help '{}')", full,
                                to_string(t), help, to_string(d.type), d.help));
            }
        };
        if (auto it = reg.families.find(full); it != reg.families.end()) {
            check_family(it->second.type, it->second.help);
        }
        if (auto it = new_families.find(full); it != new_families.end()) {
            check_family(it->second.first, it->second.second);
        }
        new_families.emplace(full, std::make_pair(d.type, d.help));
        if (d.read) {
            auto key = std::make_pair(full, d.extra_labels);
            if (reg.keys.count(key) || !new_keys.insert(key).second) {
                throw std::invalid_argument(fmt::format("metric {}{} is already registered on shard {}", full,
                                                        d.extra_labels.empty() ? "" : " with these labels", shard));
            }
        }
        staged.push_back(entry{std::move(full), std::move(d)});
    }
    _shard = shard;
    _ids.reserve(_ids.size() + staged.size());
    for (auto& e : staged) {
        auto& fam = reg.families[e.name];
        if (fam.users == 0) {
            fam.type = e.def.type;
            fam.help = e.def.help;
        }
        ++fam.users;
        if (e.def.read) {
            reg.keys.emplace(e.name, e.def.extra_labels);
        }
        auto id = reg.next_id++;
        reg.entries.emplace(id, std::move(e));
        _ids.push_back(id);
    }
    return *this;
}

void metric_groups::clear() noexcept {
    if (_ids.empty()) {
        return;
    }
    auto& reg = local_registry();
    for (auto id : _ids) {
        auto it = reg.entries.find(id);
        if (it == reg.entries.end()) {
            continue;
        }
        auto& e = it->second;
        if (e.def.read) {
            reg.keys.erase(std::make_pair(e.name, e.def.extra_labels));
        }
        if (auto f = reg.families.find(e.name); f != reg.families.end() && --f->second.users == 0) {
            reg.families.erase(f);
        }
        reg.entries.erase(it);
    }
    _ids.clear();
}

// ------------------------------------------------------------------------------------------------
// collection

std::vector<metric_family> collect_local(std::string_view prefix) {
    auto& reg = local_registry();
    unsigned shard = engine_is_ready() ? this_shard_id() : 0;
    std::map<std::string_view, metric_family> fams;
    for (auto& [id, e] : reg.entries) {
        if (!e.name.starts_with(prefix)) {
            continue;
        }
        auto& fam = fams[e.name];
        if (fam.name.empty()) {
            fam.name = e.name;
            fam.help = e.def.help;
            fam.type = e.def.type;
        }
        if (e.def.read) {
            fam.samples.push_back(sample{with_shard(e.def.extra_labels, shard), e.def.read()});
        } else {
            for (auto& [l, v] : e.def.read_many()) {
                normalize_labels(e.name, e.def.type, l);
                fam.samples.push_back(sample{with_shard(l, shard), std::move(v)});
            }
        }
    }
    std::vector<metric_family> out;
    out.reserve(fams.size());
    for (auto& [n, f] : fams) {
        std::sort(f.samples.begin(), f.samples.end(), sample_less);
        for (std::size_t i = 1; i < f.samples.size(); ++i) {
            if (f.samples[i].lbls == f.samples[i - 1].lbls) {
                throw std::invalid_argument(fmt::format("metric {}: two samples with the same labels", f.name));
            }
        }
        out.push_back(std::move(f));
    }
    return out;
}

future<std::vector<metric_family>> collect(std::string prefix) {
    std::vector<future<std::vector<metric_family>>> parts;
    parts.reserve(smp::count);
    for (unsigned s = 0; s < smp::count; ++s) {
        parts.push_back(smp::submit_to(s, [prefix] { return collect_local(prefix); }));
    }
    std::map<std::string, metric_family> merged;
    std::exception_ptr ex;
    for (auto& f : parts) {
        std::vector<metric_family> part;
        try {
            part = co_await std::move(f);
        } catch (...) {
            if (!ex) {
                ex = std::current_exception();
            }
            continue;
        }
        for (auto& fam : part) {
            auto [it, inserted] = merged.try_emplace(fam.name);
            if (inserted) {
                it->second = std::move(fam);
                continue;
            }
            if (it->second.type != fam.type) {
                continue;
            }
            for (auto& s : fam.samples) {
                it->second.samples.push_back(std::move(s));
            }
        }
    }
    if (ex) {
        std::rethrow_exception(ex);
    }
    std::vector<metric_family> out;
    out.reserve(merged.size());
    for (auto& [n, f] : merged) {
        std::stable_sort(f.samples.begin(), f.samples.end(), sample_less);
        out.push_back(std::move(f));
    }
    co_return out;
}

// ------------------------------------------------------------------------------------------------
// Prometheus text format

namespace {

void append_escaped(std::string& out, std::string_view s, bool quote) {
    for (char c : s) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '"':
            if (quote) {
                out += "\\\"";
            } else {
                out += c;
            }
            break;
        default: out += c;
        }
    }
}

std::string format_value(double v) {
    if (std::isnan(v)) {
        return "NaN";
    }
    if (std::isinf(v)) {
        return v > 0 ? "+Inf" : "-Inf";
    }
    // Integral values (counts, bytes) print without an exponent up to 2^53.
    if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
        return fmt::format("{}", static_cast<std::int64_t>(v));
    }
    return fmt::format("{}", v);
}

void append_labels(std::string& out, const labels& l, const std::pair<std::string, std::string>* extra) {
    if (l.empty() && !extra) {
        return;
    }
    out += '{';
    bool first = true;
    auto one = [&](const std::string& n, const std::string& v) {
        if (!first) {
            out += ',';
        }
        first = false;
        out += n;
        out += "=\"";
        append_escaped(out, v, true);
        out += '"';
    };
    for (auto& [n, v] : l) {
        one(n, v);
    }
    if (extra) {
        one(extra->first, extra->second);
    }
    out += '}';
}

}  // namespace

std::string to_prometheus(const std::vector<metric_family>& families) {
    std::string out;
    for (auto& f : families) {
        out += "# HELP ";
        out += f.name;
        out += ' ';
        append_escaped(out, f.help, false);
        out += "\n# TYPE ";
        out += f.name;
        out += ' ';
        out += to_string(f.type);
        out += '\n';
        for (auto& s : f.samples) {
            if (f.type != metric_type::histogram) {
                out += f.name;
                append_labels(out, s.lbls, nullptr);
                out += ' ';
                out += format_value(s.value.value);
                out += '\n';
                continue;
            }
            histogram_value empty;
            const histogram_value& h = s.value.hist ? *s.value.hist : empty;
            for (std::size_t i = 0; i < h.bounds.size() && i < h.buckets.size(); ++i) {
                std::pair<std::string, std::string> le{"le", format_value(h.bounds[i])};
                out += f.name;
                out += "_bucket";
                append_labels(out, s.lbls, &le);
                out += ' ';
                out += format_value(double(h.buckets[i]));
                out += '\n';
            }
            std::pair<std::string, std::string> inf{"le", "+Inf"};
            out += f.name;
            out += "_bucket";
            append_labels(out, s.lbls, &inf);
            out += ' ';
            out += format_value(double(h.count));
            out += '\n';
            out += f.name;
            out += "_sum";
            append_labels(out, s.lbls, nullptr);
            out += ' ';
            out += format_value(h.sum);
            out += '\n';
            out += f.name;
            out += "_count";
            append_labels(out, s.lbls, nullptr);
            out += ' ';
            out += format_value(double(h.count));
            out += '\n';
        }
    }
    return out;
}

// ------------------------------------------------------------------------------------------------
// the runtime's own metrics

namespace {

thread_local std::unique_ptr<metric_groups> runtime_metrics;
bool runtime_metrics_started = false;  // shard 0 only

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

void register_reactor_metrics(metric_groups& mg) {
    auto st = [] { return engine().get_stats(); };
    mg.add_group(
        "reef_reactor",
        {
            make_counter("tasks_processed_total", "Tasks run by the reactor",
                         [st] { return double(st().tasks_processed); }),
            make_counter("polls_total", "Reactor poll rounds", [st] { return double(st().polls); }),
            make_counter("sleeps_total", "Times the reactor went to sleep", [st] { return double(st().sleeps); }),
            make_counter("timers_fired_total", "Timers expired", [st] { return double(st().timers_fired); }),
            make_counter("stalls_total", "Task batches that ran past the stall threshold",
                         [st] { return double(st().stalls); }),
            make_counter("task_quota_violations_total", "Task batches that ran past twice the task quota",
                         [st] { return double(st().quota_violations); }),
            make_counter("idle_seconds_total", "Time the reactor spent asleep",
                         [st] { return seconds(st().idle_time); }),
            make_counter("empty_poll_seconds_total", "Time the reactor spent polling and finding nothing",
                         [st] { return seconds(st().idle_poll_time); }),
            make_counter("fd_polls_total", "Non-blocking epoll_wait calls for registered descriptors",
                         [st] { return double(st().fd_polls); }),
            make_counter("fd_events_total", "Readiness events delivered to descriptors",
                         [st] { return double(st().fd_events); }),
            make_counter("wakeups_total", "Wake-ups of the sleeping reactor through its eventfd",
                         [] { return double(engine().wakeup_writes()); }),
            make_gauge("uptime_seconds", "Time since the reactor started",
                       [] { return seconds(steady_clock_type::now() - engine().start_time()); }),
            make_gauge("task_quota_seconds", "Longest task batch before polling",
                       [] { return seconds(engine().config().task_quota); }),
            make_gauge("idle_poll_seconds", "Polling time before sleeping (adaptive idle policy)",
                       [] { return seconds(engine().config().idle_poll); }),
        });
}

void register_scheduler_metrics(metric_groups& mg) {
    // Groups come and go at run time, so their label sets are produced at collection.
    auto per_group = [](auto value) {
        return [value] {
            std::vector<std::pair<labels, metric_value>> out;
            for (auto sg : all_scheduling_groups()) {
                auto gs = scheduling_group_stats(sg);
                out.emplace_back(labels{{"group", gs.name}}, metric_value{value(gs), {}});
            }
            return out;
        };
    };
    using gs_t = reactor::group_stats;
    mg.add_group("reef_scheduler",
                 {
                     make_dynamic("runtime_seconds_total", "CPU time spent running the group's tasks",
                                  metric_type::counter, per_group([](const gs_t& g) { return seconds(g.runtime); })),
                     make_dynamic("tasks_processed_total", "Tasks run in the group", metric_type::counter,
                                  per_group([](const gs_t& g) { return double(g.tasks_processed); })),
                     make_dynamic("queue_length", "Tasks of the group waiting to run", metric_type::gauge,
                                  per_group([](const gs_t& g) { return double(g.queue_length); })),
                     make_dynamic("shares", "The group's CPU shares", metric_type::gauge,
                                  per_group([](const gs_t& g) { return double(g.shares); })),
                     make_dynamic("longest_wait_seconds", "Longest time the group waited for the CPU",
                                  metric_type::gauge, per_group([](const gs_t& g) { return seconds(g.longest_wait); })),
                 });
}

void register_smp_metrics(metric_groups& mg) {
    if (smp::count < 2) {
        return;
    }
    // Each shard reports the counters it writes itself: the sending side of its outgoing queues,
    // the receiving side of its incoming ones.
    std::vector<metric_definition> defs;
    unsigned self = this_shard_id();
    for (unsigned other = 0; other < smp::count; ++other) {
        if (other == self) {
            continue;
        }
        auto* out = &smp::queue(self, other);
        auto* in = &smp::queue(other, self);
        auto to = labels{{"to", std::to_string(other)}};
        auto from = labels{{"from", std::to_string(other)}};
        defs.push_back(make_counter(
            "messages_sent_total", "Cross-shard requests sent, by destination shard",
            [out] { return double(out->get_stats().sent); }, to));
        defs.push_back(make_counter(
            "messages_completed_total", "Responses to cross-shard requests processed, by destination shard",
            [out] { return double(out->get_stats().completed); }, to));
        defs.push_back(make_counter(
            "messages_blocked_total", "Cross-shard requests that waited for ring room, by destination shard",
            [out] { return double(out->get_stats().blocked); }, to));
        defs.push_back(make_counter(
            "messages_received_total", "Cross-shard requests run here, by source shard",
            [in] { return double(in->get_stats().received); }, from));
    }
    mg.add_group("reef_smp", std::move(defs));
}

void register_memory_metrics(metric_groups& mg) {
    auto m = [](auto field) { return [field] { return double(memory::stats().*field); }; };
    using S = memory::statistics;
    mg.add_group(
        "reef_memory",
        {
            make_gauge("allocated_bytes", "Bytes in live blocks", m(&S::allocated)),
            make_gauge("free_cached_bytes", "Free bytes kept for reuse", m(&S::free_cached)),
            make_gauge("in_use_bytes", "Bytes charged against the shard's budget", m(&S::in_use)),
            make_gauge("budget_bytes", "The shard's memory budget (0: unlimited)", m(&S::budget)),
            make_counter("cross_shard_frees_total", "Blocks freed by other shards and taken back",
                         m(&S::cross_shard_frees)),
            make_counter("remote_frees_sent_total", "Blocks of other shards freed here", m(&S::remote_frees_sent)),
            make_counter("large_allocations_total", "Allocations above the largest size class",
                         m(&S::large_allocations)),
            make_counter("reclaims_total", "Reclaimer calls made under budget pressure", m(&S::reclaims)),
            make_counter("reclaimed_bytes_total", "Bytes the reclaimers freed", m(&S::reclaimed_bytes)),
            make_counter("failed_allocations_total", "Allocations refused (budget or system)",
                         m(&S::failed_allocations)),
        });
}

}  // namespace

future<> register_runtime_metrics() {
    if (runtime_metrics_started) {
        co_return;
    }
    runtime_metrics_started = true;
    co_await smp::invoke_on_all([] {
        runtime_metrics = std::make_unique<metric_groups>();
        register_reactor_metrics(*runtime_metrics);
        register_scheduler_metrics(*runtime_metrics);
        register_smp_metrics(*runtime_metrics);
        register_memory_metrics(*runtime_metrics);
        engine().at_exit([]() -> future<> {
            runtime_metrics.reset();
            if (this_shard_id() == 0) {
                runtime_metrics_started = false;
            }
            return make_ready_future<>();
        });
    });
}

}  // namespace reef::metrics
