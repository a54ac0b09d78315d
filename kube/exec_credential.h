// Exec credential plugins (kubeconfig `users[].user.exec`), run as kubectl runs them:
//  - the command gets its `args`, our environment plus the entry's `env`, and
//    KUBERNETES_EXEC_INFO: an ExecCredential of the entry's apiVersion whose spec says whether the
//    plugin may talk to the user (`interactive`) and, with provideClusterInfo, the cluster;
//  - `interactiveMode`: Never gives the plugin no standard input; IfAvailable passes ours on when
//    it is a terminal; Always does too, and is an error when it is not a terminal;
//  - its standard error goes to ours (plugins print prompts and hints there); its standard output
//    must be an ExecCredential of the same apiVersion with `status.token`;
//  - the token is kept until `status.expirationTimestamp` (for ever without one), and dropped when
//    the API server answers 401 to it, so the next request runs the plugin again.
// Client certificates from a plugin (`status.clientCertificateData`) are not supported: the
// answer is an error that says so.
//
// Thread-safety: ExecCredentialSource may be used from many threads; one plugin runs at a time
// and the others wait for its answer.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "kube/clock.h"
#include "kube/kubeconfig.h"

namespace bg::kube {

// A plugin that has not finished after this long is stopped (SIGKILL); real ones answer in a
// second or two. An interactive plugin waits for a person (a browser login), so it gets longer.
inline constexpr std::chrono::seconds kExecPluginTimeout{60};
inline constexpr std::chrono::seconds kInteractiveExecPluginTimeout{600};

// What a plugin answered.
struct ExecCredential {
  std::string token;
  // When the token stops being valid; nullopt: until the API server refuses it.
  std::optional<std::chrono::system_clock::time_point> expiry;
};

// The KUBERNETES_EXEC_INFO value for `exec` talking to `cluster`.
std::string ExecInfoJson(const ExecConfig& exec, const ClusterConfig& cluster, bool interactive);

// Checks a plugin's standard output against the apiVersion it was configured with.
Result<ExecCredential> ParseExecCredential(std::string_view output, std::string_view api_version);

// Parses an RFC 3339 time ("2026-12-04T10:30:00Z", "2026-12-04T10:30:00.5+01:00").
Result<std::chrono::system_clock::time_point> ParseRfc3339(std::string_view text);

// Whether the plugin may talk to the user: from `mode` and whether our standard input is a
// terminal. Always without a terminal is an error.
Result<bool> ExecInteractive(ExecInteractiveMode mode, bool stdin_is_terminal);

// Runs `exec` once with `exec_info` in KUBERNETES_EXEC_INFO and returns its standard output.
// Errors (InvalidArgument when the command cannot be started, Unavailable when it fails or times
// out) name the command and, when it cannot be found, repeat the kubeconfig's installHint.
Result<std::string> RunExecPlugin(const ExecConfig& exec, const std::string& exec_info,
                                  bool interactive, std::chrono::milliseconds timeout);

class ExecCredentialSource {
 public:
  // The seam for tests: runs the plugin and returns its standard output.
  using Runner = std::function<Result<std::string>(const ExecConfig& exec,
                                                   const std::string& exec_info, bool interactive)>;

  // `clock` must outlive this object; null means Clock::Real(). A null `runner` runs the command
  // (RunExecPlugin); `stdin_is_terminal` defaults to isatty(0).
  ExecCredentialSource(ExecConfig exec, ClusterConfig cluster, const Clock* clock = nullptr,
                       Runner runner = nullptr, std::optional<bool> stdin_is_terminal = {});

  ExecCredentialSource(const ExecCredentialSource&) = delete;
  ExecCredentialSource& operator=(const ExecCredentialSource&) = delete;

  // The cached token, or the plugin's answer when there is none or it has expired.
  Result<std::string> Token();

  // The API server refused `token` (401): forget it, unless a newer token is already cached.
  void Unauthorized(const std::string& token);

  // How many times the plugin ran, for tests and logs.
  int runs() const;

 private:
  const ExecConfig exec_;
  const ClusterConfig cluster_;
  const Clock* const clock_;
  const Runner runner_;
  const bool stdin_is_terminal_;

  mutable std::mutex mu_;
  std::string token_;                        // guarded by mu_; "" when none is cached
  std::optional<Clock::TimePoint> expires_;  // guarded by mu_
  int runs_ = 0;                             // guarded by mu_
};

}  // namespace bg::kube
