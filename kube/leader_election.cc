#include "kube/leader_election.h"

#include <cstdio>
#include <ctime>

#include "common/log.h"
#include "kube/informer.h"

namespace bg::kube {

using nlohmann::json;

std::string MicroTimeNow() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const long long micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
  return buf;
}

LeaderElector::LeaderElector(KubeApi& api, LeaderElectionOptions options,
                             std::function<void()> on_started, std::function<void()> on_stopped)
    : api_(api),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : Clock::Real()),
      on_started_(std::move(on_started)),
      on_stopped_(std::move(on_stopped)) {}

Status ValidateLeaderElectionTimings(const LeaderElectionOptions& o) {
  auto text = [](std::chrono::milliseconds d) {
    return d.count() % 1000 == 0 ? std::to_string(d.count() / 1000) + "s"
                                 : std::to_string(d.count()) + "ms";
  };
  if (o.lease_duration.count() <= 0 || o.renew_deadline.count() <= 0 ||
      o.retry_period.count() <= 0) {
    return Status::InvalidArgument(
        "--leader-election-lease-duration, --leader-election-renew-deadline and "
        "--leader-election-retry-period must be positive");
  }
  if (o.lease_duration <= o.renew_deadline) {
    return Status::InvalidArgument("--leader-election-lease-duration (" + text(o.lease_duration) +
                                   ") must be greater than --leader-election-renew-deadline (" +
                                   text(o.renew_deadline) +
                                   "): a leader must stop writing before another may take over");
  }
  // client-go's JitterFactor.
  constexpr double kJitterFactor = 1.2;
  if (std::chrono::duration<double>(o.renew_deadline) <=
      std::chrono::duration<double>(o.retry_period) * kJitterFactor) {
    return Status::InvalidArgument("--leader-election-renew-deadline (" + text(o.renew_deadline) +
                                   ") must be greater than 1.2 x --leader-election-retry-period (" +
                                   text(o.retry_period) + "), as in client-go");
  }
  return Status::Ok();
}

bool LeaderElector::IsLeader() const { return LeadershipDeadline().has_value(); }

std::optional<Clock::TimePoint> LeaderElector::LeadershipDeadline() const {
  if (!leader_.load()) return std::nullopt;
  const auto deadline =
      Clock::TimePoint(Clock::Duration(last_renew_.load())) + options_.renew_deadline;
  if (clock_->Now() >= deadline) return std::nullopt;
  return deadline;
}

void LeaderElector::SetLeader(bool leader) {
  if (leader_.exchange(leader) == leader) return;
  log::Info(leader ? "became leader" : "stopped being leader",
            {{"identity", options_.identity}, {"lease", options_.lease_name}});
  if (leader && on_started_) on_started_();
  if (!leader && on_stopped_) on_stopped_();
}

bool LeaderElector::TryAcquireOrRenew() {
  const std::string now = MicroTimeNow();
  const long long duration_s =
      std::chrono::duration_cast<std::chrono::seconds>(options_.lease_duration).count();
  auto current = api_.Get(kLeases, options_.ns, options_.lease_name);
  if (!current.ok()) {
    if (!current.status().IsNotFound()) return false;
    json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", options_.lease_name}, {"namespace", options_.ns}}},
                  {"spec",
                   {{"holderIdentity", options_.identity},
                    {"leaseDurationSeconds", duration_s},
                    {"acquireTime", now},
                    {"renewTime", now},
                    {"leaseTransitions", 0}}}};
    return api_.Create(kLeases, options_.ns, lease).ok();
  }
  json lease = std::move(current).value();
  json& spec = lease["spec"];
  if (!spec.is_object()) spec = json::object();
  const std::string holder = spec.value("holderIdentity", "");
  const std::string renew_time = spec.value("renewTime", "");
  if (holder != observed_holder_ || renew_time != observed_renew_time_) {
    observed_holder_ = holder;
    observed_renew_time_ = renew_time;
    observed_at_ = clock_->Now();
  }
  long long their_duration = duration_s;
  if (spec.contains("leaseDurationSeconds") && spec["leaseDurationSeconds"].is_number_integer()) {
    their_duration = spec["leaseDurationSeconds"].get<long long>();
  }
  const bool held_by_other = !holder.empty() && holder != options_.identity;
  const bool expired = clock_->Now() - observed_at_ >= std::chrono::seconds(their_duration);
  if (held_by_other && !expired) return false;

  if (holder != options_.identity) {
    spec["acquireTime"] = now;
    spec["leaseTransitions"] = spec.value("leaseTransitions", 0) + 1;
  }
  spec["holderIdentity"] = options_.identity;
  spec["leaseDurationSeconds"] = duration_s;
  spec["renewTime"] = now;
  // PUT carries the resourceVersion we read: a concurrent writer makes this a 409, and we lose.
  auto updated = api_.Update(kLeases, options_.ns, lease);
  if (!updated.ok()) return false;
  observed_holder_ = options_.identity;
  observed_renew_time_ = now;
  observed_at_ = clock_->Now();
  return true;
}

void LeaderElector::Release() {
  auto current = api_.Get(kLeases, options_.ns, options_.lease_name);
  if (!current.ok()) return;
  json lease = std::move(current).value();
  if (!lease["spec"].is_object() ||
      lease["spec"].value("holderIdentity", "") != options_.identity) {
    return;
  }
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["leaseDurationSeconds"] = 1;
  lease["spec"]["renewTime"] = MicroTimeNow();
  (void)api_.Update(kLeases, options_.ns, lease);
}

void LeaderElector::Run(const std::atomic<bool>& stop) {
  while (!stop.load()) {
    const Clock::TimePoint attempt_started = clock_->Now();
    // A renewal slower than the renew deadline does not count: leadership is measured from the
    // attempt's start, so it would already have lapsed.
    const bool ok =
        TryAcquireOrRenew() && clock_->Now() - attempt_started < options_.renew_deadline;
    if (ok) {
      // A renewal that completed after the deadline had passed: this replica stopped acting in
      // between (work was dropped), so it starts again as a new leader would, re-queueing all.
      const bool lapsed = leader_.load() && !IsLeader();
      last_renew_ = attempt_started.time_since_epoch().count();
      if (lapsed) SetLeader(false);
      SetLeader(true);
    } else if (leader_.load() && !IsLeader()) {
      SetLeader(false);  // renew deadline passed
    }
    if (leader_.load() && !IsLeader()) SetLeader(false);
    if (!SleepUnlessStopped(options_.retry_period, stop)) break;
  }
  if (leader_.load()) {
    SetLeader(false);
    Release();
  }
}

}  // namespace bg::kube
