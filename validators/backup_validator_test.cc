#include "validators/backup_validator.h"

#include <gtest/gtest.h>

#include "tests/testing/fake_lookup.h"
#include "validators/validators.h"

namespace bg::validators {
namespace {

using nlohmann::json;
using testing::FakeLookup;
using testing::MakeRequest;
using webhook::Operation;

json Backup(const std::string& target, const std::string& volume) {
  json b = {{"apiVersion", "longhorn.io/v1beta2"},
            {"kind", "Backup"},
            {"metadata",
             {{"name", "backup-1"}, {"namespace", "longhorn-system"}, {"labels", json::object()}}},
            {"spec", {{"snapshotName", "snap"}}},
            {"status", {{"state", "Completed"}, {"backupTargetName", target}}}};
  if (!volume.empty()) b["metadata"]["labels"]["backup-volume"] = volume;
  return b;
}

class BackupValidatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lookup_.Put(
        "backuptargets",
        {{"metadata", {{"name", "default"}, {"namespace", "longhorn-system"}, {"uid", "t"}}}});
    lookup_.Put("backupvolumes",
                {{"metadata",
                  {{"name", "vol-1-abc"},
                   {"namespace", "longhorn-system"},
                   {"labels", {{"backup-target", "default"}, {"backup-volume", "vol-1"}}}}}});
  }
  webhook::AdmissionResponse Delete(const json& backup) {
    return registry_.Handle(MakeRequest("backups", Operation::kDelete, nullptr, backup));
  }
  webhook::AdmissionResponse Create(const json& backup) {
    return registry_.Handle(MakeRequest("backups", Operation::kCreate, backup));
  }
  FakeLookup lookup_;
  webhook::Registry registry_ = BuildValidationRegistry(lookup_);
};

TEST_F(BackupValidatorTest, DeleteWithEmptyBackupTargetNameIsAllowedWithWarning) {
  json failed = Backup("", "vol-1");
  failed["status"]["state"] = "Error";
  auto r = Delete(failed);
  EXPECT_TRUE(r.allowed);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("only the custom resource"), std::string::npos);
  EXPECT_NE(r.warnings[0].find("backupTargetName"), std::string::npos);
}

TEST_F(BackupValidatorTest, DeleteWithMissingStatusIsAllowedWithWarning) {
  json b = Backup("", "vol-1");
  b.erase("status");
  auto r = Delete(b);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.warnings.size(), 1u);
}

TEST_F(BackupValidatorTest, DeleteWithMissingBackupVolumeLabelIsAllowedWithWarning) {
  auto r = Delete(Backup("default", ""));
  EXPECT_TRUE(r.allowed);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("backup-volume"), std::string::npos);
}

TEST_F(BackupValidatorTest, DeleteWhenTheParentsCannotBeReadIsAnsweredAsNotFound) {
  lookup_.Fail("backuptargets", Status::Unavailable("connection refused"));
  auto r = Delete(Backup("default", "vol-1"));
  EXPECT_TRUE(r.allowed);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("BackupTarget \"default\" not found"), std::string::npos)
      << r.warnings[0];
}

TEST_F(BackupValidatorTest, DeleteWithMissingBackupVolumeIsAllowedWithWarning) {
  auto r = Delete(Backup("default", "vol-gone"));
  EXPECT_TRUE(r.allowed);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("BackupVolume"), std::string::npos);
}

TEST_F(BackupValidatorTest, DeleteWithMissingBackupTargetIsAllowedWithWarning) {
  auto r = Delete(Backup("gone-target", "vol-1"));
  EXPECT_TRUE(r.allowed);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("BackupTarget"), std::string::npos);
}

TEST_F(BackupValidatorTest, DeleteWithEveryParentPresentIsAllowedWithoutWarning) {
  auto r = Delete(Backup("default", "vol-1"));
  EXPECT_TRUE(r.allowed);
  EXPECT_TRUE(r.warnings.empty());
}

