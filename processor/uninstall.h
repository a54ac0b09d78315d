// `backup-guard uninstall`: deletes the storage engine's custom resources in SPEC.md's order and
// applies the processor's release rules itself, so it finishes even when no webhook pod runs.
//
//   volumes -> backuptargets (annotate and empty the URL, then delete) -> backupvolumes -> backups
//   -> systembackups -> backupbackingimages -> every other longhorn.io kind whose CRD exists
//
// Settings are left alone: the confirmation flag lives there, and a restarted uninstall needs it.
// Everything is derived from the cluster on every pass, so a killed uninstall simply runs again.
//
// At scale (tens of thousands of objects):
//  - each pass lists every kind page by page and keeps only the fields the rules read (a compact
//    copy, indexed by name and by label), never the full objects;
//  - writes run on `workers` threads: each child of a cascade is labelled (only where the label
//    protects data, see LabelProtectsData), deleted, and, when the rules allow it for the copy the
//    DELETE answered, released at once, without waiting for the next pass; every other release is
//    decided on the pass's snapshot after all of that pass's cascades have finished, children
//    before BackupVolumes before BackupTargets.
#pragma once

#include <chrono>
#include <functional>
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
  // Writes in flight at once (at least 1). The API client's rate limit applies on top.
  int workers = 32;

  // Hooks for processor/uninstall_preflight.h (the receipt and stale webhooks). Called after the
  // confirmation check and before the first write (in a dry run too); a failure ends the run
  // with exit 1 before anything is written.
  std::function<Status()> before_first_write;
  // Called with the error of a write that ends the run.
  std::function<void(const Status&)> on_write_failed;
};

// Exit status: 0 when nothing is left (or the dry run found the plan), 1 at the timeout or on an
// API failure, 2 when deleting-confirmation-flag is not "true".
int RunUninstall(kube::KubeApi& api, const UninstallOptions& options, std::ostream& out,
                 std::ostream& err);

// The part of a listed object that the release rules, the Executor and the blocker report read:
// metadata (name, namespace, uid, resourceVersion, deletionTimestamp, labels, finalizers,
// ownerReferences, and only the delete-backup-target annotation), spec.backupTargetURL,
// spec.backupTargetName, spec.volumeName, status.backupTargetName and status.state. Everything
// else (managedFields above all) is dropped as soon as a page is read. A rule that starts reading
// another field must add it here; uninstall_test checks that plans on compact copies are the plans
// on full objects.
nlohmann::json CompactForRules(nlohmann::json obj);

// True when the Setting deleting-confirmation-flag in `ns` reads "true".
bool UninstallConfirmed(kube::KubeApi& api, const std::string& ns);

// Deletes the Mutating/ValidatingWebhookConfigurations named in `names` (comma-separated);
// absent ones are fine.
Status RemoveWebhookConfigurations(kube::KubeApi& api, const std::string& names, std::ostream& out);

}  // namespace bg::processor
