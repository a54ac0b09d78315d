#include "validators/backup_validator.h"

#include "common/longhorn.h"
#include "domain/parents.h"
#include "webhook/registry.h"

namespace bg::validators {

using nlohmann::json;

webhook::AdmissionResponse ValidateBackupCreate(const webhook::AdmissionRequest& request) {
  const json& backup = request.object;
  if (longhorn::Label(backup, longhorn::kBackupVolumeLabel).empty()) {
    return webhook::Denied(422, "metadata.labels[" + std::string(longhorn::kBackupVolumeLabel) +
                                    "]: Required value: a Backup must name its volume");
  }
  const json* mode = nullptr;
  if (auto spec = backup.find("spec"); spec != backup.end() && spec->is_object()) {
    if (auto it = spec->find("backupMode"); it != spec->end() && !it->is_null()) mode = &*it;
  }
  if (mode != nullptr) {
    const std::string value = mode->is_string() ? mode->get<std::string>() : mode->dump();
    if (!mode->is_string() || (value != "full" && value != "incremental" && !value.empty())) {
      return webhook::Denied(422, "spec.backupMode: Unsupported value: " + value +
                                      ": supported values: \"full\", \"incremental\", \"\"");
    }
  }
  return webhook::Allowed();
}

webhook::AdmissionResponse ValidateBackupDelete(kube::ResourceLookup& lookup,
                                                const webhook::AdmissionRequest& request) {
  const json& backup = request.old_object.is_null() ? request.object : request.old_object;
  const domain::ParentCheck parents =
      domain::CheckBackupParents(lookup, request.namespace_name, backup);
  if (parents.present) return webhook::Allowed();
  return webhook::AllowedWithWarning(
      "only the custom resource will be deleted, the backup store is "
      "not touched: " +
      parents.missing_reason);
}

// Listed in validators.cc (BG_VALIDATOR_FILES).
void RegisterBackupValidator(webhook::Registry& registry) {
  registry.Register(longhorn::kGroup, longhorn::resource::kBackups, webhook::Operation::kCreate,
                    ValidateBackupCreate);
  registry.Register(longhorn::kGroup, longhorn::resource::kBackups, webhook::Operation::kDelete,
                    ValidateBackupDelete);
}

}  // namespace bg::validators
