#include <cstdio>

#include "certs/generate.h"
#include "cmd/commands.h"
#include "cmd/flags.h"

namespace bg::cmd {

int CertsGenerate(int argc, char** argv) {
  Flags flags("backup-guard certs generate --out DIR [flags]",
              {{"out", "", "the folder to write ca.crt, tls.crt and tls.key to (required)"},
               {"dns", "", "a DNS SAN (repeatable)"},
               {"ip", "", "an IP SAN (repeatable)"},
               {"validity", "8760h", "how long the certificates are valid"}});
  if (Status s = flags.Parse(argc, argv, 3); !s.ok()) {
    std::fprintf(stderr, "certs generate: %s\n", s.message().c_str());
    return 2;
  }
  if (!flags.Has("out")) {
    std::fprintf(stderr, "certs generate: --out DIR is required\n");
    return 2;
  }
  double validity = 365.0 * 24 * 3600;  // local use: a year
  if (flags.Has("validity")) {
    if (Status s = ParseDurationSeconds(flags.Get("validity"), &validity); !s.ok()) {
      std::fprintf(stderr, "certs generate: %s\n", s.message().c_str());
      return 2;
    }
  }
  const auto lifetime = std::chrono::seconds(static_cast<long long>(validity));
  auto ca = certs::GenerateCa("backup-guard-ca", lifetime);
  if (!ca.ok()) {
    std::fprintf(stderr, "certs generate: %s\n", ca.status().message().c_str());
    return 1;
  }
  auto serving = certs::GenerateServingCert(*ca, flags.GetAll("dns"), flags.GetAll("ip"), lifetime);
  if (!serving.ok()) {
    std::fprintf(stderr, "certs generate: %s\n", serving.status().message().c_str());
    return 1;
  }
  if (Status s = certs::WriteCertificateFiles(flags.Get("out"), *ca, *serving); !s.ok()) {
    std::fprintf(stderr, "certs generate: %s\n", s.message().c_str());
    return 1;
  }
  std::printf("wrote %s/ca.crt, tls.crt, tls.key\n", flags.Get("out").c_str());
  return 0;
}

}  // namespace bg::cmd
