#include "tokend/refresh_scheduler.h"

#include <set>

#include <gtest/gtest.h>

#include "fakes.h"

namespace tokend {
namespace {

using std::chrono::seconds;

TenantConfig MakeTenant(const std::string& id) {
  TenantConfig t;
  t.id = id;
  t.client_id = "client-" + id;
  t.client_secret = "secret-" + id;
  t.token_url = "https://login.example.test/oauth/token";
  return t;
}

std::vector<TenantConfig> MakeTenants(int n) {
  std::vector<TenantConfig> out;
  for (int i = 0; i < n; ++i) out.push_back(MakeTenant("t" + std::to_string(i)));
  return out;
}

class RefreshSchedulerTest : public ::testing::Test {
 protected:
  RefreshSchedulerTest() : client_(clock_), log_(clock_), store_(seconds(60)) {
    options_.refresh.max_concurrent = 4;
    options_.refresh.adaptive = false;
    options_.refresh.at = 0.5;
    options_.refresh.jitter = 0.1;
    options_.refresh.expiry_margin = seconds(60);
    options_.refresh.startup_spread = seconds(5);
    options_.backoff.initial = seconds(1);
    options_.backoff.max = seconds(120);
    options_.backoff.multiplier = 2.0;
    options_.backoff.jitter = JitterKind::kNone;
    options_.backoff.permanent_error_retry = seconds(600);
  }

  RefreshScheduler& Scheduler() {
    if (!scheduler_) {
      scheduler_ = std::make_unique<RefreshScheduler>(clock_, random_, client_, store_,
                                                      log_.log, options_);
    }
    return *scheduler_;
  }

  // Runs the scheduler until `until`, jumping from timer to timer, as the engine does.
  void RunUntil(MonoTime until) {
    for (int guard = 0; guard < 100000; ++guard) {
      MonoTime next = Scheduler().RunDue();
      if (next > until) break;
      clock_.AdvanceTo(next);
    }
    clock_.AdvanceTo(until);
    Scheduler().RunDue();
  }
  void RunFor(Millis d) { RunUntil(clock_.Now() + d); }

  TenantState State(const std::string& id) { return store_.Find(id)->state; }

  SimulatedClock clock_;
  ScriptedRandom random_;
  FakeTokenClient client_;
  CapturedLog log_;
  TokenStore store_;
  SchedulerOptions options_;
  std::unique_ptr<RefreshScheduler> scheduler_;
};

TEST_F(RefreshSchedulerTest, FirstRequestsAreSpreadOverStartupSpread) {
  options_.refresh.max_concurrent = 10;
  random_.Set({0.0, 0.25, 0.5, 0.75, 0.999});
  MonoTime start = clock_.Now();
  Scheduler().SetTenants(MakeTenants(5));

  // Given five tenants spread at 0, 1.25, 2.5, 3.75 and ~5 s: each starts at its own time.
  Scheduler().RunDue();
  EXPECT_EQ(client_.started.size(), 1u);
  RunUntil(start + Millis(1249));
  EXPECT_EQ(client_.started.size(), 1u);
  RunUntil(start + Millis(1250));
  EXPECT_EQ(client_.started.size(), 2u);
  RunUntil(start + Millis(4000));
  EXPECT_EQ(client_.started.size(), 4u);
  RunUntil(start + seconds(5));
  EXPECT_EQ(client_.started.size(), 5u);
  EXPECT_EQ(State("t0"), TenantState::kPending);
}

TEST_F(RefreshSchedulerTest, RefreshesAtFractionOfLifetimeWithinJitter) {
  options_.refresh.startup_spread = Millis(0);
  for (double u : {0.0, 0.5, 1.0}) {
    scheduler_.reset();
    client_.in_flight.clear();
    client_.started.clear();
    random_.Set({0.0, u});  // spread, then the refresh jitter draw
    Scheduler().SetTenants({MakeTenant("a")});
    Scheduler().RunDue();
    ASSERT_EQ(client_.started.size(), 1u);
    MonoTime sent = clock_.Now();
    ASSERT_TRUE(client_.Complete(OkResult("tok", 1000)));
    // Lifetime 1000 s: refresh at 500 s ± 100 s, here 400 + 200*u.
    Millis expected = seconds(400) + Millis(static_cast<int64_t>(200000 * u));
    RunUntil(sent + expected - Millis(1));
    EXPECT_EQ(client_.started.size(), 1u) << "u=" << u;
    RunUntil(sent + expected);
    EXPECT_EQ(client_.started.size(), 2u) << "u=" << u;
    EXPECT_EQ(State("a"), TenantState::kFresh);
  }
}

TEST_F(RefreshSchedulerTest, ExpiryCountsFromWhenTheRequestWasSent) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  MonoTime sent = clock_.Now();
  SysTime sent_system = clock_.SystemNow();
  clock_.Advance(seconds(10));  // a slow answer
  ASSERT_TRUE(client_.Complete(OkResult("tok", 3600)));

