// SPEC: an UPDATE whose only change is removing finalizers from an object being deleted is always
// allowed, whatever other validators say. This lets the storage engine, the finalizer processor and
// `backup-guard uninstall` finish deletions even when other rules would object.
#pragma once

#include "webhook/admission.h"

namespace bg::validators {

bool IsFinalizerOnlyRemoval(const webhook::AdmissionRequest& request);

}  // namespace bg::validators
