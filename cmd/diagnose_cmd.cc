// `backup-guard diagnose`: see processor/diagnose.h.
#include <httplib.h>

#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>

#include "cmd/cluster.h"
#include "cmd/commands.h"
#include "cmd/flags.h"
#include "cmd/tar_gz.h"
#include "common/log.h"
#include "common/longhorn.h"
#include "kube/kubeconfig.h"
#include "kube/rest_api.h"
#include "kube/transport.h"
#include "kube/webhook_endpoints.h"
#include "processor/diagnose.h"

namespace bg::cmd {

namespace {

using nlohmann::json;

const kube::ResourceRef kPods{"", "v1", "pods", "Pod"};
// The chart's pre-delete hook pod (charts/backup-guard/templates/uninstall-hook.yaml).
constexpr char kUninstallPodSelector[] = "app.kubernetes.io/component=uninstall";
// The last lines of an uninstall Job's log: its blockers and progress, not its whole history.
constexpr int kLogTailLines = 2000;

int Fail(const std::string& message) {
  std::fprintf(stderr, "diagnose: %s\n", message.c_str());
  return 2;
}

// GET of backup-guard's /metrics (plain HTTP, or HTTPS without verification: it is read, never
// trusted for anything but this report).
Result<std::string> FetchMetrics(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) {
    return Status::InvalidArgument("--metrics-url must be http://host:port[/path]");
  }
  const size_t path_start = url.find('/', scheme_end + 3);
  const std::string base = url.substr(0, path_start);
  std::string path = path_start == std::string::npos ? "/metrics" : url.substr(path_start);
  if (path == "/") path = "/metrics";
  httplib::Client client(base);
  if (!client.is_valid()) return Status::InvalidArgument("--metrics-url " + url + " is not valid");
  client.set_connection_timeout(std::chrono::seconds(5));
  client.set_read_timeout(std::chrono::seconds(5));
  client.enable_server_certificate_verification(false);
  auto res = client.Get(path);
  if (!res) return Status::Unavailable("GET " + url + ": " + httplib::to_string(res.error()));
  if (res->status != 200) {
    return Status::Unavailable("GET " + url + ": HTTP " + std::to_string(res->status));
  }
  return res->body;
}

// The uninstall Job's pods and their logs, into the bundle; what was found, into the report.
json CollectUninstallLogs(kube::KubeApi& api, kube::ApiTransport& transport,
                          std::vector<TarEntry>& files) {
  json found = json::array();
  auto pods = api.List(kPods, "", kUninstallPodSelector);
  if (!pods.ok()) return {{"error", pods.status().message()}};
  for (const json& pod : pods->value("items", json::array())) {
    const std::string ns = longhorn::StringAt(pod, {"metadata", "namespace"});
    const std::string name = longhorn::StringAt(pod, {"metadata", "name"});
    json entry = {
        {"namespace", ns}, {"pod", name}, {"phase", longhorn::StringAt(pod, {"status", "phase"})}};
    auto log = transport.Request(
        "GET",
        kube::ResourcePath(kPods, ns, name) + "/log?tailLines=" + std::to_string(kLogTailLines), "",
        "");
    const std::string file = "uninstall-job/" + ns + "_" + name + ".log";
    if (log.ok() && log->status == 200) {
      files.push_back({file, processor::RedactTokens(log->body)});
      entry["log"] = file;
    } else {
      entry["logError"] = log.ok() ? "HTTP " + std::to_string(log->status) + ": " +
                                         processor::RedactTokens(log->body.substr(0, 300))
                                   : log.status().message();
    }
    found.push_back(std::move(entry));
  }
  return found;
}

}  // namespace

