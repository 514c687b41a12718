// The logger of the disk I/O subsystem ("io"), shared by runtime/io's files.
#pragma once

#include "runtime/log.hh"

namespace reef::io {

extern logger io_log;

}  // namespace reef::io
