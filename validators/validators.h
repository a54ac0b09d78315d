// The validation webhook's registry: one Register() line per rule (validators.cc), each handler
// in a file of its own. A handler takes the request, and optionally first the cluster lookup
// (webhook::Registry hands it over); `backup-guard manifests` prints the webhook rules from this
// registry and cmd/manifests_test.cc checks the chart against them.
#pragma once

#include "kube/clock.h"
#include "kube/lookup.h"
#include "webhook/registry.h"

namespace bg::validators {

// `lookup` (and `clock`, null: the real one) must outlive the registry.
webhook::Registry BuildValidationRegistry(kube::ResourceLookup& lookup,
                                          const kube::Clock* clock = nullptr);

// Handlers whose files have no header of their own.
webhook::AdmissionResponse ValidateBackupBackingImageDelete(
    kube::ResourceLookup& lookup, const webhook::AdmissionRequest& request);

}  // namespace bg::validators
