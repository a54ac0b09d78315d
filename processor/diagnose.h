// `backup-guard diagnose`: what holds every deletion of the storage engine's objects, and the
// cluster state that can hold an uninstall, read with nothing but the API (SPEC.md "Uninstall",
// last paragraph). No engine or backup-guard pod needs to run.
//
// Why an object is held comes from the release rules themselves (domain/rules.h, PlanFor),
// never from a second reading of the objects. The report is one JSON document; the table and the
// bundle are made from it.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/status.h"
#include "kube/api.h"
#include "kube/webhook_endpoints.h"

namespace bg::processor {

struct DiagnoseOptions {
  std::string ns = "longhorn-system";
  // The engine's manager: the engine runs when this DaemonSet in `ns` has a ready pod.
  std::string engine_daemonset = "longhorn-manager";
  std::chrono::seconds release_grace{90};  // as `serve` and `uninstall` (the rules' grace)
  std::chrono::system_clock::time_point now = std::chrono::system_clock::now();
  // backup-guard's own /metrics text when --metrics-url was given: the text, or why it could not
  // be read. Absent: not asked for.
  std::optional<Result<std::string>> metrics;
  std::string metrics_url;  // for the report
};

struct Diagnosis {
  // The report (`-o json`). Its "problems" array is what makes the exit status 1.
  nlohmann::json report;
  // What goes in a bundle beside the report, file name -> document: the metadata of every
  // longhorn.io object (objects/<plural>.json), the webhook configurations and the CRDs. Never a
  // Secret, never a spec field beyond the names the rules read.
  nlohmann::json bundle = nlohmann::json::object();
};

// Reads the cluster and decides. An error means the cluster could not be read (exit status 2):
// the CRDs, the engine's objects or the webhook configurations could not be listed.
Result<Diagnosis> Diagnose(kube::KubeApi& api, const DiagnoseOptions& options,
                           const kube::TlsProber& prober);

// The report as a table grouped by problem, each with its fix, then the state read.
std::string RenderTable(const nlohmann::json& report);

// 0 when the report has no problem, 1 otherwise.
int ExitStatus(const nlohmann::json& report);

// The metadata kept of an object for a bundle: name, namespace, uid, timestamps, labels,
// finalizers, owner references and only longhorn.io/ and helm annotations (an annotation such as
// kubectl's last-applied-configuration repeats the spec), plus status.state and the spec names
// the rules read (backupTargetName, volumeName).
nlohmann::json BundleMetadata(const nlohmann::json& obj);

// `text` with bearer tokens and JSON Web Tokens (service account tokens) replaced by
// "[redacted]", for logs put in a bundle.
std::string RedactTokens(const std::string& text);

// backup-guard's own state read from its /metrics text: leader, certificate expiry, last contact
// with the API. Problems found are appended to `problems`.
nlohmann::json BackupGuardState(const std::string& metrics_text,
                                std::chrono::system_clock::time_point now,
                                nlohmann::json& problems);

}  // namespace bg::processor
