#include "runtime/io/file.hh"

#include "runtime/coroutine.hh"
#include "runtime/gate.hh"
#include "runtime/io/dma_buffer.hh"
#include "runtime/io/io_log.hh"
#include "runtime/io/io_queue_impl.hh"
#include "runtime/reactor.hh"
#include "runtime/semaphore.hh"

#include <fmt/format.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <set>
#include <stdexcept>
#include <system_error>

namespace reef {

namespace internal {

// The open file all copies of a `file` share.
class file_impl {
public:
    std::string path;
    int fd = -1;
    bool buffered = false;
    bool writable = false;
    bool closed = false;
    std::size_t align = 4096;
    gate in_flight;
    // Extension ahead of appending writes (see file.hh). `size` is the end of the furthest write
    // (or the truncated size); `allocated` how far the file physically reaches; `extended` says
    // the two differ because of our fallocate, so size() and close() must use `size`.
    std::uint64_t ahead_step = 0;
    std::uint64_t size = 0;
    std::uint64_t allocated = 0;
    bool extended = false;
    semaphore extend_lock{1};

    ~file_impl() {
        if (fd >= 0) {
            io::io_log.warn("{}: file destroyed without close(); closing its descriptor", path);
            ::close(fd);
        }
    }

    void check_open(const char* op) const {
        if (closed) {
            throw std::system_error(EBADF, std::system_category(), fmt::format("{} {}: the file is closed", op, path));
        }
    }

    void check_aligned(const char* op, std::uint64_t pos, const void* buf, std::size_t len) const {
        auto bad = [&](const char* what, std::uint64_t v) {
            return std::invalid_argument(fmt::format("{} {}: {} {:#x} is not a multiple of the file's DMA alignment {} "
                                                     "(use allocate_aligned_buffer and aligned offsets and lengths)",
                                                     op, path, what, v, align));
        };
        if (pos % align) {
            throw bad("offset", pos);
        }
        if (reinterpret_cast<std::uintptr_t>(buf) % align) {
            throw bad("buffer address", reinterpret_cast<std::uintptr_t>(buf));
        }
        if (len % align) {
            throw bad("length", len);
        }
    }

    std::system_error with_path(const std::system_error& e, const char* op, std::uint64_t pos) const {
        return std::system_error(e.code(), fmt::format("{} {} at offset {}", op, path, pos));
    }

