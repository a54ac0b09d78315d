// `backup-guard uninstall`: see processor/uninstall.h.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cmd/cluster.h"
#include "cmd/commands.h"
#include "cmd/flags.h"
#include "cmd/uninstall_preflight_flags.h"
#include "common/log.h"
#include "kube/kubeconfig.h"
#include "kube/rest_api.h"
#include "kube/server_clock.h"
#include "kube/transport.h"
#include "processor/uninstall.h"
#include "processor/uninstall_events.h"

namespace bg::cmd {

namespace {

// A number flag: `*out` keeps its default when the flag is absent; false when it does not parse or
// lies outside [min, max].
bool NumberFlag(const Flags& flags, const std::string& name, double min, double max, double* out) {
  if (!flags.Has(name)) return true;
  const std::string text = flags.Get(name);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end == nullptr || *end != '\0' || !(v >= min && v <= max)) {
    std::fprintf(stderr, "uninstall: --%s must be a number from %g to %g\n", name.c_str(), min,
                 max);
    return false;
  }
  *out = v;
  return true;
}

// What an exit status means, for the done event.
const char* Outcome(int status, bool dry_run) {
  switch (status) {
    case 0:
      return dry_run ? "dry-run" : "complete";
    case 2:
      return "not-started";
    default:
      return dry_run ? "dry-run-refused" : "incomplete";
  }
}

}  // namespace

