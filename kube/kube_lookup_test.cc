#include "kube/kube_lookup.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/nonblocking.h"
#include "kube/rest_api.h"
#include "tests/testing/fake_transport.h"

namespace bg::kube {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;

constexpr char kBackupTargetPath[] =
    "/apis/longhorn.io/v1beta2/namespaces/longhorn-system/backuptargets/default";

using testing::FakeTransport;

constexpr char kNotFound[] =
    R"({"kind":"Status","code":404,"reason":"NotFound","details":{"name":"default"}})";

class KubeLookupTest : public ::testing::Test {
 protected:
  // Paths without an answer are 404, naming the object as the API server's 404 does.
  KubeLookupTest() : transport_(std::make_shared<FakeTransport>()) {
    options_.clock = &clock_;
    transport_->AnswerAll(404, kNotFound);
  }
  // Lookups only read: no request carries a body.
  void TearDown() override {
    for (const FakeTransport::Recorded& r : transport_->requests()) {
      EXPECT_EQ(r.body, "");
      EXPECT_EQ(r.content_type, "");
    }
  }

  KubeLookup& lookup() {
    if (!lookup_) lookup_ = std::make_unique<KubeLookup>(transport_, options_);
    return *lookup_;
  }

  ManualClock clock_;
  KubeLookupOptions options_;
  std::shared_ptr<FakeTransport> transport_;
  std::unique_ptr<KubeLookup> lookup_;
};

TEST_F(KubeLookupTest, GetReturnsTheObject) {
  transport_->Answer(kBackupTargetPath, 200,
                     R"({"kind":"BackupTarget","metadata":{"name":"default","uid":"u1"}})");
  std::optional<json> target = lookup().Get("backuptargets", "longhorn-system", "default").value();
  ASSERT_TRUE(target.has_value());
  EXPECT_EQ((*target)["metadata"]["uid"], "u1");
  EXPECT_THAT(transport_->request_lines(), ElementsAre(std::string("GET ") + kBackupTargetPath));
}

TEST_F(KubeLookupTest, NotFoundAnswersNullopt) {
  EXPECT_FALSE(lookup().Get("backuptargets", "longhorn-system", "default")->has_value());
  EXPECT_EQ(transport_->count(), 1u);
}

TEST_F(KubeLookupTest, EmptyNameIsNotFoundWithoutACall) {
  EXPECT_FALSE(lookup().Get("backupvolumes", "longhorn-system", "")->has_value());
  EXPECT_FALSE(lookup().Get("backupvolumes", "", "vol-1")->has_value());
  EXPECT_FALSE(lookup().Get("", "longhorn-system", "vol-1")->has_value());
  EXPECT_FALSE(lookup().Get("backupvolumes", "longhorn-system", ".")->has_value());
  EXPECT_FALSE(lookup().Get("backupvolumes", "longhorn-system", "..")->has_value());
  EXPECT_EQ(transport_->count(), 0u);
}

TEST_F(KubeLookupTest, NamesAreEncodedIntoOnePathSegment) {
  lookup().Get("backupvolumes", "longhorn-system", "a b/../c?x=1#y");
  EXPECT_THAT(transport_->request_lines(),
              ElementsAre("GET /apis/longhorn.io/v1beta2/namespaces/longhorn-system/backupvolumes/"
                          "a%20b%2F..%2Fc%3Fx%3D1%23y"));
}

TEST_F(KubeLookupTest, CacheServesRepeatsUntilTheTtlPasses) {
  transport_->Answer(kBackupTargetPath, 200, R"({"metadata":{"name":"default"}})");
  EXPECT_TRUE(lookup().Get("backuptargets", "longhorn-system", "default")->has_value());
  clock_.Advance(std::chrono::milliseconds(999));
  EXPECT_TRUE(lookup().Get("backuptargets", "longhorn-system", "default")->has_value());
  EXPECT_EQ(transport_->count(), 1u);
  clock_.Advance(std::chrono::milliseconds(1));
  EXPECT_TRUE(lookup().Get("backuptargets", "longhorn-system", "default")->has_value());
  EXPECT_EQ(transport_->count(), 2u);
}

TEST_F(KubeLookupTest, NotFoundIsCachedToo) {
  EXPECT_FALSE(lookup().Get("backuptargets", "longhorn-system", "default")->has_value());
  transport_->Answer(kBackupTargetPath, 200, R"({"metadata":{"name":"default"}})");
  EXPECT_FALSE(lookup().Get("backuptargets", "longhorn-system", "default")->has_value());
  EXPECT_EQ(transport_->count(), 1u);
  clock_.Advance(options_.cache_ttl);
  EXPECT_TRUE(lookup().Get("backuptargets", "longhorn-system", "default")->has_value());
}

TEST_F(KubeLookupTest, CacheKeysSeparateResourceNamespaceAndName) {
  lookup().Get("backuptargets", "longhorn-system", "default");
  lookup().Get("backupvolumes", "longhorn-system", "default");
  lookup().Get("backuptargets", "other", "default");
  lookup().Get("backuptargets", "longhorn-system", "default2");
  lookup().List("backuptargets", "longhorn-system", "");
  EXPECT_EQ(transport_->count(), 5u);
}

TEST_F(KubeLookupTest, ZeroTtlDisablesTheCache) {
  options_.cache_ttl = std::chrono::milliseconds(0);
  lookup().Get("backuptargets", "longhorn-system", "default");
  lookup().Get("backuptargets", "longhorn-system", "default");
  lookup().List("backups", "longhorn-system", "a=b");
  lookup().List("backups", "longhorn-system", "a=b");
  EXPECT_EQ(transport_->count(), 4u);
}

TEST_F(KubeLookupTest, CacheIsBoundedAndEvictsTheOldest) {
  options_.max_cache_entries = 2;
  lookup().Get("volumes", "ns", "a");
  lookup().Get("volumes", "ns", "b");
  lookup().Get("volumes", "ns", "c");  // evicts a
  lookup().Get("volumes", "ns", "b");  // cached
  lookup().Get("volumes", "ns", "c");  // cached
  EXPECT_EQ(transport_->count(), 3u);
  lookup().Get("volumes", "ns", "a");  // fetched again
  EXPECT_EQ(transport_->count(), 4u);
}

TEST_F(KubeLookupTest, ListEncodesTheLabelSelectorAndFillsKinds) {
  const std::string path =
      "/apis/longhorn.io/v1beta2/namespaces/longhorn-system/backups"
      "?labelSelector=backup-volume%3Dvol-1%2Cbackup-target%3Ddefault";
  transport_->Answer(path, 200, R"({
    "apiVersion": "longhorn.io/v1beta2", "kind": "BackupList",
    "metadata": {"resourceVersion": "7"},
    "items": [{"metadata": {"name": "b1"}}, {"metadata": {"name": "b2"}, "kind": "Backup"}]})");
  std::vector<json> items =
      lookup()
          .List("backups", "longhorn-system", "backup-volume=vol-1,backup-target=default")
          .value();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0]["metadata"]["name"], "b1");
  EXPECT_EQ(items[0]["kind"], "Backup");
  EXPECT_EQ(items[0]["apiVersion"], "longhorn.io/v1beta2");
  EXPECT_EQ(items[1]["kind"], "Backup");
  EXPECT_THAT(transport_->request_lines(), ElementsAre("GET " + path));
}

