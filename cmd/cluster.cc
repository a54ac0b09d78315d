#include "cmd/cluster.h"

#include "common/log.h"

namespace bg::cmd {

Result<std::unique_ptr<kube::ResourceLookup>> MakeLookup(const std::string& kubeconfig,
                                                         std::chrono::milliseconds) {
  // Wired to kube::KubeLookup once the client layer lands.
  if (!kubeconfig.empty()) log::Warn("kubeconfig not used yet", {{"path", kubeconfig}});
  return std::unique_ptr<kube::ResourceLookup>(new kube::NoClusterLookup());
}

}  // namespace bg::cmd
