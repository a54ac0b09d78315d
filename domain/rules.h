// Finalizer release rules (SPEC.md "Finalizer processor"). Each rule is a pure function from an
// object and a read-only view of the cluster to a Plan: whether to release our finalizer, which
// children to mark delete-custom-resource-only and delete first, and, when held, why. A read of
// the view that fails decides nothing (Plan::read_error).
// The processor and `backup-guard uninstall` both apply exactly these functions.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "kube/lookup.h"

namespace bg::domain {

// Reasons are metric label values, so they form a small fixed set.
namespace reason {
inline constexpr char kNoTargetName[] = "no-target-name";
inline constexpr char kNoVolumeLabel[] = "no-volume-label";
inline constexpr char kCustomResourceOnly[] = "custom-resource-only";
inline constexpr char kParentGone[] = "parent-gone";
inline constexpr char kChildrenGone[] = "children-gone";
inline constexpr char kNeverUploaded[] = "never-uploaded";
inline constexpr char kTargetUnavailable[] = "target-unavailable";
inline constexpr char kUninstallGrace[] = "uninstall-grace";
}  // namespace reason

struct Child {
  std::string resource;  // plural
  nlohmann::json object;
};

// Where a rule puts the children it cascades. Without one, a plan holds them in Plan::cascade.
// A target's cascade is every Backup of the cluster, so `backup-guard uninstall`, which reads them
// from its compact snapshot, passes its own sink and keeps a reference to each instead of its tree.
class CascadeSink {
 public:
  virtual ~CascadeSink() = default;
  // One child to label and delete (`object` may be kept by moving it away). When the plan ends
  // with a read_error, what the sink took is not a plan: the caller drops it.
  virtual void Add(const std::string& resource, nlohmann::json& object) = 0;
};

struct Plan {
  bool release = false;
  std::string reason;        // when release: one of reason::*
  std::string held_because;  // when held: a sentence for logs and `uninstall` blockers
  // Children to label delete-custom-resource-only (when not yet) and delete (when not yet); empty
  // when the rule was given a CascadeSink, which took them instead.
  std::vector<Child> cascade;
  // How many children the rule cascaded (into `cascade` or the sink): none left to cascade when 0.
  std::size_t cascaded = 0;
  // Children that block the release while they exist (cascade plus those already deleting).
  std::size_t children_remaining = 0;
  // Not OK when a read the rule rests on failed (kube/lookup.h): then nothing is decided (held,
  // no cascade) and the caller retries; a failed read is never taken for absence.
  Status read_error;
};

class DeletionClock;

struct RuleContext {
  std::string ns;
  bool uninstall_confirmed = false;  // deleting-confirmation-flag is "true"
  std::chrono::system_clock::time_point now;
  std::chrono::seconds release_grace{90};
  // Measures the uninstall grace so that a local clock ahead of the API server's cannot shorten
  // it (domain/deletion_clock.h); the processor sets it. Null: `now` against
  // deletionTimestamp alone, as `diagnose` and `backup-guard uninstall` read it (a command
  // restarted after a crash must not wait the grace again for what it deleted before).
  DeletionClock* deletions = nullptr;
};

// How long `obj` has been deleting under `ctx`: by ctx.deletions when set, else SecondsDeleting.
long long SecondsDeletingIn(const nlohmann::json& obj, const RuleContext& ctx);

// The engine's own test for whether it deletes an object's data in the backup store when the
// object is deleted: its BackupTarget is *available* (exists, is not being deleted, has a URL and
// status.available) and the object is not labelled delete-custom-resource-only.
// Engine: controller/utils.go, isBackupTargetAvailable and checkIfRemoteDataCleanupIsNeeded
// (v1.8.0 to v1.10.0; v1.7.2 asked only for a URL, see docs/ENGINE.md).
bool TargetAvailable(const nlohmann::json& target);

// Whether the store can hold anything of `backup`, read from what the engine's version writes.
// From v1.8 the engine writes status.backupTargetName (always present in a status it wrote, empty
// until the backup completes) and labels every Backup with backup-volume: an empty name or a
// missing label means never uploaded. Before v1.8 the field does not exist (the API server prunes
// it), so a Backup never uploaded is one not Completed whose status.url is empty. A Backup the
// engine's target sync made from the store (no spec.snapshotName) is in the store whatever its
// status says, unless the engine itself marked it Error or Unknown.
bool BackupNeverUploaded(const nlohmann::json& backup);

// "Never uploaded" for a BackupBackingImage, as for a Backup before v1.8: not Completed and no
// status.url; one the engine's target sync made from the store (spec.userCreated false) is in the
// store unless the engine marked it Error or Unknown.
bool BackingImageBackupNeverUploaded(const nlohmann::json& image);

// The BackupTarget a Backup belongs to: its backup-target label (how the engine's backup
// controller finds it, getBackupTargetName), else status.backupTargetName, else, for a Backup of
// an engine before v1.8 (which had only the target `default`), "default". "" when the Backup is
// of v1.8 or later and names none (the parent is gone).
std::string BackupTargetOf(const nlohmann::json& backup);

// Whether labelling `child` delete-custom-resource-only before deleting it can keep anything in the
// backup store. The label is what stops the storage engine from deleting a child's data when the
// child is deleted, so it must land first; it protects nothing only for a Backup that never
// uploaded (BackupNeverUploaded): the store holds nothing of it, and PlanBackup releases it at once
// with or without the label. Every other child (BackupVolumes, BackupBackingImages, SystemBackups,
// completed Backups) answers true.
// `backup-guard uninstall` skips the label where this is false (one write less per failed Backup);
// the processor labels every child.
bool LabelProtectsData(const Child& child);

// True when `obj` is being deleted and still carries the longhorn.io finalizer.
bool NeedsRelease(const nlohmann::json& obj);

// Rules of kinds without children take a sink too (the kinds table's one signature, RuleFn) and
// never use it.
Plan PlanBackup(const nlohmann::json& backup, kube::ResourceLookup& view, const RuleContext& ctx,
                CascadeSink* sink = nullptr);
Plan PlanBackupBackingImage(const nlohmann::json& image, kube::ResourceLookup& view,
                            const RuleContext& ctx, CascadeSink* sink = nullptr);
// The rules that cascade (a BackupVolume, a BackupTarget, and PlanFor) hand the children to
// `sink` when one is given (CascadeSink), else to Plan::cascade; they list them through
// ResourceLookup::Visit, one at a time. The decision is the same either way.
Plan PlanBackupVolume(const nlohmann::json& volume, kube::ResourceLookup& view,
                      const RuleContext& ctx, CascadeSink* sink = nullptr);
// For a BackupTarget being deleted, or whose spec.backupTargetURL is empty (then the children are
// cascaded and nothing is released). In both cases the engine deletes nothing in the store.
Plan PlanBackupTarget(const nlohmann::json& target, kube::ResourceLookup& view,
                      const RuleContext& ctx, CascadeSink* sink = nullptr);
// A SystemBackup with no BackupTarget owner reference belongs to `default` (it was made before the
// upgrade that added the references).
Plan PlanSystemBackup(const nlohmann::json& system_backup, kube::ResourceLookup& view,
                      const RuleContext& ctx, CascadeSink* sink = nullptr);
// Kinds the rules do not cover (volumes and the rest): only the uninstall grace applies.
Plan PlanOther(const nlohmann::json& obj, const RuleContext& ctx);

// The URL-emptied rule: a BackupTarget not being deleted whose spec.backupTargetURL is empty has
// its children cascaded (PlanBackupTarget) and nothing released. The processor and the uninstall
// both ask this.
bool CascadeOnly(const std::string& resource, const nlohmann::json& obj);

// A kind's release rule (its row in domain/kinds.cc names it).
using RuleFn = Plan (*)(const nlohmann::json& obj, kube::ResourceLookup& view,
                        const RuleContext& ctx, CascadeSink* sink);

// The rule of `resource`'s row in the kinds table, or PlanOther for a kind without one.
Plan PlanFor(const std::string& resource, const nlohmann::json& obj, kube::ResourceLookup& view,
             const RuleContext& ctx, CascadeSink* sink = nullptr);

// The upgrade rule: the owner reference a SystemBackup without one should get now, or null; the
// lookup's error when the default BackupTarget cannot be read.
Result<nlohmann::json> MissingOwnerReference(const nlohmann::json& system_backup,
                                             kube::ResourceLookup& view, const std::string& ns);

// metadata.deletionTimestamp (the API server's clock), or nothing when absent or unparseable.
std::optional<std::chrono::system_clock::time_point> DeletionTime(const nlohmann::json& obj);

// Seconds since metadata.deletionTimestamp, or -1 when absent or unparseable.
long long SecondsDeleting(const nlohmann::json& obj, std::chrono::system_clock::time_point now);

}  // namespace bg::domain
