// Certificate generation with OpenSSL 3: ECDSA P-256 keys, a self-signed CA, and serving
// certificates signed by it with the SANs given.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace bg::certs {

struct PemPair {
  std::string cert_pem;
  std::string key_pem;
};

Result<PemPair> GenerateCa(const std::string& common_name, std::chrono::seconds validity);

// `ips` must be IPv4 or IPv6 literals; the first DNS name (or IP) becomes the subject CN.
Result<PemPair> GenerateServingCert(const PemPair& ca, const std::vector<std::string>& dns_names,
                                    const std::vector<std::string>& ips,
                                    std::chrono::seconds validity);

// A client certificate (extended key usage clientAuth) for `common_name`, signed by `ca`: the
// identity the API server presents when --client-ca-file is set.
Result<PemPair> GenerateClientCert(const PemPair& ca, const std::string& common_name,
                                   std::chrono::seconds validity);

// Writes ca.crt, tls.crt and tls.key (mode 0600) into `dir`, creating it when absent.
Status WriteCertificateFiles(const std::string& dir, const PemPair& ca, const PemPair& serving);

}  // namespace bg::certs
