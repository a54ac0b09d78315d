#include "kube/api_health.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kube/api_health_metrics.h"
#include "tests/testing/fake_transport.h"

namespace bg::kube {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kEtcdDownReadyz[] =
    "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\n"
    "readyz check failed\n";

using testing::FakeTransport;

class CountingObserver final : public ApiHealthObserver {
 public:
  void OnContact() override { ++contacts; }
  void OnFailure() override { ++failures; }
  std::atomic<int> contacts{0};
  std::atomic<int> failures{0};
};

class ApiHealthTest : public ::testing::Test {
 protected:
  ApiHealthTest() {
    options_.clock = &clock_;
    options_.unready_after = seconds(20);
    options_.probe_interval = seconds(5);
    api_.AnswerAll(200, "ok");
  }

  ApiHealth& health() {
    if (!health_) health_ = std::make_shared<ApiHealth>(options_, &observer_);
    return *health_;
  }
  // Ticks every 100 ms of fake time for `d`, as Run does.
  void RunFor(Clock::Duration d) {
    for (Clock::Duration t{}; t < d; t += milliseconds(100)) {
      health().Tick(api_);
      clock_.Advance(milliseconds(100));
    }
  }

  ManualClock clock_;
  ApiHealthOptions options_;
  FakeTransport api_;
  CountingObserver observer_;
  std::shared_ptr<ApiHealth> health_;
};

TEST_F(ApiHealthTest, NotReadyBeforeTheFirstContact) {
  Status s = health().Check();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_EQ(s.message(), "kubernetes API not reached yet");

  api_.FailAll(Status::Unavailable("GET /readyz to https://127.0.0.1:6443: Connection"));
  EXPECT_TRUE(health().Tick(api_));
  EXPECT_THAT(health().Check().message(),
              HasSubstr("not reached yet; last error 0.0s ago: GET /readyz to "
                        "https://127.0.0.1:6443: Connection"));
}

TEST_F(ApiHealthTest, FirstSuccessfulProbeMakesItReady) {
  EXPECT_TRUE(health().Tick(api_));
  EXPECT_TRUE(health().Check().ok());
  EXPECT_THAT(api_.request_lines(), ::testing::ElementsAre("GET /readyz"));
}

TEST_F(ApiHealthTest, BeforeTheFirstContactTheProbeRetriesEverySecond) {
  api_.FailAll(Status::Unavailable("refused"));
  RunFor(seconds(3));
  EXPECT_EQ(api_.count(), 3u);
  api_.AnswerAll(200, "");
  RunFor(seconds(1));
  EXPECT_TRUE(health().Check().ok());
  // Once reached, the probe slows to probe_interval.
  RunFor(seconds(10));
  EXPECT_EQ(api_.count(), 4u + 2u);
}

TEST_F(ApiHealthTest, ShortOutagesDoNotMakeItUnready) {
  health().RecordContact();
  api_.FailAll(Status::Unavailable("GET /readyz to https://127.0.0.1:6443: Read error"));
  RunFor(seconds(19));
  EXPECT_TRUE(health().Check().ok()) << health().Check().message();
  EXPECT_GT(observer_.failures.load(), 0);
}

TEST_F(ApiHealthTest, UnreadyOnceTheApiHasBeenUnreachableForTheThreshold) {
  health().RecordContact();
  api_.FailAll(Status::Unavailable("GET /readyz to https://127.0.0.1:6443: Read error"));
  RunFor(seconds(20));
  Status s = health().Check();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("kubernetes API unreachable: last contact 20.0s ago "
                                     "(not ready after 20.0s)"));
  EXPECT_THAT(s.message(), HasSubstr("GET /readyz to https://127.0.0.1:6443: Read error"));
}

TEST_F(ApiHealthTest, ReadyAgainAtTheFirstContactAfterAnOutage) {
  health().RecordContact();
  api_.FailAll(Status::Unavailable("Read error"));
  RunFor(seconds(40));
  EXPECT_FALSE(health().Check().ok());
  api_.AnswerAll(200, "");
  RunFor(seconds(5));
  EXPECT_TRUE(health().Check().ok());
}

