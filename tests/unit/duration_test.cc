#include "tokend/duration.h"

#include <gtest/gtest.h>

#include <limits>

namespace tokend {
namespace {

TEST(DurationParse, AcceptsEachUnit) {
  EXPECT_EQ(ParseDuration("250ms"), Millis(250));
  EXPECT_EQ(ParseDuration("15s"), Millis(15000));
  EXPECT_EQ(ParseDuration("5m"), Millis(300000));
  EXPECT_EQ(ParseDuration("1h"), Millis(3600000));
}

TEST(DurationParse, AcceptsZero) {
  EXPECT_EQ(ParseDuration("0s"), Millis(0));
  EXPECT_EQ(ParseDuration("0ms"), Millis(0));
  EXPECT_EQ(ParseDuration("0.0h"), Millis(0));
}

TEST(DurationParse, AcceptsDecimals) {
  EXPECT_EQ(ParseDuration("1.5s"), Millis(1500));
  EXPECT_EQ(ParseDuration("0.25m"), Millis(15000));
  EXPECT_EQ(ParseDuration("1.5h"), Millis(5400000));
  EXPECT_EQ(ParseDuration("0.001s"), Millis(1));
  EXPECT_EQ(ParseDuration("2.500000s"), Millis(2500));
  EXPECT_EQ(ParseDuration("007s"), Millis(7000));
}

TEST(DurationParse, RejectsMalformed) {
  for (const char* bad : {"",      "s",  "15",   "1.5",   "-1s",  "+1s",   "1 s",   " 1s",
                          "1s ",   "1d", "1S",   "1sec",  "1.s",  ".5s",   "1..5s", "1e3ms",
                          "1h30m", "ms", "1mss", "0x10s", "1,5s", "nan s", "inf"}) {
    EXPECT_EQ(ParseDuration(bad), std::nullopt) << '"' << bad << '"';
  }
}

TEST(DurationParse, RejectsSubMillisecondPrecision) {
  EXPECT_EQ(ParseDuration("1.5ms"), std::nullopt);
  EXPECT_EQ(ParseDuration("0.0001s"), std::nullopt);
  EXPECT_EQ(ParseDuration("1.0ms"), Millis(1));
}

TEST(DurationParse, RejectsAbsurdAndOverflowingValues) {
  EXPECT_EQ(ParseDuration("8760h"), kMaxDuration);
  EXPECT_EQ(ParseDuration("8761h"), std::nullopt);
  EXPECT_EQ(ParseDuration("999999999999h"), std::nullopt);
  EXPECT_EQ(ParseDuration("99999999999999999999999ms"), std::nullopt);
  EXPECT_EQ(ParseDuration("1.0000000001s"), std::nullopt);
}

TEST(DurationFormat, HoursShowMinutes) {
  EXPECT_EQ(FormatDuration(Millis((11 * 60 + 58) * 60 * 1000 + 59999)), "11h58m");
  EXPECT_EQ(FormatDuration(Millis(3600000)), "1h00m");
  EXPECT_EQ(FormatDuration(Millis(100LL * 3600000)), "100h00m");
}

TEST(DurationFormat, MinutesShowSeconds) {
  EXPECT_EQ(FormatDuration(Millis(4 * 60000 + 5000)), "4m05s");
  EXPECT_EQ(FormatDuration(Millis(60000)), "1m00s");
  EXPECT_EQ(FormatDuration(Millis(3599999)), "59m59s");
}

TEST(DurationFormat, SecondsAndMilliseconds) {
  EXPECT_EQ(FormatDuration(Millis(12000)), "12s");
  EXPECT_EQ(FormatDuration(Millis(12999)), "12s");
  EXPECT_EQ(FormatDuration(Millis(1000)), "1s");
  EXPECT_EQ(FormatDuration(Millis(999)), "999ms");
  EXPECT_EQ(FormatDuration(Millis(850)), "850ms");
  EXPECT_EQ(FormatDuration(Millis(0)), "0ms");
}

TEST(DurationFormat, NegativeHasLeadingMinus) {
  EXPECT_EQ(FormatDuration(Millis(-3000)), "-3s");
  EXPECT_EQ(FormatDuration(Millis(-850)), "-850ms");
  EXPECT_EQ(FormatDuration(Millis(-(4 * 60000 + 5000))), "-4m05s");
  EXPECT_FALSE(FormatDuration(Millis(std::numeric_limits<int64_t>::min())).empty());
}

TEST(DurationFormat, RoundTripsSimpleForms) {
  for (const char* text : {"12s", "850ms"}) {
    EXPECT_EQ(FormatDuration(*ParseDuration(text)), text);
  }
}

}  // namespace
}  // namespace tokend
