// ResourceLookup: a read-only view of the cluster by plural resource name: the seam between the
// rules (admission handlers, the finalizer processor, `uninstall`, `diagnose`) and where objects
// come from. Tests pass a FakeLookup; the server passes a KubeLookup (kube/kube_lookup.h: the
// API behind a small TTL cache) to admission, and the processor reads informer caches and, to
// confirm a release, the API itself.
//
// Contract: an answer says found, not found, or failed. A failed read (an unreachable API, a 5xx,
// a 403, a malformed body) is an error, never absence: what it means is for the caller to decide.
// Admission decides it once, as SPEC.md asks (a parent that cannot be read is NotFound:
// domain/admission_reads.h); the processor and `uninstall` hold and retry.
//
// Thread-safety: implementations are safe to call from many request threads at once.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bg::kube {

// The object, std::nullopt when it does not exist, or the error that kept it from being read.
using GetResult = Result<std::optional<nlohmann::json>>;
// The objects that match (empty when none do), or the error that kept them from being read.
using ListResult = Result<std::vector<nlohmann::json>>;

class ResourceLookup {
 public:
  virtual ~ResourceLookup() = default;

  // Gets longhorn.io/v1beta2 `resource` (plural, e.g. "backuptargets") named `name` in `ns`.
  // An empty name is not found.
  virtual GetResult Get(std::string_view resource, std::string_view ns, std::string_view name) = 0;

  // Lists longhorn.io/v1beta2 `resource` in `ns` matching `label_selector` ("k=v,k2=v2").
  virtual ListResult List(std::string_view resource, std::string_view ns,
                          std::string_view label_selector) = 0;

  // List, one object at a time: calls fn on each match in List's order (fn may keep the object
  // by moving it away) and answers the error that kept them from being read. A view that holds
  // its objects in another form (the uninstall's snapshot) overrides it to make one tree at a
  // time, so that a caller going through many children never holds them all. A failed read may
  // come after some calls (the default, through List, fails before any): a caller that gets an
  // error drops what it kept.
  virtual Status Visit(std::string_view resource, std::string_view ns,
                       std::string_view label_selector,
                       const std::function<void(nlohmann::json&)>& fn) {
    ListResult items = List(resource, ns, label_selector);
    if (!items.ok()) return items.status();
    for (nlohmann::json& item : items.value()) fn(item);
    return Status::Ok();
  }

  // True once the lookup can answer from the cluster (always true when there is no cluster).
  virtual bool Ready() = 0;
};

// The lookup used when no cluster is configured: nothing exists.
class NoClusterLookup final : public ResourceLookup {
 public:
  GetResult Get(std::string_view, std::string_view, std::string_view) override {
    return std::nullopt;
  }
  ListResult List(std::string_view, std::string_view, std::string_view) override {
    return std::vector<nlohmann::json>();
  }
  bool Ready() override { return true; }
};

}  // namespace bg::kube
