// Parent resolution for backup-like objects (Backup, BackupBackingImage) as admission reads it:
// SPEC.md's rule that an empty or missing parent reference means the parent is gone (NotFound),
// never an error (nor is a parent that cannot be read: domain/admission_reads.h). The validators
// of Backup and BackupBackingImage DELETE use it.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "kube/lookup.h"

namespace bg::domain {

struct ParentCheck {
  bool present = false;        // every parent exists
  std::string missing_reason;  // why not, when !present
};

// A Backup's parents: its BackupTarget (status.backupTargetName) and its BackupVolume (by the
// backup-target and backup-volume labels). `ns` empty: the Backup's own namespace.
ParentCheck CheckBackupParents(kube::ResourceLookup& lookup, const std::string& ns,
                               const nlohmann::json& backup);

// A BackupBackingImage's parent: its BackupTarget, named by spec.backupTargetName, else by its
// backup-target label, else, for one of an engine before v1.8 (no spec.backupTargetName at all),
// `default` (BackupBackingImageTargetOf).
ParentCheck CheckBackupBackingImageParents(kube::ResourceLookup& lookup, const std::string& ns,
                                           const nlohmann::json& image);

// The BackupTarget a BackupBackingImage belongs to, as the engine's backing image backup
// controller reads it; "" when it names none (the parent is gone).
std::string BackupBackingImageTargetOf(const nlohmann::json& image);

}  // namespace bg::domain
