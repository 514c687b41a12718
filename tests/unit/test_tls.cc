// TLS (stack/tls) over in-memory socket pairs (stack/testing/memory_socket), and the memory socket
// pair itself. Certificates are made by certtool (gnutls-bin) into a temporary directory before
// any test runs and removed after the last.
#include "net_test.hh"
#include "reactor_test.hh"
#include "runtime/future_util.hh"
#include "runtime/iostream.hh"
#include "runtime/sharded.hh"
#include "runtime/shared_ptr.hh"
#include "smp_test.hh"
#include "stack/net/api.hh"
#include "stack/testing/memory_socket.hh"
#include "stack/tls/tls.hh"
#include "sync_test_util.hh"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

using namespace reef;
using ::testing::HasSubstr;

namespace {

// ------------------------------------------------------------------------------------------------
// Certificates

struct cert_files {
    std::string dir;
    std::string ca, ca_key;              // the trusted test CA
    std::string server, server_key;      // reef.test, localhost, 127.0.0.1, ::1; signed by ca
    std::string renewed, renewed_key;    // new.reef.test only; signed by ca (the reload target)
    std::string other_ca, other_ca_key;  // an unrelated CA
    std::string foreign, foreign_key;    // reef.test signed by other_ca
    std::string expired, expired_key;    // reef.test signed by ca, validity over years ago
    std::string client, client_key;      // a client certificate signed by ca
    std::string garbage;                 // a file that is no certificate
};

const cert_files* g_certs = nullptr;

void write_file(const std::string& path, std::string_view text) {
    std::ofstream f(path, std::ios::binary);
    f << text;
    if (!f) {
        throw std::runtime_error("cannot write " + path);
    }
}

void run(const std::string& cmd) {
    int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
    if (rc != 0) {
        throw std::runtime_error("command failed (" + std::to_string(rc) + "): " + cmd);
    }
}

class cert_environment : public ::testing::Environment {
    cert_files _files;

