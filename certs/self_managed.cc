#include "certs/self_managed.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <thread>

#include "certs/generate.h"
#include "common/base64.h"
#include "common/log.h"
#include "kube/kubeconfig.h"

namespace bg::certs {

using nlohmann::json;

namespace {

const kube::ResourceRef kSecrets{"", "v1", "secrets", "Secret"};
const kube::ResourceRef kMutating{"admissionregistration.k8s.io", "v1",
                                  "mutatingwebhookconfigurations", "MutatingWebhookConfiguration"};
const kube::ResourceRef kValidating{"admissionregistration.k8s.io", "v1",
                                    "validatingwebhookconfigurations",
                                    "ValidatingWebhookConfiguration"};

// When the old CA may leave the bundle / the new CA may sign: annotations on the Secret.
constexpr char kCaAddedAt[] = "backup-guard.longhorn.io/ca-added-at";
constexpr char kLeafIssuedAt[] = "backup-guard.longhorn.io/leaf-issued-at";

std::time_t AsnToTime(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

// True once two-thirds of the certificate's lifetime has passed.
bool DueForRenewal(X509* cert, std::time_t now) {
  const std::time_t from = AsnToTime(X509_get0_notBefore(cert));
  const std::time_t to = AsnToTime(X509_get0_notAfter(cert));
  return now >= from + (to - from) * 2 / 3;
}

bool SignedBy(X509* leaf, X509* ca) {
  EVP_PKEY* key = X509_get0_pubkey(ca);
  const bool ok = key != nullptr && X509_verify(leaf, key) == 1;
  ERR_clear_error();
  return ok;
}

bool HasAllDnsNames(X509* cert, const std::vector<std::string>& names) {
  for (const std::string& n : names) {
    if (X509_check_host(cert, n.c_str(), n.size(), X509_CHECK_FLAG_NO_WILDCARDS, nullptr) != 1) {
      return false;
    }
  }
  return true;
}

std::string ToPem(const std::vector<X509Ptr>& certs) {
  std::string out;
  for (const X509Ptr& c : certs) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, c.get());
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    out.append(data, static_cast<std::size_t>(n));
    BIO_free(bio);
  }
  return out;
}

std::string FirstPem(const std::vector<X509Ptr>& certs) {
  std::vector<X509Ptr> first;
  first.emplace_back(X509_dup(certs.front().get()));
  return ToPem(first);
}

std::string DataField(const json& secret, const char* key) {
  const json& data = secret.value("data", json::object());
  if (!data.is_object() || !data.contains(key) || !data[key].is_string()) return "";
  auto decoded = kube::DecodeBase64(data[key].get<std::string>());
  return decoded.ok() ? *decoded : "";
}

// True while the leaf can still be verified on its own: it has not expired and a CA of the bundle
// that has not expired signed it.
bool StillVerifies(X509* leaf, const std::vector<X509Ptr>& cas, std::time_t now) {
  if (AsnToTime(X509_get0_notAfter(leaf)) <= now) return false;
  return std::any_of(cas.begin(), cas.end(), [&](const X509Ptr& ca) {
    return AsnToTime(X509_get0_notAfter(ca.get())) > now && SignedBy(leaf, ca.get());
  });
}

std::string Hex(const unsigned char* bytes, unsigned int n) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 0xf];
  }
  return out;
}

// The key of a replica's entry in the publication: its name part is 16 characters (at most 63).
std::string EntryKey(const std::string& replica_id) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(replica_id.data(), replica_id.size(), digest, &n, EVP_sha256(), nullptr);
  return kServedAnnotationPrefix + Hex(digest, std::min(n, 8U));
}

std::string StringField(const json& obj, const char* key) {
  return obj.is_object() && obj.contains(key) && obj[key].is_string() ? obj[key].get<std::string>()
                                                                      : "";
}

std::string Annotation(const json& obj, const char* key) {
  const json& meta = obj.value("metadata", json::object());
  const json& ann = meta.is_object() ? meta.value("annotations", json::object()) : json::object();
  return ann.is_object() && ann.contains(key) && ann[key].is_string() ? ann[key].get<std::string>()
                                                                      : "";
}

}  // namespace

