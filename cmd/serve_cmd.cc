// `backup-guard serve`: the admission server, the certificate manager and the finalizer
// processor, in one process. Every replica serves admission; only the Lease holder writes.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "certs/file_watcher.h"
#include "certs/generate.h"
#include "certs/identity.h"
#include "certs/metrics.h"
#include "certs/self_managed.h"
#include "cmd/background.h"
#include "cmd/cluster.h"
#include "cmd/commands.h"
#include "cmd/flags.h"
#include "common/log.h"
#include "kube/api_health.h"
#include "kube/api_health_metrics.h"
#include "kube/kube_lookup.h"
#include "kube/leader_election.h"
#include "kube/request_metrics.h"
#include "kube/rest_api.h"
#include "mutators/mutators.h"
#include "processor/controller.h"
#include "processor/metrics.h"
#include "validators/validators.h"
#include "webhook/server.h"

namespace bg::cmd {
namespace {

int Fail(const std::string& message) {
  log::Error(message);
  return 1;
}

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
}

// A unique identity per process for the Lease: the host (pod) name and the pid.
std::string Identity() {
  char host[256] = "unknown";
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + "_" + std::to_string(getpid());
}

// Every flag of `serve`, with the default --help shows (the code below applies the same ones).
const std::vector<FlagSpec>& ServeFlags() {
  static const std::vector<FlagSpec> specs = {
      {"listen", ":9443",
       "TLS listener for the webhooks, /healthz and /readyz (\":PORT\": IPv6 and IPv4)"},
      {"metrics-listen",
       ":8080",
       "plain HTTP listener for /metrics",
       false,
       {"metrics-bind-address"}},
      {"health-probe-bind-address", "0",
       "plain HTTP listener for /healthz and /readyz alone, for kubelet probes (\"0\": none)"},
      {"max-connections", "10000",
       "open TLS connections at most; at the cap the oldest idle connection makes room"},
      {"connection-reserve", "1000", "of those, slots idle connections may not take"},
      {"body-buffer-budget", "64Mi",
       "request body bytes buffered across all connections; past it new bodies get 503"},
      {"tls-cert-file", "", "file mode: serve this PEM certificate and reload it when it changes"},
      {"tls-key-file", "", "file mode: its key"},
      {"client-ca-file", "", "webhook calls must present a client certificate signed by this CA"},
      {"kubeconfig", "",
       "the cluster: this kubeconfig; default $KUBECONFIG (files merged), else the in-cluster "
       "service account, else ~/.kube/config, else none (admission only)"},
      {"context", "", "the kubeconfig context to use (default: its current-context)"},
      {"namespace", "longhorn-system", "the storage engine's namespace"},
      {"log-level", "info", "debug, info, warn or error"},
      {"lookup-cache-ttl", "1s", "how long an admission lookup answer is reused; 0 disables"},
      {"shutdown-grace", "20s", "after the shutdown delay, how long requests in flight may take"},
      {"shutdown-delay", "2s", "on SIGTERM, how long to keep serving while /readyz answers 503"},
      {"api-unready-after", "20s",
       "/readyz answers 503 once the Kubernetes API has not answered for this long"},
      {"api-probe-interval", "5s", "how often a quiet server checks the API's /readyz"},
      {"leader-elect", "true", "run the processor and certificate writes only on the Lease holder",
       true},
      {"leader-election-id", "backup-guard", "the Lease's name"},
      {"leader-election-lease-duration", "15s", "as in client-go"},
      {"leader-election-renew-deadline", "10s", "as in client-go"},
      {"leader-election-retry-period", "2s", "as in client-go"},
      {"enable-processor", "true", "run the finalizer processor", true},
      {"processor-workers", "4", "reconcile workers"},
      {"resync-period", "30s", "every object is re-queued this often"},
      {"release-grace", "90s",
       "during a confirmed uninstall, objects left to the engine are released after this long"},
      {"cert-secret", "backup-guard-tls", "self-managed mode: the Secret holding the certificates"},
      {"service-name", "backup-guard", "self-managed mode: the Service the SANs name"},
      {"cert-dns", "", "an extra DNS SAN (repeatable)"},
      {"cert-ip", "", "an extra IP SAN (repeatable)"},
      {"mutating-webhook-configuration", "", "a configuration whose caBundle the leader keeps"},
      {"validating-webhook-configuration", "", "a configuration whose caBundle the leader keeps"},
      {"cert-lifetime", "720h", "serving certificate lifetime (renewed at two-thirds)"},
      {"ca-lifetime", "87600h", "CA lifetime (renewed at two-thirds)"},
      {"cert-sync-interval", "10s",
       "how often every replica re-reads the certificate Secret and publishes what it serves"},
  };
  return specs;
}

// What the flags of `serve` say, checked: the settings the parts below are built from.
struct ServeSettings {
  webhook::ServerOptions server;
  std::map<std::string, double> durations;  // seconds, by flag name
  bool leader_elect = true;
  kube::LeaderElectionOptions election;
  std::string ns;
  int workers = 4;

