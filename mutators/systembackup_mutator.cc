#include "mutators/systembackup_mutator.h"

#include "common/longhorn.h"
#include "domain/admission_reads.h"
#include "mutators/common.h"

namespace bg::mutators {

using nlohmann::json;

webhook::AdmissionResponse MutateSystemBackup(kube::ResourceLookup& lookup,
                                              const webhook::AdmissionRequest& request) {
  const json& original = request.object;
  json modified = original;
  EnsureFinalizer(modified, longhorn::kFinalizer);

  if (longhorn::StringAt(modified, {"spec", "volumeBackupPolicy"}).empty()) {
    EnsureObject(modified, "spec")["volumeBackupPolicy"] = kDefaultVolumeBackupPolicy;
  }

  if (!longhorn::HasBackupTargetOwner(modified)) {
    const std::string ns = request.namespace_name.empty()
                               ? longhorn::StringAt(modified, {"metadata", "namespace"})
                               : request.namespace_name;
    auto target = domain::AdmissionGet(lookup, longhorn::resource::kBackupTargets, ns,
                                       longhorn::kDefaultBackupTarget);
    // A target that is itself going away would take the SystemBackup with it through the garbage
    // collector the moment the reference lands; the finalizer processor handles that case instead.
    if (target && !longhorn::StringAt(*target, {"metadata", "uid"}).empty() &&
        !longhorn::IsBeingDeleted(*target)) {
      AppendOwnerReference(modified, longhorn::BackupTargetOwnerReference(*target));
    }
  }
  return webhook::Patched(original, modified);
}

}  // namespace bg::mutators
