#include "common/longhorn.h"

namespace bg::longhorn {

using nlohmann::json;

namespace {
const json* Find(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

const json* MetadataMap(const json& obj, std::string_view map) {
  const json* meta = Find(obj, "metadata");
  return meta ? Find(*meta, map) : nullptr;
}
}  // namespace

std::string StringAt(const json& obj, std::initializer_list<std::string_view> path) {
  const json* cur = &obj;
  for (std::string_view key : path) {
    cur = Find(*cur, key);
    if (cur == nullptr) return "";
  }
  return cur->is_string() ? cur->get<std::string>() : "";
}

std::string Label(const json& obj, std::string_view key) {
  const json* labels = MetadataMap(obj, "labels");
  if (labels == nullptr) return "";
  const json* v = Find(*labels, key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : "";
}

bool HasLabel(const json& obj, std::string_view key) {
  const json* labels = MetadataMap(obj, "labels");
  return labels != nullptr && Find(*labels, key) != nullptr;
}

bool HasAnnotation(const json& obj, std::string_view key) {
  const json* annotations = MetadataMap(obj, "annotations");
  return annotations != nullptr && Find(*annotations, key) != nullptr;
}

bool IsBeingDeleted(const json& obj) {
  const json* ts = MetadataMap(obj, "deletionTimestamp");
  return ts != nullptr && ts->is_string() && !ts->get<std::string>().empty();
}

bool HasFinalizer(const json& obj, std::string_view finalizer) {
  const json* finalizers = MetadataMap(obj, "finalizers");
  if (finalizers == nullptr || !finalizers->is_array()) return false;
  for (const json& f : *finalizers) {
    if (f.is_string() && f.get<std::string>() == finalizer) return true;
  }
  return false;
}

bool IsDeleteCustomResourceOnly(const json& obj) {
  return Label(obj, kDeleteCustomResourceOnlyLabel) == "true";
}

bool HasBackupTargetOwner(const json& obj) {
  const json* owners = MetadataMap(obj, "ownerReferences");
  if (owners == nullptr || !owners->is_array()) return false;
  for (const json& ref : *owners) {
    if (StringAt(ref, {"kind"}) != "BackupTarget") continue;
    const std::string api_version = StringAt(ref, {"apiVersion"});
    if (api_version.rfind(std::string(kGroup) + "/", 0) == 0) return true;
  }
  return false;
}

json BackupTargetOwnerReference(const json& target) {
  return {{"apiVersion", std::string(kApiVersion)},
          {"kind", "BackupTarget"},
          {"name", StringAt(target, {"metadata", "name"})},
          {"uid", StringAt(target, {"metadata", "uid"})}};
}

std::string Rfc3339Utc(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace bg::longhorn
