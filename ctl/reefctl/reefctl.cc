// reefctl: the command line of the control plane. Talks to reefd (default socket
// /run/reef/reefd.sock), which routes dataplane commands to the named dataplane through `call`,
// or with --socket straight to a dataplane's agent (NAME is then ignored; write "-").
//
// Output: tables for people, --json for scripts (the method's result as is). --watch N repeats
// the command every N seconds until interrupted.
// Exit codes: 0 ok, 1 the server answered with an error (its message is printed), 2 usage error
// (CLI11's message), 3 cannot connect (the socket and the reason are printed).
#include "ctl/protocol/protocol.hh"

#include <CLI/CLI.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

namespace {

using reef::ctl::json;
using reef::ctl::rpc_error;

constexpr int exit_remote = 1;
constexpr int exit_usage = 2;
constexpr int exit_connect = 3;

struct connect_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A blocking JSON-RPC client on a unix socket, with a timeout per request.
class client {
    std::string _path;
    int _fd = -1;
    int _timeout_ms;
    std::string _buf;
    std::int64_t _next_id = 1;

public:
    client(std::string path, int timeout_ms) : _path(std::move(path)), _timeout_ms(timeout_ms) {}
    ~client() {
        if (_fd >= 0) {
            ::close(_fd);
        }
    }

    const std::string& path() const noexcept { return _path; }

    void connect() {
        ::sockaddr_un sun{};
        if (_path.size() >= sizeof(sun.sun_path)) {
            throw connect_error("cannot connect to " + _path + ": path too long");
        }
        _fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (_fd < 0) {
            throw connect_error("cannot connect to " + _path + ": " + std::strerror(errno));
        }
        sun.sun_family = AF_UNIX;
        std::copy(_path.begin(), _path.end(), sun.sun_path);
        if (::connect(_fd, reinterpret_cast<::sockaddr*>(&sun), sizeof(sun)) != 0) {
            int e = errno;
            std::string hint = e == ENOENT || e == ECONNREFUSED ? " (is reefd or the dataplane running?)"
                               : e == EACCES                    ? " (root or the socket's group may connect)"
                                                                : "";
            throw connect_error("cannot connect to " + _path + ": " + std::strerror(e) + hint);
        }
    }

    json call(const std::string& method, const json& params) {
        if (_fd < 0) {
            connect();
        }
        std::string line = reef::ctl::to_line(reef::ctl::make_request(_next_id++, method, params));
        std::size_t off = 0;
        while (off < line.size()) {
            auto n = ::send(_fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                int e = errno;
                // The server may have answered and closed before reading the request (a refused
                // peer gets one error line): read that answer if there is one.
                if (e == EPIPE || e == ECONNRESET) {
                    try {
                        auto early = reef::ctl::parse_response(read_line());
                        if (early.error) {
                            throw *early.error;
                        }
                    } catch (const connect_error&) {
                    }
                }
                throw connect_error("cannot send to " + _path + ": " + std::strerror(e));
            }
            off += std::size_t(n);
        }
        std::string resp = read_line();
        auto r = reef::ctl::parse_response(resp);
        if (r.error) {
            throw *r.error;
        }
        return std::move(*r.result);
    }

private:
    std::string read_line() {
        while (true) {
            auto nl = _buf.find('\n');
            if (nl != std::string::npos) {
                std::string line = _buf.substr(0, nl);
                _buf.erase(0, nl + 1);
                return line;
            }
            ::pollfd p{_fd, POLLIN, 0};
            int r = ::poll(&p, 1, _timeout_ms);
            if (r == 0) {
                throw connect_error("no answer from " + _path + " within " + std::to_string(_timeout_ms / 1000) + " s");
            }
            if (r < 0) {
                if (errno == EINTR) {
                    continue;
                }
                throw connect_error("poll " + _path + ": " + std::strerror(errno));
            }
            char buf[65536];
            auto n = ::recv(_fd, buf, sizeof(buf), 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                throw connect_error("connection to " + _path + " closed" +
                                    (n < 0 ? std::string(": ") + std::strerror(errno) : std::string()));
            }
            _buf.append(buf, std::size_t(n));
        }
    }
};

// ------------------------------------------------------------------------------------------------
// tables

std::string cell(const json& v) {
    if (v.is_null()) {
        return "-";
    }
    if (v.is_string()) {
        return v.get<std::string>();
    }
    if (v.is_number_float()) {
        std::ostringstream o;
        double d = v.get<double>();
        o << std::fixed << std::setprecision(d == std::floor(d) && std::fabs(d) < 1e15 ? 0 : 3) << d;
        return o.str();
    }
    if (v.is_boolean()) {
        return v.get<bool>() ? "yes" : "no";
    }
    return v.dump();
}

void print_table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> w(head.size());
    for (std::size_t i = 0; i < head.size(); ++i) {
        w[i] = head[i].size();
    }
    for (auto& r : rows) {
        for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) {
            w[i] = std::max(w[i], r[i].size());
        }
    }
    auto line = [&](const std::vector<std::string>& r) {
        std::string s;
        for (std::size_t i = 0; i < w.size(); ++i) {
            std::string c = i < r.size() ? r[i] : "";
            s += c;
            if (i + 1 < w.size()) {
                s += std::string(w[i] - c.size() + 2, ' ');
            }
        }
        while (!s.empty() && s.back() == ' ') {
            s.pop_back();
        }
        std::cout << s << "\n";
    };
    line(head);
    for (auto& r : rows) {
        line(r);
    }
}