    // A key and a certificate from `tmpl`, self-signed (no ca) or signed by ca/ca_key.
    void make(const std::string& name, const std::string& tmpl, const std::string* ca, const std::string* ca_key,
              std::string& cert_out, std::string& key_out) {
        const std::string& d = _files.dir;
        key_out = d + "/" + name + ".key";
        cert_out = d + "/" + name + ".pem";
        std::string tmpl_path = d + "/" + name + ".tmpl";
        write_file(tmpl_path, tmpl);
        run("certtool --generate-privkey --key-type=ecdsa --outfile " + key_out);
        if (ca) {
            run("certtool --generate-certificate --load-privkey " + key_out + " --load-ca-certificate " + *ca +
                " --load-ca-privkey " + *ca_key + " --template " + tmpl_path + " --outfile " + cert_out);
        } else {
            run("certtool --generate-self-signed --load-privkey " + key_out + " --template " + tmpl_path +
                " --outfile " + cert_out);
        }
    }

public:
    void SetUp() override {
        std::string pattern = (std::filesystem::temp_directory_path() / "reef-tls-test-XXXXXX").string();
        if (!::mkdtemp(pattern.data())) {
            throw std::system_error(errno, std::system_category(), "mkdtemp");
        }
        _files.dir = pattern;
        auto& f = _files;
        const std::string ca_tmpl = "cn = \"Reef Test CA\"\nca\ncert_signing_key\nexpiration_days = 3650\n";
        make("ca", ca_tmpl, nullptr, nullptr, f.ca, f.ca_key);
        make("other_ca", "cn = \"Unrelated CA\"\nca\ncert_signing_key\nexpiration_days = 3650\n", nullptr, nullptr,
             f.other_ca, f.other_ca_key);
        const std::string server_tmpl =
            "cn = \"reef.test\"\norganization = \"Reef\"\ndns_name = \"reef.test\"\ndns_name = \"localhost\"\n"
            "ip_address = \"127.0.0.1\"\nip_address = \"::1\"\ntls_www_server\nsigning_key\nexpiration_days = 365\n";
        make("server", server_tmpl, &f.ca, &f.ca_key, f.server, f.server_key);
        make("foreign", server_tmpl, &f.other_ca, &f.other_ca_key, f.foreign, f.foreign_key);
        make("renewed",
             "cn = \"new.reef.test\"\norganization = \"Reef\"\ndns_name = \"new.reef.test\"\ntls_www_server\n"
             "signing_key\nexpiration_days = 365\n",
             &f.ca, &f.ca_key, f.renewed, f.renewed_key);
        make("expired",
             "cn = \"reef.test\"\ndns_name = \"reef.test\"\ntls_www_server\nsigning_key\n"
             "activation_date = \"2015-01-01 00:00:00\"\nexpiration_date = \"2016-01-01 00:00:00\"\n",
             &f.ca, &f.ca_key, f.expired, f.expired_key);
        make("client", "cn = \"reef client\"\ntls_www_client\nsigning_key\nexpiration_days = 365\n", &f.ca, &f.ca_key,
             f.client, f.client_key);
        f.garbage = f.dir + "/garbage.pem";
        write_file(f.garbage, "this is not a certificate\n");
        g_certs = &_files;
    }
    void TearDown() override {
        g_certs = nullptr;
        std::error_code ec;
        std::filesystem::remove_all(_files.dir, ec);
    }
};

[[maybe_unused]] auto* const cert_env = ::testing::AddGlobalTestEnvironment(new cert_environment);

const cert_files& certs() { return *g_certs; }

shared_ptr<tls::server_credentials> server_creds(const std::string& cert, const std::string& key) {
    auto c = make_shared<tls::server_credentials>();
    c->set_x509_key_file(cert, key);
    return c;
}

shared_ptr<tls::client_credentials> client_creds(const std::string& ca) {
    auto c = make_shared<tls::client_credentials>();
    c->set_x509_trust_file(ca);
    return c;
}

// ------------------------------------------------------------------------------------------------
// Helpers

struct tls_pair {
    net::connected_socket client;
    net::connected_socket server;
};

tls_pair make_tls_pair(shared_ptr<tls::client_credentials> cc, shared_ptr<tls::server_credentials> sc,
                       tls::tls_options copts = {.server_name = "reef.test"}, tls::tls_options sopts = {}) {
    auto [a, b] = net::make_memory_socket_pair();
    return {tls::wrap_client(std::move(cc), std::move(a), std::move(copts)),
            tls::wrap_server(std::move(sc), std::move(b), std::move(sopts))};
}

// The future's exception (nullptr if it succeeded).
future<std::exception_ptr> outcome(future<> f) {
    try {
        co_await std::move(f);
    } catch (...) {
        co_return std::current_exception();
    }
    co_return nullptr;
}

// The message of `ex` if it is an E; a description of the mismatch otherwise (so that a failed
// expectation shows what came instead).
template <typename E>
std::string message_if(std::exception_ptr ex) {
    if (!ex) {
        return "<no exception>";
    }
    try {
        std::rethrow_exception(ex);
    } catch (const E& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("<another exception type> ") + e.what();
    } catch (...) {
        return "<a non-std exception>";
    }
}

// Both ends' handshakes, run together. The client's outcome is awaited first; then the client is
// dropped, so a server still waiting for a client that gave up sees the connection end.
future<std::pair<std::exception_ptr, std::exception_ptr>> handshake_both(tls_pair& p) {
    auto sf = outcome(tls::handshake(p.server));
    auto cf = outcome(tls::handshake(p.client));
    std::exception_ptr cex = co_await std::move(cf);
    if (cex) {
        p.client = net::connected_socket();
    }
    std::exception_ptr sex = co_await std::move(sf);
    co_return std::make_pair(cex, sex);
}

future<std::string> read_all(input_stream<char>& in) {
    std::string out;
    for (;;) {
        auto b = co_await in.read();
        if (b.empty()) {
            co_return out;
        }
        out.append(b.get(), b.size());
    }
}

// `data` must outlive the returned future (callers pass literals or named strings).
future<> write_and_close(output_stream<char>& out, std::string_view data) {
    co_await out.write(data);
    co_await out.close();
}

char pattern_byte(std::uint64_t i, std::uint32_t seed) { return static_cast<char>((i * 2654435761u + seed) >> 7); }

// Write `total` pattern bytes in pieces of random sizes (some larger than a TLS record).
future<> write_pattern(output_stream<char>& out, std::size_t total, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> size(1, 70000);
    std::size_t done = 0;
    while (done < total) {
        std::size_t n = std::min(total - done, size(rng));
        temporary_buffer<char> b(n);
        for (std::size_t i = 0; i < n; ++i) {
            b.get_write()[i] = pattern_byte(done + i, seed);
        }
        co_await out.write(std::move(b));
        done += n;
    }
    co_await out.close();
}

// Read to end of stream, checking every byte against the pattern; returns the count read, or
// throws at the first mismatch.
future<std::size_t> read_pattern(input_stream<char>& in, std::uint32_t seed) {
    std::size_t done = 0;
    for (;;) {
        auto b = co_await in.read();
        if (b.empty()) {
            co_return done;
        }
        for (std::size_t i = 0; i < b.size(); ++i) {
            if (b[i] != pattern_byte(done + i, seed)) {
                throw std::runtime_error("byte " + std::to_string(done + i) + " differs");
            }
        }
        done += b.size();
    }
}

// ------------------------------------------------------------------------------------------------
// Memory socket pair

REEF_TEST(memory_socket, data_both_ways_and_eof) {
    auto [a, b] = net::make_memory_socket_pair();
    auto ain = a.input();
    auto aout = a.output();
    auto bin = b.input();
    auto bout = b.output();
    auto fa = write_and_close(aout, "hello from a");
    auto fb = write_and_close(bout, "hello from b");
    std::string at_b = co_await read_all(bin);
    std::string at_a = co_await read_all(ain);
    co_await std::move(fa);
    co_await std::move(fb);
    EXPECT_EQ(at_b, "hello from a");
    EXPECT_EQ(at_a, "hello from b");
    EXPECT_NE(a.local_address(), b.local_address());
    EXPECT_EQ(a.local_address(), b.remote_address());
    EXPECT_EQ(a.remote_address(), b.local_address());
}

REEF_TEST(memory_socket, reads_are_split_to_the_buffer_size) {
    auto [a, b] = net::make_memory_socket_pair();
    auto aout = a.output();
    auto bin = b.input({.buffer_size = 10});
    std::string data(25, 'x');
    co_await aout.write(data);
    co_await aout.flush();
    auto b1 = co_await bin.read();
    auto b2 = co_await bin.read();
    auto b3 = co_await bin.read();
    EXPECT_EQ(b1.size(), 10u);
    EXPECT_EQ(b2.size(), 10u);
    EXPECT_EQ(b3.size(), 5u);
    co_await aout.close();
}

REEF_TEST(memory_socket, writer_waits_for_the_reader_beyond_the_limit) {
    auto [a, b] = net::make_memory_socket_pair({.buffer_limit = 100});
    auto sink = a.output(1);  // every write goes to the sink at once
    auto bin = b.input({.buffer_size = 1000});
    std::string first(60, 'a');
    std::string second(60, 'b');
    co_await sink.write(first);  // 60 unread: under the limit
    EXPECT_EQ(net::memory_socket_unread_by_peer(a), 60u);
    // 120 unread: the put waits (flush() waits for the put to complete).
    auto blocked = sink.write(second).then([&sink] { return sink.flush(); });
    co_await reef::testing::settle();
    EXPECT_FALSE(blocked.available());
    EXPECT_EQ(net::memory_socket_unread_by_peer(a), 120u);
    auto got = co_await bin.read();  // 60 unread again: the writer may go on
    EXPECT_EQ(got.size(), 60u);
    co_await std::move(blocked);
    got = co_await bin.read();
    EXPECT_EQ(std::string_view(got.get(), got.size()), second);
    EXPECT_EQ(net::memory_socket_unread_by_peer(a), 0u);
    co_await sink.close();
}

REEF_TEST(memory_socket, shutdown_output_is_a_fin_and_later_writes_fail) {
    auto [a, b] = net::make_memory_socket_pair();
    auto sink = a.output(1);
    auto bin = b.input();
    co_await sink.write("x");
    a.shutdown_output();
    EXPECT_EQ(co_await read_all(bin), "x");
    EXPECT_TRUE(bin.eof());
    auto ex = co_await outcome(sink.write("y").then([&sink] { return sink.flush(); }));
    EXPECT_THAT(message_if<std::system_error>(ex), HasSubstr("shutdown_output"));
    co_await b.wait_input_shutdown();  // resolved by the FIN
    co_await outcome(sink.close());
}

REEF_TEST(memory_socket, shutdown_input_ends_a_pending_read) {
    auto [a, b] = net::make_memory_socket_pair();
    auto bin = b.input();
    auto pending = bin.read();
    co_await reef::testing::settle();
    EXPECT_FALSE(pending.available());
    b.shutdown_input();
    auto got = co_await std::move(pending);
    EXPECT_TRUE(got.empty());
    // The peer's writes still succeed (the data is dropped).
    auto sink = a.output(1);
    co_await sink.write("ignored");
    co_await sink.close();
}

REEF_TEST(memory_socket, destroyed_peer_gives_eof_then_epipe) {
    auto [a, b] = net::make_memory_socket_pair();
    auto sink = a.output(1);
    auto ain = a.input();
    {
        auto bout = b.output(1);
        co_await bout.write("bye");
        co_await bout.flush();
        b = net::connected_socket();  // destroyed without closing: still a FIN for the peer
    }
    EXPECT_EQ(co_await read_all(ain), "bye");
    auto ex = co_await outcome(sink.write("z").then([&sink] { return sink.flush(); }));
    std::system_error* se = nullptr;
    try {
        std::rethrow_exception(ex);
    } catch (std::system_error& e) {
        se = &e;
        EXPECT_EQ(e.code().value(), EPIPE);
    } catch (...) {
    }
    EXPECT_NE(se, nullptr);
    co_await outcome(sink.close());
}

REEF_TEST(memory_socket, reset_fails_both_ends) {
    auto [a, b] = net::make_memory_socket_pair();
    auto ain = a.input();
    auto bin = b.input();
    auto pending = ain.read();
    net::memory_socket_reset(b);
    auto ex = co_await outcome(std::move(pending).discard_result());
    auto ex2 = co_await outcome(bin.read().discard_result());
    for (const auto& e : {ex, ex2}) {
        bool reset = false;
        try {
            std::rethrow_exception(e);
        } catch (const std::system_error& se) {
            reset = se.code().value() == ECONNRESET;
        } catch (...) {
        }
        EXPECT_TRUE(reset);
    }
    co_await a.wait_input_shutdown();
    co_await b.wait_input_shutdown();
}

TEST(memory_socket, not_a_memory_socket) {
    net::connected_socket s;
    EXPECT_THROW(net::memory_socket_reset(s), std::invalid_argument);
    EXPECT_THROW(net::make_memory_socket_pair({.buffer_limit = 0}), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------
// TLS: handshake and data

REEF_TEST(tls, handshake_and_data_both_ways) {
    auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().server, certs().server_key));
    EXPECT_TRUE(tls::is_tls_socket(p.client));
    EXPECT_TRUE(tls::is_tls_socket(p.server));
    auto cin = p.client.input();
    auto cout = p.client.output();
    auto sin = p.server.input();
    auto sout = p.server.output();
    // No explicit handshake: the first write starts it, the server's first read takes part. (The
    // client's flush cannot complete before the server takes part, so the read goes first.)
    auto server_read = sin.read_exactly(4);
    co_await cout.write("ping");
    co_await cout.flush();
    auto got = co_await std::move(server_read);
    EXPECT_EQ(std::string_view(got.get(), got.size()), "ping");
    co_await sout.write("pong");
    co_await sout.flush();
    got = co_await cin.read_exactly(4);
    EXPECT_EQ(std::string_view(got.get(), got.size()), "pong");

    auto subject = tls::get_peer_certificate_subject(p.client);
    REEF_ASSERT(subject.has_value());
    EXPECT_THAT(*subject, HasSubstr("CN=reef.test"));
    EXPECT_FALSE(tls::get_peer_certificate_subject(p.server).has_value());  // no client certificate
    EXPECT_EQ(tls::get_sni_server_name(p.server), std::optional<std::string>("reef.test"));
    EXPECT_FALSE(tls::get_selected_alpn_protocol(p.client).has_value());

    auto f1 = write_and_close(cout, "");
    auto f2 = write_and_close(sout, "");
    EXPECT_EQ(co_await read_all(sin), "");
    EXPECT_EQ(co_await read_all(cin), "");
    co_await std::move(f1);
    co_await std::move(f2);
}

REEF_TEST(tls, large_transfer_both_ways_concurrently) {
    constexpr std::size_t total = 4 << 20;
    auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().server, certs().server_key));
    auto cin = p.client.input();
    auto cout = p.client.output();
    auto sin = p.server.input();
    auto sout = p.server.output();
    // All four at once, before any handshake: the lazy handshake is run once and shared.
    auto cw = write_pattern(cout, total, 1);
    auto sw = write_pattern(sout, total, 2);
    auto sr = read_pattern(sin, 1);
    auto cr = read_pattern(cin, 2);
    auto [at_server, at_client] = co_await when_all_succeed(std::move(sr), std::move(cr), std::move(cw), std::move(sw));
    EXPECT_EQ(at_server, total);
    EXPECT_EQ(at_client, total);
}

