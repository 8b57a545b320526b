// Pure interpretation of a token endpoint's HTTP answer (SPEC §4): kind, class,
// token fields, OAuth error fields, Retry-After.

#include <charconv>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "tokend/token_client.h"

namespace tokend {
namespace {

// A token may not live longer than this, whatever the server says.
constexpr int64_t kMaxExpiresInS = 31536000;  // one year
// A Retry-After longer than this is treated as this.
constexpr int64_t kMaxRetryAfterS = 24 * 3600;
constexpr size_t kMaxErrorChars = 100;
constexpr size_t kMaxDescriptionChars = 200;

std::string_view Trim(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// Keeps at most `max` bytes without splitting a UTF-8 sequence, and turns control
// characters into spaces so a server cannot forge log lines.
std::string Sanitize(std::string_view s, size_t max) {
  bool truncated = false;
  if (s.size() > max) {
    size_t cut = max;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    s = s.substr(0, cut);
    truncated = true;
  }
  std::string out;
  out.reserve(s.size() + 3);
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7F ? ' ' : c);
  }
  if (truncated) out += "...";
  return out;
}

int MonthIndex(std::string_view name) {
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; ++i) {
    if (name == kMonths[i]) return i;
  }
  return -1;
}

bool ParseInt(std::string_view s, int& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// "HH:MM:SS"
bool ParseClock(std::string_view s, std::tm& tm) {
  return s.size() == 8 && s[2] == ':' && s[5] == ':' && ParseInt(s.substr(0, 2), tm.tm_hour) &&
         ParseInt(s.substr(3, 2), tm.tm_min) && ParseInt(s.substr(6, 2), tm.tm_sec) &&
         tm.tm_hour < 24 && tm.tm_min < 60 && tm.tm_sec <= 60;
}

// The three HTTP-date forms of RFC 9110 §5.6.7, always GMT:
//   IMF-fixdate  Sun, 06 Nov 1994 08:49:37 GMT
//   RFC 850      Sunday, 06-Nov-94 08:49:37 GMT
//   asctime      Sun Nov  6 08:49:37 1994
std::optional<int64_t> ParseHttpDate(std::string_view s) {
  std::tm tm{};
  int year = 0;
  auto comma = s.find(',');
  if (comma != std::string_view::npos) {
    std::string_view rest = Trim(s.substr(comma + 1));
    if (rest.size() == 24 && rest[2] == ' ' && rest[6] == ' ' && rest[11] == ' ' &&
        rest.substr(20) == " GMT") {
      // 06 Nov 1994 08:49:37 GMT
      if (!ParseInt(rest.substr(0, 2), tm.tm_mday) || !ParseInt(rest.substr(7, 4), year) ||
          !ParseClock(rest.substr(12, 8), tm)) {
        return std::nullopt;
      }
      tm.tm_mon = MonthIndex(rest.substr(3, 3));
    } else if (rest.size() == 22 && rest[2] == '-' && rest[6] == '-' && rest[9] == ' ' &&
               rest.substr(18) == " GMT") {
      // 06-Nov-94 08:49:37 GMT; two-digit years: 70..99 -> 19xx, else 20xx.
      if (!ParseInt(rest.substr(0, 2), tm.tm_mday) || !ParseInt(rest.substr(7, 2), year) ||
          !ParseClock(rest.substr(10, 8), tm)) {
        return std::nullopt;
      }
      year += year >= 70 ? 1900 : 2000;
      tm.tm_mon = MonthIndex(rest.substr(3, 3));
    } else {
      return std::nullopt;
    }
  } else if (s.size() == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ') {
    // Sun Nov  6 08:49:37 1994
    std::string_view day = Trim(s.substr(8, 2));
    if (!ParseInt(day, tm.tm_mday) || !ParseClock(s.substr(11, 8), tm) ||
        !ParseInt(s.substr(20, 4), year)) {
      return std::nullopt;
    }
    tm.tm_mon = MonthIndex(s.substr(4, 3));
  } else {
    return std::nullopt;
  }
  if (tm.tm_mon < 0 || tm.tm_mday < 1 || tm.tm_mday > 31 || year < 1900 || year > 9999) {
    return std::nullopt;
  }
  tm.tm_year = year - 1900;
  return static_cast<int64_t>(timegm(&tm));
}

// A positive lifetime in whole seconds from a JSON number or numeric string.
std::optional<int64_t> ExpiresIn(const nlohmann::json& value) {
  double seconds = 0;
  if (value.is_number()) {
    seconds = value.get<double>();
  } else if (value.is_string()) {
    std::string_view text = Trim(value.get_ref<const std::string&>());
    if (text.empty()) return std::nullopt;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (ptr != text.data() + text.size()) return std::nullopt;
    if (ec == std::errc::result_out_of_range) {
      seconds = text.front() == '-' ? -1 : HUGE_VAL;
    } else if (ec != std::errc()) {
      return std::nullopt;
    }
  } else {
    return std::nullopt;
  }
  if (std::isnan(seconds) || seconds < 1) return std::nullopt;
  if (seconds >= static_cast<double>(kMaxExpiresInS)) return kMaxExpiresInS;
  return static_cast<int64_t>(seconds);
}

void ParseSuccess(std::string_view body, TokenResult& result) {
  result.kind = AttemptKind::kBadResponse;
  nlohmann::json json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    result.message = "answer is not JSON (HTTP " + std::to_string(result.http_status) + ")";
    return;
  }
  if (!json.is_object()) {
    result.message = "answer is not a JSON object";
    return;
  }
  auto token = json.find("access_token");
  if (token == json.end() || !token->is_string() || token->get_ref<const std::string&>().empty()) {
    result.message = "answer has no access_token";
    return;
  }
  std::string token_type = "Bearer";
  if (auto type = json.find("token_type"); type != json.end() && !type->is_null()) {
    if (!type->is_string() || type->get_ref<const std::string&>().empty()) {
      result.message = "token_type is not a string";
      return;
    }
    token_type = type->get<std::string>();
  }
  auto expires = json.find("expires_in");
  if (expires == json.end() || expires->is_null()) {
    result.message = "answer has no expires_in";
    return;
  }
  std::optional<int64_t> lifetime = ExpiresIn(*expires);
  if (!lifetime) {
    result.message = "expires_in is not a positive number";
    return;
  }
  result.kind = AttemptKind::kOk;
  result.access_token = token->get<std::string>();
  result.token_type = std::move(token_type);
  result.expires_in_s = *lifetime;
}

