// FakeKubeApi: an in-memory KubeApi for unit tests, with the API server's semantics that the
// processor depends on: resourceVersions, 409 on a stale version, finalizers holding deletion
// (deletionTimestamp set, object removed when the last finalizer goes), uid preconditions, and
// watches from a resourceVersion with 410 Gone for versions older than the retained window.
// Faults can be injected per verb. The real API server is exercised by the e2e tests.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "kube/api.h"
#include "kube/informer.h"

namespace bg::testing {

class FakeKubeApi final : public kube::KubeApi {
 public:
  using json = nlohmann::json;

  // Adds or replaces an object as-is (a fixture, not an API call); returns it with its version.
  json Seed(const kube::ResourceRef& r, json obj) {
    std::lock_guard<std::mutex> lock(mu_);
    const Key key = KeyOf(r, obj);
    obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
    if (!obj["metadata"].contains("uid")) obj["metadata"]["uid"] = "uid-" + std::get<2>(key);
    const bool existed = objects_.count(key) > 0;
    objects_[key] = obj;
    Emit(r.resource, existed ? "MODIFIED" : "ADDED", obj);
    return obj;
  }

  // Stores an object without a watch event: the API has it, informer caches do not (yet).
  void SeedSilently(const kube::ResourceRef& r, json obj) {
    std::lock_guard<std::mutex> lock(mu_);
    const Key key = KeyOf(r, obj);
    obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
    if (!obj["metadata"].contains("uid")) obj["metadata"]["uid"] = "uid-" + std::get<2>(key);
    objects_[key] = obj;
  }

  std::optional<json> Peek(const kube::ResourceRef& r, const std::string& ns,
                           const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find({r.resource, ns, name});
    if (it == objects_.end()) return std::nullopt;
    return it->second;
  }

  // The next `n` calls of `verb` ("get", "list", "create", "update", "patch", "delete", "watch")
  // fail with `status`.
  void FailNext(const std::string& verb, int n, Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    faults_[verb] = {n, std::move(status)};
  }
  // Adds an object and forgets the history in one step, so no watch can see the object as an
  // event: only a relist finds it.
  void SeedAndCompact(const kube::ResourceRef& r, json obj) {
    std::lock_guard<std::mutex> lock(mu_);
    const Key key = KeyOf(r, obj);
    obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
    if (!obj["metadata"].contains("uid")) obj["metadata"]["uid"] = "uid-" + std::get<2>(key);
    objects_[key] = obj;
    compacted_rv_ = rv_;
    events_.clear();
    cv_.notify_all();
  }

  // Forgets the event history, so a watch from an older version gets 410 Gone.
  void CompactHistory() {
    std::lock_guard<std::mutex> lock(mu_);
    compacted_rv_ = rv_;
    events_.clear();
  }
  // The next call of `verb` takes `delay` before it answers (a slow API server or etcd).
  void DelayNext(const std::string& verb, std::chrono::milliseconds delay) {
    std::lock_guard<std::mutex> lock(mu_);
    delays_[verb] = delay;
  }
  // The next DELETE of resource/name first changes the object with `change` (as another writer
  // would just before the DELETE arrives): a DELETE with a resourceVersion precondition from an
  // earlier read then answers Conflict.
  void ChangeBeforeNextDelete(const std::string& resource, const std::string& name,
                              std::function<void(json&)> change) {
    std::lock_guard<std::mutex> lock(mu_);
    before_delete_ = {resource + "/" + name, std::move(change)};
  }
  int calls(const std::string& verb) {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_[verb];
  }

  Result<json> Get(const kube::ResourceRef& r, const std::string& ns,
                   const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto f = Fault("get")) return *f;
    auto it = objects_.find({r.resource, ns, name});
    if (it == objects_.end()) return Status::NotFound(r.resource + " \"" + name + "\" not found");
    return it->second;
  }