REEF_TEST(tls, explicit_handshake_and_handshake_getters_before_it) {
    auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().server, certs().server_key));
    EXPECT_THROW(tls::get_sni_server_name(p.server), std::logic_error);
    auto [cex, sex] = co_await handshake_both(p);
    EXPECT_FALSE(cex);
    EXPECT_FALSE(sex);
    co_await tls::handshake(p.client);  // again: already done
    EXPECT_TRUE(tls::get_peer_certificate_subject(p.client).has_value());
    net::connected_socket plain;
    EXPECT_THROW(tls::get_sni_server_name(plain), std::invalid_argument);
    EXPECT_FALSE(tls::is_tls_socket(plain));
}

// ------------------------------------------------------------------------------------------------
// TLS: verification failures and bad peers

REEF_TEST(tls, unknown_ca_is_a_verification_error) {
    auto p = make_tls_pair(client_creds(certs().other_ca), server_creds(certs().server, certs().server_key));
    auto [cex, sex] = co_await handshake_both(p);
    EXPECT_THAT(message_if<tls::verification_error>(cex), HasSubstr("certificate verification failed"));
    EXPECT_THAT(message_if<tls::verification_error>(cex), HasSubstr("signer not found (unknown CA)"));
    // The server learns why from the client's alert.
    EXPECT_THAT(message_if<tls::tls_error>(sex), HasSubstr("alert"));
    // A read on the failed client socket fails with the same error.
}

