#pragma once

#include <optional>
#include <set>
#include <string>

#include "tokend/clock.h"
#include "tokend/token_client.h"

namespace tokend {

// Finds and tracks the token endpoint's capacity (refresh.adaptive): the
// effective concurrency limit, between 1 and the configured maximum.
//
// Every attempt carries the concurrency it was sent at (requests in flight,
// itself included). That makes congestion precise: a 504, 429 or timeout of a
// request sent at concurrency k <= limit says the gateway holds fewer than k,
// so the limit drops to k-1 at once, rather than by a guessed factor. One
// congestion episode is one cut: the other casualties of an overshoot, all sent
// above the new limit, are ignored; a capacity that shrank keeps failing at or
// below the limit and steps it down further.
//
// Growth needs proof, and the proof is one request: when the limit is full and
// more are waiting, a single probe may go out at concurrency limit+1. Only its
// success raises the limit (by one); while it is out, ordinary requests keep
// the total, the probe included, at the limit, so a probe the gateway holds
// (a gateway counts a held request against its capacity until it answers 504)
// costs that one 504 and nothing else. Without load there is no probe, so the
// limit never drifts up.
//  - Slow start (no capacity found yet): the next probe as soon as the last one
//    succeeded: +1 per round trip.
//
// A successful probe proves limit+1 only if the gateway really held the
// probe's cohort while it served the probe. The cohort is the requests in
// flight when the probe was sent, less those already out for more than twice
// the typical latency (a tenant whose own endpoint hangs is not at the
// gateway). The verdict waits until the whole cohort is answered, or one more
// probe latency after the probe's own answer (kVerdictGrace), whichever first:
//  - A member turned away (504, 429, timeout) means the gateway counted the
//    probe first and that member was the one too many: the probe failed,
//    whatever its own answer, and that answer cuts nothing.
//  - A member still out at the deadline (held by the gateway, or slow on its
//    own: nobody can tell yet) leaves the probe inconclusive.
//  - So does a member answered just after the probe was sent, within a quarter
//    of the probe's own latency (kProofFraction, at least kMinProofWindow): it
//    may already have left the gateway when the probe arrived (the probe is
//    counted late, the answer read late), so the probe ran at the limit.
// An inconclusive probe leaves the limit as it is, and the next may go at
// once. One false proof costs a limit's worth of 504s: at limit+1 every request
// sent during the gateway's hold finds it full.
//
// A congestion answer to an ordinary request (not the probe) is only taken as
// the gateway's when a second tenant confirms it: it cuts the limit only if
// another tenant also had one within kConfirmWindow (or twice the slowest
// congestion answer, if longer). One tenant whose own backend times out or
// answers 504 over and over says nothing about the gateway, and must not
// squeeze every other tenant down to one slot.
//
//  - After congestion (a failed probe included), a CUBIC-like plateau: no probe
//    for `kPlateau` (it does not re-probe a capacity it has just found), then
//    one probe at most every `kProbeInterval`.
//
// Not thread-safe: called from the refresh thread only.
class AdaptiveLimit {
 public:
  static constexpr Millis kPlateau{30000};
  static constexpr Millis kProbeInterval{2000};
  static constexpr Millis kConfirmWindow{5000};
  static constexpr int kProofFraction = 4;
  static constexpr Millis kMinProofWindow{2};
  static constexpr int kCohortAge = 2;      // times the typical latency
  static constexpr int kVerdictGrace = 1;   // times the probe's latency

  // Starts in slow start at min(2, maximum).
  explicit AdaptiveLimit(int maximum);

  struct Change {
    int from = 0;
    int to = 0;
    std::string reason;  // "slow_start", "probe", "congestion", "configured"
  };

  // True when one request may be sent now beyond limit() as the probe: no
  // probe is out or awaiting its verdict, the limit is below the maximum, and
  // the plateau and probe interval have passed. The caller sends it only when
  // limit() requests are in flight and more wait.
  bool MayProbe(MonoTime now) const;
  // Every attempt as it is sent, the probe included.
  void OnSent(MonoTime sent);
  // The probe goes out now, at concurrency limit()+1 (called before its
  // OnSent).
  void OnProbeSent(MonoTime now);
  // Every attempt in flight was aborted (stop).
  void OnCancelAll();

  // How one attempt was sent.
  struct Attempt {
    int concurrency = 0;  // requests in flight when it was sent, itself included
    bool probe = false;   // sent as the probe
    MonoTime sent{};
  };

  // Feeds the answer to one attempt of `tenant`. Returns the change of the
  // limit, if any.
  std::optional<Change> OnResult(const std::string& tenant, const TokenResult& result,
                                 const Attempt& attempt, MonoTime now);
  // When the probe's verdict falls due without a further answer (see above);
  // OnTimer() at or after that time gives it.
  std::optional<MonoTime> VerdictDue() const;
  std::optional<Change> OnTimer(MonoTime now);

  // A new configured maximum (reload).
  std::optional<Change> SetMaximum(int maximum);

  int limit() const { return limit_; }
  bool slow_start() const { return !found_; }
  bool probing() const { return probe_.has_value(); }

  // True for the answers that mean "the gateway is full": 504, 429, timeouts.
  static bool IsCongestion(const TokenResult& result);

 private:
  struct Probe {
    MonoTime sent;
    int limit = 0;          // the limit it tests limit+1 of
    MonoTime cohort_from;   // members were sent in [cohort_from, sent]
    int cohort_left = 0;    // members not yet answered
    std::optional<MonoTime> first_departure;  // the first member's answer
    std::optional<MonoTime> answered;         // its own successful answer
    MonoTime due;           // the verdict's deadline, once answered
    Millis proof_window{0};
  };

  void ProbeFailed(MonoTime now);
  std::optional<Change> Verdict(MonoTime now);

  int maximum_;
  int limit_;
  bool found_ = false;  // a capacity was found (slow start is over)
  std::multiset<MonoTime> in_flight_;  // send times of the attempts out
  Millis typical_{0};   // moving average of successful latencies
  std::optional<Probe> probe_;  // out, or awaiting its verdict
  std::optional<MonoTime> last_congestion_;
  std::optional<MonoTime> last_probe_done_;
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
