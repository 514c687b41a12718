// Byte streams: input_stream/output_stream over pluggable data sources and sinks.
//
// A data_source produces buffers (a socket's received data, a file, memory); input_stream adds
// buffering and the reads protocols want (exact lengths, consumers that parse in place). A
// data_sink accepts buffers; output_stream coalesces small writes into buffer-sized puts, passes
// large buffers through without copying, and keeps at most one put in flight so a slow sink slows
// the writer down instead of letting memory grow.
//
// Contract, for every type here:
//  - Single-shard: a stream, its source/sink and every buffer they exchange belong to the shard
//    that created them.
//  - One operation at a time per stream: wait for a read/skip/consume future before starting the
//    next read. (output_stream allows write() while a flush() is pending, see there.)
//  - The stream must stay alive (and not be moved) until the future of every operation started on
//    it has resolved; close() and wait for it before destroying a stream that did I/O.
//  - Errors from the source/sink travel in the returned future. After an input error the stream's
//    position is unspecified; after an output error every later operation fails with the same
//    exception. Either way, close the stream.
#pragma once

#include "runtime/circular_buffer.hh"
#include "runtime/coroutine.hh"
#include "runtime/future.hh"
#include "runtime/misuse.hh"
#include "runtime/temporary_buffer.hh"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace reef {

// ------------------------------------------------------------------------------------------------
// Sources and sinks

/// Implemented by anything that produces bytes.
class data_source_impl {
public:
    virtual ~data_source_impl() = default;
    /// The next buffer, of any non-zero size; an empty buffer means end of stream, and every later
    /// get() must return an empty buffer too. Errors are returned as an exceptional future.
    virtual future<temporary_buffer<char>> get() = 0;
    /// Discard the next n bytes and return the data that follows them (as get() would; empty at
    /// end of stream). The default reads and drops buffers; sources that can seek override it.
    virtual future<temporary_buffer<char>> skip(std::uint64_t n);
    /// Release resources. No get()/skip() may follow. The default does nothing.
    virtual future<> close();
};

/// Owning handle to a data_source_impl. Move-only; an empty data_source must not be used.
class data_source {
    std::unique_ptr<data_source_impl> _impl;

public:
    data_source() noexcept = default;
    explicit data_source(std::unique_ptr<data_source_impl> impl) noexcept : _impl(std::move(impl)) {}
    data_source(data_source&&) noexcept = default;
    data_source& operator=(data_source&&) noexcept = default;

    future<temporary_buffer<char>> get() { return _impl->get(); }
    future<temporary_buffer<char>> skip(std::uint64_t n) { return _impl->skip(n); }
    future<> close() { return _impl->close(); }
    explicit operator bool() const noexcept { return bool(_impl); }
    data_source_impl* impl() const noexcept { return _impl.get(); }
};

/// Implemented by anything that accepts bytes. The stream guarantees that calls do not overlap:
/// each put()/flush()/close() starts after the previous one's future resolved. A subclass that
/// overrides only one put() should add `using data_sink_impl::put;` to keep the other callable
/// on the subclass itself.
class data_sink_impl {
public:
    virtual ~data_sink_impl() = default;
    /// Take ownership of `data` and write it (after everything put before). The future resolves
    /// when the sink can accept more; errors are returned as an exceptional future.
    virtual future<> put(temporary_buffer<char> data) = 0;
    /// Gather form: put the buffers in order. The default puts them one at a time; sinks that can
    /// write several buffers at once (writev, a packet with fragments) override it.
    virtual future<> put(std::vector<temporary_buffer<char>> data);
    /// Push everything put so far towards its destination. The default does nothing.
    virtual future<> flush();
    /// Flush nothing more, release resources. No other call may follow.
    virtual future<> close() = 0;
    /// The write size this sink prefers; output_stream uses it when no buffer size is given.
    virtual std::size_t buffer_size_hint() const noexcept { return 8192; }
};

