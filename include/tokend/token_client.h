#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "tokend/clock.h"
#include "tokend/config.h"

namespace tokend {

// What one token request attempt came to. The names are the `outcome` label of
// tokend_refresh_attempts_total and the `kind` of refresh_failed (SPEC §6, §7).
enum class AttemptKind {
  kOk,
  kHttp4xx,      // 4xx other than 429
  kHttp429,
  kHttp5xx,
  kTimeout,      // connect or total timeout
  kNetwork,      // refused, reset, DNS, TLS, redirect
  kBadResponse,  // 2xx whose body is not a valid token answer, or too large
};
const char* ToString(AttemptKind kind);

// SPEC §4 answer classes.
enum class AttemptClass { kSuccess, kRetryable, kPermanent };

// One attempt's outcome, as a value. Never holds the client secret.
struct TokenResult {
  AttemptKind kind = AttemptKind::kNetwork;
  int http_status = 0;  // 0 when no HTTP answer was received

  // Success only.
  std::string access_token;
  std::string token_type;  // "Bearer" when the answer did not say
  int64_t expires_in_s = 0;

  // Failures: the OAuth error fields of a 4xx body, when present, and a short
  // human-readable description that never contains a secret or a token.
  std::string oauth_error;
  std::string oauth_error_description;
  std::string message;

  std::optional<Millis> retry_after;  // from a Retry-After header
  std::string correlation_id;         // value of http.correlation_header, if any
  std::string request_id;             // the id sent with this attempt, if any
  Millis latency{0};

  AttemptClass Class() const;
  bool ok() const { return kind == AttemptKind::kOk; }
};

// What the scheduler asks for: one attempt for one tenant.
struct TokenRequest {
  std::string tenant;
  std::shared_ptr<const TenantConfig> tenant_config;
  std::string request_id;  // "" = send no request id header
};

// Issues token requests asynchronously. Start() and the callbacks run on the
// thread that drives the client (for the curl client: the thread calling Poll()).
class TokenClient {
 public:
  using Callback = std::function<void(TokenResult)>;
  virtual ~TokenClient() = default;

  // Starts one attempt. `done` is called exactly once, later, unless CancelAll()
  // runs first.
  virtual void Start(TokenRequest request, Callback done) = 0;

  // Aborts every attempt in flight; their callbacks are not called.
  virtual void CancelAll() = 0;
};

// Turns an HTTP answer into a TokenResult (kind, token fields or OAuth error
// fields). Pure; never throws; safe on any bytes. `now` resolves an HTTP-date
// Retry-After.
TokenResult ParseTokenAnswer(int http_status, std::string_view body,
                             std::string_view retry_after_header, SysTime now);

// Parses a Retry-After value: delta-seconds or an HTTP-date (relative to now;
// a date in the past is 0). nullopt when unparseable.
std::optional<Millis> ParseRetryAfter(std::string_view value, SysTime now);

}  // namespace tokend
