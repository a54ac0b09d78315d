#include "processor/controller.h"

#include <gtest/gtest.h>

#include "common/longhorn.h"
#include "domain/kinds.h"
#include "kube/clock.h"
#include "tests/testing/eventually.h"
#include "tests/testing/fake_kube_api.h"

namespace bg::processor {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;

constexpr char kNs[] = "longhorn-system";

using ::bg::testing::Eventually;
using ::bg::testing::EventuallyAdvancing;

json Meta(const std::string& name, json labels = json::object()) {
  return {{"name", name},
          {"namespace", kNs},
          {"labels", std::move(labels)},
          {"finalizers", {"longhorn.io"}}};
}

kube::ResourceRef R(const char* plural) { return domain::Resource(plural); }

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    target_ = api_.Seed(R("backuptargets"), {{"metadata", Meta("default")},
                                             {"spec", {{"backupTargetURL", "s3://b"}}},
                                             {"status", {{"available", true}}}});
    api_.Seed(
        R("backupvolumes"),
        {{"metadata", Meta("vol-1-bv", {{"backup-volume", "vol-1"}, {"backup-target", "default"}})},
         {"spec", {{"volumeName", "vol-1"}, {"backupTargetName", "default"}}}});
  }
  void Start() {
    ControllerOptions o;
    o.ns = kNs;
    o.workers = 2;
    o.backoff_base = std::chrono::milliseconds(5);
    o.backoff_max = std::chrono::milliseconds(50);
    o.release_grace = std::chrono::seconds(1);
    o.clock = clock_;
    controller_ = std::make_unique<Controller>(api_, o, nullptr, [this] { return leader_.load(); });
    controller_->Start();
    ASSERT_TRUE(Eventually([&] { return controller_->Synced(); }));
  }
  void TearDown() override {
    if (controller_) {
      api_.EndWatches();
      controller_->Stop();
    }
  }
  json Backup(const std::string& name, const std::string& target_name, bool with_volume = true) {
    json labels = {{"backup-target", "default"}};
    if (with_volume) labels["backup-volume"] = "vol-1";
    return api_.Seed(R("backups"), {{"metadata", Meta(name, labels)},
                                    {"status",
                                     {{"state", target_name.empty() ? "Error" : "Completed"},
                                      {"backupTargetName", target_name}}}});
  }
  bool Gone(const char* plural, const std::string& name) {
    return !api_.Peek(R(plural), kNs, name);
  }
  // Waits until the controller's cache has seen `name` being deleted (or gone: released
  // already). Reconcile() after this does, here and now, what a worker does with the deletion: a
  // test of what the controller does NOT do checks right after it, instead of sleeping while the
  // workers might act.
  void AwaitCachedDeletion(const char* plural, const std::string& name) {
    const bool seen = Eventually([&] {
      auto cached = controller_->view().Get(plural, kNs, name).value();
      return !cached || longhorn::IsBeingDeleted(*cached);
    });
    ASSERT_TRUE(seen) << plural << "/" << name;
  }

  FakeKubeApi api_;
  // The controller's monotonic clock (grace, queue delays, backoff, resync); null: the real one.
  // Tests of what does not happen set it to `frozen_`: then nothing comes due unless the test
  // moves it.
  const kube::Clock* clock_ = nullptr;
  kube::ManualClock frozen_;
  json target_;
  std::atomic<bool> leader_{true};
  std::unique_ptr<Controller> controller_;
};

TEST_F(ControllerTest, FailedBackupBeingDeletedIsReleased) {
  Backup("failed", "");
  Start();
  ASSERT_TRUE(api_.Delete(R("backups"), kNs, "failed", "").ok());
  EXPECT_TRUE(Eventually([&] { return Gone("backups", "failed"); }));
}

TEST_F(ControllerTest, CompletedBackupWithParentsIsNotReleasedWithoutConfirmation) {
  Backup("done", "default");
  clock_ = &frozen_;
  Start();
  ASSERT_TRUE(api_.Delete(R("backups"), kNs, "done", "").ok());
  AwaitCachedDeletion("backups", "done");
  ASSERT_TRUE(controller_->Reconcile("backups/done").ok());
  auto b = api_.Peek(R("backups"), kNs, "done");
  ASSERT_TRUE(b.has_value()) << "data-guarding finalizer must hold";
  EXPECT_EQ((*b)["metadata"]["finalizers"], json::array({"longhorn.io"}));
}

TEST_F(ControllerTest, BackupTargetDeletionCascadesAndThenReleasesTheTarget) {
  Backup("done", "default");
  Backup("failed", "");
  api_.Seed(R("systembackups"), {{"metadata", Meta("sb-ready")}, {"status", {{"state", "Ready"}}}});
  Start();
  ASSERT_TRUE(api_.Delete(R("backuptargets"), kNs, "default", "").ok());
  EXPECT_TRUE(Eventually([&] {
    return Gone("backups", "done") && Gone("backups", "failed") &&
           Gone("backupvolumes", "vol-1-bv") && Gone("systembackups", "sb-ready") &&
           Gone("backuptargets", "default");
  }));
}

