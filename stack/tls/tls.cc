#include "stack/tls/tls.hh"

#include "runtime/coroutine.hh"
#include "runtime/deleter.hh"
#include "runtime/iostream.hh"
#include "runtime/log.hh"
#include "runtime/semaphore.hh"
#include "runtime/temporary_buffer.hh"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sys/uio.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <sstream>
#include <system_error>
#include <utility>

namespace reef::tls {

namespace {

logger tls_log("tls");

// GnuTLS >= 3.3 initializes itself when loaded; calling gnutls_global_init() once more is cheap,
// reference-counted, and makes a failure visible instead of surfacing later as odd errors.
void ensure_gnutls_initialized() {
    static std::once_flag once;
    std::call_once(once, [] {
        int r = gnutls_global_init();
        if (r < 0) {
            throw tls_error(fmt::format("tls: GnuTLS initialization failed: {}", gnutls_strerror(r)), r);
        }
    });
}

[[noreturn]] void throw_gnutls(int code, std::string_view context) {
    throw tls_error(fmt::format("{}: {} (GnuTLS error {})", context, gnutls_strerror(code), code), code);
}

gnutls_x509_crt_fmt_t to_gnutls(x509_crt_format f) noexcept {
    return f == x509_crt_format::pem ? GNUTLS_X509_FMT_PEM : GNUTLS_X509_FMT_DER;
}

gnutls_datum_t datum_of(std::string_view s) noexcept {
    return gnutls_datum_t{reinterpret_cast<unsigned char*>(const_cast<char*>(s.data())),
                          static_cast<unsigned>(s.size())};
}

std::string read_whole_file(const std::string& path, std::string_view what) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        int err = errno ? errno : ENOENT;
        throw std::system_error(err, std::system_category(), fmt::format("tls: cannot read {} file {}", what, path));
    }
    std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (f.bad()) {
        throw std::system_error(EIO, std::system_category(), fmt::format("tls: cannot read {} file {}", what, path));
    }
    return data;
}

// What a certificate verification status means, in the words an operator looks for.
std::string describe_verification_status(unsigned status, std::string_view expected_name) {
    struct bit_text {
        unsigned bit;
        const char* text;
    };
    static const bit_text texts[] = {
        {GNUTLS_CERT_SIGNER_NOT_FOUND, "signer not found (unknown CA)"},
        {GNUTLS_CERT_EXPIRED, "certificate expired"},
        {GNUTLS_CERT_NOT_ACTIVATED, "certificate not yet activated"},
        {GNUTLS_CERT_REVOKED, "certificate revoked"},
        {GNUTLS_CERT_SIGNATURE_FAILURE, "signature verification failed"},
        {GNUTLS_CERT_SIGNER_NOT_CA, "signer is not a CA"},
        {GNUTLS_CERT_INSECURE_ALGORITHM, "insecure algorithm"},
        {GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE, "signer constraints violated"},
        {GNUTLS_CERT_PURPOSE_MISMATCH, "certificate not meant for this purpose"},
        {GNUTLS_CERT_MISMATCH, "certificate does not match the known one"},
        {GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED, "revocation data superseded"},
        {GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE, "revocation data issued in the future"},
        {GNUTLS_CERT_UNEXPECTED_OWNER, nullptr},  // hostname mismatch, worded below
        {GNUTLS_CERT_MISSING_OCSP_STATUS, "OCSP status missing"},
        {GNUTLS_CERT_INVALID_OCSP_STATUS, "OCSP status invalid"},
        {GNUTLS_CERT_UNKNOWN_CRIT_EXTENSIONS, "unknown critical extensions"},
    };
    std::string out;
    auto add = [&out](std::string_view s) {
        if (!out.empty()) {
            out += ", ";
        }
        out += s;
    };
    for (const auto& t : texts) {
        if (!(status & t.bit)) {
            continue;
        }
        if (t.bit == GNUTLS_CERT_UNEXPECTED_OWNER) {
            add(expected_name.empty() ? std::string("hostname mismatch")
                                      : fmt::format("hostname mismatch (expected {})", expected_name));
        } else {
            add(t.text);
        }
    }
    if (out.empty()) {
        gnutls_datum_t txt{};
        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &txt, 0) == 0) {
            out.assign(reinterpret_cast<const char*>(txt.data), txt.size);
            gnutls_free(txt.data);
        } else {
            out = fmt::format("status {:#x}", status);
        }
    }
    return out;
}

bool is_ip_literal(const std::string& name) noexcept {
    unsigned char buf[sizeof(in6_addr)];
    return ::inet_pton(AF_INET, name.c_str(), buf) == 1 || ::inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

// A configuration change of credentials: one CA source or one certificate/key pair.
struct trust_entry {
    std::string data;
    x509_crt_format fmt;
    std::string source;  // for messages: "file /x/ca.pem" or "the data given to set_x509_trust"
    bool system = false;
};

struct key_entry {
    std::string cert;
    std::string key;
    x509_crt_format fmt;
    std::string source;
};

}  // namespace

// ------------------------------------------------------------------------------------------------
// Credentials

namespace internal {

// What one connection needs from its credentials, frozen: GnuTLS's credentials may not change
// while a session uses them, so every change builds a new snapshot and sessions keep theirs.
class credentials_snapshot {
public:
    gnutls_certificate_credentials_t cred = nullptr;
    gnutls_priority_t priority = nullptr;
    std::vector<std::string> alpn;
    client_auth auth = client_auth::none;
    std::string ticket_key;  // empty: no session tickets
    bool server = false;

