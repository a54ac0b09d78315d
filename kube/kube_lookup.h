// KubeLookup: the ResourceLookup (kube/lookup.h) backed by the Kubernetes API, with a short TTL
// cache in front of it.
//
// Every failure answers "not found" as the ResourceLookup contract requires: 404 (also a missing
// CRD), 403, 5xx, an unreachable server and a malformed body all give std::nullopt (Get) or an
// empty list (List). Failures are logged as warnings, at most one per kind of failure per
// KubeLookupOptions::warning_interval, with the number of suppressed repeats. Only real answers
// (200 and 404) are cached, so a failure is retried on the next call.
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
#include "kube/clock.h"
#include "kube/lookup.h"
#include "kube/transport.h"

namespace bg::kube {

// The API group and version of every resource that lookups address.
inline constexpr std::string_view kLonghornApiPrefix = "/apis/longhorn.io/v1beta2";

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
  // `transport` is shared so that other API users (the finalizer processor) can use the same
  // connections. It must not be null.
  explicit KubeLookup(std::shared_ptr<ApiTransport> transport, KubeLookupOptions options = {});

  KubeLookup(const KubeLookup&) = delete;
  KubeLookup& operator=(const KubeLookup&) = delete;

  // GET /apis/longhorn.io/v1beta2/namespaces/{ns}/{resource}/{name}. An empty name or namespace
  // answers nullopt without a request.
  std::optional<nlohmann::json> Get(std::string_view resource, std::string_view ns,
                                    std::string_view name) override;

  // GET .../namespaces/{ns}/{resource}?labelSelector={selector}; an empty `ns` lists all
  // namespaces. Items get the `kind` and `apiVersion` that list responses leave out.
  std::vector<nlohmann::json> List(std::string_view resource, std::string_view ns,
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
  // Sends a GET and sorts the outcome: a 200 body parsed as a JSON object, 404 (nullopt and
  // *not_found), or anything else (nullopt, logged).
  std::optional<nlohmann::json> Fetch(std::string_view verb, std::string_view resource,
                                      const std::string& path, bool* not_found);

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

// Percent-encodes everything but RFC 3986 unreserved characters, for a path segment or a query
// value.
std::string UrlEncode(std::string_view s);

}  // namespace bg::kube
