#include "kube/kube_lookup.h"

#include <utility>

#include "common/log.h"
#include "common/nonblocking.h"
#include "kube/rest_api.h"

namespace bg::kube {
namespace {

using nlohmann::json;

// Enough of an error body to see the API server's reason, not enough to flood the log.
constexpr size_t kBodyExcerptBytes = 300;

// Cache keys are length-prefixed so that no field value can imitate another key.
std::string CacheKey(std::string_view verb, std::string_view resource, std::string_view ns,
                     std::string_view name) {
  std::string key;
  for (std::string_view part : {verb, resource, ns, name}) {
    key += std::to_string(part.size());
    key += ':';
    key += part;
  }
  return key;
}

// The API server's explanation of an error: the Status object's message, else the body's start.
std::string ErrorReason(const std::string& body) {
  json status = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (status.is_object()) {
    auto message = status.find("message");
    if (message != status.end() && message->is_string()) return message->get<std::string>();
  }
  return body.substr(0, kBodyExcerptBytes);
}

// The client of a KubeLookup made over a bare transport (see kube_lookup.h).
std::shared_ptr<KubeApi> LookupApi(std::shared_ptr<ApiTransport> transport,
                                   const KubeLookupOptions& options) {
  RestKubeApiOptions api;
  api.qps = 0;
  api.list_page_size = 0;
  api.clock = options.clock;
  return std::make_shared<RestKubeApi>(std::move(transport), api);
}

}  // namespace

KubeLookup::KubeLookup(std::shared_ptr<KubeApi> api, std::shared_ptr<ApiTransport> transport,
                       KubeLookupOptions options)
    : api_(std::move(api)),
      transport_(std::move(transport)),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {}

KubeLookup::KubeLookup(const std::shared_ptr<ApiTransport>& transport, KubeLookupOptions options)
    : KubeLookup(LookupApi(transport, options), transport, options) {}

std::optional<KubeLookup::CacheEntry> KubeLookup::CacheGet(const std::string& key) {
  if (options_.cache_ttl.count() <= 0) return std::nullopt;
  std::lock_guard<std::mutex> lock(cache_mu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return std::nullopt;
  if (clock_->Now() >= it->second.expires) {
    cache_order_.erase(it->second.order);
    cache_.erase(it);
    return std::nullopt;
  }
  return it->second;
}

void KubeLookup::CachePut(const std::string& key, bool found, json value) {
  if (options_.cache_ttl.count() <= 0 || options_.max_cache_entries == 0) return;
  std::lock_guard<std::mutex> lock(cache_mu_);
  auto it = cache_.find(key);
  if (it != cache_.end()) {
    cache_order_.erase(it->second.order);
    cache_.erase(it);
  }
  while (cache_.size() >= options_.max_cache_entries) {
    cache_.erase(cache_order_.front());
    cache_order_.pop_front();
  }
  cache_order_.push_back(key);
  CacheEntry entry;
  entry.expires = clock_->Now() + options_.cache_ttl;
  entry.found = found;
  entry.value = std::move(value);
  entry.order = std::prev(cache_order_.end());
  cache_.emplace(key, std::move(entry));
}

void KubeLookup::WarnLimited(const std::string& category, std::string_view message, json fields) {
  const Clock::TimePoint now = clock_->Now();
  {
    std::lock_guard<std::mutex> lock(warn_mu_);
    WarningState& state = warnings_[category];
    if (now < state.next_allowed) {
      ++state.suppressed;
      return;
    }
    if (state.suppressed > 0) fields["suppressed_since_last"] = state.suppressed;
    state.suppressed = 0;
    state.next_allowed = now + options_.warning_interval;
  }
  log::Warn(message, fields);
}

Status KubeLookup::Failed(std::string_view verb, std::string_view resource, const Status& error) {
  const std::string category = std::string(verb) + " " + std::string(resource) + ": ";
  if (std::optional<HttpFailure> http = HttpFailureOf(error)) {
    WarnLimited(category + std::to_string(http->status), "kubernetes API request failed",
                {{"resource", resource}, {"status", http->status}, {"reason", http->reason}});
  } else {
    WarnLimited(category + "unreachable", "kubernetes API unreachable or answered garbage",
                {{"resource", resource}, {"error", error.message()}});
  }
  return error;
}

GetResult KubeLookup::Get(std::string_view resource, std::string_view ns, std::string_view name) {
  // SPEC: an empty or missing parent reference means the parent is gone.
  if (name.empty() || ns.empty() || resource.empty()) return std::nullopt;
  // "." and ".." would change the path's meaning; no object can have these names.
  if (name == "." || name == "..") return std::nullopt;

  const std::string key = CacheKey("get", resource, ns, name);
  if (std::optional<CacheEntry> hit = CacheGet(key)) {
    if (!hit->found) return std::nullopt;
    return std::move(hit->value);
  }
  ThrowIfMustNotBlock();  // a miss waits on the API: not on the listener's event thread
  Result<json> got = api_->Get(LonghornResource(resource, ""), std::string(ns), std::string(name));
  if (got.status().IsNotFound()) {
    CachePut(key, false, nullptr);
    return std::nullopt;
  }
  if (!got.ok()) return Failed("get", resource, got.status());
  CachePut(key, true, *got);
  return std::move(got).value();
}

ListResult KubeLookup::List(std::string_view resource, std::string_view ns,
                            std::string_view label_selector) {
  if (resource.empty()) return std::vector<json>();
  const std::string key = CacheKey("list", resource, ns, label_selector);
  auto to_vector = [](json items) {
    std::vector<json> out;
    out.reserve(items.size());
    for (json& item : items) out.push_back(std::move(item));
    return out;
  };
  if (std::optional<CacheEntry> hit = CacheGet(key)) return to_vector(std::move(hit->value));

  ThrowIfMustNotBlock();
  Result<json> list =
      api_->List(LonghornResource(resource, ""), std::string(ns), std::string(label_selector));
  json items = json::array();
  if (list.status().IsNotFound()) {
    // A 404 naming the collection: nothing of the kind exists.
    CachePut(key, true, items);
    return std::vector<json>();
  }
  if (!list.ok()) return Failed("list", resource, list.status());
  if (auto it = list->find("items"); it != list->end() && it->is_array()) {
    for (json& item : *it) {
      if (item.is_object()) items.push_back(std::move(item));
    }
  }
  CachePut(key, true, items);
  return to_vector(std::move(items));
}

bool KubeLookup::Ready() {
  if (ready_.load()) return true;
  std::unique_lock<std::mutex> lock(probe_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  if (ready_.load()) return true;
  const Clock::TimePoint now = clock_->Now();
  if (probed_ && now < next_probe_) return false;
  ThrowIfMustNotBlock();  // before the probe is counted: a thread that may wait makes it
  probed_ = true;
  next_probe_ = now + options_.ready_retry_interval;

  Result<HttpResponse> response = transport_->Request("GET", "/version", "", "");
  if (response.ok() && response->status == 200) {
    json version = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    std::string git_version = "unknown";
    if (version.is_object() && version.contains("gitVersion") &&
        version["gitVersion"].is_string()) {
      git_version = version["gitVersion"].get<std::string>();
    }
    log::Info("kubernetes API reachable", {{"version", git_version}});
    ready_.store(true);
    return true;
  }
  if (response.ok()) {
    WarnLimited("ready: " + std::to_string(response->status), "kubernetes API not ready",
                {{"status", response->status}, {"reason", ErrorReason(response->body)}});
  } else {
    WarnLimited("ready: unreachable", "kubernetes API unreachable",
                {{"error", response.status().message()}});
  }
  return false;
}

}  // namespace bg::kube
