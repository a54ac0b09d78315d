#include "validators/backuptarget_validator.h"

#include <gtest/gtest.h>

#include "tests/testing/fake_lookup.h"

namespace bg::validators {
namespace {

using nlohmann::json;
using testing::FakeLookup;
using testing::MakeRequest;

json Target(const std::string& name) {
  return {{"metadata", {{"name", name}, {"namespace", "longhorn-system"}, {"uid", "u"}}},
          {"spec", {{"backupTargetURL", "s3://b"}}}};
}

webhook::AdmissionResponse Delete(FakeLookup& lookup, const json& target) {
  return ValidateBackupTargetDelete(
      lookup, MakeRequest("backuptargets", webhook::Operation::kDelete, nullptr, target));
}

void SetFlag(FakeLookup& lookup, const std::string& value) {
  lookup.Put(
      "settings",
      {{"metadata", {{"name", "deleting-confirmation-flag"}, {"namespace", "longhorn-system"}}},
       {"value", value}});
}

TEST(BackupTargetValidatorTest, DeletingDefaultWithoutAnnotationOrFlagIsDenied) {
  FakeLookup lookup;
  SetFlag(lookup, "false");
  auto r = Delete(lookup, Target("default"));
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.code, 403);
  EXPECT_NE(r.message.find("longhorn.io/delete-backup-target-from-longhorn"), std::string::npos);
  EXPECT_NE(r.message.find("deleting-confirmation-flag"), std::string::npos);
}

TEST(BackupTargetValidatorTest, DeletingDefaultWithAnnotationIsAllowed) {
  FakeLookup lookup;
  json t = Target("default");
  t["metadata"]["annotations"] = {{"longhorn.io/delete-backup-target-from-longhorn", ""}};
  EXPECT_TRUE(Delete(lookup, t).allowed);
}

TEST(BackupTargetValidatorTest, DeletingDefaultWhileConfirmationFlagIsTrueIsAllowed) {
  FakeLookup lookup;
  SetFlag(lookup, "true");
  EXPECT_TRUE(Delete(lookup, Target("default")).allowed);
}

TEST(BackupTargetValidatorTest, ConfirmationFlagIsParsedAsTheEngineParsesIt) {
  for (const char* yes : {"1", "t", "T", "TRUE", "true", "True"}) {
    FakeLookup lookup;
    SetFlag(lookup, yes);
    EXPECT_TRUE(Delete(lookup, Target("default")).allowed) << yes;
  }
  for (const char* no : {"0", "false", "yes", "TrUe", " true", ""}) {
    FakeLookup lookup;
    SetFlag(lookup, no);
    EXPECT_FALSE(Delete(lookup, Target("default")).allowed) << '"' << no << '"';
  }
}

TEST(BackupTargetValidatorTest, DeletingDefaultWithUnreachableApiIsDenied) {
  kube::NoClusterLookup none;
  auto r = ValidateBackupTargetDelete(
      none, MakeRequest("backuptargets", webhook::Operation::kDelete, nullptr, Target("default")));
  EXPECT_FALSE(r.allowed);
}

TEST(BackupTargetValidatorTest, DeletingOtherTargetsIsAllowed) {
  FakeLookup lookup;
  EXPECT_TRUE(Delete(lookup, Target("secondary")).allowed);
}

}  // namespace
}  // namespace bg::validators
