// AdmissionReview codec: the only place untrusted review bytes are parsed. Every failure becomes a
// DecodeError with the HTTP status to answer and a message that says what is wrong.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "webhook/admission.h"

namespace bg::webhook {

inline constexpr std::size_t kMaxReviewBytes =
    7 * 1024 * 1024;  // kube-apiserver's own cap is ~3 MiB objects; 7 MiB leaves room for old+new

// Deeper documents are refused before parsing: copying, diffing and printing a JSON value
// recurse once per level, and no Kubernetes object comes near this depth.
inline constexpr std::size_t kMaxNestingDepth = 512;

// The deepest nesting of arrays and objects in `body`, ignoring brackets inside strings. Stops
// counting once past `limit`.
std::size_t NestingDepth(std::string_view body, std::size_t limit);

struct DecodedReview {
  std::string api_version;  // "admission.k8s.io/v1" or "admission.k8s.io/v1beta1"
  AdmissionRequest request;
};

struct DecodeError {
  int http_status = 400;
  std::string message;
  std::string uid;  // echoed when the request carried one
  std::string api_version = "admission.k8s.io/v1";
};

// Checks the content type ("application/json", parameters allowed).
bool IsJsonContentType(std::string_view content_type);

std::variant<DecodedReview, DecodeError> DecodeReview(std::string_view body);

// Serialises the AdmissionReview answer in `api_version`, echoing `uid`.
std::string EncodeReview(const std::string& api_version, const std::string& uid,
                         const AdmissionResponse& response);

}  // namespace bg::webhook
