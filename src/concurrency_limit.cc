#include "tokend/concurrency_limit.h"

#include <algorithm>

namespace tokend {

ConcurrencyLimit::ConcurrencyLimit(int configured)
    : configured_(std::max(1, configured)), effective_(std::max(1, configured)) {}

bool ConcurrencyLimit::TryAcquire() {
  if (in_flight_.load(std::memory_order_relaxed) >= effective_.load(std::memory_order_relaxed)) {
    return false;
  }
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void ConcurrencyLimit::Release() {
  if (in_flight_.load(std::memory_order_relaxed) > 0) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
  }
}

void ConcurrencyLimit::SetConfigured(int configured) {
  configured_.store(std::max(1, configured), std::memory_order_relaxed);
  SetEffective(effective());
}

void ConcurrencyLimit::SetEffective(int effective) {
  effective_.store(std::clamp(effective, 1, configured()), std::memory_order_relaxed);
}

LimitSnapshot ConcurrencyLimit::Snapshot() const {
  LimitSnapshot s;
  s.configured = configured();
  s.effective = effective();
  s.in_flight = in_flight();
  s.waiting = waiting_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace tokend
