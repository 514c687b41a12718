// In-memory data sources and sinks: for tests, and for code that wants the stream interfaces over
// data it already holds (a request parsed from a packet, a response built up for later sending).
//
// Single-shard like every stream. A sink writes into an object the caller owns, which must outlive
// the sink (and so the output_stream built on it).
#pragma once

#include "runtime/iostream.hh"

#include <cstddef>
#include <string>
#include <vector>

namespace reef {

/// A source that returns `buffers` one by one, in order and without copying, then end of stream.
/// Empty buffers in the list are skipped (an empty buffer would mean end of stream).
data_source make_memory_data_source(std::vector<temporary_buffer<char>> buffers);

/// A sink that appends every byte put into it to `out` (copying). flush() and close() do nothing
/// more. buffer_size_hint() returns `size_hint`.
data_sink make_string_data_sink(std::string& out, std::size_t size_hint = 8192);

/// A sink that keeps the buffers themselves, in order, in `out` (no copying: the pointers are the
/// ones given to put(), so tests can check zero-copy paths). buffer_size_hint() returns `size_hint`.
data_sink make_buffer_vector_data_sink(std::vector<temporary_buffer<char>>& out, std::size_t size_hint = 8192);

}  // namespace reef
