// BackupBackingImage DELETE (SPEC.md "Finalizer processor": a
// BackupBackingImage is handled "as a Backup", with spec.backupTargetName or
// its backup-target label as its target). As for a Backup DELETE, the deletion
// is never refused: when the parent is gone (no target named, the target not
// found, or the object labelled delete-custom-resource-only) the answer is
// allowed with a warning that only the custom resource goes.
#include "common/longhorn.h"
#include "domain/parents.h"
#include "webhook/registry.h"

namespace bg::validators {
namespace {

webhook::AdmissionResponse ValidateBackupBackingImageDelete(
    kube::ResourceLookup& lookup, const webhook::AdmissionRequest& request) {
  const nlohmann::json& image = request.old_object.is_null() ? request.object : request.old_object;
  const domain::ParentCheck parent =
      domain::CheckBackupBackingImageParents(lookup, request.namespace_name, image);
  if (parent.present) return webhook::Allowed();
  return webhook::AllowedWithWarning(
      "only the custom resource will be deleted, the backup store is not "
      "touched: " +
      parent.missing_reason);
}

}  // namespace

// Listed in validators.cc (BG_VALIDATOR_FILES).
void RegisterBackupBackingImageValidator(webhook::Registry& registry) {
  registry.Register(longhorn::kGroup, longhorn::resource::kBackupBackingImages,
                    webhook::Operation::kDelete, ValidateBackupBackingImageDelete);
}

}  // namespace bg::validators
