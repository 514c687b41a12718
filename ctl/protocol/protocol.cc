#include "ctl/protocol/protocol.hh"

#include <algorithm>
#include <cmath>

namespace reef::ctl {

std::string_view error_name(int code) noexcept {
    switch (code) {
    case error_code::parse_error: return "parse error";
    case error_code::invalid_request: return "invalid request";
    case error_code::method_not_found: return "method not found";
    case error_code::invalid_params: return "invalid params";
    case error_code::internal_error: return "internal error";
    case error_code::request_too_large: return "request too large";
    case error_code::not_found: return "not found";
    case error_code::unavailable: return "unavailable";
    case error_code::unsupported: return "unsupported";
    case error_code::timeout: return "timeout";
    case error_code::conflict: return "conflict";
    case error_code::permission_denied: return "permission denied";
    case error_code::failed: return "failed";
    }
    return "error";
}

std::string_view type_name(const json& j) noexcept {
    switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    default: return "value";
    }
}

namespace {

// Reads a request's id before the rest is checked, so even an invalid request's error carries it.
json id_of(const json& j) {
    if (j.is_object()) {
        auto it = j.find("id");
        if (it != j.end() && (it->is_string() || it->is_number() || it->is_null())) {
            return *it;
        }
    }
    return nullptr;
}

}  // namespace

std::variant<request, request_error> parse_request(std::string_view line) {
    json j = json::parse(line.begin(), line.end(), nullptr, false);
    if (j.is_discarded()) {
        // Say where: nlohmann's parse error names the position and the token.
        std::string why = "not valid JSON";
        try {
            json again = json::parse(line.begin(), line.end());
        } catch (const json::parse_error& e) {
            why = e.what();
        }
        return request_error{nullptr, rpc_error(error_code::parse_error, "parse error: " + why)};
    }
    auto fail = [&](const std::string& msg) {
        return request_error{id_of(j), rpc_error(error_code::invalid_request, "invalid request: " + msg)};
    };
    if (j.is_array()) {
        return fail("batch requests are not supported: send one request object per line");
    }
    if (!j.is_object()) {
        return fail(std::string("expected a request object, got ") + std::string(type_name(j)));
    }
    auto v = j.find("jsonrpc");
    if (v == j.end() || !v->is_string() || v->get<std::string>() != "2.0") {
        return fail("\"jsonrpc\" must be \"2.0\"");
    }
    request r;
    auto id = j.find("id");
    if (id == j.end()) {
        r.notification = true;
    } else if (id->is_string() || id->is_number() || id->is_null()) {
        r.id = *id;
    } else {
        return fail(std::string("\"id\" must be a string, a number or null, got ") + std::string(type_name(*id)));
    }
    auto m = j.find("method");
    if (m == j.end() || !m->is_string()) {
        return fail(m == j.end() ? "\"method\" is missing"
                                 : std::string("\"method\" must be a string, got ") + std::string(type_name(*m)));
    }
    r.method = m->get<std::string>();
    if (r.method.empty()) {
        return fail("\"method\" is empty");
    }
    auto p = j.find("params");
    if (p != j.end()) {
        if (!p->is_object() && !p->is_array()) {
            return fail(std::string("\"params\" must be an object or an array, got ") + std::string(type_name(*p)));
        }
        r.params = std::move(*p);
    }
    for (auto& [k, val] : j.items()) {
        if (k != "jsonrpc" && k != "id" && k != "method" && k != "params") {
            return fail("unknown member \"" + k + "\"");
        }
    }
    return r;
}

