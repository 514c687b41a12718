// TLS over any connected_socket (GnuTLS): a TLS socket is a net::connected_socket whose streams
// carry plaintext, layered on another connected_socket (a posix TCP socket, a native-stack one, or
// an in-memory pair in tests) that carries the records.
//
//   auto creds = make_shared<tls::client_credentials>();
//   creds->set_x509_trust_file("/etc/reef/ca.pem");
//   connected_socket s = co_await tls::connect(creds, addr, {.server_name = "reef.test"});
//   auto out = s.output();                      // plaintext in, records out
//
//   auto screds = make_shared<tls::server_credentials>();
//   screds->set_x509_key_file("/etc/reef/cert.pem", "/etc/reef/key.pem");
//   server_socket ss = tls::listen(screds, addr);
//
// Contract, for every type here:
//  - Single-shard: credentials, sockets and their futures belong to the shard that created them.
//    Credentials are shared (reef::shared_ptr, not thread-safe) by the connections of one shard;
//    build one set per shard (e.g. in a sharded<> service) from the same files.
//  - The handshake runs lazily, on the first read or write of either stream, or at once with
//    handshake(). It is run once; a concurrent read and write both wait for it. If it fails, that
//    read/write and every later one on the socket fail with the same exception. It needs the
//    peer: a first write (its flush or close) does not complete until the peer reads or writes
//    too, so a side that writes first must not wait for that before letting the other side run.
//  - At most one read and one write in flight per socket (as for any socket); they may run
//    concurrently with each other.
//  - Errors:
//      * certificate/key/trust files that cannot be read or parsed: thrown at once by the setter,
//        naming the file(s) and the reason (std::system_error for I/O, tls_error for GnuTLS);
//      * the peer's certificate is rejected by our verification: verification_error, whose
//        message says why ("certificate verification failed: signer not found (unknown CA)",
//        "...: hostname mismatch (expected reef.test)", "...: certificate expired");
//      * any other TLS failure (the peer rejected us with an alert, garbage or a non-TLS peer,
//        a corrupted record): tls_error naming the peer address and GnuTLS's reason;
//      * failures of the underlying socket pass through unchanged (e.g. std::system_error
//        ECONNRESET).
//  - Closing: closing the output stream (or shutdown_output(), which does it in the background,
//    errors dropped) sends TLS close_notify after the data written so far and then closes the
//    underlying output (a FIN); later writes fail with std::system_error(EPIPE). Closing the
//    input stream sends nothing. The underlying socket lives until the TLS socket and both of its
//    streams are gone.
//  - End of stream: a read returns it when the peer sent close_notify, or when the underlying
//    stream ends without one (a plain FIN; many peers never send close_notify) unless
//    tls_options::require_close_notify is set.
#pragma once

