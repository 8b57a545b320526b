#include "tokend/backoff.h"

#include <algorithm>
#include <cmath>

namespace tokend {

namespace {

Millis Scaled(Millis d, double factor) {
  return Millis(static_cast<Millis::rep>(std::llround(static_cast<double>(d.count()) * factor)));
}

}  // namespace

Millis BackoffCap(const BackoffOptions& options, int failures, Millis previous) {
  if (options.jitter == JitterKind::kDecorrelated) {
    Millis prev = std::max(previous, options.initial);
    double bound = 3.0 * static_cast<double>(prev.count());
    return std::min(options.max, bound >= static_cast<double>(options.max.count())
                                     ? options.max
                                     : Millis(static_cast<Millis::rep>(bound)));
  }
  // initial * multiplier^(failures-1), computed in double and clamped before it
  // can overflow.
  int exponent = std::max(0, failures - 1);
  double bound = static_cast<double>(options.initial.count()) *
                 std::pow(std::max(1.0, options.multiplier), exponent);
  if (!std::isfinite(bound) || bound >= static_cast<double>(options.max.count())) {
    return options.max;
  }
  return Millis(static_cast<Millis::rep>(bound));
}

Millis BackoffDelay(const BackoffOptions& options, int failures, Millis previous,
                    Random& random) {
  Millis cap = BackoffCap(options, failures, previous);
  switch (options.jitter) {
    case JitterKind::kNone:
      return cap;
    case JitterKind::kFull:
      return Scaled(cap, random.Uniform());
    case JitterKind::kEqual:
      return cap / 2 + Scaled(cap - cap / 2, random.Uniform());
    case JitterKind::kDecorrelated: {
      Millis low = std::min(options.initial, cap);
      return low + Scaled(cap - low, random.Uniform());
    }
  }
  return cap;
}

}  // namespace tokend
