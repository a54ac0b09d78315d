#include "processor/uninstall.h"

#include <algorithm>
#include <atomic>
#include <ctime>
#include <deque>
#include <functional>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/longhorn.h"
#include "domain/confirmation.h"
#include "domain/deletion_clock.h"
#include "domain/kinds.h"
#include "domain/rules.h"
#include "kube/informer.h"
#include "kube/rest_api.h"
#include "processor/executor.h"
#include "processor/parallel.h"
#include "processor/uninstall_dry_run.h"
#include "processor/uninstall_report.h"
#include "processor/uninstall_snapshot.h"

namespace bg::processor {

using domain::CascadeOnly;
using domain::Child;
using domain::DeletionClock;
using domain::LabelProtectsData;
using domain::NeedsRelease;
using domain::Plan;
using domain::PlanBackupTarget;
using domain::PlanFor;
using domain::RuleContext;

using nlohmann::json;
namespace res = longhorn::resource;

namespace {

using Clock = std::chrono::steady_clock;

const kube::ResourceRef kCrds{"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                              "CustomResourceDefinition"};

// Copies `from[key]` into `to[key]` when present.
void CopyKey(json& to, const json& from, std::string_view key) {
  if (!from.is_object()) return;
  auto it = from.find(key);
  if (it != from.end()) to[std::string(key)] = *it;
}

// Moves `from[key]` into `to[key]` when present.
void MoveKey(json& to, json& from, std::string_view key) {
  if (!from.is_object()) return;
  auto it = from.find(key);
  if (it != from.end()) to[std::string(key)] = std::move(*it);
}

std::string Kind(const std::string& resource) {
  const std::string kind = domain::KindOf(resource);
  return kind.empty() ? resource : kind;
}

std::string Name(const json& obj) { return longhorn::StringAt(obj, {"metadata", "name"}); }

// The pass's snapshot (processor/uninstall_snapshot.h).
using Snapshot = UninstallSnapshot;

// `at` as a deletionTimestamp is written.
std::string Timestamp(std::chrono::system_clock::time_point at) {
  return longhorn::Rfc3339Utc(std::chrono::system_clock::to_time_t(at));
}

// Returns the heap's free memory to the system (glibc keeps it otherwise): called when a pass's
// snapshot has gone, so the peak RSS is one pass's, not the sum of every pass's leftovers.
void TrimHeap() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

// Ok for a result that holds a value, else its error.
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.ok() ? Status::Ok() : r.status();
}

// Reads the cluster at the time of each call (compact copies), for decisions that must not rest
// on a pass's snapshot. A read that fails is an error, never absence.
class FreshLookup final : public kube::ResourceLookup {
 public:
  explicit FreshLookup(kube::KubeApi& api) : api_(api) {}

  kube::GetResult Get(std::string_view resource, std::string_view ns,
                      std::string_view name) override {
    if (name.empty()) return std::nullopt;
    auto got = api_.Get(domain::Resource(resource), std::string(ns), std::string(name));
    if (got.ok()) return CompactForRules(std::move(got).value());
    if (got.status().IsNotFound()) return std::nullopt;
    return got.status();
  }

  kube::ListResult List(std::string_view resource, std::string_view ns,
                        std::string_view selector) override {
    std::vector<json> out;
    Status s = api_.ListPages(domain::Resource(resource), std::string(ns), std::string(selector),
                              [&](std::vector<json>& items) {
                                for (json& item : items) out.push_back(CompactForRules(item));
                              });
    if (!s.ok()) return s;
    return out;
  }

  bool Ready() override { return true; }

 private:
  kube::KubeApi& api_;
};

// For plans whose cascade is only asked whether it is empty (Plan::cascaded): it keeps no child,
// so that such a question about a target does not make a tree of every Backup.
class CascadeCount final : public domain::CascadeSink {
 public:
  void Add(const std::string&, json&) override {}
};

// The children of one pass's cascades, each once, as positions in the pass's snapshot rather than
// as trees: a target's cascade is every Backup, and the snapshot already holds each one as a
// compact record. A writer makes a child's tree when it takes the child (Take), so the cascade
// step holds about one tree per writer at a time. The rules fill it as their CascadeSink.
//
// Thread-safety: filled by one thread; then Take may be called from many threads at once, each
// index once.
class SnapshotCascade final : public domain::CascadeSink {
 public:
  SnapshotCascade(const Snapshot& snap, const std::vector<std::string>& kinds)
      : snap_(snap), kinds_(kinds), queued_(kinds.size()) {
    for (size_t k = 0; k < kinds.size(); ++k) queued_[k].assign(snap.Count(kinds[k]), false);
  }

  void Add(const std::string& resource, json& object) override {
    const auto kind = std::find(kinds_.begin(), kinds_.end(), resource);
    const std::optional<size_t> index =
        kind == kinds_.end() ? std::nullopt : snap_.IndexOf(resource, Name(object));
    if (index) {
      pending_.push_back(Ref{static_cast<size_t>(kind - kinds_.begin()), *index});
    } else {  // not from the snapshot (never so in a pass): kept as it is
      pending_.push_back(Ref{kTree, trees_.size()});
      trees_.push_back(Child{resource, std::move(object)});
    }
  }

