#include "processor/rules.h"

#include <gtest/gtest.h>

#include "tests/testing/fake_lookup.h"

namespace bg::processor {
namespace {

using nlohmann::json;
using testing::FakeLookup;

constexpr char kDeletedAt[] = "2026-01-01T00:00:00Z";

json Meta(const std::string& name, json labels = json::object()) {
  return {{"name", name},
          {"namespace", "longhorn-system"},
          {"uid", "uid-" + name},
          {"labels", std::move(labels)},
          {"finalizers", {"longhorn.io"}}};
}

json Deleting(json obj) {
  obj["metadata"]["deletionTimestamp"] = kDeletedAt;
  return obj;
}

json Target(const std::string& name = "default", const std::string& url = "s3://b") {
  return {{"metadata", Meta(name)}, {"spec", {{"backupTargetURL", url}}}};
}

json BackupVolume(const std::string& volume, const std::string& target = "default") {
  return {
      {"metadata", Meta(volume + "-bv", {{"backup-volume", volume}, {"backup-target", target}})},
      {"spec", {{"volumeName", volume}, {"backupTargetName", target}}}};
}

json CompletedBackup(const std::string& name, const std::string& volume = "vol-1",
                     const std::string& target = "default") {
  return {{"metadata", Meta(name, {{"backup-volume", volume}, {"backup-target", target}})},
          {"status", {{"state", "Completed"}, {"backupTargetName", target}}}};
}

json SystemBackup(const std::string& name, const std::string& state, bool owned = true) {
  json sb = {{"metadata", Meta(name)}, {"status", {{"state", state}}}};
  if (owned) {
    sb["metadata"]["ownerReferences"] = {{{"apiVersion", "longhorn.io/v1beta2"},
                                          {"kind", "BackupTarget"},
                                          {"name", "default"},
                                          {"uid", "uid-default"}}};
  }
  return sb;
}

class RulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    view_.Put("backuptargets", Target());
    view_.Put("backupvolumes", BackupVolume("vol-1"));
    ctx_.ns = "longhorn-system";
    ctx_.now = std::chrono::system_clock::from_time_t(1767225600 + 10);  // 10 s after kDeletedAt
  }
  FakeLookup view_;
  RuleContext ctx_;
};

TEST_F(RulesTest, BackupWithEmptyTargetNameIsReleased) {
  json b = CompletedBackup("b");
  b["status"]["backupTargetName"] = "";
  b["status"]["state"] = "Error";
  Plan p = PlanBackup(Deleting(b), view_, ctx_);
  EXPECT_TRUE(p.release);
  EXPECT_EQ(p.reason, reason::kNoTargetName);
}

TEST_F(RulesTest, BackupWithoutBackupVolumeLabelIsReleased) {
  json b = CompletedBackup("b");
  b["metadata"]["labels"].erase("backup-volume");
  EXPECT_EQ(PlanBackup(Deleting(b), view_, ctx_).reason, reason::kNoVolumeLabel);
}

TEST_F(RulesTest, BackupLabelledCustomResourceOnlyIsReleased) {
  json b = CompletedBackup("b");
  b["metadata"]["labels"]["longhorn.io/delete-custom-resource-only"] = "true";
  EXPECT_EQ(PlanBackup(Deleting(b), view_, ctx_).reason, reason::kCustomResourceOnly);
}

TEST_F(RulesTest, BackupWhoseBackupVolumeIsGoneIsReleased) {
  EXPECT_EQ(PlanBackup(Deleting(CompletedBackup("b", "vol-gone")), view_, ctx_).reason,
            reason::kParentGone);
}

TEST_F(RulesTest, BackupWhoseBackupTargetIsGoneIsReleased) {
  view_.Remove("backuptargets", "longhorn-system", "default");
  EXPECT_EQ(PlanBackup(Deleting(CompletedBackup("b")), view_, ctx_).reason, reason::kParentGone);
}

TEST_F(RulesTest, CompletedBackupWithParentsAndNoFlagIsNotReleased) {
  Plan p = PlanBackup(Deleting(CompletedBackup("b")), view_, ctx_);
  EXPECT_FALSE(p.release);
  EXPECT_NE(p.held_because.find("backup store"), std::string::npos);
}

TEST_F(RulesTest, CompletedBackupIsNotReleasedDuringUninstallBeforeGrace) {
  ctx_.uninstall_confirmed = true;
  ctx_.release_grace = std::chrono::seconds(90);
  EXPECT_FALSE(PlanBackup(Deleting(CompletedBackup("b")), view_, ctx_).release);
}