#include "runtime/future.hh"
#include "runtime/shared_ptr.hh"
#include "stack/net/api.hh"
#include "stack/net/socket_address.hh"

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace reef::tls {

/// Encoding of certificate and key data.
enum class x509_crt_format {
    der,  ///< binary DER (one certificate per file)
    pem,  ///< base64 PEM ("-----BEGIN CERTIFICATE-----"), possibly several in a row
};

/// Whether a server asks its clients for a certificate.
enum class client_auth {
    none,     ///< do not ask
    request,  ///< ask; a client without one is accepted, a client certificate sent is verified
    require,  ///< ask; the handshake fails unless the client sends a certificate that verifies
};

/// A TLS failure: a handshake refused by the peer, garbage or a non-TLS peer, a corrupted record,
/// an invalid priority string or certificate. The message names what failed and GnuTLS's reason.
class tls_error : public std::runtime_error {
    int _code;

public:
    tls_error(const std::string& what, int gnutls_code) : std::runtime_error(what), _code(gnutls_code) {}
    /// The GnuTLS error code (GNUTLS_E_*, negative), or 0 when the error is not GnuTLS's own.
    int gnutls_code() const noexcept { return _code; }
};

/// Our verification of the peer's certificate failed (unknown CA, hostname mismatch, expired...).
class verification_error : public tls_error {
    unsigned _status;

public:
    verification_error(const std::string& what, int gnutls_code, unsigned status)
        : tls_error(what, gnutls_code), _status(status) {}
    /// GnuTLS's verification status bits (gnutls_certificate_status_t: GNUTLS_CERT_EXPIRED...).
    unsigned status() const noexcept { return _status; }
};

class certificate_credentials;

namespace internal {
class credentials_snapshot;
// The settings a new connection uses (built at each change of the credentials).
lw_shared_ptr<credentials_snapshot> snapshot_of(const certificate_credentials& c);
}  // namespace internal

/// Certificates, keys, trusted CAs and protocol settings shared by the connections of one shard.
///
/// Every setter validates what it is given at once (reading files synchronously: call them at
/// start-up or from a control request, not per connection) and throws without changing anything
/// if it is invalid. A connection uses the settings in force when it was created (wrapped or
/// accepted); later changes, including reloads, apply to new connections only, so existing
/// sessions are never disturbed.
class certificate_credentials {
public:
    certificate_credentials(const certificate_credentials&) = delete;
    certificate_credentials& operator=(const certificate_credentials&) = delete;
    virtual ~certificate_credentials();

    /// Trust the CA certificates in `path` (a bundle in PEM may hold many) for verifying the
    /// peer. Adds to the CAs trusted so far. Throws std::system_error if the file cannot be read,
    /// tls_error (naming the file) if it holds no valid certificate.
    void set_x509_trust_file(const std::string& path, x509_crt_format fmt = x509_crt_format::pem);
    /// Trust the CA certificates in `data` (the contents of such a file).
    void set_x509_trust(std::string_view data, x509_crt_format fmt = x509_crt_format::pem);
    /// Trust the system's CA store (Debian: /etc/ssl/certs/ca-certificates.crt). Throws tls_error
    /// if there is none.
    void set_system_trust();

    /// Use the certificate chain in `cert_path` (ours first, then intermediates) with the private
    /// key in `key_path`. Several calls add several certificates; a server picks the one whose
    /// names match the client's SNI. Throws std::system_error if a file cannot be read, tls_error
    /// naming both files if they cannot be parsed or do not match.
    void set_x509_key_file(const std::string& cert_path, const std::string& key_path,
                           x509_crt_format fmt = x509_crt_format::pem);
    /// As set_x509_key_file, with the contents of the files.
    void set_x509_key(std::string_view cert, std::string_view key, x509_crt_format fmt = x509_crt_format::pem);

    /// Certificate reload: replace every certificate/key set so far by this one. New connections
    /// use it; established ones keep theirs. Throws (changing nothing) as set_x509_key_file.
    void reload_x509_key_file(const std::string& cert_path, const std::string& key_path,
                              x509_crt_format fmt = x509_crt_format::pem);
    /// As reload_x509_key_file, with the contents of the files.
    void reload_x509_key(std::string_view cert, std::string_view key, x509_crt_format fmt = x509_crt_format::pem);

    /// GnuTLS priority string choosing protocol versions and ciphers ("NORMAL" by default; e.g.
    /// "NORMAL:-VERS-ALL:+VERS-TLS1.3"). Throws tls_error quoting the bad part.
    void set_priority_string(std::string priority);

    /// ALPN protocols, in order of preference (e.g. {"h2", "http/1.1"}). A server selects the
    /// first of its own list that the client offers (none if there is no overlap, the handshake
    /// still succeeds); a client offers them (tls_options::alpn overrides). Empty: no ALPN.
    void set_alpn_protocols(std::vector<std::string> protocols);

    /// Number of certificate/key pairs in force (0: none set).
    std::size_t key_count() const noexcept;

protected:
    explicit certificate_credentials(bool server);

    struct impl;
    std::unique_ptr<impl> _impl;

    // Apply `change` to a copy of the configuration and build it; commit only if that works.
    void update(const std::function<void(impl&)>& change);

    friend lw_shared_ptr<internal::credentials_snapshot> internal::snapshot_of(const certificate_credentials& c);
};

/// Credentials of a TLS client: trusted CAs (to verify servers) and optionally a client
/// certificate (set_x509_key*) for servers that ask for one.
class client_credentials : public certificate_credentials {
public:
    client_credentials();
};

/// Credentials of a TLS server: its certificate(s) and key(s), and for client authentication the
/// CAs trusted to sign client certificates.
class server_credentials : public certificate_credentials {
public:
    server_credentials();
    /// Ask clients for a certificate (see client_auth). Default: none. Applies to new connections.
    void set_client_auth(client_auth a);
    /// Issue session tickets so clients can resume sessions (abbreviated handshakes, see
    /// tls_options::session_resume_data). Off by default. The ticket key is made here, randomly,
    /// and kept for the life of the credentials.
    void enable_session_tickets();
};

/// Per-connection options.
struct tls_options {
    /// Client: the server's name, sent as SNI (unless it is an IP address) and, with
    /// verify_peer_name, checked against the server's certificate. Empty: no SNI, and only the
    /// certificate chain is verified (there is no name to compare).
    std::string server_name;
    /// Client: check that the server's certificate is issued for server_name. The chain is always
    /// verified against the trusted CAs.
    bool verify_peer_name = true;
    /// Client: ALPN protocols to offer; empty: the credentials' list.
    std::vector<std::string> alpn;
    /// Client: session data from get_session_resume_data() of an earlier connection to the same
    /// server, to resume that session (check_session_is_resumed() tells if the server agreed).
    /// Empty: a full handshake.
    std::string session_resume_data;
    /// Both: a peer that ends the connection without close_notify makes the read fail with
    /// tls_error instead of returning end of stream (for protocols where the end of the stream
    /// delimits data, so truncation by an attacker would go unnoticed).
    bool require_close_notify = false;
};

/// Wrap a connected socket as the client end of a TLS connection. The socket is moved in and
/// owned by the result. Throws tls_error if the session cannot be set up (e.g. bad priority),
/// without touching the network; handshake errors come from the first read/write/handshake().
net::connected_socket wrap_client(shared_ptr<client_credentials> creds, net::connected_socket&& s,
                                  tls_options opts = {});

/// Wrap a connected socket as the server end of a TLS connection (see wrap_client). Only
/// opts.require_close_notify applies to a server.
net::connected_socket wrap_server(shared_ptr<server_credentials> creds, net::connected_socket&& s,
                                  tls_options opts = {});

/// net::connect() to `sa` on this shard's stack, then wrap_client(). The handshake is not waited
/// for (see handshake()). Fails as net::connect() does.
future<net::connected_socket> connect(shared_ptr<client_credentials> creds, net::socket_address sa,
                                      tls_options opts = {});

/// net::listen() on this shard's stack; accepted connections are wrap_server()ed (their
/// handshake runs on their first read/write). Throws as net::listen() does.
net::server_socket listen(shared_ptr<server_credentials> creds, net::socket_address sa, net::listen_options lo = {},
                          tls_options opts = {});

/// Run the handshake now (or wait for the one in progress). Resolves when it succeeded; fails
/// with verification_error/tls_error (or the socket's error) otherwise. Throws
/// std::invalid_argument if `s` is not a TLS socket.
future<> handshake(net::connected_socket& s);

/// handshake(), then whether the session was resumed from tls_options::session_resume_data.
future<bool> check_session_is_resumed(net::connected_socket& s);

/// The functions below read the state of a completed handshake. They throw std::invalid_argument
/// if `s` is not a TLS socket, std::logic_error if its handshake has not completed.

/// The ALPN protocol agreed on; nullopt if none was.
std::optional<std::string> get_selected_alpn_protocol(const net::connected_socket& s);
/// Server side: the name the client sent as SNI; nullopt if it sent none.
std::optional<std::string> get_sni_server_name(const net::connected_socket& s);
/// The distinguished name of the peer's certificate subject (e.g. "CN=reef.test,O=Reef");
/// nullopt if the peer sent no certificate (a client without one).
std::optional<std::string> get_peer_certificate_subject(const net::connected_socket& s);
/// Client side: data to resume this session later (tls_options::session_resume_data). Empty if
/// the server issued no ticket. With TLS 1.3 the ticket arrives after the handshake, with the
/// server's first data: read something first.
std::string get_session_resume_data(const net::connected_socket& s);

/// Is `s` a TLS socket (made by wrap_client/wrap_server/connect/listen)?
bool is_tls_socket(const net::connected_socket& s) noexcept;

}  // namespace reef::tls
