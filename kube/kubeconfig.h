// Where the Kubernetes API is and how to authenticate to it: read from a kubeconfig file (what
// kubectl uses) or from the pod's service account (in-cluster).
//
// Kubeconfig files are untrusted input: every malformed or unsupported part is an
// InvalidArgument error that names the file, the context/cluster/user and the field.
//
// Thread-safety: the functions are safe to call from any thread; ClusterConfig is a plain value.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bg::kube {

struct ClusterConfig {
  std::string host;  // DNS name or IP address; an IPv6 address without brackets
  int port = 443;
  std::string base_path;  // path prefix of the server URL, "" or like "/k8s/clusters/c-1"

  // Trusted CA certificates (PEM, one or more). When set, the server must chain to one of these
  // and to nothing else; when empty the system trust store is used.
  std::string ca_pem;
  bool insecure_skip_tls_verify = false;

  // Client certificate authentication (PEM). The certificate may be followed by intermediates.
  std::string client_cert_pem;
  std::string client_key_pem;

  // Bearer token authentication. A token file (bound service-account tokens rotate) is re-read
  // periodically and wins over the static token whenever it can be read.
  std::string bearer_token;
  std::string bearer_token_file;

  // The context's namespace, or the service account's; "" when unknown.
  std::string default_namespace;

  // Where this came from, for logs: "kubeconfig /path (context kind-kind)" or "in-cluster".
  std::string source;
};

// The service account mount of a pod.
inline constexpr std::string_view kServiceAccountDir =
    "/var/run/secrets/kubernetes.io/serviceaccount";

// Real kubeconfigs are a few KiB; anything this large is not one.
inline constexpr size_t kMaxKubeconfigBytes = size_t{4} * 1024 * 1024;

// Loads the kubeconfig at `path` and resolves `context` (default: its current-context) to a
// cluster and a user. Supported: cluster `server`, `certificate-authority(-data)`,
// `insecure-skip-tls-verify`; user `client-certificate(-data)`, `client-key(-data)`, `token`,
// `tokenFile`. Relative file paths are resolved against the kubeconfig's directory, as kubectl
// does. `*-data` fields win over their file twins. Unsupported and refused: `exec` and
// `auth-provider` plugins, basic auth, `tls-server-name`, `proxy-url`, plain http servers.
Result<ClusterConfig> LoadKubeconfig(const std::string& path, std::string_view context = "");

// LoadKubeconfig on text already read; `base_dir` resolves relative paths, `source` names the
// text in errors.
Result<ClusterConfig> ParseKubeconfig(std::string_view text, const std::string& base_dir,
                                      std::string_view context = "",
                                      std::string_view source = "kubeconfig");

// The config of a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT from the environment,
// `token`, `ca.crt` and (optional) `namespace` from `service_account_dir`.
Result<ClusterConfig> InClusterConfig(
    const std::string& service_account_dir = std::string(kServiceAccountDir));

// Splits an API server URL ("https://host", "https://10.0.0.1:6443", "https://[::1]:6443/prefix";
// a URL without a scheme is taken as https) into host, port and base_path of `config`.
Status ParseServerUrl(std::string_view url, ClusterConfig* config);

// Decodes standard base64; blanks and line breaks are skipped, padding is optional.
Result<std::string> DecodeBase64(std::string_view text);

}  // namespace bg::kube
