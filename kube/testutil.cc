#include "kube/testutil.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace bg::kube::testutil {
namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "testutil: %s: %s\n", what.c_str(),
               ERR_error_string(ERR_get_error(), nullptr));
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Die(what);
}

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  return out;
}

std::string CertPem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  Check(PEM_write_bio_X509(bio, cert) == 1, "PEM_write_bio_X509");
  return BioToString(bio);
}

std::string KeyPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  Check(PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1,
        "PEM_write_bio_PrivateKey");
  return BioToString(bio);
}

void AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  Check(ext != nullptr, "X509V3_EXT_conf_nid");
  Check(X509_add_ext(cert, ext, -1) == 1, "X509_add_ext");
  X509_EXTENSION_free(ext);
}

// A certificate for `key` named `common_name`, valid from an hour ago for a day, not yet signed.
X509Ptr NewCert(EVP_PKEY* key, const std::string& common_name) {
  static std::atomic<uint64_t> serial{1000};
  X509Ptr cert(X509_new());
  Check(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial.fetch_add(1));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24L * 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  Check(X509_set_pubkey(cert.get(), key) == 1, "X509_set_pubkey");
  return cert;
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/kube_test.XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::WriteFile(const std::string& relative, const std::string& content) const {
  const std::filesystem::path full = std::filesystem::path(path_) / relative;
  std::filesystem::create_directories(full.parent_path());
  std::ofstream out(full, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) {
    std::fprintf(stderr, "testutil: cannot write %s\n", full.c_str());
    std::abort();
  }
  return full.string();
}

TestCa::TestCa(const std::string& common_name) : key_(EVP_EC_gen("P-256")) {
  Check(key_ != nullptr, "EVP_EC_gen");
  cert_ = NewCert(key_.get(), common_name);
  X509_set_issuer_name(cert_.get(), X509_get_subject_name(cert_.get()));
  AddExtension(cert_.get(), cert_.get(), NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(cert_.get(), cert_.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  AddExtension(cert_.get(), cert_.get(), NID_subject_key_identifier, "hash");
  Check(X509_sign(cert_.get(), key_.get(), EVP_sha256()) > 0, "X509_sign CA");
  cert_pem_ = CertPem(cert_.get());
}

CertAndKey TestCa::Issue(const LeafSpec& spec) const {
  PkeyPtr key(EVP_EC_gen("P-256"));
  Check(key != nullptr, "EVP_EC_gen");
  X509Ptr cert = NewCert(key.get(), spec.common_name);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert_.get()));
  AddExtension(cert.get(), cert_.get(), NID_basic_constraints, "critical,CA:FALSE");
  AddExtension(cert.get(), cert_.get(), NID_key_usage, "critical,digitalSignature");
  AddExtension(cert.get(), cert_.get(), NID_ext_key_usage,
               spec.server_auth ? "serverAuth" : "clientAuth");
  AddExtension(cert.get(), cert_.get(), NID_authority_key_identifier, "keyid:always");
  std::string sans;
  for (const std::string& ip : spec.ip_sans) sans += (sans.empty() ? "IP:" : ",IP:") + ip;
  for (const std::string& dns : spec.dns_sans) sans += (sans.empty() ? "DNS:" : ",DNS:") + dns;
  if (!sans.empty()) AddExtension(cert.get(), cert_.get(), NID_subject_alt_name, sans);
  Check(X509_sign(cert.get(), key_.get(), EVP_sha256()) > 0, "X509_sign leaf");
  return CertAndKey{CertPem(cert.get()), KeyPem(key.get())};
}

CertAndKey TestCa::IssueServer(const std::string& ip) const {
  return Issue(LeafSpec{"apiserver", {ip}, {"localhost"}, /*server_auth=*/true});
}

CertAndKey TestCa::IssueClient(const std::string& common_name) const {
  return Issue(LeafSpec{common_name, {}, {}, /*server_auth=*/false});
}

X509Ptr ParseCert(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509Ptr cert(PEM_read_bio_X509(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  Check(cert != nullptr, "PEM_read_bio_X509");
  return cert;
}

PkeyPtr ParseKey(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  Check(key != nullptr, "PEM_read_bio_PrivateKey");
  return key;
}

std::string EncryptKey(const std::string& key_pem, const std::string& passphrase) {
  PkeyPtr key = ParseKey(key_pem);
  BIO* bio = BIO_new(BIO_s_mem());
  Check(PEM_write_bio_PKCS8PrivateKey(bio, key.get(), EVP_aes_256_cbc(), passphrase.data(),
                                      static_cast<int>(passphrase.size()), nullptr, nullptr) == 1,
        "PEM_write_bio_PKCS8PrivateKey");
  return BioToString(bio);
}

}  // namespace bg::kube::testutil
