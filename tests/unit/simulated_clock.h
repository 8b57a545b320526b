#pragma once

#include "tokend/clock.h"

namespace tokend {

// A clock that moves only when told to. Monotonic and system time move together.
class SimulatedClock final : public Clock {
 public:
  MonoTime Now() const override { return mono_; }
  SysTime SystemNow() const override { return system_; }

  void Advance(Millis d) {
    mono_ += d;
    system_ += d;
  }
  // Moves to `t` if it is later than now.
  void AdvanceTo(MonoTime t) {
    if (t > mono_) Advance(std::chrono::duration_cast<Millis>(t - mono_));
  }

 private:
  MonoTime mono_ = MonoTime() + std::chrono::hours(1000);
  SysTime system_ = SysTime() + std::chrono::seconds(1'800'000'000);
};

}  // namespace tokend
