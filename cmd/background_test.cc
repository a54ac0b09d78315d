#include "cmd/background.h"

#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "domain/kinds.h"
#include "tests/testing/eventually.h"
#include "tests/testing/fake_kube_api.h"
#include "tests/testing/forwarding_kube_api.h"

namespace bg::cmd {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;

constexpr char kNs[] = "longhorn-system";

using ::bg::testing::Eventually;

// Forwards to a FakeKubeApi and writes down, in order, when a finalizer release (merge patch)
// came back and when the Lease holder was emptied.
class RecordingApi final : public testing::ForwardingKubeApi {
 public:
  using ForwardingKubeApi::ForwardingKubeApi;

  std::vector<std::string> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

  Result<json> Update(const kube::ResourceRef& r, const std::string& ns, const json& o) override {
    if (r.resource == "leases" && o["spec"].value("holderIdentity", "x").empty()) {
      Record("lease holder emptied");
    }
    return ForwardingKubeApi::Update(r, ns, o);
  }
  Result<json> MergePatch(const kube::ResourceRef& r, const std::string& ns,
                          const std::string& name, const json& patch) override {
    Result<json> out = ForwardingKubeApi::MergePatch(r, ns, name, patch);
    Record("release answered");
    return out;
  }

 private:
  void Record(const std::string& e) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(e);
  }
  std::mutex mu_;
  std::vector<std::string> events_;
};

// Issue 14, suspect 4: the Lease must not be given up while a write made under it is still in
// flight, or a successor starts while it lands.
TEST(BackgroundTest, WritersStopBeforeTheLeaseHolderIsEmptied) {
  FakeKubeApi fake;
  RecordingApi api(fake);
  Background bg;
  kube::LeaderElectionOptions le;
  le.identity = "replica-a";
  le.ns = kNs;
  le.lease_duration = std::chrono::milliseconds(4000);
  le.renew_deadline = std::chrono::milliseconds(3000);
  le.retry_period = std::chrono::milliseconds(100);
  Background* b = &bg;
  bg.elector = std::make_unique<kube::LeaderElector>(
      api, le,
      [b] {
        if (b->controller) b->controller->EnqueueAll();
      },
      [] {});
  kube::LeaderElector* elector = bg.elector.get();
  processor::ControllerOptions co;
  co.ns = kNs;
  co.workers = 1;
  bg.controller = std::make_unique<processor::Controller>(
      api, co, nullptr, [elector] { return elector->IsLeader(); });
  bg.controller->Start();
  bg.election = std::thread([elector, b] { elector->Run(b->stop_election); });
  ASSERT_TRUE(Eventually([&] { return elector->IsLeader() && bg.controller->Synced(); }));

  // A Backup without the backup-volume label, being deleted: released at once, by a merge patch
  // that the API takes 1.5 s to answer.
  fake.DelayNext("patch", std::chrono::milliseconds(1500));
  fake.Seed(domain::Resource("backups"), {{"metadata",
                                           {{"name", "b-1"},
                                            {"namespace", kNs},
                                            {"finalizers", {"longhorn.io"}},
                                            {"deletionTimestamp", "2026-01-01T00:00:00Z"}}}});
  ASSERT_TRUE(Eventually([&] { return fake.calls("patch") >= 1; }));

  fake.EndWatches();
  bg.Stop();
  EXPECT_EQ(api.events(), (std::vector<std::string>{"release answered", "lease holder emptied"}))
      << "the Lease was given up while the release was in flight";
  EXPECT_FALSE(fake.Peek(domain::Resource("backups"), kNs, "b-1").has_value());
}

}  // namespace
}  // namespace bg::cmd
