#include "webhook/metrics.h"

#include <prometheus/text_serializer.h>

namespace bg::webhook {

namespace {
// Admission answers are sub-millisecond when local and bounded by the webhook timeout (10 s).
const prometheus::Histogram::BucketBoundaries kDurationBuckets = {
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}  // namespace

Metrics::Metrics(const std::string& version) : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ =
      &prometheus::BuildCounter()
           .Name("backup_guard_admission_requests_total")
           .Help(
               "AdmissionReview requests answered, by webhook, kind, operation, outcome and code.")
           .Register(*registry_);
  duration_ = &prometheus::BuildHistogram()
                   .Name("backup_guard_admission_duration_seconds")
                   .Help("Time from a request's arrival to its answer, by webhook.")
                   .Register(*registry_);
  in_flight_ = &prometheus::BuildGauge()
                    .Name("backup_guard_admission_requests_in_flight")
                    .Help("AdmissionReview requests being answered now.")
                    .Register(*registry_)
                    .Add({});
  connections_open_ = &prometheus::BuildGauge()
                           .Name("backup_guard_webhook_connections_open")
                           .Help("TLS connections open on the admission listener.")
                           .Register(*registry_)
                           .Add({});
  connections_closed_ =
      &prometheus::BuildCounter()
           .Name("backup_guard_webhook_connections_closed_total")
           .Help(
               "TLS connections the admission listener closed, by reason (client, "
               "handshake_failed, handshake_timeout, request_timeout, idle_timeout, "
               "bad_request, connection_limit, max_requests, write_failed, shutdown, evicted, "
               "body_budget).")
           .Register(*registry_);
  process_ = std::make_unique<ProcessMetrics>(*registry_);
  prometheus::BuildGauge()
      .Name("backup_guard_build_info")
      .Help("Build information; the value is always 1.")
      .Register(*registry_)
      .Add({{"version", version}})
      .Set(1);
}

void Metrics::RecordAdmission(const std::string& webhook, const std::string& kind,
                              const std::string& operation, bool allowed, int code,
                              double seconds) {
  requests_
      ->Add({{"webhook", webhook},
             {"kind", kind},
             {"operation", operation},
             {"allowed", allowed ? "true" : "false"},
             {"code", std::to_string(code)}})
      .Increment();
  duration_->Add({{"webhook", webhook}}, kDurationBuckets).Observe(seconds);
}

void Metrics::RecordConnectionClosed(const std::string& reason) {
  connections_open_->Decrement();
  connections_closed_->Add({{"reason", reason}}).Increment();
}

std::string Metrics::Serialize() const {
  process_->Update();
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace bg::webhook
