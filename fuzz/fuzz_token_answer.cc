// Fuzzes the token endpoint's answer: ParseTokenAnswer and ParseRetryAfter.
//
// Input: the HTTP status as decimal text on the first line, the Retry-After
// header value on the second, the body after that (readable seeds: see
// fuzz/corpus/token_answer/).

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "tokend/token_client.h"

namespace {

using tokend::AttemptClass;
using tokend::AttemptKind;
using tokend::Millis;

constexpr int64_t kMaxExpiresInS = 365LL * 24 * 3600;
constexpr Millis kMaxRetryAfter = Millis(24LL * 3600 * 1000);

void Require(bool condition) {
  if (!condition) std::abort();
}

std::string_view NextLine(std::string_view& in) {
  size_t nl = in.find('\n');
  std::string_view line = in.substr(0, nl);
  in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
  return line;
}

bool NoControlCharacters(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string_view status_text = NextLine(in);
  int status = 0;
  for (char c : status_text.substr(0, 3)) status = status * 10 + (static_cast<unsigned char>(c) % 10);
  std::string_view retry_after = NextLine(in);
  const tokend::SysTime now = tokend::SysTime() + std::chrono::seconds(1'800'000'000);

  tokend::TokenResult r = tokend::ParseTokenAnswer(status, in, retry_after, now);
  Require(r.http_status == status);
  if (r.ok()) {
    Require(status >= 200 && status < 300);
    Require(!r.access_token.empty() && !r.token_type.empty());
    Require(r.expires_in_s >= 1 && r.expires_in_s <= kMaxExpiresInS);
    Require(r.Class() == AttemptClass::kSuccess);
  } else {
    Require(r.access_token.empty());
    Require(!r.message.empty());
    Require(r.Class() != AttemptClass::kSuccess);
    // What a server says is logged: it must not be able to forge log lines.
    Require(NoControlCharacters(r.oauth_error) && NoControlCharacters(r.oauth_error_description));
    Require(r.oauth_error.size() <= 103 && r.oauth_error_description.size() <= 203);
  }
  if (status >= 500 && status < 600) Require(r.Class() == AttemptClass::kRetryable);
  if (status == 429) Require(r.kind == AttemptKind::kHttp429);
  if (r.retry_after) Require(*r.retry_after >= Millis(0) && *r.retry_after <= kMaxRetryAfter);

  // The whole input as a Retry-After value, too.
  std::string_view whole(reinterpret_cast<const char*>(data), size);
  if (auto wait = tokend::ParseRetryAfter(whole, now)) {
    Require(*wait >= Millis(0) && *wait <= kMaxRetryAfter);
  }
  return 0;
}
