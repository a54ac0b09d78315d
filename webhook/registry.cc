#include "webhook/registry.h"

#include <cstdlib>

#include "common/log.h"

namespace bg::webhook {

void Registry::Register(std::string_view group, std::string_view resource, Operation op,
                        Handler handler) {
  auto [it, inserted] = handlers_.emplace(Key{group, resource, op}, std::move(handler));
  if (!inserted) {
    // Two rules for one key is a programming error, caught at start-up.
    log::Error("duplicate admission handler",
               {{"group", group}, {"resource", resource}, {"operation", OperationName(op)}});
    std::abort();
  }
}

void Registry::AddBypass(Bypass bypass) { bypasses_.push_back(std::move(bypass)); }

bool Registry::Has(std::string_view group, std::string_view resource, Operation op) const {
  return handlers_.count(Key{group, resource, op}) > 0;
}

AdmissionResponse Registry::Handle(const AdmissionRequest& request) const {
  for (const Bypass& bypass : bypasses_) {
    if (auto answer = bypass(request)) return *std::move(answer);
  }
  auto it = handlers_.find(Key{request.group, request.resource, request.operation});
  if (it == handlers_.end()) return Allowed();
  return it->second(request);
}

}  // namespace bg::webhook
