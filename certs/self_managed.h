// SelfManagedCertificates: the default certificate mode. The CA and the serving certificate live
// in one Secret (keys ca.crt, tls.crt, tls.key, and ca.key so the leader can sign renewals).
//
// Writers: a replica that finds no Secret creates it (create-if-absent: at most one 409 per
// replica when many start together, then it reads the winner's). Every other change is made by
// the leader alone, with the resourceVersion it read.
//
// Renewal:
//  - the serving certificate is renewed at two-thirds of its lifetime, or when its SANs differ
//    from the wanted ones;
//  - the CA is renewed at two-thirds of its lifetime in three steps, so no caller ever sees a
//    certificate its caBundle cannot verify: (1) the new CA is added to ca.crt next to the old one
//    and both go into the caBundle; (2) after `overlap`, the serving certificate is reissued by the
//    new CA; (3) after another `overlap` (every replica re-reads the Secret each sync_interval, so
//    by then all serve the new leaf) the old CA leaves the bundle.
// The leader also writes caBundle into the webhook configurations named in the options.
// Every replica swaps its served identity in memory when the Secret's pair changes.
//
// Thread-safety: Run() on one thread; Ready() from any.
#pragma once

#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "certs/identity.h"
#include "certs/metrics.h"
#include "common/status.h"
#include "kube/api.h"

namespace bg::certs {

struct SelfManagedOptions {
  std::string ns = "longhorn-system";
  std::string secret_name = "backup-guard-tls";
  std::string service_name = "backup-guard";
  std::vector<std::string> extra_dns;
  std::vector<std::string> extra_ips;
  std::string mutating_configuration;    // empty: not patched
  std::string validating_configuration;  // empty: not patched
  std::chrono::seconds leaf_lifetime{30 * 24 * 3600};
  std::chrono::seconds ca_lifetime{10LL * 365 * 24 * 3600};
  std::chrono::milliseconds sync_interval{10000};
  // Wall clock for renewal decisions; tests move it forward.
  std::function<std::time_t()> clock = [] { return std::time(nullptr); };
};

class SelfManagedCertificates {
 public:
  SelfManagedCertificates(kube::KubeApi& api, SelfManagedOptions options, CertificateStore& store,
                          CertificateMetrics* metrics, std::function<bool()> is_leader);
  SelfManagedCertificates(const SelfManagedCertificates&) = delete;
  SelfManagedCertificates& operator=(const SelfManagedCertificates&) = delete;

  Status SyncOnce();
  void Run(const std::atomic<bool>& stop);
  bool Ready() const { return ready_.load(); }

  // The SANs the serving certificate must carry.
  std::vector<std::string> WantedDnsNames() const;

 private:
  long long Now() const;
  Status CreateSecret();
  Status LeaderPass(nlohmann::json& secret);
  Status PatchCaBundles(const std::string& ca_bundle_pem);
  void ServeFrom(const std::string& cert_pem, const std::string& key_pem,
                 const std::string& ca_bundle_pem);

  kube::KubeApi& api_;
  const SelfManagedOptions options_;
  CertificateStore& store_;
  CertificateMetrics* metrics_;
  const std::function<bool()> is_leader_;
  std::string served_cert_pem_;
  std::atomic<bool> ready_{false};
};

// Parses every certificate of a PEM bundle (empty on garbage).
std::vector<X509Ptr> ParseCertificates(const std::string& pem);

}  // namespace bg::certs
