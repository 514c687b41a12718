// The "sink" generator, for one-way bulk throughput (as iperf measures it) against
// `reef-echo --sink-ack BYTES`: each request is --request-size bytes (the echo generator's
// sliding pattern), and the server answers each --request-size bytes it has read with an 8-byte
// acknowledgement, the little-endian count of bytes it has read on the connection so far. The
// bulk data thus crosses the link once, and the count still catches a server or stack that
// loses, duplicates or cuts data (the bytes themselves are covered by the TCP checksum only; the
// echo generator checks every byte, at the price of carrying it both ways). TCP only; the
// server's --sink-ack must equal --request-size.
#include "apps/loadgen/request_generator.hh"

#include <cstring>
#include <stdexcept>

namespace reef::loadgen {

namespace {

constexpr std::size_t ack_bytes = 8;
constexpr std::size_t pattern_window = 256;

class sink_generator final : public request_generator {
    std::size_t _size;
    temporary_buffer<char> _pattern;  // requests go out as shares of it, without a copy

public:
    explicit sink_generator(std::size_t size) : _size(size), _pattern(size + pattern_window) {
        std::uint32_t x = 0x2545f491u;
        for (char* c = _pattern.get_write(); c != _pattern.get_write() + _pattern.size(); ++c) {
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
        auto check = [this, seq](temporary_buffer<char> b) {
            if (b.size() != ack_bytes) {
                throw std::runtime_error(b.empty() ? "the server closed the connection"
                                                   : "the server closed the connection in the middle of an acknowledgement");
            }
            std::uint64_t count = 0;
            for (std::size_t i = 0; i < ack_bytes; ++i) {
                count |= std::uint64_t(std::uint8_t(b[i])) << (8 * i);
            }
            return response_status{ack_bytes, count == (seq + 1) * _size};
        };
        auto f = in.read_exactly(ack_bytes);
        if (f.available() && !f.failed()) {
            return make_ready_future<response_status>(check(f.get()));
        }
        return f.then(std::move(check));
    }
};

generator_factory make_sink_generator_factory() {
    generator_factory f;
    f.name = "sink";
    f.description = "request-size bytes out, an 8-byte running byte count back (reef-echo --sink-ack; one-way bulk)";
    f.supports_udp = false;
    f.min_request_size_tcp = 1;
    f.make = [](const generator_config& cfg) -> std::unique_ptr<request_generator> {
        return std::make_unique<sink_generator>(cfg.request_size);
    };
    return f;
}

// Registered before main(), like the memcached generator.
const bool registered = [] {
    register_generator(make_sink_generator_factory());
    return true;
}();

}  // namespace

}  // namespace reef::loadgen
