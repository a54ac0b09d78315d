#include "mutators/mutators.h"

#include "common/longhorn.h"
#include "mutators/systembackup_mutator.h"

namespace bg::mutators {

using webhook::AdmissionRequest;
using webhook::Operation;

webhook::Registry BuildMutationRegistry(kube::ResourceLookup& lookup, const kube::Clock* clock) {
  webhook::Registry registry(lookup, clock);
  // SPEC: an object that has a deletionTimestamp is never mutated.
  registry.AddBypass([](const AdmissionRequest& r) -> std::optional<webhook::AdmissionResponse> {
    if (longhorn::IsBeingDeleted(r.object)) return webhook::Allowed();
    return std::nullopt;
  });
  const std::string_view g = longhorn::kGroup;
  registry.Register(g, longhorn::resource::kSystemBackups, Operation::kCreate, MutateSystemBackup);
  registry.Register(g, longhorn::resource::kSystemBackups, Operation::kUpdate, MutateSystemBackup);
  return registry;
}

}  // namespace bg::mutators
