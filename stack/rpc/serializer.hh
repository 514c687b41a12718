// The RPC serializer: how arguments, results and stream items become bytes (the format is
// specified in docs/rpc.md, "Values"). Everything is little-endian and self-delimiting; nothing
// carries type tags, so both ends must agree on the types (the verb's signature is the contract).
//
//   bool                  1 byte, 0 or 1 (anything else is a serialization_error)
//   integers, enums       their size in bytes, two's complement little-endian (enums by their
//                         underlying type); int/long/size_t are written with the width they have
//                         on the writer, so prefer the <cstdint> types in a verb's signature
//   float, double         IEEE 754 binary32/binary64 bits, little-endian
//   string, bytes         u32 length, then the bytes (std::string, temporary_buffer<char>)
//   vector<T>, list<T>    u32 count, then the elements
//   map, unordered_map    u32 count, then key, value pairs (in iteration order)
//   optional<T>           u8 0 (empty) or 1 followed by the value
//   pair, tuple           the members in order, nothing around them
//   user structs          the members their rpc_fields() names, in order (see rpc_struct)
//   rpc::sink/source      the stream id, u64 (stack/rpc/rpc.hh)
//
// User structs opt in with a member function returning a tuple of references (std::tie):
//
//     struct point {
//         std::int32_t x, y;
//         auto rpc_fields() { return std::tie(x, y); }
//     };
//
// Other types opt in by specializing rpc::serializer<T> with
//     static void write(output_buffer&, const T&);
//     static T read(input_buffer&);
//
// Reading never trusts the input: a length or count that runs past the end, a bool that is not
// 0/1 or an optional tag that is not 0/1 throws rpc::serialization_error (a server answers it with
// a remote error naming it and keeps the connection).
#pragma once

#include "runtime/temporary_buffer.hh"

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <list>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

static_assert(std::endian::native == std::endian::little, "the RPC serializer assumes a little-endian host");

namespace reef::rpc {

/// Malformed serialized data: too short, a bad tag, a length past the end.
class serialization_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A growable byte buffer that serializers append to. It keeps `headroom` bytes free at the front
/// so that a frame header can be written there without copying the payload.
class output_buffer {
    temporary_buffer<char> _buf;
    std::size_t _start = 0;  // first payload byte (after the headroom)
    std::size_t _end = 0;    // one past the last payload byte

    void grow(std::size_t need) {
        std::size_t cap = std::max<std::size_t>(_buf.size() * 2, _end + need);
        temporary_buffer<char> nb(std::max<std::size_t>(cap, 64));
        if (_end) {
            std::memcpy(nb.get_write(), _buf.get(), _end);
        }
        _buf = std::move(nb);
    }

public:
    explicit output_buffer(std::size_t headroom = 0, std::size_t reserve = 0)
        : _buf(headroom + std::max<std::size_t>(reserve, 64)), _start(headroom), _end(headroom) {}

    /// Append n bytes.
    void write(const void* p, std::size_t n) {
        if (_buf.size() - _end < n) {
            grow(n);
        }
        if (n) {
            std::memcpy(_buf.get_write() + _end, p, n);
        }
        _end += n;
    }
    /// Payload bytes written so far (the headroom not counted).
    std::size_t size() const noexcept { return _end - _start; }
    std::size_t headroom() const noexcept { return _start; }
    /// The payload.
    const char* data() const noexcept { return _buf.get() + _start; }
    /// The whole buffer, headroom included, as one temporary_buffer (the buffer is left empty).
    temporary_buffer<char> release() && noexcept {
        _buf.trim(_end);
        _start = _end = 0;
        return std::move(_buf);
    }
    /// The headroom, for the frame header.
    char* headroom_data() noexcept { return _buf.get_write(); }
};

/// A read cursor over serialized bytes; every read is bounds-checked.
class input_buffer {
    const char* _p;
    std::size_t _left;

public:
    input_buffer(const char* p, std::size_t n) noexcept : _p(p), _left(n) {}
    explicit input_buffer(std::string_view s) noexcept : _p(s.data()), _left(s.size()) {}

