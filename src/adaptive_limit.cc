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

std::optional<AdaptiveLimit::Change> AdaptiveLimit::OnResult(const std::string& tenant,
                                                            const TokenResult& result,
                                                            int sent_concurrency, MonoTime now) {
  int from = limit_;
  if (IsCongestion(result)) {
    slowest_congestion_ = std::max(slowest_congestion_, result.latency);
    if (sent_concurrency > limit_) {
      // Sent above a limit already cut: this episode was answered.
      return std::nullopt;
    }
    Millis window = std::max(kConfirmWindow, 2 * slowest_congestion_);
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
  if (!result.ok() || sent_concurrency < limit_ || limit_ >= maximum_) return std::nullopt;

  if (!found_) {
    limit_ += 1;
    return Change{from, limit_, "slow_start"};
  }
  if (last_congestion_ && now - *last_congestion_ < kPlateau) return std::nullopt;
  Millis gap = std::max(kProbeInterval, 2 * slowest_congestion_);
  if (last_increase_ && now - *last_increase_ < gap) return std::nullopt;
  last_increase_ = now;
  limit_ += 1;
  return Change{from, limit_, "probe"};
}

}  // namespace tokend
