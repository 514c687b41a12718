#include "runtime/io/io_properties.hh"

#include "runtime/io/io_log.hh"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <utility>
#include <vector>

namespace reef::io {

namespace {

// The io-properties file is small and its shape is fixed, so a full YAML library is not worth a
// dependency: this reads the subset iotune writes (block mappings and sequences, plain or quoted
// scalars, comments) plus JSON (YAML's flow style), keeping each value's line for error messages.
struct node {
    enum class kind { scalar, map, seq } k = kind::scalar;
    std::string value;
    std::vector<std::pair<std::string, node>> map;
    std::vector<int> key_lines;
    std::vector<node> seq;
    int line = 0;
};

class parse_failure {
public:
    int line;
    std::string msg;
};

[[noreturn]] void fail(int line, std::string msg) { throw parse_failure{line, std::move(msg)}; }

// JSON / YAML flow: objects, arrays, strings, numbers and bare words.
class flow_parser {
    std::string_view _s;
    std::size_t _p = 0;
    int _line;

public:
    flow_parser(std::string_view s, int first_line) : _s(s), _line(first_line) {}

    void skip_ws() {
        while (_p < _s.size() && (_s[_p] == ' ' || _s[_p] == '\t' || _s[_p] == '\n' || _s[_p] == '\r')) {
            if (_s[_p] == '\n') {
                ++_line;
            }
            ++_p;
        }
    }
    bool at_end() {
        skip_ws();
        return _p >= _s.size();
    }
    int line() const { return _line; }

    node parse_value() {
        skip_ws();
        if (_p >= _s.size()) {
            fail(_line, "unexpected end of input");
        }
        char c = _s[_p];
        node n;
        n.line = _line;
        if (c == '{') {
            n.k = node::kind::map;
            ++_p;
            skip_ws();
            if (_p < _s.size() && _s[_p] == '}') {
                ++_p;
                return n;
            }
            for (;;) {
                skip_ws();
                int kl = _line;
                node key = parse_value();
                if (key.k != node::kind::scalar) {
                    fail(kl, "expected a field name");
                }
                skip_ws();
                if (_p >= _s.size() || _s[_p] != ':') {
                    fail(_line, fmt::format("expected ':' after field '{}'", key.value));
                }
                ++_p;
                n.key_lines.push_back(kl);
                n.map.emplace_back(key.value, parse_value());
                skip_ws();
                if (_p < _s.size() && _s[_p] == ',') {
                    ++_p;
                    continue;
                }
                if (_p < _s.size() && _s[_p] == '}') {
                    ++_p;
                    return n;
                }
                fail(_line, "expected ',' or '}'");
            }
        }
        if (c == '[') {
            n.k = node::kind::seq;
            ++_p;
            skip_ws();
            if (_p < _s.size() && _s[_p] == ']') {
                ++_p;
                return n;
            }
            for (;;) {
                n.seq.push_back(parse_value());
                skip_ws();
                if (_p < _s.size() && _s[_p] == ',') {
                    ++_p;
                    continue;
                }
                if (_p < _s.size() && _s[_p] == ']') {
                    ++_p;
                    return n;
                }
                fail(_line, "expected ',' or ']'");
            }
        }
        if (c == '"' || c == '\'') {
            ++_p;
            while (_p < _s.size() && _s[_p] != c) {
                if (_s[_p] == '\\' && c == '"' && _p + 1 < _s.size()) {
                    ++_p;
                    char e = _s[_p];
                    n.value += e == 'n' ? '\n' : e == 't' ? '\t' : e;
                } else if (_s[_p] == '\n') {
                    fail(_line, "unterminated string");
                } else {
                    n.value += _s[_p];
                }
                ++_p;
            }
            if (_p >= _s.size()) {
                fail(_line, "unterminated string");
            }
            ++_p;
            return n;
        }
        std::size_t b = _p;
        while (_p < _s.size() && std::strchr(",:]}\n\r", _s[_p]) == nullptr) {
            ++_p;
        }
        n.value = std::string(_s.substr(b, _p - b));
        while (!n.value.empty() && (n.value.back() == ' ' || n.value.back() == '\t')) {
            n.value.pop_back();
        }
        if (n.value.empty()) {
            fail(_line, fmt::format("unexpected '{}'", _s[_p]));
        }
        return n;
    }
};

struct text_line {
    int no;
    int indent;
    std::string text;
};

std::string strip_comment(const std::string& s) {
    char quote = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (quote) {
            if (c == quote) {
                quote = 0;
            }
        } else if (c == '"' || c == '\'') {
            quote = c;
        } else if (c == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) {
            return s.substr(0, i);
        }
    }
    return s;
}

class block_parser {
    std::vector<text_line> _lines;
    std::size_t _i = 0;

public:
    explicit block_parser(std::vector<text_line> lines) : _lines(std::move(lines)) {}

