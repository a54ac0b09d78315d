// Finalizer release rules (SPEC.md "Finalizer processor"). Each rule is a pure function from an
// object and a read-only view of the cluster to a Plan: whether to release our finalizer, which
// children to mark delete-custom-resource-only and delete first, and, when held, why.
// The processor and `backup-guard uninstall` both apply exactly these functions.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kube/lookup.h"

namespace bg::processor {

// Reasons are metric label values, so they form a small fixed set.
namespace reason {
inline constexpr char kNoTargetName[] = "no-target-name";
inline constexpr char kNoVolumeLabel[] = "no-volume-label";
inline constexpr char kCustomResourceOnly[] = "custom-resource-only";
inline constexpr char kParentGone[] = "parent-gone";
inline constexpr char kChildrenGone[] = "children-gone";
inline constexpr char kNeverUploaded[] = "never-uploaded";
inline constexpr char kUninstallGrace[] = "uninstall-grace";
}  // namespace reason

struct Child {
  std::string resource;  // plural
  nlohmann::json object;
};

struct Plan {
  bool release = false;
  std::string reason;        // when release: one of reason::*
  std::string held_because;  // when held: a sentence for logs and `uninstall` blockers
  // Children to label delete-custom-resource-only (when not yet) and delete (when not yet).
  std::vector<Child> cascade;
  // Children that block the release while they exist (cascade plus those already deleting).
  std::size_t children_remaining = 0;
};

struct RuleContext {
  std::string ns;
  bool uninstall_confirmed = false;  // deleting-confirmation-flag is "true"
  std::chrono::system_clock::time_point now;
  std::chrono::seconds release_grace{90};
};

// Whether labelling `child` delete-custom-resource-only before deleting it can keep anything in the
// backup store. The label is what stops the storage engine from deleting a child's data when the
// child is deleted, so it must land first; it protects nothing only for a Backup without
// status.backupTargetName: that name is set only when a backup completes (SPEC.md), so the store
// holds no backup of it, and PlanBackup releases it at once with or without the label. Every other
// child (BackupVolumes, BackupBackingImages, SystemBackups, completed Backups) answers true.
// `backup-guard uninstall` skips the label where this is false (one write less per failed Backup);
// the processor labels every child.
bool LabelProtectsData(const Child& child);

// True when `obj` is being deleted and still carries the longhorn.io finalizer.
bool NeedsRelease(const nlohmann::json& obj);

Plan PlanBackup(const nlohmann::json& backup, kube::ResourceLookup& view, const RuleContext& ctx);
Plan PlanBackupBackingImage(const nlohmann::json& image, kube::ResourceLookup& view,
                            const RuleContext& ctx);
Plan PlanBackupVolume(const nlohmann::json& volume, kube::ResourceLookup& view,
                      const RuleContext& ctx);
// For a BackupTarget being deleted, or whose spec.backupTargetURL is empty (then the children are
// cascaded and nothing is released).
Plan PlanBackupTarget(const nlohmann::json& target, kube::ResourceLookup& view,
                      const RuleContext& ctx);
Plan PlanSystemBackup(const nlohmann::json& system_backup, kube::ResourceLookup& view,
                      const RuleContext& ctx);
// Kinds the rules do not cover (volumes and the rest): only the uninstall grace applies.
Plan PlanOther(const nlohmann::json& obj, const RuleContext& ctx);

// Dispatches on the plural resource name.
Plan PlanFor(const std::string& resource, const nlohmann::json& obj, kube::ResourceLookup& view,
             const RuleContext& ctx);

// The upgrade rule: the owner reference a SystemBackup without one should get now, or null.
nlohmann::json MissingOwnerReference(const nlohmann::json& system_backup,
                                     kube::ResourceLookup& view, const std::string& ns);

// Seconds since metadata.deletionTimestamp, or -1 when absent or unparseable.
long long SecondsDeleting(const nlohmann::json& obj, std::chrono::system_clock::time_point now);

}  // namespace bg::processor
