#include "cmd/cluster.h"

#include "common/log.h"
#include "kube/kube_lookup.h"
#include "kube/kubeconfig.h"
#include "kube/request_metrics.h"

namespace bg::cmd {

Result<ClusterConnection> ConnectCluster(const std::string& kubeconfig,
                                         std::chrono::milliseconds cache_ttl, bool require) {
  Result<kube::ClusterConfig> config =
      kubeconfig.empty() ? kube::InClusterConfig() : kube::LoadKubeconfig(kubeconfig);
  if (!config.ok()) {
    if (!kubeconfig.empty() || require) {
      return Status::InvalidArgument((kubeconfig.empty() ? std::string("in-cluster config: ")
                                                         : "--kubeconfig " + kubeconfig + ": ") +
                                     config.status().message());
    }
    log::Info("no kubeconfig and not in a cluster: admission only, lookups find nothing");
    ClusterConnection none;
    none.lookup = std::make_unique<kube::NoClusterLookup>();
    return none;
  }
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
