#include "kube/informer.h"

#include <gtest/gtest.h>

#include <thread>

#include "kube/rest_api.h"
#include "tests/testing/fake_kube_api.h"

namespace bg::kube {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;

json Obj(const std::string& name, json labels = json::object()) {
  return {{"metadata", {{"name", name}, {"namespace", "ns"}, {"labels", labels}}}};
}

// Waits (bounded) for `pred`; the bound only stops a broken test from hanging.
template <typename Pred>
bool Eventually(Pred pred) {
  for (int i = 0; i < 500; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

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
  ResourceRef ref_ = LonghornResource("backups");
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