/// Owning handle to a data_sink_impl. Move-only; an empty data_sink must not be used.
class data_sink {
    std::unique_ptr<data_sink_impl> _impl;

public:
    data_sink() noexcept = default;
    explicit data_sink(std::unique_ptr<data_sink_impl> impl) noexcept : _impl(std::move(impl)) {}
    data_sink(data_sink&&) noexcept = default;
    data_sink& operator=(data_sink&&) noexcept = default;

    future<> put(temporary_buffer<char> data) { return _impl->put(std::move(data)); }
    future<> put(std::vector<temporary_buffer<char>> data) { return _impl->put(std::move(data)); }
    future<> flush() { return _impl->flush(); }
    future<> close() { return _impl->close(); }
    std::size_t buffer_size_hint() const noexcept { return _impl->buffer_size_hint(); }
    explicit operator bool() const noexcept { return bool(_impl); }
    data_sink_impl* impl() const noexcept { return _impl.get(); }
};

namespace internal {

// Sources and sinks move chars; streams may be over another byte type. Same memory, same owner.
template <typename To, typename From>
temporary_buffer<To> convert_buffer(temporary_buffer<From>&& b) noexcept {
    if constexpr (std::is_same_v<To, From>) {
        return std::move(b);
    } else {
        auto* p = reinterpret_cast<To*>(b.get_write());
        std::size_t n = b.size();
        return temporary_buffer<To>(p, n, b.release());
    }
}

}  // namespace internal

// ------------------------------------------------------------------------------------------------
// Consumers

/// Consumer result: the whole buffer was used; call again with more data (or with an empty buffer
/// at end of stream).
struct continue_consuming {};

/// Consumer result: done; `buf` is the part of the last buffer not used, which the stream keeps
/// for the next read (it may be empty).
template <typename CharType>
class stop_consuming {
    temporary_buffer<CharType> _buf;

public:
    explicit stop_consuming(temporary_buffer<CharType> buf) noexcept : _buf(std::move(buf)) {}
    temporary_buffer<CharType>& get_buffer() noexcept { return _buf; }
};

/// Consumer result: the whole buffer was used and the next n bytes of the stream are not wanted;
/// the stream skips them (through data_source::skip) and calls the consumer again with what
/// follows.
class skip_bytes {
    std::uint64_t _n;

public:
    explicit skip_bytes(std::uint64_t n) noexcept : _n(n) {}
    std::uint64_t get_value() const noexcept { return _n; }
};

/// What a consumer returns (in a future) for each buffer it is given.
template <typename CharType>
class consumption_result {
public:
    using variant_type = std::variant<continue_consuming, stop_consuming<CharType>, skip_bytes>;

private:
    variant_type _v;

public:
    consumption_result(continue_consuming c) noexcept : _v(c) {}
    consumption_result(stop_consuming<CharType>&& s) noexcept : _v(std::move(s)) {}
    consumption_result(skip_bytes s) noexcept : _v(s) {}
    variant_type& get() noexcept { return _v; }
    const variant_type& get() const noexcept { return _v; }
};

/// A consumer is called with each buffer in turn and says what to do next: it returns a
/// consumption_result<CharType>, or a future of one.
template <typename C, typename CharType>
concept input_stream_consumer =
    std::is_invocable_v<C&, temporary_buffer<CharType>&&> &&
    std::is_same_v<futurize_t<std::invoke_result_t<C&, temporary_buffer<CharType>&&>>,
                   future<consumption_result<CharType>>>;

// ------------------------------------------------------------------------------------------------
// input_stream

/// Buffered reads from a data_source. See the file comment for the shared contract.
template <typename CharType>
class input_stream final {
    static_assert(sizeof(CharType) == 1, "input_stream reads bytes");

public:
    using tmp_buf = temporary_buffer<CharType>;

private:
    data_source _fd;
    tmp_buf _buf;       // read from the source, not yet returned
    bool _eof = false;  // the source returned its empty buffer

