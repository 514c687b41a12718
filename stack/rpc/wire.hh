// The RPC wire format's constants and fixed headers (docs/rpc.md, "Wire format", is the
// specification; this header is what the code and the bad-input tests share). All fields are
// little-endian.
//
//   hello (24 bytes, each side sends one first; the server's answer carries the agreed values):
//     magic "RRPC" | u16 version | u16 zero | u64 feature bits | u32 max frame size | u32 zero
//   frame header (16 bytes), then `length` bytes of payload:
//     u8 type | u8 flags | u16 zero | u32 length | u64 id
#pragma once

#include <cstdint>
#include <cstring>

namespace reef::rpc::wire {

inline constexpr char magic[4] = {'R', 'R', 'P', 'C'};
inline constexpr std::size_t hello_size = 24;
inline constexpr std::size_t header_size = 16;

enum class frame_type : std::uint8_t {
    request = 1,      ///< id = request id; payload: u64 verb, u32 timeout ms (0: none), arguments
    response = 2,     ///< id = request id; payload: the serialized result (empty for void)
    error = 3,        ///< id = request id; payload: u8 error_code, string type, string message
    cancel = 4,       ///< id = request id; empty payload; the caller gave up (timeout, abort)
    stream_data = 5,  ///< id = stream id; payload: one serialized item
    stream_end = 6,   ///< id = stream id; payload: u8 failed, string message (empty when not failed)
};

/// Frame flags.
inline constexpr std::uint8_t flag_lz4 = 0x01;  ///< payload: u32 uncompressed size, then an LZ4 block
inline constexpr std::uint8_t known_flags = flag_lz4;

/// What an error frame reports.
enum class error_code : std::uint8_t {
    exception = 1,        ///< the handler failed: type is the exception's type name
    unknown_verb = 2,     ///< no handler for the verb
    frame_too_large = 3,  ///< the request was larger than the server's max frame size
};

struct hello {
    std::uint16_t version = 0;
    std::uint64_t features = 0;
    std::uint32_t max_frame_size = 0;

    void encode(char* out) const noexcept {
        std::memset(out, 0, hello_size);
        std::memcpy(out, magic, 4);
        std::memcpy(out + 4, &version, 2);
        std::memcpy(out + 8, &features, 8);
        std::memcpy(out + 16, &max_frame_size, 4);
    }
    /// False when the magic is wrong.
    bool decode(const char* in) noexcept {
        if (std::memcmp(in, magic, 4) != 0) {
            return false;
        }
        std::memcpy(&version, in + 4, 2);
        std::memcpy(&features, in + 8, 8);
        std::memcpy(&max_frame_size, in + 16, 4);
        return true;
    }
};

struct header {
    frame_type type{};
    std::uint8_t flags = 0;
    std::uint32_t length = 0;
    std::uint64_t id = 0;

    void encode(char* out) const noexcept {
        out[0] = char(type);
        out[1] = char(flags);
        out[2] = out[3] = 0;
        std::memcpy(out + 4, &length, 4);
        std::memcpy(out + 8, &id, 8);
    }
    void decode(const char* in) noexcept {
        type = frame_type(std::uint8_t(in[0]));
        flags = std::uint8_t(in[1]);
        std::memcpy(&length, in + 4, 4);
        std::memcpy(&id, in + 8, 8);
    }
};

}  // namespace reef::rpc::wire