REEF_TEST(tls, certificate_of_another_ca_is_rejected) {
    auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().foreign, certs().foreign_key));
    auto [cex, sex] = co_await handshake_both(p);
    EXPECT_THAT(message_if<tls::verification_error>(cex), HasSubstr("signer not found (unknown CA)"));
    EXPECT_TRUE(sex);
}

REEF_TEST(tls, wrong_server_name_is_a_hostname_mismatch) {
    auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().server, certs().server_key),
                           {.server_name = "elsewhere.test"});
    auto [cex, sex] = co_await handshake_both(p);
    EXPECT_THAT(message_if<tls::verification_error>(cex), HasSubstr("hostname mismatch (expected elsewhere.test)"));
    EXPECT_TRUE(sex);
}

REEF_TEST(tls, name_check_can_be_turned_off) {
    auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().server, certs().server_key),
                           {.server_name = "elsewhere.test", .verify_peer_name = false});
    auto [cex, sex] = co_await handshake_both(p);
    EXPECT_FALSE(cex);
    EXPECT_FALSE(sex);
}

REEF_TEST(tls, ip_address_name_is_verified_without_sni) {
    auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().server, certs().server_key),
                           {.server_name = "127.0.0.1"});
    auto [cex, sex] = co_await handshake_both(p);
    EXPECT_FALSE(cex);
    EXPECT_FALSE(sex);
    EXPECT_FALSE(tls::get_sni_server_name(p.server).has_value());
}

REEF_TEST(tls, expired_certificate) {
    auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().expired, certs().expired_key));
    auto [cex, sex] = co_await handshake_both(p);
    EXPECT_THAT(message_if<tls::verification_error>(cex), HasSubstr("certificate expired"));
    EXPECT_TRUE(sex);
}

REEF_TEST(tls, failed_handshake_fails_every_later_operation) {
    auto p = make_tls_pair(client_creds(certs().other_ca), server_creds(certs().server, certs().server_key));
    auto cin = p.client.input();
    auto cout = p.client.output();
    auto sf = outcome(tls::handshake(p.server));
    auto ex1 = co_await outcome(cin.read().discard_result());
    auto ex2 = co_await outcome(cout.write("x").then([&cout] { return cout.flush(); }));
    EXPECT_THAT(message_if<tls::verification_error>(ex1), HasSubstr("unknown CA"));
    EXPECT_THAT(message_if<tls::verification_error>(ex2), HasSubstr("unknown CA"));
    co_await outcome(cout.close());
    co_await std::move(sf).discard_result();
}

REEF_TEST(tls, garbage_from_a_non_tls_client) {
    auto [raw, s] = net::make_memory_socket_pair();
    auto server = tls::wrap_server(server_creds(certs().server, certs().server_key), std::move(s));
    auto out = raw.output();
    co_await out.write("GET / HTTP/1.1\r\nHost: reef.test\r\n\r\n");
    co_await out.flush();
    auto sin = server.input();
    auto ex = co_await outcome(sin.read().discard_result());
    auto msg = message_if<tls::tls_error>(ex);
    EXPECT_THAT(msg, HasSubstr("TLS handshake with"));
    EXPECT_THAT(msg, HasSubstr("GnuTLS error"));
    co_await out.close();
}

REEF_TEST(tls, garbage_from_a_non_tls_server) {
    auto [c, raw] = net::make_memory_socket_pair();
    auto client = tls::wrap_client(client_creds(certs().ca), std::move(c), {.server_name = "reef.test"});
    auto rin = raw.input();
    auto rout = raw.output();
    auto hs = outcome(tls::handshake(client));
    co_await rin.read();  // the ClientHello
    std::string garbage = std::string(300, '\x17') + "HTTP/1.1 400 Bad Request\r\n\r\n";
    co_await rout.write(garbage);
    co_await rout.flush();
    auto ex = co_await std::move(hs);
    EXPECT_THAT(message_if<tls::tls_error>(ex), HasSubstr("GnuTLS error"));
    co_await rout.close();
}

REEF_TEST(tls, peer_closing_during_handshake) {
    auto [c, raw] = net::make_memory_socket_pair();
    auto client = tls::wrap_client(client_creds(certs().ca), std::move(c), {.server_name = "reef.test"});
    auto hs = outcome(tls::handshake(client));
    raw = net::connected_socket();
    auto ex = co_await std::move(hs);
    EXPECT_THAT(message_if<tls::tls_error>(ex), HasSubstr("the peer closed the connection"));
}

// Relay between two memory pairs that can corrupt one chunk going to the server.
future<> relay(input_stream<char>& in, output_stream<char>& out, bool& corrupt) {
    for (;;) {
        auto b = co_await in.read();
        if (b.empty()) {
            break;
        }
        if (corrupt) {
            b.get_write()[b.size() / 2] ^= 0x55;
            corrupt = false;
        }
        co_await out.write(std::move(b));
        co_await out.flush();
    }
    co_await out.close();
}