TEST_F(RulesTest, CompletedBackupIsReleasedDuringUninstallAfterGrace) {
  ctx_.uninstall_confirmed = true;
  ctx_.release_grace = std::chrono::seconds(5);
  Plan p = PlanBackup(Deleting(CompletedBackup("b")), view_, ctx_);
  EXPECT_TRUE(p.release);
  EXPECT_EQ(p.reason, reason::kUninstallGrace);
}

TEST_F(RulesTest, GraceNeverAppliesWithoutConfirmedUninstall) {
  ctx_.uninstall_confirmed = false;
  ctx_.release_grace = std::chrono::seconds(0);
  EXPECT_FALSE(PlanBackup(Deleting(CompletedBackup("b")), view_, ctx_).release);
  EXPECT_FALSE(PlanOther(Deleting(Target("vol")), ctx_).release);
}

TEST_F(RulesTest, BackupBackingImageFollowsTheBackupRules) {
  json bbi = {{"metadata", Meta("bbi", {{"backup-target", "default"}, {"backing-image", "img"}})},
              {"spec", {{"backingImage", "img"}, {"backupTargetName", "default"}}}};
  EXPECT_FALSE(PlanBackupBackingImage(Deleting(bbi), view_, ctx_).release);
  json no_target = bbi;
  no_target["spec"]["backupTargetName"] = "";
  no_target["metadata"]["labels"].erase("backup-target");
  EXPECT_EQ(PlanBackupBackingImage(Deleting(no_target), view_, ctx_).reason, reason::kNoTargetName);
  view_.Remove("backuptargets", "longhorn-system", "default");
  EXPECT_EQ(PlanBackupBackingImage(Deleting(bbi), view_, ctx_).reason, reason::kParentGone);
}

TEST_F(RulesTest, BackupVolumeCascadesItsBackupsAndReleasesWhenNoneRemain) {
  view_.Put("backups", CompletedBackup("b1"));
  view_.Put("backups", CompletedBackup("b2"));
  view_.Put("backups", CompletedBackup("other", "vol-2"));
  Plan p = PlanBackupVolume(Deleting(BackupVolume("vol-1")), view_, ctx_);
  EXPECT_FALSE(p.release);
  EXPECT_EQ(p.children_remaining, 2u);
  ASSERT_EQ(p.cascade.size(), 2u);
  EXPECT_EQ(p.cascade[0].resource, "backups");
  view_.Remove("backups", "longhorn-system", "b1");
  view_.Remove("backups", "longhorn-system", "b2");
  p = PlanBackupVolume(Deleting(BackupVolume("vol-1")), view_, ctx_);
  EXPECT_TRUE(p.release);
  EXPECT_EQ(p.reason, reason::kChildrenGone);
}

TEST_F(RulesTest, BackupTargetDeletionCascadesEveryChildKind) {
  view_.Put("backups", CompletedBackup("b1"));
  view_.Put("backupbackingimages", {{"metadata", Meta("bbi", {{"backup-target", "default"}})},
                                    {"spec", {{"backupTargetName", "default"}}}});
  view_.Put("systembackups", SystemBackup("owned", "Ready"));
  view_.Put("systembackups", SystemBackup("pre-upgrade", "Ready", /*owned=*/false));
  json foreign = SystemBackup("foreign", "Ready");
  foreign["metadata"]["ownerReferences"][0]["name"] = "secondary";
  view_.Put("systembackups", foreign);
  Plan p = PlanBackupTarget(Deleting(Target()), view_, ctx_);
  EXPECT_FALSE(p.release);
  std::map<std::string, int> by_kind;
  for (const Child& c : p.cascade) by_kind[c.resource]++;
  EXPECT_EQ(by_kind["backupvolumes"], 1);
  EXPECT_EQ(by_kind["backupbackingimages"], 1);
  EXPECT_EQ(by_kind["backups"], 1);
  EXPECT_EQ(by_kind["systembackups"], 2) << "owned and pre-upgrade, not the foreign one";
}

TEST_F(RulesTest, BackupTargetWithEmptiedUrlCascadesButIsNotReleased) {
  view_.Put("backups", CompletedBackup("b1"));
  Plan p = PlanBackupTarget(Target("default", ""), view_, ctx_);
  EXPECT_FALSE(p.release);
  EXPECT_FALSE(p.cascade.empty());
}

TEST_F(RulesTest, BackupTargetIsReleasedWhenNoChildrenRemain) {
  view_.Remove("backupvolumes", "longhorn-system", "vol-1-bv");
  Plan p = PlanBackupTarget(Deleting(Target()), view_, ctx_);
  EXPECT_TRUE(p.release);
  EXPECT_EQ(p.reason, reason::kChildrenGone);
}

