// fuzz_kubeconfig: bytes through kubeconfig loading: yaml-cpp, the YAML-to-JSON step (depth and
// alias-expansion bounds) and the kubeconfig resolver, alone and merged after a valid file.
//
// Properties, for every input:
//  - no crash and no exception escapes ParseKubeconfig or LoadMergedKubeconfig;
//  - an accepted kubeconfig names a host and a port in 1..65535, and an error names its source;
//  - an accepted exec entry has an apiVersion and a command;
//  - merged after a valid kubeconfig that sets the current context, the input never changes
//    which server that context reaches (the first file to define a name wins).
//
// Relative credential paths resolve against a scratch directory holding a CA, a client pair and a
// token, so that the file-reading paths run too. Absolute paths are read as they are: a path to a
// FIFO or to /proc/kmsg would block (as it would for kubectl); run-fuzz.sh keeps stdin closed.
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "fuzz/fuzz_check.h"
#include "kube/kubeconfig.h"

namespace {

const char kScratchDir[] = "/tmp/backup-guard-fuzz-kubeconfig";

void WriteScratchFiles() {
  ::mkdir(kScratchDir, 0700);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
      {"client.crt", "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"},
      {"client.key", "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"},
      {"token", "eyJhbGciOiJSUzI1NiJ9.fuzz.token\n"},
      {"first.yaml",
       "current-context: fuzz-first\n"
       "contexts: [{name: fuzz-first, context: {cluster: fuzz-first}}]\n"
       "clusters: [{name: fuzz-first, cluster: {server: 'https://first.invalid:1234'}}]\n"},
  };
  for (const auto& [name, content] : files) {
    std::ofstream(std::string(kScratchDir) + "/" + name, std::ios::trunc) << content;
  }
}

void CheckKubeconfig(std::string_view text) {
  bg::Result<bg::kube::ClusterConfig> config =
      bg::kube::ParseKubeconfig(text, kScratchDir, "", "fuzz");
  if (!config.ok()) {
    BG_FUZZ_CHECK(config.status().message().starts_with("fuzz"),
                  "kubeconfig error that does not name its source: " + config.status().message());
    return;
  }
  BG_FUZZ_CHECK(!config->host.empty(), "accepted kubeconfig without a host");
  BG_FUZZ_CHECK(config->port >= 1 && config->port <= 65535,
                "accepted kubeconfig with port " + std::to_string(config->port));
  if (config->exec) {
    BG_FUZZ_CHECK(!config->exec->api_version.empty() && !config->exec->command.empty(),
                  "accepted exec entry without apiVersion or command");
  }
}

// The input as the second file of $KUBECONFIG, after one that sets the current context.
void CheckMerged(std::string_view text) {
  const std::string second = std::string(kScratchDir) + "/second.yaml";
  std::ofstream(second, std::ios::trunc | std::ios::binary) << text;
  bg::Result<bg::kube::ClusterConfig> config =
      bg::kube::LoadMergedKubeconfig({std::string(kScratchDir) + "/first.yaml", second});
  if (!config.ok()) {
    BG_FUZZ_CHECK(
        config.status().message().starts_with("kubeconfig"),
        "merged kubeconfig error that does not name its source: " + config.status().message());
    return;
  }
  BG_FUZZ_CHECK(config->host == "first.invalid" && config->port == 1234,
                "the second file changed the first file's context to " + config->host);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bg::log::SetLevel("error");
  WriteScratchFiles();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    CheckKubeconfig(text);
    CheckMerged(text);
  } catch (const std::exception& e) {
    BG_FUZZ_FAIL(std::string("exception escaped: ") + e.what());
  }
  return 0;
}