REEF_TEST(tls, corrupted_record_is_a_clear_read_error) {
    auto [c, relay_c] = net::make_memory_socket_pair();
    auto [relay_s, s] = net::make_memory_socket_pair();
    auto client = tls::wrap_client(client_creds(certs().ca), std::move(c), {.server_name = "reef.test"});
    auto server = tls::wrap_server(server_creds(certs().server, certs().server_key), std::move(s));
    auto rc_in = relay_c.input();
    auto rc_out = relay_c.output();
    auto rs_in = relay_s.input();
    auto rs_out = relay_s.output();
    bool corrupt_to_server = false;
    bool corrupt_to_client = false;
    auto r1 = outcome(relay(rc_in, rs_out, corrupt_to_server));
    auto r2 = outcome(relay(rs_in, rc_out, corrupt_to_client));
    tls_pair p{std::move(client), std::move(server)};
    auto [cex, sex] = co_await handshake_both(p);
    REEF_ASSERT(!cex && !sex);
    corrupt_to_server = true;
    auto cout = p.client.output();
    auto sin = p.server.input();
    std::string data(1000, 'd');
    co_await cout.write(data);
    co_await cout.flush();
    auto ex = co_await outcome(sin.read().discard_result());
    auto msg = message_if<tls::tls_error>(ex);
    EXPECT_THAT(msg, HasSubstr("TLS read from"));
    EXPECT_THAT(msg, HasSubstr("GnuTLS error"));
    // The error stays.
    auto ex2 = co_await outcome(sin.read().discard_result());
    EXPECT_THAT(message_if<tls::tls_error>(ex2), HasSubstr("TLS read from"));
    // Both ends shut their output down, so each relay sees the end of its stream.
    co_await outcome(cout.close());
    p.server.shutdown_output();
    co_await std::move(r1).discard_result();
    co_await std::move(r2).discard_result();
}

// ------------------------------------------------------------------------------------------------
// TLS: ALPN, SNI, closing

REEF_TEST(tls, alpn_negotiated) {
    auto sc = server_creds(certs().server, certs().server_key);
    sc->set_alpn_protocols({"h2", "http/1.1"});
    auto cc = client_creds(certs().ca);
    cc->set_alpn_protocols({"spdy/3", "http/1.1"});
    auto p = make_tls_pair(cc, sc);
    auto [cex, sex] = co_await handshake_both(p);
    REEF_ASSERT(!cex && !sex);
    EXPECT_EQ(tls::get_selected_alpn_protocol(p.client), std::optional<std::string>("http/1.1"));
    EXPECT_EQ(tls::get_selected_alpn_protocol(p.server), std::optional<std::string>("http/1.1"));

    // Per-connection override; the server's preference wins.
    auto p2 = make_tls_pair(cc, sc, {.server_name = "reef.test", .alpn = {"http/1.1", "h2"}});
    auto [cex2, sex2] = co_await handshake_both(p2);
    REEF_ASSERT(!cex2 && !sex2);
    EXPECT_EQ(tls::get_selected_alpn_protocol(p2.client), std::optional<std::string>("h2"));

    // No overlap: no protocol, the connection still works.
    auto p3 = make_tls_pair(cc, sc, {.server_name = "reef.test", .alpn = {"imap"}});
    auto [cex3, sex3] = co_await handshake_both(p3);
    REEF_ASSERT(!cex3 && !sex3);
    EXPECT_FALSE(tls::get_selected_alpn_protocol(p3.client).has_value());
    EXPECT_FALSE(tls::get_selected_alpn_protocol(p3.server).has_value());
}

REEF_TEST(tls, sni_seen_by_the_server_and_selects_the_certificate) {
    // Two certificates: the server picks the one matching the client's SNI.
    auto sc = server_creds(certs().server, certs().server_key);
    sc->set_x509_key_file(certs().renewed, certs().renewed_key);
    EXPECT_EQ(sc->key_count(), 2u);
    auto cc = client_creds(certs().ca);
    for (std::string name : {"reef.test", "new.reef.test"}) {
        auto p = make_tls_pair(cc, sc, {.server_name = name});
        auto [cex, sex] = co_await handshake_both(p);
        REEF_ASSERT(!cex && !sex);
        EXPECT_EQ(tls::get_sni_server_name(p.server), std::optional<std::string>(name));
        EXPECT_THAT(tls::get_peer_certificate_subject(p.client).value_or(""), HasSubstr("CN=" + name));
    }
}

REEF_TEST(tls, close_notify_gives_the_peer_end_of_stream) {
    auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().server, certs().server_key),
                           {.server_name = "reef.test", .require_close_notify = true}, {.require_close_notify = true});
    auto cin = p.client.input();
    auto cout = p.client.output();
    auto sin = p.server.input();
    auto sout = p.server.output();
    // The server reads from the start: the client's close cannot finish before its handshake.
    auto at_server = read_all(sin);
    co_await write_and_close(cout, "request");
    // The server sees the data, then a clean end (require_close_notify would fail otherwise).
    EXPECT_EQ(co_await std::move(at_server), "request");
    EXPECT_TRUE(sin.eof());
    // Half-close: the server can still answer.
    co_await write_and_close(sout, "response");
    EXPECT_EQ(co_await read_all(cin), "response");
}

REEF_TEST(tls, shutdown_output_sends_close_notify) {
    auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().server, certs().server_key),
                           {.server_name = "reef.test"}, {.require_close_notify = true});
    auto cout = p.client.output();
    auto sin = p.server.input();
    auto at_server = read_all(sin);
    co_await cout.write("abc");
    co_await cout.flush();
    p.client.shutdown_output();
    EXPECT_EQ(co_await std::move(at_server), "abc");
    auto ex = co_await outcome(cout.write("more").then([&cout] { return cout.flush(); }));
    EXPECT_TRUE(ex);  // writes after shutdown_output fail
    co_await outcome(cout.close());
}

