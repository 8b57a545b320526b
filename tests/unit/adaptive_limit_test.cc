#include "tokend/adaptive_limit.h"

#include <map>
#include <queue>

#include <gtest/gtest.h>

#include "fakes.h"
#include "tokend/refresh_scheduler.h"

namespace tokend {
namespace {

using std::chrono::seconds;

TokenResult Ok() { return OkResult("t", 3600); }
TokenResult Gateway504(Millis latency = Millis(500)) {
  TokenResult r = HttpFailure(504, AttemptKind::kHttp5xx);
  r.latency = latency;
  return r;
}

// Sends the probe and feeds its answer; returns the change.
std::optional<AdaptiveLimit::Change> Probe(AdaptiveLimit& limit, const TokenResult& result,
                                           MonoTime now) {
  EXPECT_TRUE(limit.MayProbe(now));
  limit.OnProbeSent();
  EXPECT_FALSE(limit.MayProbe(now));  // one probe at a time
  return limit.OnResult("probe", result, limit.limit() + 1, /*probe=*/true, now);
}

TEST(AdaptiveLimitTest, SlowStartGrowsOnlyWithSuccessfulProbes) {
  AdaptiveLimit limit(32);
  MonoTime now{};
  EXPECT_EQ(limit.limit(), 2);
  // Ordinary successes, even at the limit, prove nothing beyond it.
  EXPECT_FALSE(limit.OnResult("x", Ok(), 1, false, now));
  EXPECT_FALSE(limit.OnResult("x", Ok(), 2, false, now));
  EXPECT_EQ(limit.limit(), 2);
  auto change = Probe(limit, Ok(), now);
  ASSERT_TRUE(change);
  EXPECT_EQ(change->from, 2);
  EXPECT_EQ(change->to, 3);
  EXPECT_EQ(change->reason, "slow_start");
  // In slow start the next probe may follow at once.
  for (int i = 0; i < 28; ++i) ASSERT_TRUE(Probe(limit, Ok(), now)) << i;
  EXPECT_EQ(limit.limit(), 31);
  ASSERT_TRUE(Probe(limit, Ok(), now));
  EXPECT_EQ(limit.limit(), 32);
  EXPECT_FALSE(limit.MayProbe(now));  // never above the maximum
}

TEST(AdaptiveLimitTest, StaleProbeAnswersProveNothing) {
  AdaptiveLimit limit(32);
  MonoTime now{};
  // A probe answer nobody sent (e.g. from before a reload) changes nothing.
  EXPECT_FALSE(limit.OnResult("x", Ok(), 3, /*probe=*/true, now));
  EXPECT_EQ(limit.limit(), 2);
  // After CancelAll() the probe is gone and another may go.
  limit.OnProbeSent();
  EXPECT_FALSE(limit.MayProbe(now));
  limit.OnCancelAll();
  EXPECT_TRUE(limit.MayProbe(now));
}

TEST(AdaptiveLimitTest, FailedProbeKeepsTheLimitAndEndsSlowStart) {
  AdaptiveLimit limit(32);
  MonoTime now{};
  while (limit.limit() < 8) Probe(limit, Ok(), now);
  EXPECT_TRUE(limit.slow_start());
  // The gateway holds the probe sent at 9 and answers 504: 8 stands.
  EXPECT_FALSE(Probe(limit, Gateway504(), now));
  EXPECT_EQ(limit.limit(), 8);
  EXPECT_FALSE(limit.slow_start());
  EXPECT_FALSE(limit.MayProbe(now + Millis(1)));  // plateau
}

TEST(AdaptiveLimitTest, CongestionCutsToTheLastGoodConcurrencyOncePerEpisode) {
  AdaptiveLimit limit(32);
  MonoTime now{};
  while (limit.limit() < 12) Probe(limit, Ok(), now);
  ASSERT_EQ(limit.limit(), 12);
  // Ordinary requests sent at 10 and at 9 failed, for two tenants: the gateway
  // shrank below 9. One tenant alone would not be believed.
  EXPECT_FALSE(limit.OnResult("y", Gateway504(), 10, false, now));
  auto change = limit.OnResult("x", Gateway504(), 9, false, now);
  ASSERT_TRUE(change);
  EXPECT_EQ(change->to, 8);
  EXPECT_EQ(change->reason, "congestion");
  // The rest of the overshoot was sent above 8: no further cut.
  for (int k = 9; k <= 12; ++k) EXPECT_FALSE(limit.OnResult("z", Gateway504(), k, false, now));
  EXPECT_EQ(limit.limit(), 8);
  EXPECT_FALSE(limit.slow_start());
  // A capacity that keeps shrinking keeps failing at the limit: further cuts.
  EXPECT_FALSE(limit.OnResult("y", Gateway504(), 8, false, now));
  ASSERT_TRUE(limit.OnResult("x", Gateway504(), 8, false, now));
  EXPECT_EQ(limit.limit(), 7);
}

TEST(AdaptiveLimitTest, ProbeAnsweredAfterACutProvesNothing) {
  AdaptiveLimit limit(32);
  MonoTime now{};
  while (limit.limit() < 10) Probe(limit, Ok(), now);
  ASSERT_TRUE(limit.MayProbe(now));
  limit.OnProbeSent();  // at 11
  EXPECT_FALSE(limit.OnResult("y", Gateway504(), 6, false, now));
  ASSERT_TRUE(limit.OnResult("x", Gateway504(), 6, false, now));
  EXPECT_EQ(limit.limit(), 5);
  EXPECT_FALSE(limit.OnResult("p", Ok(), 11, /*probe=*/true, now));
  EXPECT_EQ(limit.limit(), 5);
  EXPECT_FALSE(limit.probing());
}

TEST(AdaptiveLimitTest, OneTenantsOwnFailuresNeverCutTheLimit) {
  AdaptiveLimit limit(8);
  MonoTime now{};
  while (limit.limit() < 8) Probe(limit, Ok(), now);
  ASSERT_EQ(limit.limit(), 8);
  TokenResult timeout;
  timeout.kind = AttemptKind::kTimeout;
  for (int i = 0; i < 20; ++i) {
    now += Millis(15000);
    EXPECT_FALSE(limit.OnResult("hanging", timeout, 1 + i % 8, false, now));
  }
  EXPECT_EQ(limit.limit(), 8);
}

TEST(AdaptiveLimitTest, PlateauThenOneProbeAtATime) {
  AdaptiveLimit limit(32);
  MonoTime now{};
  while (limit.limit() < 8) Probe(limit, Ok(), now);
  EXPECT_FALSE(Probe(limit, Gateway504(Millis(1500)), now));
  ASSERT_EQ(limit.limit(), 8);
  // No probe during the plateau, however busy.
  for (int i = 0; i < 1000; ++i) {
    now += Millis(25);
    ASSERT_FALSE(limit.MayProbe(now)) << i;
    ASSERT_FALSE(limit.OnResult("x", Ok(), 8, false, now)) << i;
  }
  now = MonoTime{} + AdaptiveLimit::kPlateau;
  auto probe = Probe(limit, Ok(), now);
  ASSERT_TRUE(probe);
  EXPECT_EQ(probe->reason, "probe");
  EXPECT_EQ(limit.limit(), 9);
  // The next probe waits for the probe interval.
  EXPECT_FALSE(limit.MayProbe(now + AdaptiveLimit::kProbeInterval - Millis(1)));
  now += AdaptiveLimit::kProbeInterval;
  EXPECT_TRUE(Probe(limit, Ok(), now));
  EXPECT_EQ(limit.limit(), 10);
  // A failed probe starts another plateau.
  now += AdaptiveLimit::kProbeInterval;
  EXPECT_FALSE(Probe(limit, Gateway504(), now));
  EXPECT_EQ(limit.limit(), 10);
  EXPECT_FALSE(limit.MayProbe(now + AdaptiveLimit::kPlateau - Millis(1)));
  EXPECT_TRUE(limit.MayProbe(now + AdaptiveLimit::kPlateau));
}

TEST(AdaptiveLimitTest, NeverBelowOneAndTimeoutsAnd429sCount) {
  AdaptiveLimit limit(4);
  MonoTime now{};
  TokenResult timeout;
  timeout.kind = AttemptKind::kTimeout;
  limit.OnResult("y", timeout, 1, false, now);
  limit.OnResult("x", timeout, 1, false, now);
  EXPECT_EQ(limit.limit(), 1);
  limit.OnResult("y", timeout, 1, false, now);
  limit.OnResult("x", timeout, 1, false, now);
  EXPECT_EQ(limit.limit(), 1);
  AdaptiveLimit other(4);
  Probe(other, Ok(), now);
  ASSERT_EQ(other.limit(), 3);
  TokenResult busy = HttpFailure(429, AttemptKind::kHttp429);
  EXPECT_FALSE(other.OnResult("y", busy, 3, false, now));
  ASSERT_TRUE(other.OnResult("x", busy, 3, false, now));
  EXPECT_EQ(other.limit(), 2);
  EXPECT_FALSE(AdaptiveLimit::IsCongestion(HttpFailure(503, AttemptKind::kHttp5xx)));
}

// A gateway of capacity C on a simulated clock: a request that arrives while C
// others are in flight is held, then answered 504; the others take S.
class SimulatedGateway final : public TokenClient {
 public:
  SimulatedGateway(SimulatedClock& clock, int capacity, Millis service, Millis hold)
      : clock_(clock), capacity_(capacity), service_(service), hold_(hold) {}

