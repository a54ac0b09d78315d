// Standard base64 encoding (RFC 4648, with padding), as Kubernetes uses for Secret data,
// caBundle and AdmissionReview patches. Decoding lives in kube/kubeconfig.h (DecodeBase64).
#pragma once

#include <string>
#include <string_view>

namespace bg {

std::string Base64Encode(std::string_view in);

}  // namespace bg
