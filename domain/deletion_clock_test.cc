#include "domain/deletion_clock.h"

#include <gtest/gtest.h>

#include "domain/rules.h"

namespace bg::domain {
namespace {

using nlohmann::json;
using std::chrono::seconds;

// The API server's clock stamped the deletion at this instant.
const auto kDeletedAt = std::chrono::system_clock::from_time_t(1780000000);  // 2026-05-28

json DeletingVolume() {
  return {{"metadata",
           {{"name", "vol-1"},
            {"namespace", "longhorn-system"},
            {"uid", "uid-vol-1"},
            {"finalizers", {"longhorn.io"}},
            {"deletionTimestamp", "2026-05-28T20:26:40Z"}}}};
}

RuleContext UninstallContext(DeletionClock* deletions, std::chrono::system_clock::time_point now) {
  RuleContext ctx;
  ctx.ns = "longhorn-system";
  ctx.uninstall_confirmed = true;
  ctx.release_grace = seconds(90);
  ctx.now = now;
  ctx.deletions = deletions;
  return ctx;
}

TEST(DeletionClockTest, TheFixtureTimestampIsTheDeletionInstant) {
  EXPECT_EQ(SecondsDeleting(DeletingVolume(), kDeletedAt), 0);
}

// A replica whose clock is 90 s ahead of the API server's sees a deletion that has just
// happened as 90 s old: by the wall clock alone it releases at once (issue 14, suspect 10).
TEST(DeletionClockTest, AFastLocalClockDoesNotShortenTheUninstallGrace) {
  kube::ManualClock monotonic;
  DeletionClock deletions(&monotonic);
  const auto fast_now = kDeletedAt + seconds(90);
  EXPECT_FALSE(PlanOther(DeletingVolume(), UninstallContext(&deletions, fast_now)).release)
      << "released on the local clock's word alone";
  monotonic.Advance(seconds(89));
  EXPECT_FALSE(
      PlanOther(DeletingVolume(), UninstallContext(&deletions, fast_now + seconds(89))).release);
  monotonic.Advance(seconds(1));
  const Plan plan =
      PlanOther(DeletingVolume(), UninstallContext(&deletions, fast_now + seconds(90)));
  EXPECT_TRUE(plan.release);
  EXPECT_EQ(plan.reason, reason::kUninstallGrace);
}

TEST(DeletionClockTest, ASlowLocalClockHoldsLongerNeverShorter) {
  kube::ManualClock monotonic;
  DeletionClock deletions(&monotonic);
  const auto slow_now = kDeletedAt - seconds(30);  // the deletion looks 30 s in the future
  EXPECT_EQ(deletions.SecondsDeleting(DeletingVolume(), slow_now), -30);
  monotonic.Advance(seconds(90));
  EXPECT_FALSE(
      PlanOther(DeletingVolume(), UninstallContext(&deletions, slow_now + seconds(90))).release);
  monotonic.Advance(seconds(30));
  EXPECT_TRUE(
      PlanOther(DeletingVolume(), UninstallContext(&deletions, slow_now + seconds(120))).release);
}

TEST(DeletionClockTest, AgreeingClocksReleaseAfterTheGraceFromTheFirstSighting) {
  kube::ManualClock monotonic;
  DeletionClock deletions(&monotonic);
  EXPECT_EQ(deletions.SecondsDeleting(DeletingVolume(), kDeletedAt + seconds(2)), 0);
  monotonic.Advance(seconds(88));
  EXPECT_EQ(deletions.SecondsDeleting(DeletingVolume(), kDeletedAt + seconds(90)), 88);
  monotonic.Advance(seconds(2));
  EXPECT_TRUE(
      PlanOther(DeletingVolume(), UninstallContext(&deletions, kDeletedAt + seconds(92))).release);
}

TEST(DeletionClockTest, ANewDeletionOfTheSameNameStartsAgain) {
  kube::ManualClock monotonic;
  DeletionClock deletions(&monotonic);
  (void)deletions.SecondsDeleting(DeletingVolume(), kDeletedAt);
  monotonic.Advance(seconds(60));
  json recreated = DeletingVolume();
  recreated["metadata"]["uid"] = "uid-vol-1-again";
  recreated["metadata"]["deletionTimestamp"] = "2026-05-28T20:27:40Z";
  EXPECT_EQ(deletions.SecondsDeleting(recreated, kDeletedAt + seconds(60)), 0);
}

TEST(DeletionClockTest, NotDeletingOrUnreadableIsMinusOneAndRecordsNothing) {
  DeletionClock deletions;
  json obj = DeletingVolume();
  obj["metadata"].erase("deletionTimestamp");
  EXPECT_EQ(deletions.SecondsDeleting(obj, kDeletedAt), -1);
  obj["metadata"]["deletionTimestamp"] = "yesterday";
  EXPECT_EQ(deletions.SecondsDeleting(obj, kDeletedAt), -1);
  EXPECT_EQ(deletions.size(), 0u);
}

TEST(DeletionClockTest, DeletionsNotAskedAboutForAnHourAreForgotten) {
  kube::ManualClock monotonic;
  DeletionClock deletions(&monotonic);
  (void)deletions.SecondsDeleting(DeletingVolume(), kDeletedAt);
  EXPECT_EQ(deletions.size(), 1u);
  monotonic.Advance(DeletionClock::kForgetAfter + seconds(61));
  json other = DeletingVolume();
  other["metadata"]["uid"] = "uid-other";
  (void)deletions.SecondsDeleting(other, kDeletedAt);
  EXPECT_EQ(deletions.size(), 1u);
}

}  // namespace
}  // namespace bg::domain