void ParseError(std::string_view body, TokenResult& result) {
  int status = result.http_status;
  result.kind = status == 429  ? AttemptKind::kHttp429
                : status < 500 ? AttemptKind::kHttp4xx
                               : AttemptKind::kHttp5xx;
  nlohmann::json json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_object()) {
    if (auto error = json.find("error"); error != json.end() && error->is_string()) {
      result.oauth_error = Sanitize(error->get_ref<const std::string&>(), kMaxErrorChars);
    }
    if (auto description = json.find("error_description");
        description != json.end() && description->is_string()) {
      result.oauth_error_description =
          Sanitize(description->get_ref<const std::string&>(), kMaxDescriptionChars);
    }
  }
  result.message = "HTTP " + std::to_string(status);
  if (!result.oauth_error.empty()) result.message += " " + result.oauth_error;
  if (!result.oauth_error_description.empty()) {
    result.message += ": " + result.oauth_error_description;
  }
}

}  // namespace

const char* ToString(AttemptKind kind) {
  switch (kind) {
    case AttemptKind::kOk:
      return "ok";
    case AttemptKind::kHttp4xx:
      return "http_4xx";
    case AttemptKind::kHttp429:
      return "http_429";
    case AttemptKind::kHttp5xx:
      return "http_5xx";
    case AttemptKind::kTimeout:
      return "timeout";
    case AttemptKind::kNetwork:
      return "network";
    case AttemptKind::kBadResponse:
      return "bad_response";
  }
  return "unknown";
}

AttemptClass TokenResult::Class() const {
  if (kind == AttemptKind::kOk) return AttemptClass::kSuccess;
  // 408 Request Timeout and 429 are 4xx that a later attempt may well get past.
  if (http_status == 408 || http_status == 429) return AttemptClass::kRetryable;
  // A redirect means token_url is wrong (e.g. http -> https, a moved endpoint);
  // retrying soon will not change that, and redirects are never followed.
  if (http_status >= 300 && http_status < 400) return AttemptClass::kPermanent;
  if (kind == AttemptKind::kHttp4xx) return AttemptClass::kPermanent;
  return AttemptClass::kRetryable;
}

std::optional<Millis> ParseRetryAfter(std::string_view value, SysTime now) {
  value = Trim(value);
  if (value.empty()) return std::nullopt;
  if (value.find_first_not_of("0123456789") == std::string_view::npos) {
    int64_t seconds = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec == std::errc::result_out_of_range || (ec == std::errc() && seconds > kMaxRetryAfterS)) {
      seconds = kMaxRetryAfterS;
    } else if (ec != std::errc() || ptr != value.data() + value.size()) {
      return std::nullopt;
    }
    return Millis(seconds * 1000);
  }
  std::optional<int64_t> date = ParseHttpDate(value);
  if (!date) return std::nullopt;
  auto now_ms = std::chrono::duration_cast<Millis>(now.time_since_epoch()).count();
  int64_t wait_ms = *date * 1000 - now_ms;
  if (wait_ms < 0) wait_ms = 0;
  if (wait_ms > kMaxRetryAfterS * 1000) wait_ms = kMaxRetryAfterS * 1000;
  return Millis(wait_ms);
}

TokenResult ParseTokenAnswer(int http_status, std::string_view body,
                             std::string_view retry_after_header, SysTime now) {
  TokenResult result;
  result.http_status = http_status;
  if (!retry_after_header.empty()) result.retry_after = ParseRetryAfter(retry_after_header, now);
  if (http_status >= 200 && http_status < 300) {
    ParseSuccess(body, result);
  } else if (http_status >= 400 && http_status < 600) {
    ParseError(body, result);
  } else if (http_status >= 300 && http_status < 400) {
    result.kind = AttemptKind::kNetwork;
    result.message = "redirect not followed (HTTP " + std::to_string(http_status) + ")";
  } else {
    result.kind = AttemptKind::kNetwork;
    result.message = "unexpected HTTP status " + std::to_string(http_status);
  }
  return result;
}

}  // namespace tokend
