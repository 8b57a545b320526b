#pragma once

#include <istream>
#include <ostream>

namespace tokend {

// The tokenctl command line (SPEC §2): parses `argv`, talks to the daemon, writes
// results to `out` and diagnostics to `err`. Returns the exit status: 0 success,
// 1 the daemon answered an error, 2 bad usage, 3 the daemon cannot be reached
// (or did not answer in time). Reads $TOKEND_SOCKET; never calls exit().
// `invalidate` reads the rejected token from `in` (std::cin in the first form).
// `watch` writes each pushed event line to `out` (flushed) until the daemon
// closes the connection (then 3) or the process is interrupted.
int RunTokenctl(int argc, char** argv, std::ostream& out, std::ostream& err);
int RunTokenctl(int argc, char** argv, std::istream& in, std::ostream& out, std::ostream& err);

}  // namespace tokend