void print_kv(const json& o, const std::string& indent = "") {
    std::size_t w = 0;
    for (auto& [k, v] : o.items()) {
        w = std::max(w, k.size());
    }
    for (auto& [k, v] : o.items()) {
        if (v.is_object() && !v.empty()) {
            std::cout << indent << k << ":\n";
            print_kv(v, indent + "  ");
        } else {
            std::cout << indent << k << std::string(w - k.size() + 2, ' ') << cell(v) << "\n";
        }
    }
}

void print_dataplanes(const json& r) {
    std::vector<std::vector<std::string>> rows;
    for (auto& d : r.at("dataplanes")) {
        std::string last = d.contains("last_exit") ? cell(d["last_exit"]["description"]) : "-";
        rows.push_back({cell(d["name"]), cell(d["state"]), cell(d["pid"]), cell(d["restarts"]),
                        d.contains("uptime_s") ? cell(json(std::round(d["uptime_s"].get<double>()))) : "-", last});
    }
    print_table({"NAME", "STATE", "PID", "RESTARTS", "UPTIME_S", "LAST_EXIT"}, rows);
}

void print_shards(const json& r) {
    std::vector<std::vector<std::string>> rows;
    for (auto& s : r.at("shards")) {
        rows.push_back({cell(s["shard"]), cell(s["cpu"]), cell(s["tasks_processed"]), cell(s["tasks_queued"]),
                        cell(json(std::round(s["idle_pct"].get<double>() * 10) / 10)),
                        // A dataplane started from an older build (re-attached by reefd) lacks it.
                        s.contains("busy_pct") ? cell(json(std::round(s["busy_pct"].get<double>() * 10) / 10)) : "-",
                        cell(s["memory"]["allocated"]), cell(s["stalls"]), cell(s["idle_policy"]),
                        cell(s["idle_poll_us"]), cell(s["task_quota_ms"])});
    }
    print_table({"SHARD", "CPU", "TASKS", "QUEUED", "IDLE%", "BUSY%", "MEM_ALLOC", "STALLS", "IDLE_POLICY",
                 "IDLE_POLL_US", "QUOTA_MS"},
                rows);
}

