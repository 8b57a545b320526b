#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "tokend/token_client.h"

namespace tokend {
namespace {

// 2026-11-28T13:12:52Z
const SysTime kNow = SysTime(std::chrono::seconds(1795871572));

TokenResult Parse(int status, std::string_view body, std::string_view retry_after = "") {
  return ParseTokenAnswer(status, body, retry_after, kNow);
}

TEST(AttemptKindTest, NamesAreTheMetricLabels) {
  EXPECT_STREQ(ToString(AttemptKind::kOk), "ok");
  EXPECT_STREQ(ToString(AttemptKind::kHttp4xx), "http_4xx");
  EXPECT_STREQ(ToString(AttemptKind::kHttp429), "http_429");
  EXPECT_STREQ(ToString(AttemptKind::kHttp5xx), "http_5xx");
  EXPECT_STREQ(ToString(AttemptKind::kTimeout), "timeout");
  EXPECT_STREQ(ToString(AttemptKind::kNetwork), "network");
  EXPECT_STREQ(ToString(AttemptKind::kBadResponse), "bad_response");
}

TEST(TokenResultClassTest, FollowsSpecAnswerClasses) {
  EXPECT_EQ(Parse(200, R"({"access_token":"t","expires_in":60})").Class(), AttemptClass::kSuccess);
  for (int status : {408, 429, 500, 502, 503, 504, 599}) {
    EXPECT_EQ(Parse(status, "").Class(), AttemptClass::kRetryable) << status;
  }
  for (int status : {400, 401, 403, 404, 405, 418, 451}) {
    EXPECT_EQ(Parse(status, "").Class(), AttemptClass::kPermanent) << status;
  }
  EXPECT_EQ(Parse(200, "garbage").Class(), AttemptClass::kRetryable);
  EXPECT_EQ(Parse(302, "").Class(), AttemptClass::kPermanent);

  TokenResult timeout;
  timeout.kind = AttemptKind::kTimeout;
  EXPECT_EQ(timeout.Class(), AttemptClass::kRetryable);
  TokenResult network;
  network.kind = AttemptKind::kNetwork;
  EXPECT_EQ(network.Class(), AttemptClass::kRetryable);
}

TEST(TokenResultClassTest, Status408IsA4xxKindButRetryable) {
  TokenResult r = Parse(408, "");
  EXPECT_EQ(r.kind, AttemptKind::kHttp4xx);
  EXPECT_EQ(r.Class(), AttemptClass::kRetryable);
}

TEST(ParseTokenAnswerTest, GoodAnswer) {
  TokenResult r =
      Parse(200, R"({"access_token":"tok-abc","token_type":"bearer","expires_in":86400})");
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.http_status, 200);
  EXPECT_EQ(r.access_token, "tok-abc");
  EXPECT_EQ(r.token_type, "bearer");
  EXPECT_EQ(r.expires_in_s, 86400);
  EXPECT_TRUE(r.message.empty());
}

TEST(ParseTokenAnswerTest, TokenTypeDefaultsToBearer) {
  TokenResult r = Parse(200, R"({"access_token":"t","expires_in":300})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.token_type, "Bearer");
}

TEST(ParseTokenAnswerTest, ExpiresInMayBeANumericStringOrFraction) {
  EXPECT_EQ(Parse(200, R"({"access_token":"t","expires_in":"3600"})").expires_in_s, 3600);
  EXPECT_EQ(Parse(200, R"({"access_token":"t","expires_in":" 120 "})").expires_in_s, 120);
  EXPECT_EQ(Parse(200, R"({"access_token":"t","expires_in":299.9})").expires_in_s, 299);
}

TEST(ParseTokenAnswerTest, HugeExpiresInIsCappedAtOneYear) {
  EXPECT_EQ(Parse(200, R"({"access_token":"t","expires_in":1e30})").expires_in_s, 31536000);
  EXPECT_EQ(Parse(200, R"({"access_token":"t","expires_in":"1e400"})").expires_in_s, 31536000);
  EXPECT_EQ(Parse(200, R"({"access_token":"t","expires_in":99999999999999999999999})").expires_in_s,
            31536000);
}

TEST(ParseTokenAnswerTest, BadExpiresInIsABadResponse) {
  for (const char* value :
       {"0", "-5", "0.5", "\"abc\"", "\"\"", "\"-1\"", "null", "true", "[]", "{}", "\"12abc\""}) {
    std::string body = std::string(R"({"access_token":"secret-token","expires_in":)") + value + "}";
    TokenResult r = Parse(200, body);
    EXPECT_EQ(r.kind, AttemptKind::kBadResponse) << value;
    EXPECT_NE(r.message.find("expires_in"), std::string::npos) << r.message;
    EXPECT_EQ(r.message.find("secret-token"), std::string::npos) << r.message;
    EXPECT_TRUE(r.access_token.empty());
  }
  TokenResult missing = Parse(200, R"({"access_token":"t"})");
  EXPECT_EQ(missing.kind, AttemptKind::kBadResponse);
  EXPECT_EQ(missing.message, "answer has no expires_in");
}

TEST(ParseTokenAnswerTest, MissingOrEmptyAccessTokenIsABadResponse) {
  for (const char* body :
       {R"({"expires_in":60})", R"({"access_token":"","expires_in":60})",
        R"({"access_token":42,"expires_in":60})", R"({"access_token":null,"expires_in":60})"}) {
    TokenResult r = Parse(200, body);
    EXPECT_EQ(r.kind, AttemptKind::kBadResponse) << body;
    EXPECT_EQ(r.message, "answer has no access_token");
  }
}

TEST(ParseTokenAnswerTest, NonStringTokenTypeIsABadResponse) {
  TokenResult r = Parse(200, R"({"access_token":"t","token_type":7,"expires_in":60})");
  EXPECT_EQ(r.kind, AttemptKind::kBadResponse);
}

TEST(ParseTokenAnswerTest, NonJsonOrNonObjectBodiesAreBadResponses) {
  for (const char* body :
       {"", "not json", "<html>502</html>", "[1,2]", "\"tok\"", "{\"a\":", "\xff\xfe"}) {
    TokenResult r = Parse(200, body);
    EXPECT_EQ(r.kind, AttemptKind::kBadResponse) << body;
    EXPECT_EQ(r.Class(), AttemptClass::kRetryable);
    EXPECT_FALSE(r.message.empty());
    if (std::string_view(body).size() > 3) {
      EXPECT_EQ(r.message.find(body), std::string::npos) << "body leaked: " << r.message;
    }
  }
  EXPECT_EQ(Parse(204, "").kind, AttemptKind::kBadResponse);
}

TEST(ParseTokenAnswerTest, OAuthErrorFieldsAreKept) {
  TokenResult r = Parse(401, R"({"error":"invalid_client","error_description":"bad secret"})");
  EXPECT_EQ(r.kind, AttemptKind::kHttp4xx);
  EXPECT_EQ(r.http_status, 401);
  EXPECT_EQ(r.oauth_error, "invalid_client");
  EXPECT_EQ(r.oauth_error_description, "bad secret");
  EXPECT_EQ(r.message, "HTTP 401 invalid_client: bad secret");
  EXPECT_EQ(r.Class(), AttemptClass::kPermanent);

  TokenResult scope = Parse(400, R"({"error":"invalid_scope"})");
  EXPECT_EQ(scope.oauth_error, "invalid_scope");
  EXPECT_EQ(scope.message, "HTTP 400 invalid_scope");
}

TEST(ParseTokenAnswerTest, ErrorsWithoutOAuthFieldsSayOnlyTheStatus) {
  TokenResult gateway = Parse(504, "<html><body>504 Gateway Time-out</body></html>");
  EXPECT_EQ(gateway.kind, AttemptKind::kHttp5xx);
  EXPECT_EQ(gateway.message, "HTTP 504");
  EXPECT_TRUE(gateway.oauth_error.empty());

  TokenResult other = Parse(503, R"({"message":"maintenance","access_token":"x"})");
  EXPECT_EQ(other.message, "HTTP 503");
  EXPECT_TRUE(other.access_token.empty());
}

TEST(ParseTokenAnswerTest, LongOrControlCharDescriptionsAreTrimmed) {
  std::string body =
      R"({"error":"invalid_request","error_description":")" + std::string(1000, 'x') + R"("})";
  TokenResult r = Parse(400, body);
  EXPECT_LE(r.oauth_error_description.size(), 210u);
  EXPECT_LT(r.message.size(), 300u);

  TokenResult injected =
      Parse(400, R"({"error":"bad\nline","error_description":"a\r\nlevel=error b"})");
  EXPECT_EQ(injected.oauth_error.find('\n'), std::string::npos);
  EXPECT_EQ(injected.oauth_error_description.find('\n'), std::string::npos);
}

TEST(ParseTokenAnswerTest, TruncationKeepsUtf8Whole) {
  std::string description;
  for (int i = 0; i < 150; ++i) description += "\xc3\xa9";  // é, 2 bytes each
  TokenResult r = Parse(400, R"({"error":"x","error_description":")" + description + R"("})");
  std::string_view d = r.oauth_error_description;
  ASSERT_GE(d.size(), 3u);
  d.remove_suffix(3);  // "..."
  EXPECT_EQ(d.size() % 2, 0u);
}

TEST(ParseTokenAnswerTest, StatusKinds) {
  EXPECT_EQ(Parse(429, "").kind, AttemptKind::kHttp429);
  EXPECT_EQ(Parse(403, "").kind, AttemptKind::kHttp4xx);
  EXPECT_EQ(Parse(500, "").kind, AttemptKind::kHttp5xx);
  EXPECT_EQ(Parse(502, "{}").kind, AttemptKind::kHttp5xx);
}

TEST(ParseTokenAnswerTest, RedirectsAndOddStatusesAreNetworkKind) {
  TokenResult redirect = Parse(302, "");
  EXPECT_EQ(redirect.kind, AttemptKind::kNetwork);
  EXPECT_EQ(redirect.message, "redirect not followed (HTTP 302)");
  EXPECT_FALSE(redirect.ok());

  TokenResult info = Parse(101, "");
  EXPECT_EQ(info.kind, AttemptKind::kNetwork);
  EXPECT_EQ(info.Class(), AttemptClass::kRetryable);
}

TEST(ParseTokenAnswerTest, RetryAfterIsParsed) {
  TokenResult r = Parse(429, R"({"error":"too_many_requests"})", "2");
  EXPECT_EQ(r.kind, AttemptKind::kHttp429);
  ASSERT_TRUE(r.retry_after.has_value());
  EXPECT_EQ(*r.retry_after, Millis(2000));
  EXPECT_FALSE(Parse(429, "", "").retry_after.has_value());
  EXPECT_FALSE(Parse(429, "", "soon").retry_after.has_value());
}

TEST(ParseRetryAfterTest, DeltaSeconds) {
  EXPECT_EQ(ParseRetryAfter("0", kNow), Millis(0));
  EXPECT_EQ(ParseRetryAfter(" 120 ", kNow), Millis(120000));
  EXPECT_EQ(ParseRetryAfter("999999999999", kNow), Millis(24 * 3600 * 1000));
  EXPECT_EQ(ParseRetryAfter("99999999999999999999999999", kNow), Millis(24 * 3600 * 1000));
}

TEST(ParseRetryAfterTest, Unparseable) {
  for (const char* value : {"", "  ", "-1", "1.5", "abc", "12s", "Sat, 28 Nov 2026",
                            "Sat, 28 Foo 2026 13:12:55 GMT", "Sat, 28 Nov 2026 25:00:00 GMT"}) {
    EXPECT_FALSE(ParseRetryAfter(value, kNow).has_value()) << value;
  }
}

TEST(ParseRetryAfterTest, HttpDatesInAllThreeForms) {
  EXPECT_EQ(ParseRetryAfter("Sat, 28 Nov 2026 13:12:55 GMT", kNow), Millis(3000));
  EXPECT_EQ(ParseRetryAfter("Saturday, 28-Nov-26 13:13:52 GMT", kNow), Millis(60000));
  EXPECT_EQ(ParseRetryAfter("Sat Nov 28 13:12:53 2026", kNow), Millis(1000));
  EXPECT_EQ(ParseRetryAfter("Sun Nov  1 00:00:00 2026", kNow), Millis(0));
}

TEST(ParseRetryAfterTest, PastDateIsZeroAndFarFutureIsCapped) {
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", kNow), Millis(0));
  EXPECT_EQ(ParseRetryAfter("Fri, 01 Jan 2100 00:00:00 GMT", kNow), Millis(24 * 3600 * 1000));
}

TEST(ParseRetryAfterTest, DateIsRelativeToMillisecondNow) {
  SysTime now = kNow + Millis(250);
  EXPECT_EQ(ParseRetryAfter("Sat, 28 Nov 2026 13:12:55 GMT", now), Millis(2750));
}

}  // namespace
}  // namespace tokend