std::vector<X509Ptr> ParseCertificates(const std::string& pem) {
  std::vector<X509Ptr> out;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  while (X509* c = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) out.emplace_back(c);
  BIO_free(bio);
  ERR_clear_error();
  return out;
}

std::string Fingerprint(X509* cert) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (cert == nullptr || X509_digest(cert, EVP_sha256(), digest, &n) != 1) return "";
  return Hex(digest, n);
}

SelfManagedCertificates::SelfManagedCertificates(kube::KubeApi& api, SelfManagedOptions options,
                                                 CertificateStore& store,
                                                 CertificateMetrics* metrics,
                                                 std::function<bool()> is_leader)
    : api_(api),
      options_(std::move(options)),
      store_(store),
      metrics_(metrics),
      is_leader_(std::move(is_leader)) {}

std::vector<std::string> SelfManagedCertificates::WantedDnsNames() const {
  const std::string& s = options_.service_name;
  const std::string& ns = options_.ns;
  std::vector<std::string> names = {s, s + "." + ns, s + "." + ns + ".svc",
                                    s + "." + ns + ".svc.cluster.local"};
  names.insert(names.end(), options_.extra_dns.begin(), options_.extra_dns.end());
  return names;
}

long long SelfManagedCertificates::Now() const { return static_cast<long long>(options_.clock()); }

Status SelfManagedCertificates::CreateSecret() {
  auto ca = GenerateCa("backup-guard-ca", options_.ca_lifetime);
  if (!ca.ok()) return ca.status();
  auto leaf =
      GenerateServingCert(*ca, WantedDnsNames(), options_.extra_ips, options_.leaf_lifetime);
  if (!leaf.ok()) return leaf.status();
  const json secret = {{"apiVersion", "v1"},
                       {"kind", "Secret"},
                       {"type", "kubernetes.io/tls"},
                       {"metadata",
                        {{"name", options_.secret_name},
                         {"namespace", options_.ns},
                         {"labels", {{"app.kubernetes.io/name", "backup-guard"}}},
                         {"annotations", {{kLeafIssuedAt, std::to_string(Now())}}}}},
                       {"data",
                        {{"ca.crt", Base64Encode(ca->cert_pem)},
                         {"ca.key", Base64Encode(ca->key_pem)},
                         {"tls.crt", Base64Encode(leaf->cert_pem)},
                         {"tls.key", Base64Encode(leaf->key_pem)}}}};
  auto created = api_.Create(kSecrets, options_.ns, secret);
  if (created.ok()) {
    log::Info("certificate Secret created", {{"secret", options_.secret_name}});
    return Status::Ok();
  }
  // Another replica won the race: read its Secret on the next pass.
  if (created.status().IsConflict()) return Status::Ok();
  return created.status();
}