    /// Copy n bytes out; serialization_error if fewer are left.
    void read(void* out, std::size_t n) {
        need(n);
        if (n) {
            std::memcpy(out, _p, n);
        }
        _p += n;
        _left -= n;
    }
    /// A view of the next n bytes, consumed; serialization_error if fewer are left.
    std::string_view take(std::size_t n) {
        need(n);
        std::string_view v(_p, n);
        _p += n;
        _left -= n;
        return v;
    }
    void need(std::size_t n) const {
        if (n > _left) {
            throw serialization_error("serialized data ends early: " + std::to_string(n) + " bytes needed, " +
                                      std::to_string(_left) + " left");
        }
    }
    std::size_t remaining() const noexcept { return _left; }
};

/// Serializer of T; see the file comment for the formats and how to add types.
template <typename T, typename Enable = void>
struct serializer;

/// A user struct that opted in by naming its fields (see the file comment).
template <typename T>
concept rpc_struct = std::is_class_v<T> && requires(T& t) {
    t.rpc_fields();
};

template <typename T>
void write(output_buffer& out, const T& v) {
    serializer<T>::write(out, v);
}
template <typename T>
T read(input_buffer& in) {
    return serializer<T>::read(in);
}

namespace internal {
inline std::uint32_t read_length(input_buffer& in, std::size_t min_item_size) {
    std::uint32_t n;
    in.read(&n, 4);
    // Each element takes at least min_item_size bytes: a count the rest of the input cannot hold
    // is rejected before anything is allocated for it.
    if (min_item_size && std::uint64_t(n) * min_item_size > in.remaining()) {
        throw serialization_error("serialized length " + std::to_string(n) + " exceeds the " +
                                  std::to_string(in.remaining()) + " bytes left");
    }
    return n;
}
inline void write_length(output_buffer& out, std::size_t n) {
    if (n > UINT32_MAX) {
        throw serialization_error("a string or collection of " + std::to_string(n) + " elements is too long");
    }
    auto v = std::uint32_t(n);
    out.write(&v, 4);
}
}  // namespace internal

template <>
struct serializer<bool> {
    static void write(output_buffer& out, bool v) {
        std::uint8_t b = v ? 1 : 0;
        out.write(&b, 1);
    }
    static bool read(input_buffer& in) {
        std::uint8_t b;
        in.read(&b, 1);
        if (b > 1) {
            throw serialization_error("bool byte " + std::to_string(b) + " is neither 0 nor 1");
        }
        return b == 1;
    }
};

template <typename T>
struct serializer<
    T, std::enable_if_t<(std::is_integral_v<T> && !std::is_same_v<T, bool>) || std::is_floating_point_v<T>>> {
    static_assert(!std::is_floating_point_v<T> || std::numeric_limits<T>::is_iec559, "IEEE 754 floats only");
    static void write(output_buffer& out, T v) { out.write(&v, sizeof(T)); }
    static T read(input_buffer& in) {
        T v;
        in.read(&v, sizeof(T));
        return v;
    }
};

template <typename T>
struct serializer<T, std::enable_if_t<std::is_enum_v<T>>> {
    using U = std::underlying_type_t<T>;
    static void write(output_buffer& out, T v) { serializer<U>::write(out, U(v)); }
    static T read(input_buffer& in) { return T(serializer<U>::read(in)); }
};

template <>
struct serializer<std::string> {
    static void write(output_buffer& out, const std::string& s) {
        internal::write_length(out, s.size());
        out.write(s.data(), s.size());
    }
    static std::string read(input_buffer& in) {
        auto n = internal::read_length(in, 1);
        return std::string(in.take(n));
    }
};

/// Write-only: a string_view is sent as a string (read it as std::string).
template <>
struct serializer<std::string_view> {
    static void write(output_buffer& out, std::string_view s) {
        internal::write_length(out, s.size());
        out.write(s.data(), s.size());
    }
};

template <>
struct serializer<temporary_buffer<char>> {
    static void write(output_buffer& out, const temporary_buffer<char>& b) {
        internal::write_length(out, b.size());
        out.write(b.get(), b.size());
    }
    static temporary_buffer<char> read(input_buffer& in) {
        auto n = internal::read_length(in, 1);
        auto v = in.take(n);
        return temporary_buffer<char>(v.data(), v.size());
    }
};

template <typename T>
struct serializer<std::vector<T>> {
    static void write(output_buffer& out, const std::vector<T>& v) {
        internal::write_length(out, v.size());
        if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
            out.write(v.data(), v.size() * sizeof(T));
        } else {
            for (const auto& e : v) {
                serializer<T>::write(out, e);
            }
        }
    }
    static std::vector<T> read(input_buffer& in) {
        constexpr std::size_t min = std::is_arithmetic_v<T> ? sizeof(T) : 0;
        auto n = internal::read_length(in, min);
        std::vector<T> v;
        if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
            v.resize(n);
            in.read(v.data(), n * sizeof(T));
        } else {
            v.reserve(std::min<std::size_t>(n, in.remaining()));
            for (std::uint32_t i = 0; i < n; ++i) {
                v.push_back(serializer<T>::read(in));
            }
        }
        return v;
    }
};

