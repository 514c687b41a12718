// reefd: launches and supervises Reef dataplanes, and routes control requests to them.
//
// One thread, one Boost.Asio io_context: the control socket's sessions, the agent calls of `call`,
// the dataplanes' exit watchers and restart timers all run there as coroutines or handlers, so
// no state is shared between threads. docs/control-protocol.md documents the methods.
//
// The desired state (definitions, which should run, restart counts) is written to the state file
// after every change; at start-up the state file, when present, wins over the config file's
// dataplane list (config.reload applies the file). Dataplanes keep running when reefd exits or is
// killed; the next reefd re-attaches to them through their pid files.
#include "ctl/protocol/protocol.hh"
#include "ctl/reefd/config.hh"
#include "ctl/reefd/supervisor.hh"

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#ifndef REEF_VERSION
#define REEF_VERSION "unknown"
#endif

namespace reef::reefd {

namespace {

using ctl::rpc_error;
namespace ec = ctl::error_code;
using local = asio::local::stream_protocol;
using asio::awaitable;
using asio::use_awaitable;

constexpr auto agent_call_timeout = std::chrono::seconds(10);
constexpr std::size_t max_agent_response = 64 << 20;
constexpr unsigned max_sessions = 1024;

void mkdirs(const std::string& dir) {
    for (std::size_t i = 1; i <= dir.size(); ++i) {
        if (i == dir.size() || dir[i] == '/') {
            ::mkdir(dir.substr(0, i).c_str(), 0755);
        }
    }
}

std::string parent_of(const std::string& path) {
    auto s = path.rfind('/');
    return s == std::string::npos || s == 0 ? std::string() : path.substr(0, s);
}

// One request to a dataplane's agent over a fresh connection, with a timeout. Agent errors come
// back as rpc_error with the agent's code and message.
awaitable<json> call_agent(const std::string& path, const std::string& dp, const std::string& method,
                           const json& params) {
    auto ex = co_await asio::this_coro::executor;
    auto sock = std::make_shared<local::socket>(ex);
    auto timer = std::make_shared<asio::steady_timer>(ex);
    auto timed_out = std::make_shared<bool>(false);
    timer->expires_after(agent_call_timeout);
    timer->async_wait([sock, timed_out](const boost::system::error_code& e) {
        if (!e) {
            *timed_out = true;
            boost::system::error_code ignore;
            sock->close(ignore);
        }
    });
    std::string line;
    std::string why;
    try {
        co_await sock->async_connect(local::endpoint(path), use_awaitable);
        std::string req = ctl::to_line(ctl::make_request(1, method, params));
        co_await asio::async_write(*sock, asio::buffer(req), use_awaitable);
        std::string buf;
        auto dyn = asio::dynamic_buffer(buf, max_agent_response);
        std::size_t n = co_await asio::async_read_until(*sock, dyn, '\n', use_awaitable);
        line = buf.substr(0, n - 1);
    } catch (const boost::system::system_error& e) {
        why = e.code().message();
    }
    timer->cancel();
    if (*timed_out) {
        throw rpc_error(ec::timeout, "dataplane '" + dp + "' did not answer " + method + " within " +
                                         std::to_string(agent_call_timeout.count()) + " s");
    }
    if (!why.empty()) {
        throw rpc_error(ec::unavailable,
                        "dataplane '" + dp + "': cannot reach its control socket " + path + ": " + why);
    }
    auto r = ctl::parse_response(line);
    if (r.error) {
        throw *r.error;
    }
    co_return std::move(*r.result);
}

class supervisor_daemon {
    asio::io_context& _io;
    std::string _config_path;
    daemon_config _cfg;
    std::map<std::string, std::unique_ptr<dataplane>> _dps;
    std::unique_ptr<local::acceptor> _acceptor;
    ::uid_t _sock_uid = 0;
    ::gid_t _sock_gid = 0;
    unsigned _sessions = 0;
    bool _loading = false;  // no state writes while the state is being restored

public:
    supervisor_daemon(asio::io_context& io, std::string config_path, daemon_config cfg)
        : _io(io), _config_path(std::move(config_path)), _cfg(std::move(cfg)) {}

