#include "mutators/common.h"

namespace bg::mutators {

using nlohmann::json;

json& EnsureObject(json& obj, std::string_view key) {
  if (!obj.is_object()) obj = json::object();
  json& child = obj[std::string(key)];
  if (!child.is_object()) child = json::object();
  return child;
}

namespace {
json& EnsureArray(json& obj, std::string_view key) {
  json& child = obj[std::string(key)];
  if (!child.is_array()) child = json::array();
  return child;
}
}  // namespace

void EnsureFinalizer(json& obj, std::string_view finalizer) {
  json& finalizers = EnsureArray(EnsureObject(obj, "metadata"), "finalizers");
  for (const json& f : finalizers) {
    if (f.is_string() && f.get<std::string>() == finalizer) return;
  }
  finalizers.push_back(finalizer);
}

void AppendOwnerReference(json& obj, const json& ref) {
  EnsureArray(EnsureObject(obj, "metadata"), "ownerReferences").push_back(ref);
}

}  // namespace bg::mutators
