// The cluster as admission reads it. SPEC.md: an empty or missing parent reference means the
// parent is gone (NotFound), never an error, and so does a parent that cannot be read: admission
// answers every request, and a lookup that fails reads as absence. This is the one place where a
// lookup error (kube/lookup.h) becomes NotFound; the validators, the mutators and the admission
// helpers of domain/ (parents, the confirmation flag) read the cluster only through these. The
// processor and `uninstall` never do: for them an error holds a release and is retried.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <vector>

#include "kube/lookup.h"

namespace bg::domain {

// The object, or std::nullopt when it does not exist or cannot be read.
std::optional<nlohmann::json> AdmissionGet(kube::ResourceLookup& lookup, std::string_view resource,
                                           std::string_view ns, std::string_view name);

// The matching objects; none when the list cannot be read.
std::vector<nlohmann::json> AdmissionList(kube::ResourceLookup& lookup, std::string_view resource,
                                          std::string_view ns, std::string_view label_selector);

}  // namespace bg::domain
