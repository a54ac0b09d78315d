#include "processor/uninstall.h"

#include <algorithm>
#include <atomic>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

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

// Copies `from[key]` into `to[key]` when present.
void CopyKey(json& to, const json& from, const char* key) {
  if (!from.is_object()) return;
  auto it = from.find(key);
  if (it != from.end()) to[key] = *it;
}

// Moves `from[key]` into `to[key]` when present.
void MoveKey(json& to, json& from, const char* key) {
  if (!from.is_object()) return;
  auto it = from.find(key);
  if (it != from.end()) to[key] = std::move(*it);
}

std::string Kind(const std::string& resource) {
  const std::string kind = kube::LonghornResource(resource).kind;
  return kind.empty() ? resource : kind;
}

std::string Name(const json& obj) { return longhorn::StringAt(obj, {"metadata", "name"}); }

// Splits "k=v,k2=v2" into pairs; false for anything else (set-based terms, !=, ==, exists).
bool EqualityTerms(std::string_view selector,
                   std::vector<std::pair<std::string_view, std::string_view>>* terms) {
  while (!selector.empty()) {
    const size_t comma = selector.find(',');
    const std::string_view term = selector.substr(0, comma);
    const size_t eq = term.find('=');
    if (eq == std::string_view::npos || eq == 0 ||
        term.find('=', eq + 1) != std::string_view::npos || term[eq - 1] == '!') {
      return false;
    }
    terms->emplace_back(term.substr(0, eq), term.substr(eq + 1));
    if (comma == std::string_view::npos) break;
    selector.remove_prefix(comma + 1);
  }
  return true;
}

bool HasLabelValue(const json& obj, std::string_view key, std::string_view value) {
  const json* labels = nullptr;
  if (auto m = obj.find("metadata"); m != obj.end() && m->is_object()) {
    if (auto l = m->find("labels"); l != m->end() && l->is_object()) labels = &*l;
  }
  if (labels == nullptr) return false;
  auto it = labels->find(std::string(key));
  return it != labels->end() && it->is_string() && it->get_ref<const std::string&>() == value;
}

// A point-in-time copy of every kind the rules read, listed once per pass, indexed by name and
// (lazily, per label key) by label value. Safe for concurrent reads once filled.
class Snapshot final : public kube::ResourceLookup {
 public:
  void Add(const std::string& resource, json obj) {
    Kind& kind = kinds_[resource];
    kind.by_name.emplace(Name(obj), kind.items.size());
    kind.items.push_back(std::move(obj));
  }

  // Every listed object of `resource`, in list order.
  const std::vector<json>& Items(const std::string& resource) const {
    static const std::vector<json> kNone;
    auto it = kinds_.find(resource);
    return it == kinds_.end() ? kNone : it->second.items;
  }

  std::optional<json> Get(std::string_view resource, std::string_view,
                          std::string_view name) override {
    const Kind* kind = Find(resource);
    if (kind == nullptr) return std::nullopt;
    auto it = kind->by_name.find(std::string(name));
    if (it == kind->by_name.end()) return std::nullopt;
    return kind->items[it->second];
  }

  std::vector<json> List(std::string_view resource, std::string_view,
                         std::string_view selector) override {
    std::vector<json> out;
    const Kind* kind = Find(resource);
    if (kind == nullptr) return out;
    std::vector<std::pair<std::string_view, std::string_view>> terms;
    if (selector.empty() || !EqualityTerms(selector, &terms)) {
      for (const json& obj : kind->items) {
        if (kube::MatchesSelector(obj, std::string(selector))) out.push_back(obj);
      }
      return out;
    }
    for (size_t i : Candidates(resource, terms.front().first, terms.front().second)) {
      const json& obj = kind->items[i];
      bool match = true;
      for (size_t t = 1; t < terms.size() && match; ++t) {
        match = HasLabelValue(obj, terms[t].first, terms[t].second);
      }
      if (match) out.push_back(obj);
    }
    return out;
  }

  bool Ready() override { return true; }

  size_t size() const {
    size_t n = 0;
    for (const auto& [resource, kind] : kinds_) n += kind.items.size();
    return n;
  }

 private:
  struct Kind {
    std::vector<json> items;
    std::unordered_map<std::string, size_t> by_name;
    // label key -> value -> indexes into items; built on first use of the key
    std::map<std::string, std::unordered_map<std::string, std::vector<size_t>>, std::less<>>
        by_label;
  };