  std::chrono::seconds Seconds(const std::string& name) const {
    return std::chrono::seconds(static_cast<long long>(durations.at(name)));
  }
  std::chrono::milliseconds Millis(const std::string& name) const {
    return cmd::Millis(durations.at(name));
  }
};

// The listener's settings: addresses, the connection cap and the body budget.
Status ParseListenerSettings(const Flags& flags, webhook::ServerOptions* options) {
  if (Status s =
          ParseHostPort(flags.Get("listen", ":9443"), &options->listen_host, &options->listen_port);
      !s.ok()) {
    return Status::InvalidArgument("--listen: " + s.message());
  }
  if (Status s = ParseHostPort(flags.Get("metrics-listen", ":8080"), &options->metrics_host,
                               &options->metrics_port);
      !s.ok()) {
    return Status::InvalidArgument("--metrics-listen: " + s.message());
  }
  if (const std::string probes = flags.Get("health-probe-bind-address", "0"); probes != "0") {
    if (Status s = ParseHostPort(probes, &options->health_probe_host, &options->health_probe_port);
        !s.ok()) {
      return Status::InvalidArgument("--health-probe-bind-address: " + s.message());
    }
  }
  auto whole = [&](const char* name, const char* fallback) {
    const std::string text = flags.Get(name, fallback);
    char* end = nullptr;
    const long n = std::strtol(text.c_str(), &end, 10);
    return text.empty() || *end != '\0' ? -1L : n;
  };
  const long max_connections = whole("max-connections", "10000");
  const long reserve = whole("connection-reserve", "1000");
  if (max_connections < 2) {
    return Status::InvalidArgument("--max-connections must be a whole number, at least 2");
  }
  if (reserve < 0 || reserve >= max_connections) {
    return Status::InvalidArgument(
        "--connection-reserve must be 0 or more and below --max-connections");
  }
  options->max_connections = static_cast<std::size_t>(max_connections);
  options->connection_reserve = static_cast<std::size_t>(reserve);
  if (Status s =
          ParseByteSize(flags.Get("body-buffer-budget", "64Mi"), &options->body_budget_bytes);
      !s.ok()) {
    return Status::InvalidArgument("--body-buffer-budget: " + s.message());
  }
  // Large bodies may take three quarters of the budget (see TlsListenerOptions).
  if (options->body_budget_bytes - options->body_budget_bytes / 4 < options->max_body_bytes) {
    return Status::InvalidArgument("--body-buffer-budget must let one largest body (" +
                                   std::to_string(options->max_body_bytes) +
                                   " bytes) through: at least 4/3 of it");
  }
  return Status::Ok();
}

// Reads and checks every flag but those the certificate part reads itself. Nothing on success,
// else the exit status (1 for a bad value, 2 for a usage error), with the message written.
std::optional<int> ParseServeSettings(const Flags& flags, ServeSettings* out) {
  if (Status s = ParseListenerSettings(flags, &out->server); !s.ok()) return Fail(s.message());
  out->durations = {{"shutdown-grace", 20},
                    {"shutdown-delay", 2},
                    {"lookup-cache-ttl", 1},
                    {"leader-election-lease-duration", 15},
                    {"leader-election-renew-deadline", 10},
                    {"leader-election-retry-period", 2},
                    {"resync-period", 30},
                    {"release-grace", 90},
                    {"cert-lifetime", 30 * 24 * 3600},
                    {"ca-lifetime", 10.0 * 365 * 24 * 3600},
                    {"cert-sync-interval", 10},
                    {"api-unready-after", 20},
                    {"api-probe-interval", 5}};
  for (auto& [name, value] : out->durations) {
    if (!flags.Has(name)) continue;
    if (Status s = ParseDurationSeconds(flags.Get(name), &value); !s.ok()) {
      return Fail("--" + name + ": " + s.message());
    }
  }
  out->server.shutdown_grace = out->Seconds("shutdown-grace");
  out->leader_elect = flags.Get("leader-elect", "true") == "true";
  kube::LeaderElectionOptions& le = out->election;
  le.lease_name = flags.Get("leader-election-id", "backup-guard");
  le.ns = flags.Get("namespace", "longhorn-system");
  le.identity = Identity();
  le.lease_duration = out->Millis("leader-election-lease-duration");
  le.renew_deadline = out->Millis("leader-election-renew-deadline");
  le.retry_period = out->Millis("leader-election-retry-period");
  if (Status s = kube::ValidateLeaderElectionTimings(le); out->leader_elect && !s.ok()) {
    std::fprintf(stderr, "serve: %s\n", s.message().c_str());
    return 2;
  }
  out->server.client_ca_file = flags.Get("client-ca-file");
  out->ns = flags.Get("namespace", "longhorn-system");
  out->workers = std::atoi(flags.Get("processor-workers", "4").c_str());
  if (out->workers < 1 || out->workers > 64) return Fail("--processor-workers must be 1..64");
  if (out->durations["api-probe-interval"] <= 0) {
    return Fail("--api-probe-interval must be positive");
  }
  return std::nullopt;
}

// The cluster side: the connection, the API's health and the two API clients. Built in place
// (the fenced client's deadline reads `fence`) and never moved.
struct ClusterParts {
  ClusterParts() = default;
  ClusterParts(const ClusterParts&) = delete;
  ClusterParts& operator=(const ClusterParts&) = delete;

