// pipe<T>: a one-way channel of T objects between a producer fiber (pipe_writer) and a consumer
// fiber (pipe_reader) on the same shard, bounded, with back-pressure both ways. Built on queue<T>.
//
//     pipe<int> p(16);
//     auto done = consume(std::move(p.reader));   // reads until read() gives nullopt
//     co_await p.writer.write(1);                 // waits while 16 items are unread
//     p.writer = {};                              // or destroy it: the reader sees end-of-stream
//
// Ends: destroying the writer is end-of-stream (the reader gets the remaining items, then
// nullopt). Destroying the reader breaks the pipe: writes fail with broken_pipe_exception,
// including writes waiting for room. The state is shared by the two ends and freed with the
// last of them. Single-shard, no atomics.
//
// Name clash: with `using namespace reef`, `pipe` is ambiguous with POSIX ::pipe() from
// <unistd.h>; write reef::pipe<T>.
#pragma once

#include "runtime/future.hh"
#include "runtime/misuse.hh"
#include "runtime/queue.hh"

#include <cstddef>
#include <exception>
#include <optional>
#include <utility>

namespace reef {

/// A write to a pipe whose reader is gone.
class broken_pipe_exception : public std::exception {
public:
    const char* what() const noexcept override { return "broken pipe"; }
};

namespace internal {

template <typename T>
class pipe_buffer {
    // nullopt in the queue marks end-of-stream for a reader already waiting when the writer left.
    queue<std::optional<T>> _buf;
    bool _read_open = true;
    bool _write_open = true;

public:
    explicit pipe_buffer(std::size_t size) : _buf(size) {}

    future<std::optional<T>> read() noexcept {
        if (!_write_open && _buf.empty()) {
            return make_ready_future<std::optional<T>>();
        }
        return _buf.pop_eventually();
    }
    future<> write(T&& data) noexcept {
        if (!_read_open) {
            return make_exception_future<>(broken_pipe_exception());
        }
        return _buf.push_eventually(std::optional<T>(std::move(data)));
    }
    // Each returns whether the other end is closed too (the buffer can then be freed).
    bool close_read() noexcept {
        _read_open = false;
        // Fail writers waiting for room; nobody will make it.
        _buf.abort(std::make_exception_ptr(broken_pipe_exception()));
        return !_write_open;
    }
    bool close_write() noexcept {
        _write_open = false;
        // Readers can only be waiting on an empty queue: wake each with end-of-stream. With items
        // queued, read() reports end-of-stream once they are consumed.
        while (_read_open && _buf.has_blocked_consumer()) {
#pragma GCC diagnostic push
            // GCC 12 (with sanitizers) sees the move of a disengaged optional<T> into the waiter's
            // future as reading T's uninitialized payload; the payload is never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
            _buf.push(std::nullopt);
#pragma GCC diagnostic pop
        }
        return !_read_open;
    }
};

}  // namespace internal

template <typename T>
class pipe;

/// The consuming end of a pipe<T>. Move-only.
template <typename T>
class pipe_reader {
    internal::pipe_buffer<T>* _buf = nullptr;

    friend class pipe<T>;
    explicit pipe_reader(internal::pipe_buffer<T>* b) noexcept : _buf(b) {}

    void close() noexcept {
        if (auto* b = std::exchange(_buf, nullptr); b && b->close_read()) {
            delete b;
        }
    }

public:
    /// An end attached to no pipe; only assignment and destruction are allowed.
    pipe_reader() noexcept = default;
    pipe_reader(pipe_reader&& x) noexcept : _buf(std::exchange(x._buf, nullptr)) {}
    pipe_reader& operator=(pipe_reader&& x) noexcept {
        if (this != &x) {
            close();
            _buf = std::exchange(x._buf, nullptr);
        }
        return *this;
    }
    /// Breaks the pipe: pending and later writes fail with broken_pipe_exception.
    ~pipe_reader() { close(); }

    /// The next item; waits while the pipe is empty and the writer still exists. nullopt means
    /// end-of-stream (the writer is gone and every item was read). Reads are served in order.
    /// Reading from an end attached to no pipe is misuse.
    future<std::optional<T>> read() {
        if (!_buf) {
            report_misuse("pipe_reader::read() on a moved-from pipe_reader");
        }
        return _buf->read();
    }
};

/// The producing end of a pipe<T>. Move-only.
template <typename T>
class pipe_writer {
    internal::pipe_buffer<T>* _buf = nullptr;

    friend class pipe<T>;
    explicit pipe_writer(internal::pipe_buffer<T>* b) noexcept : _buf(b) {}

    void close() noexcept {
        if (auto* b = std::exchange(_buf, nullptr); b && b->close_write()) {
            delete b;
        }
    }

public:
    pipe_writer() noexcept = default;
    pipe_writer(pipe_writer&& x) noexcept : _buf(std::exchange(x._buf, nullptr)) {}
    pipe_writer& operator=(pipe_writer&& x) noexcept {
        if (this != &x) {
            close();
            _buf = std::exchange(x._buf, nullptr);
        }
        return *this;
    }
    /// End-of-stream: the reader gets the items already written (including those still waiting
    /// for room), then nullopt.
    ~pipe_writer() { close(); }

    /// Write `data` (moved); the future resolves once it entered the pipe, waiting while the pipe
    /// is full. Fails with broken_pipe_exception if the reader is gone (or goes while waiting;
    /// the item is then dropped). Writing through an end attached to no pipe is misuse.
    future<> write(T&& data) {
        if (!_buf) {
            report_misuse("pipe_writer::write() on a moved-from pipe_writer");
        }
        return _buf->write(std::move(data));
    }
};

/// Creates the two ends of a pipe holding at most `size` unread items (size >= 1).
template <typename T>
class pipe {
public:
    pipe_reader<T> reader;
    pipe_writer<T> writer;

    explicit pipe(std::size_t size) : pipe(new internal::pipe_buffer<T>(check_size(size))) {}

private:
    explicit pipe(internal::pipe_buffer<T>* b) noexcept : reader(b), writer(b) {}
    static std::size_t check_size(std::size_t size) {
        if (size == 0) {
            report_misuse("pipe<T>(0): a pipe needs room for at least one item");
        }
        return size;
    }
};

}  // namespace reef