    // Give out n bytes of _buf (n <= _buf.size()) without copying.
    tmp_buf take(std::size_t n) {
        if (n == _buf.size()) {
            return std::move(_buf);
        }
        tmp_buf r = _buf.share(0, n);
        _buf.trim_front(n);
        return r;
    }
    future<> fill() {
        // An empty _buf may still share the source's memory: let go of it, so that a source that
        // reuses its buffer once nobody holds it can.
        _buf = tmp_buf();
        return _fd.get().then([this](temporary_buffer<char> b) {
            _eof = b.empty();
            _buf = internal::convert_buffer<CharType>(std::move(b));
        });
    }
    future<tmp_buf> read_exactly_slow(std::size_t n);
    template <typename Consumer>
    future<> consume_loop(Consumer c);

public:
    input_stream() noexcept = default;
    explicit input_stream(data_source fd) noexcept : _fd(std::move(fd)) {}
    input_stream(input_stream&&) noexcept = default;
    input_stream& operator=(input_stream&&) noexcept = default;

    /// Whatever data is available: the rest of the current buffer, or the source's next buffer.
    /// An empty buffer means end of stream. Zero-copy.
    future<tmp_buf> read() {
        if (!_buf.empty()) {
            return make_ready_future<tmp_buf>(std::move(_buf));
        }
        if (_eof) {
            return make_ready_future<tmp_buf>();
        }
        _buf = tmp_buf();  // as in fill()
        return _fd.get().then([this](temporary_buffer<char> b) {
            _eof = b.empty();
            return internal::convert_buffer<CharType>(std::move(b));
        });
    }

    /// Exactly n bytes, or fewer only when the stream ends first (possibly none). Zero-copy when
    /// the bytes lie in one source buffer; otherwise they are copied into a new buffer.
    future<tmp_buf> read_exactly(std::size_t n) {
        if (_buf.size() >= n) {
            return make_ready_future<tmp_buf>(take(n));
        }
        return read_exactly_slow(n);
    }

    /// Between 1 and n bytes (n > 0), or an empty buffer at end of stream. Zero-copy.
    future<tmp_buf> read_up_to(std::size_t n) {
        if (!_buf.empty() || _eof) {
            return make_ready_future<tmp_buf>(take(std::min(n, _buf.size())));
        }
        return fill().then([this, n] { return take(std::min(n, _buf.size())); });
    }

    /// Feed the stream to `consumer`, buffer by buffer, until it returns stop_consuming or the
    /// stream ends (the consumer is then called once with an empty buffer, unless it stopped
    /// before). The consumer is called as consumer(temporary_buffer<CharType>) and returns
    /// future<consumption_result<CharType>> (or the result directly); see continue_consuming,
    /// stop_consuming and skip_bytes. An lvalue consumer is used by reference and must outlive the
    /// returned future; an rvalue is moved into the operation. A consumer's exception ends the
    /// operation with that exception.
    template <typename Consumer>
        requires input_stream_consumer<std::remove_reference_t<Consumer>, CharType>
    future<> consume(Consumer&& consumer) {
        return consume_loop<Consumer>(std::forward<Consumer>(consumer));
    }

    /// Discard the next n bytes (fewer if the stream ends first).
    future<> skip(std::uint64_t n) {
        std::uint64_t here = std::min<std::uint64_t>(n, _buf.size());
        _buf.trim_front(here);
        n -= here;
        if (n == 0 || _eof) {
            return make_ready_future<>();
        }
        _buf = tmp_buf();  // as in fill()
        return _fd.skip(n).then([this](temporary_buffer<char> b) {
            // skip() returns an empty buffer both at end of stream and when the skipped range ends
            // exactly on a buffer boundary; the next get() tells which.
            _buf = internal::convert_buffer<CharType>(std::move(b));
        });
    }

    /// Has the source reported end of stream? (Data may still be buffered: true only means no
    /// more will come from the source.)
    bool eof() const noexcept { return _eof && _buf.empty(); }

