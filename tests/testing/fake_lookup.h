// FakeLookup: an in-memory ResourceLookup for unit tests. Objects are stored by
// (resource, namespace, name); List() matches "k=v,k2=v2" selectors against metadata.labels.
// Fail() makes the reads of one resource fail, as an unreachable API does.
#pragma once

#include <map>
#include <mutex>
#include <sstream>
#include <tuple>

#include "common/longhorn.h"
#include "common/status.h"
#include "kube/lookup.h"
#include "webhook/admission.h"

namespace bg::testing {

class FakeLookup final : public kube::ResourceLookup {
 public:
  void Put(std::string resource, nlohmann::json obj) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string ns = longhorn::StringAt(obj, {"metadata", "namespace"});
    const std::string name = longhorn::StringAt(obj, {"metadata", "name"});
    objects_[{resource, ns, name}] = std::move(obj);
  }
  void Remove(const std::string& resource, const std::string& ns, const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    objects_.erase({resource, ns, name});
  }

  // Every later Get and List of `resource` answers `error` (an unreachable API, a 5xx) until
  // Heal(resource).
  void Fail(const std::string& resource, Status error) {
    std::lock_guard<std::mutex> lock(mu_);
    failures_[resource] = std::move(error);
  }
  void Heal(const std::string& resource) {
    std::lock_guard<std::mutex> lock(mu_);
    failures_.erase(resource);
  }

  kube::GetResult Get(std::string_view resource, std::string_view ns,
                      std::string_view name) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++gets_;
    if (auto f = failures_.find(std::string(resource)); f != failures_.end()) return f->second;
    auto it = objects_.find({std::string(resource), std::string(ns), std::string(name)});
    if (it == objects_.end()) return std::nullopt;
    return it->second;
  }

  kube::ListResult List(std::string_view resource, std::string_view ns,
                        std::string_view selector) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto f = failures_.find(std::string(resource)); f != failures_.end()) return f->second;
    std::vector<nlohmann::json> out;
    for (const auto& [key, obj] : objects_) {
      if (std::get<0>(key) != resource || std::get<1>(key) != ns) continue;
      if (Matches(obj, std::string(selector))) out.push_back(obj);
    }
    return out;
  }

  bool Ready() override { return ready_; }
  void SetReady(bool ready) { ready_ = ready; }
  int gets() const { return gets_; }

 private:
  static bool Matches(const nlohmann::json& obj, const std::string& selector) {
    std::stringstream ss(selector);
    std::string term;
    while (std::getline(ss, term, ',')) {
      const auto eq = term.find('=');
      if (eq == std::string::npos) return false;
      if (!longhorn::HasLabel(obj, term.substr(0, eq)) ||
          longhorn::Label(obj, term.substr(0, eq)) != term.substr(eq + 1)) {
        return false;
      }
    }
    return true;
  }

  std::mutex mu_;
  std::map<std::tuple<std::string, std::string, std::string>, nlohmann::json> objects_;
  std::map<std::string, Status> failures_;
  bool ready_ = true;
  int gets_ = 0;
};

// Builds an AdmissionRequest for tests.
inline webhook::AdmissionRequest MakeRequest(std::string resource, webhook::Operation op,
                                             nlohmann::json object,
                                             nlohmann::json old_object = nullptr,
                                             std::string ns = "longhorn-system") {
  webhook::AdmissionRequest r;
  r.uid = "test-uid";
  r.group = "longhorn.io";
  r.version = "v1beta2";
  r.resource = std::move(resource);
  r.operation = op;
  r.namespace_name = std::move(ns);
  r.name = longhorn::StringAt(object.is_null() ? old_object : object, {"metadata", "name"});
  r.object = std::move(object);
  r.old_object = std::move(old_object);
  return r;
}

}  // namespace bg::testing
