// `backup-guard sleep DURATION`: the preStop delay for images that have no shell. While the pod
// sleeps, endpoints controllers remove it from the Service, so the API server stops calling it
// before SIGTERM arrives.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "cmd/commands.h"
#include "cmd/flags.h"

namespace bg::cmd {

int Sleep(int argc, char** argv) {
  double seconds = 0;
  if (argc == 3 && (std::string(argv[2]) == "--help" || std::string(argv[2]) == "-h")) {
    std::printf(
        "usage: backup-guard sleep DURATION (Go's form, e.g. 5s or 1m30s): wait, then "
        "exit 0\n");
    return 0;
  }
  if (argc != 3 || !ParseDurationSeconds(argv[2], &seconds).ok()) {
    std::fprintf(stderr, "usage: backup-guard sleep DURATION (e.g. 5s)\n");
    return 2;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long long>(seconds * 1000)));
  return 0;
}

}  // namespace bg::cmd
