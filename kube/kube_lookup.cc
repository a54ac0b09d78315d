#include "kube/kube_lookup.h"

#include <utility>

#include "common/log.h"

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

std::string NamespacedCollection(std::string_view resource, std::string_view ns) {
  std::string path(kLonghornApiPrefix);
  if (!ns.empty()) path += "/namespaces/" + UrlEncode(ns);
  path += "/" + UrlEncode(resource);
  return path;
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

}  // namespace

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    const bool unreserved = (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') ||
                            (u >= '0' && u <= '9') || u == '-' || u == '.' || u == '_' || u == '~';
    if (unreserved) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    }
  }
  return out;
}

KubeLookup::KubeLookup(std::shared_ptr<ApiTransport> transport, KubeLookupOptions options)
    : transport_(std::move(transport)),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {}

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

std::optional<json> KubeLookup::Fetch(std::string_view verb, std::string_view resource,
                                      const std::string& path, bool* not_found) {
  *not_found = false;
  Result<HttpResponse> response = transport_->Request("GET", path, "", "");
  const std::string category = std::string(verb) + " " + std::string(resource) + ": ";
  if (!response.ok()) {
    WarnLimited(category + "unreachable", "kubernetes API unreachable; answering not found",
                {{"path", path}, {"error", response.status().message()}});
    return std::nullopt;
  }
  const HttpResponse& r = response.value();
  if (r.status == 404) {
    *not_found = true;
    return std::nullopt;
  }
  if (r.status != 200) {
    WarnLimited(category + std::to_string(r.status),
                "kubernetes API request failed; answering not found",
                {{"path", path}, {"status", r.status}, {"reason", ErrorReason(r.body)}});
    return std::nullopt;
  }
  json body;
  try {
    body = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  } catch (const json::exception&) {
    body = json(json::value_t::discarded);
  }
  if (!body.is_object()) {
    WarnLimited(category + "malformed",
                "kubernetes API answered malformed JSON; answering not found",
                {{"path", path}, {"body", r.body.substr(0, kBodyExcerptBytes)}});
    return std::nullopt;
  }
  return body;
}

std::optional<json> KubeLookup::Get(std::string_view resource, std::string_view ns,
                                    std::string_view name) {
  // SPEC: an empty or missing parent reference means the parent is gone.
  if (name.empty() || ns.empty() || resource.empty()) return std::nullopt;
  // "." and ".." would change the path's meaning; no object can have these names.
  if (name == "." || name == "..") return std::nullopt;

  const std::string key = CacheKey("get", resource, ns, name);
  if (std::optional<CacheEntry> hit = CacheGet(key)) {
    if (!hit->found) return std::nullopt;
    return std::move(hit->value);
  }
  const std::string path = NamespacedCollection(resource, ns) + "/" + UrlEncode(name);
  bool not_found = false;
  std::optional<json> object = Fetch("get", resource, path, &not_found);
  if (object) {
    CachePut(key, true, *object);
  } else if (not_found) {
    CachePut(key, false, nullptr);
  }
  return object;
}

std::vector<json> KubeLookup::List(std::string_view resource, std::string_view ns,
                                   std::string_view label_selector) {
  if (resource.empty()) return {};
  const std::string key = CacheKey("list", resource, ns, label_selector);
  auto to_vector = [](json items) {
    std::vector<json> out;
    out.reserve(items.size());
    for (json& item : items) out.push_back(std::move(item));
    return out;
  };
  if (std::optional<CacheEntry> hit = CacheGet(key)) return to_vector(std::move(hit->value));

  std::string path = NamespacedCollection(resource, ns);
  if (!label_selector.empty()) path += "?labelSelector=" + UrlEncode(label_selector);
  bool not_found = false;
  std::optional<json> list = Fetch("list", resource, path, &not_found);
  if (!list) {
    // 404: the CRD is not installed, so nothing of the kind exists.
    if (not_found) CachePut(key, true, json::array());
    return {};
  }
  auto items_it = list->find("items");
  if (items_it == list->end() || items_it->is_null()) {
    CachePut(key, true, json::array());
    return {};
  }
  if (!items_it->is_array()) {
    WarnLimited("list " + std::string(resource) + ": malformed",
                "kubernetes API list has no items array; answering empty", {{"path", path}});
    return {};
  }
  // List items carry no kind or apiVersion; restore them from the list's ("BackupList").
  std::string kind;
  if (auto k = list->find("kind"); k != list->end() && k->is_string()) {
    kind = k->get<std::string>();
    if (kind.size() > 4 && kind.ends_with("List")) kind.resize(kind.size() - 4);
  }
  json api_version = list->value("apiVersion", json());
  json items = json::array();
  for (json& item : *items_it) {
    if (!item.is_object()) continue;
    if (!kind.empty() && !item.contains("kind")) item["kind"] = kind;
    if (api_version.is_string() && !item.contains("apiVersion")) item["apiVersion"] = api_version;
    items.push_back(std::move(item));
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