    void start() {
        mkdirs(_cfg.run_dir);
        restore();
        listen();
    }

    void stop_listening() {
        if (_acceptor) {
            boost::system::error_code ignore;
            _acceptor->close(ignore);
            ::unlink(_cfg.socket.c_str());
        }
    }

private:
    // ---------------------------------------------------------------------------------------------
    // state

    void persist() {
        if (_loading) {
            return;
        }
        json dps = json::array();
        for (auto& [n, d] : _dps) {
            dps.push_back(
                {{"spec", to_json(d->spec())}, {"want_running", d->want_running()}, {"restarts", d->restarts()}});
        }
        json j = {{"version", 1}, {"dataplanes", std::move(dps)}};
        auto dir = parent_of(_cfg.state_file);
        if (!dir.empty()) {
            mkdirs(dir);
        }
        std::string tmp = _cfg.state_file + ".tmp";
        {
            std::ofstream f(tmp, std::ios::trunc);
            f << j.dump(2) << "\n";
            if (!f) {
                std::cerr << "reefd: cannot write state file " << tmp << std::endl;
                return;
            }
        }
        if (::rename(tmp.c_str(), _cfg.state_file.c_str()) != 0) {
            std::cerr << "reefd: cannot replace state file " << _cfg.state_file << ": " << ::strerror(errno)
                      << std::endl;
        }
    }

    dataplane& add_dataplane(dataplane_spec s) {
        auto name = s.name;
        auto d = std::make_unique<dataplane>(_io, std::move(s), _cfg.run_dir, [this] { persist(); });
        auto& ref = *d;
        _dps[name] = std::move(d);
        return ref;
    }

    // Bring up every dataplane: re-attach to one still running, else start it if it should run.
    void bring_up(dataplane& d, bool should_run) {
        if (d.try_attach()) {
            std::cerr << "reefd: re-attached to dataplane " << d.spec().name << " (pid " << d.pid() << ")" << std::endl;
            if (!should_run) {
                d.stop();
            }
            return;
        }
        if (should_run) {
            try {
                d.start();
            } catch (const std::exception& e) {
                std::cerr << "reefd: " << e.what() << std::endl;
            }
        }
    }

    void restore() {
        _loading = true;
        std::ifstream f(_cfg.state_file);
        bool from_state = false;
        if (f) {
            std::stringstream ss;
            ss << f.rdbuf();
            json j = json::parse(ss.str(), nullptr, false);
            if (!j.is_discarded() && j.is_object() && j.contains("dataplanes") && j["dataplanes"].is_array()) {
                from_state = true;
                for (auto& e : j["dataplanes"]) {
                    try {
                        auto& d = add_dataplane(parse_spec(e.at("spec")));
                        d.set_restarts(e.value("restarts", 0u));
                        bring_up(d, e.value("want_running", true));
                    } catch (const std::exception& ex) {
                        std::cerr << "reefd: state file " << _cfg.state_file << ": skipping an entry: " << ex.what()
                                  << std::endl;
                    }
                }
                std::cerr << "reefd: restored " << _dps.size() << " dataplane(s) from " << _cfg.state_file << std::endl;
            } else {
                std::cerr << "reefd: state file " << _cfg.state_file << " is unreadable; using the config" << std::endl;
            }
        }
        if (!from_state) {
            for (auto& s : _cfg.dataplanes) {
                bool run = s.autostart;
                auto& d = add_dataplane(s);
                bring_up(d, run);
            }
        }
        _loading = false;
        persist();
    }

    // ---------------------------------------------------------------------------------------------
    // the socket

