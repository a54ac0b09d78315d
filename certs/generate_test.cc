#include "certs/generate.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <filesystem>
#include <fstream>

#include "certs/identity.h"

namespace bg::certs {
namespace {

TEST(GenerateTest, ServingCertificateIsEcdsaP256WithSansAndVerifiesAgainstCa) {
  auto ca = GenerateCa("test-ca", std::chrono::hours(1));
  ASSERT_TRUE(ca.ok()) << ca.status().message();
  auto leaf = GenerateServingCert(*ca, {"backup-guard.longhorn-system.svc", "localhost"},
                                  {"127.0.0.1", "::1"}, std::chrono::hours(1));
  ASSERT_TRUE(leaf.ok()) << leaf.status().message();
  auto id = TlsIdentity::FromPem(leaf->cert_pem, leaf->key_pem);
  ASSERT_TRUE(id.ok()) << id.status().message();
  auto ca_id = TlsIdentity::FromPem(ca->cert_pem, ca->key_pem);
  ASSERT_TRUE(ca_id.ok());

  EXPECT_EQ(EVP_PKEY_get_base_id((*id)->key()), EVP_PKEY_EC);
  char group[64] = {};
  size_t len = 0;
  EVP_PKEY_get_group_name((*id)->key(), group, sizeof(group), &len);
  EXPECT_STREQ(group, "prime256v1");

  X509* cert = (*id)->leaf();
  EXPECT_EQ(X509_check_host(cert, "backup-guard.longhorn-system.svc", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(cert, "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert, "::1", 0), 1);
  EXPECT_NE(X509_check_host(cert, "evil.example", 0, 0, nullptr), 1);

  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, (*ca_id)->leaf());
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, cert, nullptr);
  X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
  EXPECT_EQ(X509_verify_cert(ctx), 1)
      << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  EXPECT_GT((*id)->not_after(), std::time(nullptr));
}

TEST(GenerateTest, RequiresAtLeastOneName) {
  auto ca = GenerateCa("test-ca", std::chrono::hours(1));
  ASSERT_TRUE(ca.ok());
  EXPECT_FALSE(GenerateServingCert(*ca, {}, {}, std::chrono::hours(1)).ok());
}

TEST(GenerateTest, BadIpIsAClearError) {
  auto ca = GenerateCa("test-ca", std::chrono::hours(1));
  auto leaf = GenerateServingCert(*ca, {}, {"not-an-ip"}, std::chrono::hours(1));
  ASSERT_FALSE(leaf.ok());
  EXPECT_NE(leaf.status().message().find("subjectAltName"), std::string::npos);
}

TEST(IdentityTest, MismatchedKeyIsRejected) {
  auto ca = GenerateCa("a", std::chrono::hours(1));
  auto other = GenerateCa("b", std::chrono::hours(1));
  auto id = TlsIdentity::FromPem(ca->cert_pem, other->key_pem);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.status().message().find("does not match"), std::string::npos);
}

TEST(IdentityTest, GarbageIsRejected) {
  EXPECT_FALSE(TlsIdentity::FromPem("garbage", "garbage").ok());
}

TEST(GenerateTest, WritesTheThreeFilesWithPrivateKeyMode) {
  const std::string dir = ::testing::TempDir() + "/certs-" + std::to_string(::getpid());
  auto ca = GenerateCa("ca", std::chrono::hours(1));
  auto leaf = GenerateServingCert(*ca, {"localhost"}, {}, std::chrono::hours(1));
  ASSERT_TRUE(WriteCertificateFiles(dir, *ca, *leaf).ok());
  for (const char* f : {"ca.crt", "tls.crt", "tls.key"}) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + f)) << f;
  }
  const auto perms = std::filesystem::status(dir + "/tls.key").permissions();
  EXPECT_EQ(perms & std::filesystem::perms::others_read, std::filesystem::perms::none);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace bg::certs
