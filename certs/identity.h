// TlsIdentity: a parsed certificate chain and its private key, immutable once built.
// CertificateStore: the identity the TLS listener serves, swapped atomically so a reload never
// interrupts a handshake in flight (each handshake keeps the shared_ptr it started with).
//
// Thread-safety: TlsIdentity is immutable and shared freely; CertificateStore is safe for
// concurrent Set()/Current().
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <ctime>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"

namespace bg::certs {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackFree>;

class TlsIdentity {
 public:
  TlsIdentity(const TlsIdentity&) = delete;
  TlsIdentity& operator=(const TlsIdentity&) = delete;

  // Parses a PEM chain (leaf first) and a PEM key. Fails when either is malformed or when the key
  // does not belong to the leaf certificate.
  static Result<std::shared_ptr<const TlsIdentity>> FromPem(const std::string& cert_pem,
                                                            const std::string& key_pem);

  X509* leaf() const { return leaf_.get(); }
  STACK_OF(X509) * chain() const { return chain_.get(); }  // intermediates, may be empty
  EVP_PKEY* key() const { return key_.get(); }
  std::time_t not_after() const { return not_after_; }

 private:
  TlsIdentity() = default;
  X509Ptr leaf_;
  X509StackPtr chain_;
  PkeyPtr key_;
  std::time_t not_after_ = 0;
};

class CertificateStore {
 public:
  CertificateStore() = default;
  CertificateStore(const CertificateStore&) = delete;
  CertificateStore& operator=(const CertificateStore&) = delete;

  void Set(std::shared_ptr<const TlsIdentity> identity);
  std::shared_ptr<const TlsIdentity> Current() const;

  // Installs a certificate callback on `ctx` that serves Current() to each new handshake.
  // The store must outlive `ctx`.
  void InstallOn(SSL_CTX* ctx);

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const TlsIdentity> current_;
};

// Reads a whole file; fails with a message naming the path.
Result<std::string> ReadFile(const std::string& path);

}  // namespace bg::certs