    void listen() {
        auto dir = parent_of(_cfg.socket);
        if (!dir.empty()) {
            mkdirs(dir);
        }
        struct ::stat st {};
        if (::lstat(_cfg.socket.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                throw std::runtime_error("socket path " + _cfg.socket + " exists and is not a socket");
            }
            local::socket probe(_io);
            boost::system::error_code e;
            probe.connect(local::endpoint(_cfg.socket), e);
            if (!e) {
                throw std::runtime_error("socket " + _cfg.socket + " is in use: is another reefd running?");
            }
            ::unlink(_cfg.socket.c_str());
        }
        ::mode_t old = ::umask(0117);
        try {
            _acceptor = std::make_unique<local::acceptor>(_io, local::endpoint(_cfg.socket));
        } catch (const boost::system::system_error& e) {
            ::umask(old);
            throw std::runtime_error("cannot listen on " + _cfg.socket + ": " + e.code().message());
        }
        ::umask(old);
        ::chmod(_cfg.socket.c_str(), 0660);
        if (::stat(_cfg.socket.c_str(), &st) == 0) {
            _sock_uid = st.st_uid;
            _sock_gid = st.st_gid;
        }
        std::cerr << "reefd: listening on " << _cfg.socket << std::endl;
        asio::co_spawn(_io, accept_loop(), asio::detached);
    }

    awaitable<void> accept_loop() {
        while (_acceptor && _acceptor->is_open()) {
            boost::system::error_code e;
            local::socket s = co_await _acceptor->async_accept(asio::redirect_error(use_awaitable, e));
            if (e) {
                if (e == asio::error::operation_aborted) {
                    co_return;
                }
                // EMFILE and friends: back off a little rather than spin.
                asio::steady_timer t(_io, std::chrono::milliseconds(100));
                co_await t.async_wait(use_awaitable);
                continue;
            }
            asio::co_spawn(_io, session(std::move(s)), asio::detached);
        }
    }

    bool permitted(int fd) const {
        ::ucred cred{};
        ::socklen_t len = sizeof(cred);
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
            return false;
        }
        if (cred.uid == 0 || cred.uid == _sock_uid || cred.gid == _sock_gid) {
            return true;
        }
        ::passwd pw{};
        ::passwd* res = nullptr;
        std::vector<char> buf(16384);
        if (::getpwuid_r(cred.uid, &pw, buf.data(), buf.size(), &res) != 0 || !res) {
            return false;
        }
        int n = 256;
        std::vector<::gid_t> groups(n);
        if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
            return false;
        }
        groups.resize(n);
        return std::find(groups.begin(), groups.end(), _sock_gid) != groups.end();
    }

    awaitable<void> session(local::socket s) {
        struct count {
            unsigned& n;
            explicit count(unsigned& c) : n(c) { ++n; }
            ~count() { --n; }
        } counted(_sessions);
        try {
            if (_sessions > max_sessions) {
                auto line = ctl::to_line(ctl::make_error(nullptr, ec::unavailable, "too many control connections"));
                co_await asio::async_write(s, asio::buffer(line), use_awaitable);
                co_return;
            }
            if (!permitted(s.native_handle())) {
                std::cerr << "reefd: refused a peer outside root, the owner and the socket's group" << std::endl;
                auto line = ctl::to_line(ctl::make_error(
                    nullptr, ec::permission_denied,
                    "permission denied: only root, the socket's owner and its group may use " + _cfg.socket));
                co_await asio::async_write(s, asio::buffer(line), use_awaitable);
                co_return;
            }
            ctl::line_reader reader(_cfg.max_line);
            std::vector<char> buf(65536);
            std::string line;
            while (true) {
                std::size_t n = co_await s.async_read_some(asio::buffer(buf), use_awaitable);
                reader.feed(std::string_view(buf.data(), n));
                while (true) {
                    auto st = reader.next(line);
                    if (st == ctl::line_reader::status::need_more) {
                        break;
                    }
                    std::string out;
                    if (st == ctl::line_reader::status::too_long) {
                        out = ctl::to_line(ctl::make_error(
                            nullptr, ec::request_too_large,
                            "request too large: a line exceeds " + std::to_string(reader.max_line()) + " bytes"));
                    } else {
                        out = co_await handle_line(line);
                    }
                    if (!out.empty()) {
                        co_await asio::async_write(s, asio::buffer(out), use_awaitable);
                    }
                }
            }
        } catch (const boost::system::system_error&) {
            // The client went away (EOF, reset): nothing to answer.
        }
    }

