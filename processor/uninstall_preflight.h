// What `backup-guard uninstall` does around RunUninstall (processor/uninstall.h), kept apart from
// its deletion loop:
//
//  - stale webhooks (SPEC.md "Uninstall"): before the first write, every Mutating/Validating
//    webhook configuration that concerns longhorn.io or the engine's namespace and whose endpoint
//    does not answer (kube/webhook_endpoints.h's verdict, the one `diagnose` reports) is reported;
//    with remove_stale_webhooks those configurations, and only those, are deleted, so a dead
//    webhook with failurePolicy Fail cannot hold the uninstall. When a write is later refused
//    because a webhook call failed, the check runs again, and the uninstall is resumed once if it
//    removed something;
//  - the receipt (processor/receipt.h): after the stale webhooks (a dead webhook may refuse the
//    ConfigMap too) and before anything is deleted, written to a file and a ConfigMap; a failure
//    stops the uninstall. The dry run prints what it would hold and writes nothing.
#pragma once

#include <ctime>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "kube/api.h"
#include "kube/webhook_endpoints.h"
#include "processor/uninstall.h"

namespace bg::processor {

// One webhook whose endpoint does not answer.
struct StaleWebhook {
  std::string configuration_kind;
  std::string configuration;
  std::string configuration_uid;  // the delete's precondition: never a configuration made since
  std::string webhook;
  std::string failure_policy;  // as written ("" is the API server's default, Fail)
  std::string endpoint;
  std::string problem;
};

// Every webhook of every configuration that concerns longhorn.io or `ns` and whose endpoint is
// stale. Listing the configurations may fail; an endpoint that cannot be judged is not stale.
Result<std::vector<StaleWebhook>> FindStaleWebhooks(kube::KubeApi& api, const std::string& ns,
                                                    const kube::TlsProber& prober);

// Deletes each configuration named in `stale` once (with its uid as precondition); one already
// gone is fine. Says what it deleted on `out`.
Status RemoveStaleWebhooks(kube::KubeApi& api, const std::vector<StaleWebhook>& stale,
                           std::ostream& out);

// True when `s` is the API server refusing a write because calling an admission webhook failed
// (not because a webhook denied it).
bool IsWebhookCallFailure(const Status& s);

struct PreflightOptions {
  // The receipt file; empty: DefaultReceiptPath(now()).
  std::string receipt_path;
  bool remove_stale_webhooks = false;
  kube::TlsProber prober;  // required
  std::function<std::time_t()> now = [] { return std::time(nullptr); };
  // Resumptions after a write refused by a failing webhook call, each after removing at least
  // one stale configuration. Bounded: a webhook that keeps dying must end the run.
  int max_resumes = 3;
};

// RunUninstall with the stale-webhook check and the receipt before its first write. Exit status
// as RunUninstall's; 1 also when the receipt cannot be written (nothing is deleted then).
int RunUninstallWithPreflight(kube::KubeApi& api, UninstallOptions options,
                              const PreflightOptions& preflight, std::ostream& out,
                              std::ostream& err);

}  // namespace bg::processor
