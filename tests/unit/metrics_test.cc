#include "tokend/metrics.h"

#include <gtest/gtest.h>

#include "simulated_clock.h"

namespace tokend {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(MetricsTest, AttemptsAndHistogramCountExactly) {
  RefreshMetrics refresh;
  refresh.RecordAttempt("a", AttemptKind::kOk, Millis(40));
  refresh.RecordAttempt("a", AttemptKind::kHttp5xx, Millis(600));
  refresh.RecordAttempt("a", AttemptKind::kHttp5xx, Millis(700));
  refresh.RecordAttempt("b", AttemptKind::kTimeout, Millis(60000));
  MetricsSources sources;
  sources.refresh = &refresh;
  std::string text = RenderMetrics(sources);
  EXPECT_TRUE(Has(text, "tokend_refresh_attempts_total{tenant=\"a\",outcome=\"ok\"} 1"));
  EXPECT_TRUE(Has(text, "tokend_refresh_attempts_total{tenant=\"a\",outcome=\"http_5xx\"} 2"));
  EXPECT_TRUE(Has(text, "tokend_refresh_attempts_total{tenant=\"b\",outcome=\"timeout\"} 1"));
  EXPECT_TRUE(Has(text, "tokend_refresh_duration_seconds_bucket{le=\"0.05\"} 1"));
  EXPECT_TRUE(Has(text, "tokend_refresh_duration_seconds_bucket{le=\"0.5\"} 1"));
  EXPECT_TRUE(Has(text, "tokend_refresh_duration_seconds_bucket{le=\"1\"} 3"));
  EXPECT_TRUE(Has(text, "tokend_refresh_duration_seconds_bucket{le=\"30\"} 3"));
  EXPECT_TRUE(Has(text, "tokend_refresh_duration_seconds_bucket{le=\"+Inf\"} 4"));
  EXPECT_TRUE(Has(text, "tokend_refresh_duration_seconds_count 4"));

  refresh.Retain({"b"});
  text = RenderMetrics(sources);
  EXPECT_EQ(text.find("tenant=\"a\""), std::string::npos);
}

TEST(MetricsTest, TokenGaugesFollowTheStore) {
  SimulatedClock clock;
  TokenStore store(Millis(60000));
  store.SetTenants({"a", "b"});
  auto token = std::make_shared<Token>();
  token->access_token = "secret-token";
  token->expires = clock.Now() + Millis(3600000);
  token->expires_at_unix = 1800003600;
  TenantView view;
  view.tenant = "a";
  view.token = token;
  store.Publish(view);
  MetricsSources sources;
  sources.store = &store;
  sources.now = clock.Now();
  sources.limit = {4, 3, 2, 1};
  std::string text = RenderMetrics(sources);
  EXPECT_TRUE(Has(text, "tokend_token_valid{tenant=\"a\"} 1"));
  EXPECT_TRUE(Has(text, "tokend_token_valid{tenant=\"b\"} 0"));
  EXPECT_TRUE(Has(text, "tokend_token_expiry_timestamp_seconds{tenant=\"a\"} 1800003600"));
  EXPECT_TRUE(Has(text, "tokend_concurrency_limit 3"));
  EXPECT_TRUE(Has(text, "tokend_refresh_in_flight 2"));
  EXPECT_TRUE(Has(text, "tokend_refresh_waiting 1"));
  EXPECT_EQ(text.find("secret-token"), std::string::npos);

  sources.now = clock.Now() + Millis(3600000 - 60000);  // inside the margin
  EXPECT_TRUE(Has(RenderMetrics(sources), "tokend_token_valid{tenant=\"a\"} 0"));
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  SocketCounters socket;
  socket.requests.push_back({"we\"ird\\op\n", "ok", 1});
  socket.connections_open = 3;
  MetricsSources sources;
  sources.socket = &socket;
  std::string text = RenderMetrics(sources);
  EXPECT_TRUE(Has(text, "tokend_socket_requests_total{op=\"we\\\"ird\\\\op\\n\",result=\"ok\"} 1"));
  EXPECT_TRUE(Has(text, "tokend_socket_connections 3"));
}

}  // namespace
}  // namespace tokend