    /// Close the source. No read may follow or be in progress.
    future<> close() { return _fd.close(); }

    /// The underlying source (e.g. to reach implementation-specific controls).
    data_source& source() noexcept { return _fd; }
};

template <typename CharType>
future<temporary_buffer<CharType>> input_stream<CharType>::read_exactly_slow(std::size_t n) {
    // Fast case first: the current buffer is used up and the next one holds all n bytes.
    if (_buf.empty()) {
        if (_eof) {
            co_return tmp_buf();
        }
        co_await fill();
        if (_buf.size() >= n || _eof) {
            co_return take(std::min(n, _buf.size()));
        }
    }
    tmp_buf out(n);
    std::size_t filled = 0;
    for (;;) {
        std::size_t k = std::min(n - filled, _buf.size());
        if (k) {
            std::memcpy(out.get_write() + filled, _buf.get(), k);
            _buf.trim_front(k);
            filled += k;
        }
        if (filled == n || _eof) {
            break;
        }
        co_await fill();
    }
    out.trim(filled);
    co_return out;
}

template <typename CharType>
template <typename Consumer>
future<> input_stream<CharType>::consume_loop(Consumer c) {
    // `c` is a parameter, so it lives in this coroutine's frame (a reference if Consumer is one).
    for (;;) {
        if (_buf.empty() && !_eof) {
            co_await fill();
            continue;
        }
        bool at_eof = _eof && _buf.empty();
        consumption_result<CharType> r = co_await futurize_invoke(c, std::move(_buf));
        auto& v = r.get();
        if (auto* stop = std::get_if<stop_consuming<CharType>>(&v)) {
            _buf = std::move(stop->get_buffer());
            co_return;
        }
        if (auto* skip = std::get_if<skip_bytes>(&v)) {
            if (at_eof) {
                co_return;
            }
            co_await this->skip(skip->get_value());
            continue;
        }
        if (at_eof) {
            co_return;  // the consumer has seen end of stream
        }
    }
}

// ------------------------------------------------------------------------------------------------
// output_stream

/// Buffered writes to a data_sink. See the file comment for the shared contract.
///
/// Buffering: writes are copied into a buffer of `buffer_size` bytes; a full buffer is handed to
/// the sink. Buffers of at least buffer_size bytes given to write(temporary_buffer) are passed to
/// the sink as they are, without copying, after the data buffered before them.
///
/// Back-pressure: at most one sink operation (put or flush) is in flight. A write that fills the
/// buffer starts the put in the background and returns; if the previous put is still running it
/// first waits for it. So a writer is never more than about one buffer ahead of the sink, and a
/// write returns a ready future whenever its data fits in the buffer.
///
/// Batched flushes: flush() hands the buffered data and a sink flush() to the sink and resolves
/// when they are done, but it does not block writes: write() may be called while a flush() is
/// pending (its data goes to a new buffer and waits only if that buffer fills). Order is always
/// preserved: the sink sees bytes in the order they were written.
///
/// Errors: when a put or flush fails, the exception is kept; the next write/flush/close (and every
/// later one) fails with it. close() still closes the sink.
template <typename CharType>
class output_stream final {
    static_assert(sizeof(CharType) == 1, "output_stream writes bytes");

public:
    using tmp_buf = temporary_buffer<CharType>;

private:
    data_sink _fd;
    tmp_buf _buf;                          // allocated on first use; _end bytes are filled
    tmp_buf _spare;                        // the last buffer handed to the sink, reused once it lets go
    std::size_t _size = 0;
    std::size_t _end = 0;
    bool _busy = false;                    // a put/flush is in flight
    bool _unflushed = false;               // a put completed since the last sink flush
    bool _closed = false;
    std::exception_ptr _error;             // first sink failure; sticky
    circular_buffer<promise<>> _waiters;   // woken when the in-flight operation ends

