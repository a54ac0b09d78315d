#include "domain/parents.h"

#include "common/longhorn.h"
#include "domain/admission_reads.h"

namespace bg::domain {

using nlohmann::json;

ParentCheck CheckBackupParents(kube::ResourceLookup& lookup, const std::string& request_ns,
                               const json& backup) {
  auto missing = [](std::string reason) { return ParentCheck{false, std::move(reason)}; };
  const std::string ns =
      request_ns.empty() ? longhorn::StringAt(backup, {"metadata", "namespace"}) : request_ns;
  const std::string target = longhorn::StringAt(backup, {"status", "backupTargetName"});
  const std::string volume = longhorn::Label(backup, longhorn::kBackupVolumeLabel);
  if (longhorn::IsDeleteCustomResourceOnly(backup)) {
    return missing("it is labelled " + std::string(longhorn::kDeleteCustomResourceOnlyLabel));
  }
  if (target.empty()) {
    return missing(
        "status.backupTargetName is empty (the backup never completed), so its "
        "BackupVolume is treated as not found");
  }
  if (volume.empty()) {
    return missing("the " + std::string(longhorn::kBackupVolumeLabel) +
                   " label is missing, so its BackupVolume is treated as not found");
  }
  if (!AdmissionGet(lookup, longhorn::resource::kBackupTargets, ns, target)) {
    return missing("BackupTarget \"" + target + "\" not found");
  }
  const std::string selector = std::string(longhorn::kBackupTargetLabel) + "=" + target + "," +
                               std::string(longhorn::kBackupVolumeLabel) + "=" + volume;
  if (AdmissionList(lookup, longhorn::resource::kBackupVolumes, ns, selector).empty()) {
    return missing("BackupVolume for volume \"" + volume + "\" on target \"" + target +
                   "\" not found");
  }
  return ParentCheck{true, ""};
}

std::string BackupBackingImageTargetOf(const json& image) {
  std::string target = longhorn::StringAt(image, {"spec", "backupTargetName"});
  if (target.empty()) target = longhorn::Label(image, longhorn::kBackupTargetLabel);
  const auto spec = image.find("spec");
  const bool before_v1_8 =
      spec == image.end() || !spec->is_object() || !spec->contains("backupTargetName");
  if (target.empty() && before_v1_8) target = longhorn::kDefaultBackupTarget;
  return target;
}

ParentCheck CheckBackupBackingImageParents(kube::ResourceLookup& lookup,
                                           const std::string& request_ns, const json& image) {
  auto missing = [](std::string reason) { return ParentCheck{false, std::move(reason)}; };
  const std::string ns =
      request_ns.empty() ? longhorn::StringAt(image, {"metadata", "namespace"}) : request_ns;
  if (longhorn::IsDeleteCustomResourceOnly(image)) {
    return missing("it is labelled " + std::string(longhorn::kDeleteCustomResourceOnlyLabel));
  }
  const std::string target = BackupBackingImageTargetOf(image);
  if (target.empty()) {
    return missing("spec.backupTargetName and the " + std::string(longhorn::kBackupTargetLabel) +
                   " label are empty, so its BackupTarget is treated as not found");
  }
  if (!AdmissionGet(lookup, longhorn::resource::kBackupTargets, ns, target)) {
    return missing("BackupTarget \"" + target + "\" not found");
  }
  return ParentCheck{true, ""};
}

}  // namespace bg::domain
