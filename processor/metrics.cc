#include "processor/metrics.h"

namespace bg::processor {

namespace {

// Work is milliseconds (a cache read and a write or two) and waits are bounded by the backoff
// cap (a few minutes), as client-go's buckets assume.
const prometheus::Histogram::BucketBoundaries kQueueBuckets = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2,
                                                               1e-1, 1,    10,   100,  1000};

class QueueMetrics final : public QueueObserver {
 public:
  QueueMetrics(prometheus::Registry& registry, const std::string& name) {
    const prometheus::Labels labels = {{"name", name}};
    adds_ = &prometheus::BuildCounter()
                 .Name("workqueue_adds_total")
                 .Help("Total number of adds handled by workqueue.")
                 .Register(registry)
                 .Add(labels);
    retries_ = &prometheus::BuildCounter()
                    .Name("workqueue_retries_total")
                    .Help("Total number of retries handled by workqueue.")
                    .Register(registry)
                    .Add(labels);
    waited_ = &prometheus::BuildHistogram()
                   .Name("workqueue_queue_duration_seconds")
                   .Help("How long in seconds an item stays in workqueue before being requested.")
                   .Register(registry)
                   .Add(labels, kQueueBuckets);
    worked_ = &prometheus::BuildHistogram()
                   .Name("workqueue_work_duration_seconds")
                   .Help("How long in seconds processing an item from workqueue takes.")
                   .Register(registry)
                   .Add(labels, kQueueBuckets);
  }
  void Added() override { adds_->Increment(); }
  void Waited(double seconds) override { waited_->Observe(seconds); }
  void Worked(double seconds) override { worked_->Observe(seconds); }
  void Retried() override { retries_->Increment(); }

 private:
  prometheus::Counter* adds_;
  prometheus::Counter* retries_;
  prometheus::Histogram* waited_;
  prometheus::Histogram* worked_;
};

}  // namespace

ProcessorMetrics::ProcessorMetrics(prometheus::Registry& registry, const std::string& lease) {
  releases_ = &prometheus::BuildCounter()
                   .Name("backup_guard_finalizer_releases_total")
                   .Help("Finalizers released, by kind and the rule that allowed it.")
                   .Register(registry);
  reconciles_ = &prometheus::BuildCounter()
                     .Name("backup_guard_reconcile_total")
                     .Help("Reconciliations, by kind and result (success, error).")
                     .Register(registry);
  // A reconcile is a cache read plus at most a few API writes.
  duration_ = &prometheus::BuildHistogram()
                   .Name("backup_guard_reconcile_duration_seconds")
                   .Help("Time to reconcile one object.")
                   .Register(registry)
                   .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.001, 0.005, 0.01,
                                                                    0.05, 0.1, 0.5, 1, 5, 10});
  depth_ = &prometheus::BuildGauge()
                .Name("backup_guard_workqueue_depth")
                .Help("Keys waiting in the work queue.")
                .Register(registry)
                .Add({});
  retries_ = &prometheus::BuildCounter()
                  .Name("backup_guard_workqueue_retries_total")
                  .Help("Keys re-queued with backoff after a failed reconcile.")
                  .Register(registry)
                  .Add({});
  deleting_ = &prometheus::BuildGauge()
                   .Name("backup_guard_objects_deleting")
                   .Help("Objects being deleted that still carry the longhorn.io finalizer.")
                   .Register(registry);
  oldest_ = &prometheus::BuildGauge()
                 .Name("backup_guard_objects_deleting_oldest_age_seconds")
                 .Help("Age of the oldest deletion still held by the longhorn.io finalizer.")
                 .Register(registry);
  leader_ = &prometheus::BuildGauge()
                 .Name("backup_guard_leader")
                 .Help("1 while this replica holds the lease and runs the processor.")
                 .Register(registry)
                 .Add({});
  // The name and meaning client-go's leader election gives it, for dashboards and alerts
  // written for any controller.
  master_status_ = &prometheus::BuildGauge()
                        .Name("leader_election_master_status")
                        .Help("1 while this replica is the leader of the lease `name`, else 0.")
                        .Register(registry)
                        .Add({{"name", lease}});
  // client-go's workqueue families, for the queue named as client-go's controllers name theirs.
  constexpr char kQueueName[] = "backup-guard";
  auto queue_gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(
        {{"name", kQueueName}});
  };
  queue_depth_ = queue_gauge("workqueue_depth", "Current depth of workqueue.");
  unfinished_ = queue_gauge("workqueue_unfinished_work_seconds",
                            "How many seconds of work has been done that is in progress and hasn't "
                            "been observed by work_duration.");
  longest_ = queue_gauge("workqueue_longest_running_processor_seconds",
                         "How many seconds has the longest running processor for workqueue been "
                         "running.");
  queue_observer_ = std::make_unique<QueueMetrics>(registry, kQueueName);
}

void ProcessorMetrics::Released(const std::string& kind, const std::string& reason) {
  releases_->Add({{"kind", kind}, {"reason", reason}}).Increment();
}

void ProcessorMetrics::Reconciled(const std::string& kind, const std::string& result,
                                  double seconds) {
  reconciles_->Add({{"kind", kind}, {"result", result}}).Increment();
  duration_->Observe(seconds);
}

void ProcessorMetrics::SetDeleting(const std::string& kind, double count, double oldest) {
  deleting_->Add({{"kind", kind}}).Set(count);
  oldest_->Add({{"kind", kind}}).Set(oldest);
}

}  // namespace bg::processor
