#include "tokend/adaptive_limit.h"

#include <algorithm>
#include <iterator>

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
  if (probe_ || limit_ >= maximum_) return false;
  if (!found_) return true;
  if (last_congestion_ && now - *last_congestion_ < kPlateau) return false;
  return !last_probe_done_ || now - *last_probe_done_ >= kProbeInterval;
}

void AdaptiveLimit::OnSent(MonoTime sent) { in_flight_.insert(sent); }

void AdaptiveLimit::OnProbeSent(MonoTime now) {
  Probe probe;
  probe.sent = now;
  probe.limit = limit_;
  probe.cohort_from = typical_.count() > 0 ? now - kCohortAge * typical_ : MonoTime::min();
  probe.cohort_left = static_cast<int>(
      std::distance(in_flight_.lower_bound(probe.cohort_from), in_flight_.upper_bound(now)));
  probe_ = probe;
}

void AdaptiveLimit::OnCancelAll() {
  probe_.reset();
  in_flight_.clear();
}

void AdaptiveLimit::ProbeFailed(MonoTime now) {
  // limit+1 is too many; the limit itself stands.
  probe_.reset();
  found_ = true;
  last_congestion_ = now;
  last_probe_done_ = now;
}

std::optional<AdaptiveLimit::Change> AdaptiveLimit::Verdict(MonoTime now) {
  const Probe probe = *probe_;
  probe_.reset();
  if (probe.cohort_left > 0 ||
      (probe.first_departure && *probe.first_departure - probe.sent < probe.proof_window)) {
    return std::nullopt;  // inconclusive: not a probe done, the next may go at once
  }
  last_probe_done_ = now;
  if (limit_ != probe.limit || limit_ >= maximum_) return std::nullopt;
  const int from = limit_;
  limit_ += 1;
  return Change{from, limit_, found_ ? "probe" : "slow_start"};
}

std::optional<MonoTime> AdaptiveLimit::VerdictDue() const {
  if (!probe_ || !probe_->answered) return std::nullopt;
  return probe_->due;
}

std::optional<AdaptiveLimit::Change> AdaptiveLimit::OnTimer(MonoTime now) {
  if (!probe_ || !probe_->answered || now < probe_->due) return std::nullopt;
  return Verdict(now);
}

std::optional<AdaptiveLimit::Change> AdaptiveLimit::OnResult(const std::string& tenant,
                                                            const TokenResult& result,
                                                            const Attempt& attempt,
                                                            MonoTime now) {
  if (auto it = in_flight_.find(attempt.sent); it != in_flight_.end()) in_flight_.erase(it);
  const Millis latency = std::chrono::duration_cast<Millis>(now - attempt.sent);
  if (result.ok()) typical_ = typical_.count() > 0 ? (7 * typical_ + latency) / 8 : latency;
  const bool congestion = IsCongestion(result);
  if (congestion) slowest_congestion_ = std::max(slowest_congestion_, result.latency);

  if (probe_ && !attempt.probe && probe_->cohort_from <= attempt.sent &&
      attempt.sent <= probe_->sent && probe_->cohort_left > 0) {
    // A member of the probe's cohort: it was at the gateway when the probe came.
    probe_->cohort_left -= 1;
    if (!probe_->first_departure) probe_->first_departure = now;
    // Turned away: the gateway counted the probe first and this one was the
    // one too many. The probe failed, whatever its own answer.
    if (congestion) {
      ProbeFailed(now);
      return std::nullopt;
    }
    if (probe_->answered && probe_->cohort_left == 0) return Verdict(now);
    return std::nullopt;
  }

  if (attempt.probe) {
    // A probe's answer after a reload, CancelAll() or a cut (no probe_, or
    // one sent at another limit) proves nothing about the limit now.
    if (!probe_ || probe_->answered) return std::nullopt;
    if (attempt.concurrency != limit_ + 1) {
      probe_.reset();
      last_probe_done_ = now;
      return std::nullopt;
    }
    if (congestion) {
      ProbeFailed(now);
      return std::nullopt;
    }
    if (!result.ok()) {
      // The tenant's own failure (a 401, a bad body) says nothing either way.
      probe_.reset();
      return std::nullopt;
    }
    probe_->answered = now;
    probe_->due = now + latency * kVerdictGrace;
    probe_->proof_window = std::max(kMinProofWindow, latency / kProofFraction);
    if (probe_->cohort_left > 0) return std::nullopt;  // the verdict waits for the cohort
    return Verdict(now);
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
  probe_.reset();  // a probe out now proves nothing about the new limit
  limit_ = std::max(1, full_at - 1);
  if (limit_ == from) return std::nullopt;
  return Change{from, limit_, "congestion"};
}

}  // namespace tokend
