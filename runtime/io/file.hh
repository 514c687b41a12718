// Asynchronous files: direct I/O (O_DIRECT) that never blocks the reactor, through the shard's
// I/O scheduler (runtime/io/io_queue.hh) and the kernel backend chosen at start-up (io_uring or
// linux-aio), plus the filesystem calls that have no asynchronous form (they run in the syscall
// pool, see reactor::run_blocking).
//
// Direct I/O bypasses the page cache, so the kernel reads and writes the caller's memory: the
// buffer address, the file offset and the length must all be multiples of the file's
// dma_alignment() (the device's logical block size, usually 512 or 4096). allocate_aligned_buffer
// gives suitable memory. A misaligned request fails with std::invalid_argument saying which value
// is misaligned, never with a bare EINVAL from the kernel.
//
// Filesystems without O_DIRECT (tmpfs) still work: the file is opened buffered and its requests
// run in the syscall pool (a warning is logged once per file). They go through the same queue, so
// classes and statistics apply, and the same alignment rules hold so code behaves the same on any
// filesystem.
//
// Appending: a write that extends an O_DIRECT file can block the submitting thread in the kernel
// (ext4 and xfs update the size synchronously). Files opened for writing are therefore extended
// ahead of the writes with fallocate, in large steps, in the syscall pool; size() reports the size
// the writes reached, and close() trims the preallocated tail (see docs/disk-io.md).
//
// Contract, for everything here:
//  - Single-shard: a file is used on the shard that opened it (the queue and descriptor are the
//    shard's). Copies of a `file` share one open file.
//  - Errors travel in the returned future: std::system_error whose what() names the operation,
//    the path and the errno text ("open /data/x: No such file or directory"), or
//    std::invalid_argument for misaligned requests.
//  - Buffers passed by pointer must stay valid and untouched until the future resolves.
//  - close() waits for every request in flight on the file; no operation may start after it.
#pragma once

#include "runtime/future.hh"
#include "runtime/io/io_queue.hh"
#include "runtime/shared_ptr.hh"
#include "runtime/temporary_buffer.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace reef {

/// How to open a file: one of ro, wo, rw, combined with create, truncate or exclusive.
enum class open_flags : int {
    ro = O_RDONLY,
    wo = O_WRONLY,
    rw = O_RDWR,
    create = O_CREAT,
    truncate = O_TRUNC,
    exclusive = O_EXCL,
};
constexpr open_flags operator|(open_flags a, open_flags b) noexcept { return open_flags(int(a) | int(b)); }

struct file_open_options {
    /// Files opened for writing are extended with fallocate this far ahead of the writes (rounded
    /// to the alignment). 0 turns extension ahead off.
    std::uint64_t extent_allocation_size = 32 << 20;
    /// Permissions of a created file.
    mode_t create_permissions = 0644;
};

namespace internal {
class file_impl;
}

class file {
    lw_shared_ptr<internal::file_impl> _impl;

public:
    /// An unopened file; only assignment and destruction are allowed.
    file() noexcept;
    explicit file(lw_shared_ptr<internal::file_impl>&& impl) noexcept;
    file(const file&) noexcept;
    file(file&&) noexcept;
    file& operator=(const file&) noexcept;
    file& operator=(file&&) noexcept;
    ~file();

    explicit operator bool() const noexcept { return bool(_impl); }
    /// The path the file was opened with.
    const std::string& path() const noexcept;
    /// Alignment (bytes, a power of two) of buffer addresses, offsets and lengths for dma_*.
    std::size_t dma_alignment() const noexcept;
    /// True when the filesystem had no O_DIRECT and the file uses the buffered fallback.
    bool is_buffered() const noexcept;

    /// Read `len` bytes at `pos` into `buf` (all aligned). Resolves with the bytes read: fewer at
    /// end of file, 0 at or past it.
    future<std::size_t> dma_read(std::uint64_t pos, char* buf, std::size_t len, io_priority_class pc = {});
    /// Scatter read into `iov` (every base and length aligned); the vector is moved into the
    /// request and kept until it completes.
    future<std::size_t> dma_read(std::uint64_t pos, std::vector<iovec> iov, io_priority_class pc = {});
    /// Read `len` bytes at any `pos` (no alignment needed): reads the aligned range around them
    /// into a new buffer and returns exactly those bytes, fewer at end of file.
    future<temporary_buffer<char>> dma_read(std::uint64_t pos, std::size_t len, io_priority_class pc = {});

    /// Write `len` bytes from `buf` at `pos` (all aligned). Resolves with the bytes written, which
    /// is `len` unless the disk filled up part way (the next write then fails with ENOSPC).
    future<std::size_t> dma_write(std::uint64_t pos, const char* buf, std::size_t len, io_priority_class pc = {});
    /// Gather write from `iov` (every base and length aligned); the vector is kept until done.
    future<std::size_t> dma_write(std::uint64_t pos, std::vector<iovec> iov, io_priority_class pc = {});

    /// The file's size: for a file this handle extends ahead, the end of the furthest write (or
    /// the size set by truncate), not the preallocated size.
    future<std::uint64_t> size();
    /// fstat(2).
    future<struct stat> stat();
    /// Set the size (ftruncate(2)).
    future<> truncate(std::uint64_t length);
    /// Reserve disk space for [pos, pos + len) without changing the size
    /// (fallocate(FALLOC_FL_KEEP_SIZE)); fails with EOPNOTSUPP where the filesystem cannot.
    future<> allocate(std::uint64_t pos, std::uint64_t len);
    /// Make written data durable (fdatasync(2)).
    future<> flush();
    /// Wait for the requests in flight, trim preallocation, close the descriptor. Later
    /// operations on any copy of this file fail; a second close() does nothing.
    future<> close();
};

/// Open `path` for direct I/O on the calling shard. Fails with std::system_error naming the path
/// (missing file, permission denied, EISDIR for a directory). On a filesystem without O_DIRECT the
/// file is opened buffered (see the file comment), with a warning.
future<file> open_file_dma(std::string_view path, open_flags flags, file_open_options options = {});

/// A buffer suitable for direct I/O: `size` bytes at an address aligned to `alignment` (a power
/// of two; use file::dma_alignment()). Uninitialized. Buffers of 16 KiB and more come from a
/// per-thread pool of huge-page chunks, so the device sees few, large DMA segments (see
/// runtime/io/dma_buffer.hh); they may be freed on any thread. Throws std::invalid_argument for a
/// bad alignment, std::bad_alloc when memory is short.
temporary_buffer<char> allocate_aligned_buffer(std::size_t size, std::size_t alignment);

enum class directory_entry_type { unknown, regular, directory, link, other };
struct directory_entry {
    std::string name;
    directory_entry_type type = directory_entry_type::unknown;
};

// Filesystem calls, each run in the syscall pool; errors are std::system_error naming the path.
/// The entries of a directory ("." and ".." left out), in the order the filesystem gives them.
future<std::vector<directory_entry>> list_directory(std::string_view path);
/// unlink(2).
future<> remove_file(std::string_view path);
/// rename(2).
future<> rename_file(std::string_view old_path, std::string_view new_path);
/// mkdir(2); fails with EEXIST if it exists.
future<> make_directory(std::string_view path, mode_t permissions = 0755);
/// Whether anything exists at `path` (errors other than ENOENT fail the future).
future<bool> file_exists(std::string_view path);
/// fsync(2) a directory, so entries created, renamed or removed in it are durable.
future<> sync_directory(std::string_view path);

}  // namespace reef
