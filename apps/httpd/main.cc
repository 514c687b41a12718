// reef-httpd: an HTTP/1.1 server on every shard — static files from --root and a small JSON API —
// on either network stack, optionally over TLS. Stops cleanly on SIGINT/SIGTERM (requests in
// flight finish).
//
// JSON API:
//   GET    /api/status        this shard, shard count, uptime, this shard's server counters
//   GET    /api/kv/{key}      the value stored under key (404 when none)
//   PUT    /api/kv/{key}      store the request body (JSON) under key (201 new, 200 replaced)
//   DELETE /api/kv/{key}      remove it (204; 404 when none)
// Keys live on the shard their hash names (the request is forwarded with submit_to), so every
// shard sees the same store. Everything else under / is a static file from --root (when given).
#include "dataplane/app.hh"
#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/sharded.hh"
#include "stack/http/file_handler.hh"
#include "stack/http/server.hh"
#include "stack/tls/tls.hh"

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <unordered_map>

using namespace reef;

namespace {

logger hlog("httpd");

struct httpd_config {
    std::string root;
    std::string tls_cert;
    std::string tls_key;
};

// One per shard: the HTTP server and this shard's part of the key-value store.
class httpd_shard {
    httpd_config _cfg;
    std::unique_ptr<http::server> _server;
    std::unordered_map<std::string, std::string> _kv;
    std::chrono::steady_clock::time_point _started = std::chrono::steady_clock::now();
    sharded<httpd_shard>* _all = nullptr;

    static unsigned owner_of(const std::string& key) { return unsigned(std::hash<std::string>{}(key) % smp::count); }

    http::router make_router() {
        http::router r;
        r.add("GET", "/api/status", [this](http::request&) {
            auto& st = _server->stats();
            nlohmann::json j = {
                {"shard", this_shard_id()},
                {"shards", smp::count},
                {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - _started).count()},
                {"requests", st.requests},
                {"connections_open", st.connections_open},
                {"bad_requests", st.bad_requests},
            };
            return make_ready_future<http::reply>(http::reply::json(j));
        });
        r.add("GET", "/api/kv/{key}", [this](http::request& req) {
            auto key = req.param("key");
            return _all->invoke_on(owner_of(key), [key](httpd_shard& s) {
                auto it = s._kv.find(key);
                if (it == s._kv.end()) {
                    return http::reply::error(404, fmt::format("no key {}", key));
                }
                return http::reply(200, it->second, "application/json");
            });
        });
        r.add("PUT", "/api/kv/{key}", [this](http::request& req) {
            auto key = req.param("key");
            if (!nlohmann::json::accept(req.body)) {
                return make_ready_future<http::reply>(http::reply::error(400, "the body is not JSON"));
            }
            return _all->invoke_on(owner_of(key), [key, body = std::move(req.body)](httpd_shard& s) mutable {
                bool fresh = s._kv.insert_or_assign(key, std::move(body)).second;
                return http::reply(fresh ? 201 : 200, {}, {});
            });
        });
        r.add("DELETE", "/api/kv/{key}", [this](http::request& req) {
            auto key = req.param("key");
            return _all->invoke_on(owner_of(key), [key](httpd_shard& s) {
                return s._kv.erase(key) ? http::reply(204, {}, {})
                                        : http::reply::error(404, fmt::format("no key {}", key));
            });
        });
        if (!_cfg.root.empty()) {
            r.add("GET", "/{path*}", http::make_file_handler(_cfg.root));
        }
        return r;
    }

public:
    explicit httpd_shard(httpd_config cfg) : _cfg(std::move(cfg)) {}

    void listen(sharded<httpd_shard>& all, net::socket_address addr) {
        _all = &all;
        _server = std::make_unique<http::server>(make_router());
        net::listen_options lo;
        lo.lb = net::load_balancing::per_shard;
        if (!_cfg.tls_cert.empty()) {
            auto creds = make_shared<tls::server_credentials>();
            creds->set_x509_key_file(_cfg.tls_cert, _cfg.tls_key);
            _server->listen(tls::listen(creds, addr, lo));
        } else {
            _server->listen(addr, lo);
        }
    }
    net::socket_address address() const { return _server->local_address(); }
    future<> stop() { return _server ? _server->stop() : make_ready_future<>(); }
};

struct cli_values {
    std::string address = "0.0.0.0";
    unsigned port = 8080;
    httpd_config cfg;
};

future<> stop_all(sharded<httpd_shard>& shards, bool& running, promise<>& stopped) {
    if (running) {
        running = false;
        co_await shards.stop();
    }
    stopped.set_value();
}

future<int> run(const cli_values& v) {
    net::inet_address addr;
    try {
        addr = net::inet_address::parse(v.address);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "reef-httpd: --address: %s\n", e.what());
        co_return 2;
    }
    sharded<httpd_shard> shards;
    promise<> stopped;
    auto stopped_future = stopped.get_future();
    bool running = false;
    // (A plain lambda calling a coroutine function: a coroutine lambda's captures would die at
    // its first suspension, see runtime/coroutine.hh.)
    engine().at_exit([&] { return stop_all(shards, running, stopped); });
    std::exception_ptr start_error;
    try {
        co_await shards.start(v.cfg);
        running = true;
        // Shard 0 binds first: port 0 becomes one port every shard then shares.
        net::socket_address sa(addr, std::uint16_t(v.port));
        auto bound = shards.invoke_on(0, [&shards, sa](httpd_shard& s) {
            s.listen(shards, sa);
            return s.address();
        });
        sa = co_await std::move(bound);
        auto others = shards.invoke_on_others([&shards, sa](httpd_shard& s) { s.listen(shards, sa); });
        co_await std::move(others);
        fmt::print("reef-httpd listening on {} ({}), {} shards{}\n", sa, v.cfg.tls_cert.empty() ? "http" : "https",
                   smp::count, v.cfg.root.empty() ? std::string() : ", files from " + v.cfg.root);
        std::fflush(stdout);
    } catch (...) {
        start_error = std::current_exception();
    }
    if (start_error) {
        hlog.error("cannot start: {}", exception_message(start_error));
        if (running) {
            running = false;
            co_await shards.stop();
        }
        co_return 1;
    }
    co_await std::move(stopped_future);
    co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
    app app("reef-httpd",
            "Reef HTTP server: static files from --root and a small JSON API (/api/status, /api/kv/{key}) on every "
            "shard. Stops on SIGINT or SIGTERM.");
    cli_values v;
    auto& o = app.options();
    o.add_option("--address", v.address, "Local IPv4 or IPv6 address to listen on")->capture_default_str();
    o.add_option("--port", v.port, "TCP port (0: any free port, printed when listening)")
        ->check(CLI::Range(0u, 65535u))
        ->capture_default_str();
    o.add_option("--root", v.cfg.root, "Directory of static files served under /")->check(CLI::ExistingDirectory);
    auto* cert =
        o.add_option("--tls-cert", v.cfg.tls_cert, "PEM certificate chain: serve HTTPS")->check(CLI::ExistingFile);
    auto* key = o.add_option("--tls-key", v.cfg.tls_key, "PEM private key of --tls-cert")->check(CLI::ExistingFile);
    cert->needs(key);
    key->needs(cert);
    return app.run(argc, argv, [&]() -> future<int> { return run(v); });
}
