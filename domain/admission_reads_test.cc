#include "domain/admission_reads.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "kube/clock.h"
#include "kube/kube_lookup.h"
#include "tests/testing/fake_lookup.h"
#include "tests/testing/fake_transport.h"

namespace bg::domain {
namespace {

using nlohmann::json;
using testing::FakeLookup;
using testing::FakeTransport;

constexpr char kBackupTargetPath[] =
    "/apis/longhorn.io/v1beta2/namespaces/longhorn-system/backuptargets/default";

// Admission over the lookup `serve` gives it: every way the API can fail reads as NotFound.
class AdmissionOverKubeLookupTest : public ::testing::Test {
 protected:
  // Paths without an answer are 404, naming the object as the API server's 404 does.
  AdmissionOverKubeLookupTest() : transport_(std::make_shared<FakeTransport>()) {
    options_.clock = &clock_;
    transport_->AnswerAll(
        404, R"({"kind":"Status","code":404,"reason":"NotFound","details":{"name":"default"}})");
  }

  kube::KubeLookup& lookup() {
    if (!lookup_) lookup_ = std::make_unique<kube::KubeLookup>(transport_, options_);
    return *lookup_;
  }

  kube::ManualClock clock_;
  kube::KubeLookupOptions options_;
  std::shared_ptr<FakeTransport> transport_;
  std::unique_ptr<kube::KubeLookup> lookup_;
};

TEST_F(AdmissionOverKubeLookupTest, ServerErrorAnswersNotFound) {
  transport_->Answer(kBackupTargetPath, 500, R"({"kind":"Status","message":"etcd is sad"})");
  EXPECT_FALSE(AdmissionGet(lookup(), "backuptargets", "longhorn-system", "default").has_value());
}

TEST_F(AdmissionOverKubeLookupTest, ForbiddenAnswersNotFound) {
  transport_->Answer(kBackupTargetPath, 403, R"({"kind":"Status","message":"forbidden"})");
  EXPECT_FALSE(AdmissionGet(lookup(), "backuptargets", "longhorn-system", "default").has_value());
}

TEST_F(AdmissionOverKubeLookupTest, UnreachableApiAnswersNotFound) {
  transport_->Fail(kBackupTargetPath, Status::Unavailable("GET ...: Connection"));
  EXPECT_FALSE(AdmissionGet(lookup(), "backuptargets", "longhorn-system", "default").has_value());
}

TEST_F(AdmissionOverKubeLookupTest, MalformedJsonAnswersNotFound) {
  transport_->Answer(kBackupTargetPath, 200, R"({"kind": "BackupTar)");
  EXPECT_FALSE(AdmissionGet(lookup(), "backuptargets", "longhorn-system", "default").has_value());
  transport_->Answer(kBackupTargetPath, 200, R"(["not", "an", "object"])");
  EXPECT_FALSE(AdmissionGet(lookup(), "backuptargets", "longhorn-system", "default").has_value());
}

TEST_F(AdmissionOverKubeLookupTest, FailuresAreNotCached) {
  transport_->Answer(kBackupTargetPath, 503, "");
  EXPECT_FALSE(AdmissionGet(lookup(), "backuptargets", "longhorn-system", "default").has_value());
  transport_->Answer(kBackupTargetPath, 200, R"({"metadata":{"name":"default"}})");
  EXPECT_TRUE(AdmissionGet(lookup(), "backuptargets", "longhorn-system", "default").has_value());
  EXPECT_EQ(transport_->count(), 2u);
}

TEST_F(AdmissionOverKubeLookupTest, ListFailuresAnswerEmpty) {
  const std::string path = "/apis/longhorn.io/v1beta2/namespaces/ns/backups";
  EXPECT_TRUE(AdmissionList(lookup(), "backups", "ns", "").empty());  // 404: no CRD
  clock_.Advance(options_.cache_ttl);
  transport_->Answer(path, 500, "boom");
  EXPECT_TRUE(AdmissionList(lookup(), "backups", "ns", "").empty());
  transport_->Fail(path, Status::Unavailable("Connection"));
  EXPECT_TRUE(AdmissionList(lookup(), "backups", "ns", "").empty());
  transport_->Answer(path, 200, "{not json");
  EXPECT_TRUE(AdmissionList(lookup(), "backups", "ns", "").empty());
  transport_->Answer(path, 200, R"({"items": "nope"})");
  EXPECT_TRUE(AdmissionList(lookup(), "backups", "ns", "").empty());
  transport_->Answer(path, 200, R"({"items": null})");
  EXPECT_TRUE(AdmissionList(lookup(), "backups", "ns", "").empty());
  EXPECT_EQ(transport_->count(), 6u);
}

TEST_F(AdmissionOverKubeLookupTest, ATypeNotServedAnswersNotFound) {
  transport_->Answer(kBackupTargetPath, 404,
                     R"({"kind":"Status","code":404,"message":"the server could not find the )"
                     R"(requested resource"})");
  EXPECT_FALSE(AdmissionGet(lookup(), "backuptargets", "longhorn-system", "default").has_value());
}

TEST(AdmissionReadsTest, ALookupErrorReadsAsNotFound) {
  FakeLookup lookup;
  lookup.Put("backuptargets", {{"metadata", {{"name", "default"}, {"namespace", "ns"}}}});
  lookup.Put("backupvolumes", {{"metadata", {{"name", "bv"}, {"namespace", "ns"}}}});
  ASSERT_TRUE(AdmissionGet(lookup, "backuptargets", "ns", "default").has_value());
  ASSERT_EQ(AdmissionList(lookup, "backupvolumes", "ns", "").size(), 1u);

  lookup.Fail("backuptargets", Status::Unavailable("connection refused"));
  lookup.Fail("backupvolumes", Status::Unavailable("connection refused"));
  EXPECT_FALSE(lookup.Get("backuptargets", "ns", "default").ok()) << "the lookup says error";
  EXPECT_FALSE(AdmissionGet(lookup, "backuptargets", "ns", "default").has_value());
  EXPECT_TRUE(AdmissionList(lookup, "backupvolumes", "ns", "").empty());
}

}  // namespace
}  // namespace bg::domain
