// Informer: a cache of one kind in one namespace, kept current by list-then-watch.
//  - Lists, then watches from the list's resourceVersion with bookmarks.
//  - A 410 Gone (HTTP status or ERROR event), or an event the watch cannot read (malformed, too
//    large), triggers a relist: resuming from the last version would end the same way for ever.
//  - A stream the server closes is resumed from the last resourceVersion; errors back off
//    exponentially (up to 30 s) before the next attempt.
//  - Every add, update and delete calls `on_change(name)`; after a relist, every name that
//    appeared, disappeared or changed (resourceVersion) across the gap is reported, and only
//    those, so a relist of a large cache costs work in proportion to what changed.
//  - Objects are cached without metadata.managedFields (as controller-runtime's default cache
//    transform does): nothing here reads them, and they are often most of an object's bytes.
//  - Objects being deleted (metadata.deletionTimestamp) are indexed, so that what concerns only
//    them (metrics, re-queues) does not copy the whole cache.
//
// Thread-safety: Run() is called once, on its own thread. Get/List/Synced may be called from any
// thread. on_change is called on the Run() thread without the cache lock held.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kube/api.h"

namespace bg::kube {

class Informer {
 public:
  using OnChange = std::function<void(const std::string& name)>;

  Informer(KubeApi& api, ResourceRef resource, std::string ns, OnChange on_change);
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  void Run(const std::atomic<bool>& stop);

  bool Synced() const { return synced_.load(); }
  const ResourceRef& resource() const { return resource_; }
  std::optional<nlohmann::json> Get(const std::string& name) const;
  std::vector<nlohmann::json> List() const;
  // "k=v,k2=v2" equality selectors only.
  std::vector<nlohmann::json> List(const std::string& label_selector) const;
  // The objects that carry a deletionTimestamp, without copying the others.
  std::vector<nlohmann::json> ListDeleting() const;
  // Every cached name, without copying objects.
  std::vector<std::string> Names() const;
  std::size_t Size() const;
  // Counts of list and watch (re)starts, for tests and logs.
  int relists() const { return relists_.load(); }

 private:
  bool Relist(std::string* resource_version);
  void Apply(const WatchEvent& event, std::string* resource_version);

  KubeApi& api_;
  const ResourceRef resource_;
  const std::string ns_;
  const OnChange on_change_;

  mutable std::mutex mu_;
  std::map<std::string, nlohmann::json> objects_;  // guarded by mu_
  std::set<std::string> deleting_;                 // names in objects_ being deleted; mu_
  std::atomic<bool> synced_{false};
  std::atomic<int> relists_{0};
};

// Sleeps up to `d`, returning early (false) when `stop` turns true.
bool SleepUnlessStopped(std::chrono::milliseconds d, const std::atomic<bool>& stop);

// True when `obj`'s labels match every "k=v" term of `selector` (empty matches all).
bool MatchesSelector(const nlohmann::json& obj, const std::string& selector);

}  // namespace bg::kube
