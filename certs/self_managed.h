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
//    and both go into the caBundle; (2) the serving certificate is reissued by the new CA; (3) the
//    old CA leaves the bundle.
//  - Step 2 waits until the caBundle read back from every webhook of both configurations trusts
//    the new CA, and then `overlap` (3 sync intervals) more, measured on this leader's own clock,
//    for the API servers' caches of the configurations. A write that keeps failing (409, 5xx,
//    lost leadership) or a bundle that someone else overwrote holds it; only a serving
//    certificate that no longer verifies anyway (it or its CA expired) is reissued regardless.
//  - Step 3 waits until the bundle still trusts the new CA and every live replica serves a leaf
//    of the new CA, as it publishes (below), or until every old CA has expired.
//
// Publication: every ready replica writes what it serves each sync_interval into one Lease,
// `<secret_name>-served` (created by the leader), as the annotation
// `served.backup-guard.longhorn.io/<hash of replica_id>` = {"replica","leaf","ca","beat"} (the
// SHA-256 of the served leaf and of the CA in ca.crt that signed it; `beat` counts
// publications, so every one is a change). A replica is live while its entry keeps changing:
// the leader notes, on its own clock, when it last saw each entry change, and an entry unchanged
// for `publication_expiry` (default 6 sync intervals) belongs to a replica that is gone (it is
// then removed). Remote clocks are never compared, so a replica or a new leader with a skewed
// clock cannot shorten the wait; a new leader waits until it has watched every entry itself.
// A replica that stops cleanly removes its own entry. A replica whose API access fails
// entirely stops publishing and, after --api-unready-after (20 s, less than the expiry), also
// answers 503 on /readyz. A replica of a version that does not publish is not seen: the time
// floor of step 3 (`overlap` after the leaf was reissued) still applies.
// The leader also writes caBundle into the webhook configurations named in the options.
// Every replica swaps its served identity in memory when the Secret's pair changes.
//
// Thread-safety: Run() on one thread; Ready() from any.
#pragma once

#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <map>
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
  // This process in the publication of served certificates (unique per replica).
  std::string replica_id = "replica";
  // An entry of the publication unchanged for this long belongs to a replica that is gone;
  // 0: 6 sync intervals.
  std::chrono::milliseconds publication_expiry{0};
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
  // The Lease where every replica publishes the certificate it serves.
  std::string PublicationName() const { return options_.secret_name + "-served"; }
  // Removes this replica's entry from the publication (Run() does it when it stops).
  Status Withdraw();

 private:
  long long Now() const;
  Status SyncSecret();
  Status CreateSecret();
  Status LeaderPass(nlohmann::json& secret);
  Status PatchCaBundles(const std::string& ca_bundle_pem);
  // Empty when every webhook of the configured configurations has `ca` in its caBundle;
  // otherwise why not. A configuration that does not exist holds no trust to break.
  std::string WhyBundlesDoNotTrust(X509* ca);
  // WhyBundlesDoNotTrust, noting when the bundles were first read back trusting `ca`.
  std::string ReadBackBundles(X509* ca);
  // Empty when every live replica serves a leaf of `ca` (the fingerprint) and this one's entry
  // is among them; otherwise why not. Prunes the entries of replicas that are gone.
  std::string WhyReplicasDoNotServe(const std::string& ca_fingerprint);
  Status Publish();
  // Logs `why` once each time the reason a rotation step waits changes.
  void NoteWait(const std::string& why);
  void ServeFrom(const std::string& cert_pem, const std::string& key_pem,
                 const std::string& ca_bundle_pem);

  kube::KubeApi& api_;
  const SelfManagedOptions options_;
  CertificateStore& store_;
  CertificateMetrics* metrics_;
  const std::function<bool()> is_leader_;
  std::string served_cert_pem_;
  std::string served_leaf_fp_;  // SHA-256 of the served leaf
  std::string served_ca_fp_;    // SHA-256 of the CA that signed it ("" if none in ca.crt)
  long long beat_ = 0;          // publications so far
  // Leader only: when the caBundles were first read back trusting a CA (by fingerprint).
  std::string trusted_ca_fp_;
  long long trusted_since_ = 0;
  // Leader only: each publication entry as last seen, and when (own clock) it last changed.
  struct Seen {
    std::string value;
    long long changed_at = 0;
  };
  std::map<std::string, Seen> seen_;
  std::string last_wait_;
  std::atomic<bool> ready_{false};
};

// Parses every certificate of a PEM bundle (empty on garbage).
std::vector<X509Ptr> ParseCertificates(const std::string& pem);

// Lowercase hex SHA-256 of the certificate's DER form.
std::string Fingerprint(X509* cert);

// The annotation prefix of the publication's entries.
inline constexpr char kServedAnnotationPrefix[] = "served.backup-guard.longhorn.io/";

}  // namespace bg::certs
