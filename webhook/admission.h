// The admission model handlers see. Handlers never see HTTP: the transport (server.cc) decodes
// an AdmissionReview into an AdmissionRequest, calls one handler, and encodes its
// AdmissionResponse.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace bg::webhook {

using nlohmann::json;

enum class Operation { kCreate, kUpdate, kDelete, kConnect };

const char* OperationName(Operation op);

struct AdmissionRequest {
  std::string uid;
  std::string group;     // request.resource.group
  std::string version;   // request.resource.version
  std::string resource;  // request.resource.resource (plural)
  std::string sub_resource;
  std::string kind;  // request.kind.kind
  std::string name;
  std::string namespace_name;
  Operation operation = Operation::kCreate;
  bool dry_run = false;
  json object;      // null when absent (DELETE)
  json old_object;  // null when absent (CREATE)
};

struct AdmissionResponse {
  bool allowed = true;
  int code = 200;  // status.code in the review; 200 for allowed answers
  std::string message;
  std::string reason;  // status.reason, e.g. "Forbidden"
  std::vector<std::string> warnings;
  // RFC 6902 operations; empty means no patch.
  json patch = json::array();
};

// Answer builders, in the spirit of controller-runtime's admission helpers.
AdmissionResponse Allowed(std::string message = "");
AdmissionResponse AllowedWithWarning(std::string warning);
AdmissionResponse Denied(int code, std::string message);
AdmissionResponse Errored(int code, std::string message);
// Allowed, with the minimal patch that turns `original` into `modified`.
AdmissionResponse Patched(const json& original, const json& modified);

// Computes the JSON Patch from `original` to `modified`. Arrays grow with "/-", absent fields are
// added whole and keys are escaped, so kube-apiserver can apply the result as is.
json MakePatch(const json& original, const json& modified);

}  // namespace bg::webhook
