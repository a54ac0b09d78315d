#include "processor/uninstall_snapshot.h"

#include <utility>

#include "common/longhorn.h"
#include "kube/informer.h"

namespace bg::processor {

using nlohmann::json;

namespace {

std::string Name(const json& obj) { return longhorn::StringAt(obj, {"metadata", "name"}); }

// Splits "k=v,k2=v2" into pairs; false for anything else (set-based terms, !=, ==, exists).
bool EqualityTerms(std::string_view selector,
                   std::vector<std::pair<std::string_view, std::string_view>>* terms) {
  while (!selector.empty()) {
    const size_t comma = selector.find(',');
    const std::string_view term = selector.substr(0, comma);
    const size_t eq = term.find('=');
    if (eq == std::string_view::npos || eq == 0 ||
        term.find('=', eq + 1) != std::string_view::npos || term[eq - 1] == '!') {
      return false;
    }
    terms->emplace_back(term.substr(0, eq), term.substr(eq + 1));
    if (comma == std::string_view::npos) break;
    selector.remove_prefix(comma + 1);
  }
  return true;
}

bool HasLabelValue(const json& obj, std::string_view key, std::string_view value) {
  const json* labels = nullptr;
  if (auto m = obj.find("metadata"); m != obj.end() && m->is_object()) {
    if (auto l = m->find("labels"); l != m->end() && l->is_object()) labels = &*l;
  }
  if (labels == nullptr) return false;
  auto it = labels->find(std::string(key));
  return it != labels->end() && it->is_string() && it->get_ref<const std::string&>() == value;
}

}  // namespace

namespace {

json Parse(const std::string& record) { return json::from_msgpack(record); }

}  // namespace

void UninstallSnapshot::Add(const std::string& resource, const json& obj) {
  Kind& kind = kinds_[resource];
  std::string record;
  json::to_msgpack(obj, record);
  record.shrink_to_fit();
  kind.by_name.emplace(Name(obj), kind.records.size());
  kind.records.push_back(std::move(record));
}

size_t UninstallSnapshot::Count(const std::string& resource) const {
  const Kind* kind = Find(resource);
  return kind == nullptr ? 0 : kind->records.size();
}

json UninstallSnapshot::At(const std::string& resource, size_t i) const {
  return Parse(Find(resource)->records.at(i));
}

void UninstallSnapshot::ForEach(const std::string& resource,
                                const std::function<void(size_t, json&)>& fn) const {
  const Kind* kind = Find(resource);
  if (kind == nullptr) return;
  for (size_t i = 0; i < kind->records.size(); ++i) {
    json obj = Parse(kind->records[i]);
    fn(i, obj);
  }
}

kube::GetResult UninstallSnapshot::Get(std::string_view resource, std::string_view,
                                       std::string_view name) {
  const Kind* kind = Find(resource);
  if (kind == nullptr) return std::nullopt;
  auto it = kind->by_name.find(std::string(name));
  if (it == kind->by_name.end()) return std::nullopt;
  return Parse(kind->records[it->second]);
}

kube::ListResult UninstallSnapshot::List(std::string_view resource, std::string_view ns,
                                         std::string_view selector) {
  std::vector<json> out;
  Visit(resource, ns, selector, [&](json& obj) { out.push_back(std::move(obj)); });
  return out;
}

Status UninstallSnapshot::Visit(std::string_view resource, std::string_view,
                                std::string_view selector, const std::function<void(json&)>& fn) {
  const Kind* kind = Find(resource);
  if (kind == nullptr) return Status::Ok();
  std::vector<std::pair<std::string_view, std::string_view>> terms;
  if (selector.empty() || !EqualityTerms(selector, &terms)) {
    const std::string sel(selector);
    for (const std::string& record : kind->records) {
      json obj = Parse(record);
      if (kube::MatchesSelector(obj, sel)) fn(obj);
    }
    return Status::Ok();
  }
  for (size_t i : Candidates(resource, terms.front().first, terms.front().second)) {
    json obj = Parse(kind->records[i]);
    bool match = true;
    for (size_t t = 1; t < terms.size() && match; ++t) {
      match = HasLabelValue(obj, terms[t].first, terms[t].second);
    }
    if (match) fn(obj);
  }
  return Status::Ok();
}

std::optional<size_t> UninstallSnapshot::IndexOf(std::string_view resource,
                                                 std::string_view name) const {
  const Kind* kind = Find(resource);
  if (kind == nullptr) return std::nullopt;
  auto it = kind->by_name.find(std::string(name));
  if (it == kind->by_name.end()) return std::nullopt;
  return it->second;
}

void UninstallSnapshot::Replace(const std::string& resource, UninstallSnapshot& from) {
  std::lock_guard<std::mutex> lock(index_mu_);
  kinds_[resource] = std::move(from.kinds_[resource]);
}

size_t UninstallSnapshot::size() const {
  size_t n = 0;
  for (const auto& [resource, kind] : kinds_) n += kind.records.size();
  return n;
}

size_t UninstallSnapshot::RecordBytes() const {
  size_t n = 0;
  for (const auto& [resource, kind] : kinds_) {
    for (const std::string& record : kind.records) n += record.capacity();
  }
  return n;
}

const UninstallSnapshot::Kind* UninstallSnapshot::Find(std::string_view resource) const {
  auto it = kinds_.find(std::string(resource));
  return it == kinds_.end() ? nullptr : &it->second;
}

std::vector<size_t> UninstallSnapshot::Candidates(std::string_view resource, std::string_view key,
                                                  std::string_view value) {
  std::lock_guard<std::mutex> lock(index_mu_);
  Kind& kind = kinds_.find(std::string(resource))->second;
  auto index = kind.by_label.find(key);
  if (index == kind.by_label.end()) {
    index = kind.by_label.emplace(std::string(key), decltype(index->second){}).first;
    for (size_t i = 0; i < kind.records.size(); ++i) {
      const json obj = Parse(kind.records[i]);
      const std::string v = longhorn::Label(obj, key);
      if (!v.empty() || longhorn::HasLabel(obj, key)) index->second[v].push_back(i);
    }
  }
  auto hit = index->second.find(std::string(value));
  return hit == index->second.end() ? std::vector<size_t>{} : hit->second;
}

}  // namespace bg::processor