void print_ports(const json& r) {
    std::vector<std::vector<std::string>> rows;
    for (auto& p : r.at("ports")) {
        rows.push_back({cell(p["name"]), cell(p["driver"]), cell(p["mac"]), p["link"]["up"].get<bool>() ? "up" : "down",
                        cell(p["link"]["speed_mbps"]), cell(p["queues"]), cell(p["shards"]), cell(p["software_rss"])});
    }
    print_table({"PORT", "DRIVER", "MAC", "LINK", "SPEED", "QUEUES", "SHARDS", "SW_RSS"}, rows);
}

void print_stats(const json& r) {
    std::vector<std::vector<std::string>> rows;
    auto row = [&](const std::string& who, const json& s) {
        rows.push_back({who, cell(s["rx_packets"]), cell(s["rx_bytes"]), cell(s["tx_packets"]), cell(s["tx_bytes"]),
                        cell(s["rx_dropped"]), cell(s["tx_dropped"])});
    };
    for (auto& s : r.at("shards")) {
        row("shard " + cell(s["shard"]), s);
    }
    row("total", r.at("totals"));
    std::cout << "port " << cell(r["port"]) << "\n";
    print_table({"", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "RX_DROP", "TX_DROP"}, rows);
    if (r.contains("hw") && !r["hw"].empty()) {
        std::cout << "hardware counters:\n";
        print_kv(r["hw"], "  ");
    }
}

void print_metrics(const json& r) {
    if (r.contains("text")) {
        std::cout << r["text"].get<std::string>();
        return;
    }
    std::vector<std::vector<std::string>> rows;
    for (auto& f : r.at("metrics")) {
        for (auto& s : f["samples"]) {
            std::string labels;
            for (auto& [k, v] : s["labels"].items()) {
                labels += (labels.empty() ? "" : ",") + k + "=" + cell(v);
            }
            std::string value =
                s.contains("value") ? cell(s["value"]) : "count=" + cell(s["count"]) + " sum=" + cell(s["sum"]);
            rows.push_back({cell(f["name"]), labels, value});
        }
    }
    print_table({"METRIC", "LABELS", "VALUE"}, rows);
}

void print_loggers(const json& r) {
    std::vector<std::vector<std::string>> rows;
    for (auto& l : r.at("loggers")) {
        rows.push_back({cell(l["name"]), cell(l["level"])});
    }
    print_table({"LOGGER", "LEVEL"}, rows);
}

void print_groups(const json& r) {
    if (r.contains("group")) {
        print_kv(r);
        return;
    }
    std::vector<std::vector<std::string>> rows;
    for (auto& g : r.at("groups")) {
        rows.push_back({cell(g["name"]), cell(g["shares"]), cell(g["runtime_s"]), cell(g["tasks_processed"]),
                        cell(g["queue_length"])});
    }
    print_table({"GROUP", "SHARES", "RUNTIME_S", "TASKS", "QUEUED"}, rows);
}

void print_io_classes(const json& r) {
    if (!r.contains("classes")) {
        print_kv(r);
        return;
    }
    std::vector<std::vector<std::string>> rows;
    for (auto& c : r.at("classes")) {
        rows.push_back({cell(c.value("name", json())), cell(c.value("shares", json())),
                        cell(c.value("requests", json())), cell(c.value("bytes", json())),
                        cell(c.value("queue_time_s", json()))});
    }
    print_table({"CLASS", "SHARES", "REQUESTS", "BYTES", "QUEUE_TIME_S"}, rows);
}

void print_connections(const json& r) {
    std::vector<std::vector<std::string>> rows;
    for (auto& c : r.at("connections")) {
        rows.push_back({cell(c.value("state", json())), cell(c.value("recv_queued", json())),
                        cell(c.value("send_queued", json())), cell(c.value("local", json())),
                        cell(c.value("remote", json())), cell(c.value("shard", json())), cell(c.value("srtt_us", json())),
                        cell(c.value("cwnd", json())), cell(c.value("retransmits", json()))});
    }
    // The columns of `ss -tni`: state, queues, addresses, then what -i adds.
    print_table({"STATE", "RECV-Q", "SEND-Q", "LOCAL", "REMOTE", "SHARD", "SRTT_US", "CWND", "RETRANS"}, rows);
}