  const Kind* Find(std::string_view resource) const {
    auto it = kinds_.find(std::string(resource));
    return it == kinds_.end() ? nullptr : &it->second;
  }

  // The indexes of the objects of `resource` whose label `key` is `value` (a copy: the index may
  // be extended by another thread meanwhile).
  std::vector<size_t> Candidates(std::string_view resource, std::string_view key,
                                 std::string_view value) {
    std::lock_guard<std::mutex> lock(index_mu_);
    Kind& kind = kinds_.find(std::string(resource))->second;
    auto index = kind.by_label.find(key);
    if (index == kind.by_label.end()) {
      index = kind.by_label.emplace(std::string(key), decltype(index->second){}).first;
      for (size_t i = 0; i < kind.items.size(); ++i) {
        const std::string v = longhorn::Label(kind.items[i], key);
        if (!v.empty() || longhorn::HasLabel(kind.items[i], key)) index->second[v].push_back(i);
      }
    }
    auto hit = index->second.find(std::string(value));
    return hit == index->second.end() ? std::vector<size_t>{} : hit->second;
  }

  std::map<std::string, Kind> kinds_;
  std::mutex index_mu_;
};

std::string NowTimestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Runs fn(i) for every i in [0, n) on up to `workers` threads. After the first error no new index
// is started; that error is returned once the calls in flight have finished.
Status ParallelFor(size_t n, int workers, const std::function<Status(size_t)>& fn) {
  if (n == 0) return Status::Ok();
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  Status first = Status::Ok();
  auto work = [&] {
    while (!failed.load()) {
      const size_t i = next.fetch_add(1);
      if (i >= n) return;
      Status s = fn(i);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (!failed.exchange(true)) first = std::move(s);
      }
    }
  };
  const size_t threads = std::min<size_t>(n, static_cast<size_t>(std::max(1, workers)));
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  return first;
}

}  // namespace

json CompactForRules(json obj) {
  json out = json::object();
  if (!obj.is_object()) return out;
  if (auto m = obj.find("metadata"); m != obj.end() && m->is_object()) {
    json& meta = *m;
    json& to = out["metadata"] = json::object();
    for (const char* key : {"name", "namespace", "uid", "resourceVersion", "deletionTimestamp",
                            "labels", "finalizers", "ownerReferences"}) {
      MoveKey(to, meta, key);
    }
    // Of the annotations (last-applied-configuration can be large) only the one the rules read.
    if (auto a = meta.find("annotations"); a != meta.end() && a->is_object()) {
      json kept = json::object();
      CopyKey(kept, *a, longhorn::kDeleteBackupTargetAnnotation.data());
      if (!kept.empty()) to["annotations"] = std::move(kept);
    }
  }
  if (auto spec = obj.find("spec"); spec != obj.end() && spec->is_object()) {
    json kept = json::object();
    for (const char* key : {"backupTargetURL", "backupTargetName", "volumeName"}) {
      MoveKey(kept, *spec, key);
    }
    out["spec"] = std::move(kept);
  }
  if (auto status = obj.find("status"); status != obj.end() && status->is_object()) {
    json kept = json::object();
    // status.backupTargetName is kept even when empty: its presence tells an engine of v1.8 or
    // later from one before (BackupNeverUploaded).
    for (const char* key : {"backupTargetName", "state", "url", "available"}) {
      MoveKey(kept, *status, key);
    }
    out["status"] = std::move(kept);
  }
  return out;
}

