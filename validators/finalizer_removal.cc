#include "validators/finalizer_removal.h"

#include <algorithm>

#include "common/longhorn.h"

namespace bg::validators {

using nlohmann::json;

namespace {
json FinalizersOf(const json& obj) {
  const json* meta = obj.is_object() && obj.contains("metadata") ? &obj["metadata"] : nullptr;
  if (meta == nullptr || !meta->is_object() || !meta->contains("finalizers")) return json::array();
  const json& f = (*meta)["finalizers"];
  return f.is_array() ? f : json::array();
}

json WithoutFinalizers(json obj) {
  if (obj.is_object() && obj.contains("metadata") && obj["metadata"].is_object()) {
    obj["metadata"].erase("finalizers");
    // These change on every write and say nothing about intent.
    obj["metadata"].erase("resourceVersion");
    obj["metadata"].erase("managedFields");
    obj["metadata"].erase("generation");
  }
  return obj;
}
}  // namespace

bool IsFinalizerOnlyRemoval(const webhook::AdmissionRequest& request) {
  if (request.operation != webhook::Operation::kUpdate) return false;
  if (!longhorn::IsBeingDeleted(request.old_object)) return false;
  const json before = FinalizersOf(request.old_object);
  const json after = FinalizersOf(request.object);
  if (after.size() >= before.size()) return false;
  // Every finalizer left must have been there before.
  for (const json& f : after) {
    if (std::find(before.begin(), before.end(), f) == before.end()) return false;
  }
  return WithoutFinalizers(request.old_object) == WithoutFinalizers(request.object);
}

}  // namespace bg::validators
