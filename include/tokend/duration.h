#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "tokend/clock.h"

namespace tokend {

// Parses "<number><unit>" with unit ms, s, m or h ("250ms", "15s", "1.5m", "1h").
// Returns nullopt on anything else: no unit, negative, unknown unit, overflow.
std::optional<Millis> ParseDuration(std::string_view text);

// A human form for operators: "11h58m", "4m05s", "12s", "850ms", "-3s".
std::string FormatDuration(Millis d);

}  // namespace tokend
