#include "kube/informer.h"

#include <gtest/gtest.h>

#include <thread>

#include "kube/rest_api.h"
#include "tests/testing/eventually.h"
#include "tests/testing/fake_kube_api.h"

namespace bg::kube {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;

json Obj(const std::string& name, json labels = json::object()) {
  return {{"metadata", {{"name", name}, {"namespace", "ns"}, {"labels", labels}}}};
}

// Waits (bounded) for `pred`; the bound only stops a broken test from hanging.
using ::bg::testing::Eventually;

class InformerTest : public ::testing::Test {
 protected:
  void Start() {
    thread_ = std::thread([this] { informer_.Run(stop_); });
    ASSERT_TRUE(Eventually([&] { return informer_.Synced(); }));
  }
  void TearDown() override {
    stop_ = true;
    api_.EndWatches();
    if (thread_.joinable()) thread_.join();
  }
  std::set<std::string> Changed() {
    std::lock_guard<std::mutex> lock(mu_);
    return changed_;
  }

  FakeKubeApi api_;
  ResourceRef ref_ = LonghornResource("backups", "Backup");
  std::mutex mu_;
  std::set<std::string> changed_;
  Informer informer_{api_, ref_, "ns", [this](const std::string& n) {
                       std::lock_guard<std::mutex> lock(mu_);
                       changed_.insert(n);
                     }};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST_F(InformerTest, ListsThenWatchesAddsUpdatesAndDeletes) {
  api_.Seed(ref_, Obj("a"));
  Start();
  EXPECT_TRUE(informer_.Get("a").has_value());
  api_.Seed(ref_, Obj("b", {{"x", "1"}}));
  ASSERT_TRUE(Eventually([&] { return informer_.Get("b").has_value(); }));
  EXPECT_EQ(informer_.List("x=1").size(), 1u);
  ASSERT_TRUE(api_.Delete(ref_, "ns", "a", "").ok());
  ASSERT_TRUE(Eventually([&] { return !informer_.Get("a").has_value(); }));
  EXPECT_TRUE(Changed().count("a") && Changed().count("b"));
}

TEST_F(InformerTest, GoneTriggersARelistThatKeepsTheCacheRight) {
  api_.Seed(ref_, Obj("a"));
  Start();
  const int relists = informer_.relists();
  api_.SeedAndCompact(ref_, Obj("c"));
  api_.EndWatches();  // the next watch starts from a compacted version
  ASSERT_TRUE(Eventually([&] { return informer_.relists() > relists; }));
  ASSERT_TRUE(Eventually([&] { return informer_.Get("c").has_value(); }));
}

TEST_F(InformerTest, ReconnectsAfterTheServerClosesTheStream) {
  Start();
  api_.EndWatches();
  api_.Seed(ref_, Obj("after-close"));
  ASSERT_TRUE(Eventually([&] { return informer_.Get("after-close").has_value(); }));
}

TEST_F(InformerTest, ListFailuresAreRetriedWithBackoff) {
  api_.FailNext("list", 2, Status::Unavailable("connection refused"));
  api_.Seed(ref_, Obj("a"));
  Start();
  EXPECT_TRUE(informer_.Get("a").has_value());
  EXPECT_GE(api_.calls("list"), 3);
}

TEST_F(InformerTest, ATypeNotServedNeverLooksEmptyAndSynced) {
  // What kube-apiserver answers while a CRD's handler starts: a 404 naming no object.
  api_.FailNext("list", 1000000,
                StatusFromHttp(404,
                               R"({"kind":"Status","code":404,"reason":"NotFound","details":{},)"
                               R"("message":"the server could not find the requested resource"})",
                               "list backups"));
  api_.Seed(ref_, Obj("a"));
  thread_ = std::thread([this] { informer_.Run(stop_); });
  ASSERT_TRUE(Eventually([&] { return api_.calls("list") >= 3; }));
  EXPECT_FALSE(informer_.Synced()) << "an empty, synced cache would read as every object gone";
  api_.FailNext("list", 0, Status::Ok());
  ASSERT_TRUE(Eventually([&] { return informer_.Synced(); }));
  EXPECT_TRUE(informer_.Get("a").has_value());
}

// Issue 14, suspect 3: a relist reported every cached name, so each one re-queued the whole
// cache (50,000 reconciles for one new object).
TEST_F(InformerTest, RelistReportsOnlyWhatChangedAcrossTheGap) {
  api_.Seed(ref_, Obj("same"));
  api_.Seed(ref_, Obj("changed"));
  api_.Seed(ref_, Obj("removed"));
  Start();
  {
    std::lock_guard<std::mutex> lock(mu_);
    changed_.clear();
  }
  const int relists = informer_.relists();
  // Across a gap the watch cannot bridge: one object goes, one changes, one comes. The deletion
  // comes first: the watch may deliver its event before the history is forgotten, and the two
  // silent writes after it still leave that watch behind the compacted version, so it must relist.
  ASSERT_TRUE(api_.Delete(ref_, "ns", "removed", "").ok());
  api_.SeedSilently(ref_, Obj("changed", {{"x", "2"}}));
  api_.SeedSilently(ref_, Obj("added"));
  api_.CompactHistory();
  api_.EndWatches();
  ASSERT_TRUE(Eventually([&] { return informer_.relists() > relists; }));
  ASSERT_TRUE(Eventually([&] { return Changed().size() >= 3; }));
  EXPECT_EQ(Changed(), (std::set<std::string>{"changed", "added", "removed"}));
  EXPECT_TRUE(informer_.Get("same").has_value());
  EXPECT_FALSE(informer_.Get("removed").has_value());
}

TEST_F(InformerTest, CachedObjectsCarryNoManagedFields) {
  json listed = Obj("listed");
  listed["metadata"]["managedFields"] = json::array({{{"manager", "longhorn-manager"}}});
  api_.Seed(ref_, listed);
  Start();
  json watched = Obj("watched");
  watched["metadata"]["managedFields"] = listed["metadata"]["managedFields"];
  api_.Seed(ref_, watched);
  ASSERT_TRUE(Eventually([&] { return informer_.Get("watched").has_value(); }));
  for (const char* name : {"listed", "watched"}) {
    const json obj = *informer_.Get(name);
    EXPECT_FALSE(obj["metadata"].contains("managedFields")) << name;
    EXPECT_EQ(obj["metadata"]["name"], name);
  }
}

TEST_F(InformerTest, ListDeletingHoldsOnlyObjectsBeingDeleted) {
  json deleting = Obj("deleting");
  deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  api_.Seed(ref_, deleting);
  api_.Seed(ref_, Obj("kept"));
  Start();
  auto names = [&] {
    std::set<std::string> out;
    for (const json& o : informer_.ListDeleting()) out.insert(o["metadata"]["name"]);
    return out;
  };
  EXPECT_EQ(names(), std::set<std::string>{"deleting"});
  json later = Obj("kept");
  later["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z";
  api_.Seed(ref_, later);
  ASSERT_TRUE(Eventually([&] { return names().size() == 2; }));
  ASSERT_TRUE(api_.Delete(ref_, "ns", "deleting", "").ok());
  ASSERT_TRUE(Eventually([&] { return names() == std::set<std::string>{"kept"}; }));
  EXPECT_EQ(informer_.Names(), (std::vector<std::string>{"kept"}));
}

TEST(SelectorTest, EqualityTerms) {
  json o = Obj("a", {{"k", "v"}, {"k2", "v2"}});
  EXPECT_TRUE(MatchesSelector(o, ""));
  EXPECT_TRUE(MatchesSelector(o, "k=v"));
  EXPECT_TRUE(MatchesSelector(o, "k=v,k2=v2"));
  EXPECT_FALSE(MatchesSelector(o, "k=v,k2=x"));
  EXPECT_FALSE(MatchesSelector(Obj("b"), "k=v"));
}

}  // namespace
}  // namespace bg::kube
