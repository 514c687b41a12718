#include "ctl/reefd/supervisor.hh"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

extern char** environ;

namespace reef::reefd {

namespace {

constexpr std::size_t max_log_size = 4 << 20;  // a log above this is truncated at the next start

int pidfd_open(pid_t pid) { return int(::syscall(SYS_pidfd_open, pid, 0)); }

std::string now_text() {
    std::time_t t = std::time(nullptr);
    char buf[64];
    std::tm tm{};
    ::localtime_r(&t, &tm);
    std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (auto& a : v) {
        s += s.empty() ? "" : " ";
        s += a;
    }
    return s;
}

int open_log(const std::string& path) {
    struct ::stat st {};
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
    if (::stat(path.c_str(), &st) == 0 && std::size_t(st.st_size) > max_log_size) {
        flags |= O_TRUNC;
    }
    return ::open(path.c_str(), flags, 0640);
}

void write_all(int fd, const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
        auto n = ::write(fd, s.data() + off, s.size() - off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return;
        }
        off += std::size_t(n);
    }
}

// argv[0] of a live, non-zombie process; empty if there is none.
std::string process_binary(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) {
        return {};
    }
    auto rp = line.rfind(')');
    if (rp == std::string::npos || rp + 2 >= line.size() || line[rp + 2] == 'Z') {
        return {};
    }
    std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string arg0;
    std::getline(cmd, arg0, '\0');
    return arg0;
}

}  // namespace

std::string_view to_string(dp_state s) noexcept {
    switch (s) {
    case dp_state::stopped: return "stopped";
    case dp_state::running: return "running";
    case dp_state::stopping: return "stopping";
    case dp_state::backoff: return "backoff";
    case dp_state::failed: return "failed";
    }
    return "unknown";
}

std::string exit_info::describe() const {
    if (!known) {
        return "exit status unknown (the process was not started by this reefd)";
    }
    if (signal) {
        return "killed by signal " + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
    }
    return "exit code " + std::to_string(code);
}

dataplane::dataplane(asio::io_context& io, dataplane_spec spec, std::string run_dir, std::function<void()> changed)
    : _io(io), _spec(std::move(spec)), _run_dir(std::move(run_dir)), _changed(std::move(changed)), _restart_timer(io),
      _kill_timer(io) {}

dataplane::~dataplane() {
    // Pending handlers see operation_aborted and touch nothing. The process itself keeps running
    // (a removed dataplane was stopped first; reefd's exit leaves dataplanes serving).
    _restart_timer.cancel();
    _kill_timer.cancel();
    _pidfd.reset();
}

std::string dataplane::socket_path() const { return _run_dir + "/" + _spec.name + ".sock"; }
std::string dataplane::pid_file() const { return _run_dir + "/" + _spec.name + ".pid"; }
std::string dataplane::log_file(std::string_view stream) const {
    return _run_dir + "/" + _spec.name + "." + std::string(stream) + ".log";
}

void dataplane::start() {
    if (_state == dp_state::running) {
        return;
    }
    if (_state == dp_state::stopping) {
        throw ctl::rpc_error(ctl::error_code::conflict,
                             "dataplane '" + _spec.name + "' is stopping; start it once it has stopped");
    }
    _want_running = true;
    _consecutive_failures = 0;
    _restart_timer.cancel();
    spawn();
    _changed();
}

void dataplane::stop() {
    _want_running = false;
    _restart_timer.cancel();
    if (_state == dp_state::backoff || _state == dp_state::failed) {
        _state = dp_state::stopped;
    }
    if (_state == dp_state::running && _pid > 0) {
        ::kill(_pid, SIGTERM);
        _state = dp_state::stopping;
        auto gen = _generation;
        _kill_timer.expires_after(_spec.stop_timeout);
        _kill_timer.async_wait([this, gen](const boost::system::error_code& ec) {
            if (ec || gen != _generation || _state != dp_state::stopping || _pid <= 0) {
                return;
            }
            std::cerr << "reefd: dataplane " << _spec.name << " did not stop within " << _spec.stop_timeout.count()
                      << " ms of SIGTERM: SIGKILL" << std::endl;
            ::kill(_pid, SIGKILL);
        });
    }
    _changed();
}

