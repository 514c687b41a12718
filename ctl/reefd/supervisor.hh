// reefd's supervision of one dataplane process: start (fork/exec with stdout and stderr appended
// to log files in the run directory, so that they outlive reefd), exit detection through a pidfd,
// restarts with exponential back-off, graceful stop (SIGTERM, then SIGKILL after the spec's
// timeout), and re-attachment to a process a previous reefd started (pid file + control socket).
//
// Single-threaded: every member runs on reefd's io_context thread.
#pragma once

#include "ctl/reefd/config.hh"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace reef::reefd {

namespace asio = boost::asio;

enum class dp_state { stopped, running, stopping, backoff, failed };
std::string_view to_string(dp_state s) noexcept;

/// How a run ended.
struct exit_info {
    bool known = false;  ///< false for a re-attached process (not our child: no status)
    int code = -1;       ///< exit code, or -1
    int signal = 0;      ///< terminating signal, or 0
    std::chrono::system_clock::time_point at;
    std::string describe() const;  ///< "exit code 1", "killed by signal 9 (Killed)", "exit status unknown"
};

class dataplane {
    asio::io_context& _io;
    dataplane_spec _spec;
    std::string _run_dir;
    std::function<void()> _changed;  // persist state
    dp_state _state = dp_state::stopped;
    bool _want_running = false;
    pid_t _pid = 0;
    bool _child = false;     // we forked it (waitpid gives the status)
    bool _attached = false;  // re-attached after a reefd restart
    unsigned _restarts = 0;
    unsigned _consecutive_failures = 0;
    std::optional<exit_info> _last_exit;
    std::chrono::steady_clock::time_point _started;
    std::chrono::system_clock::time_point _started_wall;
    std::chrono::steady_clock::time_point _next_restart;
    std::unique_ptr<asio::posix::stream_descriptor> _pidfd;
    asio::steady_timer _restart_timer;
    asio::steady_timer _kill_timer;
    std::string _last_error;        // why the last start failed before exec (fork, pidfd)
    std::uint64_t _generation = 0;  // bumps per run: stale callbacks see a newer run and do nothing

public:
    dataplane(asio::io_context& io, dataplane_spec spec, std::string run_dir, std::function<void()> changed);
    ~dataplane();

    const dataplane_spec& spec() const noexcept { return _spec; }
    dp_state state() const noexcept { return _state; }
    bool want_running() const noexcept { return _want_running; }
    pid_t pid() const noexcept { return _pid; }
    unsigned restarts() const noexcept { return _restarts; }
    void set_restarts(unsigned n) noexcept { _restarts = n; }
    std::string socket_path() const;
    std::string pid_file() const;
    std::string log_file(std::string_view stream) const;  ///< "stdout" or "stderr"

    /// Start (when stopped, failed or in back-off). Throws rpc_error(failed) when fork fails.
    void start();
    /// Ask to stop: SIGTERM now, SIGKILL after the spec's stop timeout. The state is `stopping`
    /// until the exit is seen, then `stopped`. No restart follows.
    void stop();
    /// Replace the spec (the next start uses it).
    void set_spec(dataplane_spec s) { _spec = std::move(s); }
    /// Try to adopt a process a previous reefd started: the pid file names a live process whose
    /// command line starts with the spec's binary. Returns true when attached (state running).
    bool try_attach();

    /// The last `lines` lines of the stdout or stderr log.
    std::string tail(std::string_view stream, std::size_t lines) const;
    json status() const;

private:
    void spawn();
    void watch_exit();
    void on_exit(exit_info e);
    void schedule_restart();
    void write_pid_file();
};

}  // namespace reef::reefd
