// fuzz_kubeconfig: bytes through the YAML-subset reader and the kubeconfig resolver.
//
// Properties, for every input:
//  - no crash and no exception escapes ParseYaml or ParseKubeconfig;
//  - a document ParseYaml accepts holds valid UTF-8 only (invalid UTF-8 is one of its documented
//    errors), so it serialises without error; written back as JSON (JSON is YAML) it reads back
//    as the same value (these two are checked up to a depth the checks can walk recursively);
//  - an accepted kubeconfig names a host and a port in 1..65535, and an error names its source.
//
// Relative credential paths resolve against a scratch directory holding a CA, a client pair and a
// token, so that the file-reading paths run too. Absolute paths are read as they are: a path to a
// FIFO or to /proc/kmsg would block (as it would for kubectl); run-fuzz.sh keeps stdin closed.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "fuzz/fuzz_check.h"
#include "kube/kubeconfig.h"
#include "kube/yaml_subset.h"

namespace {

using nlohmann::json;

const char kScratchDir[] = "/tmp/backup-guard-fuzz-kubeconfig";

void WriteScratchFiles() {
  ::mkdir(kScratchDir, 0700);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
      {"client.crt", "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"},
      {"client.key", "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"},
      {"token", "eyJhbGciOiJSUzI1NiJ9.fuzz.token\n"},
  };
  for (const auto& [name, content] : files) {
    std::ofstream(std::string(kScratchDir) + "/" + name, std::ios::trunc) << content;
  }
}

// The checks below serialise and compare documents recursively; deeper ones (only a JSON
// document can be, YAML nesting is capped at kMaxYamlDepth) are left to ParseYaml alone.
constexpr size_t kMaxCheckedDepth = 512;

struct Shape {
  size_t depth = 0;
  bool finite = true;  // no NaN or infinity, which JSON cannot write (nlohmann writes null)
};

Shape ShapeOf(const json& doc) {
  Shape shape;
  std::vector<std::pair<const json*, size_t>> todo = {{&doc, 0}};
  while (!todo.empty()) {
    const auto [node, depth] = todo.back();
    todo.pop_back();
    shape.depth = std::max(shape.depth, depth);
    if (node->is_number_float() && !std::isfinite(node->get<double>())) shape.finite = false;
    if (node->is_structured()) {
      for (const json& child : *node) todo.push_back({&child, depth + 1});
    }
  }
  return shape;
}

void CheckYaml(std::string_view text) {
  bg::Result<json> parsed = bg::kube::ParseYaml(text);
  if (!parsed.ok()) {
    BG_FUZZ_CHECK(parsed.status().code() == bg::Status::Code::kInvalidArgument,
                  "ParseYaml error of another code: " + parsed.status().message());
    BG_FUZZ_CHECK(parsed.status().message().starts_with("yaml: "),
                  "ParseYaml error without its prefix: " + parsed.status().message());
    return;
  }
  const Shape shape = ShapeOf(parsed.value());
  if (shape.depth > kMaxCheckedDepth) return;
  std::string written;
  try {
    written = parsed.value().dump();  // strict: throws on invalid UTF-8
  } catch (const json::exception& e) {
    BG_FUZZ_FAIL(std::string("ParseYaml accepted a document that is not valid UTF-8: ") + e.what());
  }
  if (!shape.finite) return;
  bg::Result<json> reread = bg::kube::ParseYaml(written);
  BG_FUZZ_CHECK(reread.ok(), "the JSON form of an accepted document is refused: " +
                                 reread.status().message() + "\nJSON: " + written);
  BG_FUZZ_CHECK(reread.value() == parsed.value(),
                "the JSON form reads back differently: " + written + " vs " +
                    reread.value().dump(-1, ' ', false, json::error_handler_t::replace));
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
    CheckYaml(text);
    CheckKubeconfig(text);
  } catch (const std::exception& e) {
    BG_FUZZ_FAIL(std::string("exception escaped: ") + e.what());
  }
  return 0;
}
