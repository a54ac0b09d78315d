#include "kube/informer.h"

#include <algorithm>
#include <set>
#include <sstream>
#include <thread>

#include "common/log.h"

namespace bg::kube {

using nlohmann::json;

namespace {
constexpr std::chrono::milliseconds kInitialBackoff{200};
constexpr std::chrono::milliseconds kMaxBackoff{30000};

std::string NameOf(const json& obj) {
  if (!obj.is_object() || !obj.contains("metadata") || !obj["metadata"].is_object()) return "";
  const json& name = obj["metadata"]["name"];
  return name.is_string() ? name.get<std::string>() : "";
}

bool BeingDeleted(const json& obj) {
  return obj.is_object() && obj.contains("metadata") && obj["metadata"].is_object() &&
         obj["metadata"].contains("deletionTimestamp") &&
         !obj["metadata"]["deletionTimestamp"].is_null();
}

// controller-runtime's default cache transform (cache.TransformStripManagedFields).
void StripManagedFields(json& obj) {
  if (obj.is_object() && obj.contains("metadata") && obj["metadata"].is_object()) {
    obj["metadata"].erase("managedFields");
  }
}

std::string VersionOf(const json& obj) {
  if (!obj.is_object() || !obj.contains("metadata") || !obj["metadata"].is_object()) return "";
  const json& rv = obj["metadata"].value("resourceVersion", json());
  return rv.is_string() ? rv.get<std::string>() : "";
}
}  // namespace

bool SleepUnlessStopped(std::chrono::milliseconds d, const std::atomic<bool>& stop) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!stop.load()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return true;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(until - now, std::chrono::milliseconds(50)));
  }
  return false;
}

bool MatchesSelector(const json& obj, const std::string& selector) {
  if (selector.empty()) return true;
  const json* labels = nullptr;
  if (obj.is_object() && obj.contains("metadata") && obj["metadata"].is_object() &&
      obj["metadata"].contains("labels") && obj["metadata"]["labels"].is_object()) {
    labels = &obj["metadata"]["labels"];
  }
  std::stringstream terms(selector);
  std::string term;
  while (std::getline(terms, term, ',')) {
    const auto eq = term.find('=');
    if (eq == std::string::npos || labels == nullptr) return false;
    auto it = labels->find(term.substr(0, eq));
    if (it == labels->end() || !it->is_string() || *it != term.substr(eq + 1)) return false;
  }
  return true;
}

Informer::Informer(KubeApi& api, ResourceRef resource, std::string ns, OnChange on_change)
    : api_(api),
      resource_(std::move(resource)),
      ns_(std::move(ns)),
      on_change_(std::move(on_change)) {}

std::optional<json> Informer::Get(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(name);
  if (it == objects_.end()) return std::nullopt;
  return it->second;
}

std::vector<json> Informer::List() const { return List(""); }

std::vector<json> Informer::List(const std::string& label_selector) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<json> out;
  for (const auto& [name, obj] : objects_) {
    if (MatchesSelector(obj, label_selector)) out.push_back(obj);
  }
  return out;
}

std::vector<json> Informer::ListDeleting() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<json> out;
  out.reserve(deleting_.size());
  for (const std::string& name : deleting_) out.push_back(objects_.at(name));
  return out;
}

std::vector<std::string> Informer::Names() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  out.reserve(objects_.size());
  for (const auto& [name, obj] : objects_) out.push_back(name);
  return out;
}

std::size_t Informer::Size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return objects_.size();
}

bool Informer::Relist(std::string* resource_version) {
  auto list = api_.List(resource_, ns_, "");
  // Any failure, a type the API server does not serve (yet) included, keeps the cache as it was
  // and unsynced: an empty cache would read as "every object is gone", and absence releases
  // finalizers.
  if (!list.ok()) {
    log::Warn("list failed",
              {{"resource", resource_.resource}, {"error", list.status().message()}});
    return false;
  }
  std::map<std::string, json> fresh;
  std::set<std::string> deleting;
  json body = std::move(list).value();
  json* items = body.is_object() && body.contains("items") ? &body["items"] : nullptr;
  if (items != nullptr && items->is_array()) {
    for (json& item : *items) {
      std::string name = NameOf(item);
      if (name.empty()) continue;
      StripManagedFields(item);
      if (BeingDeleted(item)) deleting.insert(name);
      fresh.emplace(std::move(name), std::move(item));
    }
  }
  // What changed across the gap: added, removed, or at another resourceVersion.
  std::vector<std::string> touched;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto old_it = objects_.begin();
    auto new_it = fresh.begin();
    while (old_it != objects_.end() || new_it != fresh.end()) {
      if (new_it == fresh.end() || (old_it != objects_.end() && old_it->first < new_it->first)) {
        touched.push_back(old_it->first);  // gone
        ++old_it;
      } else if (old_it == objects_.end() || new_it->first < old_it->first) {
        touched.push_back(new_it->first);  // new
        ++new_it;
      } else {
        const std::string old_version = VersionOf(old_it->second);
        if (old_version.empty() || old_version != VersionOf(new_it->second)) {
          touched.push_back(new_it->first);
        }
        ++old_it;
        ++new_it;
      }
    }
    objects_ = std::move(fresh);
    deleting_ = std::move(deleting);
  }
  *resource_version = VersionOf(body);
  relists_.fetch_add(1);
  synced_ = true;
  for (const std::string& name : touched) on_change_(name);
  return true;
}

void Informer::Apply(const WatchEvent& event, std::string* resource_version) {
  const std::string rv = VersionOf(event.object);
  if (!rv.empty()) *resource_version = rv;
  if (event.type == "BOOKMARK") return;
  const std::string name = NameOf(event.object);
  if (name.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (event.type == "DELETED") {
      objects_.erase(name);
      deleting_.erase(name);
    } else if (event.type == "ADDED" || event.type == "MODIFIED") {
      json& cached = objects_[name];
      cached = event.object;
      StripManagedFields(cached);
      if (BeingDeleted(cached)) {
        deleting_.insert(name);
      } else {
        deleting_.erase(name);
      }
    } else {
      return;
    }
  }
  on_change_(name);
}

void Informer::Run(const std::atomic<bool>& stop) {
  std::chrono::milliseconds backoff = kInitialBackoff;
  std::string resource_version;
  bool need_list = true;
  while (!stop.load()) {
    if (need_list) {
      if (!Relist(&resource_version)) {
        if (!SleepUnlessStopped(backoff, stop)) return;
        backoff = std::min(backoff * 2, kMaxBackoff);
        continue;
      }
      need_list = false;
      backoff = kInitialBackoff;
    }
    const Status st = api_.Watch(
        resource_, ns_, resource_version,
        [&](const WatchEvent& e) {
          Apply(e, &resource_version);
          return !stop.load();
        },
        stop);
    if (stop.load()) return;
    if (st.code() == Status::Code::kGone) {
      // Expired, or an event it cannot read: resuming from resource_version would fail the same
      // way.
      log::Info("watch cannot resume, relisting",
                {{"resource", resource_.resource}, {"reason", st.message()}});
      need_list = true;
      continue;
    }
    if (st.ok()) {
      backoff = kInitialBackoff;  // the server ended a healthy stream: resume at once
      continue;
    }
    if (st.IsNotFound()) need_list = true;
    log::Warn("watch failed", {{"resource", resource_.resource},
                               {"error", st.message()},
                               {"retry_in_ms", backoff.count()}});
    if (!SleepUnlessStopped(backoff, stop)) return;
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

}  // namespace bg::kube
