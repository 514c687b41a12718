#include "apps/memcached/server.hh"

#include "runtime/coroutine.hh"
#include "runtime/future_util.hh"
#include "runtime/log.hh"
#include "runtime/smp.hh"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <exception>
#include <fmt/format.h>

namespace reef::memcached {

namespace {

logger mlog("memcached");

// memcached's UDP datagrams: an 8-byte frame header, then at most this much reply data.
constexpr std::size_t udp_header_len = 8;
constexpr std::size_t udp_max_payload = 1400 - udp_header_len;
// A reply buffer larger than this is written out before the next request is handled.
constexpr std::size_t write_threshold = 256 * 1024;
// Buckets the sweep examines per tick (about 1 µs each when empty).
constexpr std::size_t sweep_buckets_per_tick = 4096;
// Keys of one get run together; larger gets run (and are written out) in batches of this many.
constexpr std::size_t get_batch = 64;
// A reply that cannot be streamed (UDP) stops growing here.
constexpr std::size_t max_unstreamed_reply = 16u << 20;

server_clock g_clock;

}  // namespace

server_clock& clock() noexcept { return g_clock; }

server_stats& server_stats::operator+=(const server_stats& o) noexcept {
    curr_connections += o.curr_connections;
    total_connections += o.total_connections;
    rejected_connections += o.rejected_connections;
    bytes_read += o.bytes_read;
    bytes_written += o.bytes_written;
    udp_requests += o.udp_requests;
    udp_bad_frames += o.udp_bad_frames;
    udp_replies += o.udp_replies;
    udp_send_errors += o.udp_send_errors;
    forwarded_ops += o.forwarded_ops;
    cmd_meta += o.cmd_meta;
    cmd_binary += o.cmd_binary;
    cmd_text += o.cmd_text;
    fastpath_gets += o.fastpath_gets;
    fastpath_sets += o.fastpath_sets;
    return *this;
}

memcached_server::memcached_server(server_config cfg, sharded<memcached_server>* all)
    : _cfg(cfg), _all(all), _cache(cfg.memory_per_shard, cfg.max_item_size) {}

void memcached_server::listen(net::socket_address addr) {
    net::listen_options lo;
    lo.lb = net::load_balancing::per_shard;
    _listener = net::listen(addr, lo);
}

void memcached_server::bind_udp(net::socket_address addr) {
    net::udp_channel_options uo;
    uo.reuse_port = true;
    _udp = net::make_udp_channel(addr, uo);
}

std::optional<net::socket_address> memcached_server::udp_address() const {
    if (!_udp) {
        return std::nullopt;
    }
    return _udp.local_address();
}

void memcached_server::serve() {
    if (_listener) {
        (void)accept_loop(gate::holder(_gate));
    }
    if (_udp) {
        (void)udp_loop(gate::holder(_gate));
    }
    // Expired items are also freed lazily; the sweep returns the memory of those nobody asks for,
    // in small steps, in a group that yields to request handling.
    _sweep_timer.set_callback(_cfg.sweep_group, [this] { _cache.sweep(clock().now(), sweep_buckets_per_tick); });
    _sweep_timer.arm_periodic(std::chrono::seconds(1));
    register_metrics();
}

void memcached_server::register_metrics() {
    using namespace metrics;
    const auto& c = _cache.stats();
    const auto& s = _stats;
    _metrics.add_group(
        "memcached",
        {
            make_counter("get_hits_total", "Gets (and gats) that found their key", c.get_hits),
            make_counter("get_misses_total", "Gets that did not find their key", c.get_misses),
            make_counter("sets_total", "Storage commands (set, add, replace, append, prepend, cas)", c.cmd_set),
            make_counter("evictions_total", "Items the LRU dropped to make room", c.evictions),
            make_counter("reclaimed_total", "Expired or flushed items freed", c.reclaimed),
            make_gauge("items", "Items stored on this shard", c.curr_items),
            make_gauge("bytes", "Key and value bytes stored on this shard", c.bytes),
            make_gauge("connections", "Open TCP connections on this shard", s.curr_connections),
            make_counter("commands_total", "Requests by protocol", s.cmd_text, {{"protocol", "text"}}),
            make_counter("commands_total", "Requests by protocol", s.cmd_meta, {{"protocol", "meta"}}),
            make_counter("commands_total", "Requests by protocol", s.cmd_binary, {{"protocol", "binary"}}),
            make_counter("forwarded_ops_total", "Key operations sent to their owner shard", s.forwarded_ops),
            make_counter("udp_requests_total", "UDP requests taken by the stack's path", s.udp_requests),
            make_counter("udp_bad_frames_total", "UDP datagrams dropped for a bad frame header", s.udp_bad_frames),
            make_counter("fastpath_gets_total", "Gets answered by the UDP packet hook", s.fastpath_gets),
            make_counter("fastpath_sets_total", "Sets answered by the UDP packet hook", s.fastpath_sets),
            make_gauge("lsa_segments_in_use", "LSA segments holding items",
                       [this] { return double(_cache.region_statistics().segments_in_use); }),
            make_gauge("lsa_memory_limit_bytes", "This shard's share of -m",
                       [this] { return double(_cache.memory_limit()); }),
        });
}

future<> memcached_server::accept_loop(gate::holder h) {
    for (;;) {
        net::accept_result ar;
        std::exception_ptr accept_error;
        try {
            ar = co_await _listener.accept();
        } catch (...) {
            accept_error = std::current_exception();
        }
        if (accept_error) {
            if (_stopping) {
                co_return;
            }
            mlog.warn("accept on {}: {}", _listener.local_address(), exception_message(accept_error));
            co_await sleep(std::chrono::milliseconds(100));
            continue;
        }
        if (_stopping) {
            co_return;
        }
        (void)handle_connection(std::move(ar.connection), ar.remote_address, h);
    }
}

bool memcached_server::all_local(const command& c) const noexcept {
    const unsigned me = this_shard_id();
    for (auto& o : c.ops) {
        if (shard_of(o.hash, smp::count) != me) {
            return false;
        }
    }
    return true;
}

void memcached_server::run_local(command& c, std::vector<op_result>& results, std::uint32_t now) {
    // resize, not clear: the results already there keep their value strings for reuse.
    results.resize(c.ops.size());
    for (std::size_t i = 0; i < c.ops.size(); ++i) {
        execute_op(_cache, c.ops[i], now, results[i]);
    }
}

future<> memcached_server::run_ops(command& c, std::vector<op_result>& results) {
    if (all_local(c)) {
        run_local(c, results, clock().now());
        co_return;
    }
    results.clear();
    results.resize(c.ops.size());
    const unsigned me = this_shard_id();
    const std::uint32_t now = clock().now();
    // One message per remote shard with all its ops; local ops run meanwhile.
    std::vector<std::vector<std::size_t>> per_shard(smp::count);
    for (std::size_t i = 0; i < c.ops.size(); ++i) {
        per_shard[shard_of(c.ops[i].hash, smp::count)].push_back(i);
    }
    std::vector<future<>> pending;
    std::exception_ptr err;
    // The continuations below write into `results`: every one sent must be awaited before this
    // returns, even when a later step throws.
    try {
        for (unsigned s = 0; s < smp::count; ++s) {
            if (s == me || per_shard[s].empty()) {
                continue;
            }
            std::vector<op> batch;
            batch.reserve(per_shard[s].size());
            for (std::size_t i : per_shard[s]) {
                batch.push_back(c.ops[i]);
                batch.back().make_owned();
            }
            _stats.forwarded_ops += batch.size();
            auto* all = _all;
            auto f = smp::submit_to(s, [all, batch = std::move(batch)]() mutable {
                auto& cache = all->local().cache();
                const std::uint32_t t = clock().now();
                std::vector<op_result> rs;
                rs.reserve(batch.size());
                for (auto& o : batch) {
                    o.rebind();
                    rs.push_back(execute_op(cache, o, t));
                }
                return rs;
            });
            pending.push_back(f.then([&results, idx = std::move(per_shard[s])](std::vector<op_result> rs) {
                for (std::size_t k = 0; k < idx.size(); ++k) {
                    results[idx[k]] = std::move(rs[k]);
                }
            }));
        }
        for (std::size_t i : per_shard[me]) {
            results[i] = execute_op(_cache, c.ops[i], now);
        }
    } catch (...) {
        err = std::current_exception();
    }
    for (auto& f : pending) {
        try {
            co_await std::move(f);
        } catch (...) {
            err = std::current_exception();
        }
    }
    if (err) {
        std::rethrow_exception(err);
    }
}

future<bool> memcached_server::run_command(command& c, std::string& out, output_stream<char>* stream) {
    switch (c.protocol) {
    case proto::text: ++_stats.cmd_text; break;
    case proto::meta: ++_stats.cmd_meta; break;
    case proto::binary: ++_stats.cmd_binary; break;
    }
    switch (c.kind) {
    case cmd_kind::keyed: {
        std::vector<op_result> results;
        if (c.ops.size() <= get_batch) {
            auto f = run_ops(c, results);
            co_await std::move(f);
            format_reply(c, results, out);
            co_return true;
        }
        // A get of many keys: answered in batches, each written out (TCP) before the next runs, so
        // that a reply of many large values never sits in memory whole. Over UDP (no stream) the
        // reply is capped.
        std::vector<op> all_ops = std::move(c.ops);
        const std::size_t reply_start = out.size();
        for (std::size_t b = 0; b < all_ops.size(); b += get_batch) {
            const std::size_t e = std::min(all_ops.size(), b + get_batch);
            c.ops.assign(std::make_move_iterator(all_ops.begin() + std::ptrdiff_t(b)),
                         std::make_move_iterator(all_ops.begin() + std::ptrdiff_t(e)));
            c.omit_end = e < all_ops.size();
            auto f = run_ops(c, results);
            co_await std::move(f);
            format_reply(c, results, out);
            if (stream && out.size() >= write_threshold) {
                _stats.bytes_written += out.size();
                co_await stream->write(std::string_view(out));
                out.clear();
            } else if (!stream && out.size() - reply_start > max_unstreamed_reply) {
                out.resize(reply_start);
                out += "SERVER_ERROR out of memory writing get response\r\n";
                break;
            }
        }
        c.omit_end = false;
        c.ops.clear();
        co_return true;
    }
    case cmd_kind::reply: out += c.immediate; co_return !c.close_after;
    case cmd_kind::quit: out += c.immediate; co_return false;
    case cmd_kind::flush_all: {
        const std::int64_t delay = c.number;
        co_await _all->invoke_on_all([delay](memcached_server& s) { s.flush(delay); });
        format_simple(c, out);
        co_return true;
    }
    case cmd_kind::memlimit: {
        const std::size_t per_shard = (std::size_t(c.number) << 20) / smp::count;
        co_await _all->invoke_on_all([per_shard](memcached_server& s) { s.cache().set_memory_limit(per_shard); });
        format_simple(c, out);
        co_return true;
    }
    case cmd_kind::stats: {
        if (c.protocol == proto::text && (c.arg == "detail" || c.arg.starts_with("detail "))) {
            // Per-prefix statistics are not kept; the subcommands answer as memcached's do with
            // detail off.
            if (c.arg == "detail on" || c.arg == "detail off") {
                out += "OK\r\n";
            } else if (c.arg == "detail dump") {
                out += "END\r\n";
            } else {
                out += "CLIENT_ERROR usage: stats detail on|off|dump\r\n";
            }
            co_return true;
        }
        if (auto sp = c.arg.find(' '); sp != std::string::npos && c.protocol == proto::text) {
            c.arg.resize(sp);  // memcached ignores what follows the group name
        }
        if (c.arg == "reset") {
            co_await _all->invoke_on_all([](memcached_server& s) { s.reset_stats(); });
            if (c.protocol == proto::binary) {
                format_stats(c, {}, out);
            } else {
                out += "RESET\r\n";
            }
            co_return true;
        }
        auto lines = co_await gather_stats(c.arg);
        if (!lines) {
            if (c.protocol == proto::binary) {
                // Unknown stat group: "Not found", as memcached.
                format_stat_error(c, out);
            } else {
                out += "ERROR\r\n";
            }
            co_return true;
        }
        format_stats(c, *lines, out);
        co_return true;
    }
    case cmd_kind::verbosity:
    case cmd_kind::version:
    case cmd_kind::noop: format_simple(c, out); co_return true;
    }
    co_return true;
}

future<> memcached_server::handle_connection(net::connected_socket s, net::socket_address peer, gate::holder) {
    ++_stats.total_connections;
    if (_stats.curr_connections >= _cfg.max_connections) {
        // memcached's answer when -c is reached: an error line, then the connection closes.
        ++_stats.rejected_connections;
        auto out = s.output();
        try {
            co_await out.write(std::string_view("ERROR Too many open connections\r\n"));
            co_await out.close();
        } catch (...) {
        }
        co_return;
    }
    ++_stats.curr_connections;
    _live.insert(&s);

    auto in = s.input();
    auto out = s.output();
    // Requests are parsed where they lie: in the last buffer read (inbuf) when it holds whole
    // requests, which is the common case, else in rbuf, where a partial request is joined with
    // what follows. `data` is the one being parsed; rpos bytes of it are answered.
    temporary_buffer<char> inbuf;
    std::string rbuf, wbuf;
    std::string_view data;
    std::size_t rpos = 0;
    std::uint64_t swallow = 0;
    command cmd;
    parse_limits lim;
    lim.max_item_size = _cfg.max_item_size;
    lim.start_unix = clock().start_unix();
    bool open = true;
    bool protocol_known = false, binary = false;
    try {
        while (open) {
            // Answer every whole request received so far, in order.
            while (open) {
                if (swallow) {
                    std::size_t n = std::min<std::uint64_t>(swallow, data.size() - rpos);
                    rpos += n;
                    swallow -= n;
                    if (swallow) {
                        break;
                    }
                }
                std::string_view pending = data.substr(rpos);
                if (pending.empty()) {
                    break;
                }
                lim.now = clock().now();
                cmd.clear();
                // The first request decides the connection's protocol, as in memcached: on a
                // binary connection anything but the binary magic ends the connection.
                if (!protocol_known) {
                    binary = std::uint8_t(pending[0]) == 0x80;
                    protocol_known = true;
                } else if (binary && std::uint8_t(pending[0]) != 0x80) {
                    mlog.debug("connection from {}: bad binary magic {:#x}, closing", peer, std::uint8_t(pending[0]));
                    open = false;
                    break;
                }
                auto pr = parse_request(pending, cmd, lim);
                if (pr.status == parse_status::need_more) {
                    break;
                }
                if (cmd.kind == cmd_kind::keyed && cmd.ops.size() <= get_batch && all_local(cmd)) {
                    // The common case without a coroutine frame.
                    static thread_local std::vector<op_result> results;
                    run_local(cmd, results, lim.now);
                    format_reply(cmd, results, wbuf);
                    ++(cmd.protocol == proto::text   ? _stats.cmd_text
                       : cmd.protocol == proto::meta ? _stats.cmd_meta
                                                     : _stats.cmd_binary);
                } else {
                    auto f = run_command(cmd, wbuf, &out);
                    open = co_await std::move(f);
                }
                rpos += pr.consumed;
                swallow = pr.swallow;
                if (wbuf.size() >= write_threshold) {
                    _stats.bytes_written += wbuf.size();
                    co_await out.write(std::string_view(wbuf));
                    wbuf.clear();
                }
            }
            if (!open) {
                break;
            }
            // Let go of the last buffer read before reading again (a source may reuse its memory
            // when nobody holds it); a partial request left in it moves to rbuf.
            if (rpos == data.size()) {
                rbuf.clear();
                data = {};
            } else if (data.data() == rbuf.data()) {
                rbuf.erase(0, rpos);
                data = rbuf;
            } else {
                rbuf.assign(data.substr(rpos));
                data = rbuf;
            }
            rpos = 0;
            inbuf = temporary_buffer<char>();
            // Straight from the source: input_stream::read() adds a continuation per read (to note
            // end of stream, which this loop sees itself) and nothing is left buffered in `in`.
            auto rf = in.source().get();
            if (!wbuf.empty() && !rf.available()) {
                // Flush only when the input has nothing more right now: pipelined requests get
                // their replies in one send.
                std::exception_ptr flush_error;
                try {
                    _stats.bytes_written += wbuf.size();
                    co_await out.write(std::string_view(wbuf));
                    wbuf.clear();
                    co_await out.flush();
                } catch (...) {
                    flush_error = std::current_exception();
                }
                if (flush_error) {
                    s.shutdown_input();
                    try {
                        (void)co_await std::move(rf);
                    } catch (...) {
                    }
                    std::rethrow_exception(flush_error);
                }
            }
            temporary_buffer<char> buf = co_await std::move(rf);
            if (buf.empty()) {
                break;
            }
            _stats.bytes_read += buf.size();
            if (data.empty()) {
                if (swallow) {
                    std::size_t n = std::min<std::uint64_t>(swallow, buf.size());
                    swallow -= n;
                    buf.trim_front(n);
                }
                inbuf = std::move(buf);
                data = inbuf.view();
            } else {
                rbuf.append(buf.get(), buf.size());
                data = rbuf;
            }
        }
        if (!wbuf.empty()) {
            _stats.bytes_written += wbuf.size();
            co_await out.write(std::string_view(wbuf));
        }
        co_await out.close();
        open = true;  // closed cleanly
    } catch (...) {
        mlog.debug("connection from {}: {}", peer, exception_message(std::current_exception()));
        open = false;
    }
    if (!open) {
        try {
            co_await out.close();
        } catch (...) {
        }
    }
    try {
        co_await in.close();
    } catch (...) {
    }
    _live.erase(&s);
    --_stats.curr_connections;
}

future<> memcached_server::handle_datagram(net::datagram d) {
    // Linearize (requests are one datagram: at most 64 KiB).
    std::string req;
    req.reserve(d.data.len());
    for (auto& f : d.data.fragments()) {
        req.append(f.base, f.size);
    }
    _stats.bytes_read += req.size();
    auto be16 = [](const char* p) { return std::uint16_t((std::uint8_t(p[0]) << 8) | std::uint8_t(p[1])); };
    // memcached's frame header: request id, sequence number, datagram count, reserved. A request
    // must be a single datagram (0 of 1); anything else is dropped and counted.
    if (req.size() < udp_header_len || be16(req.data() + 2) != 0 || be16(req.data() + 4) != 1 || d.truncated) {
        ++_stats.udp_bad_frames;
        co_return;
    }
    ++_stats.udp_requests;
    const std::uint16_t request_id = be16(req.data());
    std::string_view body = std::string_view(req).substr(udp_header_len);
    std::string reply;
    command cmd;
    parse_limits lim;
    lim.max_item_size = _cfg.max_item_size;
    lim.start_unix = clock().start_unix();
    std::size_t pos = 0;
    while (pos < body.size()) {
        lim.now = clock().now();
        cmd.clear();
        auto pr = parse_request(body.substr(pos), cmd, lim);
        if (pr.status == parse_status::need_more) {
            // memcached answers an incomplete request in a datagram with an error.
            reply += "CLIENT_ERROR incomplete request\r\n";
            break;
        }
        auto f = run_command(cmd, reply);
        bool keep = co_await std::move(f);
        pos += pr.consumed;
        if (!keep || pr.status == parse_status::swallow) {
            break;
        }
    }
    if (reply.empty()) {
        co_return;
    }
    // Split into datagrams, each with its frame header (id, sequence, count).
    const std::size_t count = (reply.size() + udp_max_payload - 1) / udp_max_payload;
    if (count > 0xffff) {
        ++_stats.udp_send_errors;
        co_return;
    }
    for (std::size_t i = 0; i < count; ++i) {
        std::size_t off = i * udp_max_payload;
        std::size_t n = std::min(udp_max_payload, reply.size() - off);
        std::string dg;
        dg.reserve(udp_header_len + n);
        dg += char(request_id >> 8);
        dg += char(request_id & 0xff);
        dg += char(i >> 8);
        dg += char(i & 0xff);
        dg += char(count >> 8);
        dg += char(count & 0xff);
        dg += '\0';
        dg += '\0';
        dg.append(reply, off, n);
        _stats.bytes_written += dg.size();
        std::exception_ptr err;
        try {
            co_await _udp.send(d.src, std::string_view(dg));
            ++_stats.udp_replies;
        } catch (...) {
            err = std::current_exception();
        }
        if (err) {
            ++_stats.udp_send_errors;
            mlog.debug("UDP send to {}: {}", d.src, exception_message(err));
            co_return;
        }
    }
}

future<> memcached_server::udp_loop(gate::holder) {
    for (;;) {
        net::datagram d;
        try {
            d = co_await _udp.receive();
        } catch (...) {
            if (_stopping || _udp.is_closed()) {
                break;
            }
            mlog.debug("UDP receive: {}", exception_message(std::current_exception()));
            continue;
        }
        try {
            co_await handle_datagram(std::move(d));
        } catch (...) {
            mlog.debug("UDP request: {}", exception_message(std::current_exception()));
        }
    }
}

void memcached_server::flush(std::int64_t delay) {
    _flush_timer.cancel();
    if (delay <= 0) {
        _cache.flush_all();
        return;
    }
    _flush_timer.set_callback([this] { _cache.flush_all(); });
    _flush_timer.arm(std::chrono::seconds(delay));
}

void memcached_server::reset_stats() noexcept {
    auto& c = _cache.stats();
    const auto curr_items = c.curr_items, bytes = c.bytes;
    c = cache_stats();
    c.curr_items = curr_items;
    c.bytes = bytes;
    const auto curr_conns = _stats.curr_connections;
    _stats = server_stats();
    _stats.curr_connections = curr_conns;
}

shard_report memcached_server::report() const {
    shard_report r;
    r.cache = _cache.stats();
    r.server = _stats;
    r.region = _cache.region_statistics();
    r.memory_limit = _cache.memory_limit();
    return r;
}

future<std::optional<std::vector<stat_line>>> memcached_server::gather_stats(std::string arg) {
    shard_report total = co_await _all->map_reduce0([](memcached_server& s) { return s.report(); }, shard_report(),
                                                    [](shard_report a, const shard_report& b) {
                                                        a.cache += b.cache;
                                                        a.server += b.server;
                                                        a.region.segments_total += b.region.segments_total;
                                                        a.region.segments_in_use += b.region.segments_in_use;
                                                        a.region.segments_free += b.region.segments_free;
                                                        a.memory_limit += b.memory_limit;
                                                        return a;
                                                    });
    std::vector<stat_line> v;
    auto add = [&](std::string name, auto value) { v.push_back({std::move(name), fmt::format("{}", value)}); };
    const auto& c = total.cache;
    const auto& s = total.server;
    const std::uint32_t now = clock().now();
    if (arg.empty()) {
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        add("pid", ::getpid());
        add("uptime", now - 2);
        add("time", clock().start_unix() + now);
        add("version", version_string);
        add("pointer_size", sizeof(void*) * 8);
        add("rusage_user", fmt::format("{}.{:06}", ru.ru_utime.tv_sec, ru.ru_utime.tv_usec));
        add("rusage_system", fmt::format("{}.{:06}", ru.ru_stime.tv_sec, ru.ru_stime.tv_usec));
        add("max_connections", _cfg.total_connections);
        add("curr_connections", s.curr_connections);
        add("total_connections", s.total_connections);
        add("rejected_connections", s.rejected_connections);
        add("connection_structures", s.curr_connections);
        add("cmd_get", c.cmd_get);
        add("cmd_set", c.cmd_set);
        add("cmd_flush", c.cmd_flush / std::max(1u, smp::count));
        add("cmd_touch", c.cmd_touch);
        add("cmd_meta", s.cmd_meta);
        add("get_hits", c.get_hits);
        add("get_misses", c.get_misses);
        add("get_expired", c.get_expired);
        add("get_flushed", c.get_flushed);
        add("delete_misses", c.delete_misses);
        add("delete_hits", c.delete_hits);
        add("incr_misses", c.incr_misses);
        add("incr_hits", c.incr_hits);
        add("decr_misses", c.decr_misses);
        add("decr_hits", c.decr_hits);
        add("cas_misses", c.cas_misses);
        add("cas_hits", c.cas_hits);
        add("cas_badval", c.cas_badval);
        add("touch_hits", c.touch_hits);
        add("touch_misses", c.touch_misses);
        add("auth_cmds", 0);
        add("auth_errors", 0);
        add("bytes_read", s.bytes_read);
        add("bytes_written", s.bytes_written);
        add("limit_maxbytes", _cfg.total_memory);
        add("threads", smp::count);
        add("bytes", c.bytes);
        add("curr_items", c.curr_items);
        add("total_items", c.total_items);
        add("expired_unfetched", c.expired_unfetched);
        add("evicted_unfetched", c.evicted_unfetched);
        add("evictions", c.evictions);
        add("reclaimed", c.reclaimed);
        add("udp_requests", s.udp_requests);
        add("udp_bad_frames", s.udp_bad_frames);
        add("forwarded_ops", s.forwarded_ops);
        add("fastpath_gets", s.fastpath_gets);
        add("fastpath_sets", s.fastpath_sets);
        add("lsa_segments_in_use", total.region.segments_in_use);
        add("lsa_segments_total", total.region.segments_total);
        add("lsa_memory_limit", total.memory_limit);
        co_return v;
    }
    if (arg == "settings") {
        add("maxbytes", _cfg.total_memory);
        add("maxconns", _cfg.total_connections);
        add("item_size_max", _cfg.max_item_size);
        add("num_threads", smp::count);
        add("evictions", "on");
        add("cas_enabled", "yes");
        add("binding_protocol", "auto-negotiate");
        add("storage", "lsa");
        add("lsa_segment_size", lsa::region::segment_size);
        add("value_chunk_size", cache_shard::chunk_size);
        co_return v;
    }
    if (arg == "items") {
        // One LRU per shard and no slab classes: Reef's equivalent is a single class 1.
        add("items:1:number", c.curr_items);
        add("items:1:evicted", c.evictions);
        add("items:1:evicted_unfetched", c.evicted_unfetched);
        add("items:1:expired_unfetched", c.expired_unfetched);
        add("items:1:reclaimed", c.reclaimed);
        co_return v;
    }
    if (arg == "slabs") {
        // LSA segments in place of slab pages.
        add("1:chunk_size", lsa::region::object_alignment);
        add("1:total_pages", total.region.segments_total);
        add("1:used_pages", total.region.segments_in_use);
        add("1:free_pages", total.region.segments_free);
        add("active_slabs", 1);
        add("total_malloced", total.region.segments_total * lsa::region::segment_size);
        co_return v;
    }
    if (arg == "sizes" || arg == "conns") {
        co_return v;
    }
    co_return std::nullopt;
}

future<> memcached_server::stop() {
    if (_stopping) {
        co_return;
    }
    _stopping = true;
    _metrics.clear();
    _sweep_timer.cancel();
    _flush_timer.cancel();
    if (_listener) {
        _listener.abort_accept();
    }
    if (_udp) {
        _udp.shutdown_input();
    }
    for (auto* s : _live) {
        s->shutdown_input();
    }
    co_await _gate.close();
    if (_udp) {
        _udp.close();
    }
}

}  // namespace reef::memcached
