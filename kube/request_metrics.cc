#include "kube/request_metrics.h"

#include <chrono>
#include <utility>

namespace bg::kube {

namespace {
// client-go's buckets (k8s.io/component-base/metrics/prometheus/restclient): from a local read
// in a few ms to a request that waited out a slow API server's minute.
const prometheus::Histogram::BucketBoundaries kDurationBuckets = {
    0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0};
}  // namespace

RequestMetrics::RequestMetrics(prometheus::Registry& registry)
    : requests_(&prometheus::BuildCounter()
                     .Name("rest_client_requests_total")
                     .Help("Number of HTTP requests, partitioned by status code, method, and host.")
                     .Register(registry)),
      duration_(&prometheus::BuildHistogram()
                     .Name("rest_client_request_duration_seconds")
                     .Help("Request latency in seconds. Broken down by verb, and host.")
                     .Register(registry)) {}

void RequestMetrics::Record(std::string_view method, const std::string& host,
                            const std::string& code, double seconds) {
  const std::string verb(method);
  requests_->Add({{"code", code}, {"method", verb}, {"host", host}}).Increment();
  duration_->Add({{"verb", verb}, {"host", host}}, kDurationBuckets).Observe(seconds);
}

std::string ApiHostLabel(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

MetricsRecordingTransport::MetricsRecordingTransport(std::shared_ptr<ApiTransport> inner,
                                                     RequestMetrics* metrics, std::string host,
                                                     const Clock* clock)
    : inner_(std::move(inner)),
      metrics_(metrics),
      host_(std::move(host)),
      clock_(clock != nullptr ? clock : Clock::Real()) {}

double MetricsRecordingTransport::SecondsSince(Clock::TimePoint start) const {
  return std::chrono::duration<double>(clock_->Now() - start).count();
}

Result<HttpResponse> MetricsRecordingTransport::Request(std::string_view method,
                                                        const std::string& path_and_query,
                                                        const std::string& body,
                                                        std::string_view content_type) {
  const Clock::TimePoint start = clock_->Now();
  Result<HttpResponse> response = inner_->Request(method, path_and_query, body, content_type);
  metrics_->Record(method, host_,
                   response.ok() ? std::to_string(response->status) : std::string(kNoAnswerCode),
                   SecondsSince(start));
  return response;
}

Status MetricsRecordingTransport::Stream(std::string_view method, const std::string& path_and_query,
                                         const std::atomic<bool>& stop,
                                         const std::function<bool(int status)>& on_status,
                                         const std::function<bool(std::string_view)>& on_chunk) {
  const Clock::TimePoint start = clock_->Now();
  bool answered = false;
  Status s = inner_->Stream(
      method, path_and_query, stop,
      [&](int status) {
        if (!answered) {
          answered = true;
          metrics_->Record(method, host_, std::to_string(status), SecondsSince(start));
        }
        return on_status(status);
      },
      on_chunk);
  if (!answered && !s.ok()) {
    metrics_->Record(method, host_, kNoAnswerCode, SecondsSince(start));
  }
  return s;
}

}  // namespace bg::kube
