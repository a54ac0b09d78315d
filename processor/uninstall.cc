#include "processor/uninstall.h"

#include <algorithm>
#include <ctime>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common/longhorn.h"
#include "kube/informer.h"
#include "processor/executor.h"
#include "processor/rules.h"

namespace bg::processor {

using nlohmann::json;
namespace res = longhorn::resource;

namespace {

using Clock = std::chrono::steady_clock;

const kube::ResourceRef kCrds{"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                              "CustomResourceDefinition"};

// A point-in-time copy of every kind the rules read, listed once per pass.
class Snapshot final : public kube::ResourceLookup {
 public:
  std::optional<json> Get(std::string_view resource, std::string_view,
                          std::string_view name) override {
    auto it = items_.find(std::string(resource));
    if (it == items_.end()) return std::nullopt;
    for (const json& obj : it->second) {
      if (longhorn::StringAt(obj, {"metadata", "name"}) == name) return obj;
    }
    return std::nullopt;
  }
  std::vector<json> List(std::string_view resource, std::string_view,
                         std::string_view selector) override {
    std::vector<json> out;
    auto it = items_.find(std::string(resource));
    if (it == items_.end()) return out;
    for (const json& obj : it->second) {
      if (kube::MatchesSelector(obj, std::string(selector))) out.push_back(obj);
    }
    return out;
  }
  bool Ready() override { return true; }

  std::map<std::string, std::vector<json>> items_;
};

std::string Kind(const std::string& resource) {
  const std::string kind = kube::LonghornResource(resource).kind;
  return kind.empty() ? resource : kind;
}

std::string Name(const json& obj) { return longhorn::StringAt(obj, {"metadata", "name"}); }

std::string NowTimestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

class Uninstaller {
 public:
  Uninstaller(kube::KubeApi& api, const UninstallOptions& options, std::ostream& out,
              std::ostream& err)
      : api_(api), options_(options), out_(out), err_(err), executor_(api, options.ns, [] {
          return true;
        }) {}

  int Run() {
    if (!CheckConfirmation()) return 2;
    deadline_ = Clock::now() + options_.timeout;
    if (!DiscoverKinds()) return 1;
    if (options_.dry_run) return DryRun();
    for (const std::string& resource : order_) {
      if (!RunStep(resource)) return 1;
    }
    out_ << "uninstall complete: nothing left" << std::endl;
    return 0;
  }

 private:
  bool CheckConfirmation() {
    auto flag = api_.Get(kube::LonghornResource(std::string(res::kSettings)), options_.ns,
                         std::string(longhorn::kDeletingConfirmationFlag));
    if (!flag.ok()) {
      err_ << "uninstall: cannot read Setting " << longhorn::kDeletingConfirmationFlag << " in "
           << options_.ns << ": " << flag.status().message()
           << "\nset it to \"true\" to confirm the uninstall" << std::endl;
      return false;
    }
    const std::string value = longhorn::StringAt(*flag, {"value"});
    if (value != "true") {
      err_ << "uninstall: refusing to start: Setting " << longhorn::kDeletingConfirmationFlag
           << " is \"" << value << "\", not \"true\". Set it to \"true\" to confirm that the "
           << "storage engine's resources may be deleted." << std::endl;
      return false;
    }
    return true;
  }

  // The fixed order, then every other longhorn.io kind whose CRD exists (settings excepted).
  bool DiscoverKinds() {
    while (true) {
      Status s = TryDiscoverKinds();
      if (s.ok()) return true;
      err_ << "uninstall: cannot list CustomResourceDefinitions: " << s.message() << " (retrying)"
           << std::endl;
      if (!WaitOrTimeOut()) return false;
    }
  }

  Status TryDiscoverKinds() {
    const std::vector<std::string> fixed = {
        std::string(res::kVolumes),       std::string(res::kBackupTargets),
        std::string(res::kBackupVolumes), std::string(res::kBackups),
        std::string(res::kSystemBackups), std::string(res::kBackupBackingImages)};
    std::set<std::string> served;
    auto crds = api_.List(kCrds, "", "");
    if (!crds.ok()) return crds.status();
    order_.clear();
    std::vector<std::string> others;
    for (const json& crd : crds->value("items", json::array())) {
      if (longhorn::StringAt(crd, {"spec", "group"}) != longhorn::kGroup) continue;
      const std::string plural = longhorn::StringAt(crd, {"spec", "names", "plural"});
      if (plural.empty()) continue;
      served.insert(plural);
      if (std::find(fixed.begin(), fixed.end(), plural) == fixed.end() &&
          plural != res::kSettings) {
        others.push_back(plural);
      }
      kinds_[plural] = longhorn::StringAt(crd, {"spec", "names", "kind"});
    }
    for (const std::string& r : fixed) {
      if (served.count(r)) order_.push_back(r);
    }
    order_.insert(order_.end(), others.begin(), others.end());
    return Status::Ok();
  }

  std::string KindOf(const std::string& resource) const {
    auto it = kinds_.find(resource);
    return it != kinds_.end() && !it->second.empty() ? it->second : Kind(resource);
  }

  kube::ResourceRef Ref(const std::string& resource) const {
    kube::ResourceRef r = kube::LonghornResource(resource);
    r.kind = KindOf(resource);
    return r;
  }

  Result<Snapshot> Take() {
    Snapshot snap;
    for (const std::string& resource : order_) {
      auto list = api_.List(Ref(resource), options_.ns, "");
      if (!list.ok()) {
        if (list.status().IsNotFound()) continue;  // CRD removed meanwhile
        return list.status();
      }
      for (const json& item : list->value("items", json::array()))
        snap.items_[resource].push_back(item);
    }
    return snap;
  }

  RuleContext Context() const {
    RuleContext ctx;
    ctx.ns = options_.ns;
    ctx.uninstall_confirmed = true;
    ctx.now = std::chrono::system_clock::now();
    ctx.release_grace = options_.force ? std::chrono::seconds(0) : options_.release_grace;
    return ctx;
  }

  // One pass of the release rules over every object being deleted, of every kind.
  Status ReleasePass(Snapshot& snap) {
    const RuleContext ctx = Context();
    for (const std::string& resource : order_) {
      for (const json& obj : snap.List(resource, options_.ns, "")) {
        if (resource == res::kBackupTargets && !longhorn::IsBeingDeleted(obj) &&
            longhorn::StringAt(obj, {"spec", "backupTargetURL"}).empty()) {
          if (Status s = executor_.Cascade(PlanBackupTarget(obj, snap, ctx)); !s.ok()) return s;
          continue;
        }
        if (!NeedsRelease(obj)) continue;
        const Plan plan = PlanFor(resource, obj, snap, ctx);
        if (Status s = executor_.Cascade(plan); !s.ok()) return s;
        if (!plan.release) continue;
        auto released = executor_.Release(resource, obj, [&](const json& fresh) {
          return PlanFor(resource, fresh, snap, Context());
        });
        if (!released.ok()) return released.status();
      }
    }
    return Status::Ok();
  }

  Status PrepareBackupTargets(const std::vector<json>& targets) {
    for (const json& target : targets) {
      if (longhorn::IsBeingDeleted(target)) continue;
      const bool annotated =
          longhorn::HasAnnotation(target, longhorn::kDeleteBackupTargetAnnotation);
      const bool emptied = longhorn::StringAt(target, {"spec", "backupTargetURL"}).empty();
      if (annotated && emptied) continue;
      const json patch = {
          {"metadata",
           {{"annotations", {{std::string(longhorn::kDeleteBackupTargetAnnotation), ""}}}}},
          {"spec", {{"backupTargetURL", ""}}}};
      if (Status s = executor_.Patch(std::string(res::kBackupTargets), Name(target), patch);
          !s.ok()) {
        return s;
      }
    }
    return Status::Ok();
  }

  bool RunStep(const std::string& resource) {
    bool prepared = resource != res::kBackupTargets;
    std::size_t last_reported = static_cast<std::size_t>(-1);
    while (true) {
      auto snap = Take();
      if (!snap.ok()) {
        err_ << "uninstall: listing failed: " << snap.status().message() << " (retrying)"
             << std::endl;
        if (!WaitOrTimeOut()) return false;
        continue;
      }
      std::vector<json> items = snap->List(resource, options_.ns, "");
      if (!prepared) {
        // Step one for targets: annotate and empty the URL, so their children are cleaned
        // before the targets themselves are deleted.
        if (Status s = PrepareBackupTargets(items); !s.ok()) return Fail(s);
        prepared = true;
        continue;
      }
      if (items.empty()) {
        out_ << "found 0 " << KindOf(resource) << " remaining" << std::endl;
        return true;
      }
      for (const json& obj : items) {
        if (longhorn::IsBeingDeleted(obj)) continue;
        if (Status s = executor_.Delete(resource, obj); !s.ok()) return Fail(s);
      }
      if (Status s = ReleasePass(snap.value()); !s.ok()) {
        err_ << "uninstall: " << s.message() << " (retrying)" << std::endl;
      }
      if (items.size() != last_reported) {
        out_ << "found " << items.size() << " " << KindOf(resource) << " remaining" << std::endl;
        last_reported = items.size();
      }
      if (!WaitOrTimeOut()) return false;
    }
  }

  bool Fail(const Status& s) {
    err_ << "uninstall: " << s.message() << std::endl;
    return false;
  }

  bool WaitOrTimeOut() {
    if (Clock::now() >= deadline_) {
      err_ << "uninstall: timed out after " << options_.timeout.count()
           << "s; blocking objects:" << std::endl;
      PrintBlockers(/*simulate_deletion=*/false);
      return false;
    }
    std::this_thread::sleep_for(options_.poll_interval);
    return true;
  }

  // Lists every object that is (or, in a dry run, would be) held, with its finalizers and why.
  int PrintBlockers(bool simulate_deletion) {
    auto snap = Take();
    if (!snap.ok()) {
      err_ << "uninstall: cannot list objects: " << snap.status().message() << std::endl;
      return 1;
    }
    const RuleContext ctx = Context();
    int blockers = 0;
    std::ostream& to = simulate_deletion ? out_ : err_;
    for (const std::string& resource : order_) {
      for (json obj : snap->List(resource, options_.ns, "")) {
        const json finalizers = obj["metadata"].value("finalizers", json::array());
        if (finalizers.empty()) continue;
        std::string why;
        if (!longhorn::HasFinalizer(obj, longhorn::kFinalizer)) {
          why = "its finalizers are not longhorn.io: their owner must remove them";
        } else {
          if (simulate_deletion && !longhorn::IsBeingDeleted(obj)) {
            obj["metadata"]["deletionTimestamp"] = NowTimestamp();  // deleting from now on
          }
          const Plan plan = PlanFor(resource, obj, snap.value(), ctx);
          if (plan.release) continue;
          why = plan.held_because;
          if (!options_.force) {
            why += "; released " + std::to_string(ctx.release_grace.count()) +
                   "s after its deletion because the uninstall is confirmed";
          }
        }
        ++blockers;
        to << "  " << KindOf(resource) << " " << Name(obj) << " finalizers=" << finalizers.dump()
           << ": " << why << std::endl;
      }
    }
    return blockers;
  }

  int DryRun() {
    out_ << "dry run: nothing will be changed" << std::endl << "plan:" << std::endl;
    auto snap = Take();
    if (!snap.ok()) {
      Fail(snap.status());
      return 1;
    }
    int step = 1;
    for (const std::string& resource : order_) {
      const std::size_t n = snap->List(resource, options_.ns, "").size();
      out_ << "  " << step++ << ". "
           << (resource == res::kBackupTargets ? "annotate, empty the URL of, then delete "
                                               : "delete ")
           << n << " " << KindOf(resource) << std::endl;
    }
    out_ << "objects that would hold the uninstall:" << std::endl;
    if (PrintBlockers(/*simulate_deletion=*/true) == 0) out_ << "  none" << std::endl;
    return 0;
  }

  kube::KubeApi& api_;
  const UninstallOptions& options_;
  std::ostream& out_;
  std::ostream& err_;
  Executor executor_;
  std::vector<std::string> order_;
  std::map<std::string, std::string> kinds_;
  Clock::time_point deadline_;
};

}  // namespace

int RunUninstall(kube::KubeApi& api, const UninstallOptions& options, std::ostream& out,
                 std::ostream& err) {
  return Uninstaller(api, options, out, err).Run();
}

bool UninstallConfirmed(kube::KubeApi& api, const std::string& ns) {
  auto flag = api.Get(kube::LonghornResource(std::string(res::kSettings)), ns,
                      std::string(longhorn::kDeletingConfirmationFlag));
  return flag.ok() && longhorn::StringAt(*flag, {"value"}) == "true";
}

Status RemoveWebhookConfigurations(kube::KubeApi& api, const std::string& names,
                                   std::ostream& out) {
  static const kube::ResourceRef kKinds[] = {
      {"admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
       "MutatingWebhookConfiguration"},
      {"admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
       "ValidatingWebhookConfiguration"}};
  std::stringstream list(names);
  std::string name;
  while (std::getline(list, name, ',')) {
    if (name.empty()) continue;
    for (const kube::ResourceRef& kind : kKinds) {
      Status s = api.Delete(kind, "", name);
      if (s.ok()) {
        out << "deleted " << kind.kind << " " << name << std::endl;
      } else if (!s.IsNotFound()) {
        return Status::Unavailable("deleting " + kind.kind + " " + name + ": " + s.message());
      }
    }
  }
  return Status::Ok();
}

}  // namespace bg::processor