Status SelfManagedCertificates::LeaderPass(json& secret) {
  const std::time_t now = options_.clock();
  const long long overlap_s = std::max<long long>(
      1, 3 * std::chrono::duration_cast<std::chrono::seconds>(options_.sync_interval).count());
  std::vector<X509Ptr> cas = ParseCertificates(DataField(secret, "ca.crt"));
  const std::string ca_key = DataField(secret, "ca.key");
  std::vector<X509Ptr> leaves = ParseCertificates(DataField(secret, "tls.crt"));
  const std::string leaf_key = DataField(secret, "tls.key");
  auto current_ca =
      cas.empty()
          ? Result<std::shared_ptr<const TlsIdentity>>(Status::InvalidArgument("no CA certificate"))
          : TlsIdentity::FromPem(FirstPem(cas), ca_key);
  json& data = secret["data"];
  auto& ann = secret["metadata"]["annotations"];
  if (!ann.is_object()) ann = json::object();
  bool changed = false;
  std::string why;

  if (!current_ca.ok()) {
    // Unusable CA material: start over with a new CA (the bundle keeps any old CAs).
    auto ca = GenerateCa("backup-guard-ca", options_.ca_lifetime);
    if (!ca.ok()) return ca.status();
    std::vector<X509Ptr> fresh = ParseCertificates(ca->cert_pem);
    for (X509Ptr& old : cas) fresh.push_back(std::move(old));
    data["ca.crt"] = Base64Encode(ToPem(fresh));
    data["ca.key"] = Base64Encode(ca->key_pem);
    ann[kCaAddedAt] = std::to_string(Now());
    changed = true;
    why = "CA missing or unreadable";
  } else if (cas.size() == 1 && DueForRenewal(cas.front().get(), now)) {
    auto ca = GenerateCa("backup-guard-ca", options_.ca_lifetime);
    if (!ca.ok()) return ca.status();
    std::vector<X509Ptr> bundle = ParseCertificates(ca->cert_pem);
    bundle.push_back(std::move(cas.front()));
    data["ca.crt"] = Base64Encode(ToPem(bundle));
    data["ca.key"] = Base64Encode(ca->key_pem);
    ann[kCaAddedAt] = std::to_string(Now());
    changed = true;
    why = "CA renewal step 1: new CA added next to the old one";
  } else {
    X509* ca = cas.front().get();
    const bool leaf_ok =
        !leaves.empty() && TlsIdentity::FromPem(DataField(secret, "tls.crt"), leaf_key).ok();
    const bool by_current = leaf_ok && SignedBy(leaves.front().get(), ca);
    const long long ca_added = std::atoll(Annotation(secret, kCaAddedAt).c_str());
    const long long leaf_issued = std::atoll(Annotation(secret, kLeafIssuedAt).c_str());
    bool ca_settled = cas.size() == 1;
    if (!ca_settled && leaf_ok && !by_current) {
      // Step 2 waits for the bundles (read back, not as written) and then `overlap` more.
      std::string wait;
      if (const std::string why = ReadBackBundles(ca); !why.empty()) {
        wait = "CA renewal step 2 waits: " + why;
      } else if (Now() - ca_added < overlap_s || Now() - trusted_since_ < overlap_s) {
        wait = "CA renewal step 2 waits for the caBundles to spread";
      }
      ca_settled = wait.empty();
      if (!ca_settled && !StillVerifies(leaves.front().get(), cas, now)) {
        ca_settled = true;  // it fails every call already: a leaf of the new CA is no worse
        wait.clear();
        why = "CA renewal step 2, early: the serving certificate or its CA expired";
      }
      if (!wait.empty()) NoteWait(wait);
    }
    bool reissue = false;
    if (!leaf_ok) {
      reissue = true;
      why = "serving certificate missing or unreadable";
    } else if (!by_current && ca_settled) {
      reissue = true;
      if (why.empty()) why = "CA renewal step 2: serving certificate reissued by the new CA";
    } else if (by_current && (DueForRenewal(leaves.front().get(), now) ||
                              !HasAllDnsNames(leaves.front().get(), WantedDnsNames()))) {
      reissue = true;
      why = "serving certificate renewal";
    }
    if (reissue) {
      auto leaf = GenerateServingCert(PemPair{FirstPem(cas), ca_key}, WantedDnsNames(),
                                      options_.extra_ips, options_.leaf_lifetime);
      if (!leaf.ok()) return leaf.status();
      data["tls.crt"] = Base64Encode(leaf->cert_pem);
      data["tls.key"] = Base64Encode(leaf->key_pem);
      ann[kLeafIssuedAt] = std::to_string(Now());
      changed = true;
    } else if (cas.size() > 1 && by_current && Now() - leaf_issued >= overlap_s) {
      // Step 3 waits until the bundles still trust the new CA and every live replica serves
      // its leaf, unless no old CA can verify anything any more.
      const bool old_cas_expired = std::all_of(
          cas.begin() + 1, cas.end(),
          [now](const X509Ptr& old) { return AsnToTime(X509_get0_notAfter(old.get())) <= now; });
      std::string wait = WhyBundlesDoNotTrust(ca);
      if (wait.empty()) wait = WhyReplicasDoNotServe(Fingerprint(ca));
      if (wait.empty() || old_cas_expired) {
        std::vector<X509Ptr> only;
        only.push_back(std::move(cas.front()));
        data["ca.crt"] = Base64Encode(ToPem(only));
        changed = true;
        why = wait.empty() ? "CA renewal step 3: old CA removed from the bundle"
                           : "CA renewal step 3: the old CA expired (" + wait + ")";
      } else {
        NoteWait("CA renewal step 3 waits: " + wait);
      }
    }
  }
  if (!changed) return Status::Ok();
  auto updated = api_.Update(kSecrets, options_.ns, secret);
  if (!updated.ok()) return updated.status();  // a 409 retries on the next pass
  log::Info("certificate Secret updated", {{"secret", options_.secret_name}, {"why", why}});
  last_wait_.clear();  // the next wait is news again
  secret = std::move(updated).value();
  return Status::Ok();
}

