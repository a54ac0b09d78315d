#include "domain/confirmation.h"

#include "common/longhorn.h"
#include "domain/admission_reads.h"

namespace bg::domain {

std::optional<bool> ParseGoBool(std::string_view text) {
  for (std::string_view yes : {"1", "t", "T", "TRUE", "true", "True"}) {
    if (text == yes) return true;
  }
  for (std::string_view no : {"0", "f", "F", "FALSE", "false", "False"}) {
    if (text == no) return false;
  }
  return std::nullopt;
}

bool ConfirmationFlagTrue(const nlohmann::json& setting) {
  return ParseGoBool(longhorn::StringAt(setting, {"value"})).value_or(false);
}

Result<bool> ConfirmationFlagSet(kube::ResourceLookup& lookup, std::string_view ns) {
  kube::GetResult setting =
      lookup.Get(longhorn::resource::kSettings, ns, longhorn::kDeletingConfirmationFlag);
  if (!setting.ok()) return setting.status();
  return setting->has_value() && ConfirmationFlagTrue(**setting);
}

bool AdmissionConfirmationFlagSet(kube::ResourceLookup& lookup, std::string_view ns) {
  std::optional<nlohmann::json> setting =
      AdmissionGet(lookup, longhorn::resource::kSettings, ns, longhorn::kDeletingConfirmationFlag);
  return setting && ConfirmationFlagTrue(*setting);
}

}  // namespace bg::domain