TEST_F(KubeLookupTest, ListWithoutSelectorOrNamespace) {
  lookup().List("systembackups", "longhorn-system", "");
  lookup().List("systembackups", "", "");
  EXPECT_THAT(transport_->request_lines(),
              ElementsAre("GET /apis/longhorn.io/v1beta2/namespaces/longhorn-system/systembackups",
                          "GET /apis/longhorn.io/v1beta2/systembackups"));
}

TEST_F(KubeLookupTest, ListIsCached) {
  const std::string path = "/apis/longhorn.io/v1beta2/namespaces/ns/backups?labelSelector=a%3Db";
  transport_->Answer(path, 200, R"({"kind":"BackupList","items":[{"metadata":{"name":"x"}}]})");
  EXPECT_EQ(lookup().List("backups", "ns", "a=b")->size(), 1u);
  EXPECT_EQ(lookup().List("backups", "ns", "a=b")->size(), 1u);
  EXPECT_EQ(transport_->count(), 1u);
}

TEST_F(KubeLookupTest, ReadyProbesVersionAtMostOncePerInterval) {
  EXPECT_FALSE(lookup().Ready());  // /version answers 404 from the fake
  EXPECT_FALSE(lookup().Ready());
  EXPECT_EQ(transport_->count(), 1u);
  clock_.Advance(options_.ready_retry_interval);
  transport_->Answer("/version", 200, R"({"gitVersion":"v1.34.3"})");
  EXPECT_TRUE(lookup().Ready());
  EXPECT_EQ(transport_->count(), 2u);
  // Once ready, always ready, without further calls.
  transport_->Fail("/version", Status::Unavailable("Connection"));
  clock_.Advance(std::chrono::hours(1));
  EXPECT_TRUE(lookup().Ready());
  EXPECT_THAT(transport_->request_lines(), ElementsAre("GET /version", "GET /version"));
}

