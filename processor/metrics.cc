#include "processor/metrics.h"

namespace bg::processor {

ProcessorMetrics::ProcessorMetrics(prometheus::Registry& registry) {
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