Status SelfManagedCertificates::PatchCaBundles(const std::string& ca_bundle_pem) {
  const std::string encoded = Base64Encode(ca_bundle_pem);
  for (const auto& [ref, name] : {std::pair{kMutating, options_.mutating_configuration},
                                  std::pair{kValidating, options_.validating_configuration}}) {
    if (name.empty()) continue;
    auto config = api_.Get(ref, "", name);
    if (!config.ok()) {
      if (config.status().IsNotFound()) continue;  // not installed yet
      return config.status();
    }
    json obj = std::move(config).value();
    bool changed = false;
    if (!obj.contains("webhooks") || !obj["webhooks"].is_array()) continue;
    for (json& hook : obj["webhooks"]) {
      json& client = hook["clientConfig"];
      if (!client.is_object()) client = json::object();
      if (client.value("caBundle", "") != encoded) {
        client["caBundle"] = encoded;
        changed = true;
      }
    }
    if (!changed) continue;
    auto updated = api_.Update(ref, "", obj);
    if (!updated.ok()) return updated.status();
    log::Info("caBundle written", {{"configuration", name}});
  }
  return Status::Ok();
}

std::string SelfManagedCertificates::WhyBundlesDoNotTrust(X509* ca) {
  for (const auto& [ref, name] : {std::pair{kMutating, options_.mutating_configuration},
                                  std::pair{kValidating, options_.validating_configuration}}) {
    if (name.empty()) continue;
    auto config = api_.Get(ref, "", name);
    if (!config.ok()) {
      if (config.status().IsNotFound()) continue;  // nothing calls through it
      return "cannot read " + ref.kind + " " + name + ": " + config.status().message();
    }
    const json hooks = config->is_object() ? config->value("webhooks", json()) : json();
    if (!hooks.is_array()) continue;
    for (const json& hook : hooks) {
      const json client = hook.is_object() ? hook.value("clientConfig", json::object()) : json();
      const json bundle = client.is_object() ? client.value("caBundle", json()) : json();
      auto pem = bundle.is_string() ? kube::DecodeBase64(bundle.get<std::string>())
                                    : Result<std::string>(Status::NotFound("no caBundle"));
      const std::vector<X509Ptr> trusted = ParseCertificates(pem.ok() ? *pem : "");
      const bool has = std::any_of(trusted.begin(), trusted.end(),
                                   [ca](const X509Ptr& c) { return X509_cmp(c.get(), ca) == 0; });
      if (!has) {
        return "the caBundle of webhook " + StringField(hook, "name") + " in " + ref.kind + " " +
               name + " does not hold the new CA yet";
      }
    }
  }
  return "";
}

std::string SelfManagedCertificates::ReadBackBundles(X509* ca) {
  std::string why = WhyBundlesDoNotTrust(ca);
  if (!why.empty()) {
    trusted_ca_fp_.clear();
  } else if (trusted_ca_fp_ != Fingerprint(ca)) {
    trusted_ca_fp_ = Fingerprint(ca);
    trusted_since_ = Now();
  }
  return why;
}

