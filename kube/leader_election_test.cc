#include "kube/leader_election.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/testing/eventually.h"
#include "tests/testing/fake_kube_api.h"
#include "tests/testing/forwarding_kube_api.h"

namespace bg::kube {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;

using ::bg::testing::Eventually;

LeaderElectionOptions Fast(const std::string& id, const Clock* clock = nullptr) {
  LeaderElectionOptions o;
  o.clock = clock;
  o.identity = id;
  o.ns = "ns";
  o.lease_duration = std::chrono::milliseconds(1000);
  o.renew_deadline = std::chrono::milliseconds(600);
  o.retry_period = std::chrono::milliseconds(50);
  return o;
}

// One candidate's view of the shared API, counting its reads: every attempt starts with one.
class CountingApi final : public testing::ForwardingKubeApi {
 public:
  using ForwardingKubeApi::ForwardingKubeApi;
  Result<json> Get(const ResourceRef& r, const std::string& ns, const std::string& name) override {
    ++gets;
    return ForwardingKubeApi::Get(r, ns, name);
  }
  std::atomic<int> gets{0};
};

struct Candidate {
  Candidate(FakeKubeApi& api, const std::string& id, const Clock* clock = nullptr)
      : view(api),
        elector(
            view, Fast(id, clock), [this] { ++started; }, [this] { ++stopped; }),
        thread([this] { elector.Run(stop); }) {}
  ~Candidate() { Stop(); }
  void Stop() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
  // Waits until an attempt that began after this call has ended: the second read from now on
  // begins after the first one's attempt ended.
  bool TriedAgain() {
    const int seen = view.gets.load();
    return Eventually([&] { return view.gets.load() >= seen + 2; });
  }
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::atomic<bool> stop{false};
  CountingApi view;
  LeaderElector elector;
  std::thread thread;
};

TEST(LeaderElectionTest, OnlyOneOfTwoCandidatesLeads) {
  FakeKubeApi api;
  ManualClock clock;
  Candidate a(api, "a", &clock), b(api, "b", &clock);
  ASSERT_TRUE(Eventually([&] { return a.elector.IsLeader() || b.elector.IsLeader(); }));
  // Three lease durations pass, a quarter of one at a time; at each time both have tried again.
  for (int i = 0; i < 12; ++i) {
    EXPECT_FALSE(a.elector.IsLeader() && b.elector.IsLeader());
    clock.Advance(std::chrono::milliseconds(250));
    ASSERT_TRUE(a.TriedAgain());
    ASSERT_TRUE(b.TriedAgain());
  }
  EXPECT_FALSE(a.elector.IsLeader() && b.elector.IsLeader());
  auto lease = api.Peek(kLeases, "ns", "backup-guard");
  ASSERT_TRUE(lease.has_value());
  const std::string holder = (*lease)["spec"]["holderIdentity"];
  EXPECT_EQ(holder == "a", a.elector.IsLeader());
}

TEST(LeaderElectionTest, StoppedLeaderReleasesAndTheOtherTakesOver) {
  FakeKubeApi api;
  auto a = std::make_unique<Candidate>(api, "a");
  ASSERT_TRUE(Eventually([&] { return a->elector.IsLeader(); }));
  Candidate b(api, "b");
  a->Stop();
  EXPECT_EQ(a->stopped.load(), 1);
  ASSERT_TRUE(Eventually([&] { return b.elector.IsLeader(); }));
  EXPECT_EQ((*api.Peek(kLeases, "ns", "backup-guard"))["spec"]["leaseTransitions"], 1);
}

TEST(LeaderElectionTest, LeaderThatCannotRenewStopsActingAtTheDeadline) {
  FakeKubeApi api;
  Candidate a(api, "a");
  ASSERT_TRUE(Eventually([&] { return a.elector.IsLeader(); }));
  api.FailNext("get", 1000000, Status::Unavailable("API server unreachable"));
  ASSERT_TRUE(Eventually([&] { return !a.elector.IsLeader(); }, 3000));
  ASSERT_TRUE(Eventually([&] { return a.stopped.load() == 1; }, 3000));
}

TEST(LeaderElectionTest, RenewalAfterALapseStartsLeadingAgain) {
  FakeKubeApi api;
  Candidate a(api, "a");
  ASSERT_TRUE(Eventually([&] { return a.elector.IsLeader(); }));
  // The elector says it leads before its callback has run on the callback's thread.
  ASSERT_TRUE(Eventually([&] { return a.started.load() == 1; })) << a.started.load();
  // One renewal is slower than the renew deadline but succeeds within the lease: no failed
  // attempt is ever seen, yet the replica stopped acting in between.
  api.DelayNext("get", std::chrono::milliseconds(800));
  ASSERT_TRUE(Eventually([&] { return !a.elector.IsLeader(); }, 3000));
  ASSERT_TRUE(Eventually([&] { return a.elector.IsLeader(); }, 3000));
  EXPECT_TRUE(Eventually([&] { return a.started.load() == 2; }))
      << "leading again must re-queue the work dropped meanwhile: started " << a.started.load();
}

TEST(LeaderElectionTest, ExpiredLeaseOfACrashedHolderIsTaken) {
  FakeKubeApi api;
  api.Seed(kLeases, {{"metadata", {{"name", "backup-guard"}, {"namespace", "ns"}}},
                     {"spec",
                      {{"holderIdentity", "crashed"},
                       {"leaseDurationSeconds", 1},
                       {"renewTime", "2026-01-01T00:00:00.000000Z"}}}});
  Candidate b(api, "b");
  EXPECT_FALSE(b.elector.IsLeader());
  ASSERT_TRUE(Eventually([&] { return b.elector.IsLeader(); }, 4000));
}

TEST(LeaderElectionTest, TimingsAreValidatedAsClientGoDoes) {
  LeaderElectionOptions o;  // 15 s, 10 s, 2 s
  EXPECT_TRUE(ValidateLeaderElectionTimings(o).ok());
  EXPECT_TRUE(ValidateLeaderElectionTimings(Fast("a")).ok());
  o.renew_deadline = o.lease_duration;
  Status s = ValidateLeaderElectionTimings(o);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("--leader-election-lease-duration (15s) must be greater than "
                             "--leader-election-renew-deadline (15s)"),
            std::string::npos)
      << s.message();
  o = LeaderElectionOptions();
  o.retry_period = std::chrono::milliseconds(8500);  // 1.2 x 8.5 s > 10 s
  s = ValidateLeaderElectionTimings(o);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("1.2 x --leader-election-retry-period (8500ms)"), std::string::npos)
      << s.message();
  o = LeaderElectionOptions();
  o.retry_period = std::chrono::milliseconds(0);
  EXPECT_EQ(ValidateLeaderElectionTimings(o).code(), Status::Code::kInvalidArgument);
}

TEST(LeaderElectionTest, LeadershipDeadlineIsRenewDeadlineAfterTheLastRenewalStarted) {
  FakeKubeApi api;
  Candidate a(api, "a");
  ASSERT_TRUE(Eventually([&] { return a.elector.IsLeader(); }));
  const auto deadline = a.elector.LeadershipDeadline();
  ASSERT_TRUE(deadline.has_value());
  const auto left = *deadline - std::chrono::steady_clock::now();
  EXPECT_GT(left, std::chrono::milliseconds(0));
  EXPECT_LE(left, Fast("a").renew_deadline);
  a.Stop();
  EXPECT_FALSE(a.elector.LeadershipDeadline().has_value());
}

}  // namespace
}  // namespace bg::kube
