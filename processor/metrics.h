// Prometheus metrics of the finalizer processor, registered on the server's shared registry.
// Labels are kinds, reasons and results only: never namespaces or object names.
//
// Thread-safety: every method is safe from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "processor/workqueue.h"

namespace bg::processor {

class ProcessorMetrics {
 public:
  // `lease` names the leader-election Lease (the `name` of leader_election_master_status).
  explicit ProcessorMetrics(prometheus::Registry& registry,
                            const std::string& lease = "backup-guard");
  ProcessorMetrics(const ProcessorMetrics&) = delete;
  ProcessorMetrics& operator=(const ProcessorMetrics&) = delete;

  void Released(const std::string& kind, const std::string& reason);
  void Reconciled(const std::string& kind, const std::string& result, double seconds);
  void Retried() { retries_->Increment(); }
  void SetDepth(double depth) {
    depth_->Set(depth);
    queue_depth_->Set(depth);
  }
  // The work queue's client-go families (workqueue_*{name="backup-guard"}).
  QueueObserver* queue_observer() { return queue_observer_.get(); }
  void SetUnfinished(double total_seconds, double longest_seconds) {
    unfinished_->Set(total_seconds);
    longest_->Set(longest_seconds);
  }
  void SetDeleting(const std::string& kind, double count, double oldest_age_seconds);
  void SetLeader(bool leader) {
    leader_->Set(leader ? 1 : 0);
    master_status_->Set(leader ? 1 : 0);
  }

 private:
  prometheus::Family<prometheus::Counter>* releases_;
  prometheus::Family<prometheus::Counter>* reconciles_;
  prometheus::Histogram* duration_;
  prometheus::Gauge* depth_;
  prometheus::Counter* retries_;
  prometheus::Family<prometheus::Gauge>* deleting_;
  prometheus::Family<prometheus::Gauge>* oldest_;
  prometheus::Gauge* leader_;
  prometheus::Gauge* master_status_;  // client-go's leader_election_master_status{name}
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* unfinished_;
  prometheus::Gauge* longest_;
  std::unique_ptr<QueueObserver> queue_observer_;
};

}  // namespace bg::processor
