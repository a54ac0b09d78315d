#include "certs/self_managed.h"

#include <gtest/gtest.h>
#include <openssl/x509v3.h>

#include "kube/kubeconfig.h"
#include "tests/testing/fake_kube_api.h"

namespace bg::certs {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;

const kube::ResourceRef kSecrets{"", "v1", "secrets", "Secret"};
const kube::ResourceRef kMutating{"admissionregistration.k8s.io", "v1",
                                  "mutatingwebhookconfigurations", "MutatingWebhookConfiguration"};

std::string Field(const json& secret, const char* key) {
  return *kube::DecodeBase64(secret["data"][key].get<std::string>());
}

class SelfManagedTest : public ::testing::Test {
 protected:
  SelfManagedOptions Options() {
    SelfManagedOptions o;
    o.ns = "ns";
    o.secret_name = "bg-tls";
    o.service_name = "bg";
    o.extra_dns = {"extra.example"};
    o.mutating_configuration = "bg-mutating";
    o.leaf_lifetime = std::chrono::hours(24);
    o.ca_lifetime = std::chrono::hours(24 * 30);
    o.sync_interval = std::chrono::milliseconds(1000);
    o.clock = [this] { return std::time(nullptr) + offset_; };
    return o;
  }
  json Secret() { return *api_.Peek(kSecrets, "ns", "bg-tls"); }

  FakeKubeApi api_;
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

}  // namespace
}  // namespace bg::certs
