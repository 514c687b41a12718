#include "runtime/io/file_stream.hh"

#include "runtime/circular_buffer.hh"
#include "runtime/coroutine.hh"

#include <algorithm>
#include <cstring>
#include <exception>
#include <system_error>

namespace reef {

namespace {

std::size_t round_up(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }

future<temporary_buffer<char>> read_chunk(file f, std::uint64_t pos, std::size_t len, io_priority_class pc) {
    auto buf = allocate_aligned_buffer(len, f.dma_alignment());
    std::size_t n = co_await f.dma_read(pos, buf.get_write(), len, pc);
    buf.trim(n);
    co_return buf;
}

class file_source final : public data_source_impl {
    file _f;
    file_input_stream_options _o;
    std::uint64_t _next;        // aligned offset of the next read to issue
    std::uint64_t _end;         // offset where the stream ends (may be past the file's end)
    std::size_t _skip_front;    // bytes before the requested offset in the first chunk
    bool _eof = false;          // a short read (end of file) or the end of the range was seen
    bool _issuing_done = false;
    circular_buffer<future<temporary_buffer<char>>> _reads;

    void issue() {
        while (!_issuing_done && _reads.size() < std::size_t(_o.read_ahead) + 1) {
            if (_next >= _end) {
                _issuing_done = true;
                break;
            }
            _reads.push_back(read_chunk(_f, _next, _o.buffer_size, _o.io_class));
            _next += _o.buffer_size;
        }
    }

public:
    file_source(file f, std::uint64_t offset, std::uint64_t len, file_input_stream_options o)
        : _f(std::move(f)), _o(o) {
        std::size_t a = _f.dma_alignment();
        _o.buffer_size = round_up(std::max<std::size_t>(_o.buffer_size, 1), a);
        _next = offset / a * a;
        _skip_front = std::size_t(offset - _next);
        _end = len > std::numeric_limits<std::uint64_t>::max() - offset ? std::numeric_limits<std::uint64_t>::max()
                                                                           : offset + len;
    }

    future<temporary_buffer<char>> get() override {
        if (_eof) {
            co_return temporary_buffer<char>();
        }
        issue();
        if (_reads.empty()) {
            _eof = true;
            co_return temporary_buffer<char>();
        }
        auto f = std::move(_reads.front());
        _reads.pop_front();
        std::uint64_t chunk_pos = _next - std::uint64_t(_reads.size() + 1) * _o.buffer_size;
        temporary_buffer<char> b = co_await std::move(f);
        if (b.size() < _o.buffer_size) {
            _eof = true;  // end of file: later reads (already issued) hold nothing
            _issuing_done = true;
        }
        std::size_t skip = std::min(_skip_front, b.size());
        _skip_front = 0;
        b.trim_front(skip);
        std::uint64_t start = chunk_pos + skip;
        if (start + b.size() >= _end) {
            b.trim(start >= _end ? 0 : std::size_t(_end - start));
            _eof = true;
            _issuing_done = true;
        }
        if (b.empty()) {
            _eof = true;
        }
        co_return b;
    }

    future<> close() override {
        // The reads in flight own their buffers; wait for them so nothing outlives the stream.
        while (!_reads.empty()) {
            auto f = std::move(_reads.front());
            _reads.pop_front();
            try {
                co_await std::move(f);
            } catch (...) {
            }
        }
    }
};

class file_sink final : public data_sink_impl {
    file _f;
    file_output_stream_options _o;
    std::size_t _align;
    temporary_buffer<char> _buf;   // aligned staging buffer of buffer_size bytes
    std::size_t _fill = 0;
    std::uint64_t _pos = 0;        // file offset of _buf's first byte (aligned)
    circular_buffer<future<>> _writes;
    std::exception_ptr _error;

    static future<> write_all(file f, std::uint64_t pos, temporary_buffer<char> b, std::size_t len,
                              io_priority_class pc) {
        std::size_t done = 0;
        while (done < len) {
            // A short write means the disk filled up part way; the retry reports why.
            std::size_t n = co_await f.dma_write(pos + done, b.get() + done, len - done, pc);
            if (n == 0) {
                throw std::system_error(ENOSPC, std::system_category(), "write " + f.path());
            }
            done += n;
            // Keep later writes aligned: a partial write of an unaligned count is rounded down.
            done = done / f.dma_alignment() * f.dma_alignment();
        }
    }

