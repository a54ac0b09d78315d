// Prometheus metrics of the admission server. Labels never carry namespaces or object names:
// they are bounded by the set of webhooks, kinds, operations and status codes.
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

#include "webhook/process_metrics.h"

namespace bg::webhook {

class Metrics {
 public:
  explicit Metrics(const std::string& version);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // `kind` and `operation` are empty when the request could not be decoded.
  void RecordAdmission(const std::string& webhook, const std::string& kind,
                       const std::string& operation, bool allowed, int code, double seconds);
  prometheus::Gauge& in_flight() { return *in_flight_; }
  // TLS connections of the admission listener: open now, and closed by reason.
  prometheus::Gauge& connections_open() { return *connections_open_; }
  void RecordConnectionClosed(const std::string& reason);

  // Shared with other layers (processor, certificates) so one /metrics serves them all.
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  // The text exposition format, version 0.0.4.
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ProcessMetrics> process_;  // read at each scrape
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* duration_;
  prometheus::Gauge* in_flight_;
  prometheus::Gauge* connections_open_;
  prometheus::Family<prometheus::Counter>* connections_closed_;
};

}  // namespace bg::webhook
