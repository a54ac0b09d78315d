#include "webhook/registry.h"

#include <algorithm>
#include <cstdlib>

#include "common/log.h"

namespace bg::webhook {

namespace {
kube::ResourceLookup& NoCluster() {
  static kube::NoClusterLookup* const kNone = new kube::NoClusterLookup();  // never destroyed
  return *kNone;
}
}  // namespace

Registry::Registry(kube::ResourceLookup& lookup, const kube::Clock* clock)
    : lookup_(&lookup), clock_(clock != nullptr ? clock : kube::Clock::Real()) {}

Registry::Registry() : Registry(NoCluster()) {}

void Registry::Add(std::string_view group, std::string_view resource, Operation op,
                   Handler handler) {
  Key key{group, resource, op};
  auto [it, inserted] = handlers_.emplace(key, std::move(handler));
  if (!inserted) {
    // Two rules for one key is a programming error, caught at start-up.
    log::Error("duplicate admission handler",
               {{"group", group}, {"resource", resource}, {"operation", OperationName(op)}});
    std::abort();
  }
  order_.push_back(std::move(key));
}

void Registry::AddBypass(Bypass bypass) { bypasses_.push_back(std::move(bypass)); }

bool Registry::Has(std::string_view group, std::string_view resource, Operation op) const {
  return handlers_.count(Key{group, resource, op}) > 0;
}

std::vector<RegisteredRule> Registry::Rules() const {
  std::vector<RegisteredRule> rules;
  for (const Key& key : order_) {
    const std::string& group = std::get<0>(key);
    const std::string& resource = std::get<1>(key);
    auto same = [&](const RegisteredRule& r) { return r.group == group && r.resource == resource; };
    auto it = std::find_if(rules.begin(), rules.end(), same);
    if (it == rules.end()) it = rules.insert(rules.end(), RegisteredRule{group, resource, {}});
    it->operations.push_back(std::get<2>(key));
  }
  for (RegisteredRule& r : rules) std::sort(r.operations.begin(), r.operations.end());
  return rules;
}

AdmissionResponse Registry::Handle(const AdmissionRequest& request) const {
  for (const Bypass& bypass : bypasses_) {
    if (auto answer = bypass(request)) return *std::move(answer);
  }
  auto it = handlers_.find(Key{request.group, request.resource, request.operation});
  if (it == handlers_.end()) return Allowed();
  return it->second(HandlerEnv{*lookup_, *clock_}, request);
}

}  // namespace bg::webhook
