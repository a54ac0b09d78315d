// ResourceLookup: the read-only view of the cluster that admission handlers use.
// It is the seam between handlers and the Kubernetes API: tests pass a FakeLookup, the server
// passes a KubeLookup (kube/kube_lookup.h) backed by the API with a small TTL cache.
//
// Contract: a lookup never fails. An object that does not exist, a name that is empty, and an API
// that cannot be reached all answer "not found" (std::nullopt); the cause is logged by the
// implementation. This is SPEC.md's rule: an empty or missing parent reference means NotFound.
//
// Thread-safety: implementations are safe to call from many request threads at once.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bg::kube {

class ResourceLookup {
 public:
  virtual ~ResourceLookup() = default;

  // Gets longhorn.io/v1beta2 `resource` (plural, e.g. "backuptargets") named `name` in `ns`.
  virtual std::optional<nlohmann::json> Get(std::string_view resource, std::string_view ns,
                                            std::string_view name) = 0;

  // Lists longhorn.io/v1beta2 `resource` in `ns` matching `label_selector` ("k=v,k2=v2").
  // An unreachable API answers an empty list.
  virtual std::vector<nlohmann::json> List(std::string_view resource, std::string_view ns,
                                           std::string_view label_selector) = 0;

  // True once the lookup can answer from the cluster (always true when there is no cluster).
  virtual bool Ready() = 0;
};

// The lookup used when no cluster is configured: nothing exists.
class NoClusterLookup final : public ResourceLookup {
 public:
  std::optional<nlohmann::json> Get(std::string_view, std::string_view, std::string_view) override {
    return std::nullopt;
  }
  std::vector<nlohmann::json> List(std::string_view, std::string_view, std::string_view) override {
    return {};
  }
  bool Ready() override { return true; }
};

}  // namespace bg::kube
