// reefd's configuration: the daemon's paths and the dataplanes it supervises, read from JSON
// (/etc/reef/reefd.json by default). docs/control-protocol.md shows a full example.
//
//     {
//       "socket": "/run/reef/reefd.sock",        // reefd's own control socket
//       "run_dir": "/run/reef",                  // dataplane sockets, pid files, logs
//       "state_file": "/var/lib/reef/reefd.state.json",
//       "dataplanes": [
//         {"name": "echo0", "binary": "/usr/bin/reef-echo", "args": ["--port", "7000"],
//          "smp": 2, "cpuset": "0-1", "memory": "512M", "vdev": "net_af_packet0,iface=eth1",
//          "env": {"LANG": "C"}, "autostart": true, "stop_timeout_ms": 10000,
//          "restart": {"policy": "on-failure", "backoff_initial_ms": 200, "backoff_max_ms": 30000,
//                      "max_restarts": 0, "healthy_after_ms": 10000}}
//       ]
//     }
//
// Parsing throws ctl::rpc_error(invalid_params) whose message names the dataplane and the field,
// so the same code validates the config file and dataplane.add/update requests.
#pragma once

#include "ctl/protocol/protocol.hh"

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace reef::reefd {

using json = ctl::json;

enum class restart_kind { always, on_failure, never };

struct restart_policy {
    restart_kind kind = restart_kind::on_failure;
    std::chrono::milliseconds backoff_initial{200};
    std::chrono::milliseconds backoff_max{30000};
    /// Consecutive failed starts after which reefd gives up (state "failed"); 0: never gives up.
    unsigned max_restarts = 0;
    /// A run at least this long resets the back-off and the consecutive-failure count.
    std::chrono::milliseconds healthy_after{10000};
};

struct dataplane_spec {
    std::string name;    ///< [A-Za-z0-9_.-]{1,64}
    std::string binary;  ///< absolute path of the dataplane executable
    std::vector<std::string> args;
    std::optional<unsigned> smp;  ///< --smp
    std::string cpuset;           ///< --cpuset
    std::string memory;           ///< --memory
    std::string vdev;             ///< --dpdk-pmd --vdev VDEV
    std::map<std::string, std::string> env;
    bool autostart = true;
    std::chrono::milliseconds stop_timeout{10000};  ///< SIGTERM, then SIGKILL after this
    restart_policy restart;
};

/// Parse one dataplane definition. Throws rpc_error(invalid_params) naming the field.
dataplane_spec parse_spec(const json& j);
json to_json(const dataplane_spec& s);
/// The command line reefd runs: binary, args, then --smp/--cpuset/--memory/--dpdk-pmd --vdev
/// when set, then --ctl-socket `ctl_socket`.
std::vector<std::string> command_line(const dataplane_spec& s, const std::string& ctl_socket);
/// Apply dataplane.update's fields (smp, cpuset, memory, vdev, args, env, restart, stop_timeout_ms,
/// autostart, binary) to a copy of `s`. Throws rpc_error(invalid_params).
dataplane_spec apply_update(const dataplane_spec& s, const json& changes);

struct daemon_config {
    std::string socket = "/run/reef/reefd.sock";
    std::string run_dir = "/run/reef";
    std::string state_file = "/var/lib/reef/reefd.state.json";
    std::size_t max_line = ctl::default_max_line;
    std::vector<dataplane_spec> dataplanes;
};

/// Read and validate a config file. Throws std::runtime_error naming the file and the problem
/// (unreadable, not JSON, a bad field, two dataplanes with one name).
daemon_config load_config(const std::string& path);
/// Parse the "dataplanes" array (names must be unique). Throws rpc_error(invalid_params).
std::vector<dataplane_spec> parse_dataplanes(const json& arr);

}  // namespace reef::reefd
