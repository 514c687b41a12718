#include "stack/testing/memory_socket.hh"

#include "runtime/circular_buffer.hh"
#include "runtime/future.hh"
#include "runtime/shared_ptr.hh"
#include "runtime/temporary_buffer.hh"

#include <algorithm>
#include <cerrno>
#include <exception>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace reef::net {

namespace {

std::exception_ptr make_errno_error(int err, const char* what) {
    return std::make_exception_ptr(std::system_error(err, std::system_category(), what));
}

// One direction of a pair: the writing end's sink puts buffers, the reading end's source takes
// them. Shared by both ends (and by their streams), so either end may go first.
class byte_channel {
    circular_buffer<temporary_buffer<char>> _data;
    std::size_t _unread = 0;
    std::size_t _limit;
    bool _writer_done = false;  // FIN: the reader sees end of stream after _data
    bool _reader_done = false;  // shutdown_input: data is dropped, reads return end of stream
    bool _reader_gone = false;  // the reading end was destroyed: writes fail with EPIPE
    std::exception_ptr _reset;  // connection reset: every operation fails with it
    std::optional<promise<>> _reader_wait;
    std::optional<promise<>> _writer_wait;
    std::vector<promise<>> _input_shutdown_waiters;  // the reading end's wait_input_shutdown()

    void wake_reader() noexcept {
        if (_reader_wait) {
            _reader_wait->set_value();
            _reader_wait.reset();
        }
    }
    void wake_writer() noexcept {
        if (_writer_wait) {
            _writer_wait->set_value();
            _writer_wait.reset();
        }
    }
    void wake_input_shutdown_waiters() noexcept {
        for (auto& p : _input_shutdown_waiters) {
            p.set_value();
        }
        _input_shutdown_waiters.clear();
    }
    bool input_over() const noexcept { return _writer_done || _reader_done || _reset; }
    void drop_data() noexcept {
        _data.clear();
        _unread = 0;
    }

public:
    explicit byte_channel(std::size_t limit) noexcept : _limit(limit) {}

    std::size_t unread() const noexcept { return _unread; }

    future<temporary_buffer<char>> read(std::size_t max) {
        if (_reader_wait) {
            return make_exception_future<temporary_buffer<char>>(
                std::logic_error("memory socket: a read is already in progress on this end"));
        }
        if (_reset) {
            return make_exception_future<temporary_buffer<char>>(_reset);
        }
        if (_reader_done) {
            return make_ready_future<temporary_buffer<char>>();
        }
        if (!_data.empty()) {
            auto& front = _data.front();
            temporary_buffer<char> b;
            if (front.size() <= max) {
                b = std::move(front);
                _data.pop_front();
            } else {
                b = front.share(0, max);
                front.trim_front(max);
            }
            _unread -= b.size();
            if (_unread <= _limit) {
                wake_writer();
            }
            return make_ready_future<temporary_buffer<char>>(std::move(b));
        }
        if (_writer_done) {
            return make_ready_future<temporary_buffer<char>>();
        }
        _reader_wait.emplace();
        // The channel outlives the wait: whoever waits holds a reference to it.
        return _reader_wait->get_future().then([this, max] { return read(max); });
    }

    future<> write(temporary_buffer<char> b) {
        if (_writer_wait) {
            return make_exception_future<>(
                std::logic_error("memory socket: a write is already in progress on this end"));
        }
        if (_reset) {
            return make_exception_future<>(_reset);
        }
        if (_writer_done) {
            return make_exception_future<>(make_errno_error(EPIPE, "memory socket: write after shutdown_output"));
        }
        if (_reader_gone) {
            return make_exception_future<>(make_errno_error(EPIPE, "memory socket: write to a closed peer"));
        }
        if (_reader_done || b.empty()) {
            return make_ready_future<>();
        }
        _unread += b.size();
        _data.push_back(std::move(b));
        wake_reader();
        return wait_for_room();
    }

    // Resolves once the reader has brought the unread bytes back to the limit (or can no longer
    // read them).
    future<> wait_for_room() {
        if (_reset) {
            return make_exception_future<>(_reset);
        }
        if (_unread <= _limit || _reader_done) {
            return make_ready_future<>();
        }
        _writer_wait.emplace();
        return _writer_wait->get_future().then([this] { return wait_for_room(); });
    }

    void shutdown_writer() noexcept {
        _writer_done = true;
        wake_reader();
        wake_input_shutdown_waiters();
    }

    void shutdown_reader() noexcept {
        _reader_done = true;
        drop_data();
        wake_reader();
        wake_writer();
        wake_input_shutdown_waiters();
    }

    void reader_gone() noexcept {
        _reader_gone = true;
        shutdown_reader();
    }