REEF_TEST(tls, end_of_stream_without_close_notify) {
    for (bool require : {false, true}) {
        auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().server, certs().server_key),
                               {.server_name = "reef.test"}, {.require_close_notify = require});
        auto sin = p.server.input();
        auto got_f = sin.read_exactly(7);
        {
            auto cout = p.client.output();
            co_await cout.write("partial");
            co_await cout.flush();
            // Dropped without close(): the transport ends with no close_notify (a truncation).
        }
        p.client = net::connected_socket();
        auto got = co_await std::move(got_f);
        EXPECT_EQ(std::string_view(got.get(), got.size()), "partial");
        auto ex = co_await outcome(sin.read().then([](temporary_buffer<char> b) {
            if (!b.empty()) {
                throw std::runtime_error("unexpected data");
            }
        }));
        if (require) {
            EXPECT_THAT(message_if<tls::tls_error>(ex), HasSubstr("without close_notify"));
        } else {
            EXPECT_FALSE(ex);
        }
    }
}

REEF_TEST(tls, shutdown_input_ends_a_pending_read) {
    auto p = make_tls_pair(client_creds(certs().ca), server_creds(certs().server, certs().server_key));
    auto [cex, sex] = co_await handshake_both(p);
    REEF_ASSERT(!cex && !sex);
    auto sin = p.server.input();
    auto pending = sin.read();
    co_await reef::testing::settle();
    EXPECT_FALSE(pending.available());
    p.server.shutdown_input();
    auto b = co_await std::move(pending);
    EXPECT_TRUE(b.empty());
}

// ------------------------------------------------------------------------------------------------
// TLS: certificate reload, client certificates, resumption

REEF_TEST(tls, certificate_reload_applies_to_new_connections_only) {
    auto sc = server_creds(certs().server, certs().server_key);
    auto cc = client_creds(certs().ca);
    auto old_conn = make_tls_pair(cc, sc);
    auto [cex, sex] = co_await handshake_both(old_conn);
    REEF_ASSERT(!cex && !sex);

    sc->reload_x509_key_file(certs().renewed, certs().renewed_key);
    EXPECT_EQ(sc->key_count(), 1u);

    // A new connection gets the new certificate (only it is valid for new.reef.test)...
    auto fresh = make_tls_pair(cc, sc, {.server_name = "new.reef.test"});
    auto [cex2, sex2] = co_await handshake_both(fresh);
    EXPECT_FALSE(cex2);
    EXPECT_FALSE(sex2);
    EXPECT_THAT(tls::get_peer_certificate_subject(fresh.client).value_or(""), HasSubstr("CN=new.reef.test"));
    // ...and no longer the old one.
    auto stale = make_tls_pair(cc, sc, {.server_name = "reef.test"});
    auto [cex3, sex3] = co_await handshake_both(stale);
    EXPECT_THAT(message_if<tls::verification_error>(cex3), HasSubstr("hostname mismatch"));

    // The old connection keeps working, with its old certificate.
    auto cout = old_conn.client.output();
    auto sin = old_conn.server.input();
    co_await write_and_close(cout, "still here");
    EXPECT_EQ(co_await read_all(sin), "still here");
    EXPECT_THAT(tls::get_peer_certificate_subject(old_conn.client).value_or(""), HasSubstr("CN=reef.test"));
}

REEF_TEST(tls, failed_reload_keeps_the_old_certificate) {
    auto sc = server_creds(certs().server, certs().server_key);
    EXPECT_THROW(sc->reload_x509_key_file(certs().garbage, certs().renewed_key), tls::tls_error);
    EXPECT_THROW(sc->reload_x509_key_file(certs().renewed, certs().server_key), tls::tls_error);  // key mismatch
    auto p = make_tls_pair(client_creds(certs().ca), sc);
    auto [cex, sex] = co_await handshake_both(p);
    EXPECT_FALSE(cex);
    EXPECT_FALSE(sex);
}

REEF_TEST(tls, client_certificate_required) {
    auto sc = server_creds(certs().server, certs().server_key);
    sc->set_x509_trust_file(certs().ca);
    sc->set_client_auth(tls::client_auth::require);

    // Without a client certificate: refused.
    auto p1 = make_tls_pair(client_creds(certs().ca), sc);
    auto [cex1, sex1] = co_await handshake_both(p1);
    EXPECT_TRUE(sex1);
    EXPECT_TRUE(cex1 || sex1);

    // With one signed by the trusted CA: accepted, and the server sees who it is.
    auto cc = client_creds(certs().ca);
    cc->set_x509_key_file(certs().client, certs().client_key);
    auto p2 = make_tls_pair(cc, sc);
    auto [cex2, sex2] = co_await handshake_both(p2);
    EXPECT_FALSE(cex2);
    EXPECT_FALSE(sex2);
    EXPECT_THAT(tls::get_peer_certificate_subject(p2.server).value_or(""), HasSubstr("CN=reef client"));
    // The data path works too (TLS 1.3 client authentication finishes with the client's flight).
    auto cout = p2.client.output();
    auto sin = p2.server.input();
    co_await write_and_close(cout, "authenticated");
    EXPECT_EQ(co_await read_all(sin), "authenticated");

    // One the server's verification refuses (expired; signed by the trusted CA, so the client
    // offers it). With TLS 1.3 the client is done before the server has checked.
    auto cc3 = client_creds(certs().ca);
    cc3->set_x509_key_file(certs().expired, certs().expired_key);
    auto p3 = make_tls_pair(cc3, sc);
    auto sf = outcome(tls::handshake(p3.server));
    auto cf = outcome(tls::handshake(p3.client));
    auto sex3 = co_await std::move(sf);
    EXPECT_THAT(message_if<tls::verification_error>(sex3), HasSubstr("certificate expired"));
    p3.server = net::connected_socket();
    co_await std::move(cf).discard_result();

    // One signed by a CA the server does not name in its request: the client has nothing to send.
    auto cc4 = client_creds(certs().ca);
    cc4->set_x509_key_file(certs().foreign, certs().foreign_key);
    auto p4 = make_tls_pair(cc4, sc);
    auto [cex4, sex4] = co_await handshake_both(p4);
    EXPECT_THAT(message_if<tls::tls_error>(sex4), HasSubstr("TLS handshake with"));
}

