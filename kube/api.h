// KubeApi: typed reads and writes of Kubernetes objects, and watches. It is the seam between the
// finalizer processor (and `uninstall`) and the API server: tests pass a fake, the binary passes
// RestKubeApi (kube/rest_api.h) over an ApiTransport.
//
// Errors map from HTTP: 404 NotFound, 409 Conflict, 410 Gone (watch too old), 403 PermissionDenied,
// 422/400 InvalidArgument, anything else and network failures Unavailable.
//
// Thread-safety: implementations are safe to call from many threads at once.
#pragma once

#include <atomic>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace bg::kube {

struct ResourceRef {
  std::string group;  // "" for the core group
  std::string version;
  std::string resource;  // plural
  std::string kind;
};

// longhorn.io/v1beta2 `plural` of `kind`. The client knows no Longhorn kinds: the table of them
// is domain/kinds.h (domain::Resource). An empty `kind` is restored from list responses.
ResourceRef LonghornResource(std::string_view plural, std::string_view kind);
// The Lease.
inline const ResourceRef kLeases{"coordination.k8s.io", "v1", "leases", "Lease"};

struct WatchEvent {
  std::string type;  // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
  nlohmann::json object;
};

class KubeApi {
 public:
  virtual ~KubeApi() = default;

  virtual Result<nlohmann::json> Get(const ResourceRef& r, const std::string& ns,
                                     const std::string& name) = 0;
  // The whole List object (items and metadata.resourceVersion). `label_selector` may be empty.
  virtual Result<nlohmann::json> List(const ResourceRef& r, const std::string& ns,
                                      const std::string& label_selector) = 0;
  virtual Result<nlohmann::json> Create(const ResourceRef& r, const std::string& ns,
                                        const nlohmann::json& obj) = 0;
  // PUT; obj carries metadata.resourceVersion for optimistic concurrency.
  virtual Result<nlohmann::json> Update(const ResourceRef& r, const std::string& ns,
                                        const nlohmann::json& obj) = 0;
  // application/merge-patch+json. Include metadata.resourceVersion in `patch` for optimistic
  // concurrency (a stale version answers Conflict).
  virtual Result<nlohmann::json> MergePatch(const ResourceRef& r, const std::string& ns,
                                            const std::string& name,
                                            const nlohmann::json& patch) = 0;
  // DELETE with background propagation; with `uid`, a precondition on it.
  virtual Status Delete(const ResourceRef& r, const std::string& ns, const std::string& name,
                        const std::string& uid = "") = 0;
  // Delete, answering the object as the API server returned it: for an object held by finalizers,
  // the copy now being deleted (deletionTimestamp and a new resourceVersion), so the caller can
  // apply its release rules without reading it again. An empty JSON object when the answer
  // carried none (a Status, or an implementation that does not return objects: the default).
  virtual Result<nlohmann::json> DeleteReturningObject(const ResourceRef& r, const std::string& ns,
                                                       const std::string& name,
                                                       const std::string& uid = "");
  // DeleteReturningObject with preconditions on the uid and on the resourceVersion (either may be
  // empty): Conflict when the object changed after it was read at `resource_version`, so a caller
  // that decided something on that copy decides again on a fresh one. The default reads the object
  // and compares the version before deleting (not atomic); RestKubeApi sends both preconditions.
  virtual Result<nlohmann::json> DeleteUnchanged(const ResourceRef& r, const std::string& ns,
                                                 const std::string& name, const std::string& uid,
                                                 const std::string& resource_version);
  // List, handing each page's items to `on_page` as soon as it is read, so that a caller keeping
  // only part of each object never holds the whole list. Items carry kind and apiVersion as in
  // List. A continue token that expires mid-way is Gone here (pages already handed over no longer
  // form one snapshot: the caller starts again). The default lists at once and hands one page.
  using PageFn = std::function<void(std::vector<nlohmann::json>& items)>;
  virtual Status ListPages(const ResourceRef& r, const std::string& ns,
                           const std::string& label_selector, const PageFn& on_page);
  // Streams events from `resource_version` (allowWatchBookmarks=true) until the server ends the
  // stream (Ok), `on_event` returns false (Ok), `stop` becomes true (Ok), or an error. A 410
  // answer, an ERROR event with code 410, or an event that cannot be read (malformed, too
  // large) returns Gone: the stream cannot be resumed from the last version seen, list again.
  virtual Status Watch(const ResourceRef& r, const std::string& ns,
                       const std::string& resource_version,
                       const std::function<bool(const WatchEvent&)>& on_event,
                       const std::atomic<bool>& stop) = 0;
};

}  // namespace bg::kube