  std::unique_ptr<kube::ApiHealthMetrics> api_health_metrics;
  std::unique_ptr<kube::RequestMetrics> request_metrics;
  ClusterConnection connection;
  // The transport without health recording: the API-health probe sends through it.
  std::shared_ptr<kube::ApiTransport> raw_transport;
  std::shared_ptr<kube::ApiHealth> api_health;  // null without a cluster
  // Fencing: with leader election, every write but the elector's own must reach the API server
  // while this replica's leadership holds (see RestKubeApiOptions::write_deadline). The elector
  // is bound once it exists (StartLeaderElection); until then no such write is sent.
  std::atomic<const kube::LeaderElector*> fence{nullptr};
  std::unique_ptr<kube::RestKubeApi> lease_api;  // the elector's: it renews what fences the rest
  std::unique_ptr<kube::RestKubeApi> api;        // fenced under leader election
};

// Connects to the cluster (if any). The API's health, for /readyz and metrics: every API user
// (lookups, processor, leader election, certificates) goes through one recording transport, and
// a background probe covers quiet periods. The lookup is rebuilt on the recording transport.
Status ConnectToCluster(const Flags& flags, const ServeSettings& settings,
                        webhook::Metrics& metrics, ClusterParts* out) {
  auto connection = ConnectCluster(flags.Get("kubeconfig"), flags.Get("context"),
                                   settings.Millis("lookup-cache-ttl"),
                                   /*require=*/false);
  if (!connection.ok()) return connection.status();
  out->connection = std::move(connection).value();
  ClusterConnection& c = out->connection;
  out->raw_transport = c.transport;
  if (out->raw_transport) {
    // client-go's rest_client_* families: every exchange, the probe's included, passes here once.
    out->request_metrics = std::make_unique<kube::RequestMetrics>(*metrics.registry());
    out->raw_transport = std::make_shared<kube::MetricsRecordingTransport>(
        out->raw_transport, out->request_metrics.get(), c.api_host);
    out->api_health_metrics = std::make_unique<kube::ApiHealthMetrics>(*metrics.registry());
    kube::ApiHealthOptions ho;
    ho.unready_after = settings.Millis("api-unready-after");
    ho.probe_interval = settings.Millis("api-probe-interval");
    out->api_health = std::make_shared<kube::ApiHealth>(ho, out->api_health_metrics.get());
    c.transport =
        std::make_shared<kube::HealthRecordingTransport>(out->raw_transport, out->api_health);
    kube::KubeLookupOptions lo;
    lo.cache_ttl = settings.Millis("lookup-cache-ttl");
    c.lookup = std::make_unique<kube::KubeLookup>(c.transport, lo);
  }
  if (c.transport) {
    out->lease_api = std::make_unique<kube::RestKubeApi>(c.transport);
    kube::RestKubeApiOptions ao;
    if (settings.leader_elect) {
      ao.write_deadline = [fence = &out->fence]() -> std::optional<kube::Clock::TimePoint> {
        const kube::LeaderElector* elector = fence->load();
        if (elector == nullptr) return std::nullopt;
        return elector->LeadershipDeadline();
      };
    }
    out->api = std::make_unique<kube::RestKubeApi>(c.transport, ao);
  }
  return Status::Ok();
}

// Blocks the stop signals in this thread and every thread started after it (the main thread
// waits for them in WaitAndShutdown), and ignores SIGPIPE.
sigset_t BlockStopSignals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up mid-write is not a crash
  return stop_signals;
}

