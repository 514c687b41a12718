// Request generators: what reef-loadgen sends and how it checks the answers. The load engine
// (loadgen.hh) owns connections, pacing, timing and statistics; a generator only knows one
// protocol. Generators are registered by name and chosen with --generator; "echo" is built in,
// others (memcached, ...) register themselves in register_builtin_generators().
//
// Contract: one generator object per connection (TCP) or per channel (UDP), created and used on
// that connection's shard only. For a stream connection the engine calls write_request() for
// requests 0, 1, 2, ... in order, possibly several before reading any response (--pipeline), and
// read_response() once per request in the same order; a generator may therefore keep per-request
// state in a queue. Datagram requests may be answered out of order, or not at all: parse_datagram
// must say which request a datagram answers.
#pragma once

#include "runtime/future.hh"
#include "runtime/iostream.hh"
#include "stack/net/packet.hh"

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace reef::loadgen {

enum class protocol { tcp, udp };

/// What a generator is built from.
struct generator_config {
    std::size_t request_size = 64;  ///< --request-size: bytes per request (payload, as the generator defines it)
    protocol proto = protocol::tcp;
    unsigned shard = 0;       ///< the shard the generator runs on
    unsigned connection = 0;  ///< the connection's index on its shard
};

/// The result of reading one response.
struct response_status {
    std::size_t bytes = 0;  ///< bytes consumed from the stream for this response
    bool valid = true;      ///< false: not the answer the request called for (an error; the stream stays usable)
};

/// A datagram's meaning, from parse_datagram().
struct datagram_reply {
    std::optional<std::uint64_t> seq;  ///< the request it answers; nullopt: cannot tell (an error)
    bool valid = true;                 ///< the payload is the right answer to request `seq`
};

class request_generator {
public:
    virtual ~request_generator() = default;

    /// Append request number `seq` to `out` without flushing (the engine flushes once per batch
    /// of requests). Returns the bytes written. A stream error passes through as the future's
    /// exception.
    virtual future<std::size_t> write_request(output_stream<char>& out, std::uint64_t seq) = 0;

    /// Read the whole response to request `seq` from `in`. Fails (std::runtime_error saying so)
    /// when the stream ends or breaks mid-response or before it; a response that arrived whole but
    /// is wrong returns valid = false, and the next read starts after it. If the generator cannot
    /// find where a wrong response ends, it fails instead (the connection is then closed).
    virtual future<response_status> read_response(input_stream<char>& in, std::uint64_t seq) = 0;

    /// Request `seq` as one datagram (only for generators registered with supports_udp).
    virtual net::packet make_datagram(std::uint64_t seq);
    /// Which request `p` answers and whether it is the right answer.
    virtual datagram_reply parse_datagram(const net::packet& p);
};

/// A registered generator kind.
struct generator_factory {
    std::string name;         ///< the --generator value
    std::string description;  ///< one line for --help
    bool supports_udp = false;
    /// Smallest --request-size this generator accepts for each protocol.
    std::size_t min_request_size_tcp = 1;
    std::size_t min_request_size_udp = 1;
    /// Optional: add the generator's own options to the app (before parsing). They are parsed
    /// whatever generator is chosen, so give them names of their own (e.g. --memcached-keys).
    std::function<void(CLI::App&)> register_options;
    /// Create a generator for one connection. Called on the connection's shard. May throw
    /// std::invalid_argument for a configuration it cannot serve (reported as a usage error).
    std::function<std::unique_ptr<request_generator>(const generator_config&)> make;
};

/// Add a generator kind (before options are parsed). Throws std::invalid_argument if the name is
/// taken or empty, or `make` is empty. Not thread-safe: call from main() before the shards start.
void register_generator(generator_factory f);
/// The registered kind named `name`, or nullptr. Safe from any shard once registration is over.
const generator_factory* find_generator(std::string_view name) noexcept;
/// Names of the registered kinds, sorted.
std::vector<std::string> generator_names();

/// Register the generators shipped with reef-loadgen ("echo", ...). Idempotent.
void register_builtin_generators();

/// The "echo" generator's factory (echo_generator.cc).
generator_factory make_echo_generator_factory();

}  // namespace reef::loadgen
