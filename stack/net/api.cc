#include "stack/net/api.hh"

#include <stdexcept>

namespace reef::net {

// ---- connected_socket

connected_socket::~connected_socket() = default;

input_stream<char> connected_socket::input(connected_socket_input_stream_config cfg) {
    return input_stream<char>(_impl->source(cfg));
}

output_stream<char> connected_socket::output(std::size_t buffer_size) {
    return output_stream<char>(_impl->sink(), buffer_size);
}

void connected_socket::shutdown_input() { _impl->shutdown_input(); }
void connected_socket::shutdown_output() { _impl->shutdown_output(); }
void connected_socket::set_nodelay(bool on) { _impl->set_nodelay(on); }
bool connected_socket::get_nodelay() const { return _impl->get_nodelay(); }
void connected_socket::set_keepalive(bool on) { _impl->set_keepalive(on); }
bool connected_socket::get_keepalive() const { return _impl->get_keepalive(); }
void connected_socket::set_keepalive_parameters(const tcp_keepalive_params& p) { _impl->set_keepalive_parameters(p); }
tcp_keepalive_params connected_socket::get_keepalive_parameters() const { return _impl->get_keepalive_parameters(); }
socket_address connected_socket::local_address() const noexcept { return _impl->local_address(); }
socket_address connected_socket::remote_address() const noexcept { return _impl->remote_address(); }
future<> connected_socket::wait_input_shutdown() { return _impl->wait_input_shutdown(); }

// ---- server_socket

server_socket::~server_socket() = default;
future<accept_result> server_socket::accept() { return _impl->accept(); }
void server_socket::abort_accept() { _impl->abort_accept(); }
socket_address server_socket::local_address() const noexcept { return _impl->local_address(); }

// ---- udp_channel

udp_channel::~udp_channel() = default;
socket_address udp_channel::local_address() const { return _impl->local_address(); }
future<datagram> udp_channel::receive() { return _impl->receive(); }
future<> udp_channel::send(const socket_address& dst, packet p) { return _impl->send(dst, std::move(p)); }
future<> udp_channel::send(const socket_address& dst, std::string_view data) {
    return _impl->send(dst, packet(data.data(), data.size()));
}
void udp_channel::shutdown_input() { _impl->shutdown_input(); }
void udp_channel::shutdown_output() { _impl->shutdown_output(); }
bool udp_channel::is_closed() const { return _impl->is_closed(); }
void udp_channel::close() { _impl->close(); }

// ---- this shard's stack

namespace {
thread_local std::unique_ptr<network_stack> local_stack_instance;
}

network_stack& local_stack() {
    if (!local_stack_instance) [[unlikely]] {
        throw std::logic_error("no network stack on this shard: call net::start_network_stack() first");
    }
    return *local_stack_instance;
}

bool has_local_stack() noexcept { return bool(local_stack_instance); }

void set_local_stack(std::unique_ptr<network_stack> s) { local_stack_instance = std::move(s); }

void reset_local_stack() noexcept { local_stack_instance.reset(); }

server_socket listen(socket_address sa, listen_options opts) { return local_stack().listen(sa, opts); }

future<connected_socket> connect(socket_address sa, socket_address local) {
    try {
        return local_stack().connect(sa, local);
    } catch (...) {
        return make_exception_future<connected_socket>(std::current_exception());
    }
}

udp_channel make_udp_channel(const socket_address& local, const udp_channel_options& opts) {
    return local_stack().make_udp_channel(local, opts);
}

}  // namespace reef::net
