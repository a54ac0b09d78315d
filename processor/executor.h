// Executor: carries out a Plan against the API. Shared by the processor and `uninstall`.
//  - Cascade: labels each child delete-custom-resource-only (merge patch), then deletes it with a
//    uid precondition. 404 counts as done.
//  - Release: removes only longhorn.io from metadata.finalizers with a merge patch that carries the
//    resourceVersion read. A 409 re-reads the object and re-applies the rules to the fresh copy
//    before trying again; a 404 counts as done.
//  - Every write is preceded by `may_write()`, so a replica that has lost its lease writes nothing.
//
// Thread-safety: stateless apart from the references it holds; safe from many threads.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "kube/api.h"
#include "processor/rules.h"

namespace bg::processor {

class Executor {
 public:
  using Replan = std::function<Plan(const nlohmann::json& fresh)>;

  Executor(kube::KubeApi& api, std::string ns, std::function<bool()> may_write);

  Status Cascade(const Plan& plan);
  enum class Outcome {
    kReleased,     // this call removed the finalizer
    kAlreadyGone,  // the object or the finalizer was gone already (someone else, or a 404)
    kHeld,         // a fresh read showed the finalizer must stay
  };
  Result<Outcome> Release(const std::string& resource, const nlohmann::json& obj,
                          const Replan& replan);
  Status AddOwnerReference(const nlohmann::json& system_backup, const nlohmann::json& ref);
  // Merge-patches labels and annotations or spec fields without a version check.
  Status Patch(const std::string& resource, const std::string& name, const nlohmann::json& patch);
  Status Delete(const std::string& resource, const nlohmann::json& obj);

 private:
  Status CheckMayWrite() const;

  kube::KubeApi& api_;
  const std::string ns_;
  const std::function<bool()> may_write_;
};

}  // namespace bg::processor