    void reset(std::exception_ptr ex) noexcept {
        if (!_reset) {
            _reset = std::move(ex);
        }
        drop_data();
        wake_reader();
        wake_writer();
        wake_input_shutdown_waiters();
    }

    future<> wait_input_shutdown() {
        if (input_over()) {
            return make_ready_future<>();
        }
        _input_shutdown_waiters.emplace_back();
        return _input_shutdown_waiters.back().get_future();
    }
};

class memory_data_source final : public data_source_impl {
    lw_shared_ptr<byte_channel> _ch;
    std::size_t _max;

public:
    memory_data_source(lw_shared_ptr<byte_channel> ch, std::size_t max) noexcept : _ch(std::move(ch)), _max(max) {}
    future<temporary_buffer<char>> get() override {
        // Keep the channel alive while the read waits, whatever happens to this source.
        return _ch->read(_max).finally([ch = _ch] {});
    }
    future<> close() override {
        _ch->shutdown_reader();
        return make_ready_future<>();
    }
};

class memory_data_sink final : public data_sink_impl {
    lw_shared_ptr<byte_channel> _ch;

public:
    using data_sink_impl::put;
    explicit memory_data_sink(lw_shared_ptr<byte_channel> ch) noexcept : _ch(std::move(ch)) {}
    future<> put(temporary_buffer<char> data) override {
        return _ch->write(std::move(data)).finally([ch = _ch] {});
    }
    future<> close() override {
        _ch->shutdown_writer();
        return make_ready_future<>();
    }
};

class memory_socket_impl final : public connected_socket_impl {
    lw_shared_ptr<byte_channel> _in;   // peer -> this end
    lw_shared_ptr<byte_channel> _out;  // this end -> peer
    socket_address _local;
    socket_address _remote;
    bool _nodelay = false;
    bool _keepalive = false;
    tcp_keepalive_params _keepalive_params;

public:
    memory_socket_impl(lw_shared_ptr<byte_channel> in, lw_shared_ptr<byte_channel> out, socket_address local,
                       socket_address remote) noexcept
        : _in(std::move(in)), _out(std::move(out)), _local(local), _remote(remote) {}
    ~memory_socket_impl() override {
        _in->reader_gone();
        _out->shutdown_writer();
    }

    data_source source(const connected_socket_input_stream_config& cfg) override {
        return data_source(std::make_unique<memory_data_source>(_in, std::max<std::size_t>(cfg.buffer_size, 1)));
    }
    data_sink sink() override { return data_sink(std::make_unique<memory_data_sink>(_out)); }
    void shutdown_input() override { _in->shutdown_reader(); }
    void shutdown_output() override { _out->shutdown_writer(); }
    void set_nodelay(bool on) override { _nodelay = on; }
    bool get_nodelay() const override { return _nodelay; }
    void set_keepalive(bool on) override { _keepalive = on; }
    bool get_keepalive() const override { return _keepalive; }
    void set_keepalive_parameters(const tcp_keepalive_params& p) override { _keepalive_params = p; }
    tcp_keepalive_params get_keepalive_parameters() const override { return _keepalive_params; }
    socket_address local_address() const noexcept override { return _local; }
    socket_address remote_address() const noexcept override { return _remote; }
    future<> wait_input_shutdown() override {
        return _in->wait_input_shutdown().finally([ch = _in] {});
    }

    void reset() {
        auto ex = make_errno_error(ECONNRESET, "memory socket: connection reset");
        _in->reset(ex);
        _out->reset(ex);
    }
    std::size_t unread_by_peer() const noexcept { return _out->unread(); }
};

memory_socket_impl& memory_impl_of(const connected_socket& s) {
    auto* impl = dynamic_cast<memory_socket_impl*>(s.impl());
    if (!impl) {
        throw std::invalid_argument("not a memory socket (see make_memory_socket_pair)");
    }
    return *impl;
}

}  // namespace

std::pair<connected_socket, connected_socket> make_memory_socket_pair(memory_socket_options opts) {
    if (opts.buffer_limit == 0) {
        throw std::invalid_argument("make_memory_socket_pair: buffer_limit must be at least 1");
    }
    auto first_to_second = make_lw_shared<byte_channel>(opts.buffer_limit);
    auto second_to_first = make_lw_shared<byte_channel>(opts.buffer_limit);
    connected_socket first(std::make_unique<memory_socket_impl>(second_to_first, first_to_second, opts.first_address,
                                                                opts.second_address));
    connected_socket second(std::make_unique<memory_socket_impl>(first_to_second, second_to_first, opts.second_address,
                                                                 opts.first_address));
    return {std::move(first), std::move(second)};
}

void memory_socket_reset(connected_socket& s) { memory_impl_of(s).reset(); }

std::size_t memory_socket_unread_by_peer(const connected_socket& s) { return memory_impl_of(s).unread_by_peer(); }

}  // namespace reef::net
