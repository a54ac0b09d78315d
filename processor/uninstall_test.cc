#include "processor/uninstall.h"

#include <gtest/gtest.h>

#include <sstream>

#include "tests/testing/fake_kube_api.h"

namespace bg::processor {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;

constexpr char kNs[] = "longhorn-system";
const kube::ResourceRef kCrd{"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                             "CustomResourceDefinition"};

kube::ResourceRef R(const char* plural) { return kube::LonghornResource(plural); }

json Meta(const std::string& name, json labels = json::object(),
          json finalizers = {"longhorn.io"}) {
  return {{"name", name},
          {"namespace", kNs},
          {"labels", std::move(labels)},
          {"finalizers", std::move(finalizers)}};
}

class UninstallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* plural : {"backuptargets", "backupvolumes", "backups", "systembackups",
                               "backupbackingimages", "volumes", "settings", "engineimages"}) {
      std::string kind = kube::LonghornResource(plural).kind;
      if (kind.empty()) kind = "EngineImage";
      api_.Seed(
          kCrd,
          {{"metadata", {{"name", std::string(plural) + ".longhorn.io"}, {"namespace", ""}}},
           {"spec", {{"group", "longhorn.io"}, {"names", {{"plural", plural}, {"kind", kind}}}}}});
    }
  }

  void SetFlag(const std::string& value) {
    api_.Seed(R("settings"),
              {{"metadata", {{"name", "deleting-confirmation-flag"}, {"namespace", kNs}}},
               {"value", value}});
  }

  // The fresh-install scenario of SPEC.md at unit scale.
  void SeedScenario(bool owner_references) {
    const json target = api_.Seed(R("backuptargets"), {{"metadata", Meta("default")},
                                                       {"spec", {{"backupTargetURL", "s3://b"}}}});
    for (int v = 0; v < 3; ++v) {
      const std::string vol = "vol-" + std::to_string(v);
      api_.Seed(R("volumes"), {{"metadata", Meta(vol)}, {"spec", {{"standby", v == 2}}}});
      api_.Seed(
          R("backupvolumes"),
          {{"metadata", Meta(vol + "-bv", {{"backup-volume", vol}, {"backup-target", "default"}})},
           {"spec", {{"volumeName", vol}, {"backupTargetName", "default"}}}});
    }
    for (int b = 0; b < 20; ++b) {
      const bool failed = b % 2 == 1;
      json labels = {{"backup-target", "default"}};
      if (!failed) labels["backup-volume"] = "vol-" + std::to_string(b % 3);
      api_.Seed(R("backups"), {{"metadata", Meta("backup-" + std::to_string(b), labels)},
                               {"status",
                                {{"state", failed ? "Error" : "Completed"},
                                 {"backupTargetName", failed ? "" : "default"}}}});
    }
    for (int s = 0; s < 3; ++s) {
      json meta = Meta("system-backup-" + std::to_string(s));
      if (owner_references) {
        meta["ownerReferences"] = {{{"apiVersion", "longhorn.io/v1beta2"},
                                    {"kind", "BackupTarget"},
                                    {"name", "default"},
                                    {"uid", target["metadata"]["uid"]}}};
      }
      api_.Seed(R("systembackups"), {{"metadata", meta}, {"status", {{"state", "Ready"}}}});
    }
    for (int i = 0; i < 2; ++i) {
      api_.Seed(R("backupbackingimages"),
                {{"metadata", Meta("bbi-" + std::to_string(i), {{"backup-target", "default"}})},
                 {"spec", {{"backupTargetName", "default"}, {"backingImage", "img"}}}});
    }
  }

  int Run(UninstallOptions o = {}) {
    o.ns = kNs;
    o.poll_interval = std::chrono::milliseconds(5);
    if (o.timeout == std::chrono::seconds(600)) o.timeout = std::chrono::seconds(10);
    return RunUninstall(api_, o, out_, err_);
  }

  std::size_t Remaining() {
    std::size_t n = 0;
    for (const char* plural : {"backuptargets", "backupvolumes", "backups", "systembackups",
                               "backupbackingimages", "volumes"}) {
      n += (*api_.List(R(plural), kNs, ""))["items"].size();
    }
    return n;
  }

  FakeKubeApi api_;
  std::ostringstream out_, err_;
};