response parse_response(std::string_view line) {
    json j = json::parse(line.begin(), line.end(), nullptr, false);
    if (j.is_discarded()) {
        throw rpc_error(error_code::parse_error, "parse error: the response is not valid JSON");
    }
    if (!j.is_object()) {
        throw rpc_error(error_code::invalid_request, "invalid response: not an object");
    }
    response r;
    r.id = j.value("id", json(nullptr));
    auto res = j.find("result");
    auto err = j.find("error");
    if ((res == j.end()) == (err == j.end())) {
        throw rpc_error(error_code::invalid_request, "invalid response: needs exactly one of result and error");
    }
    if (res != j.end()) {
        r.result = std::move(*res);
        return r;
    }
    if (!err->is_object() || !err->contains("code") || !(*err)["code"].is_number_integer() ||
        !err->contains("message") || !(*err)["message"].is_string()) {
        throw rpc_error(error_code::invalid_request, "invalid response: malformed error object");
    }
    r.error.emplace(int((*err)["code"].get<std::int64_t>()), (*err)["message"].get<std::string>(),
                    err->value("data", json(nullptr)));
    return r;
}

json make_request(const json& id, std::string_view method, const json& params) {
    json j = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
    if (!params.is_null()) {
        j["params"] = params;
    }
    return j;
}

