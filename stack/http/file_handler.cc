#include "stack/http/file_handler.hh"

#include "runtime/coroutine.hh"
#include "runtime/io/file.hh"
#include "runtime/io/file_stream.hh"
#include "runtime/reactor.hh"
#include "runtime/shared_ptr.hh"

#include <fmt/format.h>

#include <sys/stat.h>

#include <cerrno>
#include <charconv>
#include <list>
#include <unordered_map>

namespace reef::http {

std::string_view content_type_for(std::string_view name) noexcept {
    auto dot = name.rfind('.');
    auto slash = name.rfind('/');
    if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) {
        return "application/octet-stream";
    }
    std::string ext(name.substr(dot + 1));
    for (auto& c : ext) {
        c = char(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    static const std::pair<std::string_view, std::string_view> types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"csv", "text/csv; charset=utf-8"},
        {"xml", "application/xml"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"ico", "image/vnd.microsoft.icon"},
        {"wasm", "application/wasm"},
        {"pdf", "application/pdf"},
        {"zip", "application/zip"},
        {"gz", "application/gzip"},
        {"tar", "application/x-tar"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
        {"mp4", "video/mp4"},
        {"webm", "video/webm"},
        {"mp3", "audio/mpeg"},
    };
    for (auto& [e, t] : types) {
        if (ext == e) {
            return t;
        }
    }
    return "application/octet-stream";
}

std::optional<byte_range> parse_range(std::string_view v, std::uint64_t size, bool& unsatisfiable) noexcept {
    unsatisfiable = false;
    constexpr std::string_view unit = "bytes=";
    if (v.substr(0, unit.size()) != unit) {
        return std::nullopt;
    }
    v.remove_prefix(unit.size());
    if (v.find(',') != std::string_view::npos) {
        return std::nullopt;  // several ranges: send the whole resource (RFC 9110 14.2 allows it)
    }
    auto dash = v.find('-');
    if (dash == std::string_view::npos) {
        return std::nullopt;
    }
    auto num = [](std::string_view s, std::uint64_t& out) {
        if (s.empty() || s.size() > 19) {
            return false;
        }
        for (char c : s) {
            if (c < '0' || c > '9') {
                return false;
            }
        }
        return std::from_chars(s.data(), s.data() + s.size(), out).ec == std::errc();
    };
    std::string_view a = v.substr(0, dash), b = v.substr(dash + 1);
    byte_range r;
    if (a.empty()) {  // suffix: the last n bytes
        std::uint64_t n;
        if (!num(b, n)) {
            return std::nullopt;
        }
        if (n == 0 || size == 0) {
            unsatisfiable = true;
            return std::nullopt;
        }
        r.first = n >= size ? 0 : size - n;
        r.last = size - 1;
        return r;
    }
    if (!num(a, r.first)) {
        return std::nullopt;
    }
    if (b.empty()) {
        r.last = size ? size - 1 : 0;
    } else if (!num(b, r.last) || r.last < r.first) {
        return std::nullopt;
    }
    if (r.first >= size) {
        unsatisfiable = true;
        return std::nullopt;
    }
    r.last = std::min(r.last, size - 1);
    return r;
}

namespace {

struct file_info {
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;
    bool is_dir = false;
    std::string etag;
};

struct cached_file {
    file_info info;
    std::string data;
    std::chrono::steady_clock::time_point checked;
};

// One per shard per handler (the handler is copied into each shard's router).
struct file_cache {
    std::string root;
    std::string param;
    file_handler_options opts;
    std::unordered_map<std::string, cached_file> files;
    std::list<std::string> lru;  // front: most recently used
    std::size_t bytes = 0;
};

// stat(2) in the syscall pool: nullopt when nothing is there (or it cannot be read).
future<std::optional<file_info>> stat_path(std::string path) {
    return engine().run_blocking([path = std::move(path)]() -> std::optional<file_info> {
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) {
            return std::nullopt;
        }
        file_info fi;
        fi.size = std::uint64_t(st.st_size);
        fi.mtime_ns = std::int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
        fi.is_dir = S_ISDIR(st.st_mode);
        if (!S_ISREG(st.st_mode) && !fi.is_dir) {
            return std::nullopt;
        }
        fi.etag = fmt::format("\"{:x}-{:x}\"", fi.size, fi.mtime_ns);
        return fi;
    });
}

// The bytes [offset, offset + len) of a file through a file input stream.
future<std::string> read_range(std::string path, std::uint64_t offset, std::uint64_t len) {
    auto fo = open_file_dma(path, open_flags::ro);
    file f = co_await std::move(fo);
    auto in = make_file_input_stream(f, offset, len);
    std::string out;
    out.reserve(len);
    std::exception_ptr ex;
    try {
        while (out.size() < len) {
            auto b = co_await in.read();
            if (b.empty()) {
                break;
            }
            out.append(b.get(), b.size());
        }
    } catch (...) {
        ex = std::current_exception();
    }
    co_await in.close();
    co_await f.close();
    if (ex) {
        std::rethrow_exception(ex);
    }
    co_return out;
}

bool safe_relative(std::string_view p) noexcept {
    if (p.find('\0') != std::string_view::npos) {
        return false;
    }
    while (!p.empty()) {
        auto slash = p.find('/');
        auto seg = p.substr(0, slash);
        if (seg == "..") {
            return false;
        }
        if (slash == std::string_view::npos) {
            break;
        }
        p.remove_prefix(slash + 1);
    }
    return true;
}

bool etag_matches(std::string_view inm, std::string_view etag) noexcept {
    if (inm == "*") {
        return true;
    }
    while (!inm.empty()) {
        auto comma = inm.find(',');
        auto item = inm.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
            item.remove_prefix(1);
        }
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
            item.remove_suffix(1);
        }
        if (item.substr(0, 2) == "W/") {
            item.remove_prefix(2);  // weak comparison for If-None-Match (RFC 9110 13.1.2)
        }
        if (item == etag) {
            return true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        inm.remove_prefix(comma + 1);
    }
    return false;
}

