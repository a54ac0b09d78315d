#include "processor/uninstall_snapshot.h"

#include <gtest/gtest.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cstdio>
#include <optional>
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

// The names of every object of `resource`, in the order added.
std::vector<std::string> Names(const UninstallSnapshot& snap, const std::string& resource) {
  std::vector<std::string> out;
  snap.ForEach(resource, [&](size_t, const json& o) { out.push_back(o["metadata"]["name"]); });
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
  EXPECT_EQ(Names(snap, "backups"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(Names(snap, "volumes").empty());
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

TEST(UninstallSnapshotTest, VisitHandsOutWhatListAnswersOneAtATime) {
  UninstallSnapshot snap;
  snap.Add("backups", Obj("a", {{"backup-volume", "v1"}, {"backup-target", "default"}}));
  snap.Add("backups", Obj("b", {{"backup-volume", "v2"}, {"backup-target", "default"}}));
  snap.Add("backups", Obj("c", {{"backup-volume", "v1"}}));
  for (const char* selector : {"", "backup-volume=v1", "backup-target=default,backup-volume=v2",
                               "backup-volume!=v1", "backup-volume=v9"}) {
    std::vector<json> visited;
    EXPECT_TRUE(
        snap.Visit("backups", "ns", selector, [&](json& obj) { visited.push_back(std::move(obj)); })
            .ok());
    EXPECT_EQ(visited, *snap.List("backups", "ns", selector)) << selector;
  }
  int calls = 0;
  EXPECT_TRUE(snap.Visit("volumes", "ns", "", [&](json&) { ++calls; }).ok());
  EXPECT_EQ(calls, 0) << "a kind it does not hold";
}

TEST(UninstallSnapshotTest, IndexOfIsThePositionAtAnswers) {
  UninstallSnapshot snap;
  snap.Add("backups", Obj("a"));
  snap.Add("backups", Obj("b"));
  ASSERT_EQ(snap.IndexOf("backups", "b"), std::optional<size_t>(1));
  EXPECT_EQ(snap.At("backups", *snap.IndexOf("backups", "b")), Obj("b"));
  EXPECT_EQ(snap.IndexOf("backups", "c"), std::nullopt);
  EXPECT_EQ(snap.IndexOf("volumes", "a"), std::nullopt);
}

TEST(UninstallSnapshotTest, ReplaceTakesTheOtherCopyOfOneKindOnly) {
  UninstallSnapshot snap, fresh;
  snap.Add("backups", Obj("old", {{"backup-volume", "v"}}));
  snap.Add("backupvolumes", Obj("bv"));
  ASSERT_EQ(snap.List("backups", "ns", "backup-volume=v")->size(), 1u);  // index built
  fresh.Add("backups", Obj("new", {{"backup-volume", "v"}}));
  snap.Replace("backups", fresh);
  EXPECT_EQ(Names(snap, "backups"), (std::vector<std::string>{"new"}));
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

// Heap bytes in use by glibc's allocator; 0 where that is unknown (another libc).
size_t HeapInUse() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  return mallinfo2().uordblks;
#else
  return 0;
#endif
}

// A Backup as CompactForRules leaves it (the benchmark's shape: bench/scale seed).
json CompactBackup(int i) {
  char name[32];
  std::snprintf(name, sizeof(name), "backup-%06d", i);
  char uid[40];
  std::snprintf(uid, sizeof(uid), "0b5f3c1e-8d2a-4c61-9e7f-%012d", i);
  const std::string volume = "vol-" + std::to_string(i % 500);
  return {{"metadata",
           {{"name", name},
            {"namespace", "longhorn-system"},
            {"uid", uid},
            {"resourceVersion", std::to_string(100000 + i)},
            {"labels", {{"backup-volume", volume}, {"backup-target", "default"}}},
            {"finalizers", {"longhorn.io"}}}},
          {"spec", {{"snapshotName", "snap-" + std::to_string(i)}}},
          {"status",
           {{"backupTargetName", "default"},
            {"state", "Completed"},
            {"url", "s3://backupbucket@us-east-1/longhorn?backup=" + std::string(name) +
                        "&volume=" + volume}}}};
}

// The snapshot holds every object of a pass, and a target's cascade holds a tree of each child
// besides; so the snapshot's own copy (record and indexes) must cost about what the object's JSON
// text does, not the several times that a nlohmann::json tree of it costs.
TEST(UninstallSnapshotTest, HoldsEachObjectInAboutItsJsonText) {
  constexpr int kObjects = 4000;
  size_t text = 0;
  for (int i = 0; i < kObjects; ++i) text += CompactBackup(i).dump().size();
  UninstallSnapshot snap;
  const size_t before = HeapInUse();
  for (int i = 0; i < kObjects; ++i) snap.Add("backups", CompactBackup(i));
  const size_t after = HeapInUse();
  ASSERT_EQ(snap.size(), static_cast<size_t>(kObjects));
  if (before == 0 || after <= before) GTEST_SKIP() << "heap in use unknown (not glibc's malloc)";
  const double per_object = static_cast<double>(after - before) / kObjects;
  EXPECT_LT(per_object, 1.5 * static_cast<double>(text) / kObjects)
      << "bytes held per object, against its JSON text's " << text / kObjects;
}

TEST(UninstallSnapshotTest, EveryAnswerIsTheObjectAddedAndTheCallersOwn) {
  UninstallSnapshot snap;
  for (int i = 0; i < 3; ++i) snap.Add("backups", CompactBackup(i));
  EXPECT_EQ(snap.Count("backups"), 3u);
  EXPECT_EQ(snap.Count("volumes"), 0u);
  EXPECT_EQ(snap.At("backups", 1), CompactBackup(1));
  EXPECT_EQ(*snap.Get("backups", "ns", "backup-000002"), CompactBackup(2));
  EXPECT_EQ(*snap.List("backups", "ns", "backup-volume=vol-0"),
            (std::vector<json>{CompactBackup(0)}));
  json mine = snap.At("backups", 0);
  mine["metadata"]["labels"]["backup-volume"] = "changed";
  EXPECT_EQ(snap.At("backups", 0), CompactBackup(0)) << "a caller's change never reaches it";
  EXPECT_EQ(snap.List("backups", "ns", "backup-volume=changed")->size(), 0u);
  std::vector<size_t> seen;
  snap.ForEach("backups", [&](size_t i, json& obj) {
    EXPECT_EQ(obj, CompactBackup(static_cast<int>(i)));
    seen.push_back(i);
  });
  EXPECT_EQ(seen, (std::vector<size_t>{0, 1, 2}));
  EXPECT_GT(snap.RecordBytes(), 0u);
  EXPECT_LT(snap.RecordBytes(), CompactBackup(0).dump().size() * 3);
}

}  // namespace
}  // namespace bg::processor
