#include "validators/backuptarget_validator.h"

#include "common/longhorn.h"
#include "domain/confirmation.h"
#include "webhook/registry.h"

namespace bg::validators {

bool DeletingConfirmed(kube::ResourceLookup& lookup, const std::string& ns) {
  return domain::AdmissionConfirmationFlagSet(lookup, ns);
}

webhook::AdmissionResponse ValidateBackupTargetDelete(kube::ResourceLookup& lookup,
                                                      const webhook::AdmissionRequest& request) {
  if (request.name != longhorn::kDefaultBackupTarget) return webhook::Allowed();
  if (longhorn::HasAnnotation(request.old_object, longhorn::kDeleteBackupTargetAnnotation)) {
    return webhook::Allowed();
  }
  if (DeletingConfirmed(lookup, request.namespace_name)) return webhook::Allowed();
  return webhook::Denied(
      403, "deleting the default BackupTarget is not allowed: annotate it with " +
               std::string(longhorn::kDeleteBackupTargetAnnotation) + ", or set the Setting " +
               std::string(longhorn::kDeletingConfirmationFlag) +
               " to \"true\" (or another value that parses as true) to uninstall");
}

// Listed in validators.cc (BG_VALIDATOR_FILES).
void RegisterBackupTargetValidator(webhook::Registry& registry) {
  registry.Register(longhorn::kGroup, longhorn::resource::kBackupTargets,
                    webhook::Operation::kDelete, ValidateBackupTargetDelete);
}

}  // namespace bg::validators
