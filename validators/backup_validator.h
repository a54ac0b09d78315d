// Backup validation (SPEC.md "Admission", validating).
//  CREATE: the backup-volume label is required; spec.backupMode is full, incremental or empty.
//  DELETE: never refused because a parent is missing. An empty status.backupTargetName, a missing
//          backup-volume label, or a missing BackupVolume or BackupTarget all mean NotFound: the
//          answer is allowed, with a warning that only the custom resource will go.
#pragma once

#include "kube/lookup.h"
#include "webhook/admission.h"

namespace bg::validators {

webhook::AdmissionResponse ValidateBackupCreate(const webhook::AdmissionRequest& request);
webhook::AdmissionResponse ValidateBackupDelete(kube::ResourceLookup& lookup,
                                                const webhook::AdmissionRequest& request);

}  // namespace bg::validators
