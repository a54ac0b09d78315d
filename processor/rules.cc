#include "processor/rules.h"

#include <ctime>

#include "common/longhorn.h"
#include "validators/parents.h"

namespace bg::processor {

using nlohmann::json;
namespace res = longhorn::resource;

namespace {

Plan Release(const char* why) {
  Plan p;
  p.release = true;
  p.reason = why;
  return p;
}

// SPEC: during an uninstall, an object still deleting after the grace period is released.
Plan ApplyUninstallGrace(Plan plan, const json& obj, const RuleContext& ctx) {
  if (plan.release || !ctx.uninstall_confirmed || !longhorn::IsBeingDeleted(obj)) return plan;
  const long long deleting = SecondsDeleting(obj, ctx.now);
  if (deleting >= 0 && deleting >= ctx.release_grace.count()) {
    plan.release = true;
    plan.reason = reason::kUninstallGrace;
  }
  return plan;
}

std::string Name(const json& obj) { return longhorn::StringAt(obj, {"metadata", "name"}); }

// Adds `items` to the plan's cascade (not yet deleting or not yet labelled) and counts them.
// The items are moved: a target's cascade can hold every Backup of the cluster.
void Cascade(Plan& plan, const std::string& resource, std::vector<json> items) {
  for (json& item : items) {
    ++plan.children_remaining;
    if (!longhorn::IsDeleteCustomResourceOnly(item) || !longhorn::IsBeingDeleted(item)) {
      plan.cascade.push_back(Child{resource, std::move(item)});
    }
  }
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

bool LabelProtectsData(const Child& child) {
  if (child.resource == res::kBackups) {
    return !longhorn::StringAt(child.object, {"status", "backupTargetName"}).empty();
  }
  return true;
}

bool NeedsRelease(const json& obj) {
  return longhorn::IsBeingDeleted(obj) && longhorn::HasFinalizer(obj, longhorn::kFinalizer);
}

long long SecondsDeleting(const json& obj, std::chrono::system_clock::time_point now) {
  const std::string ts = longhorn::StringAt(obj, {"metadata", "deletionTimestamp"});
  std::tm tm{};
  if (ts.empty() || strptime(ts.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) == nullptr) return -1;
  const auto then = std::chrono::system_clock::from_time_t(timegm(&tm));
  return std::chrono::duration_cast<std::chrono::seconds>(now - then).count();
}

Plan PlanBackup(const json& backup, kube::ResourceLookup& view, const RuleContext& ctx) {
  if (longhorn::IsDeleteCustomResourceOnly(backup)) return Release(reason::kCustomResourceOnly);
  if (longhorn::StringAt(backup, {"status", "backupTargetName"}).empty()) {
    return Release(reason::kNoTargetName);
  }
  if (longhorn::Label(backup, longhorn::kBackupVolumeLabel).empty()) {
    return Release(reason::kNoVolumeLabel);
  }
  const validators::ParentCheck parents = validators::CheckBackupParents(view, ctx.ns, backup);
  if (!parents.present) return Release(reason::kParentGone);
  Plan held;
  held.held_because =
      "its data is in the backup store and its BackupVolume and BackupTarget "
      "exist: the storage engine deletes it";
  return ApplyUninstallGrace(std::move(held), backup, ctx);
}

Plan PlanBackupBackingImage(const json& image, kube::ResourceLookup& view, const RuleContext& ctx) {
  if (longhorn::IsDeleteCustomResourceOnly(image)) return Release(reason::kCustomResourceOnly);
  std::string target = longhorn::StringAt(image, {"spec", "backupTargetName"});
  if (target.empty()) target = longhorn::Label(image, longhorn::kBackupTargetLabel);
  if (target.empty()) return Release(reason::kNoTargetName);
  if (!view.Get(res::kBackupTargets, ctx.ns, target)) return Release(reason::kParentGone);
  Plan held;
  held.held_because = "its data is in the backup store and BackupTarget \"" + target +
                      "\" exists: the storage engine deletes it";
  return ApplyUninstallGrace(std::move(held), image, ctx);
}

Plan PlanBackupVolume(const json& volume, kube::ResourceLookup& view, const RuleContext& ctx) {
  std::string volume_name = longhorn::StringAt(volume, {"spec", "volumeName"});
  if (volume_name.empty()) volume_name = longhorn::Label(volume, longhorn::kBackupVolumeLabel);
  std::string target = longhorn::StringAt(volume, {"spec", "backupTargetName"});
  if (target.empty()) target = longhorn::Label(volume, longhorn::kBackupTargetLabel);
  Plan plan;
  if (!volume_name.empty()) {
    std::string selector = std::string(longhorn::kBackupVolumeLabel) + "=" + volume_name;
    if (!target.empty()) selector += "," + std::string(longhorn::kBackupTargetLabel) + "=" + target;
    Cascade(plan, std::string(res::kBackups), view.List(res::kBackups, ctx.ns, selector));
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

Plan PlanBackupTarget(const json& target, kube::ResourceLookup& view, const RuleContext& ctx) {
  const std::string name = Name(target);
  const std::string by_target = std::string(longhorn::kBackupTargetLabel) + "=" + name;
  Plan plan;
  Cascade(plan, std::string(res::kBackupVolumes),
          view.List(res::kBackupVolumes, ctx.ns, by_target));
  Cascade(plan, std::string(res::kBackupBackingImages),
          view.List(res::kBackupBackingImages, ctx.ns, by_target));
  Cascade(plan, std::string(res::kBackups), view.List(res::kBackups, ctx.ns, by_target));
  if (name == longhorn::kDefaultBackupTarget) {
    std::vector<json> system_backups;
    for (json& sb : view.List(res::kSystemBackups, ctx.ns, "")) {
      if (OwnedByTarget(sb, target) || !longhorn::HasBackupTargetOwner(sb)) {
        system_backups.push_back(std::move(sb));
      }
    }
    Cascade(plan, std::string(res::kSystemBackups), std::move(system_backups));
  }
  if (!longhorn::IsBeingDeleted(target)) return plan;  // URL emptied: cascade only
  if (plan.children_remaining == 0) {
    plan.release = true;
    plan.reason = reason::kChildrenGone;
    return plan;
  }
  plan.held_because = std::to_string(plan.children_remaining) +
                      " BackupVolumes, BackupBackingImages, Backups or SystemBackups remain";
  if (!plan.cascade.empty()) return plan;  // children first, as for BackupVolumes
  return ApplyUninstallGrace(std::move(plan), target, ctx);
}

Plan PlanSystemBackup(const json& sb, kube::ResourceLookup& view, const RuleContext& ctx) {
  if (longhorn::IsDeleteCustomResourceOnly(sb)) return Release(reason::kCustomResourceOnly);
  const std::string state = longhorn::StringAt(sb, {"status", "state"});
  if (state.empty() || state == "Error") return Release(reason::kNeverUploaded);
  // The owner BackupTarget is gone when no reference names one that exists with the same uid.
  bool owner_exists = false;
  const json& meta = sb.contains("metadata") ? sb["metadata"] : json::object();
  if (meta.is_object() && meta.contains("ownerReferences") && meta["ownerReferences"].is_array()) {
    for (const json& ref : meta["ownerReferences"]) {
      if (longhorn::StringAt(ref, {"kind"}) != "BackupTarget") continue;
      auto target = view.Get(res::kBackupTargets, ctx.ns, longhorn::StringAt(ref, {"name"}));
      if (target &&
          longhorn::StringAt(*target, {"metadata", "uid"}) == longhorn::StringAt(ref, {"uid"})) {
        owner_exists = true;
      }
    }
  }
  if (!owner_exists) return Release(reason::kParentGone);
  Plan held;
  held.held_because = "it uploaded data (state " + state +
                      ") and its BackupTarget exists: the storage engine deletes it";
  return ApplyUninstallGrace(std::move(held), sb, ctx);
}

Plan PlanOther(const json& obj, const RuleContext& ctx) {
  Plan held;
  held.held_because = "the storage engine owns it";
  return ApplyUninstallGrace(std::move(held), obj, ctx);
}

Plan PlanFor(const std::string& resource, const json& obj, kube::ResourceLookup& view,
             const RuleContext& ctx) {
  if (resource == res::kBackups) return PlanBackup(obj, view, ctx);
  if (resource == res::kBackupBackingImages) return PlanBackupBackingImage(obj, view, ctx);
  if (resource == res::kBackupVolumes) return PlanBackupVolume(obj, view, ctx);
  if (resource == res::kBackupTargets) return PlanBackupTarget(obj, view, ctx);
  if (resource == res::kSystemBackups) return PlanSystemBackup(obj, view, ctx);
  return PlanOther(obj, ctx);
}

json MissingOwnerReference(const json& sb, kube::ResourceLookup& view, const std::string& ns) {
  if (longhorn::HasBackupTargetOwner(sb) || longhorn::IsBeingDeleted(sb)) return nullptr;
  auto target = view.Get(res::kBackupTargets, ns, longhorn::kDefaultBackupTarget);
  if (!target || longhorn::IsBeingDeleted(*target) ||
      longhorn::StringAt(*target, {"metadata", "uid"}).empty()) {
    return nullptr;
  }
  return longhorn::BackupTargetOwnerReference(*target);
}

}  // namespace bg::processor
