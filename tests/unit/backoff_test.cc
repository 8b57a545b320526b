#include "tokend/backoff.h"

#include <gtest/gtest.h>

#include "fakes.h"

namespace tokend {
namespace {

using std::chrono::seconds;

BackoffOptions Options(JitterKind jitter) {
  BackoffOptions o;
  o.initial = seconds(1);
  o.max = seconds(60);
  o.multiplier = 2.0;
  o.jitter = jitter;
  return o;
}

TEST(BackoffTest, CapGrowsGeometricallyToMax) {
  auto o = Options(JitterKind::kFull);
  std::vector<int64_t> caps;
  for (int n = 1; n <= 8; ++n) caps.push_back(BackoffCap(o, n, Millis(0)).count());
  EXPECT_EQ(caps, (std::vector<int64_t>{1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000}));
  EXPECT_EQ(BackoffCap(o, 10000, Millis(0)), seconds(60));  // no overflow
}

TEST(BackoffTest, NoneIsTheCap) {
  ScriptedRandom r({0.3});
  EXPECT_EQ(BackoffDelay(Options(JitterKind::kNone), 3, Millis(0), r), seconds(4));
}

TEST(BackoffTest, FullSpansZeroToCap) {
  auto o = Options(JitterKind::kFull);
  ScriptedRandom low({0.0}), mid({0.5}), high({0.999999});
  EXPECT_EQ(BackoffDelay(o, 3, Millis(0), low), Millis(0));
  EXPECT_EQ(BackoffDelay(o, 3, Millis(0), mid), Millis(2000));
  EXPECT_EQ(BackoffDelay(o, 3, Millis(0), high), Millis(4000));
}

TEST(BackoffTest, EqualSpansHalfCapToCap) {
  auto o = Options(JitterKind::kEqual);
  ScriptedRandom low({0.0}), high({0.999999});
  EXPECT_EQ(BackoffDelay(o, 3, Millis(0), low), Millis(2000));
  EXPECT_EQ(BackoffDelay(o, 3, Millis(0), high), Millis(4000));
}

TEST(BackoffTest, DecorrelatedSpansInitialToThreeTimesPrevious) {
  auto o = Options(JitterKind::kDecorrelated);
  ScriptedRandom low({0.0}), high({0.999999});
  EXPECT_EQ(BackoffDelay(o, 1, Millis(0), low), seconds(1));
  EXPECT_EQ(BackoffDelay(o, 1, Millis(0), high), seconds(3));
  EXPECT_EQ(BackoffDelay(o, 2, seconds(3), high), seconds(9));
  EXPECT_EQ(BackoffDelay(o, 9, seconds(50), high), seconds(60));
  EXPECT_EQ(BackoffCap(o, 2, seconds(3)), seconds(9));
}

TEST(BackoffTest, EveryKindStaysWithinItsBoundsOverManyDraws) {
  RealRandom random(42);
  for (auto kind : {JitterKind::kFull, JitterKind::kEqual, JitterKind::kDecorrelated,
                    JitterKind::kNone}) {
    auto o = Options(kind);
    Millis previous(0);
    for (int n = 1; n <= 40; ++n) {
      Millis cap = BackoffCap(o, n, previous);
      Millis d = BackoffDelay(o, n, previous, random);
      ASSERT_GE(d, Millis(0)) << ToString(kind);
      ASSERT_LE(d, cap) << ToString(kind);
      ASSERT_LE(d, o.max) << ToString(kind);
      if (kind == JitterKind::kEqual) {
        ASSERT_GE(d, cap / 2);
      }
      if (kind == JitterKind::kDecorrelated) {
        ASSERT_GE(d, o.initial);
      }
      previous = d;
    }
  }
}

}  // namespace
}  // namespace tokend
