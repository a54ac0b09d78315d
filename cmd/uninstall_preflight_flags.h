// `backup-guard uninstall`'s flags for the receipt and stale webhooks
// (processor/uninstall_preflight.h), kept apart from the command's other flags.
#pragma once

#include <chrono>
#include <string>

#include "cmd/flags.h"
#include "kube/webhook_endpoints.h"
#include "processor/uninstall_preflight.h"

namespace bg::cmd {

// --receipt FILE and --remove-stale-webhooks.
inline processor::PreflightOptions PreflightFromFlags(const Flags& flags) {
  processor::PreflightOptions preflight;
  preflight.receipt_path = flags.Get("receipt");
  preflight.remove_stale_webhooks = flags.Bool("remove-stale-webhooks");
  preflight.prober = [](const std::string& host, int port, const std::string& server_name,
                        const std::string& ca) {
    // `diagnose --probe-timeout`'s default: an endpoint slower than this is not answering.
    return kube::ProbeTls(host, port, server_name, ca, std::chrono::seconds(3));
  };
  return preflight;
}

}  // namespace bg::cmd