TEST_F(ApiHealthTest, RealTrafficAloneKeepsItReady) {
  health().RecordContact();
  api_.FailAll(Status::Unavailable("probe fails"));
  for (int i = 0; i < 60; ++i) {
    clock_.Advance(seconds(1));
    health().RecordContact();
    health().Tick(api_);
  }
  EXPECT_TRUE(health().Check().ok());
  // Traffic made contact every second, so no probe was due.
  EXPECT_EQ(api_.count(), 0u);
}

TEST_F(ApiHealthTest, ProbeRunsWhenRealTrafficIsQuietForAProbeInterval) {
  health().RecordContact();
  RunFor(milliseconds(4900));
  EXPECT_EQ(api_.count(), 0u);
  RunFor(milliseconds(200));
  EXPECT_EQ(api_.count(), 1u);
  RunFor(milliseconds(4800));
  EXPECT_EQ(api_.count(), 1u);
}

TEST_F(ApiHealthTest, ApiServerReadyz500IsAFailureNamingTheFailedChecks) {
  health().RecordContact();
  clock_.Advance(seconds(5));
  api_.AnswerAll(500, kEtcdDownReadyz);
  RunFor(seconds(21));
  Status s = health().Check();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("GET /readyz answered 500: etcd failed: reason withheld"));
  EXPECT_THAT(s.message(), Not(HasSubstr("[+]ping")));
}

TEST_F(ApiHealthTest, ZeroThresholdOnlyWaitsForTheFirstContact) {
  options_.unready_after = milliseconds(0);
  EXPECT_FALSE(health().Check().ok());
  health().RecordContact();
  api_.FailAll(Status::Unavailable("Read error"));
  RunFor(seconds(120));
  EXPECT_TRUE(health().Check().ok());
}

TEST_F(ApiHealthTest, CheckAnswersWhileTheProbeHangs) {
  health().RecordContact();
  clock_.Advance(seconds(30));
  api_.Block(true);
  std::thread probe([&] { health().Tick(api_); });
  api_.WaitBlocked();
  // The probe is stuck in the black hole; Check still answers, from state alone.
  Status s = health().Check();
  EXPECT_THAT(s.message(), HasSubstr("last contact 30.0s ago"));
  api_.FailAll(Status::Unavailable("Read timeout"));
  api_.Block(false);
  probe.join();
  EXPECT_THAT(health().Check().message(), HasSubstr("Read timeout"));
}

class RecordingTransportTest : public ApiHealthTest {
 protected:
  RecordingTransportTest() : inner_(std::make_shared<FakeTransport>()) {
    inner_->AnswerAll(200, "ok");
  }

  HealthRecordingTransport& transport() {
    if (!transport_) {
      health();
      transport_ = std::make_unique<HealthRecordingTransport>(inner_, health_);
    }
    return *transport_;
  }

  std::shared_ptr<FakeTransport> inner_;
  std::unique_ptr<HealthRecordingTransport> transport_;
};

TEST_F(RecordingTransportTest, AnyAnswerBelow500IsContact) {
  for (int status : {200, 201, 404, 403, 409, 429}) {
    inner_->AnswerAll(status, "");
    auto r = transport().Request("GET", "/api/v1/namespaces/x/secrets/y", "", "");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, status);
  }
  EXPECT_EQ(observer_.contacts.load(), 6);
  EXPECT_EQ(observer_.failures.load(), 0);
  EXPECT_TRUE(health().Check().ok());
}