TEST_F(RulesTest, ForcedUninstallStillCleansChildrenBeforeTheTarget) {
  ctx_.uninstall_confirmed = true;
  ctx_.release_grace = std::chrono::seconds(0);
  view_.Put("backups", CompletedBackup("b1"));
  Plan p = PlanBackupTarget(Deleting(Target()), view_, ctx_);
  EXPECT_FALSE(p.release) << "children not yet marked and deleting";
  // Children marked and deleting but held by someone else's finalizer: the grace applies.
  json stuck = Deleting(CompletedBackup("b1"));
  stuck["metadata"]["labels"]["longhorn.io/delete-custom-resource-only"] = "true";
  stuck["metadata"]["finalizers"] = {"example.com/other"};
  view_.Put("backups", stuck);
  json bv = Deleting(BackupVolume("vol-1"));
  bv["metadata"]["labels"]["longhorn.io/delete-custom-resource-only"] = "true";
  view_.Put("backupvolumes", bv);
  p = PlanBackupTarget(Deleting(Target()), view_, ctx_);
  EXPECT_TRUE(p.release);
  EXPECT_EQ(p.reason, reason::kUninstallGrace);
}

TEST_F(RulesTest, NonDefaultTargetDoesNotTouchSystemBackups) {
  view_.Put("systembackups", SystemBackup("pre-upgrade", "Ready", false));
  Plan p = PlanBackupTarget(Deleting(Target("secondary")), view_, ctx_);
  for (const Child& c : p.cascade) EXPECT_NE(c.resource, "systembackups");
}

TEST_F(RulesTest, SystemBackupThatNeverUploadedIsReleased) {
  EXPECT_EQ(PlanSystemBackup(Deleting(SystemBackup("s", "")), view_, ctx_).reason,
            reason::kNeverUploaded);
  EXPECT_EQ(PlanSystemBackup(Deleting(SystemBackup("s", "Error")), view_, ctx_).reason,
            reason::kNeverUploaded);
}

TEST_F(RulesTest, SystemBackupWhoseOwnerTargetIsGoneIsReleased) {
  view_.Remove("backuptargets", "longhorn-system", "default");
  EXPECT_EQ(PlanSystemBackup(Deleting(SystemBackup("s", "Ready")), view_, ctx_).reason,
            reason::kParentGone);
}

TEST_F(RulesTest, SystemBackupOwnedByARecreatedTargetWithAnotherUidIsReleased) {
  json t = Target();
  t["metadata"]["uid"] = "a-new-uid";
  view_.Put("backuptargets", t);
  EXPECT_TRUE(PlanSystemBackup(Deleting(SystemBackup("s", "Ready")), view_, ctx_).release);
}

TEST_F(RulesTest, ReadySystemBackupWithLiveOwnerIsNotReleased) {
  EXPECT_FALSE(PlanSystemBackup(Deleting(SystemBackup("s", "Ready")), view_, ctx_).release);
}

TEST_F(RulesTest, UpgradeGivesMissingOwnerReferenceWhileDefaultTargetExists) {
  json ref = MissingOwnerReference(SystemBackup("s", "Ready", false), view_, "longhorn-system");
  ASSERT_TRUE(ref.is_object());
  EXPECT_EQ(ref["uid"], "uid-default");
  EXPECT_TRUE(
      MissingOwnerReference(SystemBackup("s", "Ready", true), view_, "longhorn-system").is_null());
  view_.Remove("backuptargets", "longhorn-system", "default");
  EXPECT_TRUE(
      MissingOwnerReference(SystemBackup("s", "Ready", false), view_, "longhorn-system").is_null());
}

TEST_F(RulesTest, NeedsReleaseOnlyWhenDeletingWithOurFinalizer) {
  EXPECT_TRUE(NeedsRelease(Deleting(CompletedBackup("b"))));
  EXPECT_FALSE(NeedsRelease(CompletedBackup("b")));
  json other = Deleting(CompletedBackup("b"));
  other["metadata"]["finalizers"] = {"example.com/x"};
  EXPECT_FALSE(NeedsRelease(other));
}

TEST_F(RulesTest, LabelProtectsDataOfEveryChildButABackupThatNeverCompleted) {
  EXPECT_TRUE(LabelProtectsData(Child{"backups", CompletedBackup("b")}));
  json failed = CompletedBackup("f");
  failed["status"] = {{"state", "Error"}, {"backupTargetName", ""}};
  EXPECT_FALSE(LabelProtectsData(Child{"backups", failed}));
  failed["status"].erase("backupTargetName");
  EXPECT_FALSE(LabelProtectsData(Child{"backups", failed}));
  EXPECT_TRUE(LabelProtectsData(Child{"backupvolumes", BackupVolume("vol-1")}));
  EXPECT_TRUE(LabelProtectsData(Child{"systembackups", SystemBackup("s", "Error", true)}));
  EXPECT_TRUE(LabelProtectsData(Child{"backupbackingimages", json::object()}));
}

}  // namespace
}  // namespace bg::processor