  // Ends one object's plan: its children join the cascade (those not in it yet) when the plan was
  // decided, and are dropped when a read failed (domain::CascadeSink).
  void EndOfPlan(bool decided) {
    for (const Ref& ref : pending_) {
      if (!decided) continue;
      if (ref.kind == kTree) {
        const Child& child = trees_[ref.index];
        if (!tree_keys_.insert(child.resource + "/" + Name(child.object)).second) continue;
      } else if (queued_[ref.kind][ref.index]) {
        continue;
      } else {
        queued_[ref.kind][ref.index] = true;
      }
      refs_.push_back(ref);
    }
    pending_.clear();
  }

  size_t size() const { return refs_.size(); }

  // The `i`th child (i < size()), its tree made from the snapshot's record now.
  Child Take(size_t i) const {
    const Ref& ref = refs_[i];
    if (ref.kind == kTree) return trees_[ref.index];
    return Child{kinds_[ref.kind], snap_.At(kinds_[ref.kind], ref.index)};
  }

  // Drops every reference (the snapshot stays).
  void Clear() {
    refs_ = {};
    pending_ = {};
    trees_ = {};
    tree_keys_ = {};
  }

 private:
  static constexpr size_t kTree = static_cast<size_t>(-1);
  struct Ref {
    size_t kind;   // into kinds_, or kTree
    size_t index;  // into the snapshot's objects of that kind, or into trees_
  };

  const Snapshot& snap_;
  const std::vector<std::string>& kinds_;
  std::vector<std::vector<bool>> queued_;  // per kind, per snapshot position: already in refs_
  std::vector<Ref> refs_;
  std::vector<Ref> pending_;  // of the plan being made
  std::vector<Child> trees_;
  std::set<std::string> tree_keys_;
};

}  // namespace

json CompactForRules(json obj) {
  const domain::RuleFields& fields = domain::FieldsRulesRead();
  json out = json::object();
  if (!obj.is_object()) return out;
  if (auto m = obj.find("metadata"); m != obj.end() && m->is_object()) {
    json& meta = *m;
    json& to = out["metadata"] = json::object();
    for (std::string_view key : fields.metadata) MoveKey(to, meta, key);
    // Of the annotations (last-applied-configuration can be large) only those the rules read.
    if (auto a = meta.find("annotations"); a != meta.end() && a->is_object()) {
      json kept = json::object();
      for (std::string_view key : fields.annotations) CopyKey(kept, *a, key);
      if (!kept.empty()) to["annotations"] = std::move(kept);
    }
  }
  if (auto spec = obj.find("spec"); spec != obj.end() && spec->is_object()) {
    json kept = json::object();
    for (std::string_view key : fields.spec) MoveKey(kept, *spec, key);
    out["spec"] = std::move(kept);
  }
  if (auto status = obj.find("status"); status != obj.end() && status->is_object()) {
    json kept = json::object();
    for (std::string_view key : fields.status) MoveKey(kept, *status, key);
    out["status"] = std::move(kept);
  }
  return out;
}

namespace {

const kube::ResourceRef kAccessReviews{"authorization.k8s.io", "v1", "selfsubjectaccessreviews",
                                       "SelfSubjectAccessReview"};
const kube::ResourceRef kWebhookKinds[] = {
    {"admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
     "MutatingWebhookConfiguration"},
    {"admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
     "ValidatingWebhookConfiguration"}};

// An ostream's buffer that hands each thread's text to `to` a whole line at a time (at '\n' or a
// flush), so that the progress thread's lines never interleave with the uninstall's own.
class LineSyncBuf final : public std::streambuf {
 public:
  explicit LineSyncBuf(std::ostream& to) : to_(to) {}
  ~LineSyncBuf() override { sync(); }

 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    std::string& line = Pending();
    line.push_back(traits_type::to_char_type(c));
    if (c == '\n') Emit(line, /*flush=*/false);
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::string& line = Pending();
    line.append(s, static_cast<size_t>(n));
    if (line.find('\n') != std::string::npos) Emit(line, /*flush=*/false);
    return n;
  }
  int sync() override {
    Emit(Pending(), /*flush=*/true);
    return 0;
  }

 private:
  std::string& Pending() {
    thread_local std::map<const LineSyncBuf*, std::string> pending;
    return pending[this];
  }
  // Writes the whole lines of `text` (all of it when flushing) and keeps the rest. A flush
  // (std::endl) always reaches `to_`, even when '\n' already handed the line over: a pipe read
  // by `kubectl logs -f` or a script must see each line when it is written.
  void Emit(std::string& text, bool flush) {
    const size_t end = flush ? text.size() : text.rfind('\n') + 1;
    if (end == 0 && !flush) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (end > 0) to_.write(text.data(), static_cast<std::streamsize>(end));
    if (flush) to_.flush();
    text.erase(0, end);
  }

  std::ostream& to_;
  std::mutex mu_;
};

class Uninstaller {
 public:
  Uninstaller(kube::KubeApi& api, const UninstallOptions& options, std::ostream& out,
              std::ostream& err)
      : api_(api),
        options_(options),
        out_buf_(out),
        out_(&out_buf_),
        err_(err),
        report_(out_, err_, options.events, options.progress_interval),
        executor_(api, options.ns, [] { return true; }) {}

