#include "certs/generate.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>

#include "certs/identity.h"

namespace bg::certs {
namespace {

// Clock skew between nodes: certificates start being valid slightly in the past (five minutes,
// or a tenth of a short lifetime so renewal at two-thirds of it stays meaningful).
constexpr long kMaxBackdateSeconds = 300;

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

std::string LastError(const char* what) {
  const unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return std::string(what) + ": " + buf;
}

PkeyPtr NewP256Key() { return PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }

std::string ToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string ToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

bool AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// Builds an unsigned certificate with a random 127-bit serial and the validity window.
Result<X509Ptr> NewCertificate(EVP_PKEY* key, const std::string& cn,
                               std::chrono::seconds validity) {
  X509Ptr cert(X509_new());
  if (!cert) return Status::Internal(LastError("X509_new"));
  X509_set_version(cert.get(), 2);
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1)
    return Status::Internal(LastError("RAND_bytes"));
  serial_bytes[0] &= 0x7f;  // keep it positive
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(
      BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr), BN_free);
  BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()));
  const long backdate =
      std::min<long>(kMaxBackdateSeconds, static_cast<long>(validity.count() / 10));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -backdate);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(validity.count()));
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return cert;
}

}  // namespace

Result<PemPair> GenerateCa(const std::string& common_name, std::chrono::seconds validity) {
  PkeyPtr key = NewP256Key();
  if (!key) return Status::Internal(LastError("generating the CA key"));
  auto cert = NewCertificate(key.get(), common_name, validity);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509_set_issuer_name(c, X509_get_subject_name(c));
  if (!AddExtension(c, c, NID_basic_constraints, "critical,CA:TRUE") ||
      !AddExtension(c, c, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature") ||
      !AddExtension(c, c, NID_subject_key_identifier, "hash")) {
    return Status::Internal(LastError("CA extensions"));
  }
  if (X509_sign(c, key.get(), EVP_sha256()) == 0)
    return Status::Internal(LastError("signing the CA"));
  return PemPair{ToPem(c), ToPem(key.get())};
}

namespace {

// Issues a leaf signed by `ca` with the given extended key usage and, when non-empty, SANs.
Result<PemPair> IssueLeaf(const PemPair& ca, const std::string& cn, const std::string& san,
                          const char* extended_key_usage, std::chrono::seconds validity) {
  auto ca_id = TlsIdentity::FromPem(ca.cert_pem, ca.key_pem);
  if (!ca_id.ok()) return Status::InvalidArgument("CA: " + ca_id.status().message());
  PkeyPtr key = NewP256Key();
  if (!key) return Status::Internal(LastError("generating the key"));
  auto cert = NewCertificate(key.get(), cn, validity);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509* issuer = (*ca_id)->leaf();
  X509_set_issuer_name(c, X509_get_subject_name(issuer));
  if (!AddExtension(c, issuer, NID_basic_constraints, "critical,CA:FALSE") ||
      !AddExtension(c, issuer, NID_key_usage, "critical,digitalSignature") ||
      !AddExtension(c, issuer, NID_ext_key_usage, extended_key_usage) ||
      !AddExtension(c, issuer, NID_authority_key_identifier, "keyid:always")) {
    return Status::Internal(LastError("certificate extensions"));
  }
  if (!san.empty() && !AddExtension(c, issuer, NID_subject_alt_name, san)) {
    return Status::InvalidArgument(LastError(("subjectAltName \"" + san + "\"").c_str()));
  }
  if (X509_sign(c, (*ca_id)->key(), EVP_sha256()) == 0) {
    return Status::Internal(LastError("signing the certificate"));
  }
  return PemPair{ToPem(c), ToPem(key.get())};
}

}  // namespace

Result<PemPair> GenerateServingCert(const PemPair& ca, const std::vector<std::string>& dns_names,
                                    const std::vector<std::string>& ips,
                                    std::chrono::seconds validity) {
  if (dns_names.empty() && ips.empty()) {
    return Status::InvalidArgument("a serving certificate needs at least one DNS name or IP");
  }
  std::string san;
  for (const auto& d : dns_names) san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
  for (const auto& ip : ips) san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
  const std::string cn = dns_names.empty() ? ips.front() : dns_names.front();
  return IssueLeaf(ca, cn, san, "serverAuth", validity);
}

Result<PemPair> GenerateClientCert(const PemPair& ca, const std::string& common_name,
                                   std::chrono::seconds validity) {
  return IssueLeaf(ca, common_name, "", "clientAuth", validity);
}

Status WriteCertificateFiles(const std::string& dir, const PemPair& ca, const PemPair& serving) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Unavailable("cannot create " + dir + ": " + ec.message());
  auto write = [&](const std::string& name, const std::string& data, mode_t mode) -> Status {
    const std::string path = dir + "/" + name;
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) return Status::Unavailable("cannot write " + tmp);
      out << data;
      if (!out.flush()) return Status::Unavailable("cannot write " + tmp);
    }
    ::chmod(tmp.c_str(), mode);
    std::filesystem::rename(tmp, path, ec);  // atomic, so a watcher never sees half a file
    if (ec) return Status::Unavailable("cannot rename " + tmp + ": " + ec.message());
    return Status::Ok();
  };
  if (Status s = write("ca.crt", ca.cert_pem, 0644); !s.ok()) return s;
  if (Status s = write("tls.key", serving.key_pem, 0600); !s.ok()) return s;
  return write("tls.crt", serving.cert_pem, 0644);
}

}  // namespace bg::certs