    credentials_snapshot() = default;
    credentials_snapshot(const credentials_snapshot&) = delete;
    credentials_snapshot& operator=(const credentials_snapshot&) = delete;
    ~credentials_snapshot() {
        if (priority) {
            gnutls_priority_deinit(priority);
        }
        if (cred) {
            gnutls_certificate_free_credentials(cred);
        }
    }
};

// A server's check of the client's certificate, run by GnuTLS during the handshake (client_auth
// request/require). Returns 0 to go on, non-zero to fail the handshake.
int verify_client_certificate(gnutls_session_t gs) noexcept;

}  // namespace internal

struct certificate_credentials::impl {
    bool server;
    std::vector<trust_entry> trust;
    std::vector<key_entry> keys;
    std::string priority = "NORMAL";
    std::vector<std::string> alpn;
    client_auth auth = client_auth::none;
    std::string ticket_key;
    lw_shared_ptr<internal::credentials_snapshot> current;

    explicit impl(bool s) : server(s) {}

    // Build a snapshot from this configuration; throws naming the entry GnuTLS rejected.
    lw_shared_ptr<internal::credentials_snapshot> build() const {
        auto snap = make_lw_shared<internal::credentials_snapshot>();
        snap->server = server;
        snap->alpn = alpn;
        snap->auth = auth;
        snap->ticket_key = ticket_key;
        int r = gnutls_certificate_allocate_credentials(&snap->cred);
        if (r < 0) {
            throw_gnutls(r, "tls: cannot allocate credentials");
        }
        // Without this flag set_x509_key_mem2 returns 0 rather than the key's index; with it,
        // errors stay negative either way, which is all that is checked.
        gnutls_certificate_set_flags(snap->cred, GNUTLS_CERTIFICATE_API_V2);
        for (const auto& t : trust) {
            if (t.system) {
                r = gnutls_certificate_set_x509_system_trust(snap->cred);
                if (r < 0) {
                    throw_gnutls(r, "tls: cannot load the system's trusted CAs");
                }
                continue;
            }
            gnutls_datum_t d = datum_of(t.data);
            r = gnutls_certificate_set_x509_trust_mem(snap->cred, &d, to_gnutls(t.fmt));
            if (r < 0) {
                throw_gnutls(r, fmt::format("tls: cannot load trusted CA certificates from {}", t.source));
            }
            if (r == 0) {
                throw tls_error(fmt::format("tls: no CA certificate found in {}", t.source), 0);
            }
        }
        for (const auto& k : keys) {
            gnutls_datum_t c = datum_of(k.cert);
            gnutls_datum_t kd = datum_of(k.key);
            r = gnutls_certificate_set_x509_key_mem2(snap->cred, &c, &kd, to_gnutls(k.fmt), nullptr, 0);
            if (r < 0) {
                throw_gnutls(r, fmt::format("tls: cannot load certificate and key from {}", k.source));
            }
        }
        if (server && auth != client_auth::none) {
            gnutls_certificate_set_verify_function(snap->cred, &internal::verify_client_certificate);
        }
        if (server) {
            // Finite-field DHE is only used by TLS 1.2 DHE suites; ECDHE and TLS 1.3 do not need it.
            gnutls_certificate_set_known_dh_params(snap->cred, GNUTLS_SEC_PARAM_MEDIUM);
        }
        const char* err_pos = nullptr;
        r = gnutls_priority_init2(&snap->priority, priority.c_str(), &err_pos, 0);
        if (r < 0) {
            snap->priority = nullptr;
            throw_gnutls(
                r, fmt::format("tls: invalid priority string \"{}\" (at \"{}\")", priority, err_pos ? err_pos : ""));
        }
        return snap;
    }
};

namespace internal {
lw_shared_ptr<credentials_snapshot> snapshot_of(const certificate_credentials& c) { return c._impl->current; }
}  // namespace internal

certificate_credentials::certificate_credentials(bool server) : _impl(std::make_unique<impl>(server)) {
    ensure_gnutls_initialized();
    _impl->current = _impl->build();
}

certificate_credentials::~certificate_credentials() = default;

void certificate_credentials::update(const std::function<void(impl&)>& change) {
    // The configuration is small (a few certificates): changing a copy and building it before
    // committing keeps a failed change invisible.
    impl next(*_impl);
    change(next);
    auto snap = next.build();
    *_impl = std::move(next);
    _impl->current = std::move(snap);
}

void certificate_credentials::set_x509_trust_file(const std::string& path, x509_crt_format fmt) {
    std::string data = read_whole_file(path, "CA certificate");
    update([&](impl& cfg) { cfg.trust.push_back(trust_entry{std::move(data), fmt, "file " + path}); });
}

void certificate_credentials::set_x509_trust(std::string_view data, x509_crt_format fmt) {
    update([&](impl& cfg) {
        cfg.trust.push_back(trust_entry{std::string(data), fmt, "the data given to set_x509_trust"});
    });
}

void certificate_credentials::set_system_trust() {
    update([&](impl& cfg) {
        cfg.trust.push_back(trust_entry{{}, x509_crt_format::pem, "the system's CA store", true});
    });
}

void certificate_credentials::set_x509_key_file(const std::string& cert_path, const std::string& key_path,
                                                x509_crt_format fmt) {
    std::string cert = read_whole_file(cert_path, "certificate");
    std::string key = read_whole_file(key_path, "key");
    update([&](impl& cfg) {
        cfg.keys.push_back(
            key_entry{std::move(cert), std::move(key), fmt, fmt::format("files {} and {}", cert_path, key_path)});
    });
}