template <typename T>
struct serializer<std::list<T>> {
    static void write(output_buffer& out, const std::list<T>& v) {
        internal::write_length(out, v.size());
        for (const auto& e : v) {
            serializer<T>::write(out, e);
        }
    }
    static std::list<T> read(input_buffer& in) {
        auto n = internal::read_length(in, 0);
        std::list<T> v;
        for (std::uint32_t i = 0; i < n; ++i) {
            v.push_back(serializer<T>::read(in));
        }
        return v;
    }
};

namespace internal {
template <typename Map>
struct map_serializer {
    using K = typename Map::key_type;
    using V = typename Map::mapped_type;
    static void write(output_buffer& out, const Map& m) {
        write_length(out, m.size());
        for (const auto& [k, v] : m) {
            serializer<K>::write(out, k);
            serializer<V>::write(out, v);
        }
    }
    static Map read(input_buffer& in) {
        auto n = read_length(in, 0);
        Map m;
        for (std::uint32_t i = 0; i < n; ++i) {
            K k = serializer<K>::read(in);
            V v = serializer<V>::read(in);
            m.insert_or_assign(std::move(k), std::move(v));
        }
        return m;
    }
};
}  // namespace internal

template <typename K, typename V, typename C, typename A>
struct serializer<std::map<K, V, C, A>> : internal::map_serializer<std::map<K, V, C, A>> {};
template <typename K, typename V, typename H, typename E, typename A>
struct serializer<std::unordered_map<K, V, H, E, A>> : internal::map_serializer<std::unordered_map<K, V, H, E, A>> {};

template <typename T>
struct serializer<std::optional<T>> {
    static void write(output_buffer& out, const std::optional<T>& v) {
        serializer<bool>::write(out, v.has_value());
        if (v) {
            serializer<T>::write(out, *v);
        }
    }
    static std::optional<T> read(input_buffer& in) {
        std::uint8_t tag;
        in.read(&tag, 1);
        if (tag > 1) {
            throw serialization_error("optional tag " + std::to_string(tag) + " is neither 0 nor 1");
        }
        if (!tag) {
            return std::nullopt;
        }
        return serializer<T>::read(in);
    }
};

template <typename A, typename B>
struct serializer<std::pair<A, B>> {
    static void write(output_buffer& out, const std::pair<A, B>& v) {
        serializer<A>::write(out, v.first);
        serializer<B>::write(out, v.second);
    }
    static std::pair<A, B> read(input_buffer& in) {
        A a = serializer<A>::read(in);
        B b = serializer<B>::read(in);
        return {std::move(a), std::move(b)};
    }
};

template <typename... T>
struct serializer<std::tuple<T...>> {
    static void write(output_buffer& out, const std::tuple<T...>& v) {
        std::apply([&](const auto&... e) { (serializer<std::decay_t<decltype(e)>>::write(out, e), ...); }, v);
    }
    static std::tuple<T...> read(input_buffer& in) {
        // Braced initialization evaluates left to right, which is the wire order.
        return std::tuple<T...>{serializer<T>::read(in)...};
    }
};

template <typename T>
struct serializer<T, std::enable_if_t<rpc_struct<T>>> {
    static void write(output_buffer& out, const T& v) {
        // rpc_fields() returns references for reading into; writing only reads through them.
        auto fields = const_cast<T&>(v).rpc_fields();
        std::apply([&](auto&... e) { (serializer<std::decay_t<decltype(e)>>::write(out, e), ...); }, fields);
    }
    static T read(input_buffer& in) {
        static_assert(std::is_default_constructible_v<T>, "an rpc_struct is read into a default-constructed value");
        T v{};
        auto fields = v.rpc_fields();
        std::apply([&](auto&... e) { ((e = serializer<std::decay_t<decltype(e)>>::read(in)), ...); }, fields);
        return v;
    }
};

}  // namespace reef::rpc
