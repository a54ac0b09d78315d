#include "certs/file_watcher.h"

#include <sys/stat.h>

#include <thread>

#include "common/log.h"

namespace bg::certs {

FileCertificateWatcher::FileCertificateWatcher(std::string cert_file, std::string key_file,
                                               CertificateStore& store, CertificateMetrics* metrics,
                                               std::chrono::milliseconds interval)
    : cert_file_(std::move(cert_file)),
      key_file_(std::move(key_file)),
      store_(store),
      metrics_(metrics),
      interval_(interval) {}

// Device, inode, size and mtime of both files, through symlinks.
std::string FileCertificateWatcher::Fingerprint() const {
  std::string fp;
  for (const std::string& path : {cert_file_, key_file_}) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return "";
    fp += std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
          std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
          std::to_string(st.st_mtim.tv_nsec) + ";";
  }
  return fp;
}

Status FileCertificateWatcher::CheckOnce() {
  const std::string fp = Fingerprint();
  if (fp.empty() || fp == last_fingerprint_) return Status::Ok();
  last_fingerprint_ = fp;
  auto cert = ReadFile(cert_file_);
  auto key = ReadFile(key_file_);
  Status status = Status::Ok();
  if (!cert.ok())
    status = cert.status();
  else if (!key.ok())
    status = key.status();
  if (status.ok()) {
    auto identity = TlsIdentity::FromPem(*cert, *key);
    if (identity.ok()) {
      store_.Set(*identity);
      if (metrics_ != nullptr) {
        metrics_->CertificateRead(true);
        metrics_->SetExpiry("serving", (*identity)->not_after());
        metrics_->Reloaded(true);
      }
      log::Info("serving certificate loaded", {{"file", cert_file_}});
      return Status::Ok();
    }
    status = identity.status();
  }
  if (metrics_ != nullptr) {
    metrics_->CertificateRead(false);
    metrics_->Reloaded(false);
  }
  log::Error("certificate reload rejected; the previous pair keeps serving",
             {{"file", cert_file_}, {"error", status.message()}});
  return status;
}

void FileCertificateWatcher::Run(const std::atomic<bool>& stop) {
  while (!stop.load()) {
    (void)CheckOnce();
    const auto until = std::chrono::steady_clock::now() + interval_;
    while (!stop.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

}  // namespace bg::certs
