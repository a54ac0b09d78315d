// Chooses the cluster connection for a command: --kubeconfig, else the files of $KUBECONFIG
// merged, else the in-cluster service account, else ~/.kube/config (kube::LoadClusterConfig);
// --context picks the context. Without any of them a command runs without a cluster or fails.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"
#include "kube/kubeconfig.h"
#include "kube/lookup.h"
#include "kube/transport.h"

namespace bg::cmd {

struct ClusterConnection {
  std::shared_ptr<kube::ApiTransport> transport;  // null when there is no cluster
  std::unique_ptr<kube::ResourceLookup> lookup;   // never null
  std::string api_host;                           // the API server's "host:port", for metrics
};

// The cluster the --kubeconfig and --context values select, with $KUBECONFIG and $HOME from the
// environment. NotFound when nothing names a cluster; errors name the flag or file at fault.
Result<kube::ClusterConfig> SelectCluster(const std::string& kubeconfig,
                                          const std::string& context);

// `require` makes a missing cluster an error (commands that cannot work without one).
Result<ClusterConnection> ConnectCluster(const std::string& kubeconfig, const std::string& context,
                                         std::chrono::milliseconds cache_ttl, bool require);

}  // namespace bg::cmd
