// Registry: maps (group, resource, operation) to the one handler that answers it.
// Adding a rule for a new resource is one handler file plus one Register() line.
//
// Thread-safety: build the registry fully before the server starts; afterwards it is read-only and
// Handle() may be called from many threads at once.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "webhook/admission.h"

namespace bg::webhook {

using Handler = std::function<AdmissionResponse(const AdmissionRequest&)>;
// A bypass answers a request before any handler does when it applies (returns a value).
using Bypass = std::function<std::optional<AdmissionResponse>(const AdmissionRequest&)>;

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  Registry(Registry&&) = default;
  Registry& operator=(Registry&&) = default;

  void Register(std::string_view group, std::string_view resource, Operation op, Handler handler);
  void AddBypass(Bypass bypass);

  bool Has(std::string_view group, std::string_view resource, Operation op) const;

  // Bypasses first, then the registered handler; a request nobody handles is allowed unchanged.
  AdmissionResponse Handle(const AdmissionRequest& request) const;

 private:
  using Key = std::tuple<std::string, std::string, Operation>;
  std::map<Key, Handler> handlers_;
  std::vector<Bypass> bypasses_;
};

}  // namespace bg::webhook
