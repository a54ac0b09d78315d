#include "webhook/admission.h"

namespace bg::webhook {

const char* OperationName(Operation op) {
  switch (op) {
    case Operation::kCreate:
      return "CREATE";
    case Operation::kUpdate:
      return "UPDATE";
    case Operation::kDelete:
      return "DELETE";
    case Operation::kConnect:
      return "CONNECT";
  }
  return "UNKNOWN";
}

AdmissionResponse Allowed(std::string message) {
  AdmissionResponse r;
  r.message = std::move(message);
  return r;
}

AdmissionResponse AllowedWithWarning(std::string warning) {
  AdmissionResponse r;
  r.warnings.push_back(std::move(warning));
  return r;
}

AdmissionResponse Denied(int code, std::string message) {
  AdmissionResponse r;
  r.allowed = false;
  r.code = code;
  r.message = std::move(message);
  switch (code) {
    case 400:
      r.reason = "BadRequest";
      break;
    case 403:
      r.reason = "Forbidden";
      break;
    case 404:
      r.reason = "NotFound";
      break;
    case 409:
      r.reason = "Conflict";
      break;
    case 422:
      r.reason = "Invalid";
      break;
    default:
      break;
  }
  return r;
}

AdmissionResponse Errored(int code, std::string message) {
  AdmissionResponse r = Denied(code, std::move(message));
  if (code >= 500) r.reason = "InternalError";
  return r;
}

json MakePatch(const json& original, const json& modified) {
  // nlohmann::json::diff already has the properties the API server needs: a key absent from the
  // original is added whole, array growth is appended with "/-", and keys are escaped (~0, ~1).
  return json::diff(original, modified);
}

AdmissionResponse Patched(const json& original, const json& modified) {
  AdmissionResponse r;
  r.patch = MakePatch(original, modified);
  return r;
}

}  // namespace bg::webhook
