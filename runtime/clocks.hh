// Clocks: steady_clock_type for precise timers; lowres_clock for cheap time stamps (a coarse
// vDSO read, a few ns, ~4 ms resolution) where precision does not matter (expiry, idle times).
#pragma once

#include <chrono>
#include <ctime>

namespace reef {

using steady_clock_type = std::chrono::steady_clock;

struct lowres_clock {
    using rep = std::int64_t;
    using period = std::nano;
    using duration = std::chrono::nanoseconds;
    using time_point = std::chrono::time_point<lowres_clock, duration>;
    static constexpr bool is_steady = true;

    static time_point now() noexcept {
        timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return time_point(duration(std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec));
    }
};

}  // namespace reef
