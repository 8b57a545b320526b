#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>

namespace tokend {

// Monotonic time drives every interval (refresh, backoff, expiry); system time is
// only for showing people (expires_at, log timestamps).
using MonoClock = std::chrono::steady_clock;
using MonoTime = MonoClock::time_point;
using SysTime = std::chrono::system_clock::time_point;
using Millis = std::chrono::milliseconds;

// The one seam through which the core sees time. Thread-safe implementations only.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime Now() const = 0;
  virtual SysTime SystemNow() const = 0;
};

// The process's real clocks.
class RealClock final : public Clock {
 public:
  MonoTime Now() const override { return MonoClock::now(); }
  SysTime SystemNow() const override { return std::chrono::system_clock::now(); }
};

// Randomness for jitter and request ids. Not thread-safe: each thread that needs
// randomness owns its own instance.
class Random {
 public:
  virtual ~Random() = default;
  // Uniform in [0, 1).
  virtual double Uniform() = 0;
  virtual uint64_t Next64() = 0;
};

// A seeded Mersenne twister; seeded from std::random_device by default.
class RealRandom final : public Random {
 public:
  RealRandom();
  explicit RealRandom(uint64_t seed) : engine_(seed) {}
  double Uniform() override;
  uint64_t Next64() override { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

// A random (version 4) UUID in its canonical lowercase 8-4-4-4-12 form.
std::string NewUuidV4(Random& random);

// RFC 3339 UTC with milliseconds: 2026-11-28T13:12:52.123Z.
std::string FormatRfc3339Millis(SysTime t);

// Whole seconds since the Unix epoch.
inline int64_t UnixSeconds(SysTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace tokend