  int Run() {
    report_.Start(Clock::now());
    if (!CheckConfirmation()) return 2;
    deadline_ = Clock::now() + options_.timeout;
    if (int rc = DiscoverKinds(); rc != 0) return rc;
    // Permissions first: a missing one ends the run (exit 2) before anything is read or written
    // on the hooks' behalf (the receipt, stale webhooks). The server dry run needs them too: the
    // API server authorizes a dryRun=All write as the write itself.
    if (!options_.dry_run || options_.server_dry_run != nullptr) {
      if (int rc = Preflight(); rc != 0) return rc;
    }
    if (options_.before_first_write) {
      if (Status s = options_.before_first_write(); !s.ok()) {
        err_ << "uninstall: " << s.message() << std::endl;
        return 1;
      }
    }
    if (options_.dry_run) return DryRun();
    // The plan, from a first snapshot that the first step then works on (no list twice).
    if (auto snap = Take(); snap.ok()) {
      report_.PrintPlan(*snap.value(), options_.ns, "none");
      initial_ = std::move(snap).value();
    }
    UninstallProgressTicker progress(report_, options_.progress_interval);
    while (true) {
      for (const std::string& resource : order_) {
        if (!RunStep(resource)) return 1;
      }
      std::optional<size_t> left = FinalSweep();
      if (!left) return 1;  // timed out
      if (*left == 0) break;
    }
    report_.PrintComplete();
    return 0;
  }

 private:
  using SnapshotPtr = std::unique_ptr<Snapshot>;

  bool CheckConfirmation() {
    auto flag = api_.Get(domain::Resource(std::string(res::kSettings)), options_.ns,
                         std::string(longhorn::kDeletingConfirmationFlag));
    const std::string& typed = options_.confirm_namespace;
    if (!flag.ok()) {
      // Only a Setting (or a Settings CRD) that is gone lets the typed namespace stand in; any
      // other failure (403, an unreachable API server) says nothing about what the user wants.
      if (flag.status().IsNotFound() && !typed.empty()) {
        if (typed == options_.ns) {
          out_ << "uninstall: Setting " << longhorn::kDeletingConfirmationFlag
               << " is gone (or its CRD); --confirm-namespace " << typed
               << " confirms the uninstall" << std::endl;
          return true;
        }
        err_ << "uninstall: refusing to start: --confirm-namespace \"" << typed
             << "\" is not the namespace of the uninstall (--namespace " << options_.ns << ")"
             << std::endl;
        return false;
      }
      err_ << "uninstall: cannot read Setting " << longhorn::kDeletingConfirmationFlag << " in "
           << options_.ns << ": " << flag.status().message()
           << "\nset it to \"true\" to confirm the uninstall";
      if (flag.status().IsNotFound()) {
        err_ << ", or, when the Setting or its CRD is already gone, type the namespace: "
             << "--confirm-namespace " << options_.ns;
      }
      err_ << std::endl;
      return false;
    }
    const std::string value = longhorn::StringAt(*flag, {"value"});
    if (!domain::ConfirmationFlagTrue(*flag)) {
      err_ << "uninstall: refusing to start: Setting " << longhorn::kDeletingConfirmationFlag
           << " is \"" << value
           << "\", which does not parse as true (the engine accepts 1, t, T, TRUE, "
           << "true, True). Set it to \"true\" to confirm that the "
           << "storage engine's resources may be deleted.";
      if (!typed.empty()) {
        err_ << " (--confirm-namespace stands in only when the Setting is gone.)";
      }
      err_ << std::endl;
      return false;
    }
    return true;
  }

  // The fixed order, then every other longhorn.io kind whose CRD exists (settings excepted).
  // 0, or the exit status: 2 when the CRDs may not be listed, 1 at the timeout.
  int DiscoverKinds() {
    while (true) {
      Status s = TryDiscoverKinds();
      if (s.ok()) return 0;
      if (s.code() == Status::Code::kPermissionDenied) {
        err_ << "uninstall: missing permission (nothing was changed): list "
                "customresourcedefinitions.apiextensions.k8s.io: "
             << s.message() << std::endl;
        return 2;
      }
      err_ << "uninstall: cannot list CustomResourceDefinitions: " << s.message() << " (retrying)"
           << std::endl;
      if (!WaitOrTimeOut()) return 1;
    }
  }

