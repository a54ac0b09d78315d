// Certificate metrics: expiry of what is served and the outcome of every reload.
// Thread-safety: safe from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <ctime>
#include <string>

namespace bg::certs {

class CertificateMetrics {
 public:
  explicit CertificateMetrics(prometheus::Registry& registry)
      : expiry_(&prometheus::BuildGauge()
                     .Name("backup_guard_certificate_expiry_timestamp_seconds")
                     .Help("notAfter of the certificates in use, as a Unix time.")
                     .Register(registry)),
        reloads_(&prometheus::BuildCounter()
                      .Name("backup_guard_certificate_reloads_total")
                      .Help("Certificate reloads, by result (success, failure).")
                      .Register(registry)) {}

  // `certificate` is "serving" or "ca".
  void SetExpiry(const std::string& certificate, std::time_t not_after) {
    expiry_->Add({{"certificate", certificate}}).Set(static_cast<double>(not_after));
  }
  void Reloaded(bool ok) { reloads_->Add({{"result", ok ? "success" : "failure"}}).Increment(); }

 private:
  prometheus::Family<prometheus::Gauge>* expiry_;
  prometheus::Family<prometheus::Counter>* reloads_;
};

}  // namespace bg::certs
