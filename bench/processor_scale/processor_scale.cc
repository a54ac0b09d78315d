// The processor's cost at scale (issue 14, suspect 3): a Controller over an in-memory API holding
// N Backups (default 50,000) and N/10 BackupVolumes, shaped as the API server returns them
// (managedFields included). Prints one Markdown table row:
//   cache memory  resident set growth from before the caches are filled to when they are synced;
//   relist        from a watch that cannot resume (410) until the relist has been handled: the
//                 list copied in and every name it reports re-queued and reconciled;
//   event         from one new unlabelled Backup being deleted until its finalizer is released,
//                 median and max of 20, while the deleting-metrics refresh runs every 2 s.
// Uses only the processor's public API, so the same file measures an older tree.
// Usage: processor_scale [N]
#include <malloc.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "domain/kinds.h"
#include "processor/controller.h"
#include "processor/metrics.h"
#include "tests/testing/fake_kube_api.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
constexpr char kNs[] = "longhorn-system";

long RssKiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

// What kube-apiserver adds to every object written by a controller: about 1 KiB of
// managedFields (longhorn-manager's field ownership of spec, status and labels).
json ManagedFields() {
  json fields = {{"f:metadata", {{"f:labels", json::object()}, {"f:finalizers", json::object()}}},
                 {"f:spec", json::object()},
                 {"f:status", json::object()}};
  for (const char* f : {"f:backupCreatedAt", "f:compressionMethod", "f:labels", "f:lastSyncedAt",
                        "f:messages", "f:progress", "f:replicaAddress", "f:size", "f:snapshotName",
                        "f:state", "f:url", "f:volumeName", "f:volumeSize", "f:backupTargetName"}) {
    fields["f:status"][f] = json::object();
  }
  return json::array({{{"manager", "longhorn-manager"},
                       {"operation", "Update"},
                       {"apiVersion", "longhorn.io/v1beta2"},
                       {"time", "2026-11-01T10:00:00Z"},
                       {"fieldsType", "FieldsV1"},
                       {"fieldsV1", fields}},
                      {{"manager", "longhorn-manager"},
                       {"operation", "Update"},
                       {"apiVersion", "longhorn.io/v1beta2"},
                       {"time", "2026-11-01T10:00:00Z"},
                       {"fieldsType", "FieldsV1"},
                       {"subresource", "status"},
                       {"fieldsV1", {{"f:status", fields["f:status"]}}}}});
}

json Backup(int i, const json& managed) {
  const std::string volume = "pvc-" + std::to_string(i % 5000);
  return {
      {"apiVersion", "longhorn.io/v1beta2"},
      {"kind", "Backup"},
      {"metadata",
       {{"name", "backup-" + std::to_string(i)},
        {"namespace", kNs},
        {"uid", "0a1b2c3d-0000-4000-8000-" + std::to_string(100000000000 + i)},
        {"creationTimestamp", "2026-11-01T10:00:00Z"},
        {"generation", 1},
        {"finalizers", {"longhorn.io"}},
        {"labels", {{"backup-volume", volume}, {"backup-target", "default"}}},
        {"managedFields", managed}}},
      {"spec", {{"snapshotName", "snap-" + std::to_string(i)}, {"labels", json::object()}}},
      {"status",
       {{"state", "Completed"},
        {"backupTargetName", "default"},
        {"url", "s3://backups@us-east-1/?backup=backup-" + std::to_string(i) + "&volume=" + volume},
        {"size", "2147483648"},
        {"volumeName", volume},
        {"volumeSize", "10737418240"},
        {"snapshotName", "snap-" + std::to_string(i)},
        {"progress", 100},
        {"backupCreatedAt", "2026-11-01T10:00:00Z"},
        {"lastSyncedAt", "2026-11-01T10:05:00Z"},
        {"compressionMethod", "lz4"}}}};
}

