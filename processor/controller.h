// Controller: the finalizer processor inside `backup-guard serve`.
//
//   watch event -> Informer cache -> WorkQueue key "resource/name" -> rule (rules.h) -> Executor
//
// Informers run on every replica so a new leader starts with warm caches; workers act only while
// `is_leader()` is true, checked again before every write. A periodic resync re-queues every
// object, and an object held only by the uninstall grace period is re-queued when it expires.
//
// Thread-safety: Start() and Stop() from one thread; everything else is internal.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "domain/deletion_clock.h"
#include "kube/api.h"
#include "kube/clock.h"
#include "kube/informer.h"
#include "kube/lookup.h"
#include "processor/executor.h"
#include "processor/metrics.h"
#include "processor/workqueue.h"

namespace bg::processor {

struct ControllerOptions {
  std::string ns = "longhorn-system";
  int workers = 4;
  std::chrono::seconds resync{30};
  std::chrono::seconds release_grace{90};
  std::chrono::milliseconds backoff_base{100};
  std::chrono::milliseconds backoff_max{60000};
  // The monotonic clock of the uninstall grace (DeletionClock), the work queue's delays and
  // backoff, and the resync period; null: the real one. Must outlive the controller.
  const kube::Clock* clock = nullptr;
};

// A ResourceLookup over informer caches. A cache never fails a read.
class CacheLookup final : public kube::ResourceLookup {
 public:
  CacheLookup(std::string ns, std::map<std::string, kube::Informer*> informers);
  kube::GetResult Get(std::string_view resource, std::string_view ns,
                      std::string_view name) override;
  kube::ListResult List(std::string_view resource, std::string_view ns,
                        std::string_view label_selector) override;
  bool Ready() override;

 private:
  kube::Informer* Find(std::string_view resource, std::string_view ns) const;
  const std::string ns_;
  const std::map<std::string, kube::Informer*> informers_;
};

class Controller {
 public:
  Controller(kube::KubeApi& api, ControllerOptions options, ProcessorMetrics* metrics,
             std::function<bool()> is_leader);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  void Start();
  void Stop();
  // Re-queues every cached object (called when this replica becomes leader).
  void EnqueueAll();
  bool Synced();
  kube::ResourceLookup& view() { return *view_; }

  // One reconcile of `key`, as a worker runs it; public for tests.
  Status Reconcile(const std::string& key);

 private:
  void OnChange(const std::string& resource, const std::string& name);
  void WorkerLoop();
  void ResyncLoop();
  void UpdateDeletingMetrics();
  domain::RuleContext Context();
  kube::Informer* InformerFor(const std::string& resource) const;

  kube::KubeApi& api_;
  const ControllerOptions options_;
  ProcessorMetrics* metrics_;  // may be null
  const std::function<bool()> is_leader_;
  Executor executor_;
  const kube::Clock* const clock_;
  domain::DeletionClock deletions_;
  WorkQueue queue_;
  std::map<std::string, std::unique_ptr<kube::Informer>> informers_;
  std::unique_ptr<CacheLookup> view_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace bg::processor