void certificate_credentials::set_x509_key(std::string_view cert, std::string_view key, x509_crt_format fmt) {
    update([&](impl& cfg) {
        cfg.keys.push_back(key_entry{std::string(cert), std::string(key), fmt, "the data given to set_x509_key"});
    });
}

void certificate_credentials::reload_x509_key_file(const std::string& cert_path, const std::string& key_path,
                                                   x509_crt_format fmt) {
    std::string cert = read_whole_file(cert_path, "certificate");
    std::string key = read_whole_file(key_path, "key");
    update([&](impl& cfg) {
        cfg.keys.clear();
        cfg.keys.push_back(
            key_entry{std::move(cert), std::move(key), fmt, fmt::format("files {} and {}", cert_path, key_path)});
    });
    tls_log.info("reloaded certificate {} and key {}", cert_path, key_path);
}

void certificate_credentials::reload_x509_key(std::string_view cert, std::string_view key, x509_crt_format fmt) {
    update([&](impl& cfg) {
        cfg.keys.clear();
        cfg.keys.push_back(key_entry{std::string(cert), std::string(key), fmt, "the data given to reload_x509_key"});
    });
}

void certificate_credentials::set_priority_string(std::string priority) {
    update([&](impl& cfg) { cfg.priority = std::move(priority); });
}

void certificate_credentials::set_alpn_protocols(std::vector<std::string> protocols) {
    for (const auto& p : protocols) {
        if (p.empty() || p.size() > 255) {
            throw std::invalid_argument(fmt::format("tls: ALPN protocol name \"{}\" must be 1 to 255 bytes", p));
        }
    }
    update([&](impl& cfg) { cfg.alpn = std::move(protocols); });
}

std::size_t certificate_credentials::key_count() const noexcept { return _impl->keys.size(); }

client_credentials::client_credentials() : certificate_credentials(false) {}

server_credentials::server_credentials() : certificate_credentials(true) {}

void server_credentials::set_client_auth(client_auth a) {
    update([&](impl& cfg) { cfg.auth = a; });
}

void server_credentials::enable_session_tickets() {
    if (!_impl->ticket_key.empty()) {
        return;
    }
    gnutls_datum_t key{};
    int r = gnutls_session_ticket_key_generate(&key);
    if (r < 0) {
        throw_gnutls(r, "tls: cannot generate a session ticket key");
    }
    std::string k(reinterpret_cast<const char*>(key.data), key.size);
    gnutls_memset(key.data, 0, key.size);
    gnutls_free(key.data);
    update([&](impl& cfg) { cfg.ticket_key = std::move(k); });
}

// ------------------------------------------------------------------------------------------------
// Sessions

namespace internal {

// Something run once (the handshake, sending close_notify) that others may wait for.
class once_operation {
    enum class state { idle, running, done };
    state _state = state::idle;
    std::exception_ptr _ex;
    std::vector<promise<>> _waiters;

public:
    bool idle() const noexcept { return _state == state::idle; }
    bool done() const noexcept { return _state == state::done; }
    bool succeeded() const noexcept { return _state == state::done && !_ex; }
    void start() noexcept { _state = state::running; }
    // The outcome, now if done, else when finish() is called.
    future<> wait() {
        if (_state == state::done) {
            return _ex ? make_exception_future<>(_ex) : make_ready_future<>();
        }
        _waiters.emplace_back();
        return _waiters.back().get_future();
    }
    void finish(std::exception_ptr ex) noexcept {
        _state = state::done;
        _ex = std::move(ex);
        for (auto& w : _waiters) {
            if (_ex) {
                w.set_exception(_ex);
            } else {
                w.set_value();
            }
        }
        _waiters.clear();
    }
};

// One TLS connection: the GnuTLS session and the underlying socket's streams. Shared by the
// socket, its source and sink, and background operations (close_notify), so whichever goes last
// frees it.
//
// GnuTLS's transport callbacks never block: pull() hands out the bytes already read from the
// underlying stream, or fails with EAGAIN, after which the caller reads more and calls GnuTLS
// again; push() appends records to _pending_out, which is written out afterwards. All GnuTLS
// calls run to completion synchronously on this shard, so the reader and the writer never run
// inside GnuTLS at the same time; their only shared transport state is _pending_out, always
// taken whole and in order under _write_lock.
class session : public enable_lw_shared_from_this<session> {
public:
    enum class side { client, server };

private:
    side _side;
    lw_shared_ptr<credentials_snapshot> _creds;
    tls_options _opts;
    net::connected_socket _sock;
    input_stream<char> _in;
    output_stream<char> _out;
    gnutls_session_t _session = nullptr;

    // Transport
    temporary_buffer<char> _in_buf;  // read from _in, not yet pulled by GnuTLS
    bool _in_eof = false;            // _in ended
    bool _pull_starved = false;      // pull() found nothing since the last read_more()
    std::vector<temporary_buffer<char>> _pending_out;
    std::size_t _pending_out_bytes = 0;
    semaphore _write_lock{1};

    once_operation _handshake;
    once_operation _shutdown_output;
    bool _eof = false;              // the peer's data ended (close_notify or end of stream)
    bool _input_shutdown = false;   // our input was shut down: reads return end of stream
    bool _output_shutdown = false;  // close_notify queued or sent: writes fail
    bool _out_closed = false;       // _out closed (under _write_lock): nothing more is written
    std::exception_ptr _read_error;
    unsigned _verify_status = 0;  // why verify_client_certificate() refused the client's certificate

