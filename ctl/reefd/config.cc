#include "ctl/reefd/config.hh"

#include <fstream>
#include <set>
#include <sstream>

namespace reef::reefd {

using ctl::rpc_error;
using ctl::error_code::invalid_params;

namespace {

bool valid_name(const std::string& n) {
    if (n.empty() || n.size() > 64) {
        return false;
    }
    for (char c : n) {
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-')) {
            return false;
        }
    }
    return n != "." && n != "..";
}

std::string_view kind_name(restart_kind k) {
    switch (k) {
    case restart_kind::always: return "always";
    case restart_kind::on_failure: return "on-failure";
    case restart_kind::never: return "never";
    }
    return "on-failure";
}

// Field readers that name the dataplane and the field in their errors.
struct reader {
    const json& j;
    std::string who;

    [[noreturn]] void bad(const std::string& field, const std::string& want) const {
        throw rpc_error(invalid_params, who + ": field '" + field + "' must be " + want);
    }
    const json* get(const std::string& f) const {
        auto it = j.find(f);
        return it == j.end() || it->is_null() ? nullptr : &*it;
    }
    std::optional<std::string> str(const std::string& f) const {
        auto* v = get(f);
        if (!v) {
            return std::nullopt;
        }
        if (!v->is_string()) {
            bad(f, "a string");
        }
        return v->get<std::string>();
    }
    std::optional<std::int64_t> integer(const std::string& f, std::int64_t min, std::int64_t max) const {
        auto* v = get(f);
        if (!v) {
            return std::nullopt;
        }
        if (!v->is_number_integer() || v->get<std::int64_t>() < min || v->get<std::int64_t>() > max) {
            bad(f, "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
        }
        return v->get<std::int64_t>();
    }
    std::optional<bool> boolean(const std::string& f) const {
        auto* v = get(f);
        if (!v) {
            return std::nullopt;
        }
        if (!v->is_boolean()) {
            bad(f, "a boolean");
        }
        return v->get<bool>();
    }
    std::optional<std::vector<std::string>> strings(const std::string& f) const {
        auto* v = get(f);
        if (!v) {
            return std::nullopt;
        }
        if (!v->is_array()) {
            bad(f, "an array of strings");
        }
        std::vector<std::string> out;
        for (auto& e : *v) {
            if (!e.is_string()) {
                bad(f, "an array of strings");
            }
            out.push_back(e.get<std::string>());
        }
        return out;
    }
    std::optional<std::map<std::string, std::string>> string_map(const std::string& f) const {
        auto* v = get(f);
        if (!v) {
            return std::nullopt;
        }
        if (!v->is_object()) {
            bad(f, "an object of strings");
        }
        std::map<std::string, std::string> out;
        for (auto& [k, e] : v->items()) {
            if (!e.is_string() || k.empty() || k.find('=') != std::string::npos) {
                bad(f, "an object of strings with names without '='");
            }
            out[k] = e.get<std::string>();
        }
        return out;
    }
};

void check_unknown(const json& j, const std::string& who, std::initializer_list<std::string_view> known) {
    for (auto& [k, v] : j.items()) {
        bool ok = false;
        for (auto n : known) {
            ok = ok || n == k;
        }
        if (!ok) {
            throw rpc_error(invalid_params, who + ": unknown field '" + k + "'");
        }
    }
}

restart_policy parse_restart(const json& j, const std::string& who, restart_policy base) {
    if (!j.is_object()) {
        throw rpc_error(invalid_params, who + ": field 'restart' must be an object");
    }
    check_unknown(j, who + " restart",
                  {"policy", "backoff_initial_ms", "backoff_max_ms", "max_restarts", "healthy_after_ms"});
    reader r{j, who + " restart"};
    if (auto p = r.str("policy")) {
        if (*p == "always") {
            base.kind = restart_kind::always;
        } else if (*p == "on-failure") {
            base.kind = restart_kind::on_failure;
        } else if (*p == "never") {
            base.kind = restart_kind::never;
        } else {
            r.bad("policy", "\"always\", \"on-failure\" or \"never\"");
        }
    }
    if (auto v = r.integer("backoff_initial_ms", 1, 3'600'000)) {
        base.backoff_initial = std::chrono::milliseconds(*v);
    }
    if (auto v = r.integer("backoff_max_ms", 1, 3'600'000)) {
        base.backoff_max = std::chrono::milliseconds(*v);
    }
    if (auto v = r.integer("max_restarts", 0, 1'000'000)) {
        base.max_restarts = unsigned(*v);
    }
    if (auto v = r.integer("healthy_after_ms", 0, 86'400'000)) {
        base.healthy_after = std::chrono::milliseconds(*v);
    }
    if (base.backoff_max < base.backoff_initial) {
        base.backoff_max = base.backoff_initial;
    }
    return base;
}

#define REEF_SPEC_FIELDS \
    { "name", "binary", "args", "smp", "cpuset", "memory", "vdev", "env", "autostart", "stop_timeout_ms", "restart" }

void apply_fields(dataplane_spec& s, const json& j, const std::string& who) {
    reader r{j, who};
    if (auto v = r.str("binary")) {
        if (v->empty() || (*v)[0] != '/') {
            r.bad("binary", "an absolute path");
        }
        s.binary = *v;
    }
    if (auto v = r.strings("args")) {
        s.args = *v;
    }
    if (j.contains("smp")) {
        if (j["smp"].is_null()) {
            s.smp.reset();
        } else {
            s.smp = unsigned(*r.integer("smp", 1, 4096));
        }
    }
    if (auto v = r.str("cpuset")) {
        for (char c : *v) {
            if (!((c >= '0' && c <= '9') || c == ',' || c == '-')) {
                r.bad("cpuset", "a CPU list such as \"0-3,8\"");
            }
        }
        s.cpuset = *v;
    }
    if (auto v = r.str("memory")) {
        s.memory = *v;
    }
    if (auto v = r.str("vdev")) {
        s.vdev = *v;
    }
    if (auto v = r.string_map("env")) {
        s.env = *v;
    }
    if (auto v = r.boolean("autostart")) {
        s.autostart = *v;
    }
    if (auto v = r.integer("stop_timeout_ms", 1, 3'600'000)) {
        s.stop_timeout = std::chrono::milliseconds(*v);
    }
    if (auto* v = r.get("restart")) {
        s.restart = parse_restart(*v, who, s.restart);
    }
}

}  // namespace

dataplane_spec parse_spec(const json& j) {
    if (!j.is_object()) {
        throw rpc_error(invalid_params, "a dataplane definition must be an object");
    }
    reader r{j, "dataplane"};
    auto name = r.str("name");
    if (!name) {
        throw rpc_error(invalid_params, "dataplane: field 'name' is required");
    }
    if (!valid_name(*name)) {
        throw rpc_error(invalid_params,
                        "dataplane '" + *name + "': the name must be 1-64 characters of [A-Za-z0-9_.-]");
    }
    std::string who = "dataplane '" + *name + "'";
    check_unknown(j, who, REEF_SPEC_FIELDS);
    if (!j.contains("binary")) {
        throw rpc_error(invalid_params, who + ": field 'binary' is required");
    }
    dataplane_spec s;
    s.name = *name;
    apply_fields(s, j, who);
    return s;
}

dataplane_spec apply_update(const dataplane_spec& s, const json& changes) {
    std::string who = "dataplane '" + s.name + "'";
    if (!changes.is_object()) {
        throw rpc_error(invalid_params, who + ": the changes must be an object");
    }
    check_unknown(changes, who, REEF_SPEC_FIELDS);
    if (changes.contains("name") && changes["name"] != s.name) {
        throw rpc_error(invalid_params, who + ": a dataplane cannot be renamed (remove it and add it again)");
    }
    dataplane_spec out = s;
    apply_fields(out, changes, who);
    return out;
}

json to_json(const dataplane_spec& s) {
    json j = {
        {"name", s.name},
        {"binary", s.binary},
        {"args", s.args},
        {"autostart", s.autostart},
        {"stop_timeout_ms", s.stop_timeout.count()},
        {"restart",
         {{"policy", kind_name(s.restart.kind)},
          {"backoff_initial_ms", s.restart.backoff_initial.count()},
          {"backoff_max_ms", s.restart.backoff_max.count()},
          {"max_restarts", s.restart.max_restarts},
          {"healthy_after_ms", s.restart.healthy_after.count()}}},
    };
    j["smp"] = s.smp ? json(*s.smp) : json(nullptr);
    if (!s.cpuset.empty()) {
        j["cpuset"] = s.cpuset;
    }
    if (!s.memory.empty()) {
        j["memory"] = s.memory;
    }
    if (!s.vdev.empty()) {
        j["vdev"] = s.vdev;
    }
    if (!s.env.empty()) {
        j["env"] = s.env;
    }
    return j;
}

std::vector<std::string> command_line(const dataplane_spec& s, const std::string& ctl_socket) {
    std::vector<std::string> argv{s.binary};
    argv.insert(argv.end(), s.args.begin(), s.args.end());
    if (s.smp) {
        argv.push_back("--smp");
        argv.push_back(std::to_string(*s.smp));
    }
    if (!s.cpuset.empty()) {
        argv.push_back("--cpuset");
        argv.push_back(s.cpuset);
    }
    if (!s.memory.empty()) {
        argv.push_back("--memory");
        argv.push_back(s.memory);
    }
    if (!s.vdev.empty()) {
        argv.push_back("--dpdk-pmd");
        argv.push_back("--vdev");
        argv.push_back(s.vdev);
    }
    argv.push_back("--ctl-socket");
    argv.push_back(ctl_socket);
    return argv;
}

std::vector<dataplane_spec> parse_dataplanes(const json& arr) {
    if (!arr.is_array()) {
        throw rpc_error(invalid_params, "'dataplanes' must be an array");
    }
    std::vector<dataplane_spec> out;
    std::set<std::string> names;
    for (auto& d : arr) {
        auto s = parse_spec(d);
        if (!names.insert(s.name).second) {
            throw rpc_error(invalid_params, "dataplane '" + s.name + "' is defined twice");
        }
        out.push_back(std::move(s));
    }
    return out;
}

daemon_config load_config(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        throw std::runtime_error("config " + path + ": cannot be read");
    }
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded()) {
        throw std::runtime_error("config " + path + ": not valid JSON");
    }
    if (!j.is_object()) {
        throw std::runtime_error("config " + path + ": must be a JSON object");
    }
    daemon_config c;
    try {
        check_unknown(j, "config", {"socket", "run_dir", "state_file", "max_line", "dataplanes"});
        reader r{j, "config"};
        if (auto v = r.str("socket")) {
            c.socket = *v;
        }
        if (auto v = r.str("run_dir")) {
            c.run_dir = *v;
        }
        if (auto v = r.str("state_file")) {
            c.state_file = *v;
        }
        if (auto v = r.integer("max_line", 1024, 64 << 20)) {
            c.max_line = std::size_t(*v);
        }
        if (j.contains("dataplanes")) {
            c.dataplanes = parse_dataplanes(j["dataplanes"]);
        }
    } catch (const rpc_error& e) {
        throw std::runtime_error("config " + path + ": " + e.what());
    }
    return c;
}

}  // namespace reef::reefd
