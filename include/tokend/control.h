#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tokend {

// The global limit as `status` shows it (SPEC §5).
struct LimitSnapshot {
  int configured = 0;
  int effective = 0;
  int in_flight = 0;
  int waiting = 0;
};

// What a reload came to (SPEC §5 `reload`, SIGHUP).
struct ReloadOutcome {
  bool ok = false;
  size_t tenants = 0;               // tenants configured after it
  std::vector<std::string> errors;  // "PATH:LINE:COL: message" when it failed
  int64_t at_unix = 0;              // when it was tried
};

// What the socket side may ask of the rest of the daemon. Every method is
// thread-safe and returns without waiting for the network.
class RefreshControl {
 public:
  virtual ~RefreshControl() = default;

  virtual LimitSnapshot Limit() const = 0;

  // Asks for a refresh of `tenant` now (single-flight: no second request when
  // one is in flight). Used by `refresh`.
  virtual void RequestRefresh(const std::string& tenant) = 0;

  // A client reports `access_token` of `tenant` as rejected upstream: if it is
  // still the tenant's current token, it is dropped and one refresh starts (at
  // most one forced refresh per tenant per 10 s). Used by `invalidate`.
  virtual void Invalidate(const std::string& tenant, const std::string& access_token) = 0;

  // Re-reads the config file and applies it; on errors the old config stays.
  // May block for the time it takes to read the config and secrets.
  virtual ReloadOutcome Reload() = 0;

  // The last reload tried since start, if any (shown by `status`).
  virtual std::optional<ReloadOutcome> LastReload() const = 0;

  // SPEC §7 metrics as Prometheus text.
  virtual std::string MetricsText() = 0;
};

}  // namespace tokend