    static constexpr std::size_t flush_threshold = 64 * 1024;

public:
    session(side s, lw_shared_ptr<credentials_snapshot> creds, net::connected_socket sock, tls_options opts)
        : _side(s), _creds(std::move(creds)), _opts(std::move(opts)), _sock(std::move(sock)), _in(_sock.input()),
          _out(_sock.output(8192)) {
        unsigned flags = (s == side::client ? GNUTLS_CLIENT : GNUTLS_SERVER) | GNUTLS_NONBLOCK;
        int r = gnutls_init(&_session, flags);
        if (r < 0) {
            _session = nullptr;
            throw_gnutls(r, "tls: cannot create a session");
        }
        try {
            configure();
        } catch (...) {
            gnutls_deinit(_session);
            throw;
        }
    }
    session(const session&) = delete;
    session& operator=(const session&) = delete;
    ~session() {
        if (_session) {
            gnutls_deinit(_session);
        }
    }

    net::connected_socket& socket() noexcept { return _sock; }
    bool handshake_completed() const noexcept { return _handshake.succeeded(); }
    gnutls_session_t gnutls() const noexcept { return _session; }
    side get_side() const noexcept { return _side; }

    future<> handshake();
    future<temporary_buffer<char>> get();
    future<> put(temporary_buffer<char> buf);
    future<> flush() { return flush_pending(true); }
    future<> shutdown_output();
    void shutdown_input() {
        _input_shutdown = true;
        _sock.shutdown_input();
    }

private:
    void configure();
    std::string peer_name() const { return _sock.remote_address().to_string(); }
    future<> do_handshake();
    future<> read_more();
    future<> flush_pending(bool flush_underlying);
    future<> flush_and_close_output();
    void flush_in_background();
    void send_alert_for(int r) noexcept;
    unsigned verify_status() const noexcept {
        return _verify_status ? _verify_status : gnutls_session_get_verify_cert_status(_session);
    }
    friend int verify_client_certificate(gnutls_session_t gs) noexcept;
    std::exception_ptr handshake_error(int r);
    std::exception_ptr read_error(int r);

