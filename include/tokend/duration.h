#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "tokend/clock.h"

namespace tokend {

// The largest duration ParseDuration accepts: 365 days. Anything longer in a
// config or on a command line is a typo, and rejecting it keeps every later
// `now + d` far away from overflow.
inline constexpr Millis kMaxDuration = Millis(365LL * 24 * 60 * 60 * 1000);

// Parses "<number><unit>" with unit ms, s, m or h ("250ms", "15s", "1.5m", "1h",
// "0s"). The number is decimal digits with an optional fraction ("1.5s"; not ".5s").
// Returns nullopt on anything else: empty, no unit, a sign (so negatives), an
// unknown or upper-case unit, whitespace, a value that is not a whole number of
// milliseconds ("1.5ms", "0.0001s"), or more than kMaxDuration.
std::optional<Millis> ParseDuration(std::string_view text);

// A human form for operators, two units at most, smaller units truncated toward zero:
//   |d| >= 1h  -> "XhYYm"  ("11h58m", "1h00m", "100h00m")
//   |d| >= 1m  -> "XmYYs"  ("4m05s")
//   |d| >= 1s  -> "Xs"     ("12s"; 12.9 s shows as "12s")
//   otherwise  -> "Xms"    ("850ms", "0ms")
// A negative duration is the form of its magnitude with a leading "-" ("-3s").
std::string FormatDuration(Millis d);

}  // namespace tokend
