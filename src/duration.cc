#include "tokend/duration.h"

#include <cstdint>
#include <cstdio>

namespace tokend {

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<Millis> ParseDuration(std::string_view text) {
  size_t i = 0;
  // Integer part: at least one digit. 12 digits is already far beyond kMaxDuration
  // in any unit, so longer inputs are rejected before they can overflow.
  uint64_t whole = 0;
  size_t whole_digits = 0;
  while (i < text.size() && IsDigit(text[i])) {
    if (++whole_digits > 12) return std::nullopt;
    whole = whole * 10 + static_cast<uint64_t>(text[i] - '0');
    ++i;
  }
  if (whole_digits == 0) return std::nullopt;

  // Optional fraction: kept as numerator / 10^digits; trailing zeros are harmless.
  uint64_t frac = 0;
  uint64_t frac_scale = 1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t frac_digits = 0;
    while (i < text.size() && IsDigit(text[i])) {
      if (++frac_digits > 9) return std::nullopt;
      frac = frac * 10 + static_cast<uint64_t>(text[i] - '0');
      frac_scale *= 10;
      ++i;
    }
    if (frac_digits == 0) return std::nullopt;
  }

  const std::string_view unit = text.substr(i);
  uint64_t unit_ms = 0;
  if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "s") {
    unit_ms = 1000;
  } else if (unit == "m") {
    unit_ms = 60 * 1000;
  } else if (unit == "h") {
    unit_ms = 60 * 60 * 1000;
  } else {
    return std::nullopt;
  }

  // whole < 10^12 and unit_ms <= 3.6e6, so the product fits in 64 bits;
  // frac < 10^9 likewise.
  const uint64_t frac_ms_scaled = frac * unit_ms;
  if (frac_ms_scaled % frac_scale != 0) return std::nullopt;  // sub-millisecond
  const uint64_t total = whole * unit_ms + frac_ms_scaled / frac_scale;
  if (total > static_cast<uint64_t>(kMaxDuration.count())) return std::nullopt;
  return Millis(static_cast<int64_t>(total));
}

std::string FormatDuration(Millis d) {
  const int64_t count = d.count();
  // The magnitude as unsigned, so that Millis::min() does not overflow.
  const uint64_t ms =
      count < 0 ? uint64_t{0} - static_cast<uint64_t>(count) : static_cast<uint64_t>(count);
  const char* sign = count < 0 ? "-" : "";
  constexpr uint64_t kSecond = 1000;
  constexpr uint64_t kMinute = 60 * kSecond;
  constexpr uint64_t kHour = 60 * kMinute;

  char out[64];
  if (ms >= kHour) {
    std::snprintf(out, sizeof out, "%s%lluh%02llum", sign,
                  static_cast<unsigned long long>(ms / kHour),
                  static_cast<unsigned long long>(ms % kHour / kMinute));
  } else if (ms >= kMinute) {
    std::snprintf(out, sizeof out, "%s%llum%02llus", sign,
                  static_cast<unsigned long long>(ms / kMinute),
                  static_cast<unsigned long long>(ms % kMinute / kSecond));
  } else if (ms >= kSecond) {
    std::snprintf(out, sizeof out, "%s%llus", sign, static_cast<unsigned long long>(ms / kSecond));
  } else {
    std::snprintf(out, sizeof out, "%s%llums", sign, static_cast<unsigned long long>(ms));
  }
  return out;
}

}  // namespace tokend
