// Helpers for tests of the socket API: a posix stack installed for the test's reactor, byte
// patterns and checksums for transfers.
#pragma once

#include "runtime/coroutine.hh"
#include "runtime/smp.hh"
#include "stack/net/api.hh"
#include "stack/posix/posix_stack.hh"

#include <sys/resource.h>

#include <cstdint>
#include <exception>
#include <system_error>
#include <string>
#include <string_view>

namespace reef::testing {

/// Installs a posix stack on this shard for the scope's lifetime.
struct posix_stack_scope {
    posix_stack_scope() { net::set_local_stack(net::make_posix_stack()); }
    ~posix_stack_scope() { net::reset_local_stack(); }
    posix_stack_scope(const posix_stack_scope&) = delete;
    posix_stack_scope& operator=(const posix_stack_scope&) = delete;
};

/// Installs a posix stack on every shard; removes them when destroyed (call from shard 0 and
/// co_await stop() before the scope ends).
inline future<> start_posix_on_all_shards() {
    return smp::invoke_on_all([] { net::set_local_stack(net::make_posix_stack()); });
}
inline future<> stop_posix_on_all_shards() {
    return smp::invoke_on_all([] { net::reset_local_stack(); });
}

/// 127.0.0.1:port (0: let the stack choose).
inline net::socket_address loopback4(std::uint16_t port = 0) {
    return net::socket_address(net::inet_address::parse("127.0.0.1"), port);
}

/// The errno of a std::system_error in `ex`; -1 for any other exception.
inline int error_code_of(const std::exception_ptr& ex) {
    try {
        std::rethrow_exception(ex);
    } catch (const std::system_error& e) {
        return e.code().value();
    } catch (...) {
        return -1;
    }
}

/// 64-bit FNV-1a, streaming: feed it the bytes of a transfer in any split.
struct fnv1a {
    std::uint64_t h = 0xcbf29ce484222325ull;
    void update(const char* p, std::size_t n) noexcept {
        for (std::size_t i = 0; i < n; ++i) {
            h = (h ^ static_cast<unsigned char>(p[i])) * 0x100000001b3ull;
        }
    }
};

/// Raise the soft open-files limit to at least `n` (raising the hard limit too when allowed, as
/// root). Returns whether the limit is now high enough.
inline bool raise_fd_limit(rlim_t n) {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return false;
    }
    if (rl.rlim_cur >= n) {
        return true;
    }
    rlimit want{n, std::max(rl.rlim_max, n)};
    if (::setrlimit(RLIMIT_NOFILE, &want) == 0) {
        return true;
    }
    if (rl.rlim_max >= n) {
        want.rlim_max = rl.rlim_max;
        return ::setrlimit(RLIMIT_NOFILE, &want) == 0;
    }
    return false;
}

}  // namespace reef::testing
