#include "domain/rules.h"

#include <ctime>
#include <functional>
#include <optional>

#include "common/longhorn.h"
#include "domain/deletion_clock.h"
#include "domain/kinds.h"
#include "domain/parents.h"

namespace bg::domain {

using nlohmann::json;
namespace res = longhorn::resource;

namespace {

Plan Release(const char* why) {
  Plan p;
  p.release = true;
  p.reason = why;
  return p;
}

// A read the rule rests on failed: nothing is decided, the caller retries.
Plan Unread(Status error) {
  Plan p;
  p.held_because = "a read of the cluster failed: " + error.message();
  p.read_error = std::move(error);
  return p;
}

// SPEC: during an uninstall, an object still deleting after the grace period is released.
Plan ApplyUninstallGrace(Plan plan, const json& obj, const RuleContext& ctx) {
  if (plan.release || !ctx.uninstall_confirmed || !longhorn::IsBeingDeleted(obj)) return plan;
  const long long deleting = SecondsDeletingIn(obj, ctx);
  if (deleting >= 0 && deleting >= ctx.release_grace.count()) {
    plan.release = true;
    plan.reason = reason::kUninstallGrace;
  }
  return plan;
}

std::string Name(const json& obj) { return longhorn::StringAt(obj, {"metadata", "name"}); }

// Whether the object's status has `key` at all: an engine of v1.8 or later writes
// status.backupTargetName in every status it writes (the field has no omitempty), and the API
// server prunes it under the CRDs of v1.7.
bool HasStatusKey(const json& obj, const char* key) {
  auto status = obj.find("status");
  return status != obj.end() && status->is_object() && status->contains(key);
}

// A Backup the engine's target sync made from what it found in the store has no
// spec.snapshotName (engine: controller/backup_volume_controller.go, the sync that creates the
// Backups missing from the cluster); until the engine writes its status it looks like one that
// never uploaded, yet the store holds it.
bool CameFromTheStore(const json& backup) {
  return longhorn::StringAt(backup, {"spec", "snapshotName"}).empty();
}

// What holds an object whose data the engine deletes itself (SPEC: never preempt it).
Plan HeldForEngine(const json& obj, const std::string& target, const RuleContext& ctx) {
  Plan held;
  held.held_because = "waiting for the engine: its BackupTarget \"" + target +
                      "\" is available and it has data in the store";
  return ApplyUninstallGrace(std::move(held), obj, ctx);
}

// The BackupVolume of (target, volume): labelled with both (v1.8 and later), or, as before v1.8,
// named after the volume with no other target named.
kube::GetResult FindBackupVolume(kube::ResourceLookup& view, const std::string& ns,
                                 const std::string& target, const std::string& volume) {
  if (volume.empty()) return std::nullopt;
  const std::string selector = std::string(longhorn::kBackupTargetLabel) + "=" + target + "," +
                               std::string(longhorn::kBackupVolumeLabel) + "=" + volume;
  kube::ListResult labelled = view.List(res::kBackupVolumes, ns, selector);
  if (!labelled.ok()) return labelled.status();
  if (!labelled->empty()) return std::move(labelled->front());
  kube::GetResult named = view.Get(res::kBackupVolumes, ns, volume);
  if (!named.ok() || !named->has_value()) return named;
  const json& found = **named;
  std::string named_target = longhorn::StringAt(found, {"spec", "backupTargetName"});
  if (named_target.empty()) named_target = longhorn::Label(found, longhorn::kBackupTargetLabel);
  if (named_target.empty() || named_target == target) return named;
  return std::nullopt;
}

// Counts `item` as a child that remains and, when it is not yet labelled or not yet deleting,
// cascades it: into `sink` when given, else into the plan (moved: a target's cascade can be
// every Backup of the cluster).
void Cascade(Plan& plan, CascadeSink* sink, const std::string& resource, json& item) {
  ++plan.children_remaining;
  if (longhorn::IsDeleteCustomResourceOnly(item) && longhorn::IsBeingDeleted(item)) return;
  ++plan.cascaded;
  if (sink != nullptr) {
    sink->Add(resource, item);
  } else {
    plan.cascade.push_back(Child{resource, std::move(item)});
  }
}

// Cascades every object of `resource` matching `selector` and `keep`, read one at a time.
Status CascadeMatching(Plan& plan, CascadeSink* sink, kube::ResourceLookup& view,
                       const RuleContext& ctx, std::string_view resource,
                       const std::string& selector,
                       const std::function<bool(const json&)>& keep = nullptr) {
  const std::string plural(resource);
  return view.Visit(resource, ctx.ns, selector, [&](json& item) {
    if (keep == nullptr || keep(item)) Cascade(plan, sink, plural, item);
  });
}

bool OwnedByTarget(const json& obj, const json& target) {
  const json* owners = nullptr;
  if (obj.contains("metadata") && obj["metadata"].is_object() &&
      obj["metadata"].contains("ownerReferences")) {
    owners = &obj["metadata"]["ownerReferences"];
  }
  if (owners == nullptr || !owners->is_array()) return false;
  const std::string uid = longhorn::StringAt(target, {"metadata", "uid"});
  for (const json& ref : *owners) {
    if (longhorn::StringAt(ref, {"kind"}) == "BackupTarget" &&
        longhorn::StringAt(ref, {"name"}) == Name(target) &&
        (uid.empty() || longhorn::StringAt(ref, {"uid"}) == uid)) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool TargetAvailable(const json& target) {
  if (longhorn::IsBeingDeleted(target) ||
      longhorn::StringAt(target, {"spec", "backupTargetURL"}).empty()) {
    return false;
  }
  auto status = target.find("status");
  if (status == target.end() || !status->is_object()) return false;
  auto available = status->find("available");
  return available != status->end() && available->is_boolean() && available->get<bool>();
}

bool BackupNeverUploaded(const json& backup) {
  const std::string state = longhorn::StringAt(backup, {"status", "state"});
  if (CameFromTheStore(backup) && state != "Error" && state != "Unknown") return false;
  if (HasStatusKey(backup, "backupTargetName")) {  // written by an engine of v1.8 or later
    return longhorn::StringAt(backup, {"status", "backupTargetName"}).empty() ||
           longhorn::Label(backup, longhorn::kBackupVolumeLabel).empty();
  }
  return state != "Completed" && longhorn::StringAt(backup, {"status", "url"}).empty();
}

bool BackingImageBackupNeverUploaded(const json& image) {
  const std::string state = longhorn::StringAt(image, {"status", "state"});
  // The engine's target sync makes the ones it finds in the store with spec.userCreated false
  // (controller/backup_target_controller.go); a user's request has it true.
  auto spec = image.find("spec");
  const bool from_store = spec != image.end() && spec->is_object() &&
                          spec->contains("userCreated") && (*spec)["userCreated"].is_boolean() &&
                          !(*spec)["userCreated"].get<bool>();
  if (from_store && state != "Error" && state != "Unknown") return false;
  return state != "Completed" && longhorn::StringAt(image, {"status", "url"}).empty();
}

std::string BackupTargetOf(const json& backup) {
  std::string target = longhorn::Label(backup, longhorn::kBackupTargetLabel);
  if (target.empty()) target = longhorn::StringAt(backup, {"status", "backupTargetName"});
  if (target.empty() && !HasStatusKey(backup, "backupTargetName")) {
    target = longhorn::kDefaultBackupTarget;
  }
  return target;
}

bool LabelProtectsData(const Child& child) {
  if (child.resource == res::kBackups) return !BackupNeverUploaded(child.object);
  return true;
}

bool NeedsRelease(const json& obj) {
  return longhorn::IsBeingDeleted(obj) && longhorn::HasFinalizer(obj, longhorn::kFinalizer);
}

std::optional<std::chrono::system_clock::time_point> DeletionTime(const json& obj) {
  const std::string ts = longhorn::StringAt(obj, {"metadata", "deletionTimestamp"});
  std::tm tm{};
  if (ts.empty() || strptime(ts.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) == nullptr) {
    return std::nullopt;
  }
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

long long SecondsDeleting(const json& obj, std::chrono::system_clock::time_point now) {
  const auto then = DeletionTime(obj);
  if (!then) return -1;
  return std::chrono::duration_cast<std::chrono::seconds>(now - *then).count();
}

long long SecondsDeletingIn(const json& obj, const RuleContext& ctx) {
  return ctx.deletions != nullptr ? ctx.deletions->SecondsDeleting(obj, ctx.now)
                                  : SecondsDeleting(obj, ctx.now);
}

// Engine: controller/backup_controller.go, reconcile (deletion branch): the remote backup is
// deleted only when checkIfRemoteDataCleanupIsNeeded holds and its BackupVolume exists and is not
// being deleted; otherwise the engine just removes its finalizer.
Plan PlanBackup(const json& backup, kube::ResourceLookup& view, const RuleContext& ctx,
                CascadeSink* /*no children*/) {
  if (longhorn::IsDeleteCustomResourceOnly(backup)) return Release(reason::kCustomResourceOnly);
  // Without the label the engine can never find its BackupVolume (getBackupVolumeName fails on
  // every version), so it never releases the Backup and deletes nothing: release it here.
  if (longhorn::Label(backup, longhorn::kBackupVolumeLabel).empty()) {
    return Release(reason::kNoVolumeLabel);
  }
  if (BackupNeverUploaded(backup)) {
    return Release(HasStatusKey(backup, "backupTargetName") ? reason::kNoTargetName
                                                            : reason::kNeverUploaded);
  }
  const std::string target_name = BackupTargetOf(backup);
  if (target_name.empty()) return Release(reason::kParentGone);
  const kube::GetResult target = view.Get(res::kBackupTargets, ctx.ns, target_name);
  if (!target.ok()) return Unread(target.status());
  if (!target->has_value()) return Release(reason::kParentGone);
  if (!TargetAvailable(**target)) return Release(reason::kTargetUnavailable);
  const std::string volume = longhorn::Label(backup, longhorn::kBackupVolumeLabel);
  const kube::GetResult backup_volume = FindBackupVolume(view, ctx.ns, target_name, volume);
  if (!backup_volume.ok()) return Unread(backup_volume.status());
  if (!backup_volume->has_value()) return Release(reason::kParentGone);
  return HeldForEngine(backup, target_name, ctx);
}

// Engine: controller/backup_backing_image_controller.go, reconcile (deletion branch): the remote
// backing image is deleted when checkIfRemoteDataCleanupIsNeeded holds for spec.backupTargetName
// (before v1.8, for the target `default`).
Plan PlanBackupBackingImage(const json& image, kube::ResourceLookup& view, const RuleContext& ctx,
                            CascadeSink* /*no children*/) {
  if (longhorn::IsDeleteCustomResourceOnly(image)) return Release(reason::kCustomResourceOnly);
  if (BackingImageBackupNeverUploaded(image)) return Release(reason::kNeverUploaded);
  const std::string target_name = domain::BackupBackingImageTargetOf(image);
  if (target_name.empty()) return Release(reason::kNoTargetName);
  const kube::GetResult target = view.Get(res::kBackupTargets, ctx.ns, target_name);
  if (!target.ok()) return Unread(target.status());
  if (!target->has_value()) return Release(reason::kParentGone);
  if (!TargetAvailable(**target)) return Release(reason::kTargetUnavailable);
  return HeldForEngine(image, target_name, ctx);
}

// Engine: controller/backup_volume_controller.go, reconcile (deletion branch): when
// checkIfRemoteDataCleanupIsNeeded holds, the engine deletes the remote backup volume with all its
// backups itself. Otherwise nothing in the store is deleted, and its Backups go as custom
// resources only.
Plan PlanBackupVolume(const json& volume, kube::ResourceLookup& view, const RuleContext& ctx,
                      CascadeSink* sink) {
  std::string volume_name = longhorn::StringAt(volume, {"spec", "volumeName"});
  if (volume_name.empty()) volume_name = longhorn::Label(volume, longhorn::kBackupVolumeLabel);
  // Before v1.8 a BackupVolume was named after its volume and carried neither field nor label.
  if (volume_name.empty()) volume_name = Name(volume);
  std::string target = longhorn::StringAt(volume, {"spec", "backupTargetName"});
  if (target.empty()) target = longhorn::Label(volume, longhorn::kBackupTargetLabel);
  if (!longhorn::IsDeleteCustomResourceOnly(volume)) {
    const kube::GetResult bt =
        view.Get(res::kBackupTargets, ctx.ns,
                 target.empty() ? std::string(longhorn::kDefaultBackupTarget) : target);
    if (!bt.ok()) return Unread(bt.status());
    if (bt->has_value() && TargetAvailable(**bt)) {
      return HeldForEngine(volume, target.empty() ? "default" : target, ctx);
    }
  }
  Plan plan;
  if (!volume_name.empty()) {
    std::string selector = std::string(longhorn::kBackupVolumeLabel) + "=" + volume_name;
    if (!target.empty()) selector += "," + std::string(longhorn::kBackupTargetLabel) + "=" + target;
    if (Status s = CascadeMatching(plan, sink, view, ctx, res::kBackups, selector); !s.ok()) {
      return Unread(std::move(s));
    }
  }
  if (plan.children_remaining == 0) {
    plan.release = longhorn::IsBeingDeleted(volume);
    plan.reason = reason::kChildrenGone;
    return plan;
  }
  plan.held_because =
      std::to_string(plan.children_remaining) + " Backups of volume \"" + volume_name + "\" remain";
  return ApplyUninstallGrace(std::move(plan), volume, ctx);
}

Plan PlanBackupTarget(const json& target, kube::ResourceLookup& view, const RuleContext& ctx,
                      CascadeSink* sink) {
  const std::string name = Name(target);
  const std::string by_target = std::string(longhorn::kBackupTargetLabel) + "=" + name;
  Plan plan;
  for (const std::string_view child :
       {res::kBackupVolumes, res::kBackupBackingImages, res::kBackups}) {
    if (Status s = CascadeMatching(plan, sink, view, ctx, child, by_target); !s.ok()) {
      return Unread(std::move(s));
    }
  }
  if (name == longhorn::kDefaultBackupTarget) {
    Status s = CascadeMatching(plan, sink, view, ctx, res::kSystemBackups, "", [&](const json& sb) {
      return OwnedByTarget(sb, target) || !longhorn::HasBackupTargetOwner(sb);
    });
    if (!s.ok()) return Unread(std::move(s));
  }
  if (!longhorn::IsBeingDeleted(target)) return plan;  // URL emptied: cascade only
  if (plan.children_remaining == 0) {
    plan.release = true;
    plan.reason = reason::kChildrenGone;
    return plan;
  }
  plan.held_because = std::to_string(plan.children_remaining) +
                      " BackupVolumes, BackupBackingImages, Backups or SystemBackups remain";
  if (plan.cascaded > 0) return plan;  // children first, as for BackupVolumes
  return ApplyUninstallGrace(std::move(plan), target, ctx);
}

// Engine: controller/system_backup_controller.go (deletion): the system backup in the store is
// deleted when checkIfRemoteDataCleanupIsNeeded holds for its target.
Plan PlanSystemBackup(const json& sb, kube::ResourceLookup& view, const RuleContext& ctx,
                      CascadeSink* /*no children*/) {
  if (longhorn::IsDeleteCustomResourceOnly(sb)) return Release(reason::kCustomResourceOnly);
  const std::string state = longhorn::StringAt(sb, {"status", "state"});
  if (state.empty() || state == "Error") return Release(reason::kNeverUploaded);
  // Its owners: the BackupTargets its references name with the same uid; with no reference at
  // all, `default` (made before the upgrade, never owned by nobody).
  std::vector<json> owners;
  std::string owner_name;
  if (!longhorn::HasBackupTargetOwner(sb)) {
    owner_name = longhorn::kDefaultBackupTarget;
    kube::GetResult t = view.Get(res::kBackupTargets, ctx.ns, owner_name);
    if (!t.ok()) return Unread(t.status());
    if (t->has_value()) owners.push_back(**t);
  } else {
    for (const json& ref : sb["metadata"]["ownerReferences"]) {
      if (longhorn::StringAt(ref, {"kind"}) != "BackupTarget") continue;
      owner_name = longhorn::StringAt(ref, {"name"});
      kube::GetResult t = view.Get(res::kBackupTargets, ctx.ns, owner_name);
      if (!t.ok()) return Unread(t.status());
      if (t->has_value() &&
          longhorn::StringAt(**t, {"metadata", "uid"}) == longhorn::StringAt(ref, {"uid"})) {
        owners.push_back(**t);
      }
    }
  }
  if (owners.empty()) return Release(reason::kParentGone);
  for (const json& t : owners) {
    if (TargetAvailable(t)) return HeldForEngine(sb, Name(t), ctx);
  }
  return Release(reason::kTargetUnavailable);
}

Plan PlanOther(const json& obj, const RuleContext& ctx) {
  Plan held;
  held.held_because = "the storage engine owns it";
  return ApplyUninstallGrace(std::move(held), obj, ctx);
}

bool CascadeOnly(const std::string& resource, const json& obj) {
  return resource == res::kBackupTargets && !longhorn::IsBeingDeleted(obj) &&
         longhorn::StringAt(obj, {"spec", "backupTargetURL"}).empty();
}

Plan PlanFor(const std::string& resource, const json& obj, kube::ResourceLookup& view,
             const RuleContext& ctx, CascadeSink* sink) {
  const KindInfo* kind = FindKind(resource);
  if (kind != nullptr && kind->rule != nullptr) return kind->rule(obj, view, ctx, sink);
  return PlanOther(obj, ctx);
}

Result<json> MissingOwnerReference(const json& sb, kube::ResourceLookup& view,
                                   const std::string& ns) {
  if (longhorn::HasBackupTargetOwner(sb) || longhorn::IsBeingDeleted(sb)) return json(nullptr);
  kube::GetResult target = view.Get(res::kBackupTargets, ns, longhorn::kDefaultBackupTarget);
  if (!target.ok()) return target.status();
  if (!target->has_value() || longhorn::IsBeingDeleted(**target) ||
      longhorn::StringAt(**target, {"metadata", "uid"}).empty()) {
    return json(nullptr);
  }
  return longhorn::BackupTargetOwnerReference(**target);
}

}  // namespace bg::domain
