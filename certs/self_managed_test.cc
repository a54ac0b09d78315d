#include "certs/self_managed.h"

#include <gtest/gtest.h>
#include <openssl/x509v3.h>

#include "kube/kubeconfig.h"
#include "tests/testing/fake_kube_api.h"
#include "tests/testing/forwarding_kube_api.h"

namespace bg::certs {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;

const kube::ResourceRef kSecrets{"", "v1", "secrets", "Secret"};
const kube::ResourceRef kMutating{"admissionregistration.k8s.io", "v1",
                                  "mutatingwebhookconfigurations", "MutatingWebhookConfiguration"};
const kube::ResourceRef kValidating{"admissionregistration.k8s.io", "v1",
                                    "validatingwebhookconfigurations",
                                    "ValidatingWebhookConfiguration"};

// One replica's view of the fake API, where chosen verbs on one resource fail while `failing`
// (a replica whose Secret GETs fail, or whose caBundle writes do).
class ResourceFaults final : public testing::ForwardingKubeApi {
 public:
  ResourceFaults(kube::KubeApi& api, std::string verb, std::string resource, Status status)
      : ForwardingKubeApi(api),
        verb_(std::move(verb)),
        resource_(std::move(resource)),
        status_(std::move(status)) {}
  bool failing = true;

  Result<json> Get(const kube::ResourceRef& r, const std::string& ns,
                   const std::string& name) override {
    if (Fails("get", r)) return status_;
    return ForwardingKubeApi::Get(r, ns, name);
  }
  Result<json> List(const kube::ResourceRef& r, const std::string& ns,
                    const std::string& selector) override {
    if (Fails("list", r)) return status_;
    return ForwardingKubeApi::List(r, ns, selector);
  }
  Result<json> Create(const kube::ResourceRef& r, const std::string& ns, const json& o) override {
    if (Fails("create", r)) return status_;
    return ForwardingKubeApi::Create(r, ns, o);
  }
  Result<json> Update(const kube::ResourceRef& r, const std::string& ns, const json& o) override {
    if (Fails("update", r)) return status_;
    return ForwardingKubeApi::Update(r, ns, o);
  }
  Result<json> MergePatch(const kube::ResourceRef& r, const std::string& ns,
                          const std::string& name, const json& patch) override {
    if (Fails("patch", r)) return status_;
    return ForwardingKubeApi::MergePatch(r, ns, name, patch);
  }
  Status Delete(const kube::ResourceRef& r, const std::string& ns, const std::string& name,
                const std::string& uid) override {
    if (Fails("delete", r)) return status_;
    return ForwardingKubeApi::Delete(r, ns, name, uid);
  }

 private:
  bool Fails(const std::string& verb, const kube::ResourceRef& r) const {
    return failing && verb == verb_ && r.resource == resource_;
  }
  const std::string verb_, resource_;
  const Status status_;
};

json WebhookConfiguration(const std::string& name) {
  return {{"metadata", {{"name", name}, {"namespace", ""}}},
          {"webhooks", {{{"name", "a"}, {"clientConfig", {{"url", "https://x"}}}}}}};
}

// The CA certificates in the caBundle of the configuration's first webhook.
std::vector<X509Ptr> BundleOf(FakeKubeApi& api, const kube::ResourceRef& r,
                              const std::string& name) {
  json config = *api.Peek(r, "", name);
  const json& client = config["webhooks"][0]["clientConfig"];
  if (!client.contains("caBundle")) return {};
  return ParseCertificates(*kube::DecodeBase64(client["caBundle"].get<std::string>()));
}

bool Holds(const std::vector<X509Ptr>& bundle, X509* ca) {
  for (const X509Ptr& c : bundle)
    if (X509_cmp(c.get(), ca) == 0) return true;
  return false;
}

std::string Field(const json& secret, const char* key) {
  return *kube::DecodeBase64(secret["data"][key].get<std::string>());
}

class SelfManagedTest : public ::testing::Test {
 protected:
  SelfManagedOptions Options(const std::string& replica = "replica-a") {
    SelfManagedOptions o;
    o.replica_id = replica;
    o.ns = "ns";
    o.secret_name = "bg-tls";
    o.service_name = "bg";
    o.extra_dns = {"extra.example"};
    o.mutating_configuration = "bg-mutating";
    o.leaf_lifetime = std::chrono::hours(24);
    o.ca_lifetime = std::chrono::hours(24 * 30);
    o.sync_interval = std::chrono::milliseconds(1000);
    // The fixture's own start plus what the test moves it by: real time spent between steps (a
    // slow or instrumented run) never moves it, so "5 s later" is exactly 5 s.
    o.clock = [this] { return start_ + offset_; };
    return o;
  }
  json Secret() { return *api_.Peek(kSecrets, "ns", "bg-tls"); }

