#include "processor/executor.h"

#include "common/log.h"
#include "common/longhorn.h"
#include "domain/kinds.h"

namespace bg::processor {

using domain::Child;
using domain::NeedsRelease;
using domain::Plan;

using nlohmann::json;

namespace {
// Conflicts come from the storage engine or a second writer touching the object at the same time;
// a handful of fresh reads settles them, and the work queue retries beyond that.
constexpr int kConflictRetries = 5;

std::string Name(const json& obj) { return longhorn::StringAt(obj, {"metadata", "name"}); }

json FinalizersWithout(const json& obj, std::string_view finalizer) {
  json out = json::array();
  const json& meta = obj.value("metadata", json::object());
  const json& finalizers =
      meta.is_object() ? meta.value("finalizers", json::array()) : json::array();
  if (!finalizers.is_array()) return out;
  for (const json& f : finalizers) {
    if (!(f.is_string() && f.get<std::string>() == finalizer)) out.push_back(f);
  }
  return out;
}
}  // namespace

Executor::Executor(kube::KubeApi& api, std::string ns, std::function<bool()> may_write)
    : api_(api), ns_(std::move(ns)), may_write_(std::move(may_write)) {}

Status Executor::CheckMayWrite() const {
  if (may_write_ && !may_write_()) return Status::PermissionDenied("not the leader: no writes");
  return Status::Ok();
}

Status Executor::Patch(const std::string& resource, const std::string& name, const json& patch) {
  if (Status s = CheckMayWrite(); !s.ok()) return s;
  auto r = api_.MergePatch(domain::Resource(resource), ns_, name, patch);
  if (r.ok() || r.status().IsNotFound()) return Status::Ok();
  return r.status();
}

Status Executor::Delete(const std::string& resource, const json& obj) {
  if (Status s = CheckMayWrite(); !s.ok()) return s;
  Status s = api_.Delete(domain::Resource(resource), ns_, Name(obj),
                         longhorn::StringAt(obj, {"metadata", "uid"}));
  // NotFound: already gone. Conflict on the uid precondition: a new object took the name.
  if (s.ok() || s.IsNotFound() || s.IsConflict()) return Status::Ok();
  return s;
}

Status Executor::Cascade(const Plan& plan) {
  for (const Child& child : plan.cascade) {
    if (!longhorn::IsDeleteCustomResourceOnly(child.object)) {
      const json label = {
          {"metadata",
           {{"labels", {{std::string(longhorn::kDeleteCustomResourceOnlyLabel), "true"}}}}}};
      if (Status s = Patch(child.resource, Name(child.object), label); !s.ok()) return s;
    }
    if (!longhorn::IsBeingDeleted(child.object)) {
      if (Status s = Delete(child.resource, child.object); !s.ok()) return s;
    }
  }
  return Status::Ok();
}

Result<json> Executor::CascadeChild(const Child& child, bool label) {
  const kube::ResourceRef ref = domain::Resource(child.resource);
  const std::string name = Name(child.object);
  json last = json::object();
  if (label && !longhorn::IsDeleteCustomResourceOnly(child.object)) {
    if (Status s = CheckMayWrite(); !s.ok()) return s;
    const json patch = {
        {"metadata",
         {{"labels", {{std::string(longhorn::kDeleteCustomResourceOnlyLabel), "true"}}}}}};
    auto r = api_.MergePatch(ref, ns_, name, patch);
    if (!r.ok()) {
      if (r.status().IsNotFound()) return json::object();
      return r.status();
    }
    last = std::move(r).value();
  }
  if (!longhorn::IsBeingDeleted(child.object)) {
    if (Status s = CheckMayWrite(); !s.ok()) return s;
    auto r = api_.DeleteReturningObject(ref, ns_, name,
                                        longhorn::StringAt(child.object, {"metadata", "uid"}));
    if (!r.ok()) {
      // NotFound: already gone. Conflict on the uid precondition: a new object took the name.
      if (r.status().IsNotFound() || r.status().IsConflict()) return json::object();
      return r.status();
    }
    last = std::move(r).value();
  }
  return last;
}

Result<json> Executor::CascadeChildUnchanged(
    const Child& child, const std::function<bool(const Child&)>& label_protects) {
  const kube::ResourceRef ref = domain::Resource(child.resource);
  const std::string name = Name(child.object);
  const std::string uid = longhorn::StringAt(child.object, {"metadata", "uid"});
  json current = child.object;
  for (int attempt = 0; attempt <= kConflictRetries; ++attempt) {
    json last = json::object();
    if (!longhorn::IsDeleteCustomResourceOnly(current) &&
        label_protects(Child{child.resource, current})) {
      if (Status s = CheckMayWrite(); !s.ok()) return s;
      const json patch = {
          {"metadata",
           {{"labels", {{std::string(longhorn::kDeleteCustomResourceOnlyLabel), "true"}}}}}};
      auto r = api_.MergePatch(ref, ns_, name, patch);
      if (!r.ok()) {
        if (r.status().IsNotFound()) return json::object();
        return r.status();
      }
      current = std::move(r).value();
      last = current;
    }
    if (longhorn::IsBeingDeleted(current)) return last;
    if (Status s = CheckMayWrite(); !s.ok()) return s;
    auto r = api_.DeleteUnchanged(ref, ns_, name, uid,
                                  longhorn::StringAt(current, {"metadata", "resourceVersion"}));
    if (r.ok()) return std::move(r).value();
    if (r.status().IsNotFound()) return json::object();
    if (!r.status().IsConflict()) return r.status();
    // Changed since `current` was read, or another object took the name: read it again.
    auto fresh = api_.Get(ref, ns_, name);
    if (!fresh.ok()) {
      if (fresh.status().IsNotFound()) return json::object();
      return fresh.status();
    }
    if (!uid.empty() && longhorn::StringAt(*fresh, {"metadata", "uid"}) != uid) {
      return json::object();
    }
    current = std::move(fresh).value();
  }
  return Status::Conflict("delete " + child.resource + " " + name + ": still changing after " +
                          std::to_string(kConflictRetries) + " fresh reads");
}

Result<Executor::Outcome> Executor::Release(const std::string& resource, const json& obj,
                                            const Replan& replan) {
  const kube::ResourceRef ref = domain::Resource(resource);
  json current = obj;
  for (int attempt = 0; attempt <= kConflictRetries; ++attempt) {
    if (Status s = CheckMayWrite(); !s.ok()) return s;
    const json patch = {
        {"metadata",
         {{"finalizers", FinalizersWithout(current, longhorn::kFinalizer)},
          {"resourceVersion", longhorn::StringAt(current, {"metadata", "resourceVersion"})}}}};
    auto r = api_.MergePatch(ref, ns_, Name(current), patch);
    if (r.ok()) return Outcome::kReleased;
    if (r.status().IsNotFound()) return Outcome::kAlreadyGone;
    if (!r.status().IsConflict()) return r.status();
    auto fresh = api_.Get(ref, ns_, Name(current));
    if (!fresh.ok()) {
      if (fresh.status().IsNotFound()) return Outcome::kAlreadyGone;
      return fresh.status();
    }
    if (!NeedsRelease(*fresh)) return Outcome::kAlreadyGone;  // someone else released it
    const Plan again = replan(*fresh);
    if (!again.release) {
      log::Info("release withdrawn after a fresh read",
                {{"resource", resource}, {"reason", again.held_because}});
      return Outcome::kHeld;
    }
    current = std::move(fresh).value();
  }
  return Status::Conflict("still conflicting after " + std::to_string(kConflictRetries) +
                          " fresh reads");
}

Status Executor::AddOwnerReference(const json& sb, const json& ref) {
  if (Status s = CheckMayWrite(); !s.ok()) return s;
  json owners = json::array();
  const json& meta = sb.value("metadata", json::object());
  if (meta.is_object() && meta.contains("ownerReferences") && meta["ownerReferences"].is_array()) {
    owners = meta["ownerReferences"];
  }
  owners.push_back(ref);
  const json patch = {
      {"metadata",
       {{"ownerReferences", owners},
        {"resourceVersion", longhorn::StringAt(sb, {"metadata", "resourceVersion"})}}}};
  auto r =
      api_.MergePatch(domain::Resource(longhorn::resource::kSystemBackups), ns_, Name(sb), patch);
  if (r.ok() || r.status().IsNotFound()) return Status::Ok();
  return r.status();
}

}  // namespace bg::processor
