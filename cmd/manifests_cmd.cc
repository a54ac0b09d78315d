// `backup-guard manifests`: prints the webhook rules and RBAC resource lists that the chart and
// the e2e manifests must state (cmd/manifests.h).
#include <cstdio>
#include <string>

#include "cmd/commands.h"
#include "cmd/manifests.h"

namespace bg::cmd {

int Manifests(int argc, char** argv) {
  if (argc == 3 && (std::string(argv[2]) == "--help" || std::string(argv[2]) == "-h")) {
    std::printf(
        "usage: backup-guard manifests: print the webhook rules and the RBAC resource lists "
        "that the chart must state, from the handler registries and the kinds table\n");
    return 0;
  }
  if (argc != 2) {
    std::fprintf(stderr, "usage: backup-guard manifests (takes no flags)\n");
    return 2;
  }
  std::fputs(Manifests().c_str(), stdout);
  return 0;
}

}  // namespace bg::cmd
