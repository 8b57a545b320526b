#pragma once

#include <atomic>

#include "tokend/control.h"

namespace tokend {

// The one global limit on token requests in flight, shared by all tenants: a
// counting semaphore whose size (the effective limit) may move between 1 and the
// configured maximum.
//
// Acquire/Release/Set* are called from the refresh thread only; Snapshot() is
// safe from any thread.
class ConcurrencyLimit {
 public:
  explicit ConcurrencyLimit(int configured);

  // Takes a slot if fewer than `effective` are taken.
  bool TryAcquire();
  // Takes one slot beyond `effective` for the adaptive limit's probe, so
  // in_flight may exceed effective by one.
  void AcquireProbe() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void Release();

  // A new configured maximum (reload); the effective limit is clamped into
  // [1, configured]. Slots already taken stay taken.
  void SetConfigured(int configured);
  // REQUIRES: 1 <= effective; values above `configured` are clamped.
  void SetEffective(int effective);
  void SetWaiting(int waiting) { waiting_.store(waiting, std::memory_order_relaxed); }

  int configured() const { return configured_.load(std::memory_order_relaxed); }
  int effective() const { return effective_.load(std::memory_order_relaxed); }
  int in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  LimitSnapshot Snapshot() const;

 private:
  std::atomic<int> configured_;
  std::atomic<int> effective_;
  std::atomic<int> in_flight_{0};
  std::atomic<int> waiting_{0};
};

}  // namespace tokend