int Diagnose(int argc, char** argv) {
  Flags flags("backup-guard diagnose [flags]",
              {{"kubeconfig", "",
                "the cluster: this kubeconfig; default $KUBECONFIG (files merged), else the "
                "in-cluster service account, else ~/.kube/config"},
               {"context", "", "the kubeconfig context to use (default: its current-context)"},
               {"namespace", "longhorn-system", "the storage engine's namespace"},
               {"output", "table", "table or json (also -o)"},
               {"bundle", "",
                "also write FILE.tar.gz: the JSON report, the metadata of every "
                "longhorn.io object, the webhook configurations, the CRDs and the "
                "uninstall Job's log (never Secret data or tokens)"},
               {"metrics-url", "",
                "backup-guard's /metrics (http://host:8080/metrics): leader, certificate "
                "expiry, last API contact"},
               {"engine-daemonset", "longhorn-manager",
                "the engine's manager DaemonSet; the engine runs when it has a ready pod"},
               {"release-grace", "90s", "the rules' uninstall grace, as `serve` and `uninstall`"},
               {"probe-timeout", "3s", "each webhook endpoint's connect and TLS handshake"},
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
  processor::DiagnoseOptions options;
  options.ns = flags.Get("namespace", "longhorn-system");
  options.engine_daemonset = flags.Get("engine-daemonset", "longhorn-manager");
  double grace = 90, probe_timeout = 3;
  if (Status s = ParseDurationSeconds(flags.Get("release-grace", "90s"), &grace); !s.ok()) {
    return Fail("--release-grace: " + s.message());
  }
  if (Status s = ParseDurationSeconds(flags.Get("probe-timeout", "3s"), &probe_timeout);
      !s.ok() || probe_timeout <= 0) {
    return Fail("--probe-timeout must be a positive duration");
  }
  options.release_grace = std::chrono::seconds(static_cast<long long>(grace));
  options.now = std::chrono::system_clock::now();
  if (flags.Has("metrics-url")) {
    options.metrics_url = flags.Get("metrics-url");
    options.metrics = FetchMetrics(options.metrics_url);
  }

  Result<kube::ClusterConfig> config = SelectCluster(flags.Get("kubeconfig"), flags.Get("context"));
  if (!config.ok()) return Fail(config.status().message());
  kube::TransportOptions transport_options;
  transport_options.read_timeout = std::chrono::seconds(30);
  transport_options.write_timeout = std::chrono::seconds(30);
  auto created = kube::HttpsTransport::Create(*config, transport_options);
  if (!created.ok()) return Fail("cluster connection: " + created.status().message());
  std::shared_ptr<kube::ApiTransport> transport(std::move(created).value());
  kube::RestKubeApi api(transport);

  const auto timeout = std::chrono::milliseconds(static_cast<long long>(probe_timeout * 1000));
  const kube::TlsProber prober = [timeout](const std::string& host, int port,
                                           const std::string& server_name, const std::string& ca) {
    return kube::ProbeTls(host, port, server_name, ca, timeout);
  };
  Result<processor::Diagnosis> diagnosis = processor::Diagnose(api, options, prober);
  if (!diagnosis.ok())
    return Fail("the cluster could not be read: " + diagnosis.status().message());
  json& report = diagnosis->report;

  if (flags.Has("bundle")) {
    std::vector<TarEntry> files;
    report["uninstallJob"] = CollectUninstallLogs(api, *transport, files);
    files.insert(files.begin(), TarEntry{"diagnose.json", report.dump(2) + "\n"});
    for (auto it = diagnosis->bundle.begin(); it != diagnosis->bundle.end(); ++it) {
      files.push_back({it.key(), it.value().dump(2) + "\n"});
    }
    const std::string path = flags.Get("bundle");
    if (Status s = WriteTarGz(path, files, std::time(nullptr)); !s.ok()) {
      std::fprintf(stderr, "diagnose: --bundle: %s\n", s.message().c_str());
      return 2;
    }
    std::fprintf(stderr, "diagnose: bundle written to %s\n", path.c_str());
  }
  if (output == "json") {
    std::cout << report.dump(2) << std::endl;
  } else {
    std::cout << processor::RenderTable(report) << std::flush;
  }
  return processor::ExitStatus(report);
}

}  // namespace bg::cmd
