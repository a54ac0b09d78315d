#include "processor/controller.h"

#include "common/log.h"
#include "common/longhorn.h"
#include "domain/confirmation.h"
#include "domain/kinds.h"

namespace bg::processor {

using domain::CascadeOnly;
using domain::MissingOwnerReference;
using domain::NeedsRelease;
using domain::Plan;
using domain::PlanBackupTarget;
using domain::PlanFor;
using domain::RuleContext;
using domain::SecondsDeleting;
using domain::SecondsDeletingIn;
namespace reason = domain::reason;

using nlohmann::json;
namespace res = longhorn::resource;

namespace {
// How often the deleting-objects gauges and the queue depth are refreshed.
constexpr std::chrono::milliseconds kMetricsInterval{2000};

std::string Key(const std::string& resource, const std::string& name) {
  return resource + "/" + name;
}
}  // namespace

CacheLookup::CacheLookup(std::string ns, std::map<std::string, kube::Informer*> informers)
    : ns_(std::move(ns)), informers_(std::move(informers)) {}

kube::Informer* CacheLookup::Find(std::string_view resource, std::string_view ns) const {
  if (ns != ns_) return nullptr;
  auto it = informers_.find(std::string(resource));
  return it == informers_.end() ? nullptr : it->second;
}

kube::GetResult CacheLookup::Get(std::string_view resource, std::string_view ns,
                                 std::string_view name) {
  kube::Informer* informer = Find(resource, ns);
  if (informer == nullptr || name.empty()) return std::nullopt;
  return informer->Get(std::string(name));
}

kube::ListResult CacheLookup::List(std::string_view resource, std::string_view ns,
                                   std::string_view selector) {
  kube::Informer* informer = Find(resource, ns);
  if (informer == nullptr) return std::vector<json>();
  return informer->List(std::string(selector));
}

bool CacheLookup::Ready() {
  for (const auto& [resource, informer] : informers_) {
    if (!informer->Synced()) return false;
  }
  return true;
}

// Reads straight from the API, for confirming decisions that rest on something being absent:
// an informer cache may not have seen an object created a moment ago. A read that fails is an
// error (the rules then decide nothing), and a failed confirmation never releases anything.
class LiveLookup final : public kube::ResourceLookup {
 public:
  explicit LiveLookup(kube::KubeApi& api) : api_(api) {}
  kube::GetResult Get(std::string_view resource, std::string_view ns,
                      std::string_view name) override {
    if (name.empty()) return std::nullopt;
    auto r = api_.Get(domain::Resource(resource), std::string(ns), std::string(name));
    if (r.ok()) return std::move(r).value();
    if (r.status().IsNotFound()) return std::nullopt;
    return r.status();
  }
  kube::ListResult List(std::string_view resource, std::string_view ns,
                        std::string_view selector) override {
    auto r = api_.List(domain::Resource(resource), std::string(ns), std::string(selector));
    std::vector<json> out;
    if (!r.ok()) {
      if (r.status().IsNotFound()) return out;
      return r.status();
    }
    for (const json& item : r->value("items", json::array())) out.push_back(item);
    return out;
  }
  bool Ready() override { return true; }

 private:
  kube::KubeApi& api_;
};

Controller::Controller(kube::KubeApi& api, ControllerOptions options, ProcessorMetrics* metrics,
                       std::function<bool()> is_leader)
    : api_(api),
      options_(std::move(options)),
      metrics_(metrics),
      is_leader_(std::move(is_leader)),
      executor_(api, options_.ns, is_leader_),
      clock_(options_.clock != nullptr ? options_.clock : kube::Clock::Real()),
      deletions_(clock_),
      queue_(options_.backoff_base, options_.backoff_max, clock_) {
  std::map<std::string, kube::Informer*> raw;
  for (const std::string& resource : domain::WatchedResources()) {
    auto informer = std::make_unique<kube::Informer>(
        api_, domain::Resource(resource), options_.ns,
        [this, resource](const std::string& name) { OnChange(resource, name); });
    raw[resource] = informer.get();
    informers_[resource] = std::move(informer);
  }
  view_ = std::make_unique<CacheLookup>(options_.ns, raw);
  if (metrics_ != nullptr) queue_.SetObserver(metrics_->queue_observer());
}

Controller::~Controller() { Stop(); }

kube::Informer* Controller::InformerFor(const std::string& resource) const {
  auto it = informers_.find(resource);
  return it == informers_.end() ? nullptr : it->second.get();
}

bool Controller::Synced() { return view_->Ready(); }

void Controller::Start() {
  for (auto& [resource, informer] : informers_) {
    kube::Informer* raw = informer.get();
    threads_.emplace_back([this, raw] { raw->Run(stop_); });
  }
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { WorkerLoop(); });
  threads_.emplace_back([this] { ResyncLoop(); });
}