TEST_F(UninstallTest, RefusesToStartUnlessTheConfirmationFlagIsTrue) {
  SeedScenario(true);
  SetFlag("false");
  EXPECT_EQ(Run(), 2);
  EXPECT_NE(err_.str().find("deleting-confirmation-flag"), std::string::npos);
  EXPECT_EQ(api_.calls("delete"), 0);
  EXPECT_EQ(api_.calls("patch"), 0);
}

TEST_F(UninstallTest, RefusesWhenTheFlagIsMissing) { EXPECT_EQ(Run(), 2); }

TEST_F(UninstallTest, FreshInstallScenarioLeavesNothing) {
  SeedScenario(true);
  SetFlag("true");
  EXPECT_EQ(Run(), 0) << err_.str();
  EXPECT_EQ(Remaining(), 0u);
  EXPECT_NE(out_.str().find("found 0 Backup remaining"), std::string::npos) << out_.str();
  EXPECT_TRUE(api_.Peek(R("settings"), kNs, "deleting-confirmation-flag").has_value())
      << "the flag must survive so a restarted uninstall can run";
}

TEST_F(UninstallTest, UpgradeScenarioWithoutOwnerReferencesLeavesNothing) {
  SeedScenario(false);
  SetFlag("true");
  EXPECT_EQ(Run(), 0) << err_.str();
  EXPECT_EQ(Remaining(), 0u);
}

TEST_F(UninstallTest, DryRunChangesNothingAndListsBlockers) {
  SeedScenario(true);
  SetFlag("true");
  UninstallOptions o;
  o.dry_run = true;
  EXPECT_EQ(Run(o), 0);
  EXPECT_EQ(api_.calls("delete"), 0);
  EXPECT_EQ(api_.calls("patch"), 0);
  EXPECT_NE(out_.str().find("plan:"), std::string::npos);
  EXPECT_NE(out_.str().find("Volume vol-0"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("storage engine"), std::string::npos);
}

TEST_F(UninstallTest, TimeoutListsEveryBlockerWithFinalizersAndReason) {
  SetFlag("true");
  api_.Seed(R("backups"),
            {{"metadata", Meta("foreign", {{"backup-volume", "v"}}, {"example.com/keep"})},
             {"status", {{"backupTargetName", "default"}}}});
  UninstallOptions o;
  o.timeout = std::chrono::seconds(1);
  EXPECT_EQ(Run(o), 1);
  EXPECT_NE(err_.str().find("timed out"), std::string::npos);
  EXPECT_NE(err_.str().find("Backup foreign finalizers=[\"example.com/keep\"]"), std::string::npos)
      << err_.str();
  EXPECT_NE(err_.str().find("not longhorn.io"), std::string::npos);
}

TEST_F(UninstallTest, ConflictsAndADeadApiServerAreRetried) {
  SeedScenario(true);
  SetFlag("true");
  api_.FailNext("patch", 2, Status::Conflict("the object has been modified"));
  api_.FailNext("list", 3, Status::Unavailable("connection refused"));
  EXPECT_EQ(Run(), 0) << err_.str();
  EXPECT_EQ(Remaining(), 0u);
}

TEST_F(UninstallTest, ARestartedUninstallFinishesTheJob) {
  SeedScenario(true);
  SetFlag("true");
  // The first run "dies": every write after a few fails.
  api_.FailNext("delete", 1000, Status::Unavailable("killed"));
  UninstallOptions o;
  o.timeout = std::chrono::seconds(1);
  EXPECT_EQ(Run(o), 1);
  api_.FailNext("delete", 0, Status::Ok());
  EXPECT_EQ(Run(), 0) << err_.str();
  EXPECT_EQ(Remaining(), 0u);
}

}  // namespace
}  // namespace bg::processor