void dataplane::spawn() {
    ++_generation;
    _last_error.clear();
    auto argv_s = command_line(_spec, socket_path());
    std::vector<char*> argv;
    for (auto& a : argv_s) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char** e = environ; *e; ++e) {
        std::string_view kv(*e);
        auto eq = kv.find('=');
        if (eq != std::string_view::npos && _spec.env.count(std::string(kv.substr(0, eq)))) {
            continue;
        }
        env_s.emplace_back(kv);
    }
    for (auto& [k, v] : _spec.env) {
        env_s.push_back(k + "=" + v);
    }
    std::vector<char*> envp;
    for (auto& e : env_s) {
        envp.push_back(e.data());
    }
    envp.push_back(nullptr);

    ::mkdir(_run_dir.c_str(), 0755);
    int out = open_log(log_file("stdout"));
    int err = open_log(log_file("stderr"));
    std::string banner = "--- reefd " + now_text() + ": starting " + join(argv_s) + "\n";
    if (out >= 0) {
        write_all(out, banner);
    }
    if (err >= 0) {
        write_all(err, banner);
    }
    pid_t pid = ::fork();
    if (pid == 0) {
        // The child: a session of its own (reefd's signals and exit do not reach it), default
        // signal dispositions and mask, stdout/stderr to the logs, nothing else inherited.
        ::setsid();
        sigset_t all;
        sigemptyset(&all);
        ::sigprocmask(SIG_SETMASK, &all, nullptr);
        for (int s = 1; s < NSIG; ++s) {
            ::signal(s, SIG_DFL);
        }
        int devnull = ::open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            ::dup2(devnull, 0);
        }
        ::dup2(out >= 0 ? out : devnull, 1);
        ::dup2(err >= 0 ? err : devnull, 2);
        ::close_range(3, ~0U, 0);
        ::execve(argv[0], argv.data(), envp.data());
        int e = errno;
        dprintf(2, "reefd: cannot execute %s: %s\n", argv[0], ::strerror(e));
        ::_exit(127);
    }
    int fork_errno = errno;
    if (out >= 0) {
        ::close(out);
    }
    if (err >= 0) {
        ::close(err);
    }
    if (pid < 0) {
        _state = dp_state::failed;
        _last_error = std::string("fork: ") + ::strerror(fork_errno);
        throw ctl::rpc_error(ctl::error_code::failed, "dataplane '" + _spec.name + "': cannot start: " + _last_error);
    }
    _pid = pid;
    _child = true;
    _attached = false;
    _state = dp_state::running;
    _started = std::chrono::steady_clock::now();
    _started_wall = std::chrono::system_clock::now();
    write_pid_file();
    watch_exit();
}

void dataplane::write_pid_file() {
    json j = {{"pid", _pid},
              {"binary", _spec.binary},
              {"started_unix_ms",
               std::chrono::duration_cast<std::chrono::milliseconds>(_started_wall.time_since_epoch()).count()}};
    std::string tmp = pid_file() + ".tmp";
    {
        std::ofstream f(tmp, std::ios::trunc);
        f << j.dump() << "\n";
    }
    ::rename(tmp.c_str(), pid_file().c_str());
}

void dataplane::watch_exit() {
    int fd = pidfd_open(_pid);
    if (fd < 0) {
        // Already gone (or no pidfd support): collect it now.
        exit_info e;
        e.at = std::chrono::system_clock::now();
        int st = 0;
        if (_child && ::waitpid(_pid, &st, 0) == _pid) {
            e.known = true;
            e.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            e.signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        }
        auto gen = _generation;
        asio::post(_io, [this, gen, e] {
            if (gen == _generation) {
                on_exit(e);
            }
        });
        return;
    }
    _pidfd = std::make_unique<asio::posix::stream_descriptor>(_io, fd);
    auto gen = _generation;
    _pidfd->async_wait(asio::posix::stream_descriptor::wait_read, [this, gen](const boost::system::error_code& ec) {
        if (ec || gen != _generation) {
            return;
        }
        exit_info e;
        e.at = std::chrono::system_clock::now();
        int st = 0;
        if (_child && ::waitpid(_pid, &st, WNOHANG) == _pid) {
            e.known = true;
            e.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            e.signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        }
        on_exit(e);
    });
}

void dataplane::on_exit(exit_info e) {
    ++_generation;  // the run is over: its timers and watchers are stale now
    _kill_timer.cancel();
    _pidfd.reset();
    std::cerr << "reefd: dataplane " << _spec.name << " (pid " << _pid << ") ended: " << e.describe() << std::endl;
    _pid = 0;
    ::unlink(pid_file().c_str());
    _last_exit = e;
    bool healthy_run = std::chrono::steady_clock::now() - _started >= _spec.restart.healthy_after;
    if (healthy_run) {
        _consecutive_failures = 0;
    }
    bool failure = !e.known || e.code != 0 || e.signal != 0;
    if (_state == dp_state::stopping || !_want_running) {
        _state = dp_state::stopped;
    } else if (_spec.restart.kind == restart_kind::never ||
               (_spec.restart.kind == restart_kind::on_failure && !failure)) {
        _state = failure ? dp_state::failed : dp_state::stopped;
        _want_running = false;
    } else {
        ++_consecutive_failures;
        if (_spec.restart.max_restarts && _consecutive_failures > _spec.restart.max_restarts) {
            _state = dp_state::failed;
            _want_running = false;
            std::cerr << "reefd: dataplane " << _spec.name << " failed " << _consecutive_failures
                      << " times in a row: giving up" << std::endl;
        } else {
            schedule_restart();
        }
    }
    _changed();
}