  Status TryDiscoverKinds() {
    const std::vector<std::string>& fixed = domain::UninstallOrder();
    std::set<std::string> served;
    auto crds = api_.List(kCrds, "", "");
    if (!crds.ok()) return crds.status();
    order_.clear();
    settings_served_ = false;
    std::vector<std::string> others;
    for (const json& crd : crds->value("items", json::array())) {
      if (longhorn::StringAt(crd, {"spec", "group"}) != longhorn::kGroup) continue;
      const std::string plural = longhorn::StringAt(crd, {"spec", "names", "plural"});
      if (plural.empty()) continue;
      served.insert(plural);
      if (plural == res::kSettings) settings_served_ = true;
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
    report_.SetKinds(order_, kinds_);
    return Status::Ok();
  }

  // RBAC pre-flight: before any write, a SelfSubjectAccessReview for every verb the run needs
  // (get, list, patch and delete on every longhorn.io kind whose CRD exists, get on the Setting,
  // delete on each webhook configuration it is asked to remove). 0 when all are allowed; 2 naming
  // every missing one; 1 when the API server cannot answer before the timeout.
  int Preflight() {
    struct Check {
      std::string verb;
      kube::ResourceRef ref;
      std::string ns;
      std::string name;
    };
    std::vector<Check> checks;
    for (const std::string& resource : order_) {
      for (const char* verb : {"get", "list", "patch", "delete"}) {
        checks.push_back(Check{verb, Ref(resource), options_.ns, ""});
      }
    }
    if (settings_served_) {
      checks.push_back(Check{"get", domain::Resource(std::string(res::kSettings)), options_.ns,
                             std::string(longhorn::kDeletingConfirmationFlag)});
    }
    for (const std::string& name : options_.webhook_configurations) {
      for (const kube::ResourceRef& kind : kWebhookKinds) {
        checks.push_back(Check{"delete", kind, "", name});
      }
    }
    while (true) {
      std::vector<std::optional<bool>> allowed(checks.size());
      std::vector<std::string> errors(checks.size());
      ParallelFor(checks.size(), options_.workers, [&](size_t i) {
        const Check& c = checks[i];
        json attributes = {{"verb", c.verb}, {"group", c.ref.group}, {"resource", c.ref.resource}};
        if (!c.ns.empty()) attributes["namespace"] = c.ns;
        if (!c.name.empty()) attributes["name"] = c.name;
        auto review = api_.Create(kAccessReviews, "",
                                  {{"apiVersion", "authorization.k8s.io/v1"},
                                   {"kind", "SelfSubjectAccessReview"},
                                   {"spec", {{"resourceAttributes", attributes}}}});
        if (!review.ok()) {
          errors[i] = review.status().message();
          return;
        }
        const json status = review->value("status", json::object());
        allowed[i] = status.is_object() && status.value("allowed", false) == true;
      });
      std::vector<std::string> missing;
      std::string error;
      for (size_t i = 0; i < checks.size(); ++i) {
        if (!allowed[i].has_value()) {
          error = errors[i];
          continue;
        }
        if (*allowed[i]) continue;
        const Check& c = checks[i];
        std::string line = c.verb + " " + c.ref.resource + "." + c.ref.group;
        if (!c.name.empty()) line += " " + c.name;
        if (!c.ns.empty()) line += " in namespace " + c.ns;
        missing.push_back(std::move(line));
      }
      if (!missing.empty()) {
        err_ << "uninstall: missing permissions (nothing was changed):" << std::endl;
        for (const std::string& m : missing) err_ << "  " << m << std::endl;
        err_ << "uninstall: grant them to the identity the uninstall runs as (the chart's "
                "pre-delete hook Role and ClusterRole grant them all)"
             << std::endl;
        return 2;
      }
      if (error.empty()) return 0;
      err_ << "uninstall: cannot check permissions (SelfSubjectAccessReview): " << error
           << " (retrying)" << std::endl;
      if (!WaitOrTimeOut()) return 1;
    }
  }

  std::string KindOf(const std::string& resource) const {
    auto it = kinds_.find(resource);
    return it != kinds_.end() && !it->second.empty() ? it->second : Kind(resource);
  }

  kube::ResourceRef Ref(const std::string& resource) const {
    kube::ResourceRef r = domain::Resource(resource);
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
    if (s.IsNotFound()) s = Status::Ok();  // CRD removed meanwhile
    if (s.ok()) report_.NoteListed(resource, snap.Count(resource));
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
    // Ages are read on the API server's clock, which wrote the deletionTimestamps; without it,
    // on the local one bounded by the time since this run first saw each deletion, so that a
    // local clock ahead of the server's cannot shorten the grace (issue 14, suspect 10).
    const auto server_now = options_.server_now ? options_.server_now() : std::nullopt;
    ctx.now = server_now.value_or(std::chrono::system_clock::now());
    if (options_.server_now && !server_now) ctx.deletions = &deletions_;
    ctx.release_grace = options_.force ? std::chrono::seconds(0) : options_.release_grace;
    return ctx;
  }

  // Parents whose DELETE answered a copy that the snapshot would release: confirmed and released
  // with the pass's other parents. Safe from the writer threads.
  class DeferredParents {
   public:
    void Add(const std::string& resource, json obj) {
      std::lock_guard<std::mutex> lock(mu_);
      items_.emplace_back(resource, std::move(obj));
    }
    // Stable addresses: a deque grows without moving what it holds.
    std::deque<std::pair<std::string, json>>& items() { return items_; }

   private:
    std::mutex mu_;
    std::deque<std::pair<std::string, json>> items_;
  };

  // Kinds whose release waits for children that may have been created after a pass's snapshot.
  static bool HasChildren(const std::string& resource) {
    return resource == res::kBackupVolumes || resource == res::kBackupTargets;
  }

  // The plan for releasing `obj` now. It is decided on `snap`; for a kind with children, a release
  // the snapshot allows is confirmed on fresh reads of them (a child created after the snapshot
  // holds its parent), and a fresh read that fails holds it until a later pass.
  // Only the decision is asked of these plans, never their cascade (CascadeCount).
  Plan ReleasePlan(const std::string& resource, const json& obj, Snapshot& snap) {
    CascadeCount children;
    Plan plan = PlanFor(resource, obj, snap, Context(), &children);
    if (!plan.release || !HasChildren(resource)) return plan;
    FreshLookup fresh(api_);
    Plan confirmed = PlanFor(resource, obj, fresh, Context(), &children);
    if (!confirmed.read_error.ok()) confirmed.held_because = "a fresh read of its children failed";
    return confirmed;
  }

  // Releases `fresh` (the copy a write just answered) at once when the rules allow it (see
  // ReleasePlan) and its plan has no cascade left to run first (a BackupVolume past the grace
  // still has its Backups to label and delete before it may go). Anything else is left to a later
  // pass, which runs cascades before releases.
  //
  // A parent (BackupVolume, BackupTarget) is not released here: when the snapshot allows it, its
  // copy goes to `parents`, which the pass confirms on one fresh list per child kind (ReleasePass).
  Status ReleaseIfAllowed(const std::string& resource, const json& fresh, Snapshot& snap,
                          DeferredParents& parents) {
    if (!NeedsRelease(fresh)) return Status::Ok();
    CascadeCount children;
    const Plan plan = PlanFor(resource, fresh, snap, Context(), &children);
    if (HasChildren(resource)) {
      if (plan.release && plan.cascaded == 0) parents.Add(resource, fresh);
      return Status::Ok();
    }
    if (!plan.release || plan.cascaded > 0) return Status::Ok();
    return Release(resource, fresh, snap);
  }

  Status Release(const std::string& resource, const json& obj, Snapshot& snap) {
    auto released = executor_.Release(
        resource, obj, [&](const json& again) { return ReleasePlan(resource, again, snap); });
    if (!released.ok()) return released.status();
    if (*released == Executor::Outcome::kReleased) {
      ++releases_;
      // Being deleted, it goes with its last finalizer (longhorn.io alone, most often).
      const json finalizers = obj["metadata"].value("finalizers", json::array());
      if (finalizers.is_array() && finalizers.size() <= 1) report_.NoteGone(resource);
    }
    return Status::Ok();
  }

  // The kinds a parent's release plan reads (PlanBackupVolume, PlanBackupTarget), listed fresh
  // once per group of releases.
  static std::vector<std::string> ChildKindsOf(int group) {
    if (group == 1) return {std::string(res::kBackupTargets), std::string(res::kBackups)};
    return {std::string(res::kBackupTargets), std::string(res::kBackupVolumes),
            std::string(res::kBackupBackingImages), std::string(res::kBackups),
            std::string(res::kSystemBackups)};
  }

  // A fresh view of `kinds` (those whose CRD exists), for confirming releases of parents.
  Result<SnapshotPtr> TakeFresh(const std::vector<std::string>& kinds) {
    auto snap = std::make_unique<Snapshot>();
    for (const std::string& resource : kinds) {
      if (std::find(order_.begin(), order_.end(), resource) == order_.end()) continue;
      if (Status s = ListInto(resource, *snap); !s.ok()) return s;
    }
    return snap;
  }

  // A cascade child that the rules release as soon as it is deleted (a Backup, SystemBackup or
  // BackupBackingImage, labelled delete-custom-resource-only where the label protects data; never
  // a parent, whose release waits for a fresh read of its children) costs two writes, as the
  // floor's: one PATCH that sets the label and removes longhorn.io together, with a
  // resourceVersion precondition of the copy it was decided on, then the DELETE, conditioned on the
  // PATCH's answer, which removes it at once. The label is on the object before anything deletes
  // it, and the engine never sees it being deleted without it. A conflict (it changed: a failed
  // Backup completed) reads it again and decides again; a copy the rules would not release at once
  // takes the usual path (label, DELETE, release after). Answers as CascadeChildUnchanged.
  Result<json> LabelReleaseDelete(const Child& child, Snapshot& snap) {
    const kube::ResourceRef ref = Ref(child.resource);
    const std::string name = Name(child.object);
    const std::string uid = longhorn::StringAt(child.object, {"metadata", "uid"});
    const std::string label_key(longhorn::kDeleteCustomResourceOnlyLabel);
    json current = child.object;
    constexpr int kConflictRetries = 5;
    for (int attempt = 0; attempt <= kConflictRetries; ++attempt) {
      const bool label = !longhorn::IsDeleteCustomResourceOnly(current) &&
                         LabelProtectsData({child.resource, current});
      if (longhorn::IsBeingDeleted(current) || HasChildren(child.resource)) {
        return executor_.CascadeChildUnchanged(Child{child.resource, current}, LabelProtectsData);
      }
      json decided = current;
      if (label) decided["metadata"]["labels"][label_key] = "true";
      const RuleContext ctx = Context();
      decided["metadata"]["deletionTimestamp"] = Timestamp(ctx.now);  // as its DELETE will stamp it
      CascadeCount children;
      const Plan plan = PlanFor(child.resource, decided, snap, ctx, &children);
      if (!plan.release || plan.cascaded > 0) {
        return executor_.CascadeChildUnchanged(Child{child.resource, current}, LabelProtectsData);
      }
      json meta = json::object();
      if (label) meta["labels"] = {{label_key, "true"}};
      const bool release = longhorn::HasFinalizer(current, longhorn::kFinalizer);
      if (release) {
        json finalizers = json::array();
        for (const json& f : current["metadata"].value("finalizers", json::array())) {
          if (!(f.is_string() && f.get<std::string>() == longhorn::kFinalizer)) {
            finalizers.push_back(f);
          }
        }
        meta["finalizers"] = std::move(finalizers);
      }
      bool conflict = false;
      if (!meta.empty()) {
        meta["resourceVersion"] = longhorn::StringAt(current, {"metadata", "resourceVersion"});
        auto patched = api_.MergePatch(ref, options_.ns, name, {{"metadata", std::move(meta)}});
        if (patched.ok()) {
          current = std::move(patched).value();
          if (release) ++releases_;
        } else if (patched.status().IsNotFound()) {
          return json::object();
        } else if (patched.status().IsConflict()) {
          conflict = true;
        } else {
          return patched.status();
        }
      }
      if (!conflict) {
        auto deleted =
            api_.DeleteUnchanged(ref, options_.ns, name, uid,
                                 longhorn::StringAt(current, {"metadata", "resourceVersion"}));
        if (deleted.ok()) {
          // The API server answers a Status (read as an empty object) when the object went at
          // once, having no finalizer left: count it here, as NoteDeleted cannot.
          if (deleted->empty()) report_.NoteGone(child.resource);
          return std::move(deleted).value();
        }
        if (deleted.status().IsNotFound()) return json::object();
        if (!deleted.status().IsConflict()) return deleted.status();
      }
      // Changed since `current` was read, or another object took the name: read it again.
      auto fresh = api_.Get(ref, options_.ns, name);
      if (!fresh.ok()) {
        if (fresh.status().IsNotFound()) return json::object();
        return fresh.status();
      }
      if (!uid.empty() && longhorn::StringAt(*fresh, {"metadata", "uid"}) != uid) {
        return json::object();
      }
      current = CompactForRules(std::move(fresh).value());
    }
    return Status::Conflict("delete " + child.resource + " " + name + ": still changing after " +
                            std::to_string(kConflictRetries) + " fresh reads");
  }

  static std::string Key(const std::string& resource, const json& obj) {
    return resource + "/" + Name(obj);
  }

  void NoteFailure(const std::string& resource, const std::string& name, const std::string& verb,
                   const Status& s) {
    if (options_.on_write_failed) options_.on_write_failed(s);
    report_.NoteFailure(resource, name, verb, s, pass_);
  }

  void NoteSuccess(const std::string& resource, const std::string& name) {
    report_.NoteSuccess(resource, name);
  }

  // One pass of the release rules over every object of `snap`:
  //  1. every cascade (children of targets whose URL is empty or that are being deleted, Backups
  //     of BackupVolumes being deleted), each child once, in parallel: label where it protects
  //     data (decided on the copy the DELETE is conditioned on), delete, release at once where the
  //     rules allow for the copy the DELETE answered;
  //  2. then, in parallel, the releases the rules allow, of objects the first step did not write:
  //     other kinds first, then BackupVolumes, then BackupTargets.
  // `written` holds the keys already handled in this pass (their snapshot copy is stale). A write
  // that fails is noted and retried on the next pass.
  void ReleasePass(Snapshot& snap, std::set<std::string>& written, DeferredParents& parents) {
    const RuleContext ctx = Context();
    SnapshotCascade cascade(snap, order_);
    struct PendingRelease {
      const std::string* resource;
      const json* obj;
    };
    std::vector<PendingRelease> releases[3];  // leaves, backup volumes, backup targets
    std::deque<json> releasable;              // the trees of those (stable addresses)
    for (const std::string& resource : order_) {
      snap.ForEach(resource, [&](size_t, json& obj) {
        Plan plan;
        if (CascadeOnly(resource, obj)) {
          plan = PlanBackupTarget(obj, snap, ctx, &cascade);
          plan.release = false;  // URL emptied: cascade only
        } else if (NeedsRelease(obj)) {
          plan = PlanFor(resource, obj, snap, ctx, &cascade);
        } else {
          return;
        }
        cascade.EndOfPlan(plan.read_error.ok());
        if (plan.release && !written.count(Key(resource, obj))) {
          const int group = resource == res::kBackupTargets   ? 2
                            : resource == res::kBackupVolumes ? 1
                                                              : 0;
          releasable.push_back(std::move(obj));
          releases[group].push_back(PendingRelease{&resource, &releasable.back()});
        }
      });
    }
    std::mutex written_mu;
    ParallelFor(cascade.size(), options_.workers, [&](size_t i) {
      const Child child = cascade.Take(i);
      const std::string name = Name(child.object);
      auto fresh = LabelReleaseDelete(child, snap);
      if (!fresh.ok()) {
        NoteFailure(child.resource, name, "delete", fresh.status());
        return;
      }
      NoteSuccess(child.resource, name);
      report_.NoteDeleted(child.resource, *fresh);
      if (fresh->empty()) return;  // nothing written (or gone): step 2 decides
      {
        std::lock_guard<std::mutex> lock(written_mu);
        written.insert(Key(child.resource, child.object));
      }
      if (Status s = ReleaseIfAllowed(child.resource, *fresh, snap, parents); !s.ok()) {
        NoteFailure(child.resource, name, "release", s);
      }
    });
    cascade.Clear();
    // Parents whose DELETE answered a releasable copy: that copy, not the snapshot's, is released.
    std::vector<PendingRelease> deferred[3];
    std::set<std::string> deferred_keys;
    for (auto& [resource, obj] : parents.items()) {
      if (deferred_keys.insert(Key(resource, obj)).second) {
        deferred[resource == res::kBackupTargets ? 2 : 1].push_back(
            PendingRelease{&resource, &obj});
      }
    }
    for (int g = 0; g < 3; ++g) {
      std::vector<const PendingRelease*> todo;
      for (const PendingRelease& r : releases[g]) {
        const std::string key = Key(*r.resource, *r.obj);
        if (!written.count(key) && !deferred_keys.count(key)) todo.push_back(&r);
      }
      const size_t first_deferred = todo.size();
      for (const PendingRelease& r : deferred[g]) todo.push_back(&r);
      // Parents: decided on the snapshot, confirmed on one fresh list of each child kind, taken
      // now that this pass's cascades are done (a child created after the snapshot holds its
      // parent). A list that fails holds them all until a later pass.
      SnapshotPtr fresh;
      if (g > 0 && !todo.empty()) {
        auto taken = TakeFresh(ChildKindsOf(g));
        if (!taken.ok()) {
          for (const PendingRelease* r : todo) {
            NoteFailure(*r->resource, Name(*r->obj), "release",
                        Status::Unavailable("a fresh read of its children failed: " +
                                            taken.status().message()));
          }
          continue;
        }
        fresh = std::move(taken).value();
      }
      ParallelFor(todo.size(), options_.workers, [&](size_t i) {
        const std::string& resource = *todo[i]->resource;
        const json& obj = *todo[i]->obj;
        if (fresh != nullptr) {
          CascadeCount children;
          const Plan plan = PlanFor(resource, obj, *fresh, Context(), &children);
          // A copy a DELETE answered is released only with no cascade left, as ReleaseIfAllowed
          // does (a child created meanwhile is labelled and deleted first, on a later pass).
          if (!plan.release || (i >= first_deferred && plan.cascaded > 0)) return;
        }
        if (Status s = Release(resource, obj, fresh != nullptr ? *fresh : snap); !s.ok()) {
          NoteFailure(resource, Name(obj), "release", s);
        } else {
          NoteSuccess(resource, Name(obj));
        }
      });
    }
  }

  // Annotates and empties the URL of every BackupTarget of `snap` not being deleted; true when
  // all are.
  bool PrepareBackupTargets(const Snapshot& snap) {
    bool all = true;
    snap.ForEach(std::string(res::kBackupTargets), [&](size_t, const json& target) {
      if (longhorn::IsBeingDeleted(target)) return;
      const bool annotated =
          longhorn::HasAnnotation(target, longhorn::kDeleteBackupTargetAnnotation);
      const bool emptied = longhorn::StringAt(target, {"spec", "backupTargetURL"}).empty();
      if (annotated && emptied) return;
      const json patch = {
          {"metadata",
           {{"annotations", {{std::string(longhorn::kDeleteBackupTargetAnnotation), ""}}}}},
          {"spec", {{"backupTargetURL", ""}}}};
      const std::string name = Name(target);
      if (Status s = executor_.Patch(std::string(res::kBackupTargets), name, patch); !s.ok()) {
        NoteFailure(std::string(res::kBackupTargets), name, "empty the URL of", s);
        all = false;
      } else {
        NoteSuccess(std::string(res::kBackupTargets), name);
      }
    });
    return all;
  }

  // One step: deletes every object of `resource` and applies the release rules until none is
  // left. False only at the timeout: failed writes are reported and retried.
  bool RunStep(const std::string& resource) {
    bool prepared = resource != res::kBackupTargets;
    std::size_t last_reported = static_cast<std::size_t>(-1);
    report_.SetStep(KindOf(resource));
    while (true) {
      ++pass_;
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
        prepared = PrepareBackupTargets(own);
        if (!prepared) {
          report_.ReportFailures(pass_);
          if (!WaitOrTimeOut()) return false;
        }
        continue;
      }
      if (own.Count(resource) == 0) {
        out_ << "found 0 " << KindOf(resource) << " remaining" << std::endl;
        return true;
      }
      // The plan's snapshot serves the first pass that needs one, while nothing but the targets'
      // URLs has been written since it was taken (the steps before had nothing to delete); this
      // kind's copy is the fresh one just listed.
      SnapshotPtr reuse = !wrote_ ? std::move(initial_) : nullptr;
      initial_.reset();
      if (reuse) reuse->Replace(resource, own);
      wrote_ = true;
      auto snap = reuse ? Result<SnapshotPtr>(std::move(reuse)) : Take();
      if (!snap.ok()) {
        err_ << "uninstall: listing failed: " << snap.status().message() << " (retrying)"
             << std::endl;
        if (!WaitOrTimeOut()) return false;
        continue;
      }
      Snapshot& view = *snap.value();
      const size_t count = view.Count(resource);
      if (count == 0) continue;  // went meanwhile: the next list says so
      // The objects to delete, by their place in the snapshot: each writer makes its own tree.
      std::vector<size_t> to_delete;
      std::set<std::string> written;  // their keys: handled in this pass
      view.ForEach(resource, [&](size_t i, const json& obj) {
        if (longhorn::IsBeingDeleted(obj)) return;
        to_delete.push_back(i);
        written.insert(Key(resource, obj));
      });
      const size_t releases_before = releases_.load();
      DeferredParents parents;
      ParallelFor(to_delete.size(), options_.workers, [&](size_t i) {
        json obj = view.At(resource, to_delete[i]);
        const std::string name = Name(obj);
        auto deleted = executor_.CascadeChild(Child{resource, std::move(obj)}, /*label=*/false);
        if (!deleted.ok()) {
          NoteFailure(resource, name, "delete", deleted.status());
          return;
        }
        NoteSuccess(resource, name);
        report_.NoteDeleted(resource, *deleted);
        if (Status s = ReleaseIfAllowed(resource, *deleted, view, parents); !s.ok()) {
          NoteFailure(resource, name, "release", s);
        }
      });
      ReleasePass(view, written, parents);
      if (count != last_reported) {
        out_ << "found " << count << " " << KindOf(resource) << " remaining" << std::endl;
        last_reported = count;
      }
      report_.ReportFailures(pass_);
      snap = Status::Internal("released");  // the snapshot goes before the wait
      TrimHeap();
      // A pass that released finalizers may have emptied what held others (a BackupVolume's
      // Backups, a target's children): look again at once. Releases are bounded (no finalizer can
      // be added to an object being deleted), so this never spins; anything else waits.
      if (releases_.load() != releases_before && Clock::now() < deadline_) continue;
      if (!WaitOrTimeOut()) return false;
    }
  }

