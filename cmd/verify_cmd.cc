// `backup-guard verify`: after a reinstall, which of an uninstall receipt's Backups and
// SystemBackups the engine has synced back from the store (processor/receipt.h).
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cmd/cluster.h"
#include "cmd/commands.h"
#include "cmd/flags.h"
#include "common/log.h"
#include "kube/file_util.h"
#include "kube/kubeconfig.h"
#include "kube/rest_api.h"
#include "kube/transport.h"
#include "processor/receipt.h"

namespace bg::cmd {

namespace {

// A receipt lists names and URLs: even a million backups stay well below this.
constexpr size_t kMaxReceiptBytes = 512u << 20;

int Fail(const std::string& message) {
  std::fprintf(stderr, "verify: %s\n", message.c_str());
  return 2;
}

void PrintTable(const processor::Verification& v, const std::string& ns, const std::string& file) {
  const size_t missing = v.missing();
  std::cout << (v.entries.size() - missing) << " of " << v.entries.size() << " backups in " << file
            << " are back in namespace " << ns;
  if (missing == 0) {
    std::cout << "; none missing" << std::endl;
  } else {
    std::cout << "; " << missing << " missing:" << std::endl;
    for (const auto& e : v.entries) {
      if (e.back) continue;
      std::cout << "  missing " << e.kind << " " << e.name;
      if (!e.volume.empty()) std::cout << " (volume " << e.volume << ")";
      std::cout << ": " << e.why << std::endl;
    }
  }
  for (const auto& e : v.entries) {
    if (e.back) std::cout << "  back " << e.kind << " " << e.name << std::endl;
  }
}

}  // namespace

int Verify(int argc, char** argv) {
  Flags flags("backup-guard verify --receipt FILE [flags]",
              {{"receipt", "", "the receipt `backup-guard uninstall` wrote (required)"},
               {"kubeconfig", "",
                "the cluster: this kubeconfig; default $KUBECONFIG (files merged), else the "
                "in-cluster service account, else ~/.kube/config"},
               {"context", "", "the kubeconfig context to use (default: its current-context)"},
               {"namespace", "", "the storage engine's namespace (default: the receipt's)"},
               {"output", "table", "table or json (also -o)"},
               {"log-level", "warn", "debug, info, warn or error"}});
  flags.Shorthand('o', "output");  // `-o json` as kubectl spells it
  if (Status s = flags.Parse(argc, argv, 2); !s.ok()) {
    return Fail(s.message());
  }
  if (!log::SetLevel(flags.Get("log-level", "warn"))) {
    return Fail("--log-level must be debug, info, warn or error");
  }
  const std::string output = flags.Get("output", "table");
  if (output != "table" && output != "json") return Fail("-o must be table or json");
  const std::string file = flags.Get("receipt");
  if (file.empty()) return Fail("--receipt FILE is required (the file `uninstall` wrote)");
  auto text = kube::ReadFileToString(file, kMaxReceiptBytes);
  if (!text.ok()) return Fail("--receipt: " + text.status().message());
  auto receipt = processor::ParseReceipt(*text);
  if (!receipt.ok()) return Fail(file + ": " + receipt.status().message());
  std::string ns = flags.Get("namespace");
  if (ns.empty()) ns = receipt->ns.empty() ? "longhorn-system" : receipt->ns;

  Result<kube::ClusterConfig> config = SelectCluster(flags.Get("kubeconfig"), flags.Get("context"));
  if (!config.ok()) return Fail(config.status().message());
  kube::TransportOptions transport_options;
  transport_options.read_timeout = std::chrono::seconds(30);
  transport_options.write_timeout = std::chrono::seconds(30);
  auto created = kube::HttpsTransport::Create(*config, transport_options);
  if (!created.ok()) return Fail("cluster connection: " + created.status().message());
  kube::RestKubeApi api(std::shared_ptr<kube::ApiTransport>(std::move(created).value()));

  auto verification = processor::VerifyReceipt(api, ns, *receipt);
  if (!verification.ok()) {
    return Fail("the cluster could not be read: " + verification.status().message());
  }
  if (output == "json") {
    std::cout << processor::ToJson(*verification, ns).dump(2) << std::endl;
  } else {
    PrintTable(*verification, ns, file);
  }
  return verification->missing() == 0 ? 0 : 1;
}

}  // namespace bg::cmd
