#pragma once

#include <optional>
#include <string>

#include "tokend/clock.h"
#include "tokend/token_client.h"

namespace tokend {

// Finds and tracks the token endpoint's capacity (refresh.adaptive): the
// effective concurrency limit, between 1 and the configured maximum.
//
// Every attempt carries the concurrency it was sent at (requests in flight,
// itself included). That makes congestion precise: a 504, 429 or timeout of a
// request sent at concurrency k says the gateway holds fewer than k, so the
// limit drops to k-1 at once, rather than by a guessed factor. One congestion
// episode is one cut: the other casualties of an overshoot, all sent above the
// new limit, are ignored; a capacity that shrank keeps failing at or below the
// limit and steps it down further.
//
// A signal is only taken as the gateway's when a second tenant confirms it: a
// congestion answer cuts the limit only if another tenant also had one within
// kConfirmWindow (or twice the slowest congestion answer, if longer). One
// tenant whose own backend times out or answers 504 over and over says nothing
// about the gateway, and must not squeeze every other tenant down to one slot.
//
// Growth needs proof, so the limit never drifts up without load: only a success
// of a request sent *at* the limit raises it.
//  - Slow start (no capacity found yet): +1 per such success, doubling per
//    round trip.
//  - After congestion, a CUBIC-like plateau: the limit stays at the last good
//    value for `plateau` (it does not re-probe a capacity it has just found),
//    then probes one step at a time, each step at least `probe_interval` and
//    twice the slowest congestion answer seen apart, so a probe's verdict
//    (a 504 can arrive after a long gateway hold) is in before the next.
//
// Not thread-safe: called from the refresh thread only.
class AdaptiveLimit {
 public:
  static constexpr Millis kPlateau{30000};
  static constexpr Millis kProbeInterval{2000};
  static constexpr Millis kConfirmWindow{5000};

  // Starts in slow start at min(2, maximum).
  explicit AdaptiveLimit(int maximum);

  struct Change {
    int from = 0;
    int to = 0;
    std::string reason;  // "slow_start", "probe", "congestion", "configured"
  };

  // Feeds one attempt's outcome. Returns the change of the limit, if any.
  std::optional<Change> OnResult(const std::string& tenant, const TokenResult& result,
                                 int sent_concurrency, MonoTime now);

  // A new configured maximum (reload).
  std::optional<Change> SetMaximum(int maximum);

  int limit() const { return limit_; }
  bool slow_start() const { return !found_; }

  // True for the answers that mean "the gateway is full": 504, 429, timeouts.
  static bool IsCongestion(const TokenResult& result);

 private:
  int maximum_;
  int limit_;
  bool found_ = false;  // a capacity was found (slow start is over)
  std::optional<MonoTime> last_congestion_;
  std::optional<MonoTime> last_increase_;
  Millis slowest_congestion_{0};

  // The latest unconfirmed congestion signal.
  struct Signal {
    std::string tenant;
    int sent_concurrency = 0;
    MonoTime at;
  };
  std::optional<Signal> pending_;
};

}  // namespace tokend
