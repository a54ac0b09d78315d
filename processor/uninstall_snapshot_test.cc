#include "processor/uninstall_snapshot.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace bg::processor {
namespace {

using nlohmann::json;

json Obj(const std::string& name, json labels = json::object()) {
  return {{"metadata", {{"name", name}, {"labels", std::move(labels)}}}};
}

std::vector<std::string> Names(const std::vector<json>& objs) {
  std::vector<std::string> out;
  for (const json& o : objs) out.push_back(o["metadata"]["name"]);
  return out;
}

TEST(UninstallSnapshotTest, GetFindsAnObjectByNameAndNothingElse) {
  UninstallSnapshot snap;
  snap.Add("backups", Obj("a"));
  snap.Add("backups", Obj("b"));
  ASSERT_TRUE(snap.Get("backups", "ns", "b")->has_value());
  EXPECT_EQ((**snap.Get("backups", "ns", "b"))["metadata"]["name"], "b");
  EXPECT_FALSE(snap.Get("backups", "ns", "c")->has_value());
  EXPECT_FALSE(snap.Get("backupvolumes", "ns", "a")->has_value()) << "another kind";
  EXPECT_EQ(snap.size(), 2u);
  EXPECT_EQ(Names(snap.Items("backups")), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(snap.Items("volumes").empty());
}

TEST(UninstallSnapshotTest, ListMatchesEveryEqualityTermInListOrder) {
  UninstallSnapshot snap;
  snap.Add("backups", Obj("a", {{"backup-volume", "v1"}, {"backup-target", "default"}}));
  snap.Add("backups", Obj("b", {{"backup-volume", "v2"}, {"backup-target", "default"}}));
  snap.Add("backups", Obj("c", {{"backup-volume", "v1"}, {"backup-target", "other"}}));
  snap.Add("backups", Obj("d", {{"backup-volume", "v1"}}));
  EXPECT_EQ(Names(*snap.List("backups", "ns", "backup-volume=v1")),
            (std::vector<std::string>{"a", "c", "d"}));
  EXPECT_EQ(Names(*snap.List("backups", "ns", "backup-volume=v1,backup-target=default")),
            (std::vector<std::string>{"a"}));
  EXPECT_EQ(Names(*snap.List("backups", "ns", "backup-target=default")),
            (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(snap.List("backups", "ns", "backup-volume=v9")->empty());
  EXPECT_EQ(snap.List("backups", "ns", "")->size(), 4u) << "an empty selector matches all";
  EXPECT_TRUE(snap.List("systembackups", "ns", "backup-volume=v1")->empty());
}

TEST(UninstallSnapshotTest, AnEmptyLabelValueIsIndexedApartFromAMissingLabel) {
  UninstallSnapshot snap;
  snap.Add("backups", Obj("empty", {{"backup-volume", ""}}));
  snap.Add("backups", Obj("missing"));
  EXPECT_EQ(Names(*snap.List("backups", "ns", "backup-volume=")),
            (std::vector<std::string>{"empty"}));
}

TEST(UninstallSnapshotTest, ReplaceTakesTheOtherCopyOfOneKindOnly) {
  UninstallSnapshot snap, fresh;
  snap.Add("backups", Obj("old", {{"backup-volume", "v"}}));
  snap.Add("backupvolumes", Obj("bv"));
  ASSERT_EQ(snap.List("backups", "ns", "backup-volume=v")->size(), 1u);  // index built
  fresh.Add("backups", Obj("new", {{"backup-volume", "v"}}));
  snap.Replace("backups", fresh);
  EXPECT_EQ(Names(snap.Items("backups")), (std::vector<std::string>{"new"}));
  EXPECT_EQ(Names(*snap.List("backups", "ns", "backup-volume=v")),
            (std::vector<std::string>{"new"}))
      << "the label index went with the old copy";
  EXPECT_FALSE(snap.Get("backups", "ns", "old")->has_value());
  EXPECT_TRUE(snap.Get("backupvolumes", "ns", "bv")->has_value());
}

TEST(UninstallSnapshotTest, ListsFromManyThreadsAtOnceAgreeWithOneThread) {
  UninstallSnapshot snap;
  for (int i = 0; i < 2000; ++i) {
    snap.Add("backups",
             Obj("b" + std::to_string(i), {{"backup-volume", "v" + std::to_string(i % 7)},
                                           {"backup-target", "t" + std::to_string(i % 3)}}));
  }
  std::vector<size_t> seen(8);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < seen.size(); ++t) {
    threads.emplace_back([&, t] {
      seen[t] =
          snap.List("backups", "ns", "backup-target=t1,backup-volume=v" + std::to_string(t % 7))
              ->size();
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t t = 0; t < seen.size(); ++t) {
    size_t expected = 0;
    for (int i = 0; i < 2000; ++i) expected += (i % 3 == 1 && i % 7 == static_cast<int>(t % 7));
    EXPECT_EQ(seen[t], expected) << t;
  }
}

}  // namespace
}  // namespace bg::processor
