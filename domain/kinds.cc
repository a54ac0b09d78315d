#include "domain/kinds.h"

#include <algorithm>

#include "common/longhorn.h"

namespace bg::domain {

namespace res = longhorn::resource;

const std::vector<KindInfo>& Kinds() {
  // Children (SPEC.md "Finalizer processor"): a BackupTarget's are found by the backup-target
  // label, and for `default` its SystemBackups by owner reference; a BackupVolume's Backups by
  // the backup-volume label (narrowed by backup-target when the volume names one).
  static const std::vector<KindInfo> kKinds = {
      {res::kBackupTargets,
       "BackupTarget",
       /*watched=*/true,
       /*uninstall_rank=*/1,
       /*cascaded=*/false,
       {{res::kBackupVolumes, ChildLink::kTargetLabel},
        {res::kBackupBackingImages, ChildLink::kTargetLabel},
        {res::kBackups, ChildLink::kTargetLabel},
        {res::kSystemBackups, ChildLink::kTargetOwner}},
       PlanBackupTarget},
      {res::kBackupVolumes,
       "BackupVolume",
       true,
       2,
       true,
       {{res::kBackups, ChildLink::kVolumeLabel}},
       PlanBackupVolume},
      {res::kBackups, "Backup", true, 3, true, {}, PlanBackup},
      {res::kSystemBackups, "SystemBackup", true, 4, true, {}, PlanSystemBackup},
      {res::kBackupBackingImages, "BackupBackingImage", true, 5, true, {}, PlanBackupBackingImage},
      // Volumes go first in an uninstall: a volume's engine and replicas go with it.
      {res::kVolumes, "Volume", true, 0, false, {}, nullptr},
      // The confirmation flag lives here; the uninstall never deletes Settings.
      {res::kSettings, "Setting", true, std::nullopt, false, {}, nullptr},
  };
  return kKinds;
}

const KindInfo* FindKind(std::string_view plural) {
  for (const KindInfo& k : Kinds()) {
    if (k.plural == plural) return &k;
  }
  return nullptr;
}

std::string KindOf(std::string_view plural) {
  const KindInfo* k = FindKind(plural);
  return k == nullptr ? std::string() : std::string(k->kind);
}

kube::ResourceRef Resource(std::string_view plural) {
  return kube::LonghornResource(plural, KindOf(plural));
}

const std::vector<std::string>& WatchedResources() {
  static const std::vector<std::string> kWatched = [] {
    std::vector<std::string> out;
    for (const KindInfo& k : Kinds()) {
      if (k.watched) out.emplace_back(k.plural);
    }
    return out;
  }();
  return kWatched;
}

const std::vector<std::string>& UninstallOrder() {
  static const std::vector<std::string> kOrder = [] {
    std::vector<const KindInfo*> ranked;
    for (const KindInfo& k : Kinds()) {
      if (k.uninstall_rank) ranked.push_back(&k);
    }
    std::sort(ranked.begin(), ranked.end(), [](const KindInfo* a, const KindInfo* b) {
      return *a->uninstall_rank < *b->uninstall_rank;
    });
    std::vector<std::string> out;
    out.reserve(ranked.size());
    for (const KindInfo* k : ranked) out.emplace_back(k->plural);
    return out;
  }();
  return kOrder;
}

std::vector<std::string_view> ChildrenOf(std::string_view parent) {
  std::vector<std::string_view> out;
  if (const KindInfo* k = FindKind(parent)) {
    for (const ChildKind& child : k->children) out.push_back(child.plural);
  }
  return out;
}

bool IsChildOf(std::string_view child, std::string_view parent) {
  const std::vector<std::string_view> children = ChildrenOf(parent);
  return std::find(children.begin(), children.end(), child) != children.end();
}

bool IsCascaded(std::string_view plural) {
  const KindInfo* k = FindKind(plural);
  return k != nullptr && k->cascaded;
}

const RuleFields& FieldsRulesRead() {
  static const RuleFields kFields = {
      {"name", "namespace", "uid", "resourceVersion", "deletionTimestamp", "labels", "finalizers",
       "ownerReferences"},
      {longhorn::kDeleteBackupTargetAnnotation},
      // spec.snapshotName and spec.userCreated tell what the engine's target sync found in the
      // store from what never reached it (BackupNeverUploaded, BackingImageBackupNeverUploaded).
      {"backupTargetURL", "backupTargetName", "volumeName", "snapshotName", "userCreated"},
      // status.backupTargetName is kept even when empty: its presence tells an engine of v1.8 or
      // later from one before (BackupNeverUploaded).
      {"backupTargetName", "state", "url", "available"},
  };
  return kFields;
}

}  // namespace bg::domain
