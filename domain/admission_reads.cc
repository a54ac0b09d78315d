#include "domain/admission_reads.h"

#include <string>
#include <utility>

#include "common/log.h"

namespace bg::domain {

using nlohmann::json;

// The cause is at debug level only: KubeLookup already warns about API failures, rate-limited.
std::optional<json> AdmissionGet(kube::ResourceLookup& lookup, std::string_view resource,
                                 std::string_view ns, std::string_view name) {
  kube::GetResult got = lookup.Get(resource, ns, name);
  if (got.ok()) return std::move(got).value();
  log::Debug("admission lookup failed; answering not found", {{"resource", std::string(resource)},
                                                              {"name", std::string(name)},
                                                              {"error", got.status().message()}});
  return std::nullopt;
}

std::vector<json> AdmissionList(kube::ResourceLookup& lookup, std::string_view resource,
                                std::string_view ns, std::string_view label_selector) {
  kube::ListResult listed = lookup.List(resource, ns, label_selector);
  if (listed.ok()) return std::move(listed).value();
  log::Debug("admission lookup failed; answering none", {{"resource", std::string(resource)},
                                                         {"selector", std::string(label_selector)},
                                                         {"error", listed.status().message()}});
  return {};
}

}  // namespace bg::domain
