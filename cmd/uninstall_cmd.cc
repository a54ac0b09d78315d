// `backup-guard uninstall`: see processor/uninstall.h.
#include <cstdio>
#include <iostream>

#include "cmd/cluster.h"
#include "cmd/commands.h"
#include "cmd/flags.h"
#include "common/log.h"
#include "kube/rest_api.h"
#include "processor/uninstall.h"

namespace bg::cmd {

int Uninstall(int argc, char** argv) {
  Flags flags({"kubeconfig", "namespace", "timeout", "release-grace", "log-level",
               "remove-webhook-configurations"},
              {"dry-run", "force", "skip-unless-confirmed"});
  if (Status s = flags.Parse(argc, argv, 2); !s.ok()) {
    std::fprintf(stderr, "uninstall: %s\n", s.message().c_str());
    return 2;
  }
  if (!log::SetLevel(flags.Get("log-level", "warn"))) {
    std::fprintf(stderr, "uninstall: --log-level must be debug, info, warn or error\n");
    return 2;
  }
  processor::UninstallOptions options;
  options.ns = flags.Get("namespace", "longhorn-system");
  options.dry_run = flags.Bool("dry-run");
  options.force = flags.Bool("force");
  double timeout = 600, grace = 90;
  if (Status s = ParseDurationSeconds(flags.Get("timeout", "10m"), &timeout); !s.ok()) {
    std::fprintf(stderr, "uninstall: --timeout: %s\n", s.message().c_str());
    return 2;
  }
  if (Status s = ParseDurationSeconds(flags.Get("release-grace", "90s"), &grace); !s.ok()) {
    std::fprintf(stderr, "uninstall: --release-grace: %s\n", s.message().c_str());
    return 2;
  }
  options.timeout = std::chrono::seconds(static_cast<long long>(timeout));
  options.release_grace = std::chrono::seconds(static_cast<long long>(grace));

  auto connection = ConnectCluster(flags.Get("kubeconfig"), std::chrono::milliseconds(0),
                                   /*require=*/true);
  if (!connection.ok()) {
    std::fprintf(stderr, "uninstall: %s\n", connection.status().message().c_str());
    return 1;
  }
  kube::RestKubeApi api(connection->transport);
  int status = 0;
  if (flags.Bool("skip-unless-confirmed") && !processor::UninstallConfirmed(api, options.ns)) {
    std::cout << "uninstall: deleting-confirmation-flag is not \"true\": the storage engine stays; "
                 "nothing deleted"
              << std::endl;
  } else {
    status = processor::RunUninstall(api, options, std::cout, std::cerr);
  }
  // Webhook configurations go last, whatever happened above: a removed server must never leave
  // the API server calling it.
  if (!options.dry_run && flags.Has("remove-webhook-configurations")) {
    if (Status s = processor::RemoveWebhookConfigurations(
            api, flags.Get("remove-webhook-configurations"), std::cout);
        !s.ok()) {
      std::cerr << "uninstall: " << s.message() << std::endl;
      if (status == 0) status = 1;
    }
  }
  return status;
}

}  // namespace bg::cmd
