#include "validators/finalizer_removal.h"

#include <gtest/gtest.h>

#include "tests/testing/fake_lookup.h"
#include "validators/validators.h"

namespace bg::validators {
namespace {

using nlohmann::json;
using testing::MakeRequest;
using webhook::Operation;

json Deleting(json finalizers) {
  return {{"metadata",
           {{"name", "default"},
            {"namespace", "longhorn-system"},
            {"deletionTimestamp", "2026-01-01T00:00:00Z"},
            {"resourceVersion", "10"},
            {"finalizers", std::move(finalizers)}}},
          {"spec", {{"backupTargetURL", "s3://b"}}}};
}

TEST(FinalizerRemovalTest, UpdateRemovingOnlyFinalizersFromDeletingObjectIsAllowed) {
  json before = Deleting({"longhorn.io", "other"});
  json after = Deleting({"other"});
  after["metadata"]["resourceVersion"] = "11";
  EXPECT_TRUE(IsFinalizerOnlyRemoval(MakeRequest("backups", Operation::kUpdate, after, before)));
}

TEST(FinalizerRemovalTest, RemovingTheLastFinalizerIsAllowed) {
  json before = Deleting({"longhorn.io"});
  json after = before;
  after["metadata"].erase("finalizers");
  EXPECT_TRUE(IsFinalizerOnlyRemoval(MakeRequest("backups", Operation::kUpdate, after, before)));
}

TEST(FinalizerRemovalTest, UpdateThatAlsoChangesSpecIsNotAFinalizerOnlyRemoval) {
  json before = Deleting({"longhorn.io"});
  json after = Deleting(json::array());
  after["spec"]["backupTargetURL"] = "";
  EXPECT_FALSE(IsFinalizerOnlyRemoval(MakeRequest("backups", Operation::kUpdate, after, before)));
}

TEST(FinalizerRemovalTest, ObjectNotBeingDeletedIsNotCovered) {
  json before = Deleting({"longhorn.io"});
  before["metadata"].erase("deletionTimestamp");
  json after = before;
  after["metadata"]["finalizers"] = json::array();
  EXPECT_FALSE(IsFinalizerOnlyRemoval(MakeRequest("backups", Operation::kUpdate, after, before)));
}

TEST(FinalizerRemovalTest, AddingAFinalizerIsNotARemoval) {
  json before = Deleting({"longhorn.io"});
  json after = Deleting({"other"});
  EXPECT_FALSE(IsFinalizerOnlyRemoval(MakeRequest("backups", Operation::kUpdate, after, before)));
}

TEST(FinalizerRemovalTest, RegistryAllowsFinalizerOnlyRemovalBeforeAnyRule) {
  kube::NoClusterLookup none;
  webhook::Registry registry = BuildValidationRegistry(none);
  // A validator that would deny this UPDATE must never be consulted.
  registry.Register("longhorn.io", "backups", Operation::kUpdate,
                    [](const webhook::AdmissionRequest&) { return webhook::Denied(403, "no"); });
  json before = Deleting({"longhorn.io"});
  json after = Deleting(json::array());
  EXPECT_TRUE(registry.Handle(MakeRequest("backups", Operation::kUpdate, after, before)).allowed);
  json changed = after;
  changed["spec"]["x"] = 1;
  EXPECT_FALSE(
      registry.Handle(MakeRequest("backups", Operation::kUpdate, changed, before)).allowed);
}

}  // namespace
}  // namespace bg::validators
