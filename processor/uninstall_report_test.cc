#include "processor/uninstall_report.h"

#include <gtest/gtest.h>

#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace bg::processor {

using domain::RuleContext;
namespace {

using nlohmann::json;
using std::chrono::seconds;

json Obj(const std::string& name, json finalizers, bool deleting = false) {
  json meta = {{"name", name}, {"finalizers", std::move(finalizers)}};
  if (deleting) meta["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  return {{"metadata", meta}};
}

std::vector<json> Events(const std::string& text) {
  std::vector<json> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) out.push_back(json::parse(line));
  return out;
}

struct Fixture {
  std::ostringstream out, err, events_text;
  UninstallEvents events{events_text};
  UninstallReport report{out, err, &events, std::chrono::milliseconds(5000)};
  Fixture() {
    report.SetKinds({"backuptargets", "backups", "volumes"}, {{"volumes", "Volume"}});
    report.Start(UninstallReport::Clock::now());
  }
};

TEST(UninstallReportTest, ARunsPlanIsOneLineOfTheKindsThatHaveObjects) {
  Fixture f;
  UninstallSnapshot snap;
  snap.Add("backups", Obj("a", json::array()));
  snap.Add("backups", Obj("b", json::array()));
  snap.Add("volumes", Obj("v", json::array()));
  f.report.PrintPlan(snap, "longhorn-system", "none");
  EXPECT_EQ(f.out.str(), "plan: Backup 2, Volume 1 (3 objects in 3 kinds), then a final sweep\n");
  const std::vector<json> events = Events(f.events_text.str());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["event"], "plan");
  EXPECT_EQ(events[0]["dry_run"], "none");
  EXPECT_EQ(events[0]["total"], 3);
  EXPECT_EQ(events[0]["steps"][0]["action"], "annotate, empty the URL, delete");
  EXPECT_EQ(events[0]["steps"][1]["count"], 2);
}

TEST(UninstallReportTest, TheDryRunsPlanIsOneStepPerKindAndTheSweep) {
  Fixture f;
  UninstallSnapshot snap;
  f.report.PrintPlan(snap, "longhorn-system", "server");
  EXPECT_EQ(f.out.str(),
            "  1. annotate, empty the URL of, then delete 0 BackupTarget\n"
            "  2. delete 0 Backup\n"
            "  3. delete 0 Volume\n"
            "  4. a final sweep: fresh lists of every kind; anything left goes through the steps "
            "again\n");
  EXPECT_EQ(Events(f.events_text.str())[0]["dry_run"], "server");
}

TEST(UninstallReportTest, ProgressCountsWhatWentSinceEachKindsLastList) {
  Fixture f;
  f.report.NoteListed("backups", 10);
  f.report.NoteListed("volumes", 1);
  f.report.NoteGone("backups");
  f.report.NoteDeleted("backups", Obj("gone-at-once", json::array()));
  f.report.NoteDeleted("backups", Obj("still-held", {"longhorn.io"}));
  f.report.NoteDeleted("backups", json::object());  // nothing written
  f.report.SetStep("Backup");
  f.report.PrintProgress(f.report.started() + seconds(4), 0.5);
  EXPECT_EQ(f.out.str(),
            "progress: 4.0s elapsed, step Backup; remaining: Backup 8, Volume 1 (9 in all); "
            "removed 2 (0.5/s, 0.5/s over the last 5s)\n");
  f.report.NoteListed("backups", 3);  // a new list starts the count again
  f.report.NoteFailure("volumes", "v", "delete", Status::Unavailable("boom"), 1);
  f.out.str("");
  f.report.PrintProgress(f.report.started() + seconds(125), 0);
  EXPECT_EQ(f.out.str(),
            "progress: 2m05s elapsed, step Backup; remaining: Backup 3, Volume 1 (4 in all); "
            "removed 2 (0.0/s, 0.0/s over the last 5s); 1 objects' last write failed "
            "(retrying)\n");
  const std::vector<json> events = Events(f.events_text.str());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1]["event"], "progress");
  EXPECT_EQ(events[1]["remaining"], (json{{"Backup", 3}, {"Volume", 1}}));
  EXPECT_EQ(events[1]["failing_objects"], 1);
}