json make_result(const json& id, json result) {
    return json{{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

json make_error(const json& id, int code, const std::string& message, const json& data) {
    json e = {{"code", code}, {"message", message}};
    if (!data.is_null()) {
        e["data"] = data;
    }
    return json{{"jsonrpc", "2.0"}, {"id", id}, {"error", std::move(e)}};
}

json make_error(const json& id, const rpc_error& e) { return make_error(id, e.code(), e.what(), e.data()); }

std::string to_line(const json& j) {
    std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
    s += '\n';
    return s;
}

// ------------------------------------------------------------------------------------------------
// line_reader

void line_reader::feed(std::string_view data) {
    if (!_discarding) {
        _buf.append(data);
        return;
    }
    // Inside an oversized line: keep only what follows its end.
    auto nl = data.find('\n');
    if (nl == std::string_view::npos) {
        return;
    }
    _discarding = false;
    _buf.append(data.substr(nl + 1));
}

line_reader::status line_reader::next(std::string& out) {
    if (_report_too_long) {
        _report_too_long = false;
        return status::too_long;
    }
    if (_discarding) {
        return status::need_more;
    }
    auto nl = _buf.find('\n', _scan);
    if (nl == std::string::npos) {
        _scan = _buf.size();
        if (_buf.size() > _max) {
            // Too long already, and no end in sight: drop it and skip the rest when it comes.
            _buf.clear();
            _scan = 0;
            _discarding = true;
            return status::too_long;
        }
        return status::need_more;
    }
    std::size_t len = nl;
    if (len > 0 && _buf[len - 1] == '\r') {
        --len;
    }
    bool too_long = len > _max;
    if (!too_long) {
        out.assign(_buf, 0, len);
    }
    _buf.erase(0, nl + 1);
    _scan = 0;
    return too_long ? status::too_long : status::line;
}

// ------------------------------------------------------------------------------------------------
// params_view

const json& params_view::empty_object() {
    static const json e = json::object();
    return e;
}

params_view::params_view(const json& params, std::string_view method) : _p(&params), _method(method) {
    if (params.is_null()) {
        _p = &empty_object();
    } else if (!params.is_object()) {
        throw rpc_error(error_code::invalid_params, _method + ": params must be an object of named parameters, got " +
                                                        std::string(type_name(params)));
    }
}

void params_view::bad_type(std::string_view name, std::string_view want, const json& got) const {
    throw rpc_error(error_code::invalid_params, _method + ": parameter '" + std::string(name) + "' must be " +
                                                    std::string(want) + ", got " + std::string(type_name(got)) +
                                                    (got.is_primitive() && !got.is_null() ? " " + got.dump() : ""));
}

bool params_view::has(std::string_view name) const {
    auto it = _p->find(name);
    return it != _p->end() && !it->is_null();
}

void params_view::allow_only(std::initializer_list<std::string_view> allowed) const {
    for (auto& [k, v] : _p->items()) {
        if (std::find(allowed.begin(), allowed.end(), std::string_view(k)) == allowed.end()) {
            std::string list;
            for (auto a : allowed) {
                list += list.empty() ? "" : ", ";
                list += a;
            }
            throw rpc_error(error_code::invalid_params, _method + ": unknown parameter '" + k + "'" +
                                                            (list.empty() ? " (takes none)" : " (takes " + list + ")"));
        }
    }
}

namespace {
const json* member(const json& o, std::string_view name) {
    auto it = o.find(name);
    return it == o.end() || it->is_null() ? nullptr : &*it;
}
}  // namespace

std::optional<std::string> params_view::opt_string(std::string_view name) const {
    auto* m = member(*_p, name);
    if (!m) {
        return std::nullopt;
    }
    if (!m->is_string()) {
        bad_type(name, "a string", *m);
    }
    return m->get<std::string>();
}

std::optional<std::int64_t> params_view::opt_integer(std::string_view name, std::int64_t min, std::int64_t max) const {
    auto* m = member(*_p, name);
    if (!m) {
        return std::nullopt;
    }
    std::int64_t v;
    if (m->is_number_unsigned()) {
        auto u = m->get<std::uint64_t>();
        if (u > std::uint64_t(INT64_MAX)) {
            bad_type(name, "an integer in range", *m);
        }
        v = std::int64_t(u);
    } else if (m->is_number_integer()) {
        v = m->get<std::int64_t>();
    } else if (m->is_number_float() && std::trunc(m->get<double>()) == m->get<double>() &&
               std::fabs(m->get<double>()) < 9e15) {
        v = std::int64_t(m->get<double>());  // 4.0 is an integer to a JSON client too
    } else {
        bad_type(name, "an integer", *m);
    }
    if (v < min || v > max) {
        throw rpc_error(error_code::invalid_params, _method + ": parameter '" + std::string(name) +
                                                        "' = " + std::to_string(v) + " is out of range [" +
                                                        std::to_string(min) + ", " + std::to_string(max) + "]");
    }
    return v;
}

std::optional<double> params_view::opt_number(std::string_view name, double min, double max) const {
    auto* m = member(*_p, name);
    if (!m) {
        return std::nullopt;
    }
    if (!m->is_number()) {
        bad_type(name, "a number", *m);
    }
    double v = m->get<double>();
    if (!(v >= min && v <= max)) {
        throw rpc_error(error_code::invalid_params, _method + ": parameter '" + std::string(name) + "' = " + m->dump() +
                                                        " is out of range [" + json(min).dump() + ", " +
                                                        json(max).dump() + "]");
    }
    return v;
}

std::optional<bool> params_view::opt_boolean(std::string_view name) const {
    auto* m = member(*_p, name);
    if (!m) {
        return std::nullopt;
    }
    if (!m->is_boolean()) {
        bad_type(name, "a boolean", *m);
    }
    return m->get<bool>();
}

const json* params_view::opt_object(std::string_view name) const {
    auto* m = member(*_p, name);
    if (m && !m->is_object()) {
        bad_type(name, "an object", *m);
    }
    return m;
}

const json* params_view::opt_array(std::string_view name) const {
    auto* m = member(*_p, name);
    if (m && !m->is_array()) {
        bad_type(name, "an array", *m);
    }
    return m;
}

void params_view::missing(std::string_view name) const {
    throw rpc_error(error_code::invalid_params, _method + ": parameter '" + std::string(name) + "' is required");
}

std::string params_view::string(std::string_view name) const {
    auto v = opt_string(name);
    if (!v) {
        missing(name);
    }
    return std::move(*v);
}

std::int64_t params_view::integer(std::string_view name, std::int64_t min, std::int64_t max) const {
    auto v = opt_integer(name, min, max);
    if (!v) {
        missing(name);
    }
    return *v;
}

double params_view::number(std::string_view name, double min, double max) const {
    auto v = opt_number(name, min, max);
    if (!v) {
        missing(name);
    }
    return *v;
}

bool params_view::boolean(std::string_view name) const {
    auto v = opt_boolean(name);
    if (!v) {
        missing(name);
    }
    return *v;
}

const json& params_view::object(std::string_view name) const {
    auto* v = opt_object(name);
    if (!v) {
        missing(name);
    }
    return *v;
}

const json& params_view::array(std::string_view name) const {
    auto* v = opt_array(name);
    if (!v) {
        missing(name);
    }
    return *v;
}

}  // namespace reef::ctl
