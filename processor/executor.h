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
#include "domain/rules.h"
#include "kube/api.h"

namespace bg::processor {

class Executor {
 public:
  using Replan = std::function<domain::Plan(const nlohmann::json& fresh)>;

  Executor(kube::KubeApi& api, std::string ns, std::function<bool()> may_write);

  Status Cascade(const domain::Plan& plan);
  // One child of a cascade, for callers that run children in parallel: labels it
  // delete-custom-resource-only (when `label` and it is not yet), then deletes it (when it is not
  // being deleted yet). Answers the object as the API server last returned it (after the DELETE:
  // the copy being deleted, with its new resourceVersion), or an empty object when no write was
  // needed, the object is gone (404), or another object took its name (uid precondition failed).
  Result<nlohmann::json> CascadeChild(const domain::Child& child, bool label);
  // CascadeChild with the label decided by `label_protects` on the copy the DELETE is conditioned
  // on: the DELETE carries a resourceVersion precondition of that copy (the label PATCH's answer,
  // or the caller's copy when no label was needed), so an object that changed after the caller read
  // it (a failed Backup that completed meanwhile) is read again and decided again before it goes.
  // After kConflictRetries fresh reads it answers Conflict; an object now of another uid (a new one
  // took the name) answers an empty object, as a 404 does.
  Result<nlohmann::json> CascadeChildUnchanged(
      const domain::Child& child, const std::function<bool(const domain::Child&)>& label_protects);
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