TEST_F(ControllerTest, EmptiedUrlCascadesChildrenButKeepsTheTarget) {
  Backup("done", "default");
  Start();
  json t = *api_.Peek(R("backuptargets"), kNs, "default");
  t["spec"]["backupTargetURL"] = "";
  ASSERT_TRUE(api_.Update(R("backuptargets"), kNs, t).ok());
  EXPECT_TRUE(Eventually([&] { return Gone("backups", "done"); }));
  EXPECT_FALSE(Gone("backuptargets", "default"));
}

TEST_F(ControllerTest, UpgradeGivesSystemBackupsTheirOwnerReferenceWithoutAnUpdate) {
  api_.Seed(R("systembackups"),
            {{"metadata", Meta("pre-upgrade")}, {"status", {{"state", "Ready"}}}});
  Start();
  EXPECT_TRUE(Eventually([&] {
    auto sb = api_.Peek(R("systembackups"), kNs, "pre-upgrade");
    return sb && sb->at("metadata").contains("ownerReferences") &&
           sb->at("metadata")["ownerReferences"][0]["uid"] == target_["metadata"]["uid"];
  }));
}

TEST_F(ControllerTest, AFollowerWritesNothing) {
  leader_ = false;
  Backup("failed", "");
  api_.Seed(R("systembackups"),
            {{"metadata", Meta("pre-upgrade")}, {"status", {{"state", "Ready"}}}});
  clock_ = &frozen_;
  Start();
  ASSERT_TRUE(api_.Delete(R("backups"), kNs, "failed", "").ok());
  AwaitCachedDeletion("backups", "failed");
  ASSERT_TRUE(controller_->Reconcile("backups/failed").ok());
  ASSERT_TRUE(controller_->Reconcile("systembackups/pre-upgrade").ok());
  EXPECT_EQ(api_.calls("patch"), 0);
  EXPECT_FALSE(Gone("backups", "failed"));
  leader_ = true;
  controller_->EnqueueAll();
  EXPECT_TRUE(Eventually([&] { return Gone("backups", "failed"); }));
}

TEST_F(ControllerTest, ConflictOnReleaseIsRetriedFromAFreshRead) {
  Backup("failed", "");
  Start();
  api_.FailNext("patch", 1, Status::Conflict("the object has been modified"));
  ASSERT_TRUE(api_.Delete(R("backups"), kNs, "failed", "").ok());
  EXPECT_TRUE(Eventually([&] { return Gone("backups", "failed"); }));
  EXPECT_GE(api_.calls("get"), 1);
}

TEST_F(ControllerTest, DeadApiServerIsRetriedWithBackoffUntilItAnswers) {
  Backup("failed", "");
  Start();
  api_.FailNext("patch", 5, Status::Unavailable("connection refused"));
  ASSERT_TRUE(api_.Delete(R("backups"), kNs, "failed", "").ok());
  EXPECT_TRUE(Eventually([&] { return Gone("backups", "failed"); }));
  EXPECT_GE(api_.calls("patch"), 6);
}

// The fake API stamps deletions 2026-01-01, long before this test runs: to the local wall clock
// the deletion is months old, as a just-made deletion is to a replica whose clock is ahead. The
// grace is still counted from when the processor first saw the deletion (issue 14, suspect 10).
TEST_F(ControllerTest, UninstallGraceIsCountedFromTheFirstSightingNotTheLocalWallClock) {
  clock_ = &frozen_;
  api_.Seed(R("volumes"), {{"metadata", Meta("vol-1")}, {"spec", {{"Standby", true}}}});
  api_.Seed(R("settings"),
            {{"metadata", {{"name", "deleting-confirmation-flag"}, {"namespace", kNs}}},
             {"value", "true"}});
  Start();
  const int patches = api_.calls("patch");
  ASSERT_TRUE(api_.Delete(R("volumes"), kNs, "vol-1", "").ok());
  AwaitCachedDeletion("volumes", "vol-1");
  ASSERT_TRUE(controller_->Reconcile("volumes/vol-1").ok());  // first seen now: re-queued
  EXPECT_FALSE(Gone("volumes", "vol-1")) << "released before the grace had passed";
  EXPECT_EQ(api_.calls("patch"), patches);
  // The grace passes on the clock, and the re-queue comes due with it.
  EXPECT_TRUE(EventuallyAdvancing(frozen_, std::chrono::milliseconds(100),
                                  [&] { return Gone("volumes", "vol-1"); }));
}

TEST_F(ControllerTest, UninstallGraceReleasesWhatTheEngineWouldOwn) {
  api_.Seed(R("volumes"), {{"metadata", Meta("vol-1")}, {"spec", {{"Standby", true}}}});
  api_.Seed(R("settings"),
            {{"metadata", {{"name", "deleting-confirmation-flag"}, {"namespace", kNs}}},
             {"value", "true"}});
  Start();
  ASSERT_TRUE(
      api_.Delete(R("volumes"), kNs, "vol-1", "").ok());  // deletionTimestamp is in the past
  EXPECT_TRUE(Eventually([&] { return Gone("volumes", "vol-1"); }));
}

}  // namespace
}  // namespace bg::processor

