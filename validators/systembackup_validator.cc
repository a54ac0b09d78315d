#include "validators/systembackup_validator.h"

#include "common/longhorn.h"
#include "domain/admission_reads.h"
#include "webhook/registry.h"

namespace bg::validators {

webhook::AdmissionResponse ValidateSystemBackupCreate(kube::ResourceLookup& lookup,
                                                      const webhook::AdmissionRequest& request) {
  const std::string name(longhorn::kDefaultBackupTarget);
  auto target = domain::AdmissionGet(lookup, longhorn::resource::kBackupTargets,
                                     request.namespace_name, name);
  if (!target) {
    return webhook::Denied(403, "cannot create SystemBackup: the default BackupTarget \"" + name +
                                    "\" does not exist in namespace " + request.namespace_name);
  }
  if (longhorn::StringAt(*target, {"spec", "backupTargetURL"}).empty()) {
    return webhook::Denied(403, "cannot create SystemBackup: the default BackupTarget \"" + name +
                                    "\" has an empty spec.backupTargetURL");
  }
  return webhook::Allowed();
}

// Listed in validators.cc (BG_VALIDATOR_FILES).
void RegisterSystemBackupValidator(webhook::Registry& registry) {
  registry.Register(longhorn::kGroup, longhorn::resource::kSystemBackups,
                    webhook::Operation::kCreate, ValidateSystemBackupCreate);
}

}  // namespace bg::validators
