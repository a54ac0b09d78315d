#include "webhook/codec.h"

#include <algorithm>
#include <cctype>

#include "common/base64.h"

namespace bg::webhook {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool ParseOperation(const std::string& s, Operation* op) {
  if (s == "CREATE")
    *op = Operation::kCreate;
  else if (s == "UPDATE")
    *op = Operation::kUpdate;
  else if (s == "DELETE")
    *op = Operation::kDelete;
  else if (s == "CONNECT")
    *op = Operation::kConnect;
  else
    return false;
  return true;
}

// Reads an optional string field; a present field of another type is a shape error.
bool OptionalString(const json& obj, const char* key, std::string* out, std::string* error) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return true;
  if (!it->is_string()) {
    *error = std::string("request.") + key + " must be a string";
    return false;
  }
  *out = it->get<std::string>();
  return true;
}

DecodeError Fail(int status, std::string message, std::string uid = "",
                 std::string api_version = "admission.k8s.io/v1") {
  return DecodeError{status, std::move(message), std::move(uid), std::move(api_version)};
}

}  // namespace

bool IsJsonContentType(std::string_view content_type) {
  const std::string ct = Lower(content_type.substr(0, content_type.find(';')));
  std::string trimmed;
  for (char c : ct) {
    if (!std::isspace(static_cast<unsigned char>(c))) trimmed.push_back(c);
  }
  return trimmed == "application/json";
}

std::size_t NestingDepth(std::string_view body, std::size_t limit) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

std::variant<DecodedReview, DecodeError> DecodeReview(std::string_view body) {
  if (body.empty()) return Fail(400, "empty body: expected an AdmissionReview");
  if (body.size() > kMaxReviewBytes) {
    return Fail(413, "body of " + std::to_string(body.size()) + " bytes exceeds the limit of " +
                         std::to_string(kMaxReviewBytes) + " bytes");
  }
  if (NestingDepth(body, kMaxNestingDepth) > kMaxNestingDepth) {
    return Fail(400, "malformed AdmissionReview: JSON nested deeper than " +
                         std::to_string(kMaxNestingDepth) + " levels");
  }
  json review = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (review.is_discarded()) return Fail(400, "malformed JSON: the body is not a JSON document");
  if (!review.is_object())
    return Fail(400, "malformed AdmissionReview: the body must be a JSON object");

  const auto api_version_it = review.find("apiVersion");
  const auto kind_it = review.find("kind");
  if (api_version_it == review.end() || !api_version_it->is_string()) {
    return Fail(400,
                "missing apiVersion: expected admission.k8s.io/v1 or admission.k8s.io/v1beta1");
  }
  const std::string api_version = api_version_it->get<std::string>();
  if (api_version != "admission.k8s.io/v1" && api_version != "admission.k8s.io/v1beta1") {
    return Fail(400, "unsupported apiVersion \"" + api_version +
                         "\": expected admission.k8s.io/v1 or admission.k8s.io/v1beta1");
  }
  if (kind_it == review.end() || !kind_it->is_string() || *kind_it != "AdmissionReview") {
    return Fail(400, "wrong kind: expected AdmissionReview", "", api_version);
  }
  const auto request_it = review.find("request");
  if (request_it == review.end() || request_it->is_null()) {
    return Fail(400, "missing request: the AdmissionReview carries no request", "", api_version);
  }
  if (!request_it->is_object()) return Fail(400, "request must be an object", "", api_version);
  json& req = *request_it;  // the object is moved out below, not copied

  DecodedReview out;
  out.api_version = api_version;
  AdmissionRequest& r = out.request;
  std::string error;
  if (!OptionalString(req, "uid", &r.uid, &error)) return Fail(400, error, "", api_version);
  if (r.uid.empty()) return Fail(400, "missing request.uid", "", api_version);

  auto shape = [&](std::string message) {
    return Fail(400, std::move(message), r.uid, api_version);
  };

  const auto resource_it = req.find("resource");
  if (resource_it == req.end() || !resource_it->is_object()) {
    return shape("missing request.resource: expected {group, version, resource}");
  }
  if (!OptionalString(*resource_it, "group", &r.group, &error) ||
      !OptionalString(*resource_it, "version", &r.version, &error) ||
      !OptionalString(*resource_it, "resource", &r.resource, &error)) {
    return shape("request.resource: " + error.substr(std::string("request.").size()));
  }
  if (r.resource.empty()) return shape("missing request.resource.resource");
  if (const auto kind = req.find("kind"); kind != req.end() && kind->is_object()) {
    if (!OptionalString(*kind, "kind", &r.kind, &error)) return shape("request.kind: " + error);
  }
  if (!OptionalString(req, "subResource", &r.sub_resource, &error) ||
      !OptionalString(req, "name", &r.name, &error) ||
      !OptionalString(req, "namespace", &r.namespace_name, &error)) {
    return shape(error);
  }
  std::string operation;
  if (!OptionalString(req, "operation", &operation, &error)) return shape(error);
  if (!ParseOperation(operation, &r.operation)) {
    return shape("request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got \"" +
                 operation + "\"");
  }
  if (const auto dry = req.find("dryRun"); dry != req.end() && !dry->is_null()) {
    if (!dry->is_boolean()) return shape("request.dryRun must be a boolean");
    r.dry_run = dry->get<bool>();
  }
  for (const auto& [key, target] :
       {std::pair<const char*, json*>{"object", &r.object}, {"oldObject", &r.old_object}}) {
    const auto it = req.find(key);
    if (it == req.end() || it->is_null()) continue;
    if (!it->is_object()) return shape(std::string("request.") + key + " must be an object");
    const auto meta = it->find("metadata");
    if (meta != it->end() && !meta->is_object()) {
      return shape(std::string("request.") + key + ".metadata must be an object");
    }
    *target = std::move(*it);
  }
  if (r.operation != Operation::kDelete && r.object.is_null()) {
    return shape(std::string("request.object is required for ") + OperationName(r.operation));
  }
  return out;
}

std::string EncodeReview(const std::string& api_version, const std::string& uid,
                         const AdmissionResponse& response) {
  json resp = {{"uid", uid}, {"allowed", response.allowed}};
  if (!response.allowed || !response.message.empty()) {
    json status = {{"code", response.code}};
    if (!response.message.empty()) status["message"] = response.message;
    if (!response.reason.empty()) status["reason"] = response.reason;
    status["status"] = response.allowed ? "Success" : "Failure";
    resp["status"] = std::move(status);
  }
  if (!response.warnings.empty()) resp["warnings"] = response.warnings;
  if (response.allowed && response.patch.is_array() && !response.patch.empty()) {
    resp["patchType"] = "JSONPatch";
    resp["patch"] = Base64Encode(response.patch.dump());
  }
  const json review = {
      {"apiVersion", api_version}, {"kind", "AdmissionReview"}, {"response", resp}};
  return review.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace bg::webhook
