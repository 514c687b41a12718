// The "memcached" generator (brief M): memcached text-protocol gets and sets, over TCP or UDP
// (memcached's 8-byte UDP frame header). Request `seq` is a get with probability
// --memcached-get-ratio (decided by a hash of seq, so every run sends the same sequence), for key
// number hash(seq) % --memcached-keys, spelled as --memcached-key-size bytes ("key:000...123").
// A set stores --request-size bytes whose content is a function of the key, so a get's value is
// checked byte for byte whichever set stored it. Answers: set -> STORED; get -> END (a miss, valid)
// or one VALUE of the right key, size and content, then END. Anything else is an invalid answer;
// an answer whose end cannot be found fails the connection.
//
// It registers itself (a static initializer: the registry is a function-local static, so the
// order of initialization does not matter) and is listed by reef-loadgen --help.
#include "apps/loadgen/request_generator.hh"

#include "runtime/coroutine.hh"

#include <fmt/format.h>

#include <charconv>
#include <cstring>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace reef::loadgen {

namespace {

struct memcached_options {
    std::uint64_t keys = 100000;
    double get_ratio = 0.9;
    std::size_t key_size = 32;
};

memcached_options& options() {
    static memcached_options o;
    return o;
}

std::uint64_t mix(std::uint64_t x) noexcept {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

constexpr std::size_t udp_header = 8;

class memcached_generator final : public request_generator {
    memcached_options _o;
    std::size_t _value_size;
    std::uint64_t _salt;  // differs per connection, so connections do not send the same keys in lockstep
    std::string _in;      // bytes read and not yet consumed (TCP)
    std::string _req;     // the request being built
    std::unordered_map<std::uint16_t, std::uint64_t> _udp_ids;  // request id -> seq (UDP)

    bool is_get(std::uint64_t seq) const noexcept {
        return double(mix(seq * 2 + 1 + _salt) % 1000000) < _o.get_ratio * 1000000.0;
    }
    std::uint64_t key_of(std::uint64_t seq) const noexcept { return mix(seq * 2 + _salt) % _o.keys; }
    std::string key(std::uint64_t k) const {
        std::string s = fmt::format("key:{}", k);
        if (s.size() < _o.key_size) {
            s.insert(4, _o.key_size - s.size(), '0');
        }
        return s;
    }
    char value_byte(std::uint64_t k, std::size_t i) const noexcept { return char('a' + (k * 7 + i) % 26); }

    void build(std::uint64_t seq) {
        const std::uint64_t k = key_of(seq);
        if (is_get(seq)) {
            _req = fmt::format("get {}\r\n", key(k));
            return;
        }
        _req = fmt::format("set {} 0 0 {}\r\n", key(k), _value_size);
        for (std::size_t i = 0; i < _value_size; ++i) {
            _req += value_byte(k, i);
        }
        _req += "\r\n";
    }

    // The length of the whole answer to `seq` at the start of `in`, or 0 if incomplete; `valid`
    // says whether it is the right answer. Throws when the answer's end cannot be found.
    std::size_t parse(std::string_view in, std::uint64_t seq, bool& valid) const {
        std::size_t nl = in.find("\r\n");
        if (nl == std::string_view::npos) {
            if (in.size() > 4096) {
                throw std::runtime_error("memcached: an answer line longer than 4 KiB");
            }
            return 0;
        }
        std::string_view line = in.substr(0, nl);
        if (!is_get(seq)) {
            valid = line == "STORED";
            return nl + 2;
        }
        if (line == "END") {
            valid = true;  // a miss
            return nl + 2;
        }
        if (!line.starts_with("VALUE ")) {
            valid = false;
            return nl + 2;  // an error line
        }
        // VALUE <key> <flags> <bytes>
        auto sp = line.rfind(' ');
        std::size_t n = 0;
        auto r = std::from_chars(line.data() + sp + 1, line.data() + line.size(), n);
        if (r.ec != std::errc() || n > (64u << 20)) {
            throw std::runtime_error("memcached: a VALUE line with a bad length");
        }
        const std::size_t total = nl + 2 + n + 2 + 5;
        if (in.size() < total) {
            return 0;
        }
        const std::uint64_t k = key_of(seq);
        valid = line.substr(6, line.find(' ', 6) - 6) == key(k) && n == _value_size &&
                in.substr(nl + 2 + n, 7) == "\r\nEND\r\n";
        for (std::size_t i = 0; valid && i < n; ++i) {
            valid = in[nl + 2 + i] == value_byte(k, i);
        }
        return total;
    }

public:
    memcached_generator(const memcached_options& o, std::size_t value_size, const generator_config& cfg)
        : _o(o), _value_size(value_size), _salt(mix((std::uint64_t(cfg.shard) << 32) | cfg.connection)) {}

    future<std::size_t> write_request(output_stream<char>& out, std::uint64_t seq) override {
        build(seq);
        auto f = out.write(_req.data(), _req.size());
        if (f.available() && !f.failed()) {
            return make_ready_future<std::size_t>(_req.size());
        }
        return f.then([n = _req.size()] { return n; });
    }

    future<response_status> read_response(input_stream<char>& in, std::uint64_t seq) override {
        for (;;) {
            bool valid = false;
            if (std::size_t n = parse(_in, seq, valid)) {
                _in.erase(0, n);
                co_return response_status{n, valid};
            }
            auto b = co_await in.read();
            if (b.empty()) {
                throw std::runtime_error(_in.empty() ? "the server closed the connection"
                                                     : "the server closed the connection in the middle of a response");
            }
            _in.append(b.get(), b.size());
        }
    }

    net::packet make_datagram(std::uint64_t seq) override {
        build(seq);
        const std::uint16_t id = std::uint16_t(seq);
        _udp_ids[id] = seq;
        std::string d(udp_header, '\0');
        d[0] = char(id >> 8);
        d[1] = char(id & 0xff);
        d[5] = 1;  // datagram 0 of 1
        d += _req;
        return net::packet(d.data(), d.size());
    }

    datagram_reply parse_datagram(const net::packet& p) override {
        auto buf = p.to_buffer();
        if (buf.size() < udp_header) {
            return {std::nullopt, false};
        }
        const std::uint16_t id = std::uint16_t((std::uint8_t(buf[0]) << 8) | std::uint8_t(buf[1]));
        auto it = _udp_ids.find(id);
        if (it == _udp_ids.end()) {
            return {std::nullopt, false};
        }
        const std::uint64_t seq = it->second;
        _udp_ids.erase(it);
        // Only one-datagram answers are expected (values of a datagram's size).
        if (buf[2] != 0 || buf[3] != 0 || buf[4] != 0 || buf[5] != 1) {
            return {seq, false};
        }
        bool valid = false;
        std::string_view body(buf.get() + udp_header, buf.size() - udp_header);
        std::size_t n = 0;
        try {
            n = parse(body, seq, valid);
        } catch (const std::runtime_error&) {
            return {seq, false};
        }
        return {seq, valid && n == body.size()};
    }
};

generator_factory make_memcached_generator_factory() {
    generator_factory f;
    f.name = "memcached";
    f.description = "memcached text gets/sets (--memcached-*; --request-size is the value size), checked";
    f.supports_udp = true;
    f.min_request_size_tcp = 1;
    f.min_request_size_udp = 1;
    f.register_options = [](CLI::App& app) {
        auto& o = options();
        app.add_option("--memcached-keys", o.keys, "memcached generator: number of distinct keys")
            ->check(CLI::Range(std::uint64_t(1), std::uint64_t(1) << 40))
            ->capture_default_str();
        app.add_option("--memcached-get-ratio", o.get_ratio, "memcached generator: fraction of requests that are gets")
            ->check(CLI::Range(0.0, 1.0))
            ->capture_default_str();
        app.add_option("--memcached-key-size", o.key_size, "memcached generator: key length in bytes")
            ->check(CLI::Range(std::size_t(8), std::size_t(250)))
            ->capture_default_str();
    };
    f.make = [](const generator_config& cfg) -> std::unique_ptr<request_generator> {
        if (cfg.proto == protocol::udp && cfg.request_size > 1300) {
            throw std::invalid_argument(
                "--request-size: the memcached generator's values must fit one datagram "
                "over UDP (at most 1300 bytes)");
        }
        return std::make_unique<memcached_generator>(options(), cfg.request_size, cfg);
    };
    return f;
}

// Registered before main() (see the file comment).
const bool registered = [] {
    register_generator(make_memcached_generator_factory());
    return true;
}();

}  // namespace

}  // namespace reef::loadgen