    awaitable<std::string> handle_line(const std::string& line) {
        auto parsed = ctl::parse_request(line);
        if (auto* e = std::get_if<ctl::request_error>(&parsed)) {
            co_return ctl::to_line(ctl::make_error(e->id, e->error));
        }
        auto& req = std::get<ctl::request>(parsed);
        json reply;
        try {
            json result = co_await dispatch(req.method, req.params);
            reply = ctl::make_result(req.id, std::move(result));
        } catch (const rpc_error& e) {
            reply = ctl::make_error(req.id, e);
        } catch (const std::exception& e) {
            reply = ctl::make_error(req.id, ec::failed, req.method + ": " + e.what());
        }
        if (req.notification) {
            co_return std::string();
        }
        co_return ctl::to_line(reply);
    }

    // ---------------------------------------------------------------------------------------------
    // methods

    dataplane& find(const ctl::params_view& p, const std::string& method) {
        auto name = p.string("name");
        auto it = _dps.find(name);
        if (it == _dps.end()) {
            throw rpc_error(ec::not_found, method + ": no dataplane '" + name + "'" + known_names());
        }
        return *it->second;
    }

    std::string known_names() const {
        if (_dps.empty()) {
            return " (none are defined)";
        }
        std::string s = " (dataplanes: ";
        bool first = true;
        for (auto& [n, d] : _dps) {
            s += first ? "" : ", ";
            s += n;
            first = false;
        }
        return s + ")";
    }