    bool fits(std::size_t n) const noexcept { return _buf && n <= _size - _end; }
    void append(const CharType* p, std::size_t n) noexcept {
        std::memcpy(_buf.get_write() + _end, p, n);
        _end += n;
    }
    // The filled part of the buffer, for the sink. The stream keeps a share of it: when the sink
    // has dropped its part by the time the next buffer is needed, the memory is reused instead of
    // a new buffer being allocated for every flush.
    tmp_buf take_buffer() noexcept {
        if (_end == 0) {
            return tmp_buf();
        }
        tmp_buf out;
        try {
            out = _buf.share(0, _end);
            _spare = std::move(_buf);
        } catch (const std::bad_alloc&) {
            _buf.trim(_end);
            out = std::move(_buf);
        }
        _end = 0;
        return out;
    }
    // A buffer to fill: the spare one if nobody else holds it any more, else a new one.
    void next_buffer() {
        if (_spare.exclusive()) {
            _buf = std::move(_spare);
        } else {
            _spare = tmp_buf();
            _buf = tmp_buf(_size);
        }
    }
    future<> wait_idle() {
        if (!_busy) [[likely]] {
            return make_ready_future<>();
        }
        return wait_idle_slow();
    }
    future<> wait_idle_slow();
    void finish_op() noexcept;
    future<> put_buffers(tmp_buf first, tmp_buf second) noexcept;
    future<> flush_sink() noexcept;
    void start(tmp_buf first, tmp_buf second, bool flush) noexcept;
    future<> run_op(future<> pending, bool pending_is_put, bool flush) noexcept;
    future<> write_slow(const CharType* p, std::size_t n);
    future<> write_slow_coro(const CharType* p, std::size_t n);
    future<> write_zero_copy(tmp_buf b);
    future<> write_owned(tmp_buf b);
    future<> do_flush();
    future<> do_flush_slow();
    future<> wait_op();
    future<> do_close();
    void check_writable(const char* op) const {
        if (_closed) [[unlikely]] {
            report_misuse(op);
        }
    }

public:
    output_stream() noexcept = default;
    /// Write to `fd` through a buffer of buffer_size bytes (> 0).
    output_stream(data_sink fd, std::size_t buffer_size) noexcept : _fd(std::move(fd)), _size(buffer_size) {}
    /// Write to `fd` through a buffer of the sink's preferred size.
    explicit output_stream(data_sink fd) noexcept : _fd(std::move(fd)) { _size = _fd.buffer_size_hint(); }
    /// Moving a stream with an operation in flight is misuse (the operation refers to it).
    output_stream(output_stream&& x) noexcept
        : _fd(std::move(x._fd)), _buf(std::move(x._buf)), _spare(std::move(x._spare)), _size(x._size),
          _end(std::exchange(x._end, 0)),
          _busy(x._busy), _unflushed(x._unflushed), _closed(x._closed), _error(std::move(x._error)),
          _waiters(std::move(x._waiters)) {
        if (_busy) {
            report_misuse("output_stream moved while a put or flush is in flight");
        }
    }
    output_stream& operator=(output_stream&& x) noexcept {
        if (this != &x) {
            this->~output_stream();
            new (this) output_stream(std::move(x));
        }
        return *this;
    }
    /// Destroying a stream with an operation in flight is misuse: close() it and wait first.
    ~output_stream() {
        if (_busy) {
            report_misuse("output_stream destroyed while a put or flush is in flight (close() and wait for it)");
        }
    }

