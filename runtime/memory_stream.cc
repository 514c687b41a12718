#include "runtime/memory_stream.hh"

#include <memory>
#include <utility>

namespace reef {

namespace {

class memory_data_source final : public data_source_impl {
    std::vector<temporary_buffer<char>> _buffers;
    std::size_t _next = 0;

public:
    explicit memory_data_source(std::vector<temporary_buffer<char>> buffers) noexcept
        : _buffers(std::move(buffers)) {}

    future<temporary_buffer<char>> get() override {
        while (_next < _buffers.size()) {
            auto& b = _buffers[_next++];
            if (!b.empty()) {
                return make_ready_future<temporary_buffer<char>>(std::move(b));
            }
        }
        return make_ready_future<temporary_buffer<char>>();
    }
};

class string_data_sink final : public data_sink_impl {
    std::string& _out;
    std::size_t _hint;

public:
    string_data_sink(std::string& out, std::size_t hint) noexcept : _out(out), _hint(hint) {}
    using data_sink_impl::put;
    future<> put(temporary_buffer<char> data) override {
        _out.append(data.get(), data.size());
        return make_ready_future<>();
    }
    future<> close() override { return make_ready_future<>(); }
    std::size_t buffer_size_hint() const noexcept override { return _hint; }
};

class buffer_vector_data_sink final : public data_sink_impl {
    std::vector<temporary_buffer<char>>& _out;
    std::size_t _hint;

public:
    buffer_vector_data_sink(std::vector<temporary_buffer<char>>& out, std::size_t hint) noexcept
        : _out(out), _hint(hint) {}
    using data_sink_impl::put;
    future<> put(temporary_buffer<char> data) override {
        _out.push_back(std::move(data));
        return make_ready_future<>();
    }
    future<> close() override { return make_ready_future<>(); }
    std::size_t buffer_size_hint() const noexcept override { return _hint; }
};

}  // namespace

data_source make_memory_data_source(std::vector<temporary_buffer<char>> buffers) {
    return data_source(std::make_unique<memory_data_source>(std::move(buffers)));
}

data_sink make_string_data_sink(std::string& out, std::size_t size_hint) {
    return data_sink(std::make_unique<string_data_sink>(out, size_hint));
}

data_sink make_buffer_vector_data_sink(std::vector<temporary_buffer<char>>& out, std::size_t size_hint) {
    return data_sink(std::make_unique<buffer_vector_data_sink>(out, size_hint));
}

}  // namespace reef
