// Edits shared by mutators. Each edits a copy of the request object; the patch is derived later
// as the difference from the original (webhook::Patched), so these never build patch operations.
// Untrusted shapes are repaired rather than asserted: a field of the wrong type is replaced.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

namespace bg::mutators {

// Returns obj[key], making it an object when absent or not an object.
nlohmann::json& EnsureObject(nlohmann::json& obj, std::string_view key);

// Appends `finalizer` to metadata.finalizers unless it is already there.
void EnsureFinalizer(nlohmann::json& obj, std::string_view finalizer);

// Appends `ref` to metadata.ownerReferences, keeping every reference already there.
void AppendOwnerReference(nlohmann::json& obj, const nlohmann::json& ref);

}  // namespace bg::mutators
