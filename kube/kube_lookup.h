// KubeLookup: the ResourceLookup (kube/lookup.h) that admission reads, a short TTL cache in front
// of a KubeApi (kube/api.h). The KubeApi builds the paths, stamps the kind and apiVersion that
// list items leave out, and maps the API's errors; this class only remembers answers.
//
// Answers: the object, not found (a 404 that names the object; a list of a kind the API answers
// 404 for is empty), or the KubeApi's error (403, 5xx, a 404 for a resource type not served, an
// unreachable server, a malformed body). Only found and not found are cached, so an error is
// retried on the next call; what an error means is the caller's to decide (admission reads it as
// NotFound: domain/admission_reads.h). Errors are logged as warnings, at most one per kind of
// failure per KubeLookupOptions::warning_interval, with the number of suppressed repeats.
//
// Thread-safety: Get, List and Ready may be called from many threads at once. Calls for the same
// key that miss the cache at the same moment each go to the API (no request coalescing).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "kube/api.h"
#include "kube/clock.h"
#include "kube/lookup.h"
#include "kube/transport.h"

namespace bg::kube {

struct KubeLookupOptions {
  // How long an answer, found or not found, is reused. Admission calls arrive in bursts for the
  // same parents (an uninstall deletes many Backups of one BackupVolume), while one second of
  // staleness is well inside what a webhook sees anyway from the API server's watch cache.
  // Zero disables the cache.
  std::chrono::milliseconds cache_ttl{1000};
  // Entries kept at most; the oldest is evicted first.
  size_t max_cache_entries = 1024;
  // Ready() probes the API at most this often until a probe succeeds.
  std::chrono::milliseconds ready_retry_interval{1000};
  // Repeats of the same kind of failure are logged at most this often.
  std::chrono::milliseconds warning_interval{30000};
  const Clock* clock = nullptr;  // null: Clock::Real(); must outlive the lookup
};

class KubeLookup final : public ResourceLookup {
 public:
  // Reads through `api`; `transport` answers Ready()'s GET /version only. Neither may be null.
  KubeLookup(std::shared_ptr<KubeApi> api, std::shared_ptr<ApiTransport> transport,
             KubeLookupOptions options = {});
  // Reads through a RestKubeApi of its own over `transport` (shared, so that other API users
  // use the same connections): no client-side rate limit and each list in one request, as an
  // admission request must be answered within the API server's few seconds.
  explicit KubeLookup(const std::shared_ptr<ApiTransport>& transport,
                      KubeLookupOptions options = {});

  KubeLookup(const KubeLookup&) = delete;
  KubeLookup& operator=(const KubeLookup&) = delete;

  // longhorn.io/v1beta2 `resource` named `name` in `ns`. An empty name, namespace or resource,
  // and the names "." and "..", are not found without a request.
  GetResult Get(std::string_view resource, std::string_view ns, std::string_view name) override;

  // longhorn.io/v1beta2 `resource` in `ns` (empty: all namespaces) matching `label_selector`.
  // Items that are not objects are dropped.
  ListResult List(std::string_view resource, std::string_view ns,
                  std::string_view label_selector) override;

  // True once a GET /version has succeeded; until then each call probes again, at most once per
  // ready_retry_interval (calls in between, and calls while another probe runs, answer false).
  // It latches: it says the cluster was reached once, not that it still is. `serve` decides
  // readiness with ApiHealth (kube/api_health.h) instead, which follows the API's current state.
  bool Ready() override;

 private:
  struct CacheEntry {
    Clock::TimePoint expires;
    bool found = false;
    nlohmann::json value;  // the object (Get) or the array of items (List)
    std::list<std::string>::iterator order;
  };
  struct WarningState {
    Clock::TimePoint next_allowed{};
    size_t suppressed = 0;
  };

  std::optional<CacheEntry> CacheGet(const std::string& key);
  void CachePut(const std::string& key, bool found, nlohmann::json value);
  void WarnLimited(const std::string& category, std::string_view message, nlohmann::json fields);
  // Logs `error` of `verb` on `resource` (rate-limited) and answers it.
  Status Failed(std::string_view verb, std::string_view resource, const Status& error);

  const std::shared_ptr<KubeApi> api_;
  const std::shared_ptr<ApiTransport> transport_;
  const KubeLookupOptions options_;
  const Clock* const clock_;

  std::mutex cache_mu_;
  std::unordered_map<std::string, CacheEntry> cache_;  // guarded by cache_mu_
  std::list<std::string> cache_order_;                 // guarded by cache_mu_; oldest first

  std::mutex warn_mu_;
  std::unordered_map<std::string, WarningState> warnings_;  // guarded by warn_mu_

  std::atomic<bool> ready_{false};
  std::mutex probe_mu_;            // held while probing
  bool probed_ = false;            // guarded by probe_mu_
  Clock::TimePoint next_probe_{};  // guarded by probe_mu_
};

}  // namespace bg::kube
