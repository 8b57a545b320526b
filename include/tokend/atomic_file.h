#pragma once

#include <sys/types.h>

#include <string>

namespace tokend {

// Replaces `path` with `data` so that a reader (or a crash) sees the old file or
// the new one, never half of either: a temporary file beside it with `mode`,
// fsync, rename over `path`, fsync of the directory. Returns "" or the error.
std::string WriteFileAtomically(const std::string& path, const std::string& data, mode_t mode);

}  // namespace tokend