    void ensure_buffer() {
        if (!_buf) {
            _buf = allocate_aligned_buffer(_o.buffer_size, _align);
            _fill = 0;
        }
    }

    future<> wait_oldest() {
        auto f = std::move(_writes.front());
        _writes.pop_front();
        try {
            co_await std::move(f);
        } catch (...) {
            if (!_error) {
                _error = std::current_exception();
            }
        }
    }

    future<> wait_all() {
        while (!_writes.empty()) {
            co_await wait_oldest();
        }
        if (_error) {
            std::rethrow_exception(_error);
        }
    }

    // Hand a full buffer to the disk in the background; the writer waits only when write_behind
    // writes are already in flight.
    future<> start_write(temporary_buffer<char> b, std::size_t len) {
        if (_error) {
            std::rethrow_exception(_error);
        }
        while (_writes.size() > _o.write_behind) {
            co_await wait_oldest();
        }
        std::uint64_t pos = _pos;
        _pos += len;
        _writes.push_back(write_all(_f, pos, std::move(b), len, _o.io_class));
        if (_writes.size() > _o.write_behind) {
            co_await wait_oldest();
        }
        if (_error) {
            std::rethrow_exception(_error);
        }
    }

public:
    file_sink(file f, file_output_stream_options o) : _f(std::move(f)), _o(o), _align(_f.dma_alignment()) {
        _o.buffer_size = round_up(std::max<std::size_t>(_o.buffer_size, 1), _align);
    }

    using data_sink_impl::put;
    future<> put(temporary_buffer<char> data) override {
        // Zero copy for whole aligned blocks arriving on a block boundary.
        if (_fill == 0 && data.size() >= _o.buffer_size && data.size() % _align == 0 &&
            reinterpret_cast<std::uintptr_t>(data.get()) % _align == 0) {
            std::size_t n = data.size();
            co_await start_write(std::move(data), n);
            co_return;
        }
        std::size_t off = 0;
        while (off < data.size()) {
            ensure_buffer();
            std::size_t k = std::min(data.size() - off, _o.buffer_size - _fill);
            std::memcpy(_buf.get_write() + _fill, data.get() + off, k);
            _fill += k;
            off += k;
            if (_fill == _o.buffer_size) {
                _fill = 0;
                co_await start_write(std::move(_buf), _o.buffer_size);
            }
        }
    }

    future<> flush() override {
        if (_fill) {
            // The padded tail is written now and again, completed, by the next write or flush.
            std::size_t padded = round_up(_fill, _align);
            std::memset(_buf.get_write() + _fill, 0, padded - _fill);
            co_await wait_all();
            co_await write_all(_f, _pos, _buf.share(), padded, _o.io_class);
            std::size_t whole = _fill / _align * _align;
            if (whole) {
                std::memmove(_buf.get_write(), _buf.get() + whole, _fill - whole);
                _pos += whole;
                _fill -= whole;
            }
        }
        co_await wait_all();
    }

    future<> close() override {
        std::exception_ptr ex;
        try {
            co_await flush();
            std::uint64_t size = _pos + _fill;
            co_await _f.truncate(size);
            if (_o.sync_on_close) {
                co_await _f.flush();
            }
        } catch (...) {
            ex = std::current_exception();
        }
        try {
            co_await wait_all();
        } catch (...) {
        }
        co_await _f.close();
        if (ex) {
            std::rethrow_exception(ex);
        }
    }

    std::size_t buffer_size_hint() const noexcept override { return _o.buffer_size; }
};

}  // namespace

input_stream<char> make_file_input_stream(file f, std::uint64_t offset, std::uint64_t len,
                                          file_input_stream_options options) {
    return input_stream<char>(data_source(std::make_unique<file_source>(std::move(f), offset, len, options)));
}

input_stream<char> make_file_input_stream(file f, file_input_stream_options options) {
    return make_file_input_stream(std::move(f), 0, std::numeric_limits<std::uint64_t>::max(), options);
}

output_stream<char> make_file_output_stream(file f, file_output_stream_options options) {
    auto sink = std::make_unique<file_sink>(std::move(f), options);
    std::size_t size = sink->buffer_size_hint();
    return output_stream<char>(data_sink(std::move(sink)), size);
}

}  // namespace reef