  // The final sweep: fresh lists of every longhorn.io kind whose CRD exists now (settings
  // excepted). The number of objects left (0: the uninstall is complete), or nothing at the
  // timeout. Objects found (created after their kind's step, or of a kind whose CRD appeared)
  // send the run through the steps again.
  std::optional<size_t> FinalSweep() {
    report_.SetStep("final sweep");
    while (true) {
      Status s = TryDiscoverKinds();
      auto snap = s.ok() ? Take() : Result<SnapshotPtr>(s);
      if (!snap.ok()) {
        err_ << "uninstall: final sweep: listing failed: " << snap.status().message()
             << " (retrying)" << std::endl;
        if (!WaitOrTimeOut()) return std::nullopt;
        continue;
      }
      const size_t left = report_.PrintSweep(*snap.value());
      if (left == 0) return 0;
      if (!WaitOrTimeOut()) return std::nullopt;
      return left;
    }
  }

  bool WaitOrTimeOut() {
    if (Clock::now() >= deadline_) {
      err_ << "uninstall: timed out after " << options_.timeout.count()
           << "s; blocking objects:" << std::endl;
      PrintBlockers(/*simulate_deletion=*/false);
      return false;
    }
    std::this_thread::sleep_for(options_.poll_interval);
    if (options_.between_passes) {
      if (Status s = options_.between_passes(); !s.ok()) {
        err_ << "uninstall: " << s.message() << std::endl;
      }
    }
    return true;
  }

