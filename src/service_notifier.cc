#include "tokend/service_notifier.h"

#include <systemd/sd-daemon.h>

#include <chrono>

namespace tokend {

ServiceNotifier::ServiceNotifier() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_interval_ = std::chrono::duration_cast<Millis>(std::chrono::microseconds(usec / 2));
  }
}

void ServiceNotifier::Send(const std::string& state) { sd_notify(0, state.c_str()); }

void ServiceNotifier::Ready() { Send("READY=1"); }

void ServiceNotifier::Reloading(MonoTime now) {
  auto usec = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch());
  Send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec.count()));
}

void ServiceNotifier::Stopping() { Send("STOPPING=1"); }

void ServiceNotifier::Status(const std::string& text) {
  if (text == last_status_) return;
  last_status_ = text;
  Send("STATUS=" + text);
}

void ServiceNotifier::Watchdog() { Send("WATCHDOG=1"); }

}  // namespace tokend