TEST_F(BackupValidatorTest, DeleteWithUnreachableApiIsStillAllowed) {
  kube::NoClusterLookup none;
  webhook::Registry registry = BuildValidationRegistry(none);
  auto r = registry.Handle(
      MakeRequest("backups", Operation::kDelete, nullptr, Backup("default", "vol-1")));
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.code, 200);
}

TEST_F(BackupValidatorTest, DeleteWithWrongTypedStatusIsAllowedNeverAnError) {
  json b = Backup("", "vol-1");
  b["status"] = "garbage";
  b["metadata"]["labels"] = json::array();
  auto r = Delete(b);
  EXPECT_TRUE(r.allowed);
  EXPECT_LT(r.code, 500);
}

TEST_F(BackupValidatorTest, CreateWithoutBackupVolumeLabelIsDeniedNamingTheField) {
  auto r = Create(Backup("", ""));
  EXPECT_FALSE(r.allowed);
  EXPECT_GE(r.code, 400);
  EXPECT_LT(r.code, 500);
  EXPECT_NE(r.message.find("metadata.labels[backup-volume]"), std::string::npos);
}

TEST_F(BackupValidatorTest, CreateWithUnsupportedBackupModeIsDeniedNamingTheField) {
  json b = Backup("", "vol-1");
  b["spec"]["backupMode"] = "differential";
  auto r = Create(b);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.code, 422);
  EXPECT_NE(r.message.find("spec.backupMode"), std::string::npos);
}

TEST_F(BackupValidatorTest, CreateWithNonStringBackupModeIsDenied) {
  json b = Backup("", "vol-1");
  b["spec"]["backupMode"] = 3;
  EXPECT_FALSE(Create(b).allowed);
}

TEST_F(BackupValidatorTest, CreateAcceptsFullIncrementalAndEmptyBackupMode) {
  for (const char* mode : {"full", "incremental", ""}) {
    json b = Backup("", "vol-1");
    b["spec"]["backupMode"] = mode;
    EXPECT_TRUE(Create(b).allowed) << mode;
  }
  json b = Backup("", "vol-1");
  EXPECT_TRUE(Create(b).allowed) << "absent backupMode";
}

TEST_F(BackupValidatorTest, CreateLetsEveryBackupBlockSizeOfTheEnginePassThrough) {
  for (const char* size : {"-1", "2097152", "16777216"}) {
    json b = Backup("", "vol-1");
    b["spec"]["backupBlockSize"] = size;
    auto r = Create(b);
    EXPECT_TRUE(r.allowed) << size;
    EXPECT_TRUE(r.patch.empty()) << "a validator never changes the object";
  }
}

// As the engine's target sync (v1.10.0, controller/backup_volume_controller.go) creates a Backup it
// found in the store, after its own mutator ran: no snapshotName, both labels, an owner reference
// to the BackupVolume. Refusing it would stop the engine's sync (engine issue #11337).
TEST_F(BackupValidatorTest, CreateOfABackupAsTheEnginesTargetSyncMakesItIsAllowed) {
  json synced = {{"apiVersion", "longhorn.io/v1beta2"},
                 {"kind", "Backup"},
                 {"metadata",
                  {{"name", "backup-5d2e1b3c9a0f4e7d"},
                   {"namespace", "longhorn-system"},
                   {"labels", {{"backup-volume", "vol-1"}, {"backup-target", "default"}}},
                   {"finalizers", {"longhorn.io"}},
                   {"ownerReferences",
                    {{{"apiVersion", "longhorn.io/v1beta2"},
                      {"kind", "BackupVolume"},
                      {"name", "vol-1-912ea790"},
                      {"uid", "bv-uid"}}}}}},
                 {"spec",
                  {{"labels", {{"longhorn.io/volume-access-mode", "rwo"}}},
                   {"backupMode", "incremental"},
                   {"backupBlockSize", "2097152"}}}};
  EXPECT_TRUE(Create(synced).allowed);
}

}  // namespace
}  // namespace bg::validators