TEST_F(KubeLookupTest, ReadyStaysFalseWhileUnreachable) {
  transport_->Fail("/version", Status::Unavailable("Connection"));
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(lookup().Ready());
    clock_.Advance(options_.ready_retry_interval);
  }
  EXPECT_EQ(transport_->count(), 3u);
}

TEST_F(KubeLookupTest, RepeatedWarningsAreRateLimited) {
  options_.cache_ttl = std::chrono::milliseconds(0);
  transport_->Answer(kBackupTargetPath, 500, R"({"message":"etcd is sad"})");
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 5; ++i) lookup().Get("backuptargets", "longhorn-system", "default");
  clock_.Advance(options_.warning_interval);
  lookup().Get("backuptargets", "longhorn-system", "default");
  const std::string logs = ::testing::internal::GetCapturedStderr();

  std::vector<json> lines;
  size_t start = 0;
  while (start < logs.size()) {
    size_t end = logs.find('\n', start);
    if (end == std::string::npos) end = logs.size();
    if (end > start) lines.push_back(json::parse(logs.substr(start, end - start)));
    start = end + 1;
  }
  ASSERT_EQ(lines.size(), 2u) << logs;
  EXPECT_EQ(lines[0]["level"], "warn");
  EXPECT_EQ(lines[0]["status"], 500);
  EXPECT_EQ(lines[0]["reason"], "etcd is sad");
  EXPECT_EQ(lines[1]["suppressed_since_last"], 4);
}

TEST_F(KubeLookupTest, ConcurrentCallsAreSafe) {
  options_.max_cache_entries = 8;
  transport_->Answer(kBackupTargetPath, 200, R"({"metadata":{"name":"default"}})");
  lookup();  // construct before the threads share lookup_
  std::vector<std::thread> threads;
  std::atomic<int> found{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        if (lookup_->Get("backuptargets", "longhorn-system", "default").value()) ++found;
        lookup_->Get("volumes", "ns", "v" + std::to_string((t * 7 + i) % 20));
        lookup_->List("backups", "ns", "x=" + std::to_string(i % 5));
        if (i % 50 == 0) clock_.Advance(std::chrono::milliseconds(500));
        lookup_->Ready();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(found.load(), 8 * 200);
}

TEST_F(KubeLookupTest, ErrorsAreAnsweredAsErrorsAndNeverCached) {
  transport_->Answer(kBackupTargetPath, 500, R"({"kind":"Status","message":"etcd is sad"})");
  GetResult first = lookup().Get("backuptargets", "longhorn-system", "default");
  ASSERT_FALSE(first.ok()) << "a failed read is not absence";
  EXPECT_NE(first.status().message().find("etcd is sad"), std::string::npos);
  EXPECT_FALSE(lookup().Get("backuptargets", "longhorn-system", "default").ok());
  EXPECT_EQ(transport_->count(), 2u) << "an error is read through every time";
  transport_->Answer(kBackupTargetPath, 200, R"({"metadata":{"name":"default"}})");
  EXPECT_TRUE(lookup().Get("backuptargets", "longhorn-system", "default")->has_value());
  EXPECT_EQ(transport_->count(), 3u);

  const std::string list = "/apis/longhorn.io/v1beta2/namespaces/ns/backups";
  transport_->Fail(list, Status::Unavailable("Connection"));
  EXPECT_FALSE(lookup().List("backups", "ns", "").ok());
  transport_->Answer(list, 200, R"({"items": "nope"})");
  EXPECT_FALSE(lookup().List("backups", "ns", "").ok());
  transport_->Answer(list, 200, R"({"kind":"BackupList","items":[{"metadata":{"name":"x"}}]})");
  EXPECT_EQ(lookup().List("backups", "ns", "")->size(), 1u);
  EXPECT_EQ(transport_->count(), 6u);
}

TEST_F(KubeLookupTest, A404ForATypeNotServedIsAnError) {
  transport_->Answer(kBackupTargetPath, 404,
                     R"({"kind":"Status","code":404,"message":"the server could not find the )"
                     R"(requested resource"})");
  EXPECT_FALSE(lookup().Get("backuptargets", "longhorn-system", "default").ok());
}