  FakeKubeApi api_;
  const std::time_t start_ = std::time(nullptr);
  long long offset_ = 0;
};

TEST_F(SelfManagedTest, CreatesTheSecretWithServiceSansAndServesIt) {
  CertificateStore store;
  SelfManagedCertificates certs(api_, Options(), store, nullptr, [] { return true; });
  ASSERT_TRUE(certs.SyncOnce().ok());
  EXPECT_TRUE(certs.Ready());
  json secret = Secret();
  for (const char* key : {"ca.crt", "tls.crt", "tls.key"})
    EXPECT_TRUE(secret["data"].contains(key)) << key;
  X509* leaf = store.Current()->leaf();
  for (const char* name :
       {"bg", "bg.ns", "bg.ns.svc", "bg.ns.svc.cluster.local", "extra.example"}) {
    EXPECT_EQ(X509_check_host(leaf, name, 0, 0, nullptr), 1) << name;
  }
  EXPECT_EQ(EVP_PKEY_get_base_id(store.Current()->key()), EVP_PKEY_EC);
}

TEST_F(SelfManagedTest, ManyReplicasStartingTogetherCreateOneSecretAndServeTheSamePair) {
  std::vector<std::unique_ptr<CertificateStore>> stores;
  std::vector<std::unique_ptr<SelfManagedCertificates>> replicas;
  for (int i = 0; i < 3; ++i) {
    stores.push_back(std::make_unique<CertificateStore>());
    replicas.push_back(std::make_unique<SelfManagedCertificates>(api_, Options(), *stores.back(),
                                                                 nullptr, [] { return false; }));
  }
  // All see "absent" before any creates: each tries once, one wins.
  api_.FailNext("get", 0, Status::Ok());
  for (auto& r : replicas) ASSERT_TRUE(r->SyncOnce().ok());
  EXPECT_EQ(api_.calls("create"), 1) << "later replicas read the winner's Secret";
  EXPECT_EQ(api_.calls("update"), 0) << "followers never write";
  const std::string served = Field(Secret(), "tls.crt");
  for (auto& s : stores) {
    auto id = TlsIdentity::FromPem(served, Field(Secret(), "tls.key"));
    EXPECT_EQ(X509_cmp(s->Current()->leaf(), (*id)->leaf()), 0);
  }
}

TEST_F(SelfManagedTest, LeaderPatchesCaBundleIntoItsWebhookConfiguration) {
  api_.Seed(kMutating, {{"metadata", {{"name", "bg-mutating"}, {"namespace", ""}}},
                        {"webhooks", {{{"name", "a"}, {"clientConfig", {{"url", "https://x"}}}}}}});
  CertificateStore store;
  SelfManagedCertificates certs(api_, Options(), store, nullptr, [] { return true; });
  ASSERT_TRUE(certs.SyncOnce().ok());
  json config = *api_.Peek(kMutating, "", "bg-mutating");
  EXPECT_EQ(
      *kube::DecodeBase64(config["webhooks"][0]["clientConfig"]["caBundle"].get<std::string>()),
      Field(Secret(), "ca.crt"));
}

TEST_F(SelfManagedTest, LeafRenewsAtTwoThirdsOfItsLifetime) {
  CertificateStore store;
  SelfManagedCertificates certs(api_, Options(), store, nullptr, [] { return true; });
  ASSERT_TRUE(certs.SyncOnce().ok());
  const std::string first = Field(Secret(), "tls.crt");
  offset_ = 12 * 3600;  // half-way: no renewal
  ASSERT_TRUE(certs.SyncOnce().ok());
  EXPECT_EQ(Field(Secret(), "tls.crt"), first);
  offset_ = 17 * 3600;  // past two-thirds
  ASSERT_TRUE(certs.SyncOnce().ok());
  EXPECT_NE(Field(Secret(), "tls.crt"), first);
  auto first_id = TlsIdentity::FromPem(first, Field(Secret(), "tls.key"));
  EXPECT_FALSE(first_id.ok()) << "the old leaf no longer matches the new key";
  EXPECT_EQ(store.Current()->leaf() != nullptr, true);
}

TEST_F(SelfManagedTest, CaRenewalKeepsBothCasInTheBundleUntilTheNewLeafIsServed) {
  CertificateStore store;
  SelfManagedOptions o = Options();
  // Certificates are issued on the real clock; a long leaf keeps leaf renewal out of this test.
  o.leaf_lifetime = std::chrono::hours(24 * 90);
  prometheus::Registry registry;
  CertificateMetrics metrics(registry);
  SelfManagedCertificates certs(api_, o, store, &metrics, [] { return true; });
  ASSERT_TRUE(certs.SyncOnce().ok());
  const std::string old_leaf = Field(Secret(), "tls.crt");
  offset_ =
      21 * 24 * 3600;  // the CA is past two-thirds (and so is the leaf, but the CA goes first)
  ASSERT_TRUE(certs.SyncOnce().ok());
  EXPECT_EQ(ParseCertificates(Field(Secret(), "ca.crt")).size(), 2u) << "step 1: both CAs";
  EXPECT_EQ(Field(Secret(), "tls.crt"), old_leaf) << "the leaf waits for the bundle to spread";
  offset_ += 5;  // past the overlap (3 sync intervals)
  ASSERT_TRUE(certs.SyncOnce().ok());
  EXPECT_NE(Field(Secret(), "tls.crt"), old_leaf) << "step 2: new leaf from the new CA";
  EXPECT_EQ(ParseCertificates(Field(Secret(), "ca.crt")).size(), 2u);
  offset_ += 5;
  ASSERT_TRUE(certs.SyncOnce().ok());
  auto bundle = ParseCertificates(Field(Secret(), "ca.crt"));
  ASSERT_EQ(bundle.size(), 1u) << "step 3: old CA gone";
  EXPECT_EQ(X509_verify(store.Current()->leaf(), X509_get0_pubkey(bundle.front().get())), 1);
  // The CA expiry gauge describes the CA in the bundle now, not the one that left it.
  std::tm tm{};
  ASSERT_EQ(ASN1_TIME_to_tm(X509_get0_notAfter(bundle.front().get()), &tm), 1);
  double ca_gauge = 0;
  for (const auto& family : registry.Collect()) {
    if (family.name != "backup_guard_certificate_expiry_timestamp_seconds") continue;
    for (const auto& m : family.metric) {
      if (m.label.size() == 1 && m.label[0].value == "ca") ca_gauge = m.gauge.value;
    }
  }
  EXPECT_EQ(ca_gauge, static_cast<double>(timegm(&tm)));
}

TEST_F(SelfManagedTest, FollowerSwapsWhenTheLeaderRenews) {
  CertificateStore leader_store, follower_store;
  SelfManagedCertificates leader(api_, Options(), leader_store, nullptr, [] { return true; });
  SelfManagedCertificates follower(api_, Options(), follower_store, nullptr, [] { return false; });
  ASSERT_TRUE(leader.SyncOnce().ok());
  ASSERT_TRUE(follower.SyncOnce().ok());
  offset_ = 17 * 3600;
  ASSERT_TRUE(leader.SyncOnce().ok());
  ASSERT_TRUE(follower.SyncOnce().ok());
  EXPECT_EQ(X509_cmp(leader_store.Current()->leaf(), follower_store.Current()->leaf()), 0);
}

TEST_F(SelfManagedTest, DeadApiServerKeepsTheServedPair) {
  CertificateStore store;
  SelfManagedCertificates certs(api_, Options(), store, nullptr, [] { return true; });
  ASSERT_TRUE(certs.SyncOnce().ok());
  auto before = store.Current();
  api_.FailNext("get", 3, Status::Unavailable("connection refused"));
  EXPECT_FALSE(certs.SyncOnce().ok());
  EXPECT_EQ(store.Current(), before);
  EXPECT_TRUE(certs.Ready());
}

// Suspect 5 of issue 14: step 2 was gated on elapsed time only, so a caBundle write that kept
// failing left the API server trusting only the old CA while the leaf came from the new one.
TEST_F(SelfManagedTest, CaRotationStep2WaitsUntilBothConfigurationsTrustTheNewCa) {
  api_.Seed(kMutating, WebhookConfiguration("bg-mutating"));
  api_.Seed(kValidating, WebhookConfiguration("bg-validating"));
  ResourceFaults validating_writes_fail(api_, "update", "validatingwebhookconfigurations",
                                        Status::Unavailable("HTTP 500: etcdserver: timeout"));
  validating_writes_fail.failing = false;
  SelfManagedOptions o = Options();
  o.validating_configuration = "bg-validating";
  o.leaf_lifetime = std::chrono::hours(24 * 90);
  CertificateStore store;
  SelfManagedCertificates certs(validating_writes_fail, o, store, nullptr, [] { return true; });
  ASSERT_TRUE(certs.SyncOnce().ok());
  const std::string old_leaf = Field(Secret(), "tls.crt");
  ASSERT_EQ(BundleOf(api_, kValidating, "bg-validating").size(), 1u);

  validating_writes_fail.failing = true;
  offset_ = 21 * 24 * 3600;  // the CA is past two-thirds: step 1
  EXPECT_FALSE(certs.SyncOnce().ok()) << "the validating caBundle write fails";
  auto cas = ParseCertificates(Field(Secret(), "ca.crt"));
  ASSERT_EQ(cas.size(), 2u) << "step 1: both CAs";
  X509* new_ca = cas.front().get();
  EXPECT_TRUE(Holds(BundleOf(api_, kMutating, "bg-mutating"), new_ca));
  EXPECT_FALSE(Holds(BundleOf(api_, kValidating, "bg-validating"), new_ca));
  for (int pass = 0; pass < 5; ++pass) {
    offset_ += 60;  // far past the overlap (3 s)
    certs.SyncOnce();
    ASSERT_EQ(Field(Secret(), "tls.crt"), old_leaf)
        << "pass " << pass << ": the leaf must stay with the old CA while the validating "
        << "configuration trusts only the old CA";
  }

  validating_writes_fail.failing = false;
  ASSERT_TRUE(certs.SyncOnce().ok()) << "the write goes through";
  EXPECT_TRUE(Holds(BundleOf(api_, kValidating, "bg-validating"), new_ca));
  ASSERT_TRUE(certs.SyncOnce().ok());
  EXPECT_EQ(Field(Secret(), "tls.crt"), old_leaf)
      << "read back trusted just now: the API servers' caches get the overlap first";
  offset_ += 5;
  ASSERT_TRUE(certs.SyncOnce().ok());
  EXPECT_NE(Field(Secret(), "tls.crt"), old_leaf) << "step 2";
  EXPECT_EQ(X509_verify(store.Current()->leaf(), X509_get0_pubkey(new_ca)), 1);
}

// The same when the write "succeeds" but the bundle read back is not ours (someone else, e.g. a
// helm upgrade that owns the field, wrote an older one): the gate is what is read back.
TEST_F(SelfManagedTest, CaRotationStep2WaitsWhenTheBundleReadBackLacksTheNewCa) {
  api_.Seed(kMutating, WebhookConfiguration("bg-mutating"));
  SelfManagedOptions o = Options();
  o.leaf_lifetime = std::chrono::hours(24 * 90);
  CertificateStore store;
  SelfManagedCertificates certs(api_, o, store, nullptr, [] { return true; });
  ASSERT_TRUE(certs.SyncOnce().ok());
  const std::string old_leaf = Field(Secret(), "tls.crt");
  const json old_config = *api_.Peek(kMutating, "", "bg-mutating");
  offset_ = 21 * 24 * 3600;
  ASSERT_TRUE(certs.SyncOnce().ok());
  ASSERT_EQ(ParseCertificates(Field(Secret(), "ca.crt")).size(), 2u);
  for (int pass = 0; pass < 3; ++pass) {
    api_.Seed(kMutating, old_config);  // overwritten between our passes
    offset_ += 60;
    ASSERT_TRUE(certs.SyncOnce().ok());
    ASSERT_EQ(Field(Secret(), "tls.crt"), old_leaf) << "pass " << pass;
  }
}

// An expired leaf fails every call anyway: it is replaced even while the bundle lags.
TEST_F(SelfManagedTest, CaRotationStep2GoesAheadWhenTheOldLeafHasExpired) {
  api_.Seed(kMutating, WebhookConfiguration("bg-mutating"));
  ResourceFaults writes_fail(api_, "update", "mutatingwebhookconfigurations",
                             Status::Conflict("the object has been modified"));
  writes_fail.failing = false;
  CertificateStore store;
  SelfManagedOptions o = Options();
  o.leaf_lifetime = std::chrono::hours(24 * 22);
  SelfManagedCertificates certs(writes_fail, o, store, nullptr, [] { return true; });
  ASSERT_TRUE(certs.SyncOnce().ok());
  const std::string old_leaf = Field(Secret(), "tls.crt");
  writes_fail.failing = true;
  offset_ = 21 * 24 * 3600;
  certs.SyncOnce();
  certs.SyncOnce();
  EXPECT_EQ(Field(Secret(), "tls.crt"), old_leaf);
  offset_ = 22 * 24 * 3600 + 60;  // the old leaf has expired
  certs.SyncOnce();
  EXPECT_NE(Field(Secret(), "tls.crt"), old_leaf);
}

class RotationWithTwoReplicasTest : public SelfManagedTest {
 protected:
  void SetUp() override {
    api_.Seed(kMutating, WebhookConfiguration("bg-mutating"));
    SelfManagedOptions lo = Options("replica-a");
    lo.leaf_lifetime = std::chrono::hours(24 * 90);
    SelfManagedOptions fo = Options("replica-b");
    fo.leaf_lifetime = lo.leaf_lifetime;
    leader_ = std::make_unique<SelfManagedCertificates>(api_, lo, leader_store_, nullptr,
                                                        [] { return true; });
    follower_ = std::make_unique<SelfManagedCertificates>(follower_api_, fo, follower_store_,
                                                          nullptr, [] { return false; });
    follower_api_.failing = false;
    ASSERT_TRUE(leader_->SyncOnce().ok());
    ASSERT_TRUE(follower_->SyncOnce().ok());
    old_leaf_ = Field(Secret(), "tls.crt");
    old_key_ = Field(Secret(), "tls.key");
    // The follower's Secret GETs fail from now on (its /readyz stays 200: it still serves).
    follower_api_.failing = true;
    offset_ = 21 * 24 * 3600;
    ASSERT_TRUE(leader_->SyncOnce().ok());  // step 1
    EXPECT_FALSE(follower_->SyncOnce().ok());
    offset_ += 5;
    ASSERT_TRUE(leader_->SyncOnce().ok());  // step 2 (the bundle was read back at step 1)
    ASSERT_NE(Field(Secret(), "tls.crt"), old_leaf_) << "step 2";
    EXPECT_FALSE(follower_->SyncOnce().ok());
  }
  size_t CasInSecret() { return ParseCertificates(Field(Secret(), "ca.crt")).size(); }
  json Publication() { return *api_.Peek(kube::kLeases, "ns", "bg-tls-served"); }

