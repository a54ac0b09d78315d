// BackupTarget DELETE: `default` may be deleted only when it carries the
// longhorn.io/delete-backup-target-from-longhorn annotation, or while the
// deleting-confirmation-flag Setting is "true" (an uninstall). Other targets are not guarded.
#pragma once

#include "kube/lookup.h"
#include "webhook/admission.h"

namespace bg::validators {

webhook::AdmissionResponse ValidateBackupTargetDelete(kube::ResourceLookup& lookup,
                                                      const webhook::AdmissionRequest& request);

// True when the Setting deleting-confirmation-flag in `ns` has value "true".
bool DeletingConfirmed(kube::ResourceLookup& lookup, const std::string& ns);

}  // namespace bg::validators
