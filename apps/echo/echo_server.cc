#include "apps/echo/echo_server.hh"

#include "runtime/coroutine.hh"
#include "runtime/future_util.hh"
#include "runtime/log.hh"

#include <chrono>
#include <exception>

namespace reef::echo {

namespace {

logger elog("echo");

}  // namespace

echo_server::echo_server(echo_config cfg) : _cfg(std::move(cfg)) {
    if (!_cfg.tls_cert.empty()) {
        _creds = make_shared<tls::server_credentials>();
        _creds->set_x509_key_file(_cfg.tls_cert, _cfg.tls_key);
    }
}

void echo_server::listen(net::socket_address addr) {
    net::listen_options lo;
    lo.lb = net::load_balancing::per_shard;
    _listener = _creds ? tls::listen(_creds, addr, lo) : net::listen(addr, lo);
}

void echo_server::bind_udp(net::socket_address addr) {
    net::udp_channel_options uo;
    uo.reuse_port = true;
    _udp = net::make_udp_channel(addr, uo);
}

std::optional<net::socket_address> echo_server::udp_address() const {
    if (!_udp) {
        return std::nullopt;
    }
    return _udp.local_address();
}

void echo_server::serve() {
    if (_listener) {
        (void)accept_loop(gate::holder(_gate));
    }
    if (_udp) {
        (void)udp_loop(gate::holder(_gate));
    }
}

future<> echo_server::accept_loop(gate::holder h) {
    for (;;) {
        net::accept_result ar;
        std::exception_ptr accept_error;
        try {
            ar = co_await _listener.accept();
        } catch (...) {
            accept_error = std::current_exception();
        }
        if (accept_error) {
            if (_stopping) {
                co_return;
            }
            // Out of file descriptors and the like: say so, and retry after a pause instead of
            // spinning on the same error.
            elog.warn("accept on {}: {}", _listener.local_address(), exception_message(accept_error));
            co_await sleep(std::chrono::milliseconds(100));
            continue;
        }
        if (_stopping) {
            co_return;  // accepted just before stop(): dropping it closes it
        }
        ++_stats.connections;
        (void)handle_connection(std::move(ar.connection), ar.remote_address, h);
    }
}

future<> echo_server::handle_connection(net::connected_socket s, net::socket_address peer, gate::holder) {
    _live.insert(&s);
    auto in = s.input();
    // A stream buffer of one byte hands every non-empty buffer written to the socket as it is.
    auto out = _cfg.zero_copy ? s.output(1) : s.output();
    bool out_closed = false;
    try {
        if (_cfg.sink_ack) {
            co_await sink(s, in, out);
        } else {
            bool unflushed = false;
            for (;;) {
                auto rf = in.read();
                // Flush only when the input has nothing more right now: requests that arrived
                // together are answered together, with one send.
                if (unflushed && !rf.available()) {
                    std::exception_ptr flush_error;
                    try {
                        co_await out.flush();
                    } catch (...) {
                        flush_error = std::current_exception();
                    }
                    unflushed = false;
                    if (flush_error) {
                        // The read in flight must finish before the stream goes away.
                        s.shutdown_input();
                        try {
                            (void)co_await std::move(rf);
                        } catch (...) {
                        }
                        std::rethrow_exception(flush_error);
                    }
                }
                temporary_buffer<char> buf = co_await std::move(rf);
                if (buf.empty()) {
                    break;
                }
                _stats.bytes += buf.size();
                co_await out.write(std::move(buf));
                unflushed = true;
            }
        }
        out_closed = true;
        co_await out.close();
    } catch (...) {
        ++_stats.connection_errors;
        elog.debug("connection from {}: {}", peer, exception_message(std::current_exception()));
    }
    if (!out_closed) {
        try {
            co_await out.close();
        } catch (...) {
        }
    }
    try {
        co_await in.close();
    } catch (...) {
    }
    _live.erase(&s);
}

future<> echo_server::sink(net::connected_socket& s, input_stream<char>& in, output_stream<char>& out) {
    std::uint64_t received = 0;
    std::uint64_t next_ack = _cfg.sink_ack;
    bool unflushed = false;
    for (;;) {
        auto rf = in.read();
        // As the echo: acknowledgements of data that arrived together leave in one send.
        if (unflushed && !rf.available()) {
            std::exception_ptr flush_error;
            try {
                co_await out.flush();
            } catch (...) {
                flush_error = std::current_exception();
            }
            unflushed = false;
            if (flush_error) {
                s.shutdown_input();  // the read in flight must finish before the stream goes away
                try {
                    (void)co_await std::move(rf);
                } catch (...) {
                }
                std::rethrow_exception(flush_error);
            }
        }
        temporary_buffer<char> buf = co_await std::move(rf);
        if (buf.empty()) {
            break;
        }
        received += buf.size();
        _stats.bytes += buf.size();
        while (received >= next_ack) {
            char ack[8];
            for (std::size_t i = 0; i < sizeof(ack); ++i) {
                ack[i] = char(next_ack >> (8 * i));
            }
            co_await out.write(ack, sizeof(ack));
            unflushed = true;
            next_ack += _cfg.sink_ack;
        }
    }
    // handle_connection's close() flushes the last acknowledgements.
}

void echo_server::answer_datagram(net::datagram d) {
    auto f = _udp.send(d.src, std::move(d.data));
    (void)f.then_wrapped([this](future<> r) {
        if (r.failed()) {
            ++_stats.datagram_errors;
            elog.debug("UDP send: {}", exception_message(r.get_exception()));
        }
        _udp_sends.signal(1);
    });
}

future<> echo_server::udp_loop(gate::holder) {
    for (;;) {
        net::datagram d;
        try {
            d = co_await _udp.receive();
        } catch (...) {
            if (_stopping || _udp.is_closed()) {
                break;
            }
            ++_stats.datagram_errors;
            elog.debug("UDP receive: {}", exception_message(std::current_exception()));
            continue;
        }
        ++_stats.datagrams;
        // Answers go out without waiting for each other (the stack batches the sends of one task
        // batch); the semaphore bounds how many are in flight.
        co_await _udp_sends.wait(1);
        answer_datagram(std::move(d));
    }
    // Sends still in flight refer to the channel: wait for them before the gate lets stop() go on.
    co_await _udp_sends.wait(64);
    _udp_sends.signal(64);
}

future<> echo_server::stop() {
    if (_stopping) {
        co_return;
    }
    _stopping = true;
    if (_listener) {
        _listener.abort_accept();
    }
    if (_udp) {
        _udp.shutdown_input();
    }
    for (auto* s : _live) {
        s->shutdown_input();
    }
    co_await _gate.close();
    if (_udp) {
        _udp.close();
    }
}

}  // namespace reef::echo
