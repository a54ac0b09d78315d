// SystemBackup CREATE/UPDATE mutation (SPEC.md "Admission", mutating):
//  - the longhorn.io finalizer is added when absent;
//  - an empty spec.volumeBackupPolicy defaults to if-not-present;
//  - without a BackupTarget owner reference, one to the `default` BackupTarget is added while that
//    target exists (this is how SystemBackups made before an upgrade get theirs on next update).
#pragma once

#include "kube/lookup.h"
#include "webhook/admission.h"

namespace bg::mutators {

inline constexpr std::string_view kDefaultVolumeBackupPolicy = "if-not-present";

// `lookup` must outlive the returned handler's use.
webhook::AdmissionResponse MutateSystemBackup(kube::ResourceLookup& lookup,
                                              const webhook::AdmissionRequest& request);

}  // namespace bg::mutators