  auto token = store_.Servable("a", clock_.Now());
  ASSERT_TRUE(token);
  EXPECT_EQ(token->expires, sent + seconds(3600));
  EXPECT_EQ(token->expires_at_unix, UnixSeconds(sent_system) + 3600);
}

TEST_F(RefreshSchedulerTest, ValidTokenServedWhileRefreshFailsThenWithdrawnAtMargin) {
  options_.refresh.startup_spread = Millis(0);
  options_.backoff.max = seconds(30);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  MonoTime sent = clock_.Now();
  ASSERT_TRUE(client_.Complete(OkResult("tok-1", 600)));

  // Every refresh from now on fails with 504.
  MonoTime margin_start = sent + seconds(600 - 60);
  for (int guard = 0; guard < 1000 && clock_.Now() < margin_start - seconds(1); ++guard) {
    MonoTime next = Scheduler().RunDue();
    if (!client_.in_flight.empty()) {
      client_.Complete(HttpFailure(504, AttemptKind::kHttp5xx));
      continue;
    }
    clock_.AdvanceTo(std::min(next, margin_start - seconds(1)));
  }
  EXPECT_EQ(State("a"), TenantState::kStale);
  auto token = store_.Servable("a", clock_.Now());
  ASSERT_TRUE(token);
  EXPECT_EQ(token->access_token, "tok-1");

  // At the margin the token is no longer served, and the tenant is expired.
  RunUntil(margin_start);
  while (client_.Complete(HttpFailure(504, AttemptKind::kHttp5xx))) {
  }
  EXPECT_FALSE(store_.Servable("a", clock_.Now()));
  EXPECT_FALSE(store_.Find("a")->token);
  EXPECT_EQ(State("a"), TenantState::kExpired);
  EXPECT_EQ(log_.Events("token_expired").size(), 1u);
}

TEST_F(RefreshSchedulerTest, RetryableFailuresBackOffExponentiallyUpToMax) {
  options_.refresh.startup_spread = Millis(0);
  options_.backoff.max = seconds(10);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  // jitter none: waits are 1, 2, 4, 8, 10, 10 s.
  std::vector<int64_t> waits;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(client_.Complete(HttpFailure(504, AttemptKind::kHttp5xx)));
    MonoTime failed_at = clock_.Now();
    MonoTime next = Scheduler().RunDue();
    waits.push_back(std::chrono::duration_cast<Millis>(next - failed_at).count());
    clock_.AdvanceTo(next);
    Scheduler().RunDue();
  }
  EXPECT_EQ(waits, (std::vector<int64_t>{1000, 2000, 4000, 8000, 10000, 10000}));
  auto failed = log_.Events("refresh_failed");
  ASSERT_EQ(failed.size(), 3u);  // later identical ones are logged sparingly
  EXPECT_EQ(failed[2]["retry_in_ms"], 4000);
  EXPECT_EQ(failed[2]["attempt"], 3);
  EXPECT_EQ(failed[2]["kind"], "http_5xx");
  EXPECT_EQ(failed[2]["http_status"], 504);
  EXPECT_EQ(State("a"), TenantState::kPending);

