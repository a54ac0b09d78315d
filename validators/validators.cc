#include "validators/validators.h"

#include "validators/finalizer_removal.h"

namespace bg::validators {

// Every validator file, one line each, in the order `backup-guard manifests` prints the rules.
// The file named X defines RegisterXValidator(webhook::Registry&), which registers its handlers
// (resource, operation, handler); this list declares and calls each one.
#define BG_VALIDATOR_FILES(FILE) \
  FILE(Backup)                   \
  FILE(SystemBackup)             \
  FILE(BackupTarget)             \
  FILE(BackupBackingImage)

#define BG_DECLARE_VALIDATOR(name) void Register##name##Validator(webhook::Registry& registry);
BG_VALIDATOR_FILES(BG_DECLARE_VALIDATOR)

webhook::Registry BuildValidationRegistry(kube::ResourceLookup& lookup, const kube::Clock* clock) {
  webhook::Registry registry(lookup, clock);
  registry.AddBypass(
      [](const webhook::AdmissionRequest& r) -> std::optional<webhook::AdmissionResponse> {
        if (IsFinalizerOnlyRemoval(r)) return webhook::Allowed();
        return std::nullopt;
      });
#define BG_REGISTER_VALIDATOR(name) Register##name##Validator(registry);
  BG_VALIDATOR_FILES(BG_REGISTER_VALIDATOR)
  return registry;
}

}  // namespace bg::validators
