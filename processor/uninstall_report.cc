#include "processor/uninstall_report.h"

#include <cstdio>
#include <ctime>
#include <sstream>
#include <utility>

#include "common/longhorn.h"
#include "domain/kinds.h"

namespace bg::processor {

using domain::Plan;
using domain::PlanFor;
using domain::RuleContext;

using nlohmann::json;
namespace res = longhorn::resource;

namespace {

std::string Name(const json& obj) { return longhorn::StringAt(obj, {"metadata", "name"}); }

// `at` as a deletionTimestamp is written.
std::string Timestamp(std::chrono::system_clock::time_point at) {
  return longhorn::Rfc3339Utc(std::chrono::system_clock::to_time_t(at));
}

double Round(double v) { return static_cast<double>(static_cast<long long>(v * 10)) / 10; }

}  // namespace

std::string DescribeWriteError(const Status& s) {
  if (std::optional<kube::WebhookError> w = kube::WebhookErrorOf(s.message())) {
    if (w->denied) return "refused by admission webhook \"" + w->webhook + "\": " + w->reason;
    return "admission webhook \"" + w->webhook + "\" could not be called: " + w->reason;
  }
  return s.message();
}

UninstallReport::UninstallReport(std::ostream& out, std::ostream& err, UninstallEvents* events,
                                 std::chrono::milliseconds progress_interval)
    : out_(out), err_(err), events_(events), progress_interval_(progress_interval) {}

void UninstallReport::SetKinds(const std::vector<std::string>& order,
                               const std::map<std::string, std::string>& kinds) {
  std::lock_guard<std::mutex> lock(kinds_mu_);
  order_ = order;
  for (const auto& [resource, kind] : kinds) {
    if (!kind.empty()) kinds_[resource] = kind;
  }
}

std::string UninstallReport::KindOf(const std::string& resource) const {
  {
    std::lock_guard<std::mutex> lock(kinds_mu_);
    auto it = kinds_.find(resource);
    if (it != kinds_.end()) return it->second;
  }
  const std::string kind = domain::KindOf(resource);
  return kind.empty() ? resource : kind;
}

std::vector<std::string> UninstallReport::Order() const {
  std::lock_guard<std::mutex> lock(kinds_mu_);
  return order_;
}

void UninstallReport::PrintPlan(const UninstallSnapshot& snap, const std::string& ns,
                                const std::string& dry_run) {
  const std::vector<std::string> order = Order();
  const bool steps_text = dry_run != "none";
  json steps = json::array();
  size_t total = 0;
  std::ostringstream line;
  int step = 1;
  for (const std::string& resource : order) {
    const std::size_t n = snap.Count(resource);
    total += n;
    const bool target = resource == res::kBackupTargets;
    steps.push_back({{"step", step},
                     {"kind", KindOf(resource)},
                     {"resource", resource},
                     {"action", target ? "annotate, empty the URL, delete" : "delete"},
                     {"count", n}});
    if (steps_text) {
      out_ << "  " << step << ". "
           << (target ? "annotate, empty the URL of, then delete " : "delete ") << n << " "
           << KindOf(resource) << std::endl;
    } else if (n > 0) {
      line << (line.tellp() > 0 ? ", " : "") << KindOf(resource) << " " << n;
    }
    ++step;
  }
  if (steps_text) {
    out_ << "  " << step << ". a final sweep: fresh lists of every kind; anything left goes "
         << "through the steps again" << std::endl;
  } else {
    out_ << "plan: " << (total == 0 ? "nothing to delete" : line.str()) << " (" << total
         << " objects in " << order.size() << " kinds), then a final sweep" << std::endl;
  }
  if (events_ != nullptr) {
    events_->Write("plan",
                   {{"namespace", ns}, {"dry_run", dry_run}, {"steps", steps}, {"total", total}});
  }
}

void UninstallReport::Start(Clock::time_point started) { started_ = started; }

void UninstallReport::NoteListed(const std::string& resource, size_t n) {
  std::lock_guard<std::mutex> lock(progress_mu_);
  listed_[resource] = n;
  gone_since_list_[resource] = 0;
}

void UninstallReport::NoteGone(const std::string& resource) {
  ++removed_;
  std::lock_guard<std::mutex> lock(progress_mu_);
  ++gone_since_list_[resource];
}

void UninstallReport::NoteDeleted(const std::string& resource, const json& answered) {
  if (answered.empty()) return;  // nothing written, or gone already (someone else's doing)
  const json* meta = answered.contains("metadata") ? &answered["metadata"] : nullptr;
  if (meta == nullptr || !meta->is_object()) return;
  auto f = meta->find("finalizers");
  if (f == meta->end() || !f->is_array() || f->empty()) NoteGone(resource);
}

void UninstallReport::SetStep(std::string step) {
  std::lock_guard<std::mutex> lock(progress_mu_);
  step_ = std::move(step);
}

void UninstallReport::PrintProgress(Clock::time_point now, double recent_rate) {
  const double elapsed = std::chrono::duration<double>(now - started_).count();
  const size_t removed = removed_.load();
  const std::vector<std::string> order = Order();
  json remaining = json::object();
  size_t total = 0;
  std::string step;
  {
    std::lock_guard<std::mutex> lock(progress_mu_);
    step = step_;
    for (const std::string& resource : order) {
      auto listed = listed_.find(resource);
      if (listed == listed_.end()) continue;
      const size_t gone = gone_since_list_[resource];
      const size_t left = listed->second > gone ? listed->second - gone : 0;
      remaining[KindOf(resource)] = left;
      total += left;
    }
  }
  size_t failing = 0;
  {
    std::lock_guard<std::mutex> lock(failures_mu_);
    failing = failures_.size();
  }
  const double rate = elapsed > 0 ? static_cast<double>(removed) / elapsed : 0.0;
  std::ostringstream line;
  line << "progress: " << FormatElapsed(elapsed) << " elapsed, step " << step << "; remaining: ";
  bool first = true;
  for (auto it = remaining.begin(); it != remaining.end(); ++it) {
    if (it.value().get<size_t>() == 0) continue;
    line << (first ? "" : ", ") << it.key() << " " << it.value().get<size_t>();
    first = false;
  }
  if (first) line << "none listed";
  char rates[96];
  std::snprintf(rates, sizeof(rates), "%.1f/s, %.1f/s over the last %.0fs", rate, recent_rate,
                std::chrono::duration<double>(progress_interval_).count());
  line << " (" << total << " in all); removed " << removed << " (" << rates << ")";
  if (failing > 0) line << "; " << failing << " objects' last write failed (retrying)";
  out_ << line.str() << std::endl;
  if (events_ != nullptr) {
    events_->Write("progress", {{"elapsed_seconds", Round(elapsed)},
                                {"step", step},
                                {"remaining", remaining},
                                {"remaining_total", total},
                                {"removed", removed},
                                {"rate_per_second", Round(rate)},
                                {"recent_rate_per_second", Round(recent_rate)},
                                {"failing_objects", failing}});
  }
}

std::string UninstallReport::FormatElapsed(double seconds) {
  const long long s = static_cast<long long>(seconds);
  char buf[32];
  if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1fs", seconds);
  }
  return buf;
}

