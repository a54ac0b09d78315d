// The uninstall's point-in-time copy of the engine's kinds (processor/uninstall.h): each pass
// lists every kind page by page into one of these, keeping only the compact copy of each object
// (CompactForRules), indexed by name and, on first use of a label key, by that label's value, so
// that every rule lookup is an index hit and a pass is linear in the number of objects.
//
// Memory: the snapshot is the one place that holds every object of a pass, so it holds each one
// once, as a MessagePack record of its compact copy (a few hundred bytes; the same object as a
// nlohmann::json tree takes several times that). Every tree it hands out (Get, List, Visit, At,
// ForEach) is made on demand and is the caller's own. A target's cascade is every child, so the
// uninstall plans it through Visit into a sink that keeps each child's IndexOf, not its tree, and
// makes each tree again (At) only when a writer takes that child.
//
// Thread-safety: filled by one thread; once filled, Get, List, At, ForEach and Count are safe
// from many threads at once (the label index is built under a lock on first use). Add and
// Replace are not safe while other threads read.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kube/lookup.h"

namespace bg::processor {

class UninstallSnapshot final : public kube::ResourceLookup {
 public:
  // Appends `obj` (a compact copy) to `resource`'s objects, as one record.
  void Add(const std::string& resource, const nlohmann::json& obj);

  // How many objects of `resource` it holds.
  size_t Count(const std::string& resource) const;

  // A tree of the `i`th object of `resource` (i < Count), in the order added.
  nlohmann::json At(const std::string& resource, size_t i) const;

  // Calls fn(i, object) for every object of `resource` in the order added, one tree at a time
  // (fn may keep it by moving it away).
  void ForEach(const std::string& resource,
               const std::function<void(size_t, nlohmann::json&)>& fn) const;

  // The object of `resource` named `name` (the namespace is the snapshot's own and not checked).
  kube::GetResult Get(std::string_view resource, std::string_view ns,
                      std::string_view name) override;

  // The objects of `resource` that match `selector`: equality terms ("k=v,k2=v2") through the
  // label index; anything else (set-based terms, !=) by kube::MatchesSelector over every object.
  kube::ListResult List(std::string_view resource, std::string_view ns,
                        std::string_view selector) override;

  // List one tree at a time: each match is made from its record just before fn sees it. Never
  // fails.
  Status Visit(std::string_view resource, std::string_view ns, std::string_view selector,
               const std::function<void(nlohmann::json&)>& fn) override;

  // The position (for At) of the object of `resource` named `name`, or nothing.
  std::optional<size_t> IndexOf(std::string_view resource, std::string_view name) const;

  bool Ready() override { return true; }

  // Takes `from`'s copy of `resource` in place of this one's.
  void Replace(const std::string& resource, UninstallSnapshot& from);

  // Objects held, over every kind.
  size_t size() const;

  // Bytes of the records held, over every kind (the indexes not counted).
  size_t RecordBytes() const;

 private:
  struct Kind {
    std::vector<std::string> records;  // MessagePack, one per object
    std::unordered_map<std::string, size_t> by_name;
    // label key -> value -> indexes into records; built on first use of the key
    std::map<std::string, std::unordered_map<std::string, std::vector<size_t>>, std::less<>>
        by_label;
  };

  const Kind* Find(std::string_view resource) const;
  // The indexes of the objects of `resource` whose label `key` is `value` (a copy: the index may
  // be extended by another thread meanwhile).
  std::vector<size_t> Candidates(std::string_view resource, std::string_view key,
                                 std::string_view value);

  std::map<std::string, Kind> kinds_;
  std::mutex index_mu_;
};

}  // namespace bg::processor
