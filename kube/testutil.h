// Test helpers for kube/: temporary directories and an in-memory PKI (ECDSA P-256) for TLS tests.
// Test-only; not part of bg_kube. Failures abort the test binary (they are bugs in the test setup).
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

namespace bg::kube::testutil {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes `content` to `relative` (parent directories are created) and returns the full path.
  std::string WriteFile(const std::string& relative, const std::string& content) const;

 private:
  std::string path_;
};

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

struct CertAndKey {
  std::string cert_pem;
  std::string key_pem;
};

struct LeafSpec {
  std::string common_name;
  std::vector<std::string> ip_sans;   // like "127.0.0.1"
  std::vector<std::string> dns_sans;  // like "localhost"
  bool server_auth = true;            // extendedKeyUsage serverAuth, else clientAuth
};

// A self-signed CA that issues leaf certificates.
class TestCa {
 public:
  explicit TestCa(const std::string& common_name);

  const std::string& cert_pem() const { return cert_pem_; }
  CertAndKey Issue(const LeafSpec& spec) const;
  CertAndKey IssueServer(const std::string& ip = "127.0.0.1") const;
  CertAndKey IssueClient(const std::string& common_name) const;

 private:
  PkeyPtr key_;
  X509Ptr cert_;
  std::string cert_pem_;
};

X509Ptr ParseCert(const std::string& pem);
PkeyPtr ParseKey(const std::string& pem);
// A PKCS#8 PEM of `key_pem` encrypted with `passphrase`.
std::string EncryptKey(const std::string& key_pem, const std::string& passphrase);

}  // namespace bg::kube::testutil