  // Lists every object that is (or, in a dry run, would be) held, with its finalizers, why, and
  // the last error of a write to it. At the timeout every object left is listed.
  int PrintBlockers(bool simulate_deletion) {
    auto snap = Take();
    if (!snap.ok()) {
      err_ << "uninstall: cannot list objects: " << snap.status().message() << std::endl;
      return 1;
    }
    return report_.PrintBlockers(*snap.value(), Context(), simulate_deletion, options_.force);
  }

  int DryRun() {
    out_ << "dry run" << (options_.server_dry_run != nullptr ? " (server)" : "")
         << ": nothing will be changed" << std::endl
         << "plan:" << std::endl;
    auto snap = Take();
    if (!snap.ok()) {
      err_ << "uninstall: " << snap.status().message() << std::endl;
      return 1;
    }
    report_.PrintPlan(*snap.value(), options_.ns,
                      options_.server_dry_run != nullptr ? "server" : "client");
    out_ << "objects that would hold the uninstall:" << std::endl;
    if (PrintBlockers(/*simulate_deletion=*/true) == 0) out_ << "  none" << std::endl;
    if (options_.server_dry_run != nullptr) {
      return ServerDryRun(
          *options_.server_dry_run, order_, *snap.value(), options_,
          [this](const std::string& r) { return Ref(r); },
          [this](const std::string& r) { return KindOf(r); }, out_);
    }
    return 0;
  }

