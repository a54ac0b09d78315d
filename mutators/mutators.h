// The mutation webhook's registry: one Register() line per rule.
#pragma once

#include "kube/clock.h"
#include "kube/lookup.h"
#include "webhook/registry.h"

namespace bg::mutators {

// `lookup` (and `clock`, null: the real one) must outlive the registry.
webhook::Registry BuildMutationRegistry(kube::ResourceLookup& lookup,
                                        const kube::Clock* clock = nullptr);

}  // namespace bg::mutators
