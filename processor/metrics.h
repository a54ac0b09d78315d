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

#include <string>

namespace bg::processor {

class ProcessorMetrics {
 public:
  explicit ProcessorMetrics(prometheus::Registry& registry);
  ProcessorMetrics(const ProcessorMetrics&) = delete;
  ProcessorMetrics& operator=(const ProcessorMetrics&) = delete;

  void Released(const std::string& kind, const std::string& reason);
  void Reconciled(const std::string& kind, const std::string& result, double seconds);
  void Retried() { retries_->Increment(); }
  void SetDepth(double depth) { depth_->Set(depth); }
  void SetDeleting(const std::string& kind, double count, double oldest_age_seconds);
  void SetLeader(bool leader) { leader_->Set(leader ? 1 : 0); }

 private:
  prometheus::Family<prometheus::Counter>* releases_;
  prometheus::Family<prometheus::Counter>* reconciles_;
  prometheus::Histogram* duration_;
  prometheus::Gauge* depth_;
  prometheus::Counter* retries_;
  prometheus::Family<prometheus::Gauge>* deleting_;
  prometheus::Family<prometheus::Gauge>* oldest_;
  prometheus::Gauge* leader_;
};

}  // namespace bg::processor
