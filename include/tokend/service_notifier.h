#pragma once

#include <optional>
#include <string>

#include "tokend/clock.h"

namespace tokend {

// systemd's notification protocol (sd_notify): READY=1, STATUS=, WATCHDOG=1,
// RELOADING=1, STOPPING=1. Every call is a no-op when the process was not started
// with NOTIFY_SOCKET. Not thread-safe; used from the main thread only.
class ServiceNotifier {
 public:
  ServiceNotifier();

  void Ready();
  void Reloading(MonoTime now);
  void Stopping();
  // Sends STATUS= only when the text changed since the last one sent.
  void Status(const std::string& text);
  void Watchdog();

  // The interval at which WATCHDOG=1 is due (half of WATCHDOG_USEC), if the
  // service manager asked for a watchdog.
  std::optional<Millis> watchdog_interval() const { return watchdog_interval_; }

 private:
  void Send(const std::string& state);

  std::optional<Millis> watchdog_interval_;
  std::string last_status_;
};

// The watchdog's rule: WATCHDOG=1 may be sent only while both the refresh loop
// and the socket loop went round within `stall_limit` of `now`.
inline bool LoopsMakingProgress(MonoTime now, MonoTime refresh_progress, MonoTime socket_progress,
                                Millis stall_limit) {
  return now - refresh_progress <= stall_limit && now - socket_progress <= stall_limit;
}

}  // namespace tokend