    static ssize_t pull(gnutls_transport_ptr_t p, void* data, size_t len) noexcept;
    static ssize_t vec_push(gnutls_transport_ptr_t p, const giovec_t* iov, int iovcnt) noexcept;
    static int pull_timeout(gnutls_transport_ptr_t p, unsigned ms) noexcept;
};

void session::configure() {
    int r = gnutls_credentials_set(_session, GNUTLS_CRD_CERTIFICATE, _creds->cred);
    if (r < 0) {
        throw_gnutls(r, "tls: cannot set credentials");
    }
    r = gnutls_priority_set(_session, _creds->priority);
    if (r < 0) {
        throw_gnutls(r, "tls: cannot set priorities");
    }
    gnutls_transport_set_ptr(_session, this);
    gnutls_session_set_ptr(_session, this);
    gnutls_transport_set_pull_function(_session, &session::pull);
    gnutls_transport_set_vec_push_function(_session, &session::vec_push);
    gnutls_transport_set_pull_timeout_function(_session, &session::pull_timeout);

    const auto& alpn = (_side == side::client && !_opts.alpn.empty()) ? _opts.alpn : _creds->alpn;
    if (!alpn.empty()) {
        std::vector<gnutls_datum_t> protos;
        protos.reserve(alpn.size());
        for (const auto& p : alpn) {
            protos.push_back(datum_of(p));
        }
        r = gnutls_alpn_set_protocols(_session, protos.data(), protos.size(),
                                      _side == side::server ? GNUTLS_ALPN_SERVER_PRECEDENCE : 0);
        if (r < 0) {
            throw_gnutls(r, "tls: cannot set ALPN protocols");
        }
    }

    if (_side == side::client) {
        const std::string& name = _opts.server_name;
        if (!name.empty() && !is_ip_literal(name)) {
            // SNI carries DNS names only (RFC 6066, section 3).
            r = gnutls_server_name_set(_session, GNUTLS_NAME_DNS, name.data(), name.size());
            if (r < 0) {
                throw_gnutls(r, fmt::format("tls: cannot set server name \"{}\"", name));
            }
        }
        // The name (a DNS name or an IP address) is checked by GnuTLS during the handshake,
        // which then fails with GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR.
        bool check_name = _opts.verify_peer_name && !name.empty();
        gnutls_session_set_verify_cert(_session, check_name ? name.c_str() : nullptr, 0);
        if (!_opts.session_resume_data.empty()) {
            r = gnutls_session_set_data(_session, _opts.session_resume_data.data(), _opts.session_resume_data.size());
            if (r < 0) {
                // Stale or foreign data: not fatal, the handshake is simply a full one.
                tls_log.debug("ignoring session resume data: {}", gnutls_strerror(r));
            }
        }
    } else {
        switch (_creds->auth) {
        case client_auth::none: break;
        case client_auth::request: gnutls_certificate_server_set_request(_session, GNUTLS_CERT_REQUEST); break;
        case client_auth::require: gnutls_certificate_server_set_request(_session, GNUTLS_CERT_REQUIRE); break;
        }
        if (!_creds->ticket_key.empty()) {
            gnutls_datum_t key = datum_of(_creds->ticket_key);
            r = gnutls_session_ticket_enable_server(_session, &key);
            if (r < 0) {
                throw_gnutls(r, "tls: cannot enable session tickets");
            }
        }
    }
}

int verify_client_certificate(gnutls_session_t gs) noexcept {
    auto* s = static_cast<session*>(gnutls_session_get_ptr(gs));
    unsigned n = 0;
    if (!gnutls_certificate_get_peers(gs, &n) || n == 0) {
        // None sent: fine for `request`; for `require` GnuTLS has already refused the handshake.
        return 0;
    }
    unsigned status = 0;
    int r = gnutls_certificate_verify_peers3(gs, nullptr, &status);
    if (r < 0) {
        status = GNUTLS_CERT_INVALID;
    }
    if (status) {
        s->_verify_status = status;
        return -1;
    }
    return 0;
}

ssize_t session::pull(gnutls_transport_ptr_t p, void* data, size_t len) noexcept {
    auto* s = static_cast<session*>(p);
    if (s->_in_buf.empty()) {
        if (s->_in_eof) {
            return 0;
        }
        s->_pull_starved = true;
        gnutls_transport_set_errno(s->_session, EAGAIN);
        return -1;
    }
    std::size_t n = std::min(len, s->_in_buf.size());
    std::memcpy(data, s->_in_buf.get(), n);
    s->_in_buf.trim_front(n);
    return static_cast<ssize_t>(n);
}

ssize_t session::vec_push(gnutls_transport_ptr_t p, const giovec_t* iov, int iovcnt) noexcept {
    auto* s = static_cast<session*>(p);
    std::size_t total = 0;
    for (int i = 0; i < iovcnt; ++i) {
        total += iov[i].iov_len;
    }
    try {
        temporary_buffer<char> b(total);
        std::size_t off = 0;
        for (int i = 0; i < iovcnt; ++i) {
            std::memcpy(b.get_write() + off, iov[i].iov_base, iov[i].iov_len);
            off += iov[i].iov_len;
        }
        s->_pending_out.push_back(std::move(b));
    } catch (...) {
        gnutls_transport_set_errno(s->_session, ENOMEM);
        return -1;
    }
    s->_pending_out_bytes += total;
    return static_cast<ssize_t>(total);
}

int session::pull_timeout(gnutls_transport_ptr_t p, unsigned) noexcept {
    // Not called for non-blocking TLS sessions; GnuTLS asks for it to be set all the same.
    auto* s = static_cast<session*>(p);
    return s->_in_buf.empty() && !s->_in_eof ? 0 : 1;
}

future<> session::read_more() {
    auto b = co_await _in.read();
    _pull_starved = false;
    if (b.empty()) {
        _in_eof = true;
    } else {
        _in_buf = std::move(b);
    }
}

future<> session::flush_pending(bool flush_underlying) {
    if (_pending_out.empty() && !flush_underlying) {
        co_return;
    }
    auto units = co_await get_units(_write_lock, 1);
    // Whoever holds the lock writes everything pushed so far, in push order, including records
    // pushed by the other side (reader/writer) while it waited.
    auto bufs = std::exchange(_pending_out, {});
    _pending_out_bytes = 0;
    if (_out_closed) {
        if (bufs.empty()) {
            co_return;
        }
        throw std::system_error(EPIPE, std::system_category(),
                                fmt::format("TLS write to {} after shutdown_output", peer_name()));
    }
    for (auto& b : bufs) {
        co_await _out.write(std::move(b));
    }
    if (flush_underlying) {
        co_await _out.flush();
    }
}

future<> session::flush_and_close_output() {
    auto units = co_await get_units(_write_lock, 1);
    if (_out_closed) {
        co_return;
    }
    std::exception_ptr ex;
    try {
        auto bufs = std::exchange(_pending_out, {});
        _pending_out_bytes = 0;
        for (auto& b : bufs) {
            co_await _out.write(std::move(b));
        }
    } catch (...) {
        ex = std::current_exception();
    }
    // Closed (flushing, then a FIN) even when a write failed; nothing is written after this.
    _out_closed = true;
    try {
        co_await _out.close();
    } catch (...) {
        if (!ex) {
            ex = std::current_exception();
        }
    }
    if (ex) {
        std::rethrow_exception(ex);
    }
}

void session::flush_in_background() {
    // Records GnuTLS produced while reading (a TLS 1.3 KeyUpdate reply): the reader does not wait
    // for them, so a writer stuck on back-pressure cannot stall it. A write error is remembered by
    // the output stream and seen by the next write.
    (void)flush_pending(true).then_wrapped([self = shared_from_this()](future<> f) { f.ignore_ready_future(); });
}

// Tell the peer why we give up (queued; the caller flushes). Nothing is sent in answer to the
// peer's own alert.
void session::send_alert_for(int r) noexcept {
    if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        return;
    }
    if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || (r == GNUTLS_E_CERTIFICATE_ERROR && _verify_status)) {
        unsigned status = verify_status();
        auto alert = GNUTLS_A_BAD_CERTIFICATE;
        if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) {
            alert = GNUTLS_A_UNKNOWN_CA;
        } else if (status & GNUTLS_CERT_EXPIRED) {
            alert = GNUTLS_A_CERTIFICATE_EXPIRED;
        } else if (status & GNUTLS_CERT_REVOKED) {
            alert = GNUTLS_A_CERTIFICATE_REVOKED;
        }
        gnutls_alert_send(_session, GNUTLS_AL_FATAL, alert);
        return;
    }
    gnutls_alert_send_appropriate(_session, r);
}

std::exception_ptr session::handshake_error(int r) {
    if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || (r == GNUTLS_E_CERTIFICATE_ERROR && _verify_status)) {
        unsigned status = verify_status();
        std::string why = status ? describe_verification_status(status, _opts.server_name) : gnutls_strerror(r);
        return std::make_exception_ptr(verification_error(
            fmt::format("certificate verification failed: {} (TLS handshake with {})", why, peer_name()), r, status));
    }
    if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        auto alert = gnutls_alert_get(_session);
        const char* name = gnutls_alert_get_name(alert);
        return std::make_exception_ptr(
            tls_error(fmt::format("TLS handshake with {} failed: the peer refused it with alert \"{}\" ({})",
                                  peer_name(), name ? name : "unknown", static_cast<int>(alert)),
                      r));
    }
    if (_in_eof && (r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_UNEXPECTED_PACKET_LENGTH)) {
        return std::make_exception_ptr(
            tls_error(fmt::format("TLS handshake with {} failed: the peer closed the connection", peer_name()), r));
    }
    return std::make_exception_ptr(tls_error(
        fmt::format("TLS handshake with {} failed: {} (GnuTLS error {})", peer_name(), gnutls_strerror(r), r), r));
}

