// The validation webhook's registry: one Register() line per rule.
#pragma once

#include "kube/lookup.h"
#include "webhook/registry.h"

namespace bg::validators {

// `lookup` must outlive the registry.
webhook::Registry BuildValidationRegistry(kube::ResourceLookup& lookup);

}  // namespace bg::validators
