// ForwardingKubeApi: a KubeApi that passes every call on to another one (usually a FakeKubeApi).
// A test derives from it and overrides only the calls it records, delays or fails. The calls with
// a default in KubeApi (DeleteReturningObject, DeleteUnchanged, ListPages) keep that default, so
// they reach the next API through this one's overrides.
//
// Thread-safety: as the KubeApi it forwards to.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "kube/api.h"

namespace bg::testing {

class ForwardingKubeApi : public kube::KubeApi {
 public:
  using json = nlohmann::json;

  explicit ForwardingKubeApi(kube::KubeApi& next) : next_(next) {}

  Result<json> Get(const kube::ResourceRef& r, const std::string& ns,
                   const std::string& name) override {
    return next_.Get(r, ns, name);
  }
  Result<json> List(const kube::ResourceRef& r, const std::string& ns,
                    const std::string& selector) override {
    return next_.List(r, ns, selector);
  }
  Result<json> Create(const kube::ResourceRef& r, const std::string& ns, const json& obj) override {
    return next_.Create(r, ns, obj);
  }
  Result<json> Update(const kube::ResourceRef& r, const std::string& ns, const json& obj) override {
    return next_.Update(r, ns, obj);
  }
  Result<json> MergePatch(const kube::ResourceRef& r, const std::string& ns,
                          const std::string& name, const json& patch) override {
    return next_.MergePatch(r, ns, name, patch);
  }
  Status Delete(const kube::ResourceRef& r, const std::string& ns, const std::string& name,
                const std::string& uid) override {
    return next_.Delete(r, ns, name, uid);
  }
  Status Watch(const kube::ResourceRef& r, const std::string& ns, const std::string& from,
               const std::function<bool(const kube::WatchEvent&)>& on_event,
               const std::atomic<bool>& stop) override {
    return next_.Watch(r, ns, from, on_event, stop);
  }

 protected:
  kube::KubeApi& next() { return next_; }

 private:
  kube::KubeApi& next_;
};

}  // namespace bg::testing
