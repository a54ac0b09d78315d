// client-go's REST client metrics for every exchange with the Kubernetes API, registered on the
// server's shared registry with client-go's names and labels, so that dashboards and alerts
// written for any controller read them:
//
//   rest_client_requests_total{code,method,host}          answers by HTTP status; code "<error>"
//                                                         when no answer arrived (refused, reset,
//                                                         TLS failure, timeout, body too large)
//   rest_client_request_duration_seconds{verb,host}       histogram: from sending the request to
//                                                         the whole answer; for a stream (watch),
//                                                         to its status line, as a watch's body
//                                                         lasts minutes by design
//
// `method` and `verb` are the HTTP method ("GET", "PATCH", ...), `host` is the API server's
// host:port as in the request URL. Paths are never labels: they carry namespaces and names.
//
// MetricsRecordingTransport is the choke point: an ApiTransport decorator that every API user of
// the process (lookups, processor lists and watches, writes, leader election, certificates, the
// health probe) goes through once.
//
// Thread-safety: every method is safe from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <string_view>

#include "kube/clock.h"
#include "kube/transport.h"

namespace bg::kube {

// The `code` of an exchange that got no HTTP answer (client-go's spelling).
inline constexpr char kNoAnswerCode[] = "<error>";

class RequestMetrics {
 public:
  explicit RequestMetrics(prometheus::Registry& registry);
  RequestMetrics(const RequestMetrics&) = delete;
  RequestMetrics& operator=(const RequestMetrics&) = delete;

  // `code` is the HTTP status as a decimal string, or kNoAnswerCode.
  void Record(std::string_view method, const std::string& host, const std::string& code,
              double seconds);

 private:
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* duration_;
};

// "host:port" of an API server as Go's url.URL.Host spells it ("[::1]:6443" for IPv6).
std::string ApiHostLabel(const std::string& host, int port);

// Forwards to `inner` and records each exchange in `metrics` under `host`. A stream is recorded
// once: when its status arrives, or, failing that, as kNoAnswerCode when it ends with an error; a
// stream stopped by its caller before any answer is not an exchange and records nothing.
class MetricsRecordingTransport final : public ApiTransport {
 public:
  // `metrics` and `clock` (null: Clock::Real()) must outlive the transport.
  MetricsRecordingTransport(std::shared_ptr<ApiTransport> inner, RequestMetrics* metrics,
                            std::string host, const Clock* clock = nullptr);

  Result<HttpResponse> Request(std::string_view method, const std::string& path_and_query,
                               const std::string& body, std::string_view content_type) override;
  Status Stream(std::string_view method, const std::string& path_and_query,
                const std::atomic<bool>& stop, const std::function<bool(int status)>& on_status,
                const std::function<bool(std::string_view chunk)>& on_chunk) override;

 private:
  double SecondsSince(Clock::TimePoint start) const;

  const std::shared_ptr<ApiTransport> inner_;
  RequestMetrics* const metrics_;
  const std::string host_;
  const Clock* const clock_;
};

}  // namespace bg::kube
