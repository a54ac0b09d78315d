// Parent resolution for backup-like objects (Backup, BackupBackingImage), shared by the
// validators and the finalizer rules so both apply SPEC.md's one rule: an empty or missing
// parent reference means the parent is gone (NotFound), never an error.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "kube/lookup.h"

namespace bg::validators {

struct ParentCheck {
  bool present = false;        // every parent exists
  std::string missing_reason;  // why not, when !present
};

ParentCheck CheckBackupParents(kube::ResourceLookup& lookup, const std::string& ns,
                               const nlohmann::json& backup);

}  // namespace bg::validators
