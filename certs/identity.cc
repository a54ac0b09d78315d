#include "certs/identity.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <fstream>
#include <sstream>

namespace bg::certs {
namespace {

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

int ServeCurrent(SSL* ssl, void* arg) {
  auto* store = static_cast<CertificateStore*>(arg);
  std::shared_ptr<const TlsIdentity> id = store->Current();
  if (!id) return 0;  // no identity: fail the handshake rather than serve nothing
  if (SSL_use_certificate(ssl, id->leaf()) != 1) return 0;
  if (SSL_use_PrivateKey(ssl, id->key()) != 1) return 0;
  if (SSL_set1_chain(ssl, id->chain()) != 1) return 0;
  return 1;
}

}  // namespace

Result<std::shared_ptr<const TlsIdentity>> TlsIdentity::FromPem(const std::string& cert_pem,
                                                                const std::string& key_pem) {
  std::shared_ptr<TlsIdentity> id(new TlsIdentity());
  BioPtr cert_bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  id->leaf_.reset(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!id->leaf_)
    return Status::InvalidArgument("certificate: no PEM certificate: " + OpenSslError());
  id->chain_.reset(sk_X509_new_null());
  while (X509* extra = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)) {
    sk_X509_push(id->chain_.get(), extra);
  }
  ERR_clear_error();  // the loop ends on a harmless "no start line"

  BioPtr key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  id->key_.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!id->key_)
    return Status::InvalidArgument("private key: no PEM private key: " + OpenSslError());
  if (X509_check_private_key(id->leaf_.get(), id->key_.get()) != 1) {
    ERR_clear_error();
    return Status::InvalidArgument("the private key does not match the certificate");
  }
  const ASN1_TIME* not_after = X509_get0_notAfter(id->leaf_.get());
  std::tm tm{};
  if (ASN1_TIME_to_tm(not_after, &tm) == 1) id->not_after_ = timegm(&tm);
  return std::shared_ptr<const TlsIdentity>(std::move(id));
}

void CertificateStore::Set(std::shared_ptr<const TlsIdentity> identity) {
  std::lock_guard<std::mutex> lock(mu_);
  current_ = std::move(identity);
}

std::shared_ptr<const TlsIdentity> CertificateStore::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

void CertificateStore::InstallOn(SSL_CTX* ctx) { SSL_CTX_set_cert_cb(ctx, ServeCurrent, this); }

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::Unavailable("cannot read " + path);
  return ss.str();
}

}  // namespace bg::certs