void UninstallReport::NoteFailure(const std::string& resource, const std::string& name,
                                  const std::string& verb, const Status& s, uint64_t pass) {
  Failure failure{
      KindOf(resource), name, verb, DescribeWriteError(s), kube::WebhookErrorOf(s.message()), pass};
  std::lock_guard<std::mutex> lock(failures_mu_);
  failures_[resource + "/" + name] = std::move(failure);
}

void UninstallReport::NoteSuccess(const std::string& resource, const std::string& name) {
  std::lock_guard<std::mutex> lock(failures_mu_);
  failures_.erase(resource + "/" + name);
}

std::string UninstallReport::LastError(const std::string& resource, const std::string& name) const {
  std::lock_guard<std::mutex> lock(failures_mu_);
  auto it = failures_.find(resource + "/" + name);
  return it == failures_.end() ? "" : it->second.verb + ": " + it->second.error;
}

void UninstallReport::ReportFailures(uint64_t pass) {
  std::map<std::string, std::vector<std::string>> by_cause;
  std::map<std::string, json> events;   // cause -> its event (without the objects)
  std::map<std::string, json> objects;  // cause -> the first kNamesPerCause objects
  {
    std::lock_guard<std::mutex> lock(failures_mu_);
    for (const auto& [key, f] : failures_) {
      if (f.pass != pass) continue;
      std::string cause;
      if (f.webhook && f.webhook->denied) {
        cause = "refused by admission webhook \"" + f.webhook->webhook + "\": " + f.webhook->reason;
      } else if (f.webhook) {
        cause = "admission webhook \"" + f.webhook->webhook +
                "\" could not be called: " + f.webhook->reason;
      } else {
        cause = f.error;
      }
      std::vector<std::string>& writes = by_cause[cause];
      writes.push_back(f.verb + " " + f.kind + " " + f.name);
      if (events_ == nullptr) continue;
      if (writes.size() == 1) {
        events[cause] = f.webhook ? json{{"type", "webhook"},
                                         {"webhook", f.webhook->webhook},
                                         {"denied", f.webhook->denied},
                                         {"reason", f.webhook->reason}}
                                  : json{{"type", "blocker"}, {"reason", f.error}};
        objects[cause] = json::array();
      }
      if (writes.size() <= kNamesPerCause) {
        objects[cause].push_back({{"kind", f.kind}, {"name", f.name}, {"verb", f.verb}});
      }
    }
  }
  std::ostringstream report;
  for (const auto& [cause, writes] : by_cause) {
    report << "uninstall: " << writes.size() << (writes.size() == 1 ? " write " : " writes ")
           << "failed (";
    for (size_t i = 0; i < writes.size() && i < kNamesPerCause; ++i) {
      report << (i ? ", " : "") << writes[i];
    }
    if (writes.size() > kNamesPerCause) {
      report << ", and " << writes.size() - kNamesPerCause << " more";
    }
    report << "): " << cause << "; retrying until the timeout" << std::endl;
  }
  const std::string text = report.str();
  const auto now = Clock::now();
  if (text.empty() ||
      (text == last_failure_report_ && now - last_failure_report_at_ < kFailureReportInterval)) {
    return;
  }
  err_ << text << std::flush;
  last_failure_report_ = text;
  last_failure_report_at_ = now;
  for (auto& [cause, event] : events) {
    const std::string type = event["type"];
    event.erase("type");
    event["failed_writes"] = by_cause[cause].size();
    event["objects"] = std::move(objects[cause]);  // the first few
    event["retrying"] = true;
    events_->Write(type, event);
  }
}

