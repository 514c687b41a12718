#include "runtime/iostream.hh"

namespace reef {

future<temporary_buffer<char>> data_source_impl::skip(std::uint64_t n) {
    for (;;) {
        temporary_buffer<char> b = co_await get();
        if (b.empty()) {
            co_return b;
        }
        if (b.size() > n) {
            b.trim_front(n);
            co_return b;
        }
        n -= b.size();
        if (n == 0) {
            co_return temporary_buffer<char>();
        }
    }
}

future<> data_source_impl::close() {
    return make_ready_future<>();
}

future<> data_sink_impl::put(std::vector<temporary_buffer<char>> data) {
    for (auto& b : data) {
        co_await put(std::move(b));
    }
}

future<> data_sink_impl::flush() {
    return make_ready_future<>();
}

}  // namespace reef
