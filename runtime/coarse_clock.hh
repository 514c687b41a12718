// The coarse clock (lowres_clock, runtime/clocks.hh) as a stand-in for the precise one where a
// check may be a few milliseconds late but must not cost a precise read per packet or per
// reactor round.
#pragma once

#include "runtime/clocks.hh"

#include <chrono>

namespace reef {

/// The steady clock as the coarse vDSO read sees it: the same epoch as steady_clock_type (both are
/// CLOCK_MONOTONIC, libstdc++'s steady_clock included), never ahead of steady_clock_type::now()
/// and behind it by at most about coarse_clock_lag().
inline steady_clock_type::time_point coarse_steady_now() noexcept {
    return steady_clock_type::time_point(
        std::chrono::duration_cast<steady_clock_type::duration>(lowres_clock::now().time_since_epoch()));
}

/// How far lowres_clock may lag the precise clock: twice the coarse clock's resolution (one tick,
/// clock_getres), so a late tick stays within it. A system call: callers keep the value.
std::chrono::nanoseconds coarse_clock_lag() noexcept;

}  // namespace reef
