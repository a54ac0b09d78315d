#include "kube/server_clock.h"

#include <gtest/gtest.h>

#include <chrono>

namespace bg::kube {
namespace {

using std::chrono::system_clock;

system_clock::time_point At(long long seconds_since_epoch) {
  return system_clock::time_point(std::chrono::seconds(seconds_since_epoch));
}

TEST(ParseHttpDateTest, ReadsTheImfFixdateForm) {
  EXPECT_EQ(ParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), At(784111777));
  EXPECT_EQ(ParseHttpDate("Thu, 01 Jan 2026 00:00:10 GMT"), At(1767225610));
  EXPECT_EQ(ParseHttpDate("Sat, 29 Feb 2020 23:59:59 GMT"), At(1583020799));
}

TEST(ParseHttpDateTest, RefusesAnythingElse) {
  for (const char* bad : {"", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
                          "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Foo 1994 08:49:37 GMT",
                          "Xyz, 06 Nov 1994 08:49:37 GMT", "Sun, 31 Feb 1994 08:49:37 GMT",
                          "Sun, 06 Nov 1994 24:49:37 GMT", "Sun, 6 Nov 1994 08:49:37 GMT",
                          "Sun, 06 Nov 1994 08:49:37 GMT ", "Sun, 0x Nov 1994 08:49:37 GMT",
                          "Sun, 06 Nov 1969 08:49:37 GMT"}) {
    EXPECT_EQ(ParseHttpDate(bad), std::nullopt) << bad;
  }
}

TEST(ServerClockTest, UnknownUntilAnAnswerWithADateIsObserved) {
  ManualClock mono;
  ServerClock clock(&mono);
  EXPECT_EQ(clock.Now(), std::nullopt);
  clock.Observe("");
  clock.Observe("yesterday");
  EXPECT_EQ(clock.Now(), std::nullopt);
}

// The server's time is its Date plus the monotonic time since it was read, whatever this
// machine's wall clock says (it is never read).
TEST(ServerClockTest, IsTheDatePlusTheMonotonicTimeSinceItWasRead) {
  ManualClock mono;
  ServerClock clock(&mono);
  clock.Observe("Thu, 01 Jan 2026 00:00:10 GMT");
  EXPECT_EQ(clock.Now(), At(1767225610));
  mono.Advance(std::chrono::milliseconds(90500));
  EXPECT_EQ(clock.Now(), At(1767225610) + std::chrono::milliseconds(90500));
}

// The latest answer counts, also when the server's clock went back: the estimate follows it.
TEST(ServerClockTest, TheLatestAnswerCounts) {
  ManualClock mono;
  ServerClock clock(&mono);
  clock.Observe("Thu, 01 Jan 2026 00:01:00 GMT");
  mono.Advance(std::chrono::seconds(1));
  clock.Observe("Thu, 01 Jan 2026 00:00:10 GMT");
  EXPECT_EQ(clock.Now(), At(1767225610));
  clock.Observe("not a date");  // ignored: the last readable one stays
  EXPECT_EQ(clock.Now(), At(1767225610));
}

}  // namespace
}  // namespace bg::kube
