// Where the Kubernetes API is and how to authenticate to it: read from kubeconfig files (what
// kubectl uses, parsed with yaml-cpp and merged as kubectl merges them) or from the pod's service
// account (in-cluster).
//
// Kubeconfig files are untrusted input: every malformed or unsupported part is an
// InvalidArgument error that names the file and the field by its path, like
// "kubeconfig /root/.kube/config: contexts[1].context.cluster: must be a string".
//
// Thread-safety: the functions are safe to call from any thread; ClusterConfig is a plain value.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace bg::kube {

// When an exec credential plugin may talk to the user (kubectl's `interactiveMode`).
enum class ExecInteractiveMode {
  kNever,        // never: the plugin gets no standard input
  kIfAvailable,  // when our standard input is a terminal
  kAlways,       // always; an error when standard input is not a terminal
};

// A user's `exec` entry: a command that prints an ExecCredential (client.authentication.k8s.io
// v1 or v1beta1) with a bearer token. See kube/exec_credential.h for how it is run.
struct ExecConfig {
  std::string api_version;  // "client.authentication.k8s.io/v1" or ".../v1beta1"
  std::string command;      // relative paths with a '/' are resolved against the kubeconfig's dir
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;  // added to our own environment
  ExecInteractiveMode interactive_mode = ExecInteractiveMode::kIfAvailable;
  bool provide_cluster_info = false;  // the cluster goes into KUBERNETES_EXEC_INFO
  std::string install_hint;           // shown when the command cannot be found
  std::string where;                  // "kubeconfig /path: users[0].user.exec", for errors
};

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

  // A credential plugin that supplies the bearer token; only set when neither `token` nor
  // `tokenFile` is (as in kubectl, a static token wins over the plugin).
  std::optional<ExecConfig> exec;

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
// `tokenFile`, `exec`. Relative file paths are resolved against the directory of the file that
// holds the entry, as kubectl does. `*-data` fields win over their file twins. Unsupported and
// refused: `auth-provider` plugins, basic auth, `tls-server-name`, `proxy-url`, plain http.
Result<ClusterConfig> LoadKubeconfig(const std::string& path, std::string_view context = "");

// Loads several kubeconfig files and merges them as kubectl merges $KUBECONFIG: for each named
// cluster, user and context the first file that defines the name wins, and so does the first
// file that sets current-context. Missing files are skipped (kubectl does the same); when none of
// them exists the answer is NotFound. Empty paths and repeats are ignored.
Result<ClusterConfig> LoadMergedKubeconfig(const std::vector<std::string>& paths,
                                           std::string_view context = "");

// LoadKubeconfig on text already read; `base_dir` resolves relative paths, `source` names the
// text in errors.
Result<ClusterConfig> ParseKubeconfig(std::string_view text, const std::string& base_dir,
                                      std::string_view context = "",
                                      std::string_view source = "kubeconfig");

// Splits a $KUBECONFIG value into its files (':'-separated, as on Linux).
std::vector<std::string> SplitKubeconfigList(std::string_view value);

// Where a command finds its cluster. The precedence is controller-runtime's (config.GetConfig),
// which is client-go's loading rules plus in-cluster before the home directory:
//   1. `explicit_path` (--kubeconfig): that file alone; $KUBECONFIG is ignored.
//   2. `kubeconfig_env` ($KUBECONFIG) when set and not empty: its files merged.
//   3. in-cluster (KUBERNETES_SERVICE_HOST/PORT set), unless a context was asked for.
//   4. `home`/.kube/config when it exists.
// Nothing found: NotFound. `context` (--context) picks the context in 1, 2 and 4.
struct KubeconfigLoadingRules {
  std::string explicit_path;
  std::string kubeconfig_env;
  std::string home;
  std::string context;
  std::string service_account_dir = std::string(kServiceAccountDir);
};

// The rules for `explicit_path` and `context` with $KUBECONFIG and $HOME from the environment.
KubeconfigLoadingRules LoadingRulesFromEnvironment(std::string explicit_path, std::string context);

Result<ClusterConfig> LoadClusterConfig(const KubeconfigLoadingRules& rules);

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
