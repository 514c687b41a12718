// Command-line options for the native TCP (--tcp-*): they fill a tcp_config that every shard's
// stack is created with. Registered by the dataplane bootstrap next to the native stack's own
// options (native_options.hh).
#pragma once

#include "stack/native/tcp.hh"

#include <CLI/CLI.hpp>

namespace reef::net {

/// Register --tcp-keepalive, --tcp-keepalive-idle/-interval/-probes, --tcp-time-wait-ms,
/// --tcp-rto-min-ms, --tcp-rto-initial-ms, --tcp-congestion, --tcp-sack, --tcp-timestamps,
/// --tcp-window-scaling, --tcp-send-buffer, --tcp-recv-buffer, --tcp-syn-cookies and
/// --tcp-nodelay in group "Native TCP options". Parsed values are written into `cfg` (which must
/// outlive parsing); defaults shown are cfg's current values. Range errors are CLI11 errors naming
/// the option. Call check_tcp_config after parsing for the checks that involve two options.
void register_tcp_options(CLI::App& app, tcp_config& cfg);

/// Cross-option checks (rto_min <= rto_initial <= rto_max). Throws std::invalid_argument naming
/// the options.
void check_tcp_config(const tcp_config& cfg);

}  // namespace reef::net
