// `backup-guard uninstall`: deletes the storage engine's custom resources in SPEC.md's order and
// applies the processor's release rules itself, so it finishes even when no webhook pod runs.
//
//   volumes -> backuptargets (annotate and empty the URL, then delete) -> backupvolumes -> backups
//   -> systembackups -> backupbackingimages -> every other longhorn.io kind whose CRD exists
//
// Settings are left alone: the confirmation flag lives there, and a restarted uninstall needs it.
// Everything is derived from the cluster on every pass, so a killed uninstall simply runs again.
#pragma once

#include <chrono>
#include <ostream>
#include <string>

#include "kube/api.h"

namespace bg::processor {

struct UninstallOptions {
  std::string ns = "longhorn-system";
  bool dry_run = false;
  bool force = false;  // release held objects at once (grace 0)
  std::chrono::seconds timeout{600};
  std::chrono::seconds release_grace{90};
  std::chrono::milliseconds poll_interval{1000};
};

// Exit status: 0 when nothing is left (or the dry run found the plan), 1 at the timeout or on an
// API failure, 2 when deleting-confirmation-flag is not "true".
int RunUninstall(kube::KubeApi& api, const UninstallOptions& options, std::ostream& out,
                 std::ostream& err);

// True when the Setting deleting-confirmation-flag in `ns` reads "true".
bool UninstallConfirmed(kube::KubeApi& api, const std::string& ns);

// Deletes the Mutating/ValidatingWebhookConfigurations named in `names` (comma-separated);
// absent ones are fine.
Status RemoveWebhookConfigurations(kube::KubeApi& api, const std::string& names, std::ostream& out);

}  // namespace bg::processor