REEF_TEST(tls, client_certificate_requested_but_optional) {
    auto sc = server_creds(certs().server, certs().server_key);
    sc->set_x509_trust_file(certs().ca);
    sc->set_client_auth(tls::client_auth::request);
    auto p = make_tls_pair(client_creds(certs().ca), sc);
    auto [cex, sex] = co_await handshake_both(p);
    EXPECT_FALSE(cex);
    EXPECT_FALSE(sex);
    EXPECT_FALSE(tls::get_peer_certificate_subject(p.server).has_value());
}

REEF_TEST(tls, session_resumption) {
    auto sc = server_creds(certs().server, certs().server_key);
    sc->enable_session_tickets();
    auto cc = client_creds(certs().ca);

    auto p1 = make_tls_pair(cc, sc);
    auto cin = p1.client.input();
    auto sout = p1.server.output();
    auto at_client = cin.read_exactly(1);
    co_await sout.write("x");
    co_await sout.flush();
    co_await std::move(at_client);  // the ticket came before the data
    EXPECT_FALSE(co_await tls::check_session_is_resumed(p1.client));
    std::string data = tls::get_session_resume_data(p1.client);
    EXPECT_FALSE(data.empty());

    auto p2 = make_tls_pair(cc, sc, {.server_name = "reef.test", .session_resume_data = data});
    auto [cex, sex] = co_await handshake_both(p2);
    REEF_ASSERT(!cex && !sex);
    EXPECT_TRUE(co_await tls::check_session_is_resumed(p2.client));
    EXPECT_TRUE(co_await tls::check_session_is_resumed(p2.server));
    co_await sout.close();
}

REEF_TEST(tls, tls12_works_too) {
    auto sc = server_creds(certs().server, certs().server_key);
    sc->set_priority_string("NORMAL:-VERS-ALL:+VERS-TLS1.2");
    auto p = make_tls_pair(client_creds(certs().ca), sc);
    auto cin = p.client.input();
    auto cout = p.client.output();
    auto sin = p.server.input();
    auto sout = p.server.output();
    auto cw = write_pattern(cout, 300000, 5);
    auto sw = write_pattern(sout, 300000, 6);
    auto sr = read_pattern(sin, 5);
    auto cr = read_pattern(cin, 6);
    auto [a, b] = co_await when_all_succeed(std::move(sr), std::move(cr), std::move(cw), std::move(sw));
    EXPECT_EQ(a, 300000u);
    EXPECT_EQ(b, 300000u);
}

// ------------------------------------------------------------------------------------------------
// Credentials errors (no reactor needed)

TEST(tls_credentials, missing_file_is_named) {
    tls::client_credentials c;
    try {
        c.set_x509_trust_file("/nonexistent/ca.pem");
        ADD_FAILURE() << "no exception";
    } catch (const std::system_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("/nonexistent/ca.pem"));
    }
    tls::server_credentials s;
    try {
        s.set_x509_key_file(certs().server, "/nonexistent/key.pem");
        ADD_FAILURE() << "no exception";
    } catch (const std::system_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("/nonexistent/key.pem"));
    }
    EXPECT_EQ(s.key_count(), 0u);
}

TEST(tls_credentials, bad_file_contents_are_named_with_the_reason) {
    tls::client_credentials c;
    try {
        c.set_x509_trust_file(certs().garbage);
        ADD_FAILURE() << "no exception";
    } catch (const tls::tls_error& e) {
        EXPECT_THAT(e.what(), HasSubstr(certs().garbage));
    }
    tls::server_credentials s;
    try {
        s.set_x509_key_file(certs().garbage, certs().server_key);
        ADD_FAILURE() << "no exception";
    } catch (const tls::tls_error& e) {
        EXPECT_THAT(e.what(), HasSubstr(certs().garbage));
        EXPECT_THAT(e.what(), HasSubstr("GnuTLS error"));
        EXPECT_LT(e.gnutls_code(), 0);
    }
    try {
        s.set_x509_key_file(certs().server, certs().renewed_key);
        ADD_FAILURE() << "no exception";
    } catch (const tls::tls_error& e) {
        EXPECT_THAT(e.what(), HasSubstr(certs().renewed_key));
    }
    EXPECT_EQ(s.key_count(), 0u);
}

TEST(tls_credentials, bad_priority_string_and_alpn) {
    tls::client_credentials c;
    try {
        c.set_priority_string("NORMAL:+NOT-A-THING");
        ADD_FAILURE() << "no exception";
    } catch (const tls::tls_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("NOT-A-THING"));
    }
    EXPECT_THROW(c.set_alpn_protocols({""}), std::invalid_argument);
    c.set_priority_string("NORMAL:-VERS-ALL:+VERS-TLS1.3");
    c.set_system_trust();
}

// ------------------------------------------------------------------------------------------------
// TLS over the posix stack (loopback TCP)

net::socket_address loopback4(std::uint16_t port = 0) {
    return net::socket_address(net::inet_address::parse("127.0.0.1"), port);
}

// Handshake, then echo until the client's close_notify; counts completed handshakes.
future<> tls_echo_connection(net::connected_socket s, unsigned& handshakes) {
    co_await tls::handshake(s);
    ++handshakes;
    auto in = s.input();
    auto out = s.output();
    for (;;) {
        auto b = co_await in.read();
        if (b.empty()) {
            break;
        }
        co_await out.write(std::move(b));
        co_await out.flush();
    }
    co_await out.close();
    co_await in.close();
}

