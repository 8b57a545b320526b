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
  if (probing_ || limit_ >= maximum_) return false;
  if (!found_) return true;
  if (last_congestion_ && now - *last_congestion_ < kPlateau) return false;
  return !last_probe_done_ || now - *last_probe_done_ >= kProbeInterval;
}

void AdaptiveLimit::OnProbeSent(MonoTime now) {
  probing_ = true;
  probe_sent_ = now;
  first_departure_.reset();
}

std::optional<AdaptiveLimit::Change> AdaptiveLimit::OnResult(const std::string& tenant,
                                                            const TokenResult& result,
                                                            const Attempt& attempt,
                                                            MonoTime now) {
  const int from = limit_;
  int sent_concurrency = attempt.concurrency;
  if (probing_ && !attempt.probe && attempt.sent <= probe_sent_ && !first_departure_) {
    first_departure_ = now;
  }
  // A probe's answer after a reload or CancelAll() (probing_ false) or after a
  // cut below it (sent above limit+1) proves nothing about the limit now.
  const bool current_probe = attempt.probe && probing_ && sent_concurrency == limit_ + 1;
  bool inconclusive = false;
  if (attempt.probe && probing_) {
    probing_ = false;
    const Millis window = std::max(
        kMinProofWindow, std::chrono::duration_cast<Millis>(now - attempt.sent) / kProofFraction);
    inconclusive = first_departure_ && *first_departure_ - probe_sent_ < window;
    // An inconclusive probe is not a probe done: the next may go at once.
    if (!inconclusive || IsCongestion(result)) last_probe_done_ = now;
  }
  if (IsCongestion(result)) {
    slowest_congestion_ = std::max(slowest_congestion_, result.latency);
    if (current_probe) {
      // limit+1 is too many; the limit itself stands.
      found_ = true;
      last_congestion_ = now;
      return std::nullopt;
    }
    if (sent_concurrency > limit_) {
      // Sent above a limit already cut: this episode was answered.
      return std::nullopt;
    }
    const Millis window = std::max(kConfirmWindow, 2 * slowest_congestion_);
    if (!pending_ || pending_->tenant == tenant || now - pending_->at > window) {
      pending_ = Signal{tenant, sent_concurrency, now};
      return std::nullopt;
    }
    // Two tenants agree: the gateway is full at the lower of their concurrencies.
    sent_concurrency = std::min(sent_concurrency, pending_->sent_concurrency);
    pending_.reset();
    found_ = true;
    last_congestion_ = now;
    limit_ = std::max(1, sent_concurrency - 1);
    if (limit_ == from) return std::nullopt;
    return Change{from, limit_, "congestion"};
  }
  if (!result.ok() || !current_probe || inconclusive || limit_ >= maximum_) return std::nullopt;
  limit_ += 1;
  return Change{from, limit_, found_ ? "probe" : "slow_start"};
}

}  // namespace tokend