  kube::KubeApi& api_;
  const UninstallOptions& options_;
  mutable DeletionClock deletions_;  // Context() without the server's clock
  LineSyncBuf out_buf_;              // before out_, which writes through it
  std::ostream out_;  // whole lines, from the uninstall's thread and the progress thread
  std::ostream& err_;
  UninstallReport report_;           // plan, progress, failed writes, blockers (uninstall_report.h)
  std::atomic<size_t> releases_{0};  // finalizers this run removed
  Executor executor_;
  std::vector<std::string> order_;
  std::map<std::string, std::string> kinds_;
  bool settings_served_ = false;
  Clock::time_point deadline_;
  // The pass now running (RunStep's loop); failures carry the pass they happened in.
  std::atomic<uint64_t> pass_{0};
  SnapshotPtr initial_;  // the plan's snapshot, for the first pass that needs one
  bool wrote_ = false;   // a step has gone past its own list (deleted or released something)
};

}  // namespace

int RunUninstall(kube::KubeApi& api, const UninstallOptions& options, std::ostream& out,
                 std::ostream& err) {
#ifdef __GLIBC__
  // glibc gives each of the `workers` writer threads an arena of its own (up to 8 per core) and
  // keeps what each frees for that thread: at 50,000 objects that retained memory, not the
  // snapshot, was most of the peak RSS. Two arenas are plenty for threads that mostly wait on
  // the API server.
  mallopt(M_ARENA_MAX, 2);
#endif
  return Uninstaller(api, options, out, err).Run();
}

bool UninstallConfirmed(kube::KubeApi& api, const std::string& ns,
                        const std::string& confirm_namespace) {
  auto flag = api.Get(domain::Resource(std::string(res::kSettings)), ns,
                      std::string(longhorn::kDeletingConfirmationFlag));
  if (!flag.ok()) {
    // As RunUninstall: the typed namespace stands in only for a Setting (or CRD) that is gone.
    return flag.status().IsNotFound() && !confirm_namespace.empty() && confirm_namespace == ns;
  }
  return domain::ConfirmationFlagTrue(*flag);
}

Status RemoveWebhookConfigurations(kube::KubeApi& api, const std::string& names,
                                   std::ostream& out) {
  std::stringstream list(names);
  std::string name;
  while (std::getline(list, name, ',')) {
    if (name.empty()) continue;
    for (const kube::ResourceRef& kind : kWebhookKinds) {
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
