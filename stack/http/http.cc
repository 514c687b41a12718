#include "stack/http/http.hh"

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <ctime>

namespace reef::http {

namespace {

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = lower(c);
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

bool header_has_token(std::string_view value, std::string_view token) noexcept {
    while (!value.empty()) {
        auto comma = value.find(',');
        auto item = trim_ows(value.substr(0, comma));
        if (iequals(item, token)) {
            return true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        value.remove_prefix(comma + 1);
    }
    return false;
}

std::optional<std::string_view> headers::get(std::string_view name) const noexcept {
    for (auto& [k, v] : _v) {
        if (iequals(k, name)) {
            return std::string_view(v);
        }
    }
    return std::nullopt;
}

std::optional<std::string> headers::get_combined(std::string_view name) const {
    std::optional<std::string> out;
    for (auto& [k, v] : _v) {
        if (iequals(k, name)) {
            if (out) {
                *out += ", ";
                *out += v;
            } else {
                out = v;
            }
        }
    }
    return out;
}

std::size_t headers::count(std::string_view name) const noexcept {
    return std::size_t(std::count_if(_v.begin(), _v.end(), [&](auto& kv) { return iequals(kv.first, name); }));
}

void headers::set(std::string_view name, std::string value) {
    remove(name);
    _v.emplace_back(std::string(name), std::move(value));
}

void headers::remove(std::string_view name) noexcept {
    std::erase_if(_v, [&](auto& kv) { return iequals(kv.first, name); });
}

const std::string& request::param(const std::string& name) const {
    static const std::string none;
    auto it = path_params.find(name);
    return it == path_params.end() ? none : it->second;
}

std::optional<std::string_view> request::query_param(std::string_view key) const noexcept {
    for (auto& [k, v] : query) {
        if (k == key) {
            return std::string_view(v);
        }
    }
    return std::nullopt;
}

bool request::keep_alive() const noexcept {
    auto c = headers.get_combined("Connection");
    if (version_minor == 0) {
        return c && header_has_token(*c, "keep-alive");
    }
    return !(c && header_has_token(*c, "close"));
}

reply::reply(int st, std::string b, std::string content_type) : status(st), body(std::move(b)) {
    if (!content_type.empty()) {
        headers.set("Content-Type", std::move(content_type));
    }
}

reply reply::json(const nlohmann::json& j, int status) { return reply(status, j.dump(), "application/json"); }

reply reply::error(int status, std::string_view message) {
    std::string body = fmt::format("{} {}", status, reason_phrase(status));
    if (!message.empty()) {
        body += ": ";
        body += message;
    }
    body += '\n';
    return reply(status, std::move(body));
}

std::string_view reason_phrase(int status) noexcept {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size()) {
                return std::nullopt;
            }
            int hi = hex_value(s[i + 1]);
            int lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0) {
                return std::nullopt;
            }
            out += char(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out += ' ';
        } else {
            out += c;
        }
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> parse_query(std::string_view q) {
    std::vector<std::pair<std::string, std::string>> out;
    while (!q.empty()) {
        auto amp = q.find('&');
        auto item = q.substr(0, amp);
        if (!item.empty()) {
            auto eq = item.find('=');
            std::string_view k = item.substr(0, eq);
            std::string_view v = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
            auto dk = percent_decode(k, true);
            auto dv = percent_decode(v, true);
            out.emplace_back(dk ? std::move(*dk) : std::string(k), dv ? std::move(*dv) : std::string(v));
        }
        if (amp == std::string_view::npos) {
            break;
        }
        q.remove_prefix(amp + 1);
    }
    return out;
}

std::string http_date(std::chrono::system_clock::time_point t) {
    static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    return fmt::format("{}, {:02} {} {} {:02}:{:02}:{:02} GMT", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                       tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

}  // namespace reef::http
