// SystemBackup CREATE: the default BackupTarget must exist and have a non-empty URL.
#pragma once

#include "kube/lookup.h"
#include "webhook/admission.h"

namespace bg::validators {

webhook::AdmissionResponse ValidateSystemBackupCreate(kube::ResourceLookup& lookup,
                                                      const webhook::AdmissionRequest& request);

}  // namespace bg::validators
