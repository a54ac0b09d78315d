#include "cmd/cluster.h"

#include "common/log.h"
#include "kube/kube_lookup.h"
#include "kube/kubeconfig.h"
#include "kube/request_metrics.h"

namespace bg::cmd {

Result<kube::ClusterConfig> SelectCluster(const std::string& kubeconfig,
                                          const std::string& context) {
  Result<kube::ClusterConfig> config =
      kube::LoadClusterConfig(kube::LoadingRulesFromEnvironment(kubeconfig, context));
  if (config.ok() || config.status().IsNotFound() || kubeconfig.empty()) return config;
  return Status::InvalidArgument("--kubeconfig " + kubeconfig + ": " + config.status().message());
}

Result<ClusterConnection> ConnectCluster(const std::string& kubeconfig, const std::string& context,
                                         std::chrono::milliseconds cache_ttl, bool require) {
  Result<kube::ClusterConfig> config = SelectCluster(kubeconfig, context);
  if (!config.ok()) {
    if (!config.status().IsNotFound() || require) {
      return Status::InvalidArgument(config.status().message());
    }
    log::Info(
        "no cluster (no --kubeconfig, $KUBECONFIG, in-cluster service account or "
        "~/.kube/config): admission only, lookups find nothing");
    ClusterConnection none;
    none.lookup = std::make_unique<kube::NoClusterLookup>();
    return none;
  }
  log::Info("cluster", {{"source", config->source}});
  auto transport = kube::HttpsTransport::Create(*config);
  if (!transport.ok())
    return Status::InvalidArgument("cluster connection: " + transport.status().message());
  ClusterConnection conn;
  conn.transport = std::shared_ptr<kube::ApiTransport>(std::move(transport).value());
  conn.api_host = kube::ApiHostLabel(config->host, config->port);
  kube::KubeLookupOptions options;
  options.cache_ttl = cache_ttl;
  conn.lookup = std::make_unique<kube::KubeLookup>(conn.transport, options);
  return conn;
}

}  // namespace bg::cmd
