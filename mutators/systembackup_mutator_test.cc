#include "mutators/systembackup_mutator.h"

#include <gtest/gtest.h>

#include "mutators/mutators.h"
#include "tests/testing/fake_lookup.h"

namespace bg::mutators {
namespace {

using nlohmann::json;
using testing::FakeLookup;
using testing::MakeRequest;
using webhook::Operation;

json Target(const std::string& uid = "uid-default") {
  return {{"apiVersion", "longhorn.io/v1beta2"},
          {"kind", "BackupTarget"},
          {"metadata", {{"name", "default"}, {"namespace", "longhorn-system"}, {"uid", uid}}},
          {"spec", {{"backupTargetURL", "s3://bucket@us-east-1/"}}}};
}

json SystemBackup() {
  return {{"apiVersion", "longhorn.io/v1beta2"},
          {"kind", "SystemBackup"},
          {"metadata", {{"name", "sb-1"}, {"namespace", "longhorn-system"}}},
          {"spec", json::object()}};
}

class SystemBackupMutatorTest : public ::testing::Test {
 protected:
  json Mutate(const json& obj, Operation op = Operation::kCreate) {
    auto resp = registry_.Handle(MakeRequest("systembackups", op, obj));
    EXPECT_TRUE(resp.allowed);
    last_patch_ = resp.patch;
    return resp.patch.empty() ? obj : obj.patch(resp.patch);
  }
  FakeLookup lookup_;
  webhook::Registry registry_ = BuildMutationRegistry(lookup_);
  json last_patch_;
};

TEST_F(SystemBackupMutatorTest, AddsLonghornFinalizerWhenAbsent) {
  json out = Mutate(SystemBackup());
  EXPECT_EQ(out["metadata"]["finalizers"], json::array({"longhorn.io"}));
}

TEST_F(SystemBackupMutatorTest, DefaultsEmptyVolumeBackupPolicyToIfNotPresent) {
  json sb = SystemBackup();
  sb["spec"]["volumeBackupPolicy"] = "";
  EXPECT_EQ(Mutate(sb)["spec"]["volumeBackupPolicy"], "if-not-present");
}

TEST_F(SystemBackupMutatorTest, DefaultsVolumeBackupPolicyWhenSpecIsMissing) {
  json sb = SystemBackup();
  sb.erase("spec");
  EXPECT_EQ(Mutate(sb)["spec"]["volumeBackupPolicy"], "if-not-present");
}

TEST_F(SystemBackupMutatorTest, KeepsExplicitVolumeBackupPolicy) {
  json sb = SystemBackup();
  sb["spec"]["volumeBackupPolicy"] = "always";
  EXPECT_EQ(Mutate(sb)["spec"]["volumeBackupPolicy"], "always");
}

TEST_F(SystemBackupMutatorTest, AddsOwnerReferenceToDefaultBackupTargetWhenItExists) {
  lookup_.Put("backuptargets", Target("uid-1"));
  json out = Mutate(SystemBackup());
  ASSERT_EQ(out["metadata"]["ownerReferences"].size(), 1u);
  const json& ref = out["metadata"]["ownerReferences"][0];
  EXPECT_EQ(ref, json({{"apiVersion", "longhorn.io/v1beta2"},
                       {"kind", "BackupTarget"},
                       {"name", "default"},
                       {"uid", "uid-1"}}));
  EXPECT_FALSE(ref.contains("controller"));
  EXPECT_FALSE(ref.contains("blockOwnerDeletion"));
}

TEST_F(SystemBackupMutatorTest, NoOwnerReferenceWhenDefaultBackupTargetIsAbsent) {
  json out = Mutate(SystemBackup());
  EXPECT_FALSE(out["metadata"].contains("ownerReferences"));
  EXPECT_EQ(out["metadata"]["finalizers"], json::array({"longhorn.io"}));
}

TEST_F(SystemBackupMutatorTest, NoOwnerReferenceToABackupTargetBeingDeleted) {
  json target = Target();
  target["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  lookup_.Put("backuptargets", target);
  EXPECT_FALSE(Mutate(SystemBackup())["metadata"].contains("ownerReferences"));
}

TEST_F(SystemBackupMutatorTest, KeepsForeignOwnerReferenceAndAppendsTheTargetWithDash) {
  lookup_.Put("backuptargets", Target());
  json sb = SystemBackup();
  const json foreign = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"name", "x"}, {"uid", "u"}};
  sb["metadata"]["ownerReferences"] = json::array({foreign});
  json out = Mutate(sb);
  ASSERT_EQ(out["metadata"]["ownerReferences"].size(), 2u);
  EXPECT_EQ(out["metadata"]["ownerReferences"][0], foreign);
  bool appended_with_dash = false;
  for (const json& op : last_patch_) {
    if (op["path"] == "/metadata/ownerReferences/-") appended_with_dash = op["op"] == "add";
    EXPECT_NE(op["op"], "replace") << op;
    EXPECT_NE(op["op"], "remove") << op;
  }
  EXPECT_TRUE(appended_with_dash) << last_patch_;
}

TEST_F(SystemBackupMutatorTest, AddsWholeArrayWhenFieldIsAbsent) {
  lookup_.Put("backuptargets", Target());
  Mutate(SystemBackup());
  bool whole_finalizers = false, whole_owners = false;
  for (const json& op : last_patch_) {
    if (op["op"] == "add" && op["path"] == "/metadata/finalizers")
      whole_finalizers = op["value"].is_array();
    if (op["op"] == "add" && op["path"] == "/metadata/ownerReferences")
      whole_owners = op["value"].is_array();
  }
  EXPECT_TRUE(whole_finalizers) << last_patch_;
  EXPECT_TRUE(whole_owners) << last_patch_;
}

TEST_F(SystemBackupMutatorTest, ExistingBackupTargetOwnerIsNotDuplicated) {
  lookup_.Put("backuptargets", Target("new-uid"));
  json sb = SystemBackup();
  sb["metadata"]["ownerReferences"] = json::array({{{"apiVersion", "longhorn.io/v1beta2"},
                                                    {"kind", "BackupTarget"},
                                                    {"name", "other"},
                                                    {"uid", "o"}}});
  EXPECT_EQ(Mutate(sb)["metadata"]["ownerReferences"].size(), 1u);
}

TEST_F(SystemBackupMutatorTest, MutationIsIdempotentSecondCallReturnsNoPatch) {
  lookup_.Put("backuptargets", Target());
  json once = Mutate(SystemBackup());
  json twice = Mutate(once);
  EXPECT_TRUE(last_patch_.empty()) << last_patch_;
  EXPECT_EQ(once, twice);
}

TEST_F(SystemBackupMutatorTest, PreUpgradeSystemBackupGetsReferenceOnUpdate) {
  lookup_.Put("backuptargets", Target("uid-up"));
  json old_release = SystemBackup();
  old_release["metadata"]["finalizers"] = json::array({"longhorn.io"});
  old_release["spec"]["volumeBackupPolicy"] = "always";
  json out = Mutate(old_release, Operation::kUpdate);
  ASSERT_TRUE(out["metadata"].contains("ownerReferences"));
  EXPECT_EQ(out["metadata"]["ownerReferences"][0]["uid"], "uid-up");
  ASSERT_EQ(last_patch_.size(), 1u) << "only the owner reference is added: " << last_patch_;
}

TEST_F(SystemBackupMutatorTest, ObjectWithDeletionTimestampIsNeverMutated) {
  lookup_.Put("backuptargets", Target());
  json sb = SystemBackup();
  sb["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  Mutate(sb, Operation::kUpdate);
  EXPECT_TRUE(last_patch_.empty()) << last_patch_;
}

TEST_F(SystemBackupMutatorTest, KeepsUnknownFields) {
  json sb = SystemBackup();
  sb["spec"]["futureField"] = {{"a", 1}};
  sb["status"] = {{"state", "Ready"}, {"x", json::array({1, 2})}};
  json out = Mutate(sb);
  EXPECT_EQ(out["spec"]["futureField"], sb["spec"]["futureField"]);
  EXPECT_EQ(out["status"], sb["status"]);
}

TEST_F(SystemBackupMutatorTest, WrongTypedFinalizersAreRepairedNotCrashed) {
  json sb = SystemBackup();
  sb["metadata"]["finalizers"] = "not-an-array";
  EXPECT_EQ(Mutate(sb)["metadata"]["finalizers"], json::array({"longhorn.io"}));
}

TEST(MakePatchTest, EscapesSlashAndTildeInKeys) {
  json before = {{"metadata", {{"annotations", {{"a", "1"}}}}}};
  json after = before;
  after["metadata"]["annotations"]["longhorn.io/x~y"] = "v";
  json patch = webhook::MakePatch(before, after);
  ASSERT_EQ(patch.size(), 1u);
  EXPECT_EQ(patch[0]["path"], "/metadata/annotations/longhorn.io~1x~0y");
  EXPECT_EQ(before.patch(patch), after);
}

}  // namespace
}  // namespace bg::mutators
