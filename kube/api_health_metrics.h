// Prometheus metrics of the Kubernetes API's health as ApiHealth sees it (kube/api_health.h),
// registered on the server's shared registry. No labels.
//
//   backup_guard_kube_api_reachable                     1 when the last exchange with the API
//                                                       (real traffic or probe) got an answer, 0
//                                                       when it failed or none has happened yet
//   backup_guard_kube_api_last_contact_timestamp_seconds Unix time of the last answer; 0 before it
//   backup_guard_kube_api_failures_total                exchanges that got no answer or a 5xx
//
// An alert on `time() - backup_guard_kube_api_last_contact_timestamp_seconds` sees an outage
// however short the scrape interval is compared to it; the counter shows blips between scrapes.
//
// Thread-safety: safe from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "kube/api_health.h"

namespace bg::kube {

class ApiHealthMetrics final : public ApiHealthObserver {
 public:
  explicit ApiHealthMetrics(prometheus::Registry& registry);
  ApiHealthMetrics(const ApiHealthMetrics&) = delete;
  ApiHealthMetrics& operator=(const ApiHealthMetrics&) = delete;

  void OnContact() override;
  void OnFailure() override;

 private:
  prometheus::Gauge* reachable_;
  prometheus::Gauge* last_contact_;
  prometheus::Counter* failures_;
};

}  // namespace bg::kube