TEST_F(RecordingTransportTest, ServerErrorsAndNoAnswerAreFailures) {
  inner_->AnswerAll(503, R"({"kind":"Status","message":"etcdserver: request timed out"})");
  EXPECT_EQ(transport().Request("GET", "/api/v1/x", "", "")->status, 503);
  EXPECT_THAT(health().Check().message(),
              HasSubstr("GET request answered 503: etcdserver: request timed out"));
  inner_->FailAll(
      Status::Unavailable("PATCH /apis/longhorn.io/v1beta2/namespaces/ns/backups/secret-name to "
                          "https://127.0.0.1:6443: Read error"));
  EXPECT_FALSE(transport()
                   .Request("PATCH",
                            "/apis/longhorn.io/v1beta2/namespaces/ns/backups/"
                            "secret-name",
                            "{}", "application/merge-patch+json")
                   .ok());
  EXPECT_EQ(observer_.failures.load(), 2);
  // The request path (it names objects) is left out of the reason.
  const std::string message = health().Check().message();
  EXPECT_THAT(message, HasSubstr("PATCH request to https://127.0.0.1:6443: Read error"));
  EXPECT_THAT(message, Not(HasSubstr("secret-name")));
}

TEST_F(RecordingTransportTest, ATooLargeAnswerIsNotAFailureOfTheApi) {
  inner_->FailAll(Status::TooLarge("body over 64 MiB"));
  EXPECT_FALSE(transport().Request("GET", "/api/v1/x", "", "").ok());
  EXPECT_EQ(observer_.failures.load(), 0);
}

TEST_F(RecordingTransportTest, WatchChunksAreContact) {
  inner_->ScriptAll({.chunks = {"{\"type\":\"ADDED\"}\n", "{\"type\":\"BOOKMARK\"}\n"}});
  std::atomic<bool> stop{false};
  int chunks = 0;
  Status s = transport().Stream(
      "GET", "/apis/x?watch=1", stop, [](int) { return true; },
      [&](std::string_view) {
        ++chunks;
        return true;
      });
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(chunks, 2);
  EXPECT_EQ(observer_.contacts.load(), 3);  // the status, then each chunk
  EXPECT_TRUE(health().Check().ok());
}

TEST_F(RecordingTransportTest, ABrokenWatchIsAFailureButAStoppedOneIsNot) {
  inner_->ScriptAll(
      {.error = Status::Unavailable("GET /apis/x?watch=1 to https://h:1: Read error")});
  std::atomic<bool> stop{false};
  auto yes_status = [](int) { return true; };
  auto yes_chunk = [](std::string_view) { return true; };
  EXPECT_FALSE(transport().Stream("GET", "/apis/x?watch=1", stop, yes_status, yes_chunk).ok());
  EXPECT_EQ(observer_.failures.load(), 1);
  stop = true;
  transport().Stream("GET", "/apis/x?watch=1", stop, yes_status, yes_chunk);
  EXPECT_EQ(observer_.failures.load(), 1);
  inner_->ScriptAll({.status = 500});
  stop = false;
  transport().Stream("GET", "/apis/x?watch=1", stop, yes_status, yes_chunk);
  EXPECT_EQ(observer_.failures.load(), 2);
}

double Value(prometheus::Registry& registry, const std::string& name) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name || family.metric.empty()) continue;
    const prometheus::ClientMetric& m = family.metric.front();
    return family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
  }
  ADD_FAILURE() << name << " not registered";
  return -1;
}

TEST(ApiHealthMetricsTest, GaugesFollowContactAndFailures) {
  prometheus::Registry registry;
  ApiHealthMetrics metrics(registry);
  EXPECT_EQ(Value(registry, "backup_guard_kube_api_reachable"), 0);
  EXPECT_EQ(Value(registry, "backup_guard_kube_api_last_contact_timestamp_seconds"), 0);
  ApiHealth health({}, &metrics);
  const double before = static_cast<double>(std::time(nullptr));
  health.RecordContact();
  EXPECT_EQ(Value(registry, "backup_guard_kube_api_reachable"), 1);
  EXPECT_GE(Value(registry, "backup_guard_kube_api_last_contact_timestamp_seconds"), before);
  health.RecordFailure("Read error");
  health.RecordFailure("Read error");
  EXPECT_EQ(Value(registry, "backup_guard_kube_api_reachable"), 0);
  EXPECT_EQ(Value(registry, "backup_guard_kube_api_failures_total"), 2);
  EXPECT_GE(Value(registry, "backup_guard_kube_api_last_contact_timestamp_seconds"), before);
}

}  // namespace
}  // namespace bg::kube