    /// Append n bytes (copied). [p, p + n) must stay valid until the returned future resolves.
    /// The future is ready at once when the data fits in the buffer; otherwise it resolves when
    /// the data is queued for the sink (see back-pressure above).
    future<> write(const CharType* p, std::size_t n) {
        if (fits(n) && !_error) [[likely]] {
            append(p, n);
            return make_ready_future<>();
        }
        return write_slow(p, n);
    }
    /// Same as write(s.data(), s.size()): the characters must stay valid until the future resolves.
    future<> write(std::basic_string_view<CharType> s) { return write(s.data(), s.size()); }
    /// Append a buffer (the stream owns it from now on): copied if smaller than the buffer size,
    /// else passed to the sink as is.
    future<> write(tmp_buf b) {
        if (b.size() >= _size) {
            return write_zero_copy(std::move(b));
        }
        if (fits(b.size()) && !_error) {
            append(b.get(), b.size());
            return make_ready_future<>();
        }
        return write_owned(std::move(b));
    }

    /// Send everything written so far to the sink and flush it; resolves when done (or fails with
    /// the sink's error). Writes may continue meanwhile (see batched flushes above).
    future<> flush() { return do_flush(); }

    /// Flush, then close the sink (even if the flush failed). Resolves when the sink is closed;
    /// fails with the first error seen. No write or flush may follow; calling close() twice is
    /// misuse.
    future<> close() { return do_close(); }

    /// The underlying sink.
    data_sink& sink() noexcept { return _fd; }
};

template <typename CharType>
future<> output_stream<CharType>::wait_idle_slow() {
    while (_busy) {
        _waiters.emplace_back();
        co_await _waiters.back().get_future();
    }
}

template <typename CharType>
void output_stream<CharType>::finish_op() noexcept {
    _busy = false;
    while (!_waiters.empty()) {
        _waiters.front().set_value();
        _waiters.pop_front();
    }
}

template <typename CharType>
future<> output_stream<CharType>::put_buffers(tmp_buf first, tmp_buf second) noexcept {
    try {
        if (!first.empty() && !second.empty()) {
            std::vector<temporary_buffer<char>> v;
            v.reserve(2);
            v.push_back(internal::convert_buffer<char>(std::move(first)));
            v.push_back(internal::convert_buffer<char>(std::move(second)));
            return _fd.put(std::move(v));
        }
        return _fd.put(internal::convert_buffer<char>(first.empty() ? std::move(second) : std::move(first)));
    } catch (...) {
        return make_exception_future<>(std::current_exception());
    }
}

template <typename CharType>
future<> output_stream<CharType>::flush_sink() noexcept {
    try {
        return _fd.flush();
    } catch (...) {
        return make_exception_future<>(std::current_exception());
    }
}

template <typename CharType>
void output_stream<CharType>::start(tmp_buf first, tmp_buf second, bool flush) noexcept {
    _busy = true;
    // A sink usually completes at once (a socket with room in its send buffer): that case runs
    // here, without a coroutine frame. run_op() finishes whatever has to wait. Errors go to _error
    // and completion is reported through _busy/_waiters, so no future is returned.
    const bool put = !first.empty() || !second.empty();
    if (put) {
        future<> f = put_buffers(std::move(first), std::move(second));
        if (!f.available() || f.failed()) {
            (void)run_op(std::move(f), true, flush);
            return;
        }
        f.ignore_ready_future();
        _unflushed = true;
    }
    if (flush) {
        future<> f = flush_sink();
        if (!f.available() || f.failed()) {
            (void)run_op(std::move(f), false, false);
            return;
        }
        f.ignore_ready_future();
        _unflushed = false;
    }
    finish_op();
}

template <typename CharType>
future<> output_stream<CharType>::run_op(future<> pending, bool pending_is_put, bool flush) noexcept {
    // `pending` is the put (then the sink flush follows when `flush`), or else the sink flush.
    try {
        co_await std::move(pending);
        if (pending_is_put) {
            _unflushed = true;
            if (flush) {
                auto f = _fd.flush();
                co_await std::move(f);
                _unflushed = false;
            }
        } else {
            _unflushed = false;
        }
    } catch (...) {
        if (!_error) {
            _error = std::current_exception();
        }
    }
    finish_op();
}