void Controller::Stop() {
  if (stop_.exchange(true)) return;
  queue_.ShutDown();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void Controller::EnqueueAll() {
  for (const auto& [resource, informer] : informers_) {
    for (const std::string& name : informer->Names()) queue_.Add(Key(resource, name));
  }
}

void Controller::OnChange(const std::string& resource, const std::string& name) {
  if (resource == res::kSettings) {
    // The confirmation flag changes what every deleting object may do.
    if (name == longhorn::kDeletingConfirmationFlag) EnqueueAll();
    return;
  }
  queue_.Add(Key(resource, name));
  // A child changing can unblock its parent: re-queue the parents that wait on children.
  if (domain::IsChildOf(resource, res::kBackupTargets)) {
    for (const json& target : InformerFor(std::string(res::kBackupTargets))->List()) {
      if (NeedsRelease(target) || CascadeOnly(std::string(res::kBackupTargets), target)) {
        queue_.Add(Key(std::string(res::kBackupTargets),
                       longhorn::StringAt(target, {"metadata", "name"})));
      }
    }
  }
  if (resource == res::kBackupTargets) {
    // A target's availability decides whether the engine or backup-guard deletes its children:
    // every child waiting for release is looked at again.
    for (std::string_view child : domain::ChildrenOf(res::kBackupTargets)) {
      for (const json& obj : InformerFor(std::string(child))->ListDeleting()) {
        if (NeedsRelease(obj)) {
          queue_.Add(Key(std::string(child), longhorn::StringAt(obj, {"metadata", "name"})));
        }
      }
    }
  }
  if (resource == res::kBackupTargets && name == longhorn::kDefaultBackupTarget) {
    // The upgrade rule: SystemBackups without an owner reference wait for the default target.
    for (const json& sb : InformerFor(std::string(res::kSystemBackups))->List()) {
      if (!longhorn::HasBackupTargetOwner(sb)) {
        queue_.Add(
            Key(std::string(res::kSystemBackups), longhorn::StringAt(sb, {"metadata", "name"})));
      }
    }
  }
  if (resource == res::kBackups) {
    auto backup = InformerFor(resource)->Get(name);
    const std::string volume =
        backup ? longhorn::Label(*backup, longhorn::kBackupVolumeLabel) : std::string();
    if (!volume.empty()) {
      const std::string selector = std::string(longhorn::kBackupVolumeLabel) + "=" + volume;
      for (const json& bv : InformerFor(std::string(res::kBackupVolumes))->List(selector)) {
        if (NeedsRelease(bv)) {
          queue_.Add(
              Key(std::string(res::kBackupVolumes), longhorn::StringAt(bv, {"metadata", "name"})));
        }
      }
    } else {
      // Unknown volume (the backup is gone): re-check every BackupVolume being deleted.
      for (const json& bv : InformerFor(std::string(res::kBackupVolumes))->ListDeleting()) {
        if (NeedsRelease(bv)) {
          queue_.Add(
              Key(std::string(res::kBackupVolumes), longhorn::StringAt(bv, {"metadata", "name"})));
        }
      }
    }
  }
}

RuleContext Controller::Context() {
  RuleContext ctx;
  ctx.ns = options_.ns;
  ctx.now = std::chrono::system_clock::now();
  ctx.release_grace = options_.release_grace;
  ctx.deletions = &deletions_;
  // The caches never fail a read; were one to, an unread flag confirms nothing (nothing released).
  const Result<bool> confirmed = domain::ConfirmationFlagSet(*view_, options_.ns);
  ctx.uninstall_confirmed = confirmed.ok() && *confirmed;
  return ctx;
}

Status Controller::Reconcile(const std::string& key) {
  if (!is_leader_()) return Status::Ok();  // followers only keep caches warm
  const auto slash = key.find('/');
  const std::string resource = key.substr(0, slash);
  const std::string name = key.substr(slash + 1);
  kube::Informer* informer = InformerFor(resource);
  if (informer == nullptr) return Status::Ok();
  auto obj = informer->Get(name);
  if (!obj) return Status::Ok();
  const RuleContext ctx = Context();

  if (resource == res::kSystemBackups) {
    const Result<json> ref = MissingOwnerReference(*obj, *view_, options_.ns);
    if (!ref.ok()) return ref.status();
    if (!ref->is_null()) {
      if (Status s = executor_.AddOwnerReference(*obj, *ref); !s.ok()) return s;
      log::Info("owner reference added", {{"systembackup", name}});
      return Status::Ok();  // the update event brings the object back
    }
  }
  if (CascadeOnly(resource, *obj)) {
    const Plan cascade = PlanBackupTarget(*obj, *view_, ctx);
    if (!cascade.read_error.ok()) return cascade.read_error;
    return executor_.Cascade(cascade);
  }
  if (!NeedsRelease(*obj)) return Status::Ok();
  // Starts this deletion's monotonic reading even before an uninstall is confirmed, so that a
  // confirmation long after the deletion releases it without waiting another grace.
  (void)SecondsDeletingIn(*obj, ctx);

  const Plan plan = PlanFor(resource, *obj, *view_, ctx);
  if (!plan.read_error.ok()) return plan.read_error;
  if (Status s = executor_.Cascade(plan); !s.ok()) return s;
  if (!plan.release) {
    if (ctx.uninstall_confirmed) {
      const long long deleting = SecondsDeletingIn(*obj, ctx);
      const long long left = options_.release_grace.count() - std::max(0LL, deleting);
      queue_.AddAfter(key, std::chrono::milliseconds((std::max(0LL, left) + 1) * 1000));
    }
    return Status::Ok();
  }
  // A release that rests on an absent parent or child is confirmed against the API itself.
  // So does one that rests on a target not being available: a cache that lags the target's
  // status must never take the engine's job away.
  const bool rests_on_absence = plan.reason == reason::kParentGone ||
                                plan.reason == reason::kChildrenGone ||
                                plan.reason == reason::kTargetUnavailable;
  if (rests_on_absence) {
    LiveLookup live(api_);
    const Plan confirmed = PlanFor(resource, *obj, live, ctx);
    if (!confirmed.read_error.ok()) {
      return Status::Unavailable("could not confirm the release against the API: " +
                                 confirmed.read_error.message());
    }
    if (!confirmed.release) {
      log::Info("release withdrawn: the cache had not seen a parent or child yet",
                {{"resource", resource}, {"name", name}});
      queue_.AddAfter(key, std::chrono::milliseconds(1000));
      return Status::Ok();
    }
  }
  auto released = executor_.Release(resource, *obj, [&](const json& fresh) {
    LiveLookup live(api_);
    return PlanFor(resource, fresh, live, Context());  // a failed read holds (read_error)
  });
  if (!released.ok()) return released.status();
  if (*released == Executor::Outcome::kReleased) {
    log::Info("finalizer released",
              {{"resource", resource}, {"name", name}, {"reason", plan.reason}});
    if (metrics_ != nullptr) metrics_->Released(domain::Resource(resource).kind, plan.reason);
  }
  return Status::Ok();
}

void Controller::WorkerLoop() {
  // Rules read parents from the caches: before every cache is synced a parent would look absent,
  // and an absent parent releases a finalizer. Nothing is processed until all are synced.
  while (!Synced()) {
    if (!kube::SleepUnlessStopped(std::chrono::milliseconds(50), stop_)) return;
  }
  std::string key;
  while (queue_.Get(&key)) {
    const auto start = clock_->Now();
    Status s;
    try {
      s = Reconcile(key);
    } catch (const std::exception& e) {
      s = Status::Internal(e.what());  // untrusted objects must never kill a worker
    }
    const double seconds = std::chrono::duration<double>(clock_->Now() - start).count();
    const std::string kind = domain::Resource(key.substr(0, key.find('/'))).kind;
    if (s.ok()) {
      queue_.Forget(key);
      if (metrics_ != nullptr) metrics_->Reconciled(kind, "success", seconds);
    } else {
      log::Warn("reconcile failed, retrying with backoff",
                {{"key", key}, {"error", s.message()}, {"retries", queue_.Retries(key)}});
      queue_.AddRateLimited(key);
      if (metrics_ != nullptr) {
        metrics_->Reconciled(kind, "error", seconds);
        metrics_->Retried();
      }
    }
    queue_.Done(key);
  }
}

void Controller::UpdateDeletingMetrics() {
  if (metrics_ == nullptr) return;
  const auto now = std::chrono::system_clock::now();
  for (const auto& [resource, informer] : informers_) {
    if (resource == res::kSettings) continue;
    double count = 0;
    double oldest = 0;
    for (const json& obj : informer->ListDeleting()) {
      if (!NeedsRelease(obj)) continue;
      ++count;
      oldest = std::max(oldest, static_cast<double>(std::max(0LL, SecondsDeleting(obj, now))));
    }
    metrics_->SetDeleting(domain::Resource(resource).kind, count, oldest);
  }
  metrics_->SetDepth(static_cast<double>(queue_.Depth()));
  double unfinished = 0;
  double longest = 0;
  queue_.Unfinished(&unfinished, &longest);
  metrics_->SetUnfinished(unfinished, longest);
  metrics_->SetLeader(is_leader_());
}

void Controller::ResyncLoop() {
  auto next_resync = clock_->Now() + options_.resync;
  while (kube::SleepUnlessStopped(kMetricsInterval, stop_)) {
    UpdateDeletingMetrics();
    if (clock_->Now() >= next_resync) {
      if (is_leader_()) EnqueueAll();
      next_resync = clock_->Now() + options_.resync;
    }
  }
}

}  // namespace bg::processor