    // Wait (polling the state, on the io_context) until `d` leaves `stopping`, at most its stop
    // timeout plus a margin for the SIGKILL to land.
    awaitable<void> wait_stopped(const std::string& name) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        if (auto it = _dps.find(name); it != _dps.end()) {
            deadline += it->second->spec().stop_timeout;
        }
        asio::steady_timer t(_io);
        while (std::chrono::steady_clock::now() < deadline) {
            auto it = _dps.find(name);
            if (it == _dps.end() || it->second->state() != dp_state::stopping) {
                co_return;
            }
            t.expires_after(std::chrono::milliseconds(20));
            co_await t.async_wait(use_awaitable);
        }
        throw rpc_error(ec::timeout, "dataplane '" + name + "' did not exit after SIGTERM and SIGKILL");
    }

    // After a start: wait until the dataplane's agent accepts connections (so the next command
    // finds it), the process ends, or 10 s pass (then the status says what it is).
    awaitable<void> wait_ready(const std::string& name) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        asio::steady_timer t(_io);
        while (std::chrono::steady_clock::now() < deadline) {
            auto it = _dps.find(name);
            if (it == _dps.end() || it->second->state() != dp_state::running) {
                co_return;
            }
            local::socket probe(_io);
            boost::system::error_code e;
            probe.connect(local::endpoint(it->second->socket_path()), e);
            if (!e) {
                co_return;
            }
            t.expires_after(std::chrono::milliseconds(20));
            co_await t.async_wait(use_awaitable);
        }
    }

    static const std::vector<std::string>& method_names() {
        static const std::vector<std::string> n = {
            "call",
            "config.reload",
            "dataplane.add",
            "dataplane.logs",
            "dataplane.remove",
            "dataplane.restart",
            "dataplane.start",
            "dataplane.stop",
            "dataplane.update",
            "dataplanes.list",
            "reef.methods",
            "reef.version",
        };
        return n;
    }

    awaitable<json> dispatch(const std::string& m, const json& params) {
        ctl::params_view p(params, m);
        if (m == "reef.version") {
            p.allow_only({});
            co_return json{{"protocol", ctl::protocol_version}, {"build", REEF_VERSION}, {"server", "reefd"}};
        }
        if (m == "reef.methods") {
            p.allow_only({});
            co_return json{{"methods", method_names()}};
        }
        if (m == "dataplanes.list") {
            p.allow_only({});
            json out = json::array();
            for (auto& [n, d] : _dps) {
                out.push_back(d->status());
            }
            co_return json{{"dataplanes", std::move(out)}};
        }
        if (m == "dataplane.start") {
            p.allow_only({"name"});
            auto& d = find(p, m);
            auto name = d.spec().name;
            d.start();
            co_await wait_ready(name);
            co_return _dps.at(name)->status();
        }
        if (m == "dataplane.stop") {
            p.allow_only({"name"});
            auto& d = find(p, m);
            auto name = d.spec().name;
            d.stop();
            co_await wait_stopped(name);
            co_return _dps.at(name)->status();
        }
        if (m == "dataplane.restart") {
            p.allow_only({"name"});
            auto& d = find(p, m);
            auto name = d.spec().name;
            d.stop();
            co_await wait_stopped(name);
            _dps.at(name)->start();
            co_await wait_ready(name);
            co_return _dps.at(name)->status();
        }
        if (m == "dataplane.logs") {
            p.allow_only({"name", "lines", "stream"});
            auto& d = find(p, m);
            auto lines = std::size_t(p.opt_integer("lines", 1, 10000).value_or(50));
            auto stream = p.opt_string("stream").value_or("both");
            if (stream != "stdout" && stream != "stderr" && stream != "both") {
                throw rpc_error(ec::invalid_params, m + ": stream must be stdout, stderr or both");
            }
            json out = {{"name", d.spec().name}};
            if (stream != "stderr") {
                out["stdout"] = d.tail("stdout", lines);
            }
            if (stream != "stdout") {
                out["stderr"] = d.tail("stderr", lines);
            }
            co_return out;
        }
        if (m == "dataplane.add") {
            p.allow_only({"dataplane", "start"});
            auto spec = parse_spec(p.object("dataplane"));
            if (_dps.count(spec.name)) {
                throw rpc_error(ec::conflict, m + ": dataplane '" + spec.name + "' already exists");
            }
            bool start = p.opt_boolean("start").value_or(spec.autostart);
            auto name = spec.name;
            auto& d = add_dataplane(std::move(spec));
            persist();
            if (start) {
                d.start();
                co_await wait_ready(name);
            }
            co_return _dps.at(name)->status();
        }
        if (m == "dataplane.remove") {
            p.allow_only({"name"});
            auto& d = find(p, m);
            auto name = d.spec().name;
            d.stop();
            co_await wait_stopped(name);
            _dps.erase(name);
            persist();
            co_return json{{"removed", name}};
        }
        if (m == "dataplane.update") {
            p.allow_only({"name", "changes"});
            auto& d = find(p, m);
            auto name = d.spec().name;
            auto updated = apply_update(d.spec(), p.object("changes"));
            bool was_running = d.state() == dp_state::running || d.state() == dp_state::backoff;
            if (was_running) {
                d.stop();
                co_await wait_stopped(name);
            }
            auto& again = *_dps.at(name);
            again.set_spec(std::move(updated));
            persist();
            if (was_running) {
                again.start();
                co_await wait_ready(name);
            }
            co_return _dps.at(name)->status();
        }
        if (m == "config.reload") {
            p.allow_only({});
            auto f = reload();
            co_return co_await std::move(f);
        }
        if (m == "call") {
            p.allow_only({"dataplane", "method", "params"});
            auto name = p.string("dataplane");
            auto method = p.string("method");
            auto it = _dps.find(name);
            if (it == _dps.end()) {
                throw rpc_error(ec::not_found, "call: no dataplane '" + name + "'" + known_names());
            }
            if (it->second->state() != dp_state::running) {
                throw rpc_error(ec::unavailable, "call: dataplane '" + name + "' is " +
                                                     std::string(to_string(it->second->state())) + ", not running");
            }
            json inner = params.contains("params") ? params["params"] : json(nullptr);
            if (!inner.is_null() && !inner.is_object() && !inner.is_array()) {
                throw rpc_error(ec::invalid_params, "call: params must be an object or an array");
            }
            auto path = it->second->socket_path();
            co_return co_await call_agent(path, name, method, inner);
        }
        throw rpc_error(ec::method_not_found, "method not found: " + m +
                                                  " (reefd's methods are listed by reef.methods; dataplane methods "
                                                  "go through call)");
    }

    awaitable<json> reload() {
        daemon_config fresh;
        try {
            fresh = load_config(_config_path);
        } catch (const std::exception& e) {
            throw rpc_error(ec::invalid_params, std::string("config.reload: ") + e.what());
        }
        json added = json::array(), removed = json::array(), updated = json::array();
        std::map<std::string, const dataplane_spec*> want;
        for (auto& s : fresh.dataplanes) {
            want[s.name] = &s;
        }
        std::vector<std::string> gone;
        for (auto& [n, d] : _dps) {
            if (!want.count(n)) {
                gone.push_back(n);
            }
        }
        for (auto& n : gone) {
            _dps.at(n)->stop();
            co_await wait_stopped(n);
            _dps.erase(n);
            removed.push_back(n);
        }
        for (auto& [n, s] : want) {
            auto it = _dps.find(n);
            if (it == _dps.end()) {
                auto& d = add_dataplane(*s);
                if (s->autostart) {
                    d.start();
                }
                added.push_back(n);
                continue;
            }
            if (to_json(it->second->spec()) == to_json(*s)) {
                continue;
            }
            bool was_running = it->second->state() == dp_state::running || it->second->state() == dp_state::backoff;
            if (was_running) {
                it->second->stop();
                co_await wait_stopped(n);
            }
            auto& d = *_dps.at(n);
            d.set_spec(*s);
            if (was_running) {
                d.start();
            }
            updated.push_back(n);
        }
        persist();
        co_return json{{"added", added}, {"removed", removed}, {"updated", updated}};
    }
};

}  // namespace

}  // namespace reef::reefd