std::string SelfManagedCertificates::WhyReplicasDoNotServe(const std::string& ca_fingerprint) {
  auto lease = api_.Get(kube::kLeases, options_.ns, PublicationName());
  if (!lease.ok()) {
    return "cannot read the served certificates in Lease " + PublicationName() + ": " +
           lease.status().message();
  }
  const long long now = Now();
  const long long expiry_s = std::max<long long>(
      1, std::chrono::duration_cast<std::chrono::seconds>(options_.publication_expiry.count() > 0
                                                              ? options_.publication_expiry
                                                              : 6 * options_.sync_interval)
             .count());
  const json meta = lease->is_object() ? lease->value("metadata", json()) : json();
  json ann = meta.is_object() ? meta.value("annotations", json::object()) : json::object();
  if (!ann.is_object()) ann = json::object();
  std::map<std::string, Seen> seen;
  std::vector<std::string> gone;
  std::string waiting;
  bool self_live = false;
  const std::string own_key = EntryKey(options_.replica_id);
  for (const auto& [key, value] : ann.items()) {
    if (key.rfind(kServedAnnotationPrefix, 0) != 0 || !value.is_string()) continue;
    Seen entry{value.get<std::string>(), now};
    if (auto it = seen_.find(key); it != seen_.end() && it->second.value == entry.value) {
      entry.changed_at = it->second.changed_at;
    }
    seen[key] = entry;
    if (now - entry.changed_at >= expiry_s) {
      gone.push_back(key);
      continue;
    }
    if (key == own_key) self_live = true;
    const json parsed = json::parse(entry.value, nullptr, /*allow_exceptions=*/false);
    if (StringField(parsed, "ca") != ca_fingerprint && waiting.empty()) {
      const std::string replica =
          StringField(parsed, "replica").empty() ? key : StringField(parsed, "replica");
      waiting = "replica " + replica + " still serves a certificate of another CA";
    }
  }
  seen_ = std::move(seen);
  if (!gone.empty()) {
    // Entries of replicas that are gone: removed, so the Lease stays small.
    json patch = json::object();
    for (const std::string& key : gone) patch[key] = nullptr;
    auto pruned = api_.MergePatch(kube::kLeases, options_.ns, PublicationName(),
                                  json{{"metadata", {{"annotations", patch}}}});
    log::Info("served-certificate entries of replicas that are gone removed",
              {{"lease", PublicationName()}, {"entries", gone}, {"ok", pruned.ok()}});
  }
  if (!waiting.empty()) return waiting;
  if (!self_live) return "this replica's own entry is not in Lease " + PublicationName() + " yet";
  return "";
}

Status SelfManagedCertificates::Publish() {
  if (!ready_.load()) return Status::Ok();  // serving nothing of the Secret yet
  const json entry = {{"replica", options_.replica_id},
                      {"leaf", served_leaf_fp_},
                      {"ca", served_ca_fp_},
                      {"beat", ++beat_}};
  const json patch = {
      {"metadata", {{"annotations", {{EntryKey(options_.replica_id), entry.dump()}}}}}};
  auto patched = api_.MergePatch(kube::kLeases, options_.ns, PublicationName(), patch);
  if (patched.ok()) return Status::Ok();
  if (!patched.status().IsNotFound()) return patched.status();
  // The leader creates the Lease (followers only ever write their own entry).
  if (!is_leader_()) return Status::Ok();
  json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                {"kind", "Lease"},
                {"metadata",
                 {{"name", PublicationName()},
                  {"namespace", options_.ns},
                  {"labels", {{"app.kubernetes.io/name", "backup-guard"}}}}},
                {"spec", json::object()}};
  lease["metadata"]["annotations"] = patch["metadata"]["annotations"];
  auto created = api_.Create(kube::kLeases, options_.ns, lease);
  if (created.ok() || created.status().IsConflict()) return Status::Ok();
  return created.status();
}

Status SelfManagedCertificates::Withdraw() {
  const json patch = {{"metadata", {{"annotations", {{EntryKey(options_.replica_id), nullptr}}}}}};
  auto patched = api_.MergePatch(kube::kLeases, options_.ns, PublicationName(), patch);
  if (patched.ok() || patched.status().IsNotFound()) return Status::Ok();
  return patched.status();
}

void SelfManagedCertificates::NoteWait(const std::string& why) {
  if (why == last_wait_) return;
  last_wait_ = why;
  // Info, not a warning: each rotation waits a few sync intervals at steps 2 and 3 by design.
  log::Info("certificate rotation waits", {{"secret", options_.secret_name}, {"why", why}});
}