    bool done() const { return _i >= _lines.size(); }
    const text_line& current() const { return _lines[_i]; }

    node scalar_or_flow(const std::string& v, int line) {
        if (!v.empty() && (v[0] == '{' || v[0] == '[' || v[0] == '"' || v[0] == '\'')) {
            flow_parser fp(v, line);
            node n = fp.parse_value();
            if (!fp.at_end()) {
                fail(line, "unexpected text after the value");
            }
            return n;
        }
        node n;
        n.value = v;
        n.line = line;
        return n;
    }

    node parse_block(int indent) {
        auto& first = _lines[_i];
        if (first.indent != indent) {
            fail(first.no, "unexpected indentation");
        }
        node n;
        n.line = first.no;
        if (first.text == "-" || first.text.starts_with("- ")) {
            n.k = node::kind::seq;
            while (!done() && current().indent == indent && (current().text == "-" || current().text.starts_with("- "))) {
                auto& l = _lines[_i];
                if (l.text == "-") {
                    ++_i;
                    if (done() || current().indent <= indent) {
                        fail(l.no, "empty list item");
                    }
                    n.seq.push_back(parse_block(current().indent));
                    continue;
                }
                // "- key: value" starts a mapping whose further keys are indented to match "key".
                std::size_t off = 2;
                while (off < l.text.size() && l.text[off] == ' ') {
                    ++off;
                }
                l.indent += int(off);
                l.text = l.text.substr(off);
                n.seq.push_back(parse_block(l.indent));
            }
        } else {
            n.k = node::kind::map;
            while (!done() && current().indent == indent) {
                auto& l = _lines[_i];
                if (l.text.starts_with("- ")) {
                    fail(l.no, "a list item where a field was expected");
                }
                int no = l.no;
                std::string key, value;
                std::size_t colon = std::string::npos;
                if (!l.text.empty() && (l.text[0] == '"' || l.text[0] == '\'')) {
                    auto end = l.text.find(l.text[0], 1);
                    if (end == std::string::npos) {
                        fail(no, "unterminated string");
                    }
                    key = l.text.substr(1, end - 1);
                    colon = l.text.find(':', end);
                } else {
                    colon = l.text.find(':');
                    if (colon != std::string::npos) {
                        key = l.text.substr(0, colon);
                    }
                }
                if (colon == std::string::npos || (colon + 1 < l.text.size() && l.text[colon + 1] != ' ')) {
                    fail(no, fmt::format("expected 'field: value', got '{}'", l.text));
                }
                while (!key.empty() && key.back() == ' ') {
                    key.pop_back();
                }
                value = l.text.substr(colon + 1);
                auto b = value.find_first_not_of(' ');
                value = b == std::string::npos ? std::string() : value.substr(b);
                ++_i;
                node child;
                if (!value.empty()) {
                    child = scalar_or_flow(value, no);
                } else if (!done() && current().indent > indent) {
                    child = parse_block(current().indent);
                } else if (!done() && current().indent == indent && current().text.starts_with("- ")) {
                    child = parse_block(indent);  // YAML allows a list at its key's indentation
                } else {
                    child.line = no;
                }
                for (auto& [k, v] : n.map) {
                    if (k == key) {
                        fail(no, fmt::format("{}: given twice", key));
                    }
                }
                n.key_lines.push_back(no);
                n.map.emplace_back(std::move(key), std::move(child));
            }
        }
        if (!done() && current().indent > indent) {
            fail(current().no, "unexpected indentation");
        }
        return n;
    }
};

node parse_tree(std::string_view text) {
    std::size_t first = text.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) {
        fail(1, "the file is empty");
    }
    std::vector<text_line> lines;
    {
        std::string s(text);
        std::istringstream in(s);
        std::string l;
        int no = 0;
        while (std::getline(in, l)) {
            ++no;
            if (!l.empty() && l.back() == '\r') {
                l.pop_back();
            }
            if (l.find('\t') != std::string::npos && l.find_first_not_of(" \t") != std::string::npos &&
                l.find('\t') < l.find_first_not_of(" \t")) {
                fail(no, "tabs are not allowed for indentation");
            }
            l = strip_comment(l);
            while (!l.empty() && (l.back() == ' ' || l.back() == '\t')) {
                l.pop_back();
            }
            auto b = l.find_first_not_of(' ');
            if (b == std::string::npos || l == "---") {
                continue;
            }
            lines.push_back({no, int(b), l.substr(b)});
        }
    }
    if (lines.empty()) {
        fail(1, "the file is empty");
    }
    if (lines[0].text[0] == '{' || lines[0].text[0] == '[') {
        // JSON: parse the whole text (comments are not JSON, so the raw text is used).
        int line = 1;
        for (std::size_t i = 0; i < first; ++i) {
            line += text[i] == '\n';
        }
        flow_parser fp(text.substr(first), line);
        node n = fp.parse_value();
        if (!fp.at_end()) {
            fail(fp.line(), "unexpected text after the end of the document");
        }
        return n;
    }
    block_parser bp(std::move(lines));
    node n = bp.parse_block(bp.current().indent);
    if (!bp.done()) {
        fail(bp.current().no, "unexpected indentation");
    }
    return n;
}

