// The "echo" generator: each request is --request-size bytes, each response must be the same
// bytes back. Consecutive requests carry different bytes (a window sliding over a fixed
// pseudo-random pattern), so a server that answers with the wrong request's bytes, drops or
// repeats data is caught. A datagram starts with the request's sequence number (8 bytes, little
// endian), which is how out-of-order and late answers are matched.
#include "apps/loadgen/request_generator.hh"
#include "runtime/coroutine.hh"

#include <cstring>
#include <stdexcept>

namespace reef::loadgen {

namespace {

constexpr std::size_t pattern_window = 256;
constexpr std::size_t seq_bytes = 8;
constexpr std::size_t compare_pieces_from = 4096;

class echo_generator final : public request_generator {
    std::size_t _size;
    // _size + pattern_window bytes; request seq starts at seq % pattern_window. Requests go out as
    // shares of it (no copy: the load generator must not be the slower end of a bulk test).
    temporary_buffer<char> _pattern;

    const char* bytes_of(std::uint64_t seq) const noexcept { return _pattern.get() + seq % pattern_window; }

    // A large answer is compared as it arrives, fragment by fragment, instead of being joined
    // into one buffer first (a copy of every byte).
    future<response_status> compare_pieces(input_stream<char>& in, std::uint64_t seq) {
        const char* want = bytes_of(seq);
        std::size_t got = 0;
        bool same = true;
        while (got < _size) {
            auto f = in.read_up_to(_size - got);
            temporary_buffer<char> b = co_await std::move(f);
            if (b.empty()) {
                throw std::runtime_error(got == 0 ? "the server closed the connection"
                                                  : "the server closed the connection in the middle of a response");
            }
            same = same && std::memcmp(b.get(), want + got, b.size()) == 0;
            got += b.size();
        }
        co_return response_status{_size, same};
    }

public:
    explicit echo_generator(std::size_t size) : _size(size), _pattern(size + pattern_window) {
        std::uint32_t x = 0x9e3779b9u;
        for (char* c = _pattern.get_write(); c != _pattern.get_write() + _pattern.size(); ++c) {
            // xorshift32: cheap, and no short period that would make two nearby requests equal.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *c = char(x >> 24);
        }
    }

    future<std::size_t> write_request(output_stream<char>& out, std::uint64_t seq) override {
        auto f = out.write(_pattern.share(seq % pattern_window, _size));
        if (f.available() && !f.failed()) {
            return make_ready_future<std::size_t>(_size);
        }
        return f.then([n = _size] { return n; });
    }

    future<response_status> read_response(input_stream<char>& in, std::uint64_t seq) override {
        if (_size >= compare_pieces_from) {
            return compare_pieces(in, seq);
        }
        auto check = [this, seq](temporary_buffer<char> b) {
            if (b.size() != _size) {
                throw std::runtime_error(b.empty() ? "the server closed the connection"
                                                   : "the server closed the connection in the middle of a response");
            }
            return response_status{_size, std::memcmp(b.get(), bytes_of(seq), _size) == 0};
        };
        auto f = in.read_exactly(_size);
        if (f.available() && !f.failed()) {
            return make_ready_future<response_status>(check(f.get()));
        }
        return f.then(std::move(check));
    }

    net::packet make_datagram(std::uint64_t seq) override {
        temporary_buffer<char> b(_size);
        for (std::size_t i = 0; i < seq_bytes; ++i) {
            b[i] = char(seq >> (8 * i));
        }
        std::memcpy(b.get_write() + seq_bytes, bytes_of(seq), _size - seq_bytes);
        return net::packet(std::move(b));
    }

    datagram_reply parse_datagram(const net::packet& p) override {
        if (p.len() < seq_bytes) {
            return {std::nullopt, false};
        }
        auto buf = p.to_buffer();
        std::uint64_t seq = 0;
        for (std::size_t i = 0; i < seq_bytes; ++i) {
            seq |= std::uint64_t(std::uint8_t(buf[i])) << (8 * i);
        }
        bool valid = buf.size() == _size && std::memcmp(buf.get() + seq_bytes, bytes_of(seq), _size - seq_bytes) == 0;
        return {seq, valid};
    }
};

}  // namespace

generator_factory make_echo_generator_factory() {
    generator_factory f;
    f.name = "echo";
    f.description = "request-size bytes out, the same bytes back (checked)";
    f.supports_udp = true;
    f.min_request_size_tcp = 1;
    f.min_request_size_udp = seq_bytes;
    f.make = [](const generator_config& cfg) -> std::unique_ptr<request_generator> {
        return std::make_unique<echo_generator>(cfg.request_size);
    };
    return f;
}

}  // namespace reef::loadgen