void SelfManagedCertificates::ServeFrom(const std::string& cert_pem, const std::string& key_pem,
                                        const std::string& ca_bundle_pem) {
  // The CA gauge follows the bundle on every pass: the bundle changes (CA rotation step 3)
  // without the serving certificate changing.
  if (metrics_ != nullptr) {
    std::time_t earliest_ca = 0;
    for (const X509Ptr& ca : ParseCertificates(ca_bundle_pem)) {
      const std::time_t t = AsnToTime(X509_get0_notAfter(ca.get()));
      if (earliest_ca == 0 || t < earliest_ca) earliest_ca = t;
    }
    if (earliest_ca != 0) metrics_->SetExpiry("ca", earliest_ca);
  }
  if (cert_pem == served_cert_pem_ && ready_.load()) return;
  auto identity = TlsIdentity::FromPem(cert_pem, key_pem);
  if (!identity.ok()) {
    if (metrics_ != nullptr) metrics_->Reloaded(false);
    log::Error("certificate Secret holds a broken pair; the previous one keeps serving",
               {{"error", identity.status().message()}});
    return;
  }
  store_.Set(*identity);
  served_cert_pem_ = cert_pem;
  served_leaf_fp_ = Fingerprint((*identity)->leaf());
  served_ca_fp_.clear();
  for (const X509Ptr& ca : ParseCertificates(ca_bundle_pem)) {
    if (SignedBy((*identity)->leaf(), ca.get())) served_ca_fp_ = Fingerprint(ca.get());
  }
  ready_ = true;
  if (metrics_ != nullptr) {
    metrics_->Reloaded(true);
    metrics_->SetExpiry("serving", (*identity)->not_after());
  }
  log::Info("serving certificate swapped in memory", {{"secret", options_.secret_name}});
}

Status SelfManagedCertificates::SyncOnce() {
  Status synced = SyncSecret();
  // Published even when the Secret cannot be read: the leader must know what is still served.
  Status published = Publish();
  if (!synced.ok()) return synced;
  return published;
}

Status SelfManagedCertificates::SyncSecret() {
  auto secret = api_.Get(kSecrets, options_.ns, options_.secret_name);
  if (!secret.ok()) {
    if (!secret.status().IsNotFound()) return secret.status();
    if (Status s = CreateSecret(); !s.ok()) return s;
    secret = api_.Get(kSecrets, options_.ns, options_.secret_name);
    if (!secret.ok()) return secret.status();
  }
  json obj = std::move(secret).value();
  if (is_leader_()) {
    if (Status s = LeaderPass(obj); !s.ok()) return s;
  }
  const std::string ca_bundle = DataField(obj, "ca.crt");
  ServeFrom(DataField(obj, "tls.crt"), DataField(obj, "tls.key"), ca_bundle);
  if (!is_leader_() || ca_bundle.empty()) return Status::Ok();
  Status patched = PatchCaBundles(ca_bundle);
  // While the serving certificate waits for step 2, the bundles are read back right after they
  // were written, so the overlap starts as soon as they hold the new CA.
  std::vector<X509Ptr> cas = ParseCertificates(ca_bundle);
  std::vector<X509Ptr> leaves = ParseCertificates(DataField(obj, "tls.crt"));
  if (patched.ok() && cas.size() > 1 && !leaves.empty() &&
      !SignedBy(leaves.front().get(), cas.front().get())) {
    ReadBackBundles(cas.front().get());
  }
  return patched;
}

void SelfManagedCertificates::Run(const std::atomic<bool>& stop) {
  while (!stop.load()) {
    if (Status s = SyncOnce(); !s.ok()) {
      log::Warn("certificate sync failed; retrying", {{"error", s.message()}});
    }
    const auto until = std::chrono::steady_clock::now() + options_.sync_interval;
    while (!stop.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  if (Status s = Withdraw(); !s.ok()) {
    log::Warn("could not remove this replica's served-certificate entry; it expires instead",
              {{"lease", PublicationName()}, {"error", s.message()}});
  }
}

}  // namespace bg::certs