namespace {

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
    if (options_.before_first_write) {
      if (Status s = options_.before_first_write(); !s.ok()) {
        err_ << "uninstall: " << s.message() << std::endl;
        return 1;
      }
    }
    if (options_.dry_run) return DryRun();
    for (const std::string& resource : order_) {
      if (!RunStep(resource)) return 1;
    }
    out_ << "uninstall complete: nothing left" << std::endl;
    return 0;
  }

 private:
  using SnapshotPtr = std::unique_ptr<Snapshot>;

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
    if (!longhorn::ConfirmationFlagTrue(*flag)) {
      err_ << "uninstall: refusing to start: Setting " << longhorn::kDeletingConfirmationFlag
           << " is \"" << value
           << "\", which does not parse as true (the engine accepts 1, t, T, TRUE, "
           << "true, True). Set it to \"true\" to confirm that the "
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

  // Lists `resource` into `snap`, page by page, keeping the compact copy of each object.
  Status ListInto(const std::string& resource, Snapshot& snap) {
    Status s = api_.ListPages(Ref(resource), options_.ns, "", [&](std::vector<json>& items) {
      for (json& item : items) {
        snap.Add(resource, CompactForRules(std::move(item)));
        item = json();
      }
    });
    if (s.IsNotFound()) return Status::Ok();  // CRD removed meanwhile
    return s;
  }

  Result<SnapshotPtr> Take() {
    auto snap = std::make_unique<Snapshot>();
    for (const std::string& resource : order_) {
      if (Status s = ListInto(resource, *snap); !s.ok()) return s;
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

  // Releases `fresh` (the copy a write just answered) at once when the rules allow it on `snap`
  // and its plan has no cascade left to run first (a BackupVolume past the grace still has its
  // Backups to label and delete before it may go). Anything else is left to a later pass, which
  // runs cascades before releases.
  Status ReleaseIfAllowed(const std::string& resource, const json& fresh, Snapshot& snap) {
    if (!NeedsRelease(fresh)) return Status::Ok();
    const Plan plan = PlanFor(resource, fresh, snap, Context());
    if (!plan.release || !plan.cascade.empty()) return Status::Ok();
    auto released = executor_.Release(resource, fresh, [&](const json& again) {
      return PlanFor(resource, again, snap, Context());
    });
    if (!released.ok()) return released.status();
    if (*released == Executor::Outcome::kReleased) ++releases_;
    return Status::Ok();
  }

  static std::string Key(const std::string& resource, const json& obj) {
    return resource + "/" + Name(obj);
  }

  // One pass of the release rules over every object of `snap`:
  //  1. every cascade (children of targets whose URL is empty or that are being deleted, Backups
  //     of BackupVolumes being deleted), each child once, in parallel: label where it protects
  //     data, delete, release at once where the rules allow for the copy the DELETE answered;
  //  2. then, in parallel, the releases the rules allow on the snapshot, of objects the first
  //     step did not write: other kinds first, then BackupVolumes, then BackupTargets.
  // `written` holds the keys already handled in this pass (their snapshot copy is stale).
  Status ReleasePass(Snapshot& snap, std::set<std::string>& written) {
    const RuleContext ctx = Context();
    std::vector<Child> cascade;
    std::set<std::string> queued;
    struct Release {
      const std::string* resource;
      const json* obj;
    };
    std::vector<Release> releases[3];  // leaves, backup volumes, backup targets
    for (const std::string& resource : order_) {
      for (const json& obj : snap.Items(resource)) {
        Plan plan;
        if (resource == res::kBackupTargets && !longhorn::IsBeingDeleted(obj) &&
            longhorn::StringAt(obj, {"spec", "backupTargetURL"}).empty()) {
          plan = PlanBackupTarget(obj, snap, ctx);
          plan.release = false;  // URL emptied: cascade only
        } else if (NeedsRelease(obj)) {
          plan = PlanFor(resource, obj, snap, ctx);
        } else {
          continue;
        }
        for (Child& child : plan.cascade) {
          if (queued.insert(Key(child.resource, child.object)).second) {
            cascade.push_back(std::move(child));
          }
        }
        if (plan.release && !written.count(Key(resource, obj))) {
          const int group = resource == res::kBackupTargets   ? 2
                            : resource == res::kBackupVolumes ? 1
                                                              : 0;
          releases[group].push_back(Release{&resource, &obj});
        }
      }
    }
    std::mutex written_mu;
    Status s = ParallelFor(cascade.size(), options_.workers, [&](size_t i) {
      const Child& child = cascade[i];
      auto fresh = executor_.CascadeChild(child, LabelProtectsData(child));
      if (!fresh.ok()) return fresh.status();
      if (fresh->empty()) return Status::Ok();  // nothing written (or gone): step 2 decides
      {
        std::lock_guard<std::mutex> lock(written_mu);
        written.insert(Key(child.resource, child.object));
      }
      return ReleaseIfAllowed(child.resource, *fresh, snap);
    });
    cascade.clear();
    if (!s.ok()) return s;
    for (const std::vector<Release>& group : releases) {
      std::vector<const Release*> todo;
      for (const Release& r : group) {
        if (!written.count(Key(*r.resource, *r.obj))) todo.push_back(&r);
      }
      s = ParallelFor(todo.size(), options_.workers, [&](size_t i) {
        const std::string& resource = *todo[i]->resource;
        auto released = executor_.Release(resource, *todo[i]->obj, [&](const json& fresh) {
          return PlanFor(resource, fresh, snap, Context());
        });
        if (!released.ok()) return released.status();
        if (*released == Executor::Outcome::kReleased) ++releases_;
        return Status::Ok();
      });
      if (!s.ok()) return s;
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
      // This kind alone first: a step whose kind is already empty (most of them, once the
      // targets' cascade has run) costs one small list instead of a list of everything.
      Snapshot own;
      if (Status s = ListInto(resource, own); !s.ok()) {
        err_ << "uninstall: listing failed: " << s.message() << " (retrying)" << std::endl;
        if (!WaitOrTimeOut()) return false;
        continue;
      }
      if (!prepared) {
        // Step one for targets: annotate and empty the URL, so their children are cleaned
        // before the targets themselves are deleted.
        if (Status s = PrepareBackupTargets(own.Items(resource)); !s.ok()) return Fail(s);
        prepared = true;
        continue;
      }
      if (own.Items(resource).empty()) {
        out_ << "found 0 " << KindOf(resource) << " remaining" << std::endl;
        return true;
      }
      auto snap = Take();
      if (!snap.ok()) {
        err_ << "uninstall: listing failed: " << snap.status().message() << " (retrying)"
             << std::endl;
        if (!WaitOrTimeOut()) return false;
        continue;
      }
      Snapshot& view = *snap.value();
      const std::vector<json>& items = view.Items(resource);
      if (items.empty()) continue;  // went meanwhile: the next list says so
      std::vector<const json*> to_delete;
      for (const json& obj : items) {
        if (!longhorn::IsBeingDeleted(obj)) to_delete.push_back(&obj);
      }
      const size_t releases_before = releases_.load();
      std::set<std::string> written;
      Status deleting = ParallelFor(to_delete.size(), options_.workers, [&](size_t i) {
        auto deleted = executor_.CascadeChild(Child{resource, *to_delete[i]}, /*label=*/false);
        if (!deleted.ok()) return deleted.status();
        Status released = ReleaseIfAllowed(resource, *deleted, view);
        if (!released.ok()) {
          std::lock_guard<std::mutex> lock(err_mu_);
          err_ << "uninstall: " << released.message() << " (retrying)" << std::endl;
        }
        return Status::Ok();
      });
      if (!deleting.ok()) return Fail(deleting);
      for (const json* obj : to_delete) written.insert(Key(resource, *obj));
      if (Status s = ReleasePass(view, written); !s.ok()) {
        err_ << "uninstall: " << s.message() << " (retrying)" << std::endl;
      }
      if (items.size() != last_reported) {
        out_ << "found " << items.size() << " " << KindOf(resource) << " remaining" << std::endl;
        last_reported = items.size();
      }
      snap = Status::Internal("released");  // the snapshot goes before the wait
      // A pass that released finalizers may have emptied what held others (a BackupVolume's
      // Backups, a target's children): look again at once. Releases are bounded (no finalizer can
      // be added to an object being deleted), so this never spins; anything else waits.
      if (releases_.load() != releases_before && Clock::now() < deadline_) continue;
      if (!WaitOrTimeOut()) return false;
    }
  }

  bool Fail(const Status& s) {
    if (options_.on_write_failed) options_.on_write_failed(s);
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
    Snapshot& view = *snap.value();
    const RuleContext ctx = Context();
    int blockers = 0;
    std::ostream& to = simulate_deletion ? out_ : err_;
    for (const std::string& resource : order_) {
      for (json obj : view.Items(resource)) {
        const json finalizers = obj["metadata"].value("finalizers", json::array());
        if (finalizers.empty()) continue;
        std::string why;
        if (!longhorn::HasFinalizer(obj, longhorn::kFinalizer)) {
          why = "its finalizers are not longhorn.io: their owner must remove them";
        } else {
          if (simulate_deletion && !longhorn::IsBeingDeleted(obj)) {
            obj["metadata"]["deletionTimestamp"] = NowTimestamp();  // deleting from now on
          }
          const Plan plan = PlanFor(resource, obj, view, ctx);
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
      const std::size_t n = snap.value()->Items(resource).size();
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
  std::mutex err_mu_;
  std::atomic<size_t> releases_{0};  // finalizers this run removed
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
  return flag.ok() && longhorn::ConfirmationFlagTrue(*flag);
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