void dataplane::schedule_restart() {
    auto delay = _spec.restart.backoff_initial;
    for (unsigned i = 1; i < _consecutive_failures && delay < _spec.restart.backoff_max; ++i) {
        delay *= 2;
    }
    delay = std::min(delay, _spec.restart.backoff_max);
    _state = dp_state::backoff;
    _next_restart = std::chrono::steady_clock::now() + delay;
    auto gen = _generation;
    _restart_timer.expires_after(delay);
    _restart_timer.async_wait([this, gen](const boost::system::error_code& ec) {
        if (ec || gen != _generation || _state != dp_state::backoff || !_want_running) {
            return;
        }
        ++_restarts;
        try {
            spawn();
        } catch (const std::exception& e) {
            std::cerr << "reefd: " << e.what() << std::endl;
        }
        _changed();
    });
}

bool dataplane::try_attach() {
    std::ifstream f(pid_file());
    std::stringstream ss;
    ss << f.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("pid") || !j["pid"].is_number_integer()) {
        return false;
    }
    pid_t pid = pid_t(j["pid"].get<std::int64_t>());
    if (pid <= 1 || process_binary(pid) != _spec.binary) {
        ::unlink(pid_file().c_str());
        return false;
    }
    ++_generation;
    _pid = pid;
    _child = false;
    _attached = true;
    _want_running = true;
    _state = dp_state::running;
    _started = std::chrono::steady_clock::now();
    _started_wall = std::chrono::system_clock::now();
    if (j.contains("started_unix_ms") && j["started_unix_ms"].is_number_integer()) {
        auto ms = std::chrono::milliseconds(j["started_unix_ms"].get<std::int64_t>());
        _started_wall = std::chrono::system_clock::time_point(ms);
        _started -= std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::system_clock::now() -
                                                                                    _started_wall);
    }
    watch_exit();
    return true;
}

std::string dataplane::tail(std::string_view stream, std::size_t lines) const {
    std::ifstream f(log_file(stream), std::ios::binary | std::ios::ate);
    if (!f) {
        return {};
    }
    std::streamoff size = f.tellg();
    std::streamoff from = std::max<std::streamoff>(0, size - std::streamoff(256 * 1024));
    f.seekg(from);
    std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (!data.empty() && data.back() == '\n') {
        data.pop_back();
    }
    std::size_t pos = data.size();
    std::size_t n = 0;
    while (n < lines && pos > 0) {
        auto nl = data.rfind('\n', pos - 1);
        ++n;
        if (nl == std::string::npos) {
            pos = 0;
            break;
        }
        pos = nl;
        if (n == lines) {
            ++pos;
        }
    }
    if (pos > 0 && pos < data.size() && data[pos] == '\n') {
        ++pos;
    }
    std::string out = data.substr(pos);
    if (!out.empty()) {
        out += '\n';
    }
    return out;
}

json dataplane::status() const {
    json j = {
        {"name", _spec.name},
        {"state", to_string(_state)},
        {"pid", _pid > 0 ? json(_pid) : json(nullptr)},
        {"restarts", _restarts},
        {"consecutive_failures", _consecutive_failures},
        {"attached", _attached},
        {"want_running", _want_running},
        {"socket", socket_path()},
        {"binary", _spec.binary},
        {"command_line", command_line(_spec, socket_path())},
    };
    if (_state == dp_state::running || _state == dp_state::stopping) {
        j["uptime_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - _started).count();
    }
    if (_state == dp_state::backoff) {
        j["next_restart_in_s"] =
            std::max(0.0, std::chrono::duration<double>(_next_restart - std::chrono::steady_clock::now()).count());
    }
    if (_last_exit) {
        json e = {{"description", _last_exit->describe()},
                  {"at_unix_ms",
                   std::chrono::duration_cast<std::chrono::milliseconds>(_last_exit->at.time_since_epoch()).count()}};
        if (_last_exit->known) {
            e["code"] = _last_exit->signal ? json(nullptr) : json(_last_exit->code);
            e["signal"] = _last_exit->signal ? json(_last_exit->signal) : json(nullptr);
        }
        j["last_exit"] = std::move(e);
    }
    if (!_last_error.empty()) {
        j["last_error"] = _last_error;
    }
    return j;
}

}  // namespace reef::reefd