// Connect, send `msg` while reading the echo, close; returns what came back.
future<std::string> tls_echo_client(shared_ptr<tls::client_credentials> cc, net::socket_address addr, std::string msg) {
    tls::tls_options opts{.server_name = "localhost"};
    auto s = co_await tls::connect(std::move(cc), addr, std::move(opts));
    auto in = s.input();
    auto out = s.output();
    auto echoed = read_all(in);
    co_await out.write(msg);
    co_await out.close();
    auto got = co_await std::move(echoed);
    co_await in.close();
    co_return got;
}

REEF_TEST(tls_posix, listen_and_connect_over_loopback) {
    reef::testing::posix_stack_scope stack;
    auto sc = server_creds(certs().server, certs().server_key);
    sc->set_alpn_protocols({"h2", "http/1.1"});
    auto ss = tls::listen(sc, loopback4());
    auto addr = ss.local_address();
    EXPECT_NE(addr.port(), 0);
    auto cc = client_creds(certs().ca);
    cc->set_alpn_protocols({"http/1.1"});

    unsigned handshakes = 0;
    std::optional<std::string> sni, alpn;
    auto server = coroutine::lambda([&]() -> future<> {
        auto ar = co_await ss.accept();
        EXPECT_TRUE(tls::is_tls_socket(ar.connection));
        co_await tls::handshake(ar.connection);
        sni = tls::get_sni_server_name(ar.connection);
        alpn = tls::get_selected_alpn_protocol(ar.connection);
        co_await tls_echo_connection(std::move(ar.connection), handshakes);
    })();
    std::string big(1 << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) {
        big[i] = pattern_byte(i, 9);
    }
    auto got = co_await tls_echo_client(cc, addr, big);
    co_await std::move(server);
    EXPECT_EQ(got.size(), big.size());
    EXPECT_TRUE(got == big);
    EXPECT_EQ(handshakes, 1u);
    EXPECT_EQ(sni, std::optional<std::string>("localhost"));
    EXPECT_EQ(alpn, std::optional<std::string>("http/1.1"));
}

REEF_TEST(tls_posix, verification_failure_over_loopback) {
    reef::testing::posix_stack_scope stack;
    auto ss = tls::listen(server_creds(certs().server, certs().server_key), loopback4());
    auto server = coroutine::lambda([&]() -> future<> {
        auto ar = co_await ss.accept();
        auto ex = co_await outcome(tls::handshake(ar.connection));
        EXPECT_THAT(message_if<tls::tls_error>(ex), HasSubstr("alert"));
    })();
    tls::tls_options opts{.server_name = "elsewhere.test"};
    auto s = co_await tls::connect(client_creds(certs().ca), ss.local_address(), std::move(opts));
    auto ex = co_await outcome(tls::handshake(s));
    EXPECT_THAT(message_if<tls::verification_error>(ex), HasSubstr("hostname mismatch (expected elsewhere.test)"));
    EXPECT_THAT(message_if<tls::verification_error>(ex), HasSubstr(ss.local_address().to_string()));
    s = net::connected_socket();
    co_await std::move(server);
}

// One per shard: its own credentials (they are per-shard objects) and listener on the shared port.
struct tls_shard_server {
    shared_ptr<tls::server_credentials> creds = server_creds(certs().server, certs().server_key);
    net::server_socket ss;
    future<> loop = make_ready_future<>();
    unsigned handshakes = 0;

    void start(std::uint16_t port) {
        ss = tls::listen(creds, loopback4(port));
        loop = serve();
    }
    future<> serve() {
        std::vector<future<>> conns;
        for (;;) {
            net::accept_result ar;
            try {
                ar = co_await ss.accept();
            } catch (const std::system_error&) {
                break;  // abort_accept
            }
            conns.push_back(tls_echo_connection(std::move(ar.connection), handshakes));
        }
        co_await when_all_succeed(std::move(conns));
    }
    future<> stop() {
        ss.abort_accept();
        return std::move(loop);
    }
};

// `n` TLS clients from this shard; returns how many got their message back intact.
future<unsigned> tls_shard_clients(std::uint16_t port, unsigned n) {
    auto cc = client_creds(certs().ca);
    std::vector<future<std::string>> fs;
    for (unsigned i = 0; i < n; ++i) {
        fs.push_back(tls_echo_client(cc, loopback4(port), fmt::format("shard {} client {}", this_shard_id(), i)));
    }
    auto results = co_await when_all_succeed(std::move(fs));
    unsigned ok = 0;
    for (unsigned i = 0; i < n; ++i) {
        ok += results[i] == fmt::format("shard {} client {}", this_shard_id(), i);
    }
    co_return ok;
}

REEF_SMP_TEST(tls_posix, both_shards_serve_tls, 2) {
    co_await reef::testing::start_posix_on_all_shards();
    sharded<tls_shard_server> servers;
    co_await servers.start();
    // Shard 0 picks the port; shard 1 listens on it too and the kernel spreads the connections.
    servers.local().start(0);
    auto port = servers.local().ss.local_address().port();
    co_await servers.invoke_on(1, [port](tls_shard_server& s) { s.start(port); });
    constexpr unsigned per_shard = 32;
    auto ok0 = tls_shard_clients(port, per_shard);
    auto ok1 = smp::submit_to(1, [port] { return tls_shard_clients(port, per_shard); });
    unsigned ok = co_await std::move(ok0);
    ok += co_await std::move(ok1);
    EXPECT_EQ(ok, 2 * per_shard);
    auto h0 = servers.local().handshakes;
    auto h1 = co_await servers.invoke_on(1, [](tls_shard_server& s) { return s.handshakes; });
    EXPECT_EQ(h0 + h1, 2 * per_shard);
    // 64 connections hashed over 2 listeners: all on one side has probability 2^-63.
    EXPECT_GT(h0, 0u);
    EXPECT_GT(h1, 0u);
    co_await servers.stop();
    co_await reef::testing::stop_posix_on_all_shards();
}

}  // namespace