std::exception_ptr session::read_error(int r) {
    if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        auto alert = gnutls_alert_get(_session);
        const char* name = gnutls_alert_get_name(alert);
        return std::make_exception_ptr(tls_error(
            fmt::format("TLS read from {} failed: the peer sent alert \"{}\"", peer_name(), name ? name : "unknown"),
            r));
    }
    return std::make_exception_ptr(
        tls_error(fmt::format("TLS read from {} failed: {} (GnuTLS error {})", peer_name(), gnutls_strerror(r), r), r));
}

future<> session::handshake() {
    if (_handshake.idle()) {
        _handshake.start();
        // The operation keeps the session alive; its outcome reaches everyone through wait().
        (void)do_handshake().then_wrapped([self = shared_from_this()](future<> f) {
            self->_handshake.finish(f.failed() ? f.get_exception() : nullptr);
        });
    }
    return _handshake.wait();
}

future<> session::do_handshake() {
    std::exception_ptr ex;
    try {
        for (;;) {
            int r = gnutls_handshake(_session);
            co_await flush_pending(true);
            if (r == GNUTLS_E_SUCCESS) {
                break;
            }
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                if (_pull_starved) {
                    co_await read_more();
                } else {
                    co_await coroutine::maybe_yield();  // GnuTLS made progress on buffered data
                }
                continue;
            }
            if (!gnutls_error_is_fatal(r)) {
                tls_log.debug("handshake with {}: {}", peer_name(), gnutls_strerror(r));
                continue;
            }
            send_alert_for(r);
            std::rethrow_exception(handshake_error(r));
        }
    } catch (const std::system_error& e) {
        // The transport refused a handshake record: the peer went away before (or while) we
        // wrote. Whether that shows as EOF on read or as EPIPE/ECONNRESET on write is a race, so
        // both are the same TLS error.
        if (e.code() == std::errc::broken_pipe || e.code() == std::errc::connection_reset) {
            ex = std::make_exception_ptr(tls_error(
                fmt::format("TLS handshake with {} failed: the peer closed the connection ({})", peer_name(), e.what()),
                0));
        } else {
            ex = std::current_exception();
        }
    } catch (...) {
        ex = std::current_exception();
    }
    if (ex) {
        // Let the peer see the alert GnuTLS queued (best effort: the transport may be broken).
        try {
            co_await flush_pending(true);
        } catch (...) {
        }
        tls_log.debug("handshake with {} failed", peer_name());
        std::rethrow_exception(ex);
    }
}

future<temporary_buffer<char>> session::get() {
    if (_read_error) {
        std::rethrow_exception(_read_error);
    }
    if (_eof || _input_shutdown) {
        co_return temporary_buffer<char>();
    }
    co_await handshake();
    for (;;) {
        if (_input_shutdown) {
            co_return temporary_buffer<char>();
        }
        if (_read_error) {
            std::rethrow_exception(_read_error);
        }
        gnutls_packet_t packet = nullptr;
        ssize_t r = gnutls_record_recv_packet(_session, &packet);
        if (!_pending_out.empty()) {
            flush_in_background();
        }
        if (r > 0) {
            gnutls_datum_t d{};
            gnutls_packet_get(packet, &d, nullptr);
            // Zero-copy: the buffer owns GnuTLS's decrypted record until the reader drops it.
            deleter del;
            try {
                del = make_deleter([packet] { gnutls_packet_deinit(packet); });
            } catch (...) {
                gnutls_packet_deinit(packet);
                throw;
            }
            co_return temporary_buffer<char>(reinterpret_cast<char*>(d.data), d.size, std::move(del));
        }
        if (packet) {
            gnutls_packet_deinit(packet);
        }
        if (r == 0) {
            _eof = true;  // close_notify
            co_return temporary_buffer<char>();
        }
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            if (_pull_starved) {
                co_await read_more();
            } else {
                co_await coroutine::maybe_yield();  // GnuTLS made progress on buffered data
            }
            continue;
        }
        if (_in_eof && (r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_UNEXPECTED_PACKET_LENGTH)) {
            _eof = true;
            if (_opts.require_close_notify) {
                _read_error = std::make_exception_ptr(tls_error(
                    fmt::format("TLS read from {} failed: the peer closed the connection without close_notify "
                                "(the data may be truncated)",
                                peer_name()),
                    static_cast<int>(r)));
                std::rethrow_exception(_read_error);
            }
            co_return temporary_buffer<char>();
        }
        if (r == GNUTLS_E_REHANDSHAKE) {
            // A TLS 1.2 server asked for renegotiation; declining by ignoring it is allowed.
            continue;
        }
        if (!gnutls_error_is_fatal(static_cast<int>(r))) {
            tls_log.debug("read from {}: {}", peer_name(), gnutls_strerror(static_cast<int>(r)));
            continue;
        }
        send_alert_for(static_cast<int>(r));
        flush_in_background();
        _read_error = read_error(static_cast<int>(r));
        std::rethrow_exception(_read_error);
    }
}

