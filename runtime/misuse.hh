// API misuse (a future awaited twice, a promise resolved twice, get() outside a thread) is a bug in
// the caller. Debug builds abort with the reason so the bug is found at its source; release builds
// throw misuse_error so a server can log it and keep serving other requests.
#pragma once

#include <stdexcept>

namespace reef {

/// Thrown (in release builds) when the runtime API is used against its contract.
class misuse_error : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

/// Whether misuse aborts (the default when NDEBUG is not defined) or throws misuse_error.
void set_abort_on_misuse(bool abort) noexcept;
bool abort_on_misuse() noexcept;

/// Report misuse: abort with the message, or throw misuse_error(message).
[[noreturn]] void report_misuse(const char* message);

}  // namespace reef
