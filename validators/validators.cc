#include "validators/validators.h"

#include "common/longhorn.h"
#include "validators/backup_validator.h"
#include "validators/backuptarget_validator.h"
#include "validators/finalizer_removal.h"
#include "validators/systembackup_validator.h"

namespace bg::validators {

using webhook::AdmissionRequest;
using webhook::Operation;
namespace res = longhorn::resource;

webhook::Registry BuildValidationRegistry(kube::ResourceLookup& lookup, const kube::Clock* clock) {
  webhook::Registry registry(lookup, clock);
  registry.AddBypass([](const AdmissionRequest& r) -> std::optional<webhook::AdmissionResponse> {
    if (IsFinalizerOnlyRemoval(r)) return webhook::Allowed();
    return std::nullopt;
  });
  const std::string_view g = longhorn::kGroup;
  registry.Register(g, res::kBackups, Operation::kCreate, ValidateBackupCreate);
  registry.Register(g, res::kBackups, Operation::kDelete, ValidateBackupDelete);
  registry.Register(g, res::kSystemBackups, Operation::kCreate, ValidateSystemBackupCreate);
  registry.Register(g, res::kBackupTargets, Operation::kDelete, ValidateBackupTargetDelete);
  registry.Register(g, res::kBackupBackingImages, Operation::kDelete,
                    ValidateBackupBackingImageDelete);
  return registry;
}

}  // namespace bg::validators
