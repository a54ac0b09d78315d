// `backup-guard serve`: the admission server (and, in later layers, the finalizer processor).
#include <csignal>
#include <cstdio>
#include <memory>

#include "certs/identity.h"
#include "cmd/cluster.h"
#include "cmd/commands.h"
#include "cmd/flags.h"
#include "common/log.h"
#include "mutators/mutators.h"
#include "validators/validators.h"
#include "webhook/server.h"

namespace bg::cmd {
namespace {

int Fail(const std::string& message) {
  log::Error(message);
  return 1;
}

}  // namespace

int Serve(int argc, char** argv) {
  Flags flags({"listen", "metrics-listen", "tls-cert-file", "tls-key-file", "kubeconfig",
               "namespace", "log-level", "lookup-cache-ttl", "shutdown-grace"});
  if (Status s = flags.Parse(argc, argv, 2); !s.ok()) {
    std::fprintf(stderr, "serve: %s\n", s.message().c_str());
    return 2;
  }
  if (!log::SetLevel(flags.Get("log-level", "info"))) {
    std::fprintf(stderr, "serve: --log-level must be debug, info, warn or error\n");
    return 2;
  }
  webhook::ServerOptions options;
  if (Status s = ParseHostPort(flags.Get("listen", "0.0.0.0:9443"), &options.listen_host,
                               &options.listen_port);
      !s.ok()) {
    return Fail("--listen: " + s.message());
  }
  if (Status s = ParseHostPort(flags.Get("metrics-listen", "0.0.0.0:8080"), &options.metrics_host,
                               &options.metrics_port);
      !s.ok()) {
    return Fail("--metrics-listen: " + s.message());
  }
  double grace = 20;
  if (Status s = ParseDurationSeconds(flags.Get("shutdown-grace", "20s"), &grace); !s.ok()) {
    return Fail("--shutdown-grace: " + s.message());
  }
  options.shutdown_grace = std::chrono::seconds(static_cast<long long>(grace));
  double cache_ttl = 1;
  if (Status s = ParseDurationSeconds(flags.Get("lookup-cache-ttl", "1s"), &cache_ttl); !s.ok()) {
    return Fail("--lookup-cache-ttl: " + s.message());
  }

  const std::string cert_file = flags.Get("tls-cert-file");
  const std::string key_file = flags.Get("tls-key-file");
  if (cert_file.empty() || key_file.empty()) {
    return Fail(
        "--tls-cert-file and --tls-key-file are required (see `backup-guard certs generate`)");
  }
  auto cert_pem = certs::ReadFile(cert_file);
  auto key_pem = certs::ReadFile(key_file);
  if (!cert_pem.ok()) return Fail("--tls-cert-file: " + cert_pem.status().message());
  if (!key_pem.ok()) return Fail("--tls-key-file: " + key_pem.status().message());
  auto identity = certs::TlsIdentity::FromPem(*cert_pem, *key_pem);
  if (!identity.ok()) return Fail("TLS identity: " + identity.status().message());
  certs::CertificateStore certificates;
  certificates.Set(*identity);

  auto connection = ConnectCluster(
      flags.Get("kubeconfig"), std::chrono::milliseconds(static_cast<long long>(cache_ttl * 1000)),
      /*require=*/false);
  if (!connection.ok()) return Fail(connection.status().message());
  kube::ResourceLookup& cluster = *connection->lookup;

  // Block the stop signals in every thread; the main thread waits for them below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up mid-write is not a crash

  webhook::Metrics metrics(kVersion);
  webhook::Registry mutation = mutators::BuildMutationRegistry(cluster);
  webhook::Registry validation = validators::BuildValidationRegistry(cluster);
  webhook::Server server(options, mutation, validation, metrics, certificates,
                         [&cluster] { return cluster.Ready(); });
  if (Status s = server.Start(); !s.ok()) return Fail(s.message());
  log::Info("backup-guard serving",
            {{"version", kVersion}, {"namespace", flags.Get("namespace", "longhorn-system")}});

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  log::Info("stop signal received", {{"signal", signal_number}});
  server.Shutdown();
  log::Info("stopped");
  return 0;
}

}  // namespace bg::cmd