future<reply> serve_file(lw_shared_ptr<file_cache> cache, request& req) {
    const std::string rel = req.param(cache->param);
    if (!safe_relative(rel)) {
        co_return reply::error(404, "no such file");
    }
    std::string path = cache->root;
    if (!rel.empty()) {
        path += '/';
        path += rel;
    }
    const auto now = std::chrono::steady_clock::now();
    cached_file* hit = nullptr;
    if (auto it = cache->files.find(path);
        it != cache->files.end() && now - it->second.checked < cache->opts.revalidate) {
        hit = &it->second;
    }
    file_info info;
    if (hit) {
        info = hit->info;
    } else {
        auto fs = stat_path(path);
        auto st = co_await std::move(fs);
        if (st && st->is_dir) {
            path += '/';
            path += cache->opts.index;
            auto fs2 = stat_path(path);
            st = co_await std::move(fs2);
            if (st && st->is_dir) {
                st.reset();
            }
        }
        if (!st) {
            cache->files.erase(path);
            co_return reply::error(404, "no such file");
        }
        info = *st;
        if (auto it = cache->files.find(path); it != cache->files.end()) {
            if (it->second.info.etag == info.etag) {
                it->second.checked = now;
                hit = &it->second;
            } else {
                cache->bytes -= it->second.data.size();
                cache->files.erase(it);
                cache->lru.remove(path);
            }
        }
    }
    reply rep(200, {}, std::string(content_type_for(path)));
    rep.headers.set("ETag", info.etag);
    rep.headers.set("Accept-Ranges", "bytes");
    if (auto inm = req.headers.get_combined("If-None-Match"); inm && etag_matches(*inm, info.etag)) {
        rep.status = 304;
        rep.headers.remove("Content-Type");
        co_return rep;
    }
    std::uint64_t first = 0, len = info.size;
    if (auto rh = req.headers.get("Range")) {
        bool unsat = false;
        auto r = parse_range(*rh, info.size, unsat);
        if (unsat) {
            reply bad = reply::error(416, "range beyond the end of the file");
            bad.headers.set("Content-Range", fmt::format("bytes */{}", info.size));
            co_return bad;
        }
        if (r) {
            rep.status = 206;
            first = r->first;
            len = r->last - r->first + 1;
            rep.headers.set("Content-Range", fmt::format("bytes {}-{}/{}", r->first, r->last, info.size));
        }
    }
    if (req.method == "HEAD") {
        rep.writer = [](output_stream<char>&) { return make_ready_future<>(); };
        rep.writer_length = len;
        co_return rep;
    }
    if (!hit && info.size <= cache->opts.cache_max_file) {
        auto rf = read_range(path, 0, info.size);
        std::string data = co_await std::move(rf);
        if (data.size() != info.size) {
            co_return reply::error(500, "the file changed while it was read");
        }
        if (cache->opts.cache_bytes >= data.size()) {
            while (cache->bytes + data.size() > cache->opts.cache_bytes && !cache->lru.empty()) {
                auto victim = cache->files.find(cache->lru.back());
                if (victim != cache->files.end()) {
                    cache->bytes -= victim->second.data.size();
                    cache->files.erase(victim);
                }
                cache->lru.pop_back();
            }
            cache->bytes += data.size();
            cache->lru.push_front(path);
            hit = &(cache->files[path] = cached_file{info, std::move(data), now});
        } else {
            rep.body = data.substr(first, len);
            co_return rep;
        }
    }
    if (hit) {
        rep.body = hit->data.substr(first, len);
        co_return rep;
    }
    // Large: stream from disk.
    rep.writer_length = len;
    rep.writer = [path, first, len](output_stream<char>& out) -> future<> {
        auto fo = open_file_dma(path, open_flags::ro);
        file f = co_await std::move(fo);
        auto in = make_file_input_stream(f, first, len);
        std::uint64_t sent = 0;
        std::exception_ptr ex;
        try {
            while (sent < len) {
                auto b = co_await in.read();
                if (b.empty()) {
                    break;
                }
                if (b.size() > len - sent) {
                    b.trim(len - sent);
                }
                sent += b.size();
                co_await out.write(std::move(b));
            }
        } catch (...) {
            ex = std::current_exception();
        }
        co_await in.close();
        co_await f.close();
        if (ex) {
            std::rethrow_exception(ex);
        }
        if (sent != len) {
            // Shorter than announced (truncated meanwhile): the connection must not be reused.
            throw std::runtime_error(fmt::format("{}: file shorter than its announced length", path));
        }
    };
    co_return rep;
}

}  // namespace

handler make_file_handler(std::string root, std::string param, file_handler_options opts) {
    while (root.size() > 1 && root.back() == '/') {
        root.pop_back();
    }
    auto cache = make_lw_shared<file_cache>();
    cache->root = std::move(root);
    cache->param = std::move(param);
    cache->opts = std::move(opts);
    return [cache](request& req) { return serve_file(cache, req); };
}

}  // namespace reef::http
