// Streams over files: input_stream<char> with read-ahead and output_stream<char> with
// write-behind, on top of file::dma_read/dma_write (so they go through the I/O scheduler in the
// class given in the options). The streams take care of alignment: any offset, any length.
//
// Contract: the streams follow runtime/iostream.hh's (single shard, one operation at a time, close
// and wait before destroying). Each holds a copy of the `file`, so the file stays open while the
// stream exists.
#pragma once

#include "runtime/io/file.hh"
#include "runtime/iostream.hh"

#include <cstddef>
#include <cstdint>
#include <limits>

namespace reef {

struct file_input_stream_options {
    /// Bytes per read request (rounded up to the file's alignment).
    std::size_t buffer_size = 128 * 1024;
    /// Reads kept in flight beyond the one being consumed.
    unsigned read_ahead = 2;
    io_priority_class io_class;
};

/// Read [offset, offset + len) of `f` (fewer bytes if the file ends first). Read errors come out of
/// the stream's reads. Closing the stream waits for the reads in flight; it does not close `f`.
input_stream<char> make_file_input_stream(file f, std::uint64_t offset = 0,
                                          std::uint64_t len = std::numeric_limits<std::uint64_t>::max(),
                                          file_input_stream_options options = {});
input_stream<char> make_file_input_stream(file f, file_input_stream_options options);

struct file_output_stream_options {
    /// Bytes per write request (rounded up to the file's alignment).
    std::size_t buffer_size = 128 * 1024;
    /// Writes kept in flight while the writer fills the next buffer.
    unsigned write_behind = 2;
    io_priority_class io_class;
    /// close() makes the data durable with fdatasync before closing the file.
    bool sync_on_close = true;
};

/// Write `f` from offset 0. Full buffers are written in the background (up to write_behind at a
/// time; a writer further ahead waits). flush() writes the partial last block too (padded to the
/// alignment; it is rewritten when more data follows) and waits for every write. close() flushes,
/// sets the file's size to exactly the bytes written, optionally syncs, and closes `f`. A failed
/// write (e.g. ENOSPC) fails the stream's next operation.
output_stream<char> make_file_output_stream(file f, file_output_stream_options options = {});

}  // namespace reef
