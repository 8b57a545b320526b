#pragma once

#include <string>

namespace tokend {

// The global limit as `status` shows it (SPEC §5).
struct LimitSnapshot {
  int configured = 0;
  int effective = 0;
  int in_flight = 0;
  int waiting = 0;
};

// What the socket side may ask of the refresh side. Implemented by the refresh
// engine; every method is thread-safe and returns without waiting for the
// network.
class RefreshControl {
 public:
  virtual ~RefreshControl() = default;

  virtual LimitSnapshot Limit() const = 0;

  // Asks for a refresh of `tenant` now (single-flight: no second request when
  // one is in flight). Used by invalidate and refresh.
  virtual void RequestRefresh(const std::string& tenant) = 0;
};

}  // namespace tokend