TEST_F(KubeLookupTest, CachesWithinTheTtlAndReadsThroughAfterIt) {
  const std::string list = "/apis/longhorn.io/v1beta2/namespaces/ns/backups?labelSelector=a%3Db";
  transport_->Answer(list, 200, R"({"kind":"BackupList","items":[{"metadata":{"name":"x"}}]})");
  EXPECT_EQ(lookup().List("backups", "ns", "a=b")->size(), 1u);
  transport_->Answer(list, 200, R"({"kind":"BackupList","items":[]})");
  clock_.Advance(options_.cache_ttl - std::chrono::milliseconds(1));
  EXPECT_EQ(lookup().List("backups", "ns", "a=b")->size(), 1u) << "cached";
  clock_.Advance(std::chrono::milliseconds(1));
  EXPECT_TRUE(lookup().List("backups", "ns", "a=b")->empty()) << "read through after the TTL";
  EXPECT_EQ(transport_->count(), 2u);
}

// On a thread that must not wait (the listener's event thread answering a request itself), a
// read the cache answers is answered; one that would go to the API throws WouldBlock before any
// request, so that a worker can make it.
TEST_F(KubeLookupTest, OnAThreadThatMustNotWaitOnlyTheCacheAnswers) {
  transport_->Answer(kBackupTargetPath, 200,
                     R"({"kind":"BackupTarget","metadata":{"name":"default","uid":"u1"}})");
  const std::string list_path = "/apis/longhorn.io/v1beta2/namespaces/ns/backups";
  transport_->Answer(list_path, 200,
                     R"({"kind":"BackupList","items":[{"metadata":{"name":"x"}}]})");
  {
    NonBlockingScope scope;
    EXPECT_THROW((void)lookup().Get("backuptargets", "longhorn-system", "default"), WouldBlock);
    EXPECT_THROW((void)lookup().List("backups", "ns", ""), WouldBlock);
    EXPECT_THROW((void)lookup().Ready(), WouldBlock);
    // Answers that need no request still come.
    EXPECT_FALSE(lookup().Get("backuptargets", "longhorn-system", "")->has_value());
  }
  EXPECT_EQ(transport_->count(), 0u);
  // A thread that may wait fills the cache (and probes readiness)...
  EXPECT_TRUE(lookup().Get("backuptargets", "longhorn-system", "default")->has_value());
  EXPECT_EQ(lookup().List("backups", "ns", "")->size(), 1u);
  EXPECT_FALSE(lookup().Ready());
  EXPECT_EQ(transport_->count(), 3u);
  // ...and the same reads are then answered on the thread that must not wait, with no request.
  NonBlockingScope scope;
  EXPECT_EQ(
      (*lookup().Get("backuptargets", "longhorn-system", "default").value())["metadata"]["uid"],
      "u1");
  EXPECT_EQ(lookup().List("backups", "ns", "")->size(), 1u);
  EXPECT_FALSE(lookup().Ready());  // probed within the retry interval: false, without a request
  EXPECT_EQ(transport_->count(), 3u);
}

TEST(UrlEncodeTest, KeepsUnreservedAndEncodesTheRest) {
  EXPECT_EQ(UrlEncode("abc-XYZ_0.9~"), "abc-XYZ_0.9~");
  EXPECT_EQ(UrlEncode("a=b,c!=d"), "a%3Db%2Cc%21%3Dd");
  EXPECT_EQ(UrlEncode("k in (a, b)"), "k%20in%20%28a%2C%20b%29");
  EXPECT_EQ(UrlEncode("longhorn.io/x"), "longhorn.io%2Fx");
  EXPECT_EQ(UrlEncode("\xC3\xA9"), "%C3%A9");
}

}  // namespace
}  // namespace bg::kube
