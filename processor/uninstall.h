// `backup-guard uninstall`: deletes the storage engine's custom resources in SPEC.md's order and
// applies the processor's release rules itself, so it finishes even when no webhook pod runs.
//
//   volumes -> backuptargets (annotate and empty the URL, then delete) -> backupvolumes -> backups
//   -> systembackups -> backupbackingimages -> every other longhorn.io kind whose CRD exists
//
// Settings are left alone: the confirmation flag lives there, and a restarted uninstall needs it.
// Everything is derived from the cluster on every pass, so a killed uninstall simply runs again.
//
// It cannot get stuck on what it can see (SPEC.md "Uninstall"):
//  - before any write, an RBAC pre-flight (SelfSubjectAccessReviews) checks get, list, patch and
//    delete on every longhorn.io kind whose CRD exists, get on the confirmation Setting, and
//    delete on the webhook configurations it is to remove; a missing one is named, exit 2;
//  - no failed write ends the run: the API client retries what is safe to retry (kube/rest_api.h),
//    and a write that still fails (an admission webhook refusing it, or one that cannot be called)
//    is reported, naming the webhook and its reason, and tried again on the next pass, until
//    `timeout`; then every object left is listed with why and the last error of a write to it;
//  - a child's delete-custom-resource-only label is decided on the copy its write is conditioned
//    on (a resourceVersion precondition: a Backup that completed meanwhile is read and decided
//    again), and a parent's release (BackupVolume, BackupTarget) is confirmed on fresh reads of its
//    children, never on the pass's snapshot alone: one fresh list of each child kind per pass,
//    taken after that pass's cascades, for all the parents the pass releases;
//  - success is declared only after a final sweep (fresh lists of every longhorn.io kind whose CRD
//    exists, Settings excepted) finds nothing; what it finds (a Volume created after step 1) sends
//    the run through the steps again.
//
// At scale (tens of thousands of objects):
//  - each pass lists every kind page by page and keeps only the fields the rules read (a compact
//    copy, indexed by name and by label), never the full objects, and holds each object once, as
//    a MessagePack record (processor/uninstall_snapshot.h): the trees the rules and the writers
//    work on (a target's cascade is every child) are made from it on demand and are the only
//    trees of those objects;
//  - writes run on `workers` threads. A child of a cascade that the rules release as soon as it
//    is deleted (a Backup, SystemBackup or BackupBackingImage) costs two writes, as a bare
//    client's: one PATCH that sets its delete-custom-resource-only label (only where the label
//    protects data, see LabelProtectsData) and removes longhorn.io together, conditioned on the
//    copy it was decided on, then a DELETE conditioned on that PATCH's answer. Any other child is
//    labelled, deleted, and released when the rules allow it for the copy the DELETE answered.
//    Every other release is decided on the pass's snapshot after all of that pass's cascades
//    have finished, children before BackupVolumes before BackupTargets (these two confirmed on
//    fresh reads, see above);
//  - memory: two malloc arenas for the writer threads, and the heap trimmed after each pass.
//
// What it prints (the plan, progress lines, failed writes grouped by cause, blockers, the final
// sweep) is built in processor/uninstall_report.h; this file is the engine of passes.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "kube/api.h"
#include "processor/uninstall_events.h"

namespace bg::processor {

struct UninstallOptions {
  std::string ns = "longhorn-system";
  bool dry_run = false;
  bool force = false;  // release held objects at once (grace 0)
  std::chrono::seconds timeout{600};
  std::chrono::seconds release_grace{90};
  // The API server's clock now (kube::ServerClock over the client's answers), on which the grace
  // is measured against deletionTimestamp, which that clock wrote. When it answers nothing (no
  // Date seen yet): the local wall clock, bounded by the monotonic time since this run first saw
  // each deletion (domain/deletion_clock.h), so that a local clock ahead of the API server's
  // never shortens the grace (a restarted run then waits the grace again). Null: the local wall
  // clock alone (unit tests whose fake API stamps every deletion long ago).
  std::function<std::optional<std::chrono::system_clock::time_point>()> server_now;
  std::chrono::milliseconds poll_interval{1000};
  // Writes in flight at once (at least 1). The API client's rate limit applies on top.
  int workers = 32;
  // --confirm-namespace: the namespace typed by the user. It stands in for
  // deleting-confirmation-flag only when that Setting (or the Settings CRD) is gone, and only
  // when it equals `ns`.
  std::string confirm_namespace;
  // The webhook configurations the caller removes afterwards (--remove-webhook-configurations):
  // the pre-flight checks that they may be deleted.
  std::vector<std::string> webhook_configurations;

  // Hooks for processor/uninstall_preflight.h (the receipt and stale webhooks). Called after the
  // confirmation check and before the first write (in a dry run too); a failure ends the run
  // with exit 1 before anything is written.
  std::function<Status()> before_first_write;
  // Called with the error of every failed write (from the writer threads; must be thread-safe).
  std::function<void(const Status&)> on_write_failed;
  // Called between passes, on the uninstall's own thread (e.g. to remove a webhook configuration
  // that has died since the start); an error is reported and the run goes on.
  std::function<Status()> between_passes;

  // --dry-run=server (with dry_run): every planned write (each target's annotation and emptied
  // URL, each delete-custom-resource-only label, each DELETE, each finalizer release) is sent
  // through this API, whose writes carry dryRun=All (kube::RestKubeApiOptions::dry_run_all): the
  // API server runs every admission webhook, the engine's included, and stores nothing. What
  // would be refused is printed by webhook, with its reason and the objects. Null: the client-side
  // dry run alone (the plan and the rules' verdicts).
  kube::KubeApi* server_dry_run = nullptr;
  // While the run works, a progress line (per-kind remaining counts, elapsed time, rate) every
  // interval, whether or not a count changed; zero turns the lines off.
  std::chrono::milliseconds progress_interval{5000};
  // -o json: the events of processor/uninstall_events.h, besides the text on `out`; null: none.
  UninstallEvents* events = nullptr;
};

// Exit status: 0 when nothing is left (or the dry run found the plan, and, with server_dry_run,
// every write would be admitted), 1 at the timeout (or when the API server would refuse a write of
// the server dry run), 2 when
// the uninstall is not confirmed (deleting-confirmation-flag is not "true", and no matching
// --confirm-namespace stands in for a Setting that is gone) or a permission is missing.
int RunUninstall(kube::KubeApi& api, const UninstallOptions& options, std::ostream& out,
                 std::ostream& err);

// The part of a listed object that the release rules, the Executor and the blocker report read:
// exactly the fields of domain::FieldsRulesRead() (domain/kinds.h). Everything else
// (managedFields above all) is dropped as soon as a page is read. A rule that starts reading
// another field adds it there; uninstall_test checks that plans on compact copies are the plans
// on full objects.
nlohmann::json CompactForRules(nlohmann::json obj);

// True when the Setting deleting-confirmation-flag in `ns` reads "true", or when it (or its CRD)
// is gone and `confirm_namespace` equals `ns`.
bool UninstallConfirmed(kube::KubeApi& api, const std::string& ns,
                        const std::string& confirm_namespace = "");

// Deletes the Mutating/ValidatingWebhookConfigurations named in `names` (comma-separated);
// absent ones are fine.
Status RemoveWebhookConfigurations(kube::KubeApi& api, const std::string& names, std::ostream& out);

}  // namespace bg::processor