  // Success resets the sequence.
  ASSERT_TRUE(client_.Complete(OkResult("tok", 3600)));
  EXPECT_EQ(State("a"), TenantState::kFresh);
  EXPECT_EQ(store_.Find("a")->consecutive_failures, 0);
}

TEST_F(RefreshSchedulerTest, RetryAfterIsTheLeastWait) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  TokenResult busy = HttpFailure(429, AttemptKind::kHttp429);
  busy.retry_after = seconds(30);
  ASSERT_TRUE(client_.Complete(busy));
  MonoTime failed_at = clock_.Now();
  RunUntil(failed_at + seconds(30) - Millis(1));
  EXPECT_EQ(client_.started.size(), 1u);
  RunUntil(failed_at + seconds(30));
  EXPECT_EQ(client_.started.size(), 2u);
  EXPECT_EQ(log_.Events("refresh_failed")[0]["retry_after_ms"], 30000);
}

TEST_F(RefreshSchedulerTest, PermanentFailureMarksFailedAndWaitsPermanentRetry) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants({MakeTenant("a"), MakeTenant("b")});
  Scheduler().RunDue();
  ASSERT_TRUE(client_.Complete(HttpFailure(401, AttemptKind::kHttp4xx, "invalid_client"), "a"));
  ASSERT_TRUE(client_.Complete(OkResult("tok-b", 3600), "b"));
  EXPECT_EQ(State("a"), TenantState::kFailed);
  EXPECT_EQ(State("b"), TenantState::kFresh);
  auto view = store_.Find("a");
  ASSERT_TRUE(view->last_error);
  EXPECT_EQ(view->last_error->http_status, 401);
  EXPECT_EQ(log_.Events("tenant_failed").size(), 1u);
  EXPECT_EQ(log_.Events("refresh_failed")[0]["oauth_error"], "invalid_client");

  MonoTime failed_at = clock_.Now();
  RunUntil(failed_at + seconds(600) - Millis(1));
  EXPECT_EQ(client_.StartedFor("a"), 1u);
  RunUntil(failed_at + seconds(600));
  EXPECT_EQ(client_.StartedFor("a"), 2u);
}

TEST_F(RefreshSchedulerTest, GlobalLimitIsNeverExceededAndEveryTenantIsServed) {
  options_.refresh.max_concurrent = 3;
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants(MakeTenants(24));
  Scheduler().RunDue();
  EXPECT_EQ(client_.in_flight.size(), 3u);
  EXPECT_EQ(Scheduler().Limit().waiting, 21);
  int completed = 0;
  while (!client_.in_flight.empty() && completed < 100) {
    clock_.Advance(Millis(50));
    client_.Complete(OkResult("tok-" + std::to_string(completed), 3600));
    ++completed;
    EXPECT_LE(Scheduler().Limit().in_flight, 3);
  }
  EXPECT_EQ(completed, 24);
  EXPECT_EQ(client_.max_in_flight, 3u);
  EXPECT_EQ(store_.CountValid(clock_.Now()), (std::pair<size_t, size_t>{24, 24}));
  EXPECT_EQ(Scheduler().Limit().waiting, 0);
}

TEST_F(RefreshSchedulerTest, AtMostOneRequestPerTenantInFlight) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  ASSERT_EQ(client_.InFlightFor("a"), 1u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(Scheduler().RefreshNow("a"));
    Scheduler().RunDue();
  }
  EXPECT_EQ(client_.StartedFor("a"), 1u);
  ASSERT_TRUE(client_.Complete(OkResult("tok", 3600)));
  EXPECT_TRUE(Scheduler().RefreshNow("a"));
  Scheduler().RunDue();
  EXPECT_EQ(client_.StartedFor("a"), 2u);
  EXPECT_FALSE(Scheduler().RefreshNow("nope"));
}

TEST_F(RefreshSchedulerTest, EveryAttemptGetsAFreshRequestId) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client_.Complete(HttpFailure(504, AttemptKind::kHttp5xx)));
    RunFor(seconds(60));
  }
  ASSERT_EQ(client_.started.size(), 4u);
  std::set<std::string> ids;
  for (const auto& r : client_.started) {
    EXPECT_EQ(r.request_id.size(), 36u);
    ids.insert(r.request_id);
  }
  EXPECT_EQ(ids.size(), 4u);
}