// Leader election: the Lease holder is the only writer (processor, certificate Secret). Creates
// the elector (not yet running) in `bg` and binds the fence to it; answers whether this replica
// may write now.
std::function<bool()> SetUpLeaderElection(const ServeSettings& settings, ClusterParts& cluster,
                                          processor::ProcessorMetrics& processor_metrics,
                                          Background& bg) {
  if (cluster.lease_api && settings.leader_elect) {
    Background* b = &bg;
    processor::ProcessorMetrics* pm = &processor_metrics;
    bg.elector = std::make_unique<kube::LeaderElector>(
        *cluster.lease_api, settings.election,
        [b, pm] {
          pm->SetLeader(true);
          if (b->controller) b->controller->EnqueueAll();
        },
        [pm] { pm->SetLeader(false); });
  }
  kube::LeaderElector* elector = bg.elector.get();
  cluster.fence = elector;
  return [elector, leader_elect = settings.leader_elect, has_api = cluster.api != nullptr] {
    if (!has_api) return false;
    return !leader_elect || elector->IsLeader();
  };
}

// The serving certificate: files (reloaded on change), else self-managed in a Secret.
struct CertificateParts {
  certs::CertificateStore store;
  std::function<bool()> ready = [] { return true; };
  std::unique_ptr<certs::FileCertificateWatcher> file_watcher;
  std::unique_ptr<certs::SelfManagedCertificates> self_managed;
};

