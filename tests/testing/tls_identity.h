// LocalhostServing: a fresh CA and a serving certificate for localhost and 127.0.0.1, the identity
// the webhook listener tests serve with. Header-only: it needs bg_certs, which those tests link.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "certs/generate.h"
#include "certs/identity.h"
#include "common/status.h"

namespace bg::testing {

struct LocalhostServing {
  std::string ca_pem;                                  // the CA a client trusts
  std::shared_ptr<const certs::TlsIdentity> identity;  // what the server presents
};

// Valid for an hour; an error when OpenSSL cannot generate or load the pair.
inline Result<LocalhostServing> MakeLocalhostServing(const std::string& ca_name = "test-ca") {
  auto ca = certs::GenerateCa(ca_name, std::chrono::hours(1));
  if (!ca.ok()) return ca.status();
  auto leaf = certs::GenerateServingCert(*ca, {"localhost"}, {"127.0.0.1"}, std::chrono::hours(1));
  if (!leaf.ok()) return leaf.status();
  auto identity = certs::TlsIdentity::FromPem(leaf->cert_pem, leaf->key_pem);
  if (!identity.ok()) return identity.status();
  return LocalhostServing{ca->cert_pem, *identity};
}

}  // namespace bg::testing