template <typename CharType>
future<> output_stream<CharType>::write_slow(const CharType* p, std::size_t n) {
    // The usual way here: the last flush handed the buffer to the sink and this write starts the
    // next one.
    if (!_buf && n < _size && !_error && !_closed) [[likely]] {
        try {
            next_buffer();
        } catch (...) {
            return make_exception_future<>(std::current_exception());
        }
        append(p, n);
        return make_ready_future<>();
    }
    return write_slow_coro(p, n);
}

template <typename CharType>
future<> output_stream<CharType>::write_slow_coro(const CharType* p, std::size_t n) {
    check_writable("output_stream::write() after close()");
    while (n) {
        if (_error) {
            std::rethrow_exception(_error);
        }
        if (_end == 0 && n >= _size) {
            // At least a whole buffer left: copy it into one buffer of its own, one put.
            // Only this (single) writer fills the buffer, so it is still empty after the wait.
            tmp_buf big(p, n);
            co_await wait_idle();
            if (_error) {
                std::rethrow_exception(_error);
            }
            start(std::move(big), tmp_buf(), false);
            co_return;
        }
        if (!_buf) {
            next_buffer();
        }
        std::size_t k = std::min(n, _size - _end);
        append(p, k);
        p += k;
        n -= k;
        if (_end == _size) {
            co_await wait_idle();
            if (_error) {
                std::rethrow_exception(_error);
            }
            // A flush that ran while we waited may already have taken the buffer.
            if (_end != 0) {
                start(take_buffer(), tmp_buf(), false);
            }
        }
    }
}

template <typename CharType>
future<> output_stream<CharType>::write_owned(tmp_buf b) {
    // write_slow() reads the bytes after suspending, so b must live in this frame until it is done.
    co_await write_slow(b.get(), b.size());
}

template <typename CharType>
future<> output_stream<CharType>::write_zero_copy(tmp_buf b) {
    check_writable("output_stream::write() after close()");
    if (_error) {
        std::rethrow_exception(_error);
    }
    co_await wait_idle();
    if (_error) {
        std::rethrow_exception(_error);
    }
    // Buffered bytes go first; both are handed to the sink in one gather put.
    start(take_buffer(), std::move(b), false);
}

template <typename CharType>
future<> output_stream<CharType>::do_flush() {
    if (_busy || _error || _closed) [[unlikely]] {
        return do_flush_slow();
    }
    if (_end == 0 && !_unflushed) {
        return make_ready_future<>();  // nothing reached the sink since its last flush
    }
    start(take_buffer(), tmp_buf(), true);
    if (!_busy) [[likely]] {
        return _error ? make_exception_future<>(_error) : make_ready_future<>();
    }
    return wait_op();
}

template <typename CharType>
future<> output_stream<CharType>::wait_op() {
    co_await wait_idle();
    if (_error) {
        std::rethrow_exception(_error);
    }
}

template <typename CharType>
future<> output_stream<CharType>::do_flush_slow() {
    check_writable("output_stream::flush() after close()");
    if (_error) {
        std::rethrow_exception(_error);
    }
    co_await wait_idle();
    if (_error) {
        std::rethrow_exception(_error);
    }
    if (_end == 0 && !_unflushed) {
        co_return;  // nothing reached the sink since its last flush
    }
    start(take_buffer(), tmp_buf(), true);
    co_await wait_op();
}

template <typename CharType>
future<> output_stream<CharType>::do_close() {
    check_writable("output_stream::close() called twice");
    std::exception_ptr ex;
    try {
        co_await do_flush();
    } catch (...) {
        ex = std::current_exception();
    }
    // A failed flush may leave nothing in flight yet still a failed put behind it; wait anyway.
    co_await wait_idle();
    _closed = true;
    _buf = tmp_buf();
    _spare = tmp_buf();
    try {
        co_await _fd.close();
    } catch (...) {
        if (!ex) {
            ex = std::current_exception();
        }
    }
    if (ex) {
        std::rethrow_exception(ex);
    }
}

}  // namespace reef