void print_logs(const json& r) {
    for (const char* s : {"stdout", "stderr"}) {
        if (r.contains(s)) {
            std::cout << "==> " << s << " <==\n" << r[s].get<std::string>();
        }
    }
}

void print_generic(const json& r) {
    if (r.is_object()) {
        print_kv(r);
    } else {
        std::cout << r.dump(2) << "\n";
    }
}

// ------------------------------------------------------------------------------------------------
// commands

struct options {
    std::string socket = "/run/reef/reefd.sock";
    bool json_out = false;
    double watch = 0;
    int timeout_s = 15;
};

// What one invocation does: a method to call on the dataplane (through reefd's `call` unless the
// socket is an agent) or on reefd itself, and how to print the result.
struct command {
    std::string method;
    json params;
    bool dataplane = false;  // a dataplane method (routed by NAME)
    std::string name;
    void (*print)(const json&) = print_generic;
    std::function<void(const json&)> print_fn;  // overrides print when set
};

json parse_json_arg(const std::string& s, const std::string& what) {
    json j = json::parse(s, nullptr, false);
    if (j.is_discarded()) {
        throw CLI::ValidationError(what, "not valid JSON: " + s);
    }
    return j;
}

volatile sig_atomic_t g_interrupted = 0;

int run(const options& o, const command& c) {
    client cl(o.socket, o.timeout_s * 1000);
    // Whether the socket is reefd's (dataplane methods go through `call`) or an agent's.
    bool via_reefd = true;
    auto call = [&]() -> json {
        if (!c.dataplane || !via_reefd) {
            return cl.call(c.method, c.params);
        }
        json p = {{"dataplane", c.name}, {"method", c.method}};
        if (!c.params.is_null()) {
            p["params"] = c.params;
        }
        return cl.call("call", p);
    };
    try {
        if (c.dataplane) {
            auto v = cl.call("reef.version", nullptr);
            via_reefd = v.value("server", "") == "reefd";
        }
        do {
            json r;
            try {
                r = call();
            } catch (const rpc_error& e) {
                std::cerr << "reefctl: " << e.what() << " (" << reef::ctl::error_name(e.code()) << ", " << e.code()
                          << ")\n";
                if (o.watch <= 0) {
                    return exit_remote;
                }
            }
            if (!r.is_null()) {
                if (o.watch > 0 && !o.json_out && ::isatty(1)) {
                    std::cout << "\033[H\033[2J";
                }
                if (o.json_out) {
                    std::cout << r.dump(2) << "\n";
                } else if (c.print_fn) {
                    c.print_fn(r);
                } else {
                    c.print(r);
                }
                std::cout.flush();
            }
            if (o.watch > 0) {
                auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.watch);
                while (!g_interrupted && std::chrono::steady_clock::now() < until) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(50));
                }
            }
        } while (o.watch > 0 && !g_interrupted);
    } catch (const connect_error& e) {
        std::cerr << "reefctl: " << e.what() << "\n";
        return exit_connect;
    } catch (const rpc_error& e) {
        std::cerr << "reefctl: " << e.what() << " (" << reef::ctl::error_name(e.code()) << ", " << e.code() << ")\n";
        return exit_remote;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("reefctl: control Reef dataplanes through reefd, or one dataplane directly with --socket", "reefctl");
    app.require_subcommand(1);
    options o;
    app.add_option("--socket", o.socket,
                   "reefd's socket, or a dataplane's control socket (NAME arguments are then ignored)")
        ->capture_default_str();
    app.add_flag("--json", o.json_out, "Print the result as JSON");
    app.add_option("--watch", o.watch, "Repeat every N seconds until interrupted")->check(CLI::PositiveNumber);
    app.add_option("--timeout", o.timeout_s, "Seconds to wait for an answer")
        ->check(CLI::Range(1, 3600))
        ->capture_default_str();

    command c;
    std::string name, a1, a2, a3;
    std::vector<std::string> sets;
    std::optional<unsigned> smp;
    std::optional<std::string> cpuset, memory;
    std::vector<std::string> args_list;
    bool args_given = false;
    std::optional<std::string> prefix;
    bool prometheus = false;
    unsigned lines = 50;
    std::string stream = "both";
    std::optional<int> shard;

    auto dp_cmd = [&](const char* n, const char* help) {
        auto* s = app.add_subcommand(n, help);
        s->add_option("NAME", name, "Dataplane name (ignored with a dataplane's --socket)")->required();
        return s;
    };

    auto* status = app.add_subcommand("status", "reefd's version and dataplanes (or the dataplane's runtime.status)");
    auto* dataplanes = app.add_subcommand("dataplanes", "List the dataplanes: state, pid, restarts, last exit");
    auto* start = dp_cmd("start", "Start a dataplane");
    auto* stop = dp_cmd("stop", "Stop a dataplane gracefully (SIGTERM, then SIGKILL after its timeout)");
    auto* restart = dp_cmd("restart", "Restart a dataplane");
    auto* logs = dp_cmd("logs", "The last lines of a dataplane's stdout and stderr");
    logs->add_option("--lines,-n", lines, "Lines per stream")->check(CLI::Range(1, 10000))->capture_default_str();
    logs->add_option("--stream", stream, "stdout, stderr or both")
        ->check(CLI::IsMember({"stdout", "stderr", "both"}))
        ->capture_default_str();
    auto* remove = dp_cmd("remove", "Stop a dataplane and forget it");
    auto* add = app.add_subcommand("add", "Add a dataplane from a JSON definition (see docs/control-protocol.md)");
    add->add_option("DEFINITION", a1, "JSON object, or @FILE")->required();
    auto* reload = app.add_subcommand("reload", "Re-read reefd's config file and apply it");
    auto* update = dp_cmd("update", "Change a dataplane's shards, memory or args and restart it gracefully");
    update->add_option("--smp", smp, "Number of shards")->check(CLI::Range(1, 4096));
    update->add_option("--cpuset", cpuset, "CPU list, e.g. 0-3,8");
    update->add_option("--memory", memory, "Memory for all shards, e.g. 2G");
    update->add_option("--args", args_list, "The program's own arguments (replaces them all)")
        ->expected(0, -1)
        ->each([&](const std::string&) { args_given = true; });
    auto* shards = dp_cmd("shards", "Per-shard load (or change reactor settings with --set)");
    shards->add_option("--set", sets,
                       "KEY=VALUE: idle_policy (poll|sleep|adaptive), idle_poll_us, task_quota_ms, "
                       "stall_threshold_ms, hw_queue_weight");
    shards->add_option("--shard", shard, "Only this shard")->check(CLI::NonNegativeNumber);
    auto* ports = dp_cmd("ports", "The dataplane's port: link, queues, RSS");
    auto* stats = dp_cmd("stats", "Port counters per shard and the port's own");
    auto* metrics = dp_cmd("metrics", "The dataplane's metrics");
    metrics->add_option("--prefix", prefix, "Only metrics whose name starts with this");
    metrics->add_flag("--prometheus", prometheus, "Prometheus text format");
    auto* loglevel = dp_cmd("log-level", "Show loggers, or set a level: log-level NAME [LOGGER] LEVEL");
    loglevel->add_option("ARGS", sets, "[LOGGER] LEVEL")->expected(0, 2);
    auto* ioclass = dp_cmd("io-class", "List I/O classes, or set one's shares: io-class NAME [CLASS SHARES]");
    ioclass->add_option("ARGS", sets, "CLASS SHARES")->expected(0, 2);
    auto* schedgroup =
        dp_cmd("sched-group", "List scheduling groups, or set one's shares: sched-group NAME [GROUP SHARES]");
    schedgroup->add_option("ARGS", sets, "GROUP SHARES")->expected(0, 2);
    auto* connections = dp_cmd("connections", "The native stack's TCP connections (like ss -tni)");
    std::string conn_state;
    connections->add_option("--state", conn_state, "Only connections in this state (ESTABLISHED, TIME_WAIT...)");
    auto* appcmd = dp_cmd("app", "Call an app method: app NAME METHOD [JSON]");
    appcmd->add_option("METHOD", a1, "app.* method (the \"app.\" may be left out)")->required();
    appcmd->add_option("JSON", a2, "Params (JSON object)");
    auto* raw = app.add_subcommand("raw", "Call any method on the socket: raw METHOD [JSON]");
    raw->add_option("METHOD", a1, "Method")->required();
    raw->add_option("JSON", a2, "Params (JSON)");
    auto* names = app.add_subcommand("_names", "Dataplane names, one per line (for shell completion)");
    names->group("");

    try {
        app.parse(argc, argv);
        if (status->parsed()) {
            c.method = "reef.version";
            c.print_fn = [&](const json& v) { print_kv(v); };
        } else if (dataplanes->parsed()) {
            c.method = "dataplanes.list";
            c.print = print_dataplanes;
        } else if (start->parsed() || stop->parsed() || restart->parsed() || remove->parsed()) {
            c.method = start->parsed()     ? "dataplane.start"
                       : stop->parsed()    ? "dataplane.stop"
                       : restart->parsed() ? "dataplane.restart"
                                           : "dataplane.remove";
            c.params = {{"name", name}};
        } else if (logs->parsed()) {
            c.method = "dataplane.logs";
            c.params = {{"name", name}, {"lines", lines}, {"stream", stream}};
            c.print = print_logs;
        } else if (add->parsed()) {
            std::string text = a1;
            if (!text.empty() && text[0] == '@') {
                std::ifstream f(text.substr(1));
                if (!f) {
                    throw CLI::ValidationError("DEFINITION", "cannot read " + text.substr(1));
                }
                std::stringstream ss;
                ss << f.rdbuf();
                text = ss.str();
            }
            c.method = "dataplane.add";
            c.params = {{"dataplane", parse_json_arg(text, "DEFINITION")}};
        } else if (reload->parsed()) {
            c.method = "config.reload";
        } else if (update->parsed()) {
            json ch = json::object();
            if (smp) {
                ch["smp"] = *smp;
            }
            if (cpuset) {
                ch["cpuset"] = *cpuset;
            }
            if (memory) {
                ch["memory"] = *memory;
            }
            if (args_given || update->count("--args")) {
                ch["args"] = args_list;
            }
            if (ch.empty()) {
                throw CLI::ValidationError("update", "give at least one of --smp, --cpuset, --memory, --args");
            }
            c.method = "dataplane.update";
            c.params = {{"name", name}, {"changes", ch}};
        } else if (shards->parsed()) {
            c.dataplane = true;
            c.print = print_shards;
            json p = json::object();
            if (shard) {
                p["shard"] = *shard;
            }
            if (sets.empty()) {
                c.method = "shards.list";
            } else {
                c.method = "shards.set";
                for (auto& kv : sets) {
                    auto eq = kv.find('=');
                    if (eq == std::string::npos || eq == 0) {
                        throw CLI::ValidationError("--set", "expected KEY=VALUE, got " + kv);
                    }
                    auto k = kv.substr(0, eq), v = kv.substr(eq + 1);
                    // Numbers go as numbers, anything else as a string (idle_policy).
                    json jv = json::parse(v, nullptr, false);
                    p[k] = jv.is_discarded() || !jv.is_number() ? json(v) : jv;
                }
            }
            c.params = p.empty() ? json(nullptr) : p;
        } else if (ports->parsed()) {
            c.dataplane = true;
            c.method = "ports.list";
            c.print = print_ports;
        } else if (stats->parsed()) {
            c.dataplane = true;
            c.method = "ports.stats";
            c.print = print_stats;
        } else if (metrics->parsed()) {
            c.dataplane = true;
            c.method = "metrics.get";
            c.print = print_metrics;
            json p = json::object();
            if (prefix) {
                p["prefix"] = *prefix;
            }
            if (prometheus) {
                p["format"] = "prometheus";
            }
            c.params = p.empty() ? json(nullptr) : p;
        } else if (loglevel->parsed()) {
            c.dataplane = true;
            c.print = print_loggers;
            if (sets.empty()) {
                c.method = "log.get";
            } else {
                c.method = "log.set_level";
                c.params = {{"level", sets.back()}};
                if (sets.size() == 2) {
                    c.params["logger"] = sets[0];
                }
            }
        } else if (ioclass->parsed() || schedgroup->parsed()) {
            bool io = ioclass->parsed();
            c.dataplane = true;
            c.print = io ? print_io_classes : print_groups;
            if (sets.empty()) {
                c.method = io ? "io.classes.list" : "sched.groups.list";
            } else if (sets.size() == 2) {
                c.method = io ? "io.classes.set" : "sched.groups.set";
                json shares = json::parse(sets[1], nullptr, false);
                if (shares.is_discarded() || !shares.is_number()) {
                    throw CLI::ValidationError("SHARES", "must be a number, got " + sets[1]);
                }
                c.params = {{io ? "class" : "group", sets[0]}, {"shares", shares}};
            } else {
                throw CLI::ValidationError(io ? "io-class" : "sched-group",
                                           std::string("give both ") + (io ? "CLASS" : "GROUP") + " and SHARES");
            }
        } else if (connections->parsed()) {
            c.dataplane = true;
            c.method = "stack.connections";
            if (!conn_state.empty()) {
                c.params = {{"state", conn_state}};
            }
            c.print = print_connections;
        } else if (appcmd->parsed()) {
            c.dataplane = true;
            c.method = a1.starts_with("app.") ? a1 : "app." + a1;
            if (!a2.empty()) {
                c.params = parse_json_arg(a2, "JSON");
            }
        } else if (raw->parsed()) {
            c.method = a1;
            if (!a2.empty()) {
                c.params = parse_json_arg(a2, "JSON");
            }
        } else if (names->parsed()) {
            c.method = "dataplanes.list";
            c.print = [](const json& r) {
                for (auto& d : r.at("dataplanes")) {
                    std::cout << d["name"].get<std::string>() << "\n";
                }
            };
        }
        c.name = name;
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : exit_usage;
    }

    struct sigaction sa {};
    sa.sa_handler = [](int) { g_interrupted = 1; };
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);

    if (status->parsed()) {
        // reefd: version and the dataplanes table; a dataplane's agent: its runtime.status.
        client probe(o.socket, o.timeout_s * 1000);
        try {
            auto v = probe.call("reef.version", nullptr);
            if (v.value("server", "") != "reefd") {
                c.method = "runtime.status";
            } else {
                // reefd: its version once, then the dataplanes table (refreshed by --watch).
                c.method = "dataplanes.list";
                std::string head = "reefd " + cell(v["build"]) + ", protocol " + cell(v["protocol"]);
                c.print_fn = [head](const json& r) {
                    std::cout << head << "\n";
                    print_dataplanes(r);
                };
            }
        } catch (const connect_error& e) {
            std::cerr << "reefctl: " << e.what() << "\n";
            return exit_connect;
        } catch (const rpc_error& e) {
            std::cerr << "reefctl: " << e.what() << "\n";
            return exit_remote;
        }
    }
    return run(o, c);
}
