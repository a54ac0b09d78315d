#include "mutators/mutators.h"

#include "common/longhorn.h"
#include "mutators/systembackup_mutator.h"

namespace bg::mutators {

using webhook::AdmissionRequest;
using webhook::Operation;

webhook::Registry BuildMutationRegistry(kube::ResourceLookup& lookup) {
  webhook::Registry registry;
  // SPEC: an object that has a deletionTimestamp is never mutated.
  registry.AddBypass([](const AdmissionRequest& r) -> std::optional<webhook::AdmissionResponse> {
    if (longhorn::IsBeingDeleted(r.object)) return webhook::Allowed();
    return std::nullopt;
  });
  auto systembackup = [&lookup](const AdmissionRequest& r) {
    return MutateSystemBackup(lookup, r);
  };
  registry.Register(longhorn::kGroup, longhorn::resource::kSystemBackups, Operation::kCreate,
                    systembackup);
  registry.Register(longhorn::kGroup, longhorn::resource::kSystemBackups, Operation::kUpdate,
                    systembackup);
  return registry;
}

}  // namespace bg::mutators