// Loads the first certificate and starts the loop that keeps it current (on `bg`).
Status StartCertificates(const Flags& flags, const ServeSettings& settings, ClusterParts& cluster,
                         certs::CertificateMetrics& cert_metrics,
                         const std::function<bool()>& is_leader, Background& bg,
                         CertificateParts* out) {
  const std::string cert_file = flags.Get("tls-cert-file");
  const std::string key_file = flags.Get("tls-key-file");
  if (!cert_file.empty() || !key_file.empty()) {
    if (cert_file.empty() || key_file.empty()) {
      return Status::InvalidArgument("--tls-cert-file and --tls-key-file go together");
    }
    out->file_watcher = std::make_unique<certs::FileCertificateWatcher>(cert_file, key_file,
                                                                        out->store, &cert_metrics);
    if (Status s = out->file_watcher->CheckOnce(); !s.ok()) {
      return Status::InvalidArgument("TLS files: " + s.message());
    }
    bg.threads.emplace_back([w = out->file_watcher.get(), b = &bg] { w->Run(b->stop); });
    return Status::Ok();
  }
  if (!cluster.api) {
    return Status::InvalidArgument(
        "no certificate: pass --tls-cert-file and --tls-key-file, or a cluster "
        "(--kubeconfig, $KUBECONFIG, in-cluster or ~/.kube/config) for self-managed "
        "certificates");
  }
  certs::SelfManagedOptions so;
  so.ns = settings.ns;
  so.secret_name = flags.Get("cert-secret", "backup-guard-tls");
  so.service_name = flags.Get("service-name", "backup-guard");
  so.extra_dns = flags.GetAll("cert-dns");
  so.extra_ips = flags.GetAll("cert-ip");
  so.mutating_configuration = flags.Get("mutating-webhook-configuration");
  so.validating_configuration = flags.Get("validating-webhook-configuration");
  so.leaf_lifetime = settings.Seconds("cert-lifetime");
  so.ca_lifetime = settings.Seconds("ca-lifetime");
  so.sync_interval = settings.Millis("cert-sync-interval");
  so.replica_id = Identity();  // publishes the certificate it serves (CA rotation step 3)
  // Not the fenced client: every replica, leader or not, publishes the certificate it serves and
  // may create the missing Secret. The leader's own steps are gated on is_leader and written
  // with the resourceVersion read, so a step a lapsed leader sends late fails with a 409.
  out->self_managed = std::make_unique<certs::SelfManagedCertificates>(
      *cluster.lease_api, so, out->store, &cert_metrics, is_leader);
  // Until the Secret is read the listener serves a throwaway pair and /readyz says no.
  auto ca = certs::GenerateCa("backup-guard-bootstrap", std::chrono::hours(1));
  auto leaf = ca.ok() ? certs::GenerateServingCert(*ca, {"localhost"}, {}, std::chrono::hours(1))
                      : Result<certs::PemPair>(ca.status());
  if (!leaf.ok()) return Status::Internal("bootstrap certificate: " + leaf.status().message());
  out->store.Set(*certs::TlsIdentity::FromPem(leaf->cert_pem, leaf->key_pem));
  out->ready = [sm = out->self_managed.get()] { return sm->Ready(); };
  bg.threads.emplace_back([sm = out->self_managed.get(), b = &bg] { sm->Run(b->stop); });
  return Status::Ok();
}

// The finalizer processor (when enabled and there is a cluster), then the elector's loop.
void StartProcessorAndElection(const Flags& flags, const ServeSettings& settings,
                               ClusterParts& cluster,
                               processor::ProcessorMetrics& processor_metrics,
                               const std::function<bool()>& is_leader, Background& bg) {
  if (cluster.api && flags.Get("enable-processor", "true") == "true") {
    processor::ControllerOptions copts;
    copts.ns = settings.ns;
    copts.workers = settings.workers;
    copts.resync = settings.Seconds("resync-period");
    copts.release_grace = settings.Seconds("release-grace");
    bg.controller =
        std::make_unique<processor::Controller>(*cluster.api, copts, &processor_metrics, is_leader);
    bg.controller->Start();
    if (!settings.leader_elect) processor_metrics.SetLeader(true);
  }
  if (kube::LeaderElector* elector = bg.elector.get(); elector != nullptr) {
    bg.election = std::thread([elector, b = &bg] { elector->Run(b->stop_election); });
  }
}

// /readyz: with a cluster, its API's health; without one, lookups are always ready (they find
// nothing). And the serving certificate loaded.
std::function<Status()> Readiness(const ClusterParts& cluster,
                                  const std::function<bool()>& certificates_ready) {
  return [&cluster, &certificates_ready, health = cluster.api_health.get()] {
    if (health != nullptr) {
      if (Status s = health->Check(); !s.ok()) return s;
    } else if (!cluster.connection.lookup->Ready()) {
      return Status::Unavailable("cluster lookups not ready");
    }
    if (!certificates_ready()) return Status::Unavailable("serving certificate not loaded yet");
    return Status::Ok();
  };
}