  void Start(TokenRequest request, Callback done) override {
    ++in_flight_;
    ++requests_;
    max_in_flight_ = std::max(max_in_flight_, in_flight_);
    bool over = in_flight_ > capacity_;
    if (over) ++rejected_;
    MonoTime at = clock_.Now() + (over ? hold_ : service_);
    events_.push({at, seq_++, over, clock_.Now(), std::move(done)});
    (void)request;
  }
  void CancelAll() override { events_ = {}; }

  // Runs the next completion if it is due no later than `until`.
  bool RunNext(MonoTime until) {
    if (events_.empty() || events_.top().at > until) return false;
    Event e = events_.top();
    events_.pop();
    clock_.AdvanceTo(e.at);
    --in_flight_;
    TokenResult r = e.rejected ? HttpFailure(504, AttemptKind::kHttp5xx) : OkResult("tok", 3600);
    r.latency = std::chrono::duration_cast<Millis>(e.at - e.sent);
    e.done(std::move(r));
    return true;
  }
  std::optional<MonoTime> next() const {
    if (events_.empty()) return std::nullopt;
    return events_.top().at;
  }

  int requests_ = 0, rejected_ = 0, max_in_flight_ = 0;

 private:
  struct Event {
    MonoTime at;
    uint64_t seq;
    bool rejected;
    MonoTime sent;
    Callback done;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  SimulatedClock& clock_;
  int capacity_;
  Millis service_, hold_;
  int in_flight_ = 0;
  uint64_t seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
};

struct StormResult {
  Millis elapsed;
  int requests;
  int rejected;
  int max_in_flight;
  int final_limit;
};

StormResult RunStorm(int tenants, int capacity, bool adaptive, int max_concurrent) {
  SimulatedClock clock;
  RealRandom random(7);
  SimulatedGateway gateway(clock, capacity, Millis(50), Millis(500));
  CapturedLog log(clock, LogLevel::kError);
  TokenStore store(seconds(60));
  SchedulerOptions options;
  options.refresh.max_concurrent = max_concurrent;
  options.refresh.adaptive = adaptive;
  options.refresh.startup_spread = Millis(0);
  options.backoff.initial = Millis(200);
  options.backoff.max = seconds(5);
  RefreshScheduler scheduler(clock, random, gateway, store, log.log, options);
  std::vector<TenantConfig> configs;
  for (int i = 0; i < tenants; ++i) {
    TenantConfig t;
    t.id = "t" + std::to_string(i);
    t.client_id = t.id;
    configs.push_back(t);
  }
  MonoTime start = clock.Now();
  scheduler.SetTenants(configs);
  for (int guard = 0; guard < 1000000; ++guard) {
    MonoTime timer = scheduler.RunDue();
    if (store.CountValid(clock.Now()).second == static_cast<size_t>(tenants)) break;
    auto completion = gateway.next();
    if (completion && *completion <= timer) {
      gateway.RunNext(*completion);
    } else if (timer != MonoTime::max()) {
      clock.AdvanceTo(timer);
    } else {
      break;
    }
  }
  return {std::chrono::duration_cast<Millis>(clock.Now() - start), gateway.requests_,
          gateway.rejected_, gateway.max_in_flight_, scheduler.Limit().effective};
}

TEST(AdaptiveLimitTest, StormAgainstSimulatedGatewayFindsCapacity) {
  // N=1000, C=8, S=50 ms, hold 0.5 s, max_concurrent 32: ideal N*S/C = 6.25 s.
  StormResult adaptive = RunStorm(1000, 8, true, 32);
  StormResult fixed = RunStorm(1000, 8, false, 32);
  double ideal_ms = 1000 * 50.0 / 8;
  EXPECT_LE(adaptive.elapsed.count(), ideal_ms * 1.2);
  EXPECT_LE(adaptive.rejected, adaptive.requests / 100);  // 504s <= 1%
  // Finding the capacity costs the one probe the gateway held: while it was
  // out, the others kept the total at the limit.
  EXPECT_EQ(adaptive.rejected, 1);
  EXPECT_EQ(adaptive.final_limit, 8);
  EXPECT_LE(adaptive.max_in_flight, 8 + 1);
  // Without adaptation the same storm keeps overloading the gateway.
  EXPECT_GT(fixed.rejected, adaptive.rejected * 10);
  RecordProperty("adaptive_ms", static_cast<int>(adaptive.elapsed.count()));
  RecordProperty("adaptive_504", adaptive.rejected);
  RecordProperty("fixed_ms", static_cast<int>(fixed.elapsed.count()));
  RecordProperty("fixed_504", fixed.rejected);
}

TEST(AdaptiveLimitTest, TracksASmallerGateway) {
  StormResult r = RunStorm(200, 3, true, 32);
  EXPECT_EQ(r.final_limit, 3);
  EXPECT_EQ(r.rejected, 1);
  EXPECT_LE(r.max_in_flight, 3 + 1);
}

TEST(AdaptiveLimitTest, NoProbeWithoutTenantsWaiting) {
  // Two tenants fill the starting limit of 2 and nobody waits: no proof, no growth.
  StormResult r = RunStorm(2, 8, true, 32);
  EXPECT_EQ(r.requests, 2);
  EXPECT_EQ(r.final_limit, 2);
}

}  // namespace
}  // namespace tokend
