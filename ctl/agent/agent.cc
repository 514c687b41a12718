#include "ctl/agent/agent.hh"

#include "ctl/agent/agent_methods.hh"
#include "runtime/coroutine.hh"
#include "runtime/gate.hh"
#include "runtime/log.hh"
#include "runtime/metrics.hh"
#include "runtime/pollable_fd.hh"
#include "runtime/reactor.hh"
#include "runtime/smp.hh"
#include "stack/net/api.hh"
#include "stack/net/device.hh"

#include <fmt/format.h>

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <list>
#include <map>
#include <system_error>

namespace reef::ctl {

namespace {

logger alog("ctl-agent");

std::system_error path_error(int err, std::string_view what, const std::string& path) {
    return std::system_error(err, std::system_category(), fmt::format("{} {}", what, path));
}

// ------------------------------------------------------------------------------------------------
// app methods (shard 0)

std::map<std::string, app_method, std::less<>>& app_registry() {
    static std::map<std::string, app_method, std::less<>> r;
    return r;
}

bool valid_app_method_name(std::string_view n) {
    if (!n.starts_with("app.") || n.size() == 4) {
        return false;
    }
    for (char c : n.substr(4)) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) {
            return false;
        }
    }
    return true;
}

// ------------------------------------------------------------------------------------------------
// the server

struct connection {
    pollable_fd fd;
    bool closing = false;
};

class agent_server {
    agent_config _cfg;
    agent_methods _methods;
    pollable_fd _listener;
    std::string _path;
    ::dev_t _sock_dev = 0;
    ::ino_t _sock_ino = 0;
    ::gid_t _sock_gid = 0;
    ::uid_t _sock_uid = 0;
    gate _gate;
    std::list<connection*> _conns;
    unsigned _active = 0;
    future<> _accept_loop = make_ready_future<>();
    bool _stopping = false;

public:
    explicit agent_server(agent_config cfg) : _cfg(std::move(cfg)), _methods(_cfg) {}

    net::device* device() const noexcept { return _cfg.device; }

    const std::string& path() const noexcept { return _path; }

    void listen() {
        _path = _cfg.socket_path.empty() ? default_socket_path(_cfg.app_name) : _cfg.socket_path;
        ::sockaddr_un sun{};
        if (_path.empty() || _path.size() >= sizeof(sun.sun_path)) {
            throw path_error(ENAMETOOLONG, "control socket path is empty or too long:", _path);
        }
        make_parent_dir();
        remove_stale_socket();
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            throw path_error(errno, "control socket", _path);
        }
        pollable_fd pfd(fd, true);
        sun.sun_family = AF_UNIX;
        std::copy(_path.begin(), _path.end(), sun.sun_path);
        // The socket file is created with the umask; make it 0660 before anyone can connect:
        // bind under a umask that leaves group rw and no world bits, then chmod to be exact.
        ::mode_t old = ::umask(0117);
        int r = ::bind(fd, reinterpret_cast<::sockaddr*>(&sun), sizeof(sun));
        int err = errno;
        ::umask(old);
        if (r != 0) {
            throw path_error(err, "bind control socket", _path);
        }
        if (::chmod(_path.c_str(), 0660) != 0) {
            err = errno;
            ::unlink(_path.c_str());
            throw path_error(err, "chmod 0660 control socket", _path);
        }
        struct ::stat st {};
        if (::stat(_path.c_str(), &st) == 0) {
            _sock_dev = st.st_dev;
            _sock_ino = st.st_ino;
            _sock_gid = st.st_gid;
            _sock_uid = st.st_uid;
        }
        if (::listen(fd, 128) != 0) {
            err = errno;
            ::unlink(_path.c_str());
            throw path_error(err, "listen on control socket", _path);
        }
        _listener = std::move(pfd);
        _accept_loop = accept_loop();
        alog.info("control socket {}", _path);
    }

    future<> stop() {
        _stopping = true;
        _listener.shutdown(SHUT_RD);
        _listener.abort_reader(std::make_exception_ptr(std::system_error(ECONNABORTED, std::system_category())));
        for (auto* c : _conns) {
            close_connection(*c);
        }
        co_await std::move(_accept_loop);
        co_await _gate.close();
        _listener = pollable_fd();
        // Remove our socket file only: another process may have replaced it since.
        struct ::stat st {};
        if (::stat(_path.c_str(), &st) == 0 && st.st_dev == _sock_dev && st.st_ino == _sock_ino) {
            ::unlink(_path.c_str());
        }
    }

