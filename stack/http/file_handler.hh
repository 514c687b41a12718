// Static files for the HTTP server: GET and HEAD of files under a root directory, read through
// the runtime's file streams (runtime/io: O_DIRECT where the filesystem allows, the buffered
// fallback elsewhere; never a blocking read on the reactor).
//
//   r.add("GET", "/static/{path*}", http::make_file_handler("/srv/www"));
//
// - Content-Type from the file extension (content_type_for).
// - ETag: a strong validator from size and modification time; If-None-Match (a list, or "*")
//   answers 304 without a body.
// - Range (RFC 9110 14): one range, "bytes=a-b", "bytes=a-" or "bytes=-n", answers 206 with
//   Content-Range; an unsatisfiable range answers 416 with "Content-Range: bytes */size";
//   several ranges or other units are ignored (the whole file, 200), as the RFC allows.
// - A directory serves its index.html. The path is the route's `param` (default "path"); a path
//   with a ".." segment or a NUL byte, or one that names nothing, answers 404 — nothing outside
//   the root is ever opened.
// - Small files (<= cache_max_file) are cached per shard and revalidated (stat in the syscall
//   pool) at most every `revalidate` interval, so a hot small file costs no system call per
//   request; larger files are streamed from disk for each request.
//
// Shard: the handler's cache belongs to the shard that made it: make one handler per shard (each
// shard builds its own router), never copy one to another shard.
#pragma once

#include "stack/http/server.hh"

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace reef::http {

struct file_handler_options {
    std::size_t cache_max_file = 256 * 1024;  ///< files up to this size are cached
    std::size_t cache_bytes = 64 << 20;       ///< per shard, all cached files together
    std::chrono::milliseconds revalidate{1000};
    std::string index = "index.html";
};

/// A handler serving files under `root` (see above). The route must have a parameter named
/// `param` ("{path*}" usually).
handler make_file_handler(std::string root, std::string param = "path", file_handler_options opts = {});

/// The media type for a file name by its extension ("application/octet-stream" when unknown).
std::string_view content_type_for(std::string_view name) noexcept;

/// Parse a Range header value against a resource of `size` bytes: the [first, last] byte range
/// (inclusive), or nullopt when the header asks for something this server ignores (several
/// ranges, other units, malformed: the whole resource is sent). `unsatisfiable` is set when the
/// one range lies beyond the end (416).
struct byte_range {
    std::uint64_t first = 0;
    std::uint64_t last = 0;
};
std::optional<byte_range> parse_range(std::string_view value, std::uint64_t size, bool& unsatisfiable) noexcept;

}  // namespace reef::http