future<> session::put(temporary_buffer<char> buf) {
    co_await handshake();
    if (_output_shutdown) {
        throw std::system_error(EPIPE, std::system_category(),
                                fmt::format("TLS write to {} after shutdown_output", peer_name()));
    }
    const char* p = buf.get();
    std::size_t left = buf.size();
    unsigned stalls = 0;
    while (left) {
        ssize_t r = gnutls_record_send(_session, p, left);
        if (r > 0) {
            p += r;
            left -= static_cast<std::size_t>(r);
            stalls = 0;
            if (_pending_out_bytes >= flush_threshold) {
                co_await flush_pending(false);
            }
            continue;
        }
        // push() never fails, so EAGAIN cannot come from the transport; retry a few times as
        // GnuTLS asks (same data), then give up rather than spin.
        if ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && ++stalls < 16) {
            co_await flush_pending(false);
            continue;
        }
        throw tls_error(fmt::format("TLS write to {} failed: {} (GnuTLS error {})", peer_name(),
                                    gnutls_strerror(static_cast<int>(r)), r),
                        static_cast<int>(r));
    }
    co_await flush_pending(false);
}

future<> session::shutdown_output() {
    if (!_shutdown_output.idle()) {
        co_await _shutdown_output.wait();
        co_return;
    }
    _shutdown_output.start();
    _output_shutdown = true;
    std::exception_ptr ex;
    try {
        if (!_handshake.idle()) {
            // A handshake in progress (run by the reader) must end before close_notify can go.
            auto hs = _handshake.wait();
            co_await std::move(hs).then_wrapped([](future<> f) { f.ignore_ready_future(); });
        }
        if (_handshake.succeeded()) {
            // With push() never blocking, SHUT_WR queues the alert and returns at once.
            int r = gnutls_bye(_session, GNUTLS_SHUT_WR);
            if (r < 0) {
                tls_log.debug("close_notify to {}: {}", peer_name(), gnutls_strerror(r));
            }
        }
        co_await flush_and_close_output();
    } catch (...) {
        ex = std::current_exception();
    }
    _shutdown_output.finish(ex);
    if (ex) {
        std::rethrow_exception(ex);
    }
}

// ------------------------------------------------------------------------------------------------
// The socket

class tls_data_source final : public data_source_impl {
    lw_shared_ptr<session> _s;

public:
    explicit tls_data_source(lw_shared_ptr<session> s) noexcept : _s(std::move(s)) {}
    future<temporary_buffer<char>> get() override { return _s->get(); }
    future<> close() override {
        // Like a socket's input: reads end. The underlying input stays open so that a handshake
        // started by the writer can still read.
        return make_ready_future<>();
    }
};

class tls_data_sink final : public data_sink_impl {
    lw_shared_ptr<session> _s;

public:
    using data_sink_impl::put;
    explicit tls_data_sink(lw_shared_ptr<session> s) noexcept : _s(std::move(s)) {}
    future<> put(temporary_buffer<char> data) override { return _s->put(std::move(data)); }
    future<> flush() override { return _s->flush(); }
    future<> close() override { return _s->shutdown_output(); }
    std::size_t buffer_size_hint() const noexcept override { return 16384; }  // one full TLS record
};

class tls_socket_impl final : public net::connected_socket_impl {
    lw_shared_ptr<session> _s;

public:
    explicit tls_socket_impl(lw_shared_ptr<session> s) noexcept : _s(std::move(s)) {}
    session& get_session() const noexcept { return *_s; }
    lw_shared_ptr<session> session_ptr() const noexcept { return _s; }

    data_source source(const net::connected_socket_input_stream_config&) override {
        return data_source(std::make_unique<tls_data_source>(_s));
    }
    data_sink sink() override { return data_sink(std::make_unique<tls_data_sink>(_s)); }
    void shutdown_input() override { _s->shutdown_input(); }
    void shutdown_output() override {
        (void)_s->shutdown_output().then_wrapped([s = _s](future<> f) { f.ignore_ready_future(); });
    }
    void set_nodelay(bool on) override { _s->socket().set_nodelay(on); }
    bool get_nodelay() const override { return _s->socket().get_nodelay(); }
    void set_keepalive(bool on) override { _s->socket().set_keepalive(on); }
    bool get_keepalive() const override { return _s->socket().get_keepalive(); }
    void set_keepalive_parameters(const net::tcp_keepalive_params& p) override {
        _s->socket().set_keepalive_parameters(p);
    }
    net::tcp_keepalive_params get_keepalive_parameters() const override {
        return _s->socket().get_keepalive_parameters();
    }
    net::socket_address local_address() const noexcept override { return _s->socket().local_address(); }
    net::socket_address remote_address() const noexcept override { return _s->socket().remote_address(); }
    future<> wait_input_shutdown() override { return _s->socket().wait_input_shutdown(); }
};

}  // namespace internal

