// Chooses the cluster connection for a command: the --kubeconfig file, else the in-cluster
// service account, else none (admission only; lookups then find nothing).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"
#include "kube/lookup.h"

namespace bg::cmd {

Result<std::unique_ptr<kube::ResourceLookup>> MakeLookup(const std::string& kubeconfig,
                                                         std::chrono::milliseconds cache_ttl);

}  // namespace bg::cmd