namespace bg::processor {
namespace {

json FreshBackupVolume() {
  return {{"metadata",
           Meta("vol-new-bv", {{"backup-volume", "vol-new"}, {"backup-target", "default"}})},
          {"spec", {{"volumeName", "vol-new"}, {"backupTargetName", "default"}}}};
}

TEST_F(ControllerTest, ParentMissingFromTheCacheButPresentInTheApiIsNotTakenAsGone) {
  api_.Seed(
      R("backups"),
      {{"metadata", Meta("fresh", {{"backup-volume", "vol-new"}, {"backup-target", "default"}})},
       {"status", {{"state", "Completed"}, {"backupTargetName", "default"}}}});
  clock_ = &frozen_;
  Start();
  api_.SeedSilently(R("backupvolumes"), FreshBackupVolume());  // the cache has not seen it
  ASSERT_TRUE(api_.Delete(R("backups"), kNs, "fresh", "").ok());
  AwaitCachedDeletion("backups", "fresh");
  ASSERT_TRUE(controller_->Reconcile("backups/fresh").ok());  // withdrawn, re-queued
  auto still = api_.Peek(R("backups"), kNs, "fresh");
  ASSERT_TRUE(still.has_value()) << "released from a stale cache";
  EXPECT_EQ((*still)["metadata"]["finalizers"], json::array({"longhorn.io"}));
}

TEST_F(ControllerTest, ParentGoneFromCacheAndApiIsReleasedAfterConfirmation) {
  api_.Seed(
      R("backups"),
      {{"metadata", Meta("orphan", {{"backup-volume", "vol-new"}, {"backup-target", "default"}})},
       {"status", {{"state", "Completed"}, {"backupTargetName", "default"}}}});
  Start();
  ASSERT_TRUE(api_.Delete(R("backups"), kNs, "orphan", "").ok());
  EXPECT_TRUE(Eventually([&] { return Gone("backups", "orphan"); }));
}

TEST_F(ControllerTest, AnUnreachableApiDuringConfirmationHoldsTheRelease) {
  api_.Seed(
      R("backups"),
      {{"metadata", Meta("orphan", {{"backup-volume", "vol-new"}, {"backup-target", "default"}})},
       {"status", {{"state", "Completed"}, {"backupTargetName", "default"}}}});
  clock_ = &frozen_;
  Start();
  api_.FailNext("get", 1000000, Status::Unavailable("connection refused"));
  api_.FailNext("list", 1000000, Status::Unavailable("connection refused"));
  ASSERT_TRUE(api_.Delete(R("backups"), kNs, "orphan", "").ok());
  AwaitCachedDeletion("backups", "orphan");
  EXPECT_EQ(controller_->Reconcile("backups/orphan").code(), Status::Code::kUnavailable);
  EXPECT_TRUE(api_.Peek(R("backups"), kNs, "orphan").has_value());
  api_.FailNext("get", 0, Status::Ok());
  api_.FailNext("list", 0, Status::Ok());
  // The workers' failed attempts wait out their backoff on the clock.
  EXPECT_TRUE(EventuallyAdvancing(frozen_, std::chrono::milliseconds(50), [&] {
    return Gone("backups", "orphan");
  })) << "released once the API answers";
}

TEST_F(ControllerTest, AFailedListWhileConfirmingHoldsTheFinalizerAndIsRetried) {
  api_.Seed(
      R("backups"),
      {{"metadata", Meta("orphan", {{"backup-volume", "vol-new"}, {"backup-target", "default"}})},
       {"status", {{"state", "Completed"}, {"backupTargetName", "default"}}}});
  clock_ = &frozen_;
  Start();
  // The target reads fine; only the list that would show the BackupVolume absent fails. Read as
  // absence, it would release the Backup (its BackupVolume is gone).
  api_.FailNext("list", 1000000, Status::Unavailable("etcdserver: request timed out"));
  ASSERT_TRUE(api_.Delete(R("backups"), kNs, "orphan", "").ok());
  AwaitCachedDeletion("backups", "orphan");
  const Status held = controller_->Reconcile("backups/orphan");
  EXPECT_EQ(held.code(), Status::Code::kUnavailable) << held.message();
  EXPECT_NE(held.message().find("etcdserver: request timed out"), std::string::npos);
  auto still = api_.Peek(R("backups"), kNs, "orphan");
  ASSERT_TRUE(still.has_value());
  EXPECT_EQ((*still)["metadata"]["finalizers"], json::array({"longhorn.io"}));
  api_.FailNext("list", 0, Status::Ok());
  EXPECT_TRUE(EventuallyAdvancing(frozen_, std::chrono::milliseconds(50), [&] {
    return Gone("backups", "orphan");
  })) << "retried and released once the API answers";
}

}  // namespace
}  // namespace bg::processor