// Waits for SIGTERM or SIGINT, drains and stops the server, then the background loops
// (Background::Stop: the processor's workers before the Lease is given up). The exit status.
int WaitAndShutdown(const sigset_t& stop_signals, const ServeSettings& settings,
                    webhook::Server& server, webhook::Metrics& metrics, Background& bg) {
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  log::Info("stop signal received", {{"signal", signal_number}});
  // Drain before closing: callers see 503 on /readyz and "Connection: close" on every answer, so
  // they move to other replicas instead of reusing a connection that is about to close.
  server.BeginDrain();
  std::this_thread::sleep_for(settings.Millis("shutdown-delay"));
  const auto shutdown_started = std::chrono::steady_clock::now();
  server.Shutdown();
  // The listener waits up to the grace for answers in progress, then leaves the workers still
  // computing one to the exiting process. Those use the server, the registries, the lookups and
  // the metrics of Serve()'s frame: unwinding it (and the static destructors after main) would
  // free them under the workers. So then the process ends here, with everything they use alive.
  const bool answers_may_run =
      metrics.in_flight().Value() > 0 ||
      std::chrono::steady_clock::now() - shutdown_started >= settings.server.shutdown_grace;
  bg.Stop();
  if (answers_may_run) {
    log::Warn("answers still running after the shutdown grace; exiting without unwinding",
              {{"shutdown_grace_s", settings.server.shutdown_grace.count()}});
    std::fflush(nullptr);
    std::_Exit(0);
  }
  log::Info("stopped");
  return 0;
}

}  // namespace

// The parts are declared in the order they depend on each other, so that they are destroyed in
// the reverse: the server before the registries and certificates it serves, the background loops
// (joined) before what they use, the metrics last.
int Serve(int argc, char** argv) {
  Flags flags("backup-guard serve [flags]", ServeFlags());
  if (Status s = flags.Parse(argc, argv, 2); !s.ok()) {
    std::fprintf(stderr, "serve: %s\n", s.message().c_str());
    return 2;
  }
  if (!log::SetLevel(flags.Get("log-level", "info"))) {
    std::fprintf(stderr, "serve: --log-level must be debug, info, warn or error\n");
    return 2;
  }
  ServeSettings settings;
  if (std::optional<int> status = ParseServeSettings(flags, &settings)) return *status;

  // Declared before the cluster connection, which reports to the API-health metrics until it goes.
  webhook::Metrics metrics(kVersion);
  ClusterParts cluster;
  if (Status s = ConnectToCluster(flags, settings, metrics, &cluster); !s.ok()) {
    return Fail(s.message());
  }
  const sigset_t stop_signals = BlockStopSignals();

  certs::CertificateMetrics cert_metrics(*metrics.registry());
  processor::ProcessorMetrics processor_metrics(*metrics.registry(),
                                                flags.Get("leader-election-id", "backup-guard"));
  Background bg;
  if (cluster.api_health) {
    // The probe goes to the API directly; it records its own outcome, with the failed checks.
    bg.threads.emplace_back([h = cluster.api_health.get(), t = cluster.raw_transport.get(),
                             b = &bg] { h->Run(*t, b->stop); });
  }
  const std::function<bool()> is_leader =
      SetUpLeaderElection(settings, cluster, processor_metrics, bg);
  CertificateParts certificates;
  if (Status s =
          StartCertificates(flags, settings, cluster, cert_metrics, is_leader, bg, &certificates);
      !s.ok()) {
    return Fail(s.message());
  }
  StartProcessorAndElection(flags, settings, cluster, processor_metrics, is_leader, bg);

  kube::ResourceLookup& lookups = *cluster.connection.lookup;
  webhook::Registry mutation = mutators::BuildMutationRegistry(lookups);
  webhook::Registry validation = validators::BuildValidationRegistry(lookups);
  webhook::Server server(settings.server, mutation, validation, metrics, certificates.store,
                         Readiness(cluster, certificates.ready));
  if (Status s = server.Start(); !s.ok()) return Fail(s.message());
  log::Info("backup-guard serving",
            {{"version", kVersion},
             {"namespace", settings.ns},
             {"processor", bg.controller != nullptr},
             {"leader_election", bg.elector != nullptr},
             {"certificates", certificates.file_watcher ? "files" : "self-managed"}});
  return WaitAndShutdown(stop_signals, settings, server, metrics, bg);
}

}  // namespace bg::cmd
