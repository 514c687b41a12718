// Turning raw return addresses into readable frames, for stall reports and crash logs.
#pragma once

#include <string>

namespace reef {

/// One line per frame: "  #N 0xADDR function+0xOFF (file:line) in object". Uses libdw for
/// file and line when Reef is built with it, dladdr and the demangler otherwise.
std::string symbolize_backtrace(void* const* frames, int n);

/// The calling thread's current backtrace, symbolized.
std::string current_backtrace();

}  // namespace reef