json BackupVolume(int i, const json& managed) {
  const std::string volume = "pvc-" + std::to_string(i);
  return {{"apiVersion", "longhorn.io/v1beta2"},
          {"kind", "BackupVolume"},
          {"metadata",
           {{"name", volume + "-bv"},
            {"namespace", kNs},
            {"finalizers", {"longhorn.io"}},
            {"labels", {{"backup-volume", volume}, {"backup-target", "default"}}},
            {"managedFields", managed}}},
          {"spec", {{"volumeName", volume}, {"backupTargetName", "default"}}},
          {"status", {{"lastBackupName", "backup-" + std::to_string(i)}, {"size", "1"}}}};
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::seconds bound) {
  const auto until = Clock::now() + bound;
  while (!pred()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

int main(int argc, char** argv) {
  mallopt(M_ARENA_MAX, 2);  // as the server does (cmd/main.cc)
  const int n = argc > 1 ? std::atoi(argv[1]) : 50000;
  if (n < 10) {
    std::fprintf(stderr, "usage: processor_scale [N >= 10]\n");
    return 2;
  }
  bg::testing::FakeKubeApi api;
  const json managed = ManagedFields();
  api.Seed(
      bg::domain::Resource("backuptargets"),
      {{"metadata", {{"name", "default"}, {"namespace", kNs}, {"finalizers", {"longhorn.io"}}}},
       {"spec", {{"backupTargetURL", "s3://backups@us-east-1/"}}},
       {"status", {{"available", true}}}});
  for (int i = 0; i < n / 10; ++i) {
    api.SeedSilently(bg::domain::Resource("backupvolumes"), BackupVolume(i, managed));
  }
  for (int i = 0; i < n; ++i) {
    api.SeedSilently(bg::domain::Resource("backups"), Backup(i, managed));
  }
  const std::size_t object_bytes = Backup(1, managed).dump().size();
  malloc_trim(0);
  const long rss_before = RssKiB();

  prometheus::Registry registry;
  bg::processor::ProcessorMetrics metrics(registry, "backup-guard");
  bg::processor::ControllerOptions options;
  options.ns = kNs;
  options.workers = 4;
  options.resync = std::chrono::seconds(3600);  // only what the events cause
  bg::processor::Controller controller(api, options, &metrics, [] { return true; });
  const auto start = Clock::now();
  controller.Start();
  if (!WaitFor([&] { return controller.Synced(); }, std::chrono::seconds(600))) {
    std::fprintf(stderr, "caches did not sync\n");
    return 1;
  }
  const double sync_ms = Ms(Clock::now() - start);
  // The initial reconciles (every name) run to their end before anything is measured.
  auto reconciled = [&] {
    for (const auto& f : registry.Collect()) {
      if (f.name != "backup_guard_reconcile_duration_seconds") continue;
      double count = 0;
      for (const auto& m : f.metric) count += static_cast<double>(m.histogram.sample_count);
      return count;
    }
    return 0.0;
  };
  auto settle = [&] {
    double last = -1;
    while (true) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      const double now = reconciled();
      if (now == last) return now;
      last = now;
    }
  };
  settle();
  malloc_trim(0);
  const long rss_synced = RssKiB();

  // Relist: the watch cannot resume (410); the relist and what it re-queues.
  const double before_relist = reconciled();
  const auto relist_start = Clock::now();
  api.SeedAndCompact(bg::domain::Resource("backups"), Backup(n, managed));
  api.EndWatches();
  if (!WaitFor(
          [&] {
            auto got = controller.view().Get("backups", kNs, "backup-" + std::to_string(n));
            return got.ok() && got->has_value();
          },
          std::chrono::seconds(600))) {
    std::fprintf(stderr, "relist did not bring the new Backup\n");
    return 1;
  }
  const double after_relist = settle();
  const double relist_ms = Ms(Clock::now() - relist_start) - 300;  // settle's last quiet period
  const double requeued = after_relist - before_relist;

  // Event latency: an unlabelled Backup, deleted, is released at once by the rules.
  std::vector<double> latencies;
  for (int i = 0; i < 20; ++i) {
    const std::string name = "unlabelled-" + std::to_string(i);
    json b = {{"metadata",
               {{"name", name},
                {"namespace", kNs},
                {"finalizers", {"longhorn.io"}},
                {"deletionTimestamp", "2026-11-01T10:00:00Z"}}},
              {"status", {{"state", "Error"}}}};
    const auto t0 = Clock::now();
    api.Seed(bg::domain::Resource("backups"), b);
    if (!WaitFor([&] { return !api.Peek(bg::domain::Resource("backups"), kNs, name); },
                 std::chrono::seconds(120))) {
      std::fprintf(stderr, "%s was never released\n", name.c_str());
      return 1;
    }
    latencies.push_back(Ms(Clock::now() - t0));
    std::this_thread::sleep_for(std::chrono::milliseconds(250));  // spread over metric refreshes
  }
  std::sort(latencies.begin(), latencies.end());
  controller.Stop();

  const int volumes = n / 10;
  const double cache_kib = static_cast<double>(rss_synced - rss_before);
  std::printf(
      "| %d | %d | %zu B | %.0f MiB (%.1f KiB/object) | %.0f ms | %.0f ms, %.0f re-queued | "
      "%.1f ms / %.1f ms |\n",
      n, volumes, object_bytes, cache_kib / 1024.0, cache_kib / static_cast<double>(n + volumes),
      sync_ms, relist_ms, requeued, latencies[latencies.size() / 2], latencies.back());
  return 0;
}
