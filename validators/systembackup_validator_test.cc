#include "validators/systembackup_validator.h"

#include <gtest/gtest.h>

#include "tests/testing/fake_lookup.h"

namespace bg::validators {
namespace {

using nlohmann::json;
using testing::FakeLookup;
using testing::MakeRequest;

const json kSystemBackup = {{"metadata", {{"name", "sb"}, {"namespace", "longhorn-system"}}}};

webhook::AdmissionResponse Create(FakeLookup& lookup) {
  return ValidateSystemBackupCreate(
      lookup, MakeRequest("systembackups", webhook::Operation::kCreate, kSystemBackup));
}

json Target(const std::string& url) {
  return {{"metadata", {{"name", "default"}, {"namespace", "longhorn-system"}, {"uid", "u"}}},
          {"spec", {{"backupTargetURL", url}}}};
}

TEST(SystemBackupValidatorTest, CreateIsDeniedWhenDefaultBackupTargetIsMissing) {
  FakeLookup lookup;
  auto r = Create(lookup);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.code, 403);
  EXPECT_NE(r.message.find("does not exist"), std::string::npos);
}

TEST(SystemBackupValidatorTest, CreateIsDeniedWhenDefaultBackupTargetUrlIsEmpty) {
  FakeLookup lookup;
  lookup.Put("backuptargets", Target(""));
  auto r = Create(lookup);
  EXPECT_FALSE(r.allowed);
  EXPECT_NE(r.message.find("backupTargetURL"), std::string::npos);
}

TEST(SystemBackupValidatorTest, CreateIsAllowedWhenDefaultBackupTargetHasUrl) {
  FakeLookup lookup;
  lookup.Put("backuptargets", Target("nfs://server:/export"));
  EXPECT_TRUE(Create(lookup).allowed);
}

}  // namespace
}  // namespace bg::validators
