#include "domain/parents.h"

#include <gtest/gtest.h>

#include "tests/testing/fake_lookup.h"

namespace bg::domain {
namespace {

using nlohmann::json;

constexpr char kNs[] = "longhorn-system";

json Image(json spec, json labels = json::object()) {
  return {{"metadata", {{"name", "bbi-1"}, {"namespace", kNs}, {"labels", std::move(labels)}}},
          {"spec", std::move(spec)}};
}

class BackupBackingImageParentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lookup_.Put("backuptargets", {{"metadata", {{"name", "default"}, {"namespace", kNs}}}});
    lookup_.Put("backuptargets", {{"metadata", {{"name", "s3"}, {"namespace", kNs}}}});
  }
  testing::FakeLookup lookup_;
};

TEST_F(BackupBackingImageParentsTest, TargetIsSpecBackupTargetNameElseTheLabel) {
  EXPECT_EQ(BackupBackingImageTargetOf(Image({{"backupTargetName", "s3"}})), "s3");
  EXPECT_EQ(
      BackupBackingImageTargetOf(Image({{"backupTargetName", ""}}, {{"backup-target", "s3"}})),
      "s3");
  EXPECT_EQ(BackupBackingImageTargetOf(Image({{"backupTargetName", ""}})), "");
}

TEST_F(BackupBackingImageParentsTest, BeforeV18TheTargetIsDefault) {
  EXPECT_EQ(BackupBackingImageTargetOf(Image({{"backingImage", "img"}})), "default");
}

TEST_F(BackupBackingImageParentsTest, PresentWhenTheTargetExists) {
  EXPECT_TRUE(
      CheckBackupBackingImageParents(lookup_, kNs, Image({{"backupTargetName", "s3"}})).present);
  EXPECT_TRUE(
      CheckBackupBackingImageParents(lookup_, "", Image({{"backupTargetName", "s3"}})).present)
      << "an empty namespace is the object's own";
}

TEST_F(BackupBackingImageParentsTest, MissingWhenTargetGoneUnnamedOrCustomResourceOnly) {
  ParentCheck gone =
      CheckBackupBackingImageParents(lookup_, kNs, Image({{"backupTargetName", "nfs"}}));
  EXPECT_FALSE(gone.present);
  EXPECT_NE(gone.missing_reason.find("BackupTarget \"nfs\" not found"), std::string::npos);
  ParentCheck unnamed =
      CheckBackupBackingImageParents(lookup_, kNs, Image({{"backupTargetName", ""}}));
  EXPECT_FALSE(unnamed.present);
  EXPECT_NE(unnamed.missing_reason.find("empty"), std::string::npos);
  ParentCheck labelled = CheckBackupBackingImageParents(
      lookup_, kNs,
      Image({{"backupTargetName", "s3"}}, {{"longhorn.io/delete-custom-resource-only", "true"}}));
  EXPECT_FALSE(labelled.present);
  EXPECT_NE(labelled.missing_reason.find("delete-custom-resource-only"), std::string::npos);
}

}  // namespace
}  // namespace bg::domain
