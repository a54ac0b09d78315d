#include "processor/uninstall_preflight.h"

#include <atomic>
#include <set>

#include "common/longhorn.h"
#include "processor/receipt.h"

namespace bg::processor {

using nlohmann::json;

namespace {

std::string FailurePolicy(const StaleWebhook& w) {
  return w.failure_policy.empty() ? "Fail (the default)" : w.failure_policy;
}

void PrintStale(const std::vector<StaleWebhook>& stale, std::ostream& to) {
  for (const StaleWebhook& w : stale) {
    to << "  " << w.configuration_kind << " " << w.configuration << " (webhook " << w.webhook
       << ", failurePolicy " << FailurePolicy(w) << ", " << w.endpoint << "): " << w.problem
       << std::endl;
  }
}

// A webhook event (processor/uninstall_events.h) for each stale webhook.
void StaleEvents(const UninstallOptions& options, const std::vector<StaleWebhook>& stale,
                 bool removed) {
  if (options.events == nullptr) return;
  for (const StaleWebhook& w : stale) {
    options.events->Write("webhook", {{"webhook", w.webhook},
                                      {"stale", true},
                                      {"configuration_kind", w.configuration_kind},
                                      {"configuration", w.configuration},
                                      {"failure_policy", FailurePolicy(w)},
                                      {"endpoint", w.endpoint},
                                      {"reason", w.problem},
                                      {"removed", removed},
                                      {"dry_run", options.dry_run}});
  }
}

// Reports the stale webhooks and, when asked, removes them. `removed` counts the configurations
// deleted.
Status HandleStaleWebhooks(kube::KubeApi& api, const UninstallOptions& options,
                           const PreflightOptions& preflight, std::ostream& out, size_t* removed) {
  *removed = 0;
  auto stale = FindStaleWebhooks(api, options.ns, preflight.prober);
  if (!stale.ok() && stale.status().code() == Status::Code::kPermissionDenied &&
      !preflight.remove_stale_webhooks) {
    // The chart's hook may list only the engine's kinds: without the flag, the check is advice.
    out << "webhook configurations not checked (" << stale.status().message()
        << "); --remove-stale-webhooks needs list and delete on them" << std::endl;
    return Status::Ok();
  }
  if (!stale.ok()) {
    return Status::Unavailable("checking webhook configurations: " + stale.status().message());
  }
  if (stale->empty()) return Status::Ok();
  out << "webhook configurations whose endpoint does not answer:" << std::endl;
  PrintStale(*stale, out);
  if (options.dry_run) {
    StaleEvents(options, *stale, false);
    out << (preflight.remove_stale_webhooks
                ? "  (--remove-stale-webhooks would delete these configurations)"
                : "  (--remove-stale-webhooks deletes these configurations)")
        << std::endl;
    return Status::Ok();
  }
  if (!preflight.remove_stale_webhooks) {
    StaleEvents(options, *stale, false);
    out << "  (left in place; a webhook with failurePolicy Fail among them may refuse the "
           "uninstall's writes: --remove-stale-webhooks deletes these configurations)"
        << std::endl;
    return Status::Ok();
  }
  std::set<std::string> configurations;
  for (const StaleWebhook& w : *stale)
    configurations.insert(w.configuration_kind + "/" + w.configuration);
  if (Status s = RemoveStaleWebhooks(api, *stale, out); !s.ok()) return s;
  StaleEvents(options, *stale, true);
  *removed = configurations.size();
  return Status::Ok();
}

Status WriteReceipt(kube::KubeApi& api, const UninstallOptions& options,
                    const PreflightOptions& preflight, std::ostream& out, std::ostream& err) {
  const std::time_t now = preflight.now();
  auto receipt = BuildReceipt(api, options.ns, longhorn::Rfc3339Utc(now));
  if (!receipt.ok()) return receipt.status();
  if (options.dry_run) {
    out << "receipt (not written in a dry run): " << receipt->backups.size()
        << " Completed Backups, " << receipt->system_backups.size() << " Ready SystemBackups"
        << std::endl;
    for (const ReceiptBackup& b : receipt->backups) {
      out << "  Backup " << b.name << " volume=" << b.volume << " target=" << b.target
          << " url=" << b.url << std::endl;
    }
    for (const ReceiptSystemBackup& sb : receipt->system_backups) {
      out << "  SystemBackup " << sb.name << " target=" << sb.target << " version=" << sb.version
          << std::endl;
    }
    return Status::Ok();
  }
  const std::string content = ToJson(*receipt).dump(2) + "\n";
  const std::string path =
      preflight.receipt_path.empty() ? DefaultReceiptPath(now) : preflight.receipt_path;
  if (Status s = WriteFileAtomically(path, content); !s.ok()) return s;
  auto stored = StoreReceiptConfigMap(api, options.ns, content, path);
  if (!stored.ok()) return stored.status();
  out << "receipt: " << receipt->backups.size() << " Completed Backups and "
      << receipt->system_backups.size() << " Ready SystemBackups written to " << path
      << " and ConfigMap " << options.ns << "/" << kReceiptConfigMap;
  switch (*stored) {
    case ReceiptStorage::kPlain:
      out << std::endl;
      break;
    case ReceiptStorage::kGzip:
      out << " (gzip-compressed in binaryData." << kReceiptConfigMapGzipKey << ": "
          << content.size() << " bytes do not fit a ConfigMap; its README key says how to read it)"
          << std::endl;
      break;
    case ReceiptStorage::kFileOnly:
      out << " (a note only)" << std::endl;
      err << "uninstall: WARNING: the receipt (" << content.size()
          << " bytes) does not fit a ConfigMap even compressed: " << path
          << " is its only copy; keep it (in the chart's hook it is in the pod's emptyDir and "
             "goes with the pod)"
          << std::endl;
      break;
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<StaleWebhook>> FindStaleWebhooks(kube::KubeApi& api, const std::string& ns,
                                                    const kube::TlsProber& prober) {
  std::vector<StaleWebhook> out;
  for (const kube::ResourceRef* ref :
       {&kube::kMutatingWebhookConfigurations, &kube::kValidatingWebhookConfigurations}) {
    auto list = api.List(*ref, "", "");
    if (!list.ok()) {
      // The code is kept: a caller tells "not permitted" from "not reachable".
      std::string why = "listing " + ref->resource + ": " + list.status().message();
      return list.status().code() == Status::Code::kPermissionDenied
                 ? Status::PermissionDenied(std::move(why))
                 : Status::Unavailable(std::move(why));
    }
    const json items = list->value("items", json::array());
    if (!items.is_array()) continue;
    for (json config : items) {
      if (!config.is_object()) continue;
      config["kind"] = ref->kind;  // list items may lack it
      const std::string uid = longhorn::StringAt(config, {"metadata", "uid"});
      for (const kube::WebhookTarget& w : kube::WebhooksOf(config)) {
        if (!kube::ConcernsLonghorn(w, ns)) continue;
        const kube::EndpointReport r = kube::CheckWebhookEndpoint(w, api, prober);
        if (!r.stale) continue;
        out.push_back(
            {ref->kind, w.configuration, uid, w.name, w.failure_policy, r.endpoint, r.problem});
      }
    }
  }
  return out;
}

Status RemoveStaleWebhooks(kube::KubeApi& api, const std::vector<StaleWebhook>& stale,
                           std::ostream& out) {
  std::set<std::string> done;
  for (const StaleWebhook& w : stale) {
    if (!done.insert(w.configuration_kind + "/" + w.configuration).second) continue;
    const kube::ResourceRef& ref = w.configuration_kind == kube::kMutatingWebhookConfigurations.kind
                                       ? kube::kMutatingWebhookConfigurations
                                       : kube::kValidatingWebhookConfigurations;
    Status s = api.Delete(ref, "", w.configuration, w.configuration_uid);
    if (s.ok()) {
      out << "deleted stale " << w.configuration_kind << " " << w.configuration << std::endl;
    } else if (!s.IsNotFound()) {
      return Status::Unavailable("deleting stale " + w.configuration_kind + " " + w.configuration +
                                 ": " + s.message());
    }
  }
  return Status::Ok();
}

bool IsWebhookCallFailure(const Status& s) {
  // kube-apiserver's wording when a call fails (dial errors, timeouts, TLS errors), as opposed to
  // a webhook's denial ("admission webhook ... denied the request").
  return !s.ok() && s.message().find("failed calling webhook") != std::string::npos;
}

int RunUninstallWithPreflight(kube::KubeApi& api, UninstallOptions options,
                              const PreflightOptions& preflight, std::ostream& out,
                              std::ostream& err) {
  // Set from the uninstall's writer threads.
  std::atomic<bool> webhook_call_failed{false};
  options.before_first_write = [&]() -> Status {
    size_t removed = 0;
    if (Status s = HandleStaleWebhooks(api, options, preflight, out, &removed); !s.ok()) {
      return s;
    }
    if (Status s = WriteReceipt(api, options, preflight, out, err); !s.ok()) {
      return Status::Unavailable("cannot write the receipt, so nothing was deleted: " +
                                 s.message());
    }
    return Status::Ok();
  };
  options.on_write_failed = [&](const Status& s) {
    if (IsWebhookCallFailure(s)) webhook_call_failed = true;
  };
  // A webhook that dies during the run: between passes, the configurations are checked again
  // after a write was refused because a call failed, and stale ones removed (with the flag).
  options.between_passes = [&]() -> Status {
    if (!webhook_call_failed.exchange(false)) return Status::Ok();
    err << "uninstall: a write was refused because a webhook call failed; checking the webhook "
           "configurations"
        << std::endl;
    size_t removed = 0;
    if (Status s = HandleStaleWebhooks(api, options, preflight, out, &removed); !s.ok()) return s;
    if (removed > 0) out << "resuming the uninstall" << std::endl;
    return Status::Ok();
  };
  int status = RunUninstall(api, options, out, err);
  for (int resumes = 0; status == 1 && webhook_call_failed && resumes < preflight.max_resumes;
       ++resumes) {
    webhook_call_failed = false;
    size_t removed = 0;
    err << "uninstall: a write was refused because a webhook call failed; checking the webhook "
           "configurations"
        << std::endl;
    if (Status s = HandleStaleWebhooks(api, options, preflight, out, &removed); !s.ok()) {
      err << "uninstall: " << s.message() << std::endl;
      break;
    }
    if (removed == 0) break;
    // The receipt was written before the first write; a resumed run must not overwrite it with
    // what is left now.
    options.before_first_write = nullptr;
    out << "resuming the uninstall" << std::endl;
    status = RunUninstall(api, options, out, err);
  }
  return status;
}

}  // namespace bg::processor
