// Chooses the cluster connection for a command: the --kubeconfig file, else the in-cluster
// service account, else none (admission only; lookups then find nothing).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"
#include "kube/lookup.h"
#include "kube/transport.h"

namespace bg::cmd {

struct ClusterConnection {
  std::shared_ptr<kube::ApiTransport> transport;  // null when there is no cluster
  std::unique_ptr<kube::ResourceLookup> lookup;   // never null
  std::string api_host;                           // the API server's "host:port", for metrics
};

// `require` makes a missing cluster an error (commands that cannot work without one).
Result<ClusterConnection> ConnectCluster(const std::string& kubeconfig,
                                         std::chrono::milliseconds cache_ttl, bool require);

}  // namespace bg::cmd