  ResourceFaults follower_api_{api_, "get", "secrets", Status::PermissionDenied("HTTP 403")};
  CertificateStore leader_store_, follower_store_;
  std::unique_ptr<SelfManagedCertificates> leader_, follower_;
  std::string old_leaf_, old_key_;
};

// Suspect 6 of issue 14: step 3 assumed every replica had re-read the Secret.
TEST_F(RotationWithTwoReplicasTest, CaRotationStep3WaitsUntilEveryLiveReplicaServesTheNewLeaf) {
  for (int pass = 0; pass < 5; ++pass) {
    offset_ += 1;  // within the follower's publication expiry (6 s), which it keeps renewing
    ASSERT_TRUE(leader_->SyncOnce().ok());
    EXPECT_FALSE(follower_->SyncOnce().ok());
    ASSERT_EQ(CasInSecret(), 2u) << "pass " << pass << ": replica-b still serves the old leaf";
  }
  EXPECT_EQ(X509_cmp(follower_store_.Current()->leaf(),
                     (*TlsIdentity::FromPem(old_leaf_, old_key_))->leaf()),
            0)
      << "replica-b still serves the old leaf";
  // The follower can read the Secret again: it serves the new leaf and says so.
  follower_api_.failing = false;
  ASSERT_TRUE(follower_->SyncOnce().ok());
  offset_ += 1;
  ASSERT_TRUE(leader_->SyncOnce().ok());
  EXPECT_EQ(CasInSecret(), 1u) << "step 3 once both replicas serve the new leaf";
  auto bundle = ParseCertificates(Field(Secret(), "ca.crt"));
  EXPECT_EQ(X509_verify(follower_store_.Current()->leaf(), X509_get0_pubkey(bundle[0].get())), 1);
}

// A replica that is gone stops renewing its entry; once the leader has seen it unchanged for
// the expiry (on its own clock), it no longer holds step 3, and the entry is removed.
TEST_F(RotationWithTwoReplicasTest, AReplicaWhoseEntryStopsChangingIsGoneAfterTheExpiry) {
  ASSERT_EQ(Publication()["metadata"]["annotations"].size(), 2u);
  offset_ += 5;  // replica-b no longer publishes; the leader sees its entry for the first time
  ASSERT_TRUE(leader_->SyncOnce().ok());
  EXPECT_EQ(CasInSecret(), 2u);
  offset_ += 5;  // unchanged for 5 s on the leader's clock: not yet the expiry (6 s)
  ASSERT_TRUE(leader_->SyncOnce().ok());
  EXPECT_EQ(CasInSecret(), 2u);
  offset_ += 2;
  ASSERT_TRUE(leader_->SyncOnce().ok());
  EXPECT_EQ(CasInSecret(), 1u) << "replica-b's entry expired";
  EXPECT_EQ(Publication()["metadata"]["annotations"].size(), 1u) << "and was removed";
}

// A replica that stops cleanly removes its own entry.
TEST_F(SelfManagedTest, AReplicaThatStopsRemovesItsPublishedEntry) {
  CertificateStore leader_store, store;
  SelfManagedCertificates leader(api_, Options("replica-a"), leader_store, nullptr,
                                 [] { return true; });
  SelfManagedCertificates follower(api_, Options("replica-b"), store, nullptr,
                                   [] { return false; });
  ASSERT_TRUE(leader.SyncOnce().ok());
  std::atomic<bool> stop{false};
  std::thread run([&] { follower.Run(stop); });
  for (int i = 0; i < 200; ++i) {
    auto lease = api_.Peek(kube::kLeases, "ns", "bg-tls-served");
    if (lease && (*lease)["metadata"]["annotations"].size() == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ((*api_.Peek(kube::kLeases, "ns", "bg-tls-served"))["metadata"]["annotations"].size(),
            2u);
  stop = true;
  run.join();
  json annotations = (*api_.Peek(kube::kLeases, "ns", "bg-tls-served"))["metadata"]["annotations"];
  ASSERT_EQ(annotations.size(), 1u);
  const json entry = json::parse(annotations.begin()->get<std::string>());
  EXPECT_EQ(entry["replica"], "replica-a");
  EXPECT_EQ(entry["leaf"], Fingerprint(leader_store.Current()->leaf()));
  EXPECT_EQ(entry["ca"], Fingerprint(ParseCertificates(Field(Secret(), "ca.crt"))[0].get()));
}

}  // namespace
}  // namespace bg::certs
