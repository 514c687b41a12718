#include "runtime/coarse_clock.hh"

#include <ctime>

namespace reef {

std::chrono::nanoseconds coarse_clock_lag() noexcept {
    timespec res{};
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) != 0 || (res.tv_sec == 0 && res.tv_nsec == 0)) {
        return std::chrono::milliseconds(20);  // HZ=100 with margin
    }
    return 2 * std::chrono::nanoseconds(std::int64_t(res.tv_sec) * 1000000000 + res.tv_nsec);
}

}  // namespace reef
