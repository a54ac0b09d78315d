// Certificate metrics: expiry of what is served and the outcome of every reload, plus
// controller-runtime's certwatcher counters (no labels) for the file-mode reads:
//   certwatcher_read_certificate_total          every read of the certificate and key files
//   certwatcher_read_certificate_errors_total   reads that gave no usable pair (unreadable files,
//                                               bad PEM, a key that does not match)
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
                      .Register(registry)),
        reads_(&prometheus::BuildCounter()
                    .Name("certwatcher_read_certificate_total")
                    .Help("Total number of certificate reads")
                    .Register(registry)
                    .Add({})),
        read_errors_(&prometheus::BuildCounter()
                          .Name("certwatcher_read_certificate_errors_total")
                          .Help("Total number of certificate read errors")
                          .Register(registry)
                          .Add({})) {}

  // `certificate` is "serving" or "ca".
  void SetExpiry(const std::string& certificate, std::time_t not_after) {
    expiry_->Add({{"certificate", certificate}}).Set(static_cast<double>(not_after));
  }
  void Reloaded(bool ok) { reloads_->Add({{"result", ok ? "success" : "failure"}}).Increment(); }
  // One read of the certificate files (file mode), and whether it gave a usable pair.
  void CertificateRead(bool ok) {
    reads_->Increment();
    if (!ok) read_errors_->Increment();
  }

 private:
  prometheus::Family<prometheus::Gauge>* expiry_;
  prometheus::Family<prometheus::Counter>* reloads_;
  prometheus::Counter* reads_;
  prometheus::Counter* read_errors_;
};

}  // namespace bg::certs
