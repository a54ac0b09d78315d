#include "kube/api.h"

#include "common/longhorn.h"

namespace bg::kube {

ResourceRef LonghornResource(std::string_view plural, std::string_view kind) {
  return ResourceRef{std::string(longhorn::kGroup), std::string(longhorn::kVersion),
                     std::string(plural), std::string(kind)};
}

Result<nlohmann::json> KubeApi::DeleteReturningObject(const ResourceRef& r, const std::string& ns,
                                                      const std::string& name,
                                                      const std::string& uid) {
  if (Status s = Delete(r, ns, name, uid); !s.ok()) return s;
  return nlohmann::json::object();
}

Result<nlohmann::json> KubeApi::DeleteUnchanged(const ResourceRef& r, const std::string& ns,
                                                const std::string& name, const std::string& uid,
                                                const std::string& resource_version) {
  if (!resource_version.empty()) {
    Result<nlohmann::json> current = Get(r, ns, name);
    if (!current.ok()) return current.status();
    const nlohmann::json& meta = current->value("metadata", nlohmann::json::object());
    if (!meta.is_object() || meta.value("resourceVersion", "") != resource_version) {
      return Status::Conflict(r.resource + " " + name + ": resourceVersion precondition failed");
    }
  }
  return DeleteReturningObject(r, ns, name, uid);
}

Status KubeApi::ListPages(const ResourceRef& r, const std::string& ns,
                          const std::string& label_selector, const PageFn& on_page) {
  Result<nlohmann::json> list = List(r, ns, label_selector);
  if (!list.ok()) return list.status();
  std::vector<nlohmann::json> items;
  if (auto it = list->find("items"); it != list->end() && it->is_array()) {
    items.reserve(it->size());
    for (nlohmann::json& item : *it) items.push_back(std::move(item));
  }
  on_page(items);
  return Status::Ok();
}

}  // namespace bg::kube
