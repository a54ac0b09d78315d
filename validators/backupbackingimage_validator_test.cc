#include <gtest/gtest.h>

#include "tests/testing/fake_lookup.h"
#include "validators/validators.h"

namespace bg::validators {
namespace {

using nlohmann::json;
using testing::FakeLookup;
using testing::MakeRequest;
using webhook::Operation;

constexpr char kNs[] = "longhorn-system";

json Image(const std::string& target, json labels = json::object()) {
  return {{"apiVersion", "longhorn.io/v1beta2"},
          {"kind", "BackupBackingImage"},
          {"metadata", {{"name", "bbi-1"}, {"namespace", kNs}, {"labels", std::move(labels)}}},
          {"spec", {{"backingImage", "img"}, {"backupTargetName", target}, {"userCreated", true}}},
          {"status", {{"state", "Completed"}}}};
}

class BackupBackingImageValidatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lookup_.Put("backuptargets", {{"metadata", {{"name", "default"}, {"namespace", kNs}}}});
  }
  webhook::AdmissionResponse Delete(const json& image) {
    return registry_.Handle(MakeRequest("backupbackingimages", Operation::kDelete, nullptr, image));
  }
  FakeLookup lookup_;
  webhook::Registry registry_ = BuildValidationRegistry(lookup_);
};

TEST_F(BackupBackingImageValidatorTest, DeleteIsRegistered) {
  EXPECT_TRUE(registry_.Has("longhorn.io", "backupbackingimages", Operation::kDelete));
}

TEST_F(BackupBackingImageValidatorTest, DeleteWithTargetPresentIsAllowedWithoutWarning) {
  const webhook::AdmissionResponse r = Delete(Image("default"));
  EXPECT_TRUE(r.allowed);
  EXPECT_TRUE(r.warnings.empty());
}

TEST_F(BackupBackingImageValidatorTest, DeleteWithTargetGoneIsAllowedWithWarning) {
  const webhook::AdmissionResponse r = Delete(Image("nfs"));
  EXPECT_TRUE(r.allowed);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("only the custom resource"), std::string::npos);
  EXPECT_NE(r.warnings[0].find("BackupTarget \"nfs\" not found"), std::string::npos);
}

TEST_F(BackupBackingImageValidatorTest, DeleteWithNoTargetNamedIsAllowedWithWarning) {
  const webhook::AdmissionResponse r = Delete(Image(""));
  EXPECT_TRUE(r.allowed);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("only the custom resource"), std::string::npos);
}

TEST_F(BackupBackingImageValidatorTest, DeleteFindsTheTargetByLabelWhenSpecNamesNone) {
  const webhook::AdmissionResponse r = Delete(Image("", {{"backup-target", "default"}}));
  EXPECT_TRUE(r.allowed);
  EXPECT_TRUE(r.warnings.empty());
}

TEST_F(BackupBackingImageValidatorTest, DeleteLabelledCustomResourceOnlyIsAllowedWithWarning) {
  const webhook::AdmissionResponse r =
      Delete(Image("default", {{"longhorn.io/delete-custom-resource-only", "true"}}));
  EXPECT_TRUE(r.allowed);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("delete-custom-resource-only"), std::string::npos);
}

TEST_F(BackupBackingImageValidatorTest, DeleteWithoutAnyClusterIsAllowedWithWarning) {
  kube::NoClusterLookup none;
  webhook::Registry registry = BuildValidationRegistry(none);
  const webhook::AdmissionResponse r = registry.Handle(
      MakeRequest("backupbackingimages", Operation::kDelete, nullptr, Image("default")));
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.warnings.size(), 1u);
}

}  // namespace
}  // namespace bg::validators
