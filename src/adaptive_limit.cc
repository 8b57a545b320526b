#include "tokend/adaptive_limit.h"

#include <algorithm>

namespace tokend {

AdaptiveLimit::AdaptiveLimit(int maximum)
    : maximum_(std::max(1, maximum)), limit_(std::min(2, std::max(1, maximum))) {}

bool AdaptiveLimit::IsCongestion(const TokenResult& result) {
  return result.http_status == 504 || result.http_status == 429 ||
         result.kind == AttemptKind::kTimeout;
}

std::optional<AdaptiveLimit::Change> AdaptiveLimit::SetMaximum(int maximum) {
  maximum_ = std::max(1, maximum);
  if (limit_ <= maximum_) return std::nullopt;
  Change change{limit_, maximum_, "configured"};
  limit_ = maximum_;
  return change;
}

bool AdaptiveLimit::MayProbe(MonoTime now) const {
  if (limit_ >= maximum_) return false;
  if (probing_) {
    // A verdict that waits on a member of its cohort for this long is stale
    // (every attempt ends within its HTTP timeout; this is only a guard).
    if (!probe_answered_ || now - *probe_answered_ < kPlateau) return false;
  }
  if (!found_) return true;
  if (last_congestion_ && now - *last_congestion_ < kPlateau) return false;
  return !last_probe_done_ || now - *last_probe_done_ >= kProbeInterval;
}

void AdaptiveLimit::OnProbeSent(MonoTime now, int cohort) {
  probing_ = true;
  probe_sent_ = now;
  probe_limit_ = limit_;
  cohort_left_ = cohort;
  probe_answered_.reset();
  first_departure_.reset();
}

void AdaptiveLimit::ProbeFailed(MonoTime now) {
  // limit+1 is too many; the limit itself stands.
  probing_ = false;
  found_ = true;
  last_congestion_ = now;
  last_probe_done_ = now;
}

std::optional<AdaptiveLimit::Change> AdaptiveLimit::ProbeVerdict(MonoTime now) {
  probing_ = false;
  if (first_departure_ && *first_departure_ - probe_sent_ < proof_window_) {
    // Inconclusive is not a probe done: the next may go at once.
    return std::nullopt;
  }
  last_probe_done_ = now;
  if (limit_ != probe_limit_ || limit_ >= maximum_) return std::nullopt;
  const int from = limit_;
  limit_ += 1;
  return Change{from, limit_, found_ ? "probe" : "slow_start"};
}

std::optional<AdaptiveLimit::Change> AdaptiveLimit::OnResult(const std::string& tenant,
                                                            const TokenResult& result,
                                                            const Attempt& attempt,
                                                            MonoTime now) {
  const bool congestion = IsCongestion(result);
  if (congestion) slowest_congestion_ = std::max(slowest_congestion_, result.latency);

  if (probing_ && !attempt.probe && attempt.sent <= probe_sent_ && cohort_left_ > 0) {
    // A member of the probe's cohort: it was at the gateway when the probe came.
    cohort_left_ -= 1;
    if (!first_departure_) first_departure_ = now;
    // Turned away: the gateway counted the probe first and this one was the
    // one too many. The probe failed, whatever its own answer.
    if (congestion) {
      ProbeFailed(now);
      return std::nullopt;
    }
    if (probe_answered_ && cohort_left_ == 0) return ProbeVerdict(now);
    return std::nullopt;
  }

  if (attempt.probe) {
    // A probe's answer after a reload or CancelAll() (probing_ false) or after a
    // cut below it (sent above limit+1) proves nothing about the limit now.
    if (!probing_ || probe_answered_) return std::nullopt;
    if (attempt.concurrency != limit_ + 1) {
      probing_ = false;
      last_probe_done_ = now;
      return std::nullopt;
    }
    if (congestion) {
      ProbeFailed(now);
      return std::nullopt;
    }
    if (!result.ok()) {
      // The tenant's own failure (a 401, a bad body) says nothing either way.
      probing_ = false;
      return std::nullopt;
    }
    probe_answered_ = now;
    proof_window_ = std::max(kMinProofWindow,
                             std::chrono::duration_cast<Millis>(now - attempt.sent) / kProofFraction);
    if (cohort_left_ > 0) return std::nullopt;  // the verdict waits for the cohort
    return ProbeVerdict(now);
  }

  if (!congestion || attempt.concurrency > limit_) {
    // Success, a tenant's own failure, or congestion sent above a limit
    // already cut: this episode was answered.
    return std::nullopt;
  }
  const Millis window = std::max(kConfirmWindow, 2 * slowest_congestion_);
  if (!pending_ || pending_->tenant == tenant || now - pending_->at > window) {
    pending_ = Signal{tenant, attempt.concurrency, now};
    return std::nullopt;
  }
  // Two tenants agree: the gateway is full at the lower of their concurrencies.
  const int from = limit_;
  const int full_at = std::min(attempt.concurrency, pending_->sent_concurrency);
  pending_.reset();
  found_ = true;
  last_congestion_ = now;
  probing_ = false;  // a probe out now proves nothing about the new limit
  limit_ = std::max(1, full_at - 1);
  if (limit_ == from) return std::nullopt;
  return Change{from, limit_, "congestion"};
}

}  // namespace tokend