double positive_number(const node& v, const std::string& field) {
    if (v.k != node::kind::scalar || v.value.empty()) {
        fail(v.line, fmt::format("{}: expected a positive number", field));
    }
    errno = 0;
    char* end = nullptr;
    double d = std::strtod(v.value.c_str(), &end);
    if (end != v.value.c_str() + v.value.size() || errno != 0 || !std::isfinite(d) || d <= 0) {
        fail(v.line, fmt::format("{}: expected a positive number, got '{}'", field, v.value));
    }
    return d;
}

disk_properties to_disk(const node& d, int line) {
    if (d.k != node::kind::map) {
        fail(d.line ? d.line : line, "disks: each entry must be a mapping of fields");
    }
    disk_properties p;
    bool have[5] = {};
    static const char* required[] = {"mountpoint", "read_iops", "read_bandwidth", "write_iops", "write_bandwidth"};
    for (std::size_t i = 0; i < d.map.size(); ++i) {
        auto& [k, v] = d.map[i];
        int kl = d.key_lines[i];
        if (k == "mountpoint") {
            if (v.k != node::kind::scalar || v.value.empty()) {
                fail(kl, "mountpoint: expected a path");
            }
            p.mountpoint = v.value;
            have[0] = true;
        } else if (k == "read_iops") {
            p.read_iops = positive_number(v, k);
            have[1] = true;
        } else if (k == "read_bandwidth") {
            p.read_bandwidth = positive_number(v, k);
            have[2] = true;
        } else if (k == "write_iops") {
            p.write_iops = positive_number(v, k);
            have[3] = true;
        } else if (k == "write_bandwidth") {
            p.write_bandwidth = positive_number(v, k);
            have[4] = true;
        } else if (k == "max_in_flight") {
            double m = positive_number(v, k);
            if (m != std::floor(m) || m > 65536) {
                fail(v.line, fmt::format("max_in_flight: expected a whole number from 1 to 65536, got '{}'", v.value));
            }
            p.max_in_flight = unsigned(m);
        } else {
            fail(kl, fmt::format("unknown field '{}' (known: mountpoint, read_iops, read_bandwidth, write_iops, "
                                 "write_bandwidth, max_in_flight)", k));
        }
    }
    for (int i = 0; i < 5; ++i) {
        if (!have[i]) {
            fail(d.line ? d.line : line, fmt::format("{}: missing from this disk entry", required[i]));
        }
    }
    return p;
}