TEST_F(RefreshSchedulerTest, TokenNotLongerThanMarginIsAFailure) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  ASSERT_TRUE(client_.Complete(OkResult("tok", 60)));
  EXPECT_FALSE(store_.Servable("a", clock_.Now()));
  auto failed = log_.Events("refresh_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0]["kind"], "bad_response");
}

TEST_F(RefreshSchedulerTest, ReloadKeepsUnchangedRefreshesChangedForgetsRemoved) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants({MakeTenant("a"), MakeTenant("b"), MakeTenant("c")});
  Scheduler().RunDue();
  while (client_.Complete(OkResult("tok", 3600))) {
  }
  ASSERT_EQ(client_.started.size(), 3u);

  TenantConfig b = MakeTenant("b");
  b.client_id = "other";
  Scheduler().SetTenants({MakeTenant("a"), b, MakeTenant("d")});
  Scheduler().RunDue();
  EXPECT_EQ(client_.StartedFor("a"), 1u);  // unchanged: no request
  EXPECT_TRUE(store_.Servable("a", clock_.Now()));
  EXPECT_EQ(client_.StartedFor("b"), 2u);  // changed: at once, old token gone
  EXPECT_FALSE(store_.Servable("b", clock_.Now()));
  EXPECT_FALSE(store_.Known("c"));
  EXPECT_EQ(client_.StartedFor("d"), 1u);
}

TEST_F(RefreshSchedulerTest, ReloadDuringFlightKeepsSingleFlightAndDiscardsOldAnswer) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  TenantConfig changed = MakeTenant("a");
  changed.client_secret = "rotated";
  Scheduler().SetTenants({changed});
  Scheduler().RunDue();
  EXPECT_EQ(client_.StartedFor("a"), 1u);
  ASSERT_TRUE(client_.Complete(OkResult("old-credentials", 3600)));
  EXPECT_FALSE(store_.Servable("a", clock_.Now()));
  Scheduler().RunDue();
  EXPECT_EQ(client_.StartedFor("a"), 2u);
  EXPECT_EQ(client_.started.back().tenant_config->client_secret, "rotated");
}

TEST_F(RefreshSchedulerTest, CancelAllReleasesSlots) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants(MakeTenants(3));
  Scheduler().RunDue();
  EXPECT_EQ(Scheduler().Limit().in_flight, 3);
  Scheduler().CancelAll();
  EXPECT_EQ(Scheduler().Limit().in_flight, 0);
  EXPECT_EQ(client_.cancelled, 3u);
}

TEST_F(RefreshSchedulerTest, NoRequestIdWhenHeaderDisabled) {
  options_.refresh.startup_spread = Millis(0);
  options_.send_request_id = false;
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  ASSERT_EQ(client_.started.size(), 1u);
  EXPECT_EQ(client_.started[0].request_id, "");
}

}  // namespace
}  // namespace tokend