TEST(UninstallReportTest, ProgressWithNothingListedSaysSo) {
  Fixture f;
  f.report.PrintProgress(f.report.started(), 0);
  EXPECT_NE(f.out.str().find("remaining: none listed (0 in all)"), std::string::npos)
      << f.out.str();
}

TEST(UninstallReportTest, FailedWritesAreGroupedByCauseNamingAFewAndCountingTheRest) {
  Fixture f;
  const Status refused = Status::Internal(
      "admission webhook \"validator.longhorn.io\" denied the request: backup is in use");
  for (int i = 0; i < 7; ++i) {
    f.report.NoteFailure("backups", "b" + std::to_string(i), "delete", refused, 3);
  }
  f.report.NoteFailure("volumes", "v", "release", Status::Unavailable("connection refused"), 3);
  f.report.NoteFailure("volumes", "old", "release", Status::Unavailable("other pass"), 2);
  f.report.ReportFailures(3);
  EXPECT_EQ(f.err.str(),
            "uninstall: 1 write failed (release Volume v): connection refused; retrying until the "
            "timeout\n"
            "uninstall: 7 writes failed (delete Backup b0, delete Backup b1, delete Backup b2, "
            "delete Backup b3, delete Backup b4, and 2 more): refused by admission webhook "
            "\"validator.longhorn.io\": backup is in use; retrying until the timeout\n");
  const std::vector<json> events = Events(f.events_text.str());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["event"], "blocker");
  EXPECT_EQ(events[0]["reason"], "connection refused");
  EXPECT_EQ(events[1]["event"], "webhook");
  EXPECT_EQ(events[1]["webhook"], "validator.longhorn.io");
  EXPECT_EQ(events[1]["denied"], true);
  EXPECT_EQ(events[1]["failed_writes"], 7);
  EXPECT_EQ(events[1]["objects"].size(), UninstallReport::kNamesPerCause);
  EXPECT_EQ(f.report.LastError("backups", "b6"),
            "delete: refused by admission webhook \"validator.longhorn.io\": backup is in use");

  f.err.str("");
  f.report.ReportFailures(3);
  EXPECT_EQ(f.err.str(), "") << "the same report is not repeated within the interval";
  f.report.NoteSuccess("volumes", "v");
  EXPECT_EQ(f.report.LastError("volumes", "v"), "");
  f.report.ReportFailures(3);
  EXPECT_EQ(f.err.str().find("Volume v"), std::string::npos);
  EXPECT_NE(f.err.str().find("7 writes failed"), std::string::npos) << "a changed report is said";
}

TEST(UninstallReportTest, BlockersSayWhyEachObjectIsHeldWithItsLastError) {
  Fixture f;
  UninstallSnapshot snap;
  snap.Add("volumes", Obj("plain", json::array()));
  snap.Add("volumes", Obj("foreign", {"example.com/other"}, /*deleting=*/true));
  snap.Add("volumes", Obj("ours", {"longhorn.io"}, /*deleting=*/true));
  f.report.NoteFailure("volumes", "plain", "delete", Status::Unavailable("timeout"), 1);
  RuleContext ctx;
  ctx.ns = "longhorn-system";
  ctx.uninstall_confirmed = true;
  ctx.now = std::chrono::system_clock::now();
  ctx.release_grace = seconds(90);
  EXPECT_EQ(f.report.PrintBlockers(snap, ctx, /*simulate_deletion=*/false, /*force=*/false), 3);
  EXPECT_EQ(f.err.str(),
            "  Volume plain finalizers=[]: not deleted yet; last error: delete: timeout\n"
            "  Volume foreign finalizers=[\"example.com/other\"]: its finalizers are not "
            "longhorn.io: their owner must remove them\n"
            "  Volume ours finalizers=[\"longhorn.io\"]: the rules release it; not released yet\n");
  const std::vector<json> events = Events(f.events_text.str());
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["event"], "blocker");
  EXPECT_EQ(events[0]["last_error"], "delete: timeout");
  EXPECT_EQ(events[2]["dry_run"], false);
}

