#include "stack/native/tcp_config_options.hh"

#include <fmt/format.h>

#include <map>
#include <stdexcept>
#include <string>

namespace reef::net {

namespace {

template <typename Duration>
void add_duration(CLI::App& app, const char* name, Duration& field, const char* help, const char* group,
                  std::uint64_t min, std::uint64_t max) {
    app.add_option_function<std::uint64_t>(
           name, [&field](const std::uint64_t& v) { field = Duration(v); }, help)
        ->default_str(std::to_string(field.count()))
        ->check(CLI::Range(min, max))
        ->group(group);
}

}  // namespace

void register_tcp_options(CLI::App& app, tcp_config& cfg) {
    const char* g = "Native TCP options";
    app.add_flag("--tcp-keepalive", cfg.keepalive_by_default,
                 "Start every native TCP connection with keepalive on (an app may still turn it off per "
                 "connection)")
        ->group(g);
    add_duration(app, "--tcp-keepalive-idle", cfg.keepalive.idle,
                 "Idle time before the first keepalive probe (s)", g, 1, 7 * 24 * 3600);
    add_duration(app, "--tcp-keepalive-interval", cfg.keepalive.interval, "Interval between keepalive probes (s)", g,
                 1, 24 * 3600);
    app.add_option("--tcp-keepalive-probes", cfg.keepalive.count,
                   "Unanswered keepalive probes before the connection is dropped")
        ->check(CLI::Range(1u, 1000u))
        ->capture_default_str()
        ->group(g);
    add_duration(app, "--tcp-time-wait-ms", cfg.time_wait, "How long a closed connection stays in TIME_WAIT (ms)",
                 g, 1, 3600 * 1000);
    add_duration(app, "--tcp-rto-min-ms", cfg.rto_min, "Lower bound of the retransmission timeout (ms)", g, 1,
                 60 * 1000);
    add_duration(app, "--tcp-rto-initial-ms", cfg.rto_initial,
                 "Retransmission timeout before the first RTT sample (ms; RFC 6298 says 1000)", g, 1, 60 * 1000);
    static const std::map<std::string, tcp_congestion_algorithm> algorithms{
        {"cubic", tcp_congestion_algorithm::cubic}, {"newreno", tcp_congestion_algorithm::newreno}};
    app.add_option("--tcp-congestion", cfg.congestion, "Congestion control of new connections: cubic or newreno")
        ->transform(CLI::CheckedTransformer(algorithms, CLI::ignore_case))
        ->option_text("cubic|newreno")
        ->default_str(cfg.congestion == tcp_congestion_algorithm::cubic ? "cubic" : "newreno")
        ->group(g);
    app.add_option("--tcp-sack", cfg.sack, "Offer SACK (RFC 2018)")->capture_default_str()->group(g);
    app.add_option("--tcp-timestamps", cfg.timestamps, "Offer timestamps (RFC 7323)")->capture_default_str()->group(g);
    app.add_option("--tcp-window-scaling", cfg.window_scaling, "Offer window scaling (RFC 7323)")
        ->capture_default_str()
        ->group(g);
    app.add_option("--tcp-syn-cookies", cfg.syn_cookies, "Answer SYNs beyond a listener's backlog with SYN cookies")
        ->capture_default_str()
        ->group(g);
    app.add_option("--tcp-nodelay", cfg.nodelay, "New connections start with Nagle's algorithm off")
        ->capture_default_str()
        ->group(g);
    app.add_option("--tcp-send-buffer", cfg.send_buffer_size, "Default per-connection send buffer (bytes)")
        ->check(CLI::Range(std::size_t(4096), std::size_t(1) << 30))
        ->capture_default_str()
        ->group(g);
    app.add_option("--tcp-recv-buffer", cfg.recv_buffer_size, "Default per-connection receive buffer (bytes)")
        ->check(CLI::Range(std::size_t(4096), std::size_t(1) << 30))
        ->capture_default_str()
        ->group(g);
}

void check_tcp_config(const tcp_config& cfg) {
    if (cfg.rto_min > cfg.rto_initial) {
        throw std::invalid_argument(fmt::format("--tcp-rto-min-ms {} is above --tcp-rto-initial-ms {}",
                                                cfg.rto_min.count(), cfg.rto_initial.count()));
    }
    if (cfg.rto_initial > cfg.rto_max) {
        throw std::invalid_argument(fmt::format("--tcp-rto-initial-ms {} is above the maximum RTO of {} ms",
                                                cfg.rto_initial.count(), cfg.rto_max.count()));
    }
}

}  // namespace reef::net
