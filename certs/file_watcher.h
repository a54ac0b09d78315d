// FileCertificateWatcher: file mode (cert-manager, or your own files). Polls tls.crt and tls.key
// and swaps the served identity when either changes. Polling stat() through the paths follows
// kubelet's atomic symlink swaps (..data -> ..2026_...), which inotify on the file would miss.
// A broken or mismatched pair is rejected and the pair already served keeps serving.
//
// Thread-safety: Run() on its own thread; CheckOnce() is for tests and start-up.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include "certs/identity.h"
#include "certs/metrics.h"
#include "common/status.h"

namespace bg::certs {

class FileCertificateWatcher {
 public:
  FileCertificateWatcher(std::string cert_file, std::string key_file, CertificateStore& store,
                         CertificateMetrics* metrics,
                         std::chrono::milliseconds interval = std::chrono::milliseconds(1000));

  // Loads the pair when it differs from the last one seen. Returns the load's status (Ok when
  // nothing changed).
  Status CheckOnce();
  void Run(const std::atomic<bool>& stop);

 private:
  std::string Fingerprint() const;

  const std::string cert_file_;
  const std::string key_file_;
  CertificateStore& store_;
  CertificateMetrics* metrics_;
  const std::chrono::milliseconds interval_;
  std::string last_fingerprint_;
};

}  // namespace bg::certs
