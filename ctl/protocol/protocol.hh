// The control protocol shared by the dataplane agent, reefd and reefctl: JSON-RPC 2.0, one JSON
// object per line ("\n"-terminated, UTF-8), over unix stream sockets. docs/control-protocol.md
// lists every method with its parameters, result and errors.
//
// This library depends only on nlohmann-json and the standard library (never on the runtime, so
// reefd and reefctl can use it), and does no I/O: the line_reader frames bytes a caller read,
// the codec turns lines into requests/responses and back, and params_view validates parameters.
//
// Errors are reported as rpc_error (code + message naming the problem), which the servers turn
// into JSON-RPC error objects with make_error(). Every function here is thread-compatible
// (no shared state).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>

namespace reef::ctl {

using json = nlohmann::json;

/// The protocol version `reef.version` reports. A client may compare the major number.
inline constexpr std::string_view protocol_version = "1.0";
/// Default bound of one request or response line (without its "\n").
inline constexpr std::size_t default_max_line = std::size_t(1) << 20;

/// JSON-RPC 2.0's error codes, and Reef's own in the server range -32000..-32099.
namespace error_code {
inline constexpr int parse_error = -32700;        ///< the line is not JSON
inline constexpr int invalid_request = -32600;    ///< JSON, but not a JSON-RPC 2.0 request object
inline constexpr int method_not_found = -32601;   ///< no such method
inline constexpr int invalid_params = -32602;     ///< a parameter is missing, unknown or of a wrong type/range
inline constexpr int internal_error = -32603;     ///< the server failed unexpectedly
inline constexpr int request_too_large = -32001;  ///< the line exceeded the size bound
inline constexpr int not_found = -32002;          ///< a named object (dataplane, logger, group, port) does not exist
inline constexpr int unavailable = -32003;        ///< the target exists but cannot answer now (not running, no port)
inline constexpr int unsupported = -32004;        ///< the operation is not supported here (e.g. a device knob)
inline constexpr int timeout = -32005;            ///< the target did not answer in time
inline constexpr int conflict = -32006;           ///< the request conflicts with the current state (exists already)
inline constexpr int permission_denied = -32007;  ///< the peer may not use this socket (SO_PEERCRED check)
inline constexpr int failed = -32010;             ///< the operation was attempted and failed (message says why)
}  // namespace error_code

/// The name of a code ("parse error", "not found", ...), for messages; "error" if unknown.
std::string_view error_name(int code) noexcept;

/// An error to send back: a JSON-RPC code, a message naming the problem, optional data.
class rpc_error : public std::runtime_error {
    int _code;
    json _data;

public:
    rpc_error(int code, const std::string& message, json data = nullptr)
        : std::runtime_error(message), _code(code), _data(std::move(data)) {}
    int code() const noexcept { return _code; }
    const json& data() const noexcept { return _data; }
};

/// A parsed request. `id` is null for a notification (no "id" member: no response is sent).
struct request {
    json id;
    std::string method;
    json params;  ///< object, array or null when absent
    bool notification = false;
};

/// A request that could not be accepted: the error to send back and the id to send it with
/// (null when the id could not be read).
struct request_error {
    json id;
    rpc_error error;
};

/// Parse one line (without its "\n") as a JSON-RPC 2.0 request. Never throws for bad input:
/// returns request_error with parse_error (not JSON), or invalid_request (not an object, a batch
/// array — not supported —, "jsonrpc" not "2.0", "method" missing or not a string, "params" not
/// an object/array, "id" not a string/number/null).
std::variant<request, request_error> parse_request(std::string_view line);

/// A parsed response: exactly one of result or error is set.
struct response {
    json id;
    std::optional<json> result;
    std::optional<rpc_error> error;
};

/// Parse one line as a JSON-RPC 2.0 response. Throws rpc_error(parse_error) if it is not JSON,
/// rpc_error(invalid_request) if it is not a response object.
response parse_response(std::string_view line);

/// {"jsonrpc":"2.0","id":id,"method":method,"params":params} (params omitted when null).
json make_request(const json& id, std::string_view method, const json& params = nullptr);
/// {"jsonrpc":"2.0","id":id,"result":result}.
json make_result(const json& id, json result);
/// {"jsonrpc":"2.0","id":id,"error":{"code":...,"message":...[,"data":...]}}.
json make_error(const json& id, const rpc_error& e);
json make_error(const json& id, int code, const std::string& message, const json& data = nullptr);

/// One line of output: compact JSON (non-ASCII kept as UTF-8; invalid UTF-8 replaced, so this
/// never throws for strings from the outside) followed by "\n".
std::string to_line(const json& j);

/// Splits a byte stream into lines of at most `max_line` bytes (the "\n" is not part of the line;
/// a "\r" before it is dropped too). A longer line is skipped up to its "\n" and reported once as
/// too_long, so the connection stays usable.
class line_reader {
    std::string _buf;
    std::size_t _scan = 0;  // bytes of _buf already searched for "\n"
    std::size_t _max;
    bool _discarding = false;  // inside an oversized line, waiting for its end
    bool _report_too_long = false;

public:
    explicit line_reader(std::size_t max_line = default_max_line) : _max(max_line) {}

    enum class status { line, need_more, too_long };

    /// Append bytes read from the connection.
    void feed(std::string_view data);
    /// The next event: status::line with `out` set to the next complete line, status::too_long
    /// once per oversized line (as soon as it passes the bound), or status::need_more.
    status next(std::string& out);
    /// Bytes buffered and not yet returned (a partial line).
    std::size_t buffered() const noexcept { return _buf.size(); }
    std::size_t max_line() const noexcept { return _max; }
};

/// Typed access to a method's params with errors that name the method and the parameter.
/// params must be an object or absent (null): positional (array) params give invalid_params.
class params_view {
    const json* _p;
    std::string _method;
    static const json& empty_object();

    [[noreturn]] void bad_type(std::string_view name, std::string_view want, const json& got) const;
    [[noreturn]] void missing(std::string_view name) const;

public:
    /// Throws rpc_error(invalid_params) if `params` is neither an object nor null.
    params_view(const json& params, std::string_view method);

    bool has(std::string_view name) const;
    /// Throws rpc_error(invalid_params) naming any member not in `allowed`.
    void allow_only(std::initializer_list<std::string_view> allowed) const;

    /// The value of `name`; rpc_error(invalid_params) when missing or of another type.
    std::string string(std::string_view name) const;
    std::int64_t integer(std::string_view name, std::int64_t min = INT64_MIN, std::int64_t max = INT64_MAX) const;
    double number(std::string_view name, double min = -1e308, double max = 1e308) const;
    bool boolean(std::string_view name) const;
    const json& object(std::string_view name) const;
    const json& array(std::string_view name) const;
    /// Same, std::nullopt (or nullptr) when the member is missing or null.
    std::optional<std::string> opt_string(std::string_view name) const;
    std::optional<std::int64_t> opt_integer(std::string_view name, std::int64_t min = INT64_MIN,
                                            std::int64_t max = INT64_MAX) const;
    std::optional<double> opt_number(std::string_view name, double min = -1e308, double max = 1e308) const;
    std::optional<bool> opt_boolean(std::string_view name) const;
    const json* opt_object(std::string_view name) const;
    const json* opt_array(std::string_view name) const;
    /// Every member, for methods that take free-form keys.
    const json& raw() const noexcept { return *_p; }
};

/// The JSON type name of `j` for messages: "string", "integer", "number", "boolean", "object",
/// "array", "null".
std::string_view type_name(const json& j) noexcept;

}  // namespace reef::ctl
