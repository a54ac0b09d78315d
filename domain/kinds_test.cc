#include "domain/kinds.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace bg::domain {
namespace {

TEST(KindsTest, EveryChildIsAKindOfTheTableAndIsCascaded) {
  for (const KindInfo& k : Kinds()) {
    for (const ChildKind& child : k.children) {
      const KindInfo* row = FindKind(child.plural);
      ASSERT_NE(row, nullptr) << k.plural << " -> " << child.plural;
      EXPECT_TRUE(row->cascaded) << child.plural;
    }
  }
}

TEST(KindsTest, ResourceCarriesTheKindOfTheTableAndGroupVersion) {
  const kube::ResourceRef r = Resource("backupbackingimages");
  EXPECT_EQ(r.group, "longhorn.io");
  EXPECT_EQ(r.version, "v1beta2");
  EXPECT_EQ(r.resource, "backupbackingimages");
  EXPECT_EQ(r.kind, "BackupBackingImage");
  EXPECT_EQ(Resource("settings").kind, "Setting");
  EXPECT_EQ(Resource("engines").kind, "") << "a kind the table does not know has no Kind";
}

TEST(KindsTest, ProcessorWatchesTheKindsOfSpecInTableOrder) {
  EXPECT_EQ(WatchedResources(),
            (std::vector<std::string>{"backuptargets", "backupvolumes", "backups", "systembackups",
                                      "backupbackingimages", "volumes", "settings"}));
}

TEST(KindsTest, UninstallDeletesVolumesAndTargetsBeforeTheirChildren) {
  EXPECT_EQ(UninstallOrder(),
            (std::vector<std::string>{"volumes", "backuptargets", "backupvolumes", "backups",
                                      "systembackups", "backupbackingimages"}));
}

TEST(KindsTest, TargetChildrenAreWhatItsCascadeDeletes) {
  EXPECT_EQ(ChildrenOf("backuptargets"),
            (std::vector<std::string_view>{"backupvolumes", "backupbackingimages", "backups",
                                           "systembackups"}));
  EXPECT_TRUE(IsChildOf("backups", "backupvolumes"));
  EXPECT_FALSE(IsChildOf("volumes", "backuptargets"));
  EXPECT_TRUE(ChildrenOf("engines").empty());
}

TEST(KindsTest, CascadedKindsAreTheChildrenOfSomeKind) {
  std::set<std::string_view> children;
  for (const KindInfo& k : Kinds()) {
    for (const ChildKind& c : k.children) children.insert(c.plural);
  }
  for (const KindInfo& k : Kinds()) EXPECT_EQ(IsCascaded(k.plural), children.count(k.plural) > 0);
  EXPECT_FALSE(IsCascaded("engines"));
}

TEST(KindsTest, RulesReadStatusBackupTargetNameAndTheDeleteBackupTargetAnnotation) {
  const RuleFields& f = FieldsRulesRead();
  auto has = [](const std::vector<std::string_view>& v, std::string_view x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  EXPECT_TRUE(has(f.status, "backupTargetName"));
  EXPECT_TRUE(has(f.spec, "backupTargetURL"));
  EXPECT_TRUE(has(f.metadata, "ownerReferences"));
  EXPECT_TRUE(has(f.annotations, "longhorn.io/delete-backup-target-from-longhorn"));
}

// PlanFor dispatches through the table: every kind whose objects hold store data has its rule
// there; for the rest only the uninstall grace applies.
TEST(KindsTest, EveryBackupKindNamesItsRuleAndOtherKindsNone) {
  const std::map<std::string_view, RuleFn> expected = {
      {"backuptargets", PlanBackupTarget},
      {"backupvolumes", PlanBackupVolume},
      {"backups", PlanBackup},
      {"systembackups", PlanSystemBackup},
      {"backupbackingimages", PlanBackupBackingImage}};
  for (const KindInfo& k : Kinds()) {
    auto it = expected.find(k.plural);
    EXPECT_EQ(k.rule, it == expected.end() ? nullptr : it->second) << k.plural;
  }
  EXPECT_EQ(FindKind("volumes")->rule, nullptr);
}

}  // namespace
}  // namespace bg::domain
