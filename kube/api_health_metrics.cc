#include "kube/api_health_metrics.h"

#include <chrono>

namespace bg::kube {

ApiHealthMetrics::ApiHealthMetrics(prometheus::Registry& registry)
    : reachable_(&prometheus::BuildGauge()
                      .Name("backup_guard_kube_api_reachable")
                      .Help("1 when the last exchange with the Kubernetes API got an answer "
                            "(status below 500), else 0.")
                      .Register(registry)
                      .Add({})),
      last_contact_(&prometheus::BuildGauge()
                         .Name("backup_guard_kube_api_last_contact_timestamp_seconds")
                         .Help("Unix time of the last answer from the Kubernetes API; 0 before "
                               "the first.")
                         .Register(registry)
                         .Add({})),
      failures_(&prometheus::BuildCounter()
                     .Name("backup_guard_kube_api_failures_total")
                     .Help("Exchanges with the Kubernetes API (requests, watches, probes) that "
                           "got no answer or a 5xx.")
                     .Register(registry)
                     .Add({})) {}

void ApiHealthMetrics::OnContact() {
  reachable_->Set(1);
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  last_contact_->Set(std::chrono::duration<double>(now).count());
}

void ApiHealthMetrics::OnFailure() {
  reachable_->Set(0);
  failures_->Increment();
}

}  // namespace bg::kube