int UninstallReport::PrintBlockers(UninstallSnapshot& view, const RuleContext& ctx,
                                   bool simulate_deletion, bool force) {
  int blockers = 0;
  std::ostream& to = simulate_deletion ? out_ : err_;
  for (const std::string& resource : Order()) {
    view.ForEach(resource, [&](size_t, json& obj) {
      const json finalizers = obj["metadata"].value("finalizers", json::array());
      const std::string last_error = simulate_deletion ? "" : LastError(resource, Name(obj));
      std::string why;
      if (finalizers.empty()) {
        if (simulate_deletion) return;
        why = longhorn::IsBeingDeleted(obj) ? "being deleted" : "not deleted yet";
      } else if (!longhorn::HasFinalizer(obj, longhorn::kFinalizer)) {
        why = "its finalizers are not longhorn.io: their owner must remove them";
      } else {
        if (simulate_deletion && !longhorn::IsBeingDeleted(obj)) {
          obj["metadata"]["deletionTimestamp"] = Timestamp(ctx.now);  // deleting from now on
        }
        const Plan plan = PlanFor(resource, obj, view, ctx);
        if (plan.release) {
          if (simulate_deletion) return;
          why = longhorn::IsBeingDeleted(obj) ? "the rules release it; not released yet"
                                              : "not deleted yet";
        } else {
          why = plan.held_because;
          if (!force) {
            why += "; released " + std::to_string(ctx.release_grace.count()) +
                   "s after its deletion because the uninstall is confirmed";
          }
        }
      }
      if (!last_error.empty()) why += "; last error: " + last_error;
      ++blockers;
      to << "  " << KindOf(resource) << " " << Name(obj) << " finalizers=" << finalizers.dump()
         << ": " << why << std::endl;
      if (events_ != nullptr) {
        json event = {{"kind", KindOf(resource)},
                      {"name", Name(obj)},
                      {"finalizers", finalizers},
                      {"reason", why},
                      {"dry_run", simulate_deletion}};
        if (!last_error.empty()) event["last_error"] = last_error;
        events_->Write("blocker", event);
      }
    });
  }
  return blockers;
}

size_t UninstallReport::PrintSweep(const UninstallSnapshot& snap) {
  const std::vector<std::string> order = Order();
  size_t left = 0;
  std::ostringstream found;
  for (const std::string& resource : order) {
    const size_t n = snap.Count(resource);
    if (n == 0) continue;
    left += n;
    found << (left == n ? "" : ", ") << n << " " << KindOf(resource);
  }
  if (left == 0) {
    out_ << "final sweep: nothing left of " << order.size() << " kinds" << std::endl;
  } else {
    out_ << "final sweep: found " << found.str() << "; going through the steps again" << std::endl;
  }
  return left;
}

void UninstallReport::PrintComplete() { out_ << "uninstall complete: nothing left" << std::endl; }

UninstallProgressTicker::UninstallProgressTicker(UninstallReport& report,
                                                 std::chrono::milliseconds interval)
    : report_(report), interval_(interval) {
  if (interval_.count() > 0) thread_ = std::thread([this] { Loop(); });
}

UninstallProgressTicker::~UninstallProgressTicker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void UninstallProgressTicker::Loop() {
  using Clock = UninstallReport::Clock;
  std::unique_lock<std::mutex> lock(mu_);
  size_t last_removed = 0;
  Clock::time_point last_at = report_.started();
  while (!cv_.wait_for(lock, interval_, [this] { return stopping_; })) {
    const Clock::time_point now = Clock::now();
    const size_t removed = report_.removed();
    const double window = std::chrono::duration<double>(now - last_at).count();
    report_.PrintProgress(now,
                          window > 0 ? static_cast<double>(removed - last_removed) / window : 0.0);
    last_removed = removed;
    last_at = now;
  }
}

}  // namespace bg::processor
