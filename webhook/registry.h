// Registry: maps (group, resource, operation) to the one handler that answers it.
// Adding a rule for a new resource is one handler file plus one Register() line: the registry
// hands each handler what it needs (HandlerEnv: the cluster lookup and the clock), so the
// registration line names only the handler.
//
// Thread-safety: build the registry fully before the server starts; afterwards it is read-only and
// Handle() may be called from many threads at once.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kube/clock.h"
#include "kube/lookup.h"
#include "webhook/admission.h"

namespace bg::webhook {

// What a handler may read besides the request. Both outlive the registry.
struct HandlerEnv {
  kube::ResourceLookup& lookup;
  const kube::Clock& clock;
};

using Handler = std::function<AdmissionResponse(const HandlerEnv&, const AdmissionRequest&)>;
// A bypass answers a request before any handler does when it applies (returns a value).
using Bypass = std::function<std::optional<AdmissionResponse>(const AdmissionRequest&)>;

// One rule as a webhook configuration states it: the operations of one resource that the
// registry answers, in registration order (what `backup-guard manifests` prints).
struct RegisteredRule {
  std::string group;
  std::string resource;
  std::vector<Operation> operations;  // in Operation's order
};

class Registry {
 public:
  // Handlers read `lookup` and `clock`, which must outlive the registry; null clock: the real one.
  explicit Registry(kube::ResourceLookup& lookup, const kube::Clock* clock = nullptr);
  // A registry whose handlers see no cluster (kube::NoClusterLookup) and the real clock.
  Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  Registry(Registry&&) = default;
  Registry& operator=(Registry&&) = default;

  // `handler` is any of: AdmissionResponse(const AdmissionRequest&),
  // AdmissionResponse(kube::ResourceLookup&, const AdmissionRequest&) or
  // AdmissionResponse(const HandlerEnv&, const AdmissionRequest&).
  template <typename F>
  void Register(std::string_view group, std::string_view resource, Operation op, F handler) {
    if constexpr (std::is_invocable_r_v<AdmissionResponse, F&, const AdmissionRequest&>) {
      Add(group, resource, op,
          [h = std::move(handler)](const HandlerEnv&, const AdmissionRequest& r) { return h(r); });
    } else if constexpr (std::is_invocable_r_v<AdmissionResponse, F&, kube::ResourceLookup&,
                                               const AdmissionRequest&>) {
      Add(group, resource, op,
          [h = std::move(handler)](const HandlerEnv& env, const AdmissionRequest& r) {
            return h(env.lookup, r);
          });
    } else {
      Add(group, resource, op, Handler(std::move(handler)));
    }
  }
  void AddBypass(Bypass bypass);

  bool Has(std::string_view group, std::string_view resource, Operation op) const;

  // The registered (group, resource) pairs with their operations, in registration order.
  std::vector<RegisteredRule> Rules() const;

  // Bypasses first, then the registered handler; a request nobody handles is allowed unchanged.
  AdmissionResponse Handle(const AdmissionRequest& request) const;

 private:
  using Key = std::tuple<std::string, std::string, Operation>;
  void Add(std::string_view group, std::string_view resource, Operation op, Handler handler);

  kube::ResourceLookup* lookup_;
  const kube::Clock* clock_;
  std::map<Key, Handler> handlers_;
  std::vector<Key> order_;  // registration order
  std::vector<Bypass> bypasses_;
};

}  // namespace bg::webhook
