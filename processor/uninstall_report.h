// What `backup-guard uninstall` says while it works and when it stops (processor/uninstall.h),
// as text and, with -o json, as events (processor/uninstall_events.h):
//  - the plan: the kinds in order with their counts, before anything is written;
//  - progress lines: per-kind remaining counts, elapsed time and rate, on a thread of their own
//    every interval (UninstallProgressTicker), whether or not a count changed;
//  - the failed writes of a pass, grouped by cause (an admission webhook by name and reason);
//  - the objects that hold the run (blockers), with why and the last error of a write to each:
//    at the timeout, and in the dry run for what would hold it;
//  - the final sweep's findings and the end.
// The engine of passes (Uninstaller, uninstall.cc) tells it what it lists, removes and fails to
// write; the report decides nothing about what is written.
//
// Thread-safety: every method may be called from many threads at once (the writers note
// failures and removals while the progress thread prints), except PrintPlan, PrintBlockers and
// ReportFailures, which the uninstall's own thread calls.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "domain/rules.h"
#include "kube/rest_api.h"
#include "processor/uninstall_events.h"
#include "processor/uninstall_snapshot.h"

namespace bg::processor {

// What a failed write says, naming the admission webhook that refused it or could not be called.
std::string DescribeWriteError(const Status& s);

class UninstallReport {
 public:
  using Clock = std::chrono::steady_clock;

  // How often the same set of failing writes is reported again while it does not change.
  static constexpr std::chrono::seconds kFailureReportInterval{15};
  // Objects named per cause in a failure report; the rest are counted.
  static constexpr size_t kNamesPerCause = 5;

  // `out` for what the run does, `err` for what goes wrong; `events` (-o json) may be null.
  // `progress_interval` is only named in the progress lines ("over the last 5s").
  UninstallReport(std::ostream& out, std::ostream& err, UninstallEvents* events,
                  std::chrono::milliseconds progress_interval);

  UninstallReport(const UninstallReport&) = delete;
  UninstallReport& operator=(const UninstallReport&) = delete;

  // The kinds of this run in order, with the Kind each is named by (after each discovery).
  void SetKinds(const std::vector<std::string>& order,
                const std::map<std::string, std::string>& kinds);
  // The Kind `resource` is named by: from SetKinds, else the kinds table, else the plural.
  std::string KindOf(const std::string& resource) const;

  // --- the plan
  // The kinds in order with their counts in `snap`. The dry run (`dry_run` "client" or
  // "server") prints it as steps; a real run ("none") as one line. Both write a plan event.
  void PrintPlan(const UninstallSnapshot& snap, const std::string& ns, const std::string& dry_run);

  // --- progress
  void Start(Clock::time_point started);
  Clock::time_point started() const { return started_; }
  // `resource` had `n` objects at this list; what this run removes from now on counts against it.
  void NoteListed(const std::string& resource, size_t n);
  // One object of `resource` went (released, or deleted at once).
  void NoteGone(const std::string& resource);
  // After a DELETE answered `answered`: an object without finalizers is gone at once.
  void NoteDeleted(const std::string& resource, const nlohmann::json& answered);
  size_t removed() const { return removed_.load(); }
  void SetStep(std::string step);
  // One progress line (and a progress event) at `now`: each kind's count at its last list minus
  // what this run removed since, elapsed time, objects removed and their rate (overall and over
  // the last interval, `recent_rate`), and how many objects' last write failed.
  void PrintProgress(Clock::time_point now, double recent_rate);

  // --- failed writes
  // The last write to resource/name failed in pass `pass` (verb: "delete", "release", ...).
  void NoteFailure(const std::string& resource, const std::string& name, const std::string& verb,
                   const Status& s, uint64_t pass);
  void NoteSuccess(const std::string& resource, const std::string& name);
  // "verb: error" of the last write to resource/name that failed, or "".
  std::string LastError(const std::string& resource, const std::string& name) const;
  // Says which writes of pass `pass` failed, grouped by cause, naming a few objects per cause;
  // the same report is repeated at most every kFailureReportInterval.
  void ReportFailures(uint64_t pass);

  // --- blockers
  // Lists every object of `view` (kinds in order) that is (or, with `simulate_deletion`, would be
  // once deleted) held, with its finalizers, why (the rules' verdict under `ctx`), and the last
  // error of a write to it; on `err`, or on `out` in the dry run. `force`: the release grace is
  // zero (no "released Ns after its deletion" hint). Answers how many it listed.
  int PrintBlockers(UninstallSnapshot& view, const domain::RuleContext& ctx, bool simulate_deletion,
                    bool force);

  // --- the end
  // What the final sweep found in `snap` (fresh lists of every kind): nothing, or how many of
  // each kind, which go through the steps again. Answers how many objects are left.
  size_t PrintSweep(const UninstallSnapshot& snap);
  // The last line of a run that leaves nothing.
  void PrintComplete();

  // "12.3s" under a minute, else "2m05s".
  static std::string FormatElapsed(double seconds);

 private:
  struct Failure {
    std::string kind;
    std::string name;
    std::string verb;
    std::string error;  // DescribeWriteError
    std::optional<kube::WebhookError> webhook;
    uint64_t pass = 0;
  };

  std::vector<std::string> Order() const;

  std::ostream& out_;
  std::ostream& err_;
  UninstallEvents* events_;
  const std::chrono::milliseconds progress_interval_;
  Clock::time_point started_;

  mutable std::mutex kinds_mu_;
  std::vector<std::string> order_;            // guarded
  std::map<std::string, std::string> kinds_;  // resource -> Kind; guarded

  std::atomic<size_t> removed_{0};  // objects this run saw go
  std::mutex progress_mu_;
  std::map<std::string, size_t> listed_;           // resource -> count at its last list; guarded
  std::map<std::string, size_t> gone_since_list_;  // resource -> removed since then; guarded
  std::string step_;                               // guarded

  mutable std::mutex failures_mu_;
  std::map<std::string, Failure> failures_;  // "resource/name" -> last failed write; guarded
  std::string last_failure_report_;
  Clock::time_point last_failure_report_at_{};
};

// Prints `report`'s progress every `interval` on a thread of its own while it lives (none when
// the interval is zero).
class UninstallProgressTicker {
 public:
  UninstallProgressTicker(UninstallReport& report, std::chrono::milliseconds interval);
  ~UninstallProgressTicker();
  UninstallProgressTicker(const UninstallProgressTicker&) = delete;
  UninstallProgressTicker& operator=(const UninstallProgressTicker&) = delete;

 private:
  void Loop();

  UninstallReport& report_;
  const std::chrono::milliseconds interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace bg::processor
