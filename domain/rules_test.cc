#include "domain/rules.h"

#include <gtest/gtest.h>

#include "common/longhorn.h"
#include "tests/testing/fake_lookup.h"

namespace bg::domain {
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

// An available target unless told otherwise (the engine's isBackupTargetAvailable).
json Target(const std::string& name = "default", const std::string& url = "s3://b",
            bool available = true) {
  return {{"metadata", Meta(name)},
          {"spec", {{"backupTargetURL", url}}},
          {"status", {{"available", available}}}};
}

json BackupVolume(const std::string& volume, const std::string& target = "default") {
  return {
      {"metadata", Meta(volume + "-bv", {{"backup-volume", volume}, {"backup-target", target}})},
      {"spec", {{"volumeName", volume}, {"backupTargetName", target}}}};
}

json CompletedBackup(const std::string& name, const std::string& volume = "vol-1",
                     const std::string& target = "default") {
  return {{"metadata", Meta(name, {{"backup-volume", volume}, {"backup-target", target}})},
          {"spec", {{"snapshotName", "snap-" + name}, {"labels", json::object()}}},
          {"status",
           {{"state", "Completed"},
            {"backupTargetName", target},
            {"url", "s3://b?backup=" + name + "&volume=" + volume}}}};
}

// A Backup as an engine of v1.7 leaves it: no backup-target label and no status.backupTargetName
// (the field does not exist in its CRD), the BackupVolume named after the volume.
json BackupBeforeV18(const std::string& name, const std::string& state, const std::string& url) {
  return {{"metadata", Meta(name, {{"backup-volume", "vol-1"}})},
          {"spec", {{"snapshotName", "snap-" + name}}},
          {"status", {{"state", state}, {"url", url}}}};
}

json BackingImageBackup(const std::string& target = "default") {
  return {{"metadata", Meta("bbi", {{"backup-target", target}, {"backing-image", "img"}})},
          {"spec", {{"backingImage", "img"}, {"backupTargetName", target}, {"userCreated", true}}},
          {"status", {{"state", "Completed"}, {"url", "s3://b?backingImage=img"}}}};
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

TEST_F(RulesTest, CompletedBackupOfAnUnavailableTargetIsReleased) {
  view_.Put("backuptargets", Target("default", "s3://b", /*available=*/false));
  EXPECT_EQ(PlanBackup(Deleting(CompletedBackup("b")), view_, ctx_).reason,
            reason::kTargetUnavailable);
}

TEST_F(RulesTest, CompletedBackupOfATargetWithItsUrlEmptiedIsReleased) {
  view_.Put("backuptargets", Target("default", ""));
  EXPECT_EQ(PlanBackup(Deleting(CompletedBackup("b")), view_, ctx_).reason,
            reason::kTargetUnavailable);
}

TEST_F(RulesTest, CompletedBackupOfATargetBeingDeletedIsReleased) {
  view_.Put("backuptargets", Deleting(Target()));
  EXPECT_EQ(PlanBackup(Deleting(CompletedBackup("b")), view_, ctx_).reason,
            reason::kTargetUnavailable);
}

TEST_F(RulesTest, CompletedBackupFindsItsTargetByItsLabel) {
  json b = CompletedBackup("b", "vol-1", "secondary");
  view_.Put("backuptargets", Target("secondary", "nfs://x", /*available=*/false));
  view_.Put("backupvolumes", BackupVolume("vol-1", "secondary"));
  EXPECT_EQ(PlanBackup(Deleting(b), view_, ctx_).reason, reason::kTargetUnavailable)
      << "the available `default` is not its target";
}

TEST_F(RulesTest, CompletedBackupBeforeV18IsLeftToTheEngine) {
  view_.Put("backupvolumes", json{{"metadata", Meta("vol-1")}});  // v1.7: named after the volume
  Plan p = PlanBackup(Deleting(BackupBeforeV18("b", "Completed", "s3://b?backup=b&volume=vol-1")),
                      view_, ctx_);
  EXPECT_FALSE(p.release) << p.reason;
}

TEST_F(RulesTest, BackupBeforeV18ThatNeverUploadedIsReleased) {
  EXPECT_EQ(PlanBackup(Deleting(BackupBeforeV18("b", "Error", "")), view_, ctx_).reason,
            reason::kNeverUploaded);
  EXPECT_EQ(PlanBackup(Deleting(BackupBeforeV18("b", "", "")), view_, ctx_).reason,
            reason::kNeverUploaded);
}

TEST_F(RulesTest, BackupBeforeV18WithAnUploadIsNotTakenAsNeverUploaded) {
  // An Error after the upload finished still has its URL: the store holds it.
  EXPECT_FALSE(BackupNeverUploaded(BackupBeforeV18("b", "Error", "s3://b?backup=b")));
  EXPECT_FALSE(BackupNeverUploaded(BackupBeforeV18("b", "Completed", "")));
}

TEST_F(RulesTest, BackupTheEngineSyncedFromTheStoreIsLeftToTheEngineBeforeItsStatusIsWritten) {
  // As the engine's target sync creates it: no snapshotName, and the status it writes first
  // (its owner) has an empty backupTargetName.
  json synced = CompletedBackup("synced");
  synced["spec"].erase("snapshotName");
  synced["status"] = {{"ownerID", "node-1"}, {"backupTargetName", ""}, {"state", ""}};
  EXPECT_FALSE(BackupNeverUploaded(synced));
  EXPECT_FALSE(PlanBackup(Deleting(synced), view_, ctx_).release);
  synced["status"].erase("backupTargetName");  // no status written yet, or v1.7
  EXPECT_FALSE(PlanBackup(Deleting(synced), view_, ctx_).release);
  synced["status"]["state"] = "Error";  // the engine says it is broken: nothing to keep
  EXPECT_TRUE(PlanBackup(Deleting(synced), view_, ctx_).release);
}

TEST_F(RulesTest, BackupBeforeV18WithoutBackupVolumeLabelIsReleased) {
  json b = BackupBeforeV18("b", "Completed", "s3://b?backup=b&volume=vol-1");
  b["metadata"]["labels"].erase("backup-volume");
  EXPECT_EQ(PlanBackup(Deleting(b), view_, ctx_).reason, reason::kNoVolumeLabel);
}

TEST_F(RulesTest, BackupTargetOfReadsTheLabelThenTheStatusThenDefaultBeforeV18) {
  EXPECT_EQ(BackupTargetOf(CompletedBackup("b", "v", "secondary")), "secondary");
  json by_status = CompletedBackup("b", "v", "secondary");
  by_status["metadata"]["labels"].erase("backup-target");
  EXPECT_EQ(BackupTargetOf(by_status), "secondary");
  EXPECT_EQ(BackupTargetOf(BackupBeforeV18("b", "Completed", "u")), "default");
  by_status["status"]["backupTargetName"] = "";
  EXPECT_EQ(BackupTargetOf(by_status), "") << "v1.8 and later: no name is no target";
}

TEST(TargetAvailableTest, FollowsTheEnginesIsBackupTargetAvailable) {
  EXPECT_TRUE(TargetAvailable(Target()));
  EXPECT_FALSE(TargetAvailable(Target("default", "s3://b", false)));
  EXPECT_FALSE(TargetAvailable(Target("default", "")));
  EXPECT_FALSE(TargetAvailable(Deleting(Target())));
  json no_status = Target();
  no_status.erase("status");
  EXPECT_FALSE(TargetAvailable(no_status));
  no_status["status"] = {{"available", "true"}};  // a string is not the engine's bool
  EXPECT_FALSE(TargetAvailable(no_status));
}

TEST_F(RulesTest, CompletedBackupWithParentsAndNoFlagIsNotReleased) {
  Plan p = PlanBackup(Deleting(CompletedBackup("b")), view_, ctx_);
  EXPECT_FALSE(p.release);
  EXPECT_NE(p.held_because.find("waiting for the engine"), std::string::npos) << p.held_because;
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

TEST_F(RulesTest, BackingImageBackupOfAnAvailableTargetIsLeftToTheEngine) {
  Plan p = PlanBackupBackingImage(Deleting(BackingImageBackup()), view_, ctx_);
  EXPECT_FALSE(p.release);
  EXPECT_TRUE(p.cascade.empty());
}

TEST_F(RulesTest, BackingImageBackupWithNoTargetNameIsReleased) {
  json no_target = BackingImageBackup();
  no_target["spec"]["backupTargetName"] = "";
  no_target["metadata"]["labels"].erase("backup-target");
  EXPECT_EQ(PlanBackupBackingImage(Deleting(no_target), view_, ctx_).reason, reason::kNoTargetName);
}

TEST_F(RulesTest, BackingImageBackupTakesItsTargetFromTheLabelWhenTheSpecHasNone) {
  json labelled = BackingImageBackup("secondary");
  labelled["spec"]["backupTargetName"] = "";
  view_.Put("backuptargets", Target("secondary"));
  EXPECT_FALSE(PlanBackupBackingImage(Deleting(labelled), view_, ctx_).release);
}

TEST_F(RulesTest, BackingImageBackupBeforeV18BelongsToDefault) {
  json old = BackingImageBackup();
  old["spec"].erase("backupTargetName");
  old["metadata"]["labels"].erase("backup-target");
  EXPECT_FALSE(PlanBackupBackingImage(Deleting(old), view_, ctx_).release);
}

TEST_F(RulesTest, BackingImageBackupWhoseTargetIsGoneIsReleased) {
  view_.Remove("backuptargets", "longhorn-system", "default");
  EXPECT_EQ(PlanBackupBackingImage(Deleting(BackingImageBackup()), view_, ctx_).reason,
            reason::kParentGone);
}

TEST_F(RulesTest, BackingImageBackupOfAnUnavailableTargetIsReleased) {
  view_.Put("backuptargets", Target("default", "s3://b", /*available=*/false));
  EXPECT_EQ(PlanBackupBackingImage(Deleting(BackingImageBackup()), view_, ctx_).reason,
            reason::kTargetUnavailable);
}

TEST_F(RulesTest, BackingImageBackupThatNeverUploadedIsReleased) {
  json failed = BackingImageBackup();
  failed["status"] = {{"state", "Error"}, {"url", ""}};
  EXPECT_EQ(PlanBackupBackingImage(Deleting(failed), view_, ctx_).reason, reason::kNeverUploaded);
}

TEST_F(RulesTest, BackingImageBackupLabelledCustomResourceOnlyIsReleased) {
  json bbi = BackingImageBackup();
  bbi["metadata"]["labels"]["longhorn.io/delete-custom-resource-only"] = "true";
  EXPECT_EQ(PlanBackupBackingImage(Deleting(bbi), view_, ctx_).reason, reason::kCustomResourceOnly);
}

TEST_F(RulesTest, BackupVolumeOfAnAvailableTargetIsLeftToTheEngine) {
  view_.Put("backups", CompletedBackup("b1"));
  Plan p = PlanBackupVolume(Deleting(BackupVolume("vol-1")), view_, ctx_);
  EXPECT_FALSE(p.release);
  EXPECT_TRUE(p.cascade.empty()) << "nothing labelled, nothing deleted: the engine deletes the "
                                    "remote backup volume itself";
  EXPECT_NE(p.held_because.find("waiting for the engine"), std::string::npos);
  // Even with no Backups left: the remote backup volume is the engine's to delete.
  view_.Remove("backups", "longhorn-system", "b1");
  EXPECT_FALSE(PlanBackupVolume(Deleting(BackupVolume("vol-1")), view_, ctx_).release);
}

TEST_F(RulesTest, BackupVolumeOfAnUnavailableTargetCascadesItsBackupsAndReleasesWhenNoneRemain) {
  view_.Put("backuptargets", Target("default", "s3://b", /*available=*/false));
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

TEST_F(RulesTest, BackupVolumeLabelledCustomResourceOnlyCascadesEvenWithAnAvailableTarget) {
  view_.Put("backups", CompletedBackup("b1"));
  json bv = Deleting(BackupVolume("vol-1"));
  bv["metadata"]["labels"]["longhorn.io/delete-custom-resource-only"] = "true";
  Plan p = PlanBackupVolume(bv, view_, ctx_);
  EXPECT_FALSE(p.release);
  ASSERT_EQ(p.cascade.size(), 1u);
}

TEST_F(RulesTest, BackupVolumeWhoseTargetIsGoneCascades) {
  view_.Remove("backuptargets", "longhorn-system", "default");
  view_.Put("backups", CompletedBackup("b1"));
  EXPECT_EQ(PlanBackupVolume(Deleting(BackupVolume("vol-1")), view_, ctx_).cascade.size(), 1u);
}

TEST_F(RulesTest, BackupVolumeOfATargetWithItsUrlEmptiedCascades) {
  view_.Put("backuptargets", Target("default", ""));
  view_.Put("backups", CompletedBackup("b1"));
  EXPECT_EQ(PlanBackupVolume(Deleting(BackupVolume("vol-1")), view_, ctx_).cascade.size(), 1u);
}

TEST_F(RulesTest, BackupVolumeOfATargetBeingDeletedCascades) {
  view_.Put("backuptargets", Deleting(Target()));
  view_.Put("backups", CompletedBackup("b1"));
  EXPECT_EQ(PlanBackupVolume(Deleting(BackupVolume("vol-1")), view_, ctx_).cascade.size(), 1u);
}

TEST_F(RulesTest, BackupVolumeBeforeV18BelongsToDefault) {
  // Named after its volume, no labels, no spec fields.
  json bv = {{"metadata", Meta("vol-1")}};
  view_.Put("backups", BackupBeforeV18("b1", "Completed", "s3://b?backup=b1&volume=vol-1"));
  EXPECT_FALSE(PlanBackupVolume(Deleting(bv), view_, ctx_).release);
  view_.Put("backuptargets", Target("default", "s3://b", /*available=*/false));
  Plan p = PlanBackupVolume(Deleting(bv), view_, ctx_);
  ASSERT_EQ(p.cascade.size(), 1u) << "its Backups are found by the backup-volume label";
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

// A CascadeSink that records what it is handed, in order.
class RecordingSink final : public CascadeSink {
 public:
  void Add(const std::string& resource, json& object) override {
    children.push_back(resource + "/" + longhorn::StringAt(object, {"metadata", "name"}));
  }
  std::vector<std::string> children;
};

// A lookup whose List fails (and counts the calls): children can only be read through Visit, one
// tree at a time, as the uninstall's snapshot makes them.
class VisitOnlyLookup final : public kube::ResourceLookup {
 public:
  explicit VisitOnlyLookup(FakeLookup& from) : from_(from) {}
  kube::GetResult Get(std::string_view resource, std::string_view ns,
                      std::string_view name) override {
    return from_.Get(resource, ns, name);
  }
  kube::ListResult List(std::string_view, std::string_view, std::string_view) override {
    ++lists;
    return Status::Internal("a rule listed every child at once instead of visiting them");
  }
  Status Visit(std::string_view resource, std::string_view ns, std::string_view selector,
               const std::function<void(json&)>& fn) override {
    kube::ListResult all = from_.List(resource, ns, selector);
    if (!all.ok()) return all.status();
    for (const json& item : *all) {
      json tree = item;  // made now, as the uninstall's snapshot makes it from its record
      fn(tree);
    }
    return Status::Ok();
  }
  bool Ready() override { return true; }
  int lists = 0;

 private:
  FakeLookup& from_;
};

TEST_F(RulesTest, ATargetsCascadeGoesToTheSinkWithTheSameDecision) {
  for (int i = 0; i < 5; ++i) view_.Put("backups", CompletedBackup("b" + std::to_string(i)));
  json done = Deleting(CompletedBackup("done"));  // labelled and deleting: counted, not cascaded
  done["metadata"]["labels"]["longhorn.io/delete-custom-resource-only"] = "true";
  view_.Put("backups", done);
  view_.Put("systembackups", SystemBackup("pre-upgrade", "Ready", /*owned=*/false));
  for (const json& target : {Deleting(Target()), Target("default", "")}) {
    const Plan held = PlanBackupTarget(target, view_, ctx_);
    RecordingSink sink;
    const Plan sunk = PlanBackupTarget(target, view_, ctx_, &sink);
    std::vector<std::string> in_plan;
    for (const Child& c : held.cascade) {
      in_plan.push_back(c.resource + "/" + longhorn::StringAt(c.object, {"metadata", "name"}));
    }
    EXPECT_EQ(sink.children, in_plan);
    EXPECT_EQ(in_plan.size(), 7u) << "the BackupVolume, five Backups and the SystemBackup";
    EXPECT_TRUE(sunk.cascade.empty()) << "the sink took the children";
    EXPECT_EQ(sunk.cascaded, held.cascaded);
    EXPECT_EQ(held.cascaded, held.cascade.size());
    EXPECT_EQ(sunk.children_remaining, 8u);
    EXPECT_EQ(sunk.release, held.release);
    EXPECT_EQ(sunk.reason, held.reason);
    EXPECT_EQ(sunk.held_because, held.held_because);
  }
}

TEST_F(RulesTest, ABackupVolumesCascadeGoesToTheSinkWithTheSameDecision) {
  view_.Put("backuptargets", Target("default", "s3://b", /*available=*/false));
  view_.Put("backups", CompletedBackup("b1"));
  view_.Put("backups", CompletedBackup("b2"));
  const Plan held = PlanBackupVolume(Deleting(BackupVolume("vol-1")), view_, ctx_);
  RecordingSink sink;
  const Plan sunk = PlanFor("backupvolumes", Deleting(BackupVolume("vol-1")), view_, ctx_, &sink);
  EXPECT_EQ(sink.children, (std::vector<std::string>{"backups/b1", "backups/b2"}));
  EXPECT_EQ(held.cascade.size(), 2u);
  EXPECT_TRUE(sunk.cascade.empty());
  EXPECT_EQ(sunk.cascaded, 2u);
  EXPECT_EQ(sunk.release, held.release);
  EXPECT_EQ(sunk.held_because, held.held_because);
}

TEST_F(RulesTest, ATargetsChildrenAreReadOneAtATimeNeverAsOneList) {
  for (int i = 0; i < 50; ++i) view_.Put("backups", CompletedBackup("b" + std::to_string(i)));
  VisitOnlyLookup view(view_);
  RecordingSink sink;
  const Plan p = PlanBackupTarget(Target("default", ""), view, ctx_, &sink);
  EXPECT_TRUE(p.read_error.ok()) << p.read_error.message();
  EXPECT_EQ(view.lists, 0);
  EXPECT_EQ(sink.children.size(), 51u);
  EXPECT_EQ(p.cascaded, 51u);
}

TEST_F(RulesTest, AFailedVisitDecidesNothing) {
  view_.Put("backups", CompletedBackup("b1"));
  view_.Fail("systembackups", Status::Unavailable("connection refused"));
  RecordingSink sink;
  const Plan p = PlanBackupTarget(Deleting(Target()), view_, ctx_, &sink);
  EXPECT_FALSE(p.read_error.ok());
  EXPECT_FALSE(p.release);
  EXPECT_EQ(p.cascaded, 0u) << "an unread plan cascades nothing; the sink's share is dropped";
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

TEST_F(RulesTest, ReadySystemBackupWithoutOwnerBelongsToDefaultAndIsLeftToTheEngine) {
  Plan p = PlanSystemBackup(Deleting(SystemBackup("s", "Ready", /*owned=*/false)), view_, ctx_);
  EXPECT_FALSE(p.release) << p.reason;
  EXPECT_NE(p.held_because.find("\"default\""), std::string::npos) << p.held_because;
}

TEST_F(RulesTest, ReadySystemBackupWithoutOwnerIsReleasedWhenDefaultIsGone) {
  view_.Remove("backuptargets", "longhorn-system", "default");
  EXPECT_EQ(PlanSystemBackup(Deleting(SystemBackup("s", "Ready", false)), view_, ctx_).reason,
            reason::kParentGone);
}

TEST_F(RulesTest, ReadySystemBackupWithoutOwnerIsReleasedWhenDefaultIsUnavailable) {
  view_.Put("backuptargets", Target("default", ""));
  EXPECT_EQ(PlanSystemBackup(Deleting(SystemBackup("s", "Ready", false)), view_, ctx_).reason,
            reason::kTargetUnavailable);
}

TEST_F(RulesTest, ReadySystemBackupOfAnUnavailableOwnerIsReleased) {
  view_.Put("backuptargets", Target("default", "s3://b", /*available=*/false));
  EXPECT_EQ(PlanSystemBackup(Deleting(SystemBackup("s", "Ready")), view_, ctx_).reason,
            reason::kTargetUnavailable);
}

TEST_F(RulesTest, SystemBackupLabelledCustomResourceOnlyIsReleased) {
  json sb = SystemBackup("s", "Ready");
  sb["metadata"]["labels"]["longhorn.io/delete-custom-resource-only"] = "true";
  EXPECT_EQ(PlanSystemBackup(Deleting(sb), view_, ctx_).reason, reason::kCustomResourceOnly);
}

TEST_F(RulesTest, ReadySystemBackupWithLiveOwnerIsNotReleased) {
  EXPECT_FALSE(PlanSystemBackup(Deleting(SystemBackup("s", "Ready")), view_, ctx_).release);
}

TEST_F(RulesTest, UpgradeGivesMissingOwnerReferenceWhileDefaultTargetExists) {
  json ref = *MissingOwnerReference(SystemBackup("s", "Ready", false), view_, "longhorn-system");
  ASSERT_TRUE(ref.is_object());
  EXPECT_EQ(ref["uid"], "uid-default");
  EXPECT_TRUE(
      MissingOwnerReference(SystemBackup("s", "Ready", true), view_, "longhorn-system")->is_null());
  view_.Remove("backuptargets", "longhorn-system", "default");
  EXPECT_TRUE(MissingOwnerReference(SystemBackup("s", "Ready", false), view_, "longhorn-system")
                  ->is_null());
}

TEST_F(RulesTest, NeedsReleaseOnlyWhenDeletingWithOurFinalizer) {
  EXPECT_TRUE(NeedsRelease(Deleting(CompletedBackup("b"))));
  EXPECT_FALSE(NeedsRelease(CompletedBackup("b")));
  json other = Deleting(CompletedBackup("b"));
  other["metadata"]["finalizers"] = {"example.com/x"};
  EXPECT_FALSE(NeedsRelease(other));
}

TEST_F(RulesTest, LabelProtectsDataOfEveryChildButABackupThatNeverUploaded) {
  EXPECT_TRUE(LabelProtectsData(Child{"backups", CompletedBackup("b")}));
  json failed = CompletedBackup("f");
  failed["status"] = {{"state", "Error"}, {"backupTargetName", ""}};
  EXPECT_FALSE(LabelProtectsData(Child{"backups", failed}));
  failed["status"].erase("backupTargetName");
  EXPECT_FALSE(LabelProtectsData(Child{"backups", failed}));
  EXPECT_TRUE(LabelProtectsData(
      Child{"backups", BackupBeforeV18("b", "Completed", "s3://b?backup=b&volume=vol-1")}));
  EXPECT_TRUE(LabelProtectsData(Child{"backupvolumes", BackupVolume("vol-1")}));
  EXPECT_TRUE(LabelProtectsData(Child{"systembackups", SystemBackup("s", "Error", true)}));
  EXPECT_TRUE(LabelProtectsData(Child{"backupbackingimages", json::object()}));
}

}  // namespace
}  // namespace bg::domain