int main(int argc, char** argv) {
    using namespace reef::reefd;
    CLI::App app(
        "reefd: launches and supervises Reef dataplanes and routes control requests to them "
        "(JSON-RPC on a unix socket; see docs/control-protocol.md)",
        "reefd");
    std::string config = "/etc/reef/reefd.json";
    std::string socket, run_dir, state_file;
    app.add_option("-c,--config", config, "Configuration file (JSON)")->capture_default_str();
    app.add_option("--socket", socket, "Control socket (overrides the config; default /run/reef/reefd.sock)");
    app.add_option("--run-dir", run_dir,
                   "Directory of the dataplanes' sockets, pid files and logs (default /run/reef)");
    app.add_option("--state-file", state_file,
                   "Where runtime changes are kept (default /var/lib/reef/reefd.state.json)");
    bool no_config = false;
    app.add_flag("--no-config", no_config,
                 "Start without a config file (dataplanes come from the state file or "
                 "dataplane.add)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    daemon_config cfg;
    if (!no_config) {
        try {
            cfg = load_config(config);
        } catch (const std::exception& e) {
            std::cerr << "reefd: " << e.what() << std::endl;
            return 2;
        }
    }
    if (!socket.empty()) {
        cfg.socket = socket;
    }
    if (!run_dir.empty()) {
        cfg.run_dir = run_dir;
    }
    if (!state_file.empty()) {
        cfg.state_file = state_file;
    }
    ::signal(SIGPIPE, SIG_IGN);
    asio::io_context io;
    supervisor_daemon d(io, no_config ? std::string() : config, cfg);
    try {
        d.start();
    } catch (const std::exception& e) {
        std::cerr << "reefd: " << e.what() << std::endl;
        return 1;
    }
    // SIGTERM/SIGINT stop reefd only: the dataplanes keep serving and the next reefd re-attaches.
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& e, int signo) {
        if (!e) {
            std::cerr << "reefd: signal " << signo << ": exiting (dataplanes keep running)" << std::endl;
            d.stop_listening();
            io.stop();
        }
    });
    io.run();
    return 0;
}