private:
    void make_parent_dir() {
        auto slash = _path.rfind('/');
        if (slash == std::string::npos || slash == 0) {
            return;
        }
        std::string dir = _path.substr(0, slash);
        struct ::stat st {};
        if (::stat(dir.c_str(), &st) == 0) {
            return;
        }
        // Create missing components one at a time (mkdir -p), 0755 like /run's own.
        for (std::size_t i = 1; i <= dir.size(); ++i) {
            if (i == dir.size() || dir[i] == '/') {
                std::string part = dir.substr(0, i);
                if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
                    throw path_error(errno, "create directory", part);
                }
            }
        }
    }

    void remove_stale_socket() {
        struct ::stat st {};
        if (::lstat(_path.c_str(), &st) != 0) {
            return;
        }
        if (!S_ISSOCK(st.st_mode)) {
            throw path_error(EEXIST, "control socket path exists and is not a socket:", _path);
        }
        // A socket someone accepts on is live: refuse rather than steal it.
        int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0) {
            ::sockaddr_un sun{};
            sun.sun_family = AF_UNIX;
            std::copy(_path.begin(), _path.end(), sun.sun_path);
            int r = ::connect(probe, reinterpret_cast<::sockaddr*>(&sun), sizeof(sun));
            ::close(probe);
            if (r == 0) {
                throw path_error(EADDRINUSE, "control socket in use by another process:", _path);
            }
        }
        ::unlink(_path.c_str());
    }

    void close_connection(connection& c) noexcept {
        if (c.closing) {
            return;
        }
        c.closing = true;
        try {
            c.fd.shutdown(SHUT_RDWR);
        } catch (...) {
        }
        auto ex = std::make_exception_ptr(std::system_error(ECONNABORTED, std::system_category(), "agent stopping"));
        c.fd.abort_reader(ex);
        c.fd.abort_writer(ex);
    }

    future<> accept_loop() {
        while (true) {
            pollable_fd fd;
            try {
                fd = co_await _listener.accept();
            } catch (...) {
                // Stopped (ECONNABORTED), or the listener failed: either way there is no more.
                if (!_stopping) {
                    alog.warn("control socket {}: accept failed: {}", _path,
                              exception_message(std::current_exception()));
                }
                co_return;
            }
            if (_stopping) {
                co_return;
            }
            // Each connection runs on its own; the gate keeps stop() waiting for it.
            _gate.enter();
            (void)serve(std::move(fd)).finally([this] { _gate.leave(); });
        }
    }

    // Whether the peer may use the agent: root, the socket's owner, or the socket's group (as
    // its primary group, or a supplementary one: looked up off the reactor, NSS may block).
    future<bool> permitted(int fd) {
        ::ucred cred{};
        ::socklen_t len = sizeof(cred);
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
            co_return false;
        }
        if (cred.uid == 0 || cred.uid == _sock_uid || cred.gid == _sock_gid) {
            co_return true;
        }
        ::uid_t uid = cred.uid;
        ::gid_t want = _sock_gid;
        co_return co_await engine().run_blocking([uid, want] {
            ::passwd pw{};
            ::passwd* res = nullptr;
            std::vector<char> buf(16384);
            if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) != 0 || !res) {
                return false;
            }
            int n = 64;
            std::vector<::gid_t> groups(n);
            if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
                groups.resize(n);
                if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
                    return false;
                }
            }
            groups.resize(n);
            return std::find(groups.begin(), groups.end(), want) != groups.end();
        });
    }

    static future<> send_line(connection& c, std::string line) {
        ::iovec iov{line.data(), line.size()};
        co_await c.fd.write_all(&iov, 1);
    }

    future<> serve(pollable_fd fd) {
        connection c{std::move(fd)};
        _conns.push_back(&c);
        auto it = std::prev(_conns.end());
        ++_active;
        try {
            co_await serve_connection(c);
        } catch (...) {
            if (!c.closing) {
                alog.debug("control connection ended: {}", exception_message(std::current_exception()));
            }
        }
        --_active;
        _conns.erase(it);
    }

    future<> serve_connection(connection& c) {
        if (_active > _cfg.max_connections) {
            auto f = send_line(
                c, to_line(make_error(nullptr, error_code::unavailable,
                                      fmt::format("too many control connections (limit {})", _cfg.max_connections))));
            co_await std::move(f);
            co_return;
        }
        auto allowed = permitted(c.fd.get());
        if (!co_await std::move(allowed)) {
            alog.warn("control socket {}: refused a peer outside root, the owner and the socket's group", _path);
            auto f = send_line(c, to_line(make_error(nullptr, error_code::permission_denied,
                                                     "permission denied: only root, the socket's owner and "
                                                     "its group may use this control socket")));
            co_await std::move(f);
            co_return;
        }
        line_reader reader(_cfg.max_line);
        std::vector<char> buf(65536);
        std::string line;
        while (!c.closing) {
            auto n = co_await c.fd.read_some(buf.data(), buf.size());
            if (n == 0) {
                co_return;
            }
            reader.feed(std::string_view(buf.data(), n));
            while (true) {
                auto st = reader.next(line);
                if (st == line_reader::status::need_more) {
                    break;
                }
                std::string out;
                if (st == line_reader::status::too_long) {
                    out = to_line(
                        make_error(nullptr, error_code::request_too_large,
                                   fmt::format("request too large: a line exceeds {} bytes", reader.max_line())));
                } else {
                    auto f = handle_line(line);
                    out = co_await std::move(f);
                }
                if (!out.empty()) {
                    auto f = send_line(c, std::move(out));
                    co_await std::move(f);
                }
            }
        }
    }

    future<std::string> handle_line(const std::string& line) {
        auto parsed = parse_request(line);
        if (auto* e = std::get_if<request_error>(&parsed)) {
            co_return to_line(make_error(e->id, e->error));
        }
        auto& req = std::get<request>(parsed);
        json reply;
        try {
            auto f = dispatch(req);
            json result = co_await std::move(f);
            reply = make_result(req.id, std::move(result));
        } catch (const rpc_error& e) {
            reply = make_error(req.id, e);
        } catch (const std::exception& e) {
            reply = make_error(req.id, error_code::failed, fmt::format("{}: {}", req.method, e.what()));
        }
        if (req.notification) {
            co_return std::string();
        }
        co_return to_line(reply);
    }

    future<json> dispatch(request& req) {
        if (req.method.starts_with("app.")) {
            auto& reg = app_registry();
            auto it = reg.find(req.method);
            if (it == reg.end()) {
                throw rpc_error(error_code::method_not_found,
                                fmt::format("method not found: {} (this app registers: {})", req.method,
                                            fmt::join(app_methods(), ", ")));
            }
            // Copy: the handler may unregister itself while it runs.
            app_method fn = it->second;
            auto f = fn(std::move(req.params));
            co_return co_await std::move(f);
        }
        auto f = _methods.call(req.method, req.params);
        co_return co_await std::move(f);
    }
};

