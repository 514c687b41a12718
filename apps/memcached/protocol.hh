// reef-memcached's protocols: parsing requests of the text, meta and binary protocols into
// commands, the per-key operations a command runs on the shards owning its keys, and formatting
// the replies. Nothing here does I/O or knows about shards: the server (server.hh) feeds bytes,
// runs each command's ops on their owner shards (execute_op) and asks for the reply.
//
// Parsing is incremental and bounded: parse_request() looks at the bytes received so far and
// either asks for more (need_more, with a bound on how much it will ever ask for before a line
// ends), or consumes one whole request (the command refers to the bytes it consumed: keep them
// until the reply is formatted), or swallows bytes of a rejected data block.
//
// Error replies are memcached 1.6's, byte for byte where clients look at them (ERROR,
// CLIENT_ERROR <reason>, SERVER_ERROR <reason>, binary status codes and messages).
#pragma once

#include "apps/memcached/storage.hh"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace reef::memcached {

enum class op_kind : std::uint8_t { get, store, arith, remove, touch, peek };

/// One key's operation, run by execute_op() on the key's shard. Views refer to the request's
/// bytes (local execution); make_owned() copies them in before the op travels to another shard.
struct op {
    op_kind kind = op_kind::get;
    std::string_view key;
    std::uint64_t hash = 0;
    // get
    bool want_value = true;
    std::optional<std::uint32_t> touch_expiry;  ///< gat/mg T: the new absolute expiry
    bool vivify = false;                        ///< mg N: create an empty item on a miss
    // store
    store_mode mode = store_mode::set;
    std::uint32_t flags = 0;
    std::uint32_t expiry = 0;  ///< absolute (to_expiry); also touch's, ma N's
    std::string_view value;
    std::uint64_t compare_cas = 0;
    std::uint64_t explicit_cas = 0;
    // arith
    bool incr = true;
    std::uint64_t delta = 0;
    bool autoviv = false;
    std::uint64_t initial = 0;

    bool meta = false;  ///< a meta command: arith/store also report the item (for return flags)
    /// Set internally by the text parser: a set whose data block was refused as too large (the
    /// old item goes, as memcached does, and the reply is SERVER_ERROR).
    bool refused_too_large = false;

    std::string owned_key, owned_value;
    /// Copy key and value into owned_key/owned_value and point the views at them (before the op
    /// travels to another shard). After the op object moved, call rebind().
    void make_owned();
    /// Point key/value at owned_key/owned_value again (after a move: short strings move their bytes).
    void rebind() noexcept {
        key = owned_key;
        value = owned_value;
    }
};

struct op_result {
    std::optional<item_info> item;  ///< get/peek hit (and arith/store: nothing)
    store_result stored;
    arith_result arith;
    delete_status deleted = delete_status::not_found;
    bool touched = false;
    bool vivified = false;  ///< mg N created the item (the client "won")
    std::uint32_t now = 0;  ///< the owner's clock when it ran (meta t and l flags)
};

/// Run `o` on this shard's cache (the owner of o.key).
op_result execute_op(cache_shard& cache, const op& o, std::uint32_t now);
/// The same into `r`, reusing its storage (a get that hits writes its value over the previous one's).
void execute_op(cache_shard& cache, const op& o, std::uint32_t now, op_result& r);

/// What a command asks the server to do.
enum class cmd_kind : std::uint8_t {
    keyed,      ///< run ops, then format_reply()
    reply,      ///< just send `immediate` (an error, a fixed answer)
    flush_all,  ///< flush every shard (after `number` seconds when > 0), then reply
    stats,      ///< the stats of `arg`, gathered over shards
    verbosity,
    version,
    quit,      ///< send `immediate` (if any), then close
    noop,      ///< binary noop / meta mn: reply once everything before it is answered
    memlimit,  ///< cache_memlimit: set -m to `number` MiB on every shard, then OK
};

enum class proto : std::uint8_t { text, meta, binary };

/// A parsed request.
struct command {
    cmd_kind kind = cmd_kind::reply;
    proto protocol = proto::text;
    std::string_view name;  ///< the command word ("get", "ms"...), or the binary opcode's name
    std::vector<op> ops;
    bool noreply = false;
    bool with_cas = false;     ///< gets/gats: VALUE lines carry the cas
    bool omit_end = false;     ///< text get answered in parts: no END after this part
    std::int64_t number = 0;   ///< flush delay, verbosity level
    std::string arg;           ///< stats argument
    std::string immediate;     ///< kind reply/quit: the bytes to send
    bool close_after = false;  ///< close the connection after the reply (memcached does for some errors)
    // meta: the return flags as requested ("v", "k", "O123"...), in order.
    std::vector<std::string_view> meta_flags;
    bool meta_quiet = false;
    bool meta_base64 = false;
    std::string decoded_key;  ///< meta b: the decoded key (ops[0].key points here)
    // binary
    std::uint8_t opcode = 0;
    std::uint32_t opaque = 0;  ///< as received (network order)
    bool quiet = false;

    void clear() noexcept;
};

struct parse_limits {
    std::size_t max_item_size = 1024 * 1024;  ///< -I: larger data blocks are refused and swallowed
    std::size_t max_line = 2048;              ///< a command line other than get/gets/gat(s)
    std::size_t max_get_line = 256 * 1024;    ///< a get line (many keys)
    std::uint32_t now = 2;                    ///< server time (for expiries)
    std::int64_t start_unix = 0;              ///< server_clock::start_unix()
};

enum class parse_status : std::uint8_t {
    need_more,  ///< an incomplete request: call again with more bytes
    done,       ///< `consumed` bytes form one request, described by the command
    swallow,    ///< reply with the command's immediate, consume `consumed`, then drop `swallow` more bytes
};

struct parse_result {
    parse_status status = parse_status::need_more;
    std::size_t consumed = 0;
    std::uint64_t swallow = 0;
};

/// Parse one request at the start of `buf` (text, meta or binary, chosen by its first byte).
/// Never reads beyond buf; a request line longer than the limits with no newline yet gives
/// a CLIENT_ERROR reply that closes the connection (so memory stays bounded).
parse_result parse_request(std::string_view buf, command& c, const parse_limits& lim);

/// Append the reply of a keyed command to `out`, given each op's result (same order as c.ops).
void format_reply(const command& c, const std::vector<op_result>& results, std::string& out);

/// One stat name/value for format_stats.
struct stat_line {
    std::string name;
    std::string value;
};
/// Append `stats` as the command's protocol wants them (text: STAT lines then END; binary: one
/// packet per stat then the empty terminator).
void format_stats(const command& c, const std::vector<stat_line>& stats, std::string& out);
/// Append the reply to a stats request for an unknown group (binary: status "Not found").
void format_stat_error(const command& c, std::string& out);
/// Append the plain success reply of a non-keyed command (flush_all: OK; verbosity: OK; version:
/// VERSION ...; noop: binary noop response / MN), unless noreply or quiet.
void format_simple(const command& c, std::string& out);

/// The version string reef-memcached reports.
constexpr std::string_view version_string = "1.6.18-reef";

/// Whether a key is acceptable: 1..250 bytes (as memcached: control characters are allowed; the
/// text tokenizer already splits on spaces).
bool valid_key(std::string_view key) noexcept;

}  // namespace reef::memcached