namespace tokend {
namespace {

class RestoreTest : public RefreshSchedulerTest {
 protected:
  PersistedToken Stored(const std::string& id, Millis age, Millis lifetime) {
    int64_t now_ms = std::chrono::duration_cast<Millis>(clock_.SystemNow().time_since_epoch()).count();
    PersistedToken p;
    p.tenant = id;
    p.access_token = "stored-" + id;
    p.token_type = "Bearer";
    p.obtained_unix_ms = now_ms - age.count();
    p.expires_unix_ms = p.obtained_unix_ms + lifetime.count();
    p.fingerprint = EndpointFingerprint(MakeTenant(id));
    return p;
  }
};

TEST_F(RestoreTest, ValidStoredTokensAreServedWithoutRequests) {
  random_.Set({0.5});
  Scheduler().Restore({Stored("a", seconds(100), seconds(3600)), Stored("b", seconds(10), seconds(3600))});
  Scheduler().SetTenants({MakeTenant("a"), MakeTenant("b")});
  RunFor(seconds(60));
  EXPECT_TRUE(client_.started.empty());
  auto a = store_.Servable("a", clock_.Now());
  ASSERT_TRUE(a);
  EXPECT_EQ(a->access_token, "stored-a");
  EXPECT_EQ(State("a"), TenantState::kFresh);
  // Due at half its lifetime from when it was obtained: 1800 - 100 - 60 s from here.
  RunFor(seconds(1800 - 100 - 60) - Millis(1));
  EXPECT_EQ(client_.StartedFor("a"), 0u);
  RunFor(Millis(1));
  EXPECT_EQ(client_.StartedFor("a"), 1u);
}

TEST_F(RestoreTest, OverdueStoredTokenIsServedAndRefreshedWithinSpread) {
  Scheduler().Restore({Stored("a", seconds(3000), seconds(3600))});
  Scheduler().SetTenants({MakeTenant("a")});
  EXPECT_TRUE(store_.Servable("a", clock_.Now()));
  RunFor(options_.refresh.startup_spread);
  EXPECT_EQ(client_.StartedFor("a"), 1u);
}

TEST_F(RestoreTest, ChangedFingerprintExpiredOrUnknownTokensAreDropped) {
  PersistedToken other = Stored("a", seconds(1), seconds(3600));
  other.fingerprint = "0000000000000000";
  Scheduler().Restore({other, Stored("b", seconds(3590), seconds(3600)), Stored("gone", seconds(1), seconds(3600))});
  Scheduler().SetTenants({MakeTenant("a"), MakeTenant("b")});
  EXPECT_FALSE(store_.Servable("a", clock_.Now()));
  EXPECT_FALSE(store_.Servable("b", clock_.Now()));
  EXPECT_FALSE(store_.Known("gone"));
  for (const auto& p : Scheduler().PersistableTokens()) EXPECT_NE(p.tenant, "gone");
}

TEST_F(RestoreTest, PersistableTokensRoundTrip) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants({MakeTenant("a")});
  uint64_t before = Scheduler().token_version();
  Scheduler().RunDue();
  ASSERT_TRUE(client_.Complete(OkResult("tok-a", 3600)));
  EXPECT_GT(Scheduler().token_version(), before);
  auto tokens = Scheduler().PersistableTokens();
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0].access_token, "tok-a");
  EXPECT_EQ(tokens[0].expires_unix_ms - tokens[0].obtained_unix_ms, 3600 * 1000);
  EXPECT_EQ(tokens[0].fingerprint, EndpointFingerprint(MakeTenant("a")));
}

TEST(EndpointFingerprintTest, ChangesWithClientUrlScopesParamsButNotSecret) {
  TenantConfig base;
  base.id = "a";
  base.client_id = "c";
  base.client_secret = "s";
  base.token_url = "https://x/oauth/token";
  std::string fp = EndpointFingerprint(base);
  TenantConfig t = base;
  t.client_secret = "rotated";
  EXPECT_EQ(EndpointFingerprint(t), fp);
  t = base;
  t.client_id = "d";
  EXPECT_NE(EndpointFingerprint(t), fp);
  t = base;
  t.scopes = {"x"};
  EXPECT_NE(EndpointFingerprint(t), fp);
  t = base;
  t.params = {{"audience", "y"}};
  EXPECT_NE(EndpointFingerprint(t), fp);
  t = base;
  t.token_url = "https://y/oauth/token";
  EXPECT_NE(EndpointFingerprint(t), fp);
}

}  // namespace
}  // namespace tokend

namespace tokend {
namespace {

TEST_F(RefreshSchedulerTest, InvalidateDropsCurrentTokenAndRefreshesOnce) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  ASSERT_TRUE(client_.Complete(OkResult("tok-1", 3600)));

  // A stale report changes nothing.
  EXPECT_FALSE(store_.Invalidate("a", "tok-0", clock_.Now(), seconds(10)));
  Scheduler().Invalidate("a", "tok-0");
  Scheduler().RunDue();
  EXPECT_EQ(client_.started.size(), 1u);