std::unique_ptr<agent_server> g_agent;
std::string g_empty;

}  // namespace

std::string default_socket_path(const std::string& app_name) {
    return fmt::format("/run/reef/{}-{}.sock", app_name.empty() ? "reef" : app_name, ::getpid());
}

future<> start_agent(agent_config cfg) {
    if (g_agent) {
        throw std::logic_error("the control agent is already running");
    }
    auto a = std::make_unique<agent_server>(std::move(cfg));
    a->listen();
    g_agent = std::move(a);
    std::exception_ptr ex;
    try {
        co_await start_agent_metrics(g_agent->device());
    } catch (...) {
        ex = std::current_exception();
    }
    if (ex) {
        co_await g_agent->stop();
        g_agent.reset();
        std::rethrow_exception(ex);
    }
}

future<> stop_agent() {
    if (!g_agent) {
        co_return;
    }
    auto a = std::move(g_agent);
    co_await a->stop();
    co_await stop_agent_metrics();
}

bool agent_running() noexcept { return bool(g_agent); }

const std::string& agent_socket_path() noexcept { return g_agent ? g_agent->path() : g_empty; }

app_method_registration& app_method_registration::operator=(app_method_registration&& o) noexcept {
    if (this != &o) {
        unregister();
        _name = std::move(o._name);
        o._name.clear();
    }
    return *this;
}

void app_method_registration::unregister() noexcept {
    if (!_name.empty()) {
        app_registry().erase(_name);
        _name.clear();
    }
}

app_method_registration register_app_method(std::string name, app_method fn) {
    if (!valid_app_method_name(name)) {
        throw std::invalid_argument(fmt::format("app method name '{}': must be app. followed by [a-z0-9_.]", name));
    }
    if (!fn) {
        throw std::invalid_argument(fmt::format("app method {}: empty function", name));
    }
    auto [it, inserted] = app_registry().emplace(name, std::move(fn));
    if (!inserted) {
        throw std::invalid_argument(fmt::format("app method {} is already registered", name));
    }
    return app_method_registration(std::move(name));
}

std::vector<std::string> app_methods() {
    std::vector<std::string> out;
    for (auto& [n, f] : app_registry()) {
        out.push_back(n);
    }
    return out;
}

}  // namespace reef::ctl