io_config& config_storage() {
    static io_config cfg;
    return cfg;
}
std::mutex config_mutex;

}  // namespace

disk_properties parse_io_properties(std::string_view text, std::string_view origin) {
    try {
        node root = parse_tree(text);
        if (root.k != node::kind::map) {
            fail(root.line, "expected a mapping with a 'disks' field at the top");
        }
        const node* disks = nullptr;
        for (std::size_t i = 0; i < root.map.size(); ++i) {
            if (root.map[i].first == "disks") {
                disks = &root.map[i].second;
            } else {
                fail(root.key_lines[i], fmt::format("unknown field '{}' (expected 'disks')", root.map[i].first));
            }
        }
        if (!disks) {
            fail(root.line, "disks: missing");
        }
        if (disks->k != node::kind::seq || disks->seq.empty()) {
            fail(disks->line, "disks: expected a list of at least one disk");
        }
        std::vector<disk_properties> all;
        for (auto& d : disks->seq) {
            all.push_back(to_disk(d, disks->line));
        }
        if (all.size() > 1) {
            io_log.warn("{}: {} disks listed; only the first ({}) is used: every file of a shard goes through one "
                        "queue", origin, all.size(), all.front().mountpoint);
        }
        return all.front();
    } catch (const parse_failure& f) {
        throw io_properties_error(fmt::format("{}, line {}: {}", origin, f.line, f.msg));
    }
}

disk_properties load_io_properties(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        throw io_properties_error(fmt::format("{}: cannot read the io-properties file: {}", path, std::strerror(errno)));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_io_properties(ss.str(), path);
}

std::string format_io_properties(const disk_properties& d, std::string_view comment) {
    std::string out;
    if (!comment.empty()) {
        std::istringstream in{std::string(comment)};
        std::string l;
        while (std::getline(in, l)) {
            out += fmt::format("# {}\n", l);
        }
    }
    // Quoted with escapes, so any path reads back unchanged.
    std::string mp = "\"";
    for (char c : d.mountpoint) {
        if (c == '"' || c == '\\') {
            mp += '\\';
        }
        mp += c;
    }
    mp += '"';
    out += "disks:\n";
    out += fmt::format("  - mountpoint: {}\n", mp);
    out += fmt::format("    read_iops: {:.0f}\n", d.read_iops);
    out += fmt::format("    read_bandwidth: {:.0f}\n", d.read_bandwidth);
    out += fmt::format("    write_iops: {:.0f}\n", d.write_iops);
    out += fmt::format("    write_bandwidth: {:.0f}\n", d.write_bandwidth);
    out += fmt::format("    max_in_flight: {}\n", d.max_in_flight);
    return out;
}

backend_choice parse_backend_choice(std::string_view s) {
    if (s == "auto") return backend_choice::auto_select;
    if (s == "io_uring") return backend_choice::io_uring;
    if (s == "linux-aio") return backend_choice::linux_aio;
    throw std::invalid_argument(fmt::format("invalid reactor backend '{}' (expected io_uring, linux-aio or auto)", s));
}

const char* to_string(backend_choice c) noexcept {
    switch (c) {
    case backend_choice::auto_select: return "auto";
    case backend_choice::io_uring: return "io_uring";
    case backend_choice::linux_aio: return "linux-aio";
    }
    return "?";
}

void set_io_config(io_config cfg) {
    std::lock_guard lk(config_mutex);
    config_storage() = std::move(cfg);
}

io_config get_io_config() {
    std::lock_guard lk(config_mutex);
    return config_storage();
}

}  // namespace reef::io