  Result<json> List(const kube::ResourceRef& r, const std::string& ns,
                    const std::string& selector) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto f = Fault("list")) return *f;
    json items = json::array();
    for (const auto& [key, obj] : objects_) {
      if (std::get<0>(key) == r.resource && std::get<1>(key) == ns &&
          kube::MatchesSelector(obj, selector)) {
        items.push_back(obj);
      }
    }
    return json{{"items", items}, {"metadata", {{"resourceVersion", std::to_string(rv_)}}}};
  }

  // A SelfSubjectAccessReview of `verb` on `resource` (plural; any namespace and name) answers
  // allowed: false from now on. Every other review is allowed.
  void DenyAccess(const std::string& verb, const std::string& resource) {
    std::lock_guard<std::mutex> lock(mu_);
    denied_.insert(verb + " " + resource);
  }

  Result<json> Create(const kube::ResourceRef& r, const std::string& ns, const json& in) override {
    std::lock_guard<std::mutex> lock(mu_);
    // Access reviews are answered, never stored, and not "create" faults: those are for writes.
    if (r.resource == "selfsubjectaccessreviews") {
      ++calls_["access-review"];
      json review = in;
      const json a = in.value("spec", json::object()).value("resourceAttributes", json::object());
      const std::string key = a.value("verb", "") + " " + a.value("resource", "");
      review["status"] = {{"allowed", denied_.count(key) == 0}};
      return review;
    }
    if (auto f = Fault("create")) return *f;
    json obj = in;
    obj["metadata"]["namespace"] = ns;
    const Key key = KeyOf(r, obj);
    if (objects_.count(key)) return Status::Conflict("already exists");
    obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
    obj["metadata"]["uid"] = "uid-" + std::get<2>(key) + "-" + std::to_string(rv_);
    objects_[key] = obj;
    Emit(r.resource, "ADDED", obj);
    return obj;
  }

  Result<json> Update(const kube::ResourceRef& r, const std::string& ns, const json& in) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto f = Fault("update")) return *f;
    json obj = in;
    obj["metadata"]["namespace"] = ns;
    return Write(r, KeyOf(r, obj), obj, /*check_version=*/true);
  }

  Result<json> MergePatch(const kube::ResourceRef& r, const std::string& ns,
                          const std::string& name, const json& patch) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto f = Fault("patch")) return *f;
    auto it = objects_.find({r.resource, ns, name});
    if (it == objects_.end()) return Status::NotFound("not found");
    json obj = it->second;
    const bool check = patch.contains("metadata") && patch["metadata"].contains("resourceVersion");
    obj.merge_patch(patch);
    if (!check) obj["metadata"]["resourceVersion"] = it->second["metadata"]["resourceVersion"];
    return Write(r, it->first, obj, check);
  }

  Status Delete(const kube::ResourceRef& r, const std::string& ns, const std::string& name,
                const std::string& uid) override {
    Result<json> deleted = DeleteReturningObject(r, ns, name, uid);
    return deleted.ok() ? Status::Ok() : deleted.status();
  }

  // As the API server: the object as it is after the DELETE (being deleted, or as it was last).
  Result<json> DeleteReturningObject(const kube::ResourceRef& r, const std::string& ns,
                                     const std::string& name, const std::string& uid) override {
    return DeleteUnchanged(r, ns, name, uid, "");
  }

  Result<json> DeleteUnchanged(const kube::ResourceRef& r, const std::string& ns,
                               const std::string& name, const std::string& uid,
                               const std::string& resource_version) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto f = Fault("delete")) return *f;
    auto it = objects_.find({r.resource, ns, name});
    if (it == objects_.end()) return Status::NotFound("not found");
    if (before_delete_.second && before_delete_.first == r.resource + "/" + name) {
      // a concurrent writer acting between the caller's read and its DELETE
      auto change = std::move(before_delete_.second);
      before_delete_ = {};
      change(it->second);
      it->second["metadata"]["resourceVersion"] = std::to_string(++rv_);
      Emit(r.resource, "MODIFIED", it->second);
    }
    if (!uid.empty() && it->second["metadata"].value("uid", "") != uid) {
      return Status::Conflict("uid precondition failed");
    }
    if (!resource_version.empty() &&
        it->second["metadata"].value("resourceVersion", "") != resource_version) {
      return Status::Conflict("resourceVersion precondition failed");
    }
    json& obj = it->second;
    const json finalizers = obj["metadata"].value("finalizers", json::array());
    if (finalizers.empty()) {
      json gone = obj;
      objects_.erase(it);
      gone["metadata"]["resourceVersion"] = std::to_string(++rv_);
      Emit(r.resource, "DELETED", gone);
      return gone;
    }
    if (!obj["metadata"].contains("deletionTimestamp")) {
      obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
      obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
      Emit(r.resource, "MODIFIED", obj);
    }
    return obj;
  }

  Status Watch(const kube::ResourceRef& r, const std::string& ns, const std::string& from,
               const std::function<bool(const kube::WatchEvent&)>& on_event,
               const std::atomic<bool>& stop) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (auto f = Fault("watch")) return *f;
    long long cursor = from.empty() ? rv_ : std::stoll(from);
    if (cursor < compacted_rv_) return Status::Gone("too old resource version");
    const int generation = end_generation_;
    while (!stop.load() && end_generation_ == generation) {
      bool delivered = false;
      for (const Event& e : events_) {
        if (e.rv <= cursor || e.resource != r.resource) continue;
        if (e.object["metadata"].value("namespace", "") != ns) continue;
        cursor = e.rv;
        kube::WatchEvent ev{e.type, e.object};
        lock.unlock();
        const bool more = on_event(ev);
        lock.lock();
        delivered = true;
        if (!more) return Status::Ok();
        break;  // events_ may have changed while unlocked
      }
      if (cursor < compacted_rv_) return Status::Gone("too old resource version");
      if (!delivered) cv_.wait_for(lock, std::chrono::milliseconds(20));
    }
    return Status::Ok();
  }

  // Ends every open watch once, as a server closing its streams would.
  void EndWatches() {
    std::lock_guard<std::mutex> lock(mu_);
    ++end_generation_;
    cv_.notify_all();
  }

 private:
  using Key = std::tuple<std::string, std::string, std::string>;
  struct Event {
    long long rv;
    std::string resource;
    std::string type;
    json object;
  };

  static Key KeyOf(const kube::ResourceRef& r, const json& obj) {
    return {r.resource, obj["metadata"].value("namespace", ""), obj["metadata"].value("name", "")};
  }

  std::optional<Status> Fault(const std::string& verb) {
    ++calls_[verb];
    if (auto d = delays_.find(verb); d != delays_.end()) {
      const auto delay = d->second;
      delays_.erase(d);
      mu_.unlock();  // callers hold mu_; let others run while this call is slow
      std::this_thread::sleep_for(delay);
      mu_.lock();
    }
    auto it = faults_.find(verb);
    if (it == faults_.end() || it->second.first <= 0) return std::nullopt;
    --it->second.first;
    return it->second.second;
  }

  void Emit(const std::string& resource, const std::string& type, const json& obj) {
    events_.push_back({rv_, resource, type, obj});
    cv_.notify_all();
  }

  Result<json> Write(const kube::ResourceRef& r, const Key& key, json obj, bool check_version) {
    auto it = objects_.find(key);
    if (it == objects_.end()) return Status::NotFound("not found");
    if (check_version && obj["metadata"].value("resourceVersion", "") !=
                             it->second["metadata"].value("resourceVersion", "")) {
      return Status::Conflict(
          "the object has been modified; please apply your changes to the latest version");
    }
    // deletionTimestamp and uid cannot be changed by a client.
    obj["metadata"]["uid"] = it->second["metadata"]["uid"];
    if (it->second["metadata"].contains("deletionTimestamp")) {
      obj["metadata"]["deletionTimestamp"] = it->second["metadata"]["deletionTimestamp"];
    }
    obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
    const json finalizers = obj["metadata"].value("finalizers", json::array());
    if (obj["metadata"].contains("deletionTimestamp") &&
        (finalizers.is_null() || finalizers.empty())) {
      objects_.erase(it);
      Emit(r.resource, "DELETED", obj);
      return obj;
    }
    it->second = obj;
    Emit(r.resource, "MODIFIED", obj);
    return obj;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, json> objects_;
  std::deque<Event> events_;
  std::map<std::string, std::pair<int, Status>> faults_;
  std::map<std::string, int> calls_;
  std::map<std::string, std::chrono::milliseconds> delays_;
  std::pair<std::string, std::function<void(json&)>> before_delete_;
  std::set<std::string> denied_;  // "verb resource" of access reviews that are refused
  long long rv_ = 100;
  long long compacted_rv_ = 0;
  int end_generation_ = 0;
};

}  // namespace bg::testing