    future<> extend(std::uint64_t end);
};

future<> file_impl::extend(std::uint64_t end) {
    auto units = co_await get_units(extend_lock, 1);
    if (end <= allocated || ahead_step == 0) {
        co_return;
    }
    std::uint64_t from = allocated;
    std::uint64_t to = std::max(end, from + ahead_step);
    to = (to + align - 1) / align * align;
    int f = fd;
    int err = co_await engine().run_blocking([f, from, to]() noexcept {
        return ::fallocate(f, 0, off_t(from), off_t(to - from)) == 0 ? 0 : errno;
    });
    if (err == 0) {
        allocated = to;
        extended = true;
        co_return;
    }
    // EOPNOTSUPP, ENOSPC, ...: the writes extend the file themselves from now on (and report
    // ENOSPC if it comes to that). A failed fallocate may still have extended the file part way.
    ahead_step = 0;
    io::io_log.debug("{}: fallocate ahead of writes failed ({}); writes extend the file directly", path,
                     std::strerror(err));
    auto st = co_await engine().run_blocking([f]() noexcept {
        struct stat s {};
        return ::fstat(f, &s) == 0 ? std::uint64_t(s.st_size) : 0;
    });
    if (st > size) {
        allocated = st;
        extended = true;
    }
}

}  // namespace internal

namespace {

std::system_error errno_error(int err, std::string_view op, std::string_view path) {
    return std::system_error(err, std::system_category(), fmt::format("{} {}", op, path));
}

std::mutex g_warned_mutex;
std::set<dev_t> g_warned_devices;

std::uint64_t iov_bytes(const std::vector<iovec>& iov) {
    std::uint64_t n = 0;
    for (auto& v : iov) {
        n += v.iov_len;
    }
    return n;
}

}  // namespace

file::file(lw_shared_ptr<internal::file_impl>&& impl) noexcept : _impl(std::move(impl)) {}
file::file() noexcept = default;
file::file(const file&) noexcept = default;
file::file(file&&) noexcept = default;
file& file::operator=(const file&) noexcept = default;
file& file::operator=(file&&) noexcept = default;
file::~file() = default;

const std::string& file::path() const noexcept { return _impl->path; }
std::size_t file::dma_alignment() const noexcept { return _impl->align; }
bool file::is_buffered() const noexcept { return _impl->buffered; }

future<std::size_t> file::dma_read(std::uint64_t pos, char* buf, std::size_t len, io_priority_class pc) {
    auto impl = _impl;
    impl->check_open("read");
    impl->check_aligned("read", pos, buf, len);
    gate::holder h(impl->in_flight);
    std::size_t n;
    try {
        n = co_await io::internal::local_io_queue().submit(io::internal::io_op::read, impl->buffered, impl->fd, pos, buf,
                                                          len, len, pc);
    } catch (const std::system_error& e) {
        throw impl->with_path(e, "read", pos);
    }
    if (impl->extended) {
        // Past the written end lies preallocated space, which reads as zeros: not file data.
        n = pos >= impl->size ? 0 : std::min<std::uint64_t>(n, impl->size - pos);
    }
    co_return n;
}

future<std::size_t> file::dma_read(std::uint64_t pos, std::vector<iovec> iov, io_priority_class pc) {
    auto impl = _impl;
    impl->check_open("read");
    for (auto& v : iov) {
        impl->check_aligned("read", pos, v.iov_base, v.iov_len);
    }
    auto bytes = iov_bytes(iov);
    gate::holder h(impl->in_flight);
    std::size_t n;
    try {
        n = co_await io::internal::local_io_queue().submit(io::internal::io_op::readv, impl->buffered, impl->fd, pos,
                                                          iov.data(), iov.size(), bytes, pc);
    } catch (const std::system_error& e) {
        throw impl->with_path(e, "read", pos);
    }
    if (impl->extended) {
        n = pos >= impl->size ? 0 : std::min<std::uint64_t>(n, impl->size - pos);
    }
    co_return n;
}

future<temporary_buffer<char>> file::dma_read(std::uint64_t pos, std::size_t len, io_priority_class pc) {
    std::size_t a = _impl->align;
    std::uint64_t start = pos / a * a;
    std::uint64_t end = (pos + len + a - 1) / a * a;
    auto buf = allocate_aligned_buffer(std::size_t(end - start), a);
    auto self = *this;  // keeps the file open until the read is done
    std::size_t n = co_await self.dma_read(start, buf.get_write(), buf.size(), pc);
    std::size_t skip = std::size_t(pos - start);
    if (n <= skip) {
        co_return temporary_buffer<char>();
    }
    buf.trim(std::min(n, skip + len));
    buf.trim_front(skip);
    co_return buf;
}

future<std::size_t> file::dma_write(std::uint64_t pos, const char* buf, std::size_t len, io_priority_class pc) {
    auto impl = _impl;
    impl->check_open("write");
    impl->check_aligned("write", pos, buf, len);
    gate::holder h(impl->in_flight);
    if (impl->ahead_step && pos + len > impl->allocated) {
        co_await impl->extend(pos + len);
    }
    std::size_t n;
    try {
        n = co_await io::internal::local_io_queue().submit(io::internal::io_op::write, impl->buffered, impl->fd, pos,
                                                          const_cast<char*>(buf), len, len, pc);
    } catch (const std::system_error& e) {
        throw impl->with_path(e, "write", pos);
    }
    impl->size = std::max(impl->size, pos + n);
    impl->allocated = std::max(impl->allocated, pos + n);
    co_return n;
}

future<std::size_t> file::dma_write(std::uint64_t pos, std::vector<iovec> iov, io_priority_class pc) {
    auto impl = _impl;
    impl->check_open("write");
    for (auto& v : iov) {
        impl->check_aligned("write", pos, v.iov_base, v.iov_len);
    }
    auto bytes = iov_bytes(iov);
    gate::holder h(impl->in_flight);
    if (impl->ahead_step && pos + bytes > impl->allocated) {
        co_await impl->extend(pos + bytes);
    }
    std::size_t n;
    try {
        n = co_await io::internal::local_io_queue().submit(io::internal::io_op::writev, impl->buffered, impl->fd, pos,
                                                          iov.data(), iov.size(), bytes, pc);
    } catch (const std::system_error& e) {
        throw impl->with_path(e, "write", pos);
    }
    impl->size = std::max(impl->size, pos + n);
    impl->allocated = std::max(impl->allocated, pos + n);
    co_return n;
}

future<struct stat> file::stat() {
    auto impl = _impl;
    impl->check_open("stat");
    gate::holder h(impl->in_flight);
    int f = impl->fd;
    auto [err, st] = co_await engine().run_blocking([f]() noexcept {
        struct stat s {};
        int e = ::fstat(f, &s) == 0 ? 0 : errno;
        return std::pair<int, struct stat>(e, s);
    });
    if (err) {
        throw errno_error(err, "stat", impl->path);
    }
    co_return st;
}

future<std::uint64_t> file::size() {
    auto impl = _impl;
    impl->check_open("size");
    if (impl->extended) {
        co_return impl->size;
    }
    auto self = *this;
    struct stat st = co_await self.stat();
    co_return std::uint64_t(st.st_size);
}

future<> file::truncate(std::uint64_t length) {
    auto impl = _impl;
    impl->check_open("truncate");
    gate::holder h(impl->in_flight);
    // Not while an extension is being allocated: it would move the size back out.
    auto units = co_await get_units(impl->extend_lock, 1);
    int f = impl->fd;
    int err = co_await engine().run_blocking([f, length]() noexcept {
        return ::ftruncate(f, off_t(length)) == 0 ? 0 : errno;
    });
    if (err) {
        throw errno_error(err, "truncate", impl->path);
    }
    impl->size = length;
    impl->allocated = length;
}

future<> file::allocate(std::uint64_t pos, std::uint64_t len) {
    auto impl = _impl;
    impl->check_open("allocate");
    gate::holder h(impl->in_flight);
    int f = impl->fd;
    int err = co_await engine().run_blocking([f, pos, len]() noexcept {
        return ::fallocate(f, FALLOC_FL_KEEP_SIZE, off_t(pos), off_t(len)) == 0 ? 0 : errno;
    });
    if (err) {
        throw errno_error(err, "allocate", impl->path);
    }
}

future<> file::flush() {
    auto impl = _impl;
    impl->check_open("flush");
    gate::holder h(impl->in_flight);
    int f = impl->fd;
    int err = co_await engine().run_blocking([f]() noexcept { return ::fdatasync(f) == 0 ? 0 : errno; });
    if (err) {
        throw errno_error(err, "flush", impl->path);
    }
}

future<> file::close() {
    auto impl = _impl;
    if (!impl || impl->closed) {
        co_return;
    }
    impl->closed = true;
    co_await impl->in_flight.close();
    int f = std::exchange(impl->fd, -1);
    bool trim = impl->extended;
    std::uint64_t size = impl->size;
    auto [trim_err, close_err] = co_await engine().run_blocking([f, trim, size]() noexcept {
        int t = 0;
        if (trim && ::ftruncate(f, off_t(size)) != 0) {
            t = errno;
        }
        int c = ::close(f) == 0 ? 0 : errno;
        return std::pair<int, int>(t, c);
    });
    if (trim_err) {
        throw errno_error(trim_err, "close (trimming preallocated space of)", impl->path);
    }
    if (close_err) {
        throw errno_error(close_err, "close", impl->path);
    }
}

future<file> open_file_dma(std::string_view path_view, open_flags flags, file_open_options options) {
    std::string path(path_view);
    struct opened {
        int fd = -1;
        int err = 0;
        bool buffered = false;
        std::size_t align = 4096;
        std::uint64_t size = 0;
        dev_t dev = 0;
    };
    int oflags = int(flags) | O_CLOEXEC;
    mode_t perms = options.create_permissions;
    auto o = co_await engine().run_blocking([&path, oflags, perms]() noexcept {
        opened r;
        // Opened without O_DIRECT, then switched to it: on a filesystem without O_DIRECT the open
        // itself would fail after creating the file, and a retry with O_EXCL would then fail.
        r.fd = ::open(path.c_str(), oflags, perms);
        if (r.fd < 0) {
            r.err = errno;
            return r;
        }
        struct stat st {};
        if (::fstat(r.fd, &st) != 0 || S_ISDIR(st.st_mode)) {
            r.err = S_ISDIR(st.st_mode) ? EISDIR : errno;
            ::close(r.fd);
            r.fd = -1;
            return r;
        }
        r.size = std::uint64_t(st.st_size);
        r.dev = st.st_dev;
        int fl = ::fcntl(r.fd, F_GETFL);
        if (fl < 0 || ::fcntl(r.fd, F_SETFL, fl | O_DIRECT) != 0) {
            r.buffered = true;
            return r;
        }
        struct statx sx {};
        if (::statx(r.fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN) &&
            sx.stx_dio_offset_align) {
            r.align = std::max<std::size_t>(sx.stx_dio_offset_align, sx.stx_dio_mem_align);
        }
        return r;
    });
    if (o.err) {
        throw errno_error(o.err, "open", path);
    }
    if (o.buffered) {
        std::lock_guard lk(g_warned_mutex);
        if (g_warned_devices.insert(o.dev).second) {
            io::io_log.warn("{}: this filesystem does not support O_DIRECT (tmpfs?); its files use buffered I/O in "
                            "the syscall pool (slower, and through the page cache)",
                            path);
        }
    }
    auto impl = make_lw_shared<internal::file_impl>();
    impl->path = std::move(path);
    impl->fd = o.fd;
    impl->buffered = o.buffered;
    impl->align = o.align;
    int acc = oflags & O_ACCMODE;
    impl->writable = acc == O_WRONLY || acc == O_RDWR;
    impl->size = o.size;
    impl->allocated = o.size;
    // The page cache absorbs a buffered file's appends; only direct I/O needs extension ahead.
    impl->ahead_step = impl->writable && !impl->buffered ? options.extent_allocation_size : 0;
    co_return file(std::move(impl));
}

temporary_buffer<char> allocate_aligned_buffer(std::size_t size, std::size_t alignment) {
    return io::internal::allocate_dma_buffer(size, alignment);
}

future<std::vector<directory_entry>> list_directory(std::string_view path_view) {
    std::string path(path_view);
    auto [err, entries] = co_await engine().run_blocking([&path]() {
        std::vector<directory_entry> r;
        DIR* d = ::opendir(path.c_str());
        if (!d) {
            return std::pair<int, std::vector<directory_entry>>(errno, {});
        }
        errno = 0;
        while (auto* e = ::readdir(d)) {
            std::string_view n = e->d_name;
            if (n == "." || n == "..") {
                continue;
            }
            directory_entry de;
            de.name = std::string(n);
            switch (e->d_type) {
            case DT_REG: de.type = directory_entry_type::regular; break;
            case DT_DIR: de.type = directory_entry_type::directory; break;
            case DT_LNK: de.type = directory_entry_type::link; break;
            case DT_UNKNOWN: de.type = directory_entry_type::unknown; break;
            default: de.type = directory_entry_type::other; break;
            }
            r.push_back(std::move(de));
        }
        int e = errno;
        ::closedir(d);
        return std::pair<int, std::vector<directory_entry>>(e, std::move(r));
    });
    if (err) {
        throw errno_error(err, "list_directory", path);
    }
    co_return std::move(entries);
}

future<> remove_file(std::string_view path_view) {
    std::string path(path_view);
    int err = co_await engine().run_blocking([&path]() noexcept { return ::unlink(path.c_str()) == 0 ? 0 : errno; });
    if (err) {
        throw errno_error(err, "remove_file", path);
    }
}

future<> rename_file(std::string_view old_view, std::string_view new_view) {
    std::string from(old_view), to(new_view);
    int err = co_await engine().run_blocking(
        [&from, &to]() noexcept { return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno; });
    if (err) {
        throw errno_error(err, "rename_file", fmt::format("{} -> {}", from, to));
    }
}

future<> make_directory(std::string_view path_view, mode_t permissions) {
    std::string path(path_view);
    int err = co_await engine().run_blocking(
        [&path, permissions]() noexcept { return ::mkdir(path.c_str(), permissions) == 0 ? 0 : errno; });
    if (err) {
        throw errno_error(err, "make_directory", path);
    }
}

future<bool> file_exists(std::string_view path_view) {
    std::string path(path_view);
    int err = co_await engine().run_blocking([&path]() noexcept {
        struct stat st {};
        return ::stat(path.c_str(), &st) == 0 ? 0 : errno;
    });
    if (err == ENOENT) {
        co_return false;
    }
    if (err) {
        throw errno_error(err, "file_exists", path);
    }
    co_return true;
}

future<> sync_directory(std::string_view path_view) {
    std::string path(path_view);
    int err = co_await engine().run_blocking([&path]() noexcept {
        int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            return errno;
        }
        int e = ::fsync(fd) == 0 ? 0 : errno;
        ::close(fd);
        return e;
    });
    if (err) {
        throw errno_error(err, "sync_directory", path);
    }
}

}  // namespace reef
