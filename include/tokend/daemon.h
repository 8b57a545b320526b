#pragma once

namespace tokend {

// Exit statuses of tokend (SPEC §2).
enum ExitStatus : int {
  kExitOk = 0,
  kExitBadConfig = 1,
  kExitUsage = 2,
  kExitRuntime = 3,
};

// The whole of `tokend`: parses the command line, loads the config, and runs
// until SIGTERM/SIGINT (SIGHUP reloads). Returns the process exit status.
int RunDaemon(int argc, char** argv);

}  // namespace tokend
