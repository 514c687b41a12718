// reef-loadgen's load engine: per-shard connections (TCP streams, optionally TLS, or UDP
// channels) driven by a request_generator, with a fixed number of requests in flight per
// connection, per-request latency in an HDR histogram, and statistics merged on shard 0.
//
// Measurement: a request is measured when it is sent inside the measurement window, which opens
// --warmup seconds after the start and closes after --duration seconds (or, with --requests N,
// once N requests have been sent in it, spread over the shards). Its latency runs from the moment
// its batch was handed to the stream (before the flush) to the moment its whole response was read
// and checked. Requests in flight when the window closes are still awaited (bounded by
// --timeout) and counted if they were sent inside it.
#pragma once

#include "apps/loadgen/hdr_histogram.hh"
#include "apps/loadgen/request_generator.hh"
#include "runtime/clocks.hh"
#include "runtime/future.hh"
#include "runtime/shared_ptr.hh"
#include "runtime/timer.hh"
#include "stack/net/api.hh"
#include "stack/tls/tls.hh"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace reef::loadgen {

/// The run's parameters (the command line, checked). Copied to every shard.
struct load_config {
    net::socket_address server;
    std::string server_text;  ///< --server as given (for messages and the TLS name)
    protocol proto = protocol::tcp;
    unsigned connections = 1;  ///< per shard
    std::size_t request_size = 64;
    unsigned pipeline = 1;       ///< requests in flight per connection
    double duration_s = 10;      ///< measurement window length; ignored when requests > 0
    std::uint64_t requests = 0;  ///< total measured requests over all shards (0: use duration)
    double warmup_s = 0;
    double timeout_s = 2;  ///< longest wait for a response (and for a connect)
    std::string generator = "echo";
    bool tls = false;
    std::string tls_ca;           ///< trust file (PEM); empty: the system trust store
    std::string tls_server_name;  ///< SNI and verified name; empty: the host part of --server
};

/// What was measured: one shard's figures, or (merged) the whole run's.
struct load_stats {
    std::uint64_t requests = 0;           ///< measured requests answered correctly
    std::uint64_t bytes_sent = 0;         ///< request bytes of measured requests
    std::uint64_t bytes_received = 0;     ///< response bytes of measured requests
    std::uint64_t mismatches = 0;         ///< wrong answers (measured or not)
    std::uint64_t timeouts = 0;           ///< measured requests with no answer within --timeout
    std::uint64_t connection_errors = 0;  ///< connections that failed (connect, reset, closed, no answer)
    std::uint64_t connections_up = 0;     ///< connections that were established
    std::uint64_t connections = 0;        ///< connections attempted
    /// Distinct error messages, first ones first (at most max_messages), each with its count.
    std::vector<std::pair<std::string, std::uint64_t>> error_messages;
    hdr_histogram latency_ns = hdr_histogram::for_latency_ns();
    /// End of the measurement: the window's close in duration mode (or earlier, when the run was
    /// stopped or every connection ended before it), the last measured answer in --requests mode.
    /// Unset if nothing was measured.
    std::optional<steady_clock_type::time_point> window_end;

    static constexpr std::size_t max_messages = 8;

    std::uint64_t errors() const noexcept { return mismatches + timeouts + connection_errors; }
    void add_error_message(const std::string& msg, std::uint64_t count = 1);
    /// Add `other`'s figures to these.
    void merge(const load_stats& other);
};

class tcp_connection;
class udp_connection;

/// The load client of one shard (use through sharded<load_client>). Every member is called on
/// its own shard. connect(), then run(), then stats(); stop() at any time ends the run early.
class load_client {
    load_config _cfg;
    const generator_factory* _factory;
    load_stats _stats;
    std::vector<std::unique_ptr<tcp_connection>> _tcp;
    std::vector<std::unique_ptr<udp_connection>> _udp;
    steady_clock_type::time_point _measure_start{};
    std::optional<steady_clock_type::time_point> _measure_end;
    std::uint64_t _budget = 0;  // measured requests this shard may still send (requests mode)
    bool _budget_mode = false;
    bool _stopping = false;
    std::optional<steady_clock_type::time_point> _stop_time;
    std::optional<steady_clock_type::time_point> _run_end;      // when run() finished
    std::optional<steady_clock_type::time_point> _last_answer;  // of a measured request
    timer<> _watchdog;
    shared_ptr<tls::client_credentials> _tls_credentials;  // this shard's, when --tls

    void init_tls();
    void check_timeouts();

public:
    /// Throws std::invalid_argument if the generator is unknown; with --tls, what the credentials
    /// throw for an unreadable or invalid --tls-ca file.
    explicit load_client(load_config cfg);
    ~load_client();

    /// Open this shard's connections (TCP: connect, TLS handshake on first use; UDP: a channel
    /// each). Never fails: a connection that cannot be opened is counted and its message kept.
    future<> connect();

    /// Send and measure until the window closes (or this shard's share of --requests is sent),
    /// then wait for the answers still due. Times are on steady_clock, shared by all shards.
    /// Never fails; errors are counted in stats().
    future<> run(steady_clock_type::time_point measure_start, std::optional<steady_clock_type::time_point> measure_end);

    /// End the run now: no more requests; run() still collects answers already due. Idempotent.
    future<> stop();

    /// A copy of this shard's figures (for map_reduce to shard 0).
    load_stats stats() const;

    // ---- engine internals used by the connection classes ----
    /// A new stream to the server; with --tls, TLS-wrapped and with the handshake done. Fails
    /// with the stack's (or the handshake's) error.
    future<net::connected_socket> open_stream();
    /// May a request be sent now? Takes one unit of the --requests budget when measuring.
    /// Returns false when sending must end. `now` is the request's send time.
    bool take_send_permit(steady_clock_type::time_point now) noexcept;
    bool is_measured(steady_clock_type::time_point sent) const noexcept {
        return sent >= _measure_start && (!_measure_end || sent < *_measure_end);
    }
    void record_answer(steady_clock_type::time_point sent, steady_clock_type::time_point done, std::size_t bytes_sent,
                       std::size_t bytes_received) noexcept;
    load_stats& mutable_stats() noexcept { return _stats; }
    const load_config& config() const noexcept { return _cfg; }
    bool stopping() const noexcept { return _stopping; }
};

/// The host part of "host:port" / "[v6]:port" (the TLS server name default).
std::string host_of(const std::string& server);

/// Parse --server: a numeric "ip:port" / "[ip6]:port", or "name:port" resolved with
/// net::resolve(). Fails with std::invalid_argument (malformed) or std::system_error (unknown
/// name).
future<net::socket_address> resolve_server(std::string server);

}  // namespace reef::loadgen