TEST(UninstallReportTest, TheDryRunListsOnlyWhatWouldHoldOnceDeleted) {
  Fixture f;
  UninstallSnapshot snap;
  snap.Add("volumes", Obj("plain", json::array()));
  snap.Add("volumes", Obj("ours", {"longhorn.io"}));
  RuleContext ctx;
  ctx.uninstall_confirmed = true;
  ctx.now = std::chrono::system_clock::now();
  ctx.release_grace = seconds(90);
  EXPECT_EQ(f.report.PrintBlockers(snap, ctx, /*simulate_deletion=*/true, /*force=*/false), 1);
  EXPECT_EQ(f.out.str(),
            "  Volume ours finalizers=[\"longhorn.io\"]: the storage engine owns it; released 90s "
            "after its deletion because the uninstall is confirmed\n");
  EXPECT_EQ(f.err.str(), "");
}

TEST(UninstallReportTest, TheSweepSaysWhatIsLeftOrThatNothingIs) {
  Fixture f;
  UninstallSnapshot empty;
  EXPECT_EQ(f.report.PrintSweep(empty), 0u);
  EXPECT_EQ(f.out.str(), "final sweep: nothing left of 3 kinds\n");
  UninstallSnapshot some;
  some.Add("backups", Obj("b", json::array()));
  some.Add("volumes", Obj("v1", json::array()));
  some.Add("volumes", Obj("v2", json::array()));
  f.out.str("");
  EXPECT_EQ(f.report.PrintSweep(some), 3u);
  EXPECT_EQ(f.out.str(), "final sweep: found 1 Backup, 2 Volume; going through the steps again\n");
}

TEST(UninstallReportTest, ElapsedIsSecondsUnderAMinuteThenMinutes) {
  EXPECT_EQ(UninstallReport::FormatElapsed(0), "0.0s");
  EXPECT_EQ(UninstallReport::FormatElapsed(59.94), "59.9s");
  EXPECT_EQ(UninstallReport::FormatElapsed(60), "1m00s");
  EXPECT_EQ(UninstallReport::FormatElapsed(3725.5), "62m05s");
}

// Counts the lines written to it, from any thread.
class LineCounter final : public std::streambuf {
 public:
  size_t lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

 protected:
  int_type overflow(int_type c) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (c == '\n') ++lines_;
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::streamsize i = 0; i < n; ++i) lines_ += s[i] == '\n';
    return n;
  }

 private:
  std::mutex mu_;
  size_t lines_ = 0;
};

TEST(UninstallReportTest, TheTickerPrintsEveryIntervalWhetherOrNotACountChanged) {
  LineCounter counter;
  std::ostream out(&counter);
  std::ostringstream err;
  UninstallReport report(out, err, nullptr, std::chrono::milliseconds(20));
  report.Start(UninstallReport::Clock::now());
  {
    UninstallProgressTicker ticker(report, std::chrono::milliseconds(20));
    for (int i = 0; i < 1000 && counter.lines() < 3; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }  // joins the ticker's thread
  EXPECT_GE(counter.lines(), 3u);
}

TEST(UninstallReportTest, AZeroIntervalPrintsNothing) {
  Fixture f;
  { UninstallProgressTicker ticker(f.report, std::chrono::milliseconds(0)); }
  EXPECT_EQ(f.out.str(), "");
}

}  // namespace
}  // namespace bg::processor
