// The validation webhook's registry. Each validator file registers its own handlers in a
// Register<Name>Validator function; validators.cc lists the files, one line each (a new validator
// is a new file plus its line there). A handler takes the request, and optionally first the cluster
// lookup (webhook::Registry hands it over); `backup-guard manifests` prints the webhook rules from
// this registry and cmd/manifests_test.cc checks the chart against them.
#pragma once

#include "kube/clock.h"
#include "kube/lookup.h"
#include "webhook/registry.h"

namespace bg::validators {

// `lookup` (and `clock`, null: the real one) must outlive the registry.
webhook::Registry BuildValidationRegistry(kube::ResourceLookup& lookup,
                                          const kube::Clock* clock = nullptr);

}  // namespace bg::validators