int Uninstall(int argc, char** argv) {
  const auto started = std::chrono::steady_clock::now();
  Flags flags({"kubeconfig", "context", "namespace", "timeout", "release-grace", "log-level",
               "remove-webhook-configurations", "workers", "qps", "burst", "confirm-namespace",
               "receipt", "output", "progress-interval"},
              {"dry-run", "force", "skip-unless-confirmed", "remove-stale-webhooks"});
  // kubectl's forms: --dry-run (client), --dry-run=client, --dry-run=server, --dry-run=none.
  flags.AcceptWords("dry-run", {"none", "client", "server"});
  flags.Shorthand('o', "output");  // kubectl's `-o json`, `-o=json` and `-ojson`
  if (Status s = flags.Parse(argc, argv, 2); !s.ok()) {
    std::fprintf(stderr, "uninstall: %s\n", s.message().c_str());
    return 2;
  }
  const std::string output = flags.Get("output", "text");
  if (output != "text" && output != "json") {
    std::fprintf(stderr, "uninstall: --output (-o) must be text or json, got %s\n", output.c_str());
    return 2;
  }
  if (!log::SetLevel(flags.Get("log-level", "warn"))) {
    std::fprintf(stderr, "uninstall: --log-level must be debug, info, warn or error\n");
    return 2;
  }
  processor::UninstallOptions options;
  options.ns = flags.Get("namespace", "longhorn-system");
  const std::string dry_run = flags.Get("dry-run", "none");
  options.dry_run = dry_run == "true" || dry_run == "client" || dry_run == "server";
  options.force = flags.Bool("force");
  options.confirm_namespace = flags.Get("confirm-namespace");
  if (flags.Has("confirm-namespace") && options.confirm_namespace.empty()) {
    std::fprintf(stderr, "uninstall: --confirm-namespace needs the namespace, typed\n");
    return 2;
  }
  {
    std::stringstream names(flags.Get("remove-webhook-configurations"));
    std::string name;
    while (std::getline(names, name, ',')) {
      if (!name.empty()) options.webhook_configurations.push_back(name);
    }
  }
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
  double progress = 5;
  if (Status s = ParseDurationSeconds(flags.Get("progress-interval", "5s"), &progress); !s.ok()) {
    std::fprintf(stderr, "uninstall: --progress-interval: %s\n", s.message().c_str());
    return 2;
  }
  options.progress_interval = std::chrono::milliseconds(static_cast<long long>(progress * 1000));
  // Writes in flight and the client-side limit. The defaults let one uninstall go as fast as an
  // API server answers 32 writers (hundreds of calls a second) while never having more than 32
  // requests open at once; the API server's priority and fairness still applies. --qps 0 turns
  // the client-side limit off.
  double workers = 32, qps = 1000, burst = 200;
  if (!NumberFlag(flags, "workers", 1, 256, &workers) || !NumberFlag(flags, "qps", 0, 1e6, &qps) ||
      !NumberFlag(flags, "burst", 1, 1e6, &burst)) {
    return 2;
  }
  options.workers = static_cast<int>(workers);

  Result<kube::ClusterConfig> config = SelectCluster(flags.Get("kubeconfig"), flags.Get("context"));
  if (!config.ok()) {
    std::fprintf(stderr, "uninstall: %s\n", config.status().message().c_str());
    return 1;
  }
  kube::TransportOptions transport_options;
  // One kept-alive connection per worker (plus the lists), so no write pays a TLS handshake.
  transport_options.max_idle_connections = static_cast<size_t>(options.workers) + 2;
  // Not inside an admission request: an API server busy with thousands of deletions may take
  // longer than the lookups' 5 s to answer a list page or a write.
  transport_options.read_timeout = std::chrono::seconds(30);
  transport_options.write_timeout = std::chrono::seconds(30);
  auto transport = kube::HttpsTransport::Create(*config, transport_options);
  if (!transport.ok()) {
    std::fprintf(stderr, "uninstall: cluster connection: %s\n",
                 transport.status().message().c_str());
    return 1;
  }
  kube::RestKubeApiOptions api_options;
  api_options.qps = qps;
  api_options.burst = static_cast<int>(burst);
  // Not inside an admission request: 429s (honouring Retry-After), 5xx and timeouts are retried
  // with backoff where a replay is safe, before the uninstall's own pass-by-pass retry.
  api_options.retry = kube::CommandRetry();
  // The grace is measured on the API server's clock (the Date of its answers), not this
  // machine's, which may be ahead of the one that wrote the deletionTimestamps.
  kube::ServerClock server_clock;
  api_options.server_clock = &server_clock;
  options.server_now = [&server_clock] { return server_clock.Now(); };
  std::shared_ptr<kube::ApiTransport> shared_transport(std::move(transport).value());
  kube::RestKubeApi api(shared_transport, api_options);
  // --dry-run=server: the same connections, every write marked dryRun=All.
  kube::RestKubeApiOptions dry_options = api_options;
  dry_options.dry_run_all = true;
  kube::RestKubeApi dry_api(shared_transport, dry_options);
  if (dry_run == "server") options.server_dry_run = &dry_api;
  // -o json: the events alone on stdout, the text on stderr.
  std::unique_ptr<processor::UninstallEvents> events;
  if (output == "json") {
    events = std::make_unique<processor::UninstallEvents>(std::cout);
    options.events = events.get();
  }
  std::ostream& text = events ? std::cerr : std::cout;
  int status = 0;
  bool skipped = false;
  if (flags.Bool("skip-unless-confirmed") &&
      !processor::UninstallConfirmed(api, options.ns, options.confirm_namespace)) {
    skipped = true;
    text << "uninstall: deleting-confirmation-flag is not \"true\": the storage engine stays; "
            "nothing deleted"
         << std::endl;
  } else {
    status = processor::RunUninstallWithPreflight(api, options, PreflightFromFlags(flags), text,
                                                  std::cerr);
  }
  // Webhook configurations go last, whatever happened above: a removed server must never leave
  // the API server calling it.
  if (!options.dry_run && flags.Has("remove-webhook-configurations")) {
    if (Status s = processor::RemoveWebhookConfigurations(
            api, flags.Get("remove-webhook-configurations"), text);
        !s.ok()) {
      std::cerr << "uninstall: " << s.message() << std::endl;
      if (status == 0) status = 1;
    }
  }
  if (events) {
    events->Write(
        "done",
        {{"exit_code", status},
         {"result", skipped ? "skipped-unconfirmed" : Outcome(status, options.dry_run)},
         {"elapsed_seconds",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()}});
  }
  return status;
}

}  // namespace bg::cmd
