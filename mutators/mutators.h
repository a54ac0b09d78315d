// The mutation webhook's registry: one Register() line per rule.
#pragma once

#include "kube/lookup.h"
#include "webhook/registry.h"

namespace bg::mutators {

// `lookup` must outlive the registry.
webhook::Registry BuildMutationRegistry(kube::ResourceLookup& lookup);

}  // namespace bg::mutators