namespace {

internal::tls_socket_impl& tls_impl_of(const net::connected_socket& s) {
    auto* impl = dynamic_cast<internal::tls_socket_impl*>(s.impl());
    if (!impl) {
        throw std::invalid_argument("not a TLS socket (see tls::wrap_client/wrap_server)");
    }
    return *impl;
}

internal::session& completed_session_of(const net::connected_socket& s, const char* what) {
    auto& sess = tls_impl_of(s).get_session();
    if (!sess.handshake_completed()) {
        throw std::logic_error(fmt::format("tls::{}: the handshake has not completed (see tls::handshake())", what));
    }
    return sess;
}

net::connected_socket wrap(internal::session::side side, lw_shared_ptr<internal::credentials_snapshot> creds,
                           net::connected_socket&& s, tls_options opts) {
    auto sess = make_lw_shared<internal::session>(side, std::move(creds), std::move(s), std::move(opts));
    return net::connected_socket(std::make_unique<internal::tls_socket_impl>(std::move(sess)));
}

class tls_server_socket_impl final : public net::server_socket_impl {
    shared_ptr<server_credentials> _creds;
    net::server_socket _sock;
    tls_options _opts;

public:
    tls_server_socket_impl(shared_ptr<server_credentials> creds, net::server_socket sock, tls_options opts)
        : _creds(std::move(creds)), _sock(std::move(sock)), _opts(std::move(opts)) {}
    future<net::accept_result> accept() override {
        return _sock.accept().then([this](net::accept_result ar) {
            ar.connection = wrap_server(_creds, std::move(ar.connection), _opts);
            return ar;
        });
    }
    void abort_accept() override { _sock.abort_accept(); }
    net::socket_address local_address() const noexcept override { return _sock.local_address(); }
};

}  // namespace

net::connected_socket wrap_client(shared_ptr<client_credentials> creds, net::connected_socket&& s, tls_options opts) {
    return wrap(internal::session::side::client, internal::snapshot_of(*creds), std::move(s), std::move(opts));
}

net::connected_socket wrap_server(shared_ptr<server_credentials> creds, net::connected_socket&& s, tls_options opts) {
    return wrap(internal::session::side::server, internal::snapshot_of(*creds), std::move(s), std::move(opts));
}

future<net::connected_socket> connect(shared_ptr<client_credentials> creds, net::socket_address sa, tls_options opts) {
    net::connected_socket s = co_await net::connect(sa);
    co_return wrap_client(std::move(creds), std::move(s), std::move(opts));
}

net::server_socket listen(shared_ptr<server_credentials> creds, net::socket_address sa, net::listen_options lo,
                          tls_options opts) {
    net::server_socket ss = net::listen(sa, lo);
    return net::server_socket(
        std::make_unique<tls_server_socket_impl>(std::move(creds), std::move(ss), std::move(opts)));
}

future<> handshake(net::connected_socket& s) {
    // The session is held for the wait: the caller may drop the socket meanwhile.
    auto sess = tls_impl_of(s).session_ptr();
    return sess->handshake().finally([sess] {});
}

future<bool> check_session_is_resumed(net::connected_socket& s) {
    auto sess = tls_impl_of(s).session_ptr();
    return sess->handshake().then([sess] { return gnutls_session_is_resumed(sess->gnutls()) != 0; });
}

std::optional<std::string> get_selected_alpn_protocol(const net::connected_socket& s) {
    auto& sess = completed_session_of(s, "get_selected_alpn_protocol");
    gnutls_datum_t proto{};
    if (gnutls_alpn_get_selected_protocol(sess.gnutls(), &proto) < 0) {
        return std::nullopt;
    }
    return std::string(reinterpret_cast<const char*>(proto.data), proto.size);
}

std::optional<std::string> get_sni_server_name(const net::connected_socket& s) {
    auto& sess = completed_session_of(s, "get_sni_server_name");
    std::string name(256, '\0');
    for (;;) {
        std::size_t len = name.size();
        unsigned type = 0;
        int r = gnutls_server_name_get(sess.gnutls(), name.data(), &len, &type, 0);
        if (r == GNUTLS_E_SHORT_MEMORY_BUFFER) {
            name.resize(len + 1);
            continue;
        }
        if (r < 0 || type != GNUTLS_NAME_DNS) {
            return std::nullopt;
        }
        // len counts the name without the terminating zero GnuTLS writes after it.
        name.resize(len);
        return name;
    }
}

std::optional<std::string> get_peer_certificate_subject(const net::connected_socket& s) {
    auto& sess = completed_session_of(s, "get_peer_certificate_subject");
    unsigned n = 0;
    const gnutls_datum_t* chain = gnutls_certificate_get_peers(sess.gnutls(), &n);
    if (!chain || n == 0) {
        return std::nullopt;
    }
    gnutls_x509_crt_t crt = nullptr;
    int r = gnutls_x509_crt_init(&crt);
    if (r < 0) {
        throw_gnutls(r, "tls: cannot read the peer's certificate");
    }
    std::unique_ptr<gnutls_x509_crt_int, void (*)(gnutls_x509_crt_t)> guard(crt, gnutls_x509_crt_deinit);
    r = gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER);
    if (r < 0) {
        throw_gnutls(r, "tls: cannot parse the peer's certificate");
    }
    gnutls_datum_t dn{};
    r = gnutls_x509_crt_get_dn3(crt, &dn, 0);
    if (r < 0) {
        throw_gnutls(r, "tls: cannot read the peer's certificate subject");
    }
    std::string out(reinterpret_cast<const char*>(dn.data), dn.size);
    gnutls_free(dn.data);
    return out;
}

std::string get_session_resume_data(const net::connected_socket& s) {
    auto& sess = completed_session_of(s, "get_session_resume_data");
    if (sess.get_side() != internal::session::side::client) {
        throw std::logic_error("tls::get_session_resume_data: only a client can resume sessions");
    }
    gnutls_datum_t d{};
    int r = gnutls_session_get_data2(sess.gnutls(), &d);
    if (r < 0) {
        return {};
    }
    std::string out(reinterpret_cast<const char*>(d.data), d.size);
    gnutls_free(d.data);
    return out;
}

bool is_tls_socket(const net::connected_socket& s) noexcept {
    return dynamic_cast<internal::tls_socket_impl*>(s.impl()) != nullptr;
}

}  // namespace reef::tls