  // Many reports of the current token: one drop, one refresh.
  int granted = 0;
  for (int i = 0; i < 5; ++i) {
    if (store_.Invalidate("a", "tok-1", clock_.Now(), seconds(10))) {
      ++granted;
      Scheduler().Invalidate("a", "tok-1");
    }
  }
  EXPECT_EQ(granted, 1);
  EXPECT_FALSE(store_.Servable("a", clock_.Now()));
  Scheduler().RunDue();
  EXPECT_EQ(client_.started.size(), 2u);
  ASSERT_TRUE(client_.Complete(OkResult("tok-2", 3600)));
  EXPECT_EQ(store_.Servable("a", clock_.Now())->access_token, "tok-2");

  // Within 10 s of the last forced refresh, a report of the new token is refused.
  clock_.Advance(seconds(5));
  EXPECT_FALSE(store_.Invalidate("a", "tok-2", clock_.Now(), seconds(10)));
  clock_.Advance(seconds(5));
  EXPECT_TRUE(store_.Invalidate("a", "tok-2", clock_.Now(), seconds(10)));
}

TEST_F(RefreshSchedulerTest, StoreNeverRepublishesAnInvalidatedToken) {
  options_.refresh.startup_spread = Millis(0);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  ASSERT_TRUE(client_.Complete(OkResult("tok-1", 3600)));
  ASSERT_TRUE(store_.Invalidate("a", "tok-1", clock_.Now(), seconds(10)));
  // The refresh side publishes before it hears of the report.
  Scheduler().RefreshNow("a");
  Scheduler().RunDue();
  EXPECT_FALSE(store_.Servable("a", clock_.Now()));
}

}  // namespace
}  // namespace tokend

namespace tokend {
namespace {

TEST_F(RefreshSchedulerTest, RepeatedIdenticalFailuresAreLoggedSparingly) {
  options_.refresh.startup_spread = Millis(0);
  options_.backoff.max = seconds(1);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  for (int i = 0; i < 25; ++i) {
    ASSERT_TRUE(client_.Complete(HttpFailure(503, AttemptKind::kHttp5xx)));
    RunFor(seconds(1));
  }
  auto failed = log_.Events("refresh_failed");
  // Failures 1, 2, 3, 10 and 20 are logged; the later lines count what was left out.
  ASSERT_EQ(failed.size(), 5u);
  EXPECT_EQ(failed[3]["repeats"], 10);
  EXPECT_EQ(failed[3]["suppressed"], 6);
  EXPECT_EQ(failed[4]["repeats"], 20);
  EXPECT_EQ(failed[4]["suppressed"], 9);
  EXPECT_EQ(failed[4]["consecutive_failures"], 20);

  // A different failure is logged at once.
  ASSERT_TRUE(client_.Complete(HttpFailure(504, AttemptKind::kHttp5xx)));
  EXPECT_EQ(log_.Events("refresh_failed").size(), 6u);
}

TEST_F(RefreshSchedulerTest, StateChangeIsAlwaysLoggedEvenMidRepeat) {
  options_.refresh.startup_spread = Millis(0);
  options_.refresh.expiry_margin = seconds(1);
  options_.backoff.max = seconds(1);
  options_.backoff.initial = seconds(1);
  Scheduler().SetTenants({MakeTenant("a")});
  Scheduler().RunDue();
  ASSERT_TRUE(client_.Complete(OkResult("tok", 20)));  // refresh due at 8..12 s, expires at 20 s
  for (int i = 0; i < 30; ++i) {
    RunFor(seconds(1));
    client_.Complete(HttpFailure(503, AttemptKind::kHttp5xx));
  }
  auto failed = log_.Events("refresh_failed");
  std::vector<std::string> states;
  for (const auto& e : failed) states.push_back(e["state"]);
  EXPECT_NE(std::find(states.begin(), states.end(), "stale"), states.end()) << log_.Text();
  EXPECT_NE(std::find(states.begin(), states.end(), "expired"), states.end());
  EXPECT_EQ(log_.Events("token_expired").size(), 1u);
}

}  // namespace
}  // namespace tokend
