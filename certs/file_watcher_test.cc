#include "certs/file_watcher.h"

#include <gtest/gtest.h>
#include <openssl/x509v3.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "certs/generate.h"

namespace bg::certs {
namespace {

namespace fs = std::filesystem;

PemPair Pair(const std::string& name) {
  auto ca = GenerateCa("ca", std::chrono::hours(1));
  return *GenerateServingCert(*ca, {name}, {}, std::chrono::hours(1));
}

void Write(const fs::path& path, const std::string& data) {
  std::ofstream(path, std::ios::trunc) << data;
}

bool Serves(CertificateStore& store, const std::string& name) {
  auto id = store.Current();
  return id && X509_check_host(id->leaf(), name.c_str(), 0, 0, nullptr) == 1;
}

class FileWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("fw-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  CertificateStore store_;
};

TEST_F(FileWatcherTest, LoadsThePairAndReloadsWhenItChanges) {
  const PemPair a = Pair("a.example");
  Write(dir_ / "tls.crt", a.cert_pem);
  Write(dir_ / "tls.key", a.key_pem);
  FileCertificateWatcher watcher((dir_ / "tls.crt").string(), (dir_ / "tls.key").string(), store_,
                                 nullptr);
  ASSERT_TRUE(watcher.CheckOnce().ok());
  EXPECT_TRUE(Serves(store_, "a.example"));
  const PemPair b = Pair("b.example");
  Write(dir_ / "tls.key", b.key_pem);
  Write(dir_ / "tls.crt", b.cert_pem);
  ASSERT_TRUE(watcher.CheckOnce().ok());
  EXPECT_TRUE(Serves(store_, "b.example"));
}

TEST_F(FileWatcherTest, BrokenPairIsRejectedAndTheOldPairKeepsServing) {
  const PemPair a = Pair("a.example");
  Write(dir_ / "tls.crt", a.cert_pem);
  Write(dir_ / "tls.key", a.key_pem);
  FileCertificateWatcher watcher((dir_ / "tls.crt").string(), (dir_ / "tls.key").string(), store_,
                                 nullptr);
  ASSERT_TRUE(watcher.CheckOnce().ok());
  const PemPair b = Pair("b.example");
  Write(dir_ / "tls.crt", b.cert_pem);  // key not updated: mismatched pair
  EXPECT_FALSE(watcher.CheckOnce().ok());
  EXPECT_TRUE(Serves(store_, "a.example"));
  Write(dir_ / "tls.crt", "garbage");
  EXPECT_FALSE(watcher.CheckOnce().ok());
  EXPECT_TRUE(Serves(store_, "a.example"));
}

TEST_F(FileWatcherTest, KubeletSymlinkSwapIsFollowed) {
  // kubelet layout: tls.crt -> ..data/tls.crt, ..data -> ..v1, swapped atomically to ..v2.
  const PemPair a = Pair("a.example"), b = Pair("b.example");
  fs::create_directories(dir_ / "..v1");
  fs::create_directories(dir_ / "..v2");
  Write(dir_ / "..v1" / "tls.crt", a.cert_pem);
  Write(dir_ / "..v1" / "tls.key", a.key_pem);
  Write(dir_ / "..v2" / "tls.crt", b.cert_pem);
  Write(dir_ / "..v2" / "tls.key", b.key_pem);
  fs::create_directory_symlink("..v1", dir_ / "..data");
  fs::create_symlink("..data/tls.crt", dir_ / "tls.crt");
  fs::create_symlink("..data/tls.key", dir_ / "tls.key");
  FileCertificateWatcher watcher((dir_ / "tls.crt").string(), (dir_ / "tls.key").string(), store_,
                                 nullptr);
  ASSERT_TRUE(watcher.CheckOnce().ok());
  EXPECT_TRUE(Serves(store_, "a.example"));
  fs::create_directory_symlink("..v2", dir_ / "..data_tmp");
  fs::rename(dir_ / "..data_tmp", dir_ / "..data");  // atomic swap
  ASSERT_TRUE(watcher.CheckOnce().ok());
  EXPECT_TRUE(Serves(store_, "b.example"));
}

// controller-runtime's certwatcher counters, as its dashboards read them: a sample without labels.
double CounterValue(prometheus::Registry& registry, const std::string& name) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    EXPECT_EQ(family.metric.size(), 1u) << name;
    if (family.metric.size() != 1) return -1;
    EXPECT_TRUE(family.metric[0].label.empty()) << name;
    return family.metric[0].counter.value;
  }
  ADD_FAILURE() << "no family " << name;
  return -1;
}

TEST_F(FileWatcherTest, CertwatcherCountersCountEveryReadAndItsErrors) {
  prometheus::Registry registry;
  CertificateMetrics metrics(registry);
  const auto reads = [&] { return CounterValue(registry, "certwatcher_read_certificate_total"); };
  const auto errors = [&] {
    return CounterValue(registry, "certwatcher_read_certificate_errors_total");
  };
  EXPECT_EQ(reads(), 0);  // present from the start, so a rate() has a series to work on
  EXPECT_EQ(errors(), 0);

  const PemPair a = Pair("a.example");
  Write(dir_ / "tls.crt", a.cert_pem);
  Write(dir_ / "tls.key", a.key_pem);
  FileCertificateWatcher watcher((dir_ / "tls.crt").string(), (dir_ / "tls.key").string(), store_,
                                 &metrics);
  ASSERT_TRUE(watcher.CheckOnce().ok());
  EXPECT_EQ(reads(), 1);
  EXPECT_EQ(errors(), 0);
  ASSERT_TRUE(watcher.CheckOnce().ok());  // unchanged files are not read again
  EXPECT_EQ(reads(), 1);

  const PemPair b = Pair("b.example");
  Write(dir_ / "tls.crt", b.cert_pem);  // key not updated: mismatched pair
  EXPECT_FALSE(watcher.CheckOnce().ok());
  EXPECT_EQ(reads(), 2);
  EXPECT_EQ(errors(), 1);
  Write(dir_ / "tls.crt", "garbage");
  EXPECT_FALSE(watcher.CheckOnce().ok());
  EXPECT_EQ(reads(), 3);
  EXPECT_EQ(errors(), 2);
  fs::remove(dir_ / "tls.key");
  Write(dir_ / "tls.crt", b.cert_pem);
  EXPECT_TRUE(watcher.CheckOnce().ok());  // a file missing mid-swap is not a read
  EXPECT_EQ(reads(), 3);
  Write(dir_ / "tls.key", b.key_pem);
  ASSERT_TRUE(watcher.CheckOnce().ok());
  EXPECT_EQ(reads(), 4);
  EXPECT_EQ(errors(), 2);
  EXPECT_TRUE(Serves(store_, "b.example"));

  const std::string exposition = prometheus::TextSerializer().Serialize(registry.Collect());
  EXPECT_NE(exposition.find("\ncertwatcher_read_certificate_total 4\n"), std::string::npos)
      << exposition;
  EXPECT_NE(exposition.find("\ncertwatcher_read_certificate_errors_total 2\n"), std::string::npos)
      << exposition;
}

}  // namespace
}  // namespace bg::certs
