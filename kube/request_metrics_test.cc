#include "kube/request_metrics.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <map>
#include <string>
#include <vector>

#include "tests/testing/fake_transport.h"

namespace bg::kube {
namespace {

using std::chrono::milliseconds;

using testing::FakeTransport;

struct Histogram {
  uint64_t count = 0;
  double sum = 0;
  std::map<double, uint64_t> buckets;  // upper bound -> cumulative count
};

class RequestMetricsTest : public ::testing::Test {
 protected:
  RequestMetricsTest()
      : metrics_(registry_),
        fake_(std::make_shared<FakeTransport>(&clock_)),
        transport_(fake_, &metrics_, "10.0.0.1:6443", &clock_) {
    // A stream answers 200 and then a body that lasts a minute (a watch): not the latency.
    fake_->ScriptAll({.chunks = {"{}\n"}});
    fake_->Takes(milliseconds(0), milliseconds(60000));
  }

  static bool Matches(const prometheus::ClientMetric& m,
                      const std::map<std::string, std::string>& labels) {
    std::map<std::string, std::string> got;
    for (const auto& l : m.label) got[l.name] = l.value;
    return got == labels;
  }

  // The counter's value for exactly these labels; -1 when the series does not exist.
  double Count(const std::map<std::string, std::string>& labels) {
    for (const auto& family : registry_.Collect()) {
      if (family.name != "rest_client_requests_total") continue;
      for (const auto& m : family.metric) {
        if (Matches(m, labels)) return m.counter.value;
      }
    }
    return -1;
  }

  size_t CounterSeries() {
    for (const auto& family : registry_.Collect()) {
      if (family.name == "rest_client_requests_total") return family.metric.size();
    }
    return 0;
  }

  Histogram Duration(const std::map<std::string, std::string>& labels) {
    Histogram h;
    for (const auto& family : registry_.Collect()) {
      if (family.name != "rest_client_request_duration_seconds") continue;
      EXPECT_EQ(family.type, prometheus::MetricType::Histogram);
      for (const auto& m : family.metric) {
        if (!Matches(m, labels)) continue;
        h.count = m.histogram.sample_count;
        h.sum = m.histogram.sample_sum;
        for (const auto& b : m.histogram.bucket) h.buckets[b.upper_bound] = b.cumulative_count;
      }
    }
    return h;
  }

  Status StreamOnce(const std::atomic<bool>& stop) {
    return transport_.Stream(
        "GET", "/apis/longhorn.io/v1beta2/namespaces/x/backups?watch=1", stop,
        [](int) { return true; }, [](std::string_view) { return true; });
  }

  prometheus::Registry registry_;
  RequestMetrics metrics_;
  ManualClock clock_;
  std::shared_ptr<FakeTransport> fake_;
  MetricsRecordingTransport transport_;
};

TEST_F(RequestMetricsTest, RequestsAreCountedByCodeMethodAndHost) {
  ASSERT_TRUE(transport_.Request("GET", "/api/v1/namespaces/a", "", "").ok());
  ASSERT_TRUE(transport_.Request("GET", "/api/v1/namespaces/b", "", "").ok());
  fake_->AnswerAll(404, "{}");
  ASSERT_TRUE(transport_.Request("GET", "/api/v1/namespaces/c", "", "").ok());
  fake_->AnswerAll(201, "{}");
  ASSERT_TRUE(transport_.Request("POST", "/api/v1/namespaces", "{}", "application/json").ok());

  EXPECT_EQ(Count({{"code", "200"}, {"method", "GET"}, {"host", "10.0.0.1:6443"}}), 2);
  EXPECT_EQ(Count({{"code", "404"}, {"method", "GET"}, {"host", "10.0.0.1:6443"}}), 1);
  EXPECT_EQ(Count({{"code", "201"}, {"method", "POST"}, {"host", "10.0.0.1:6443"}}), 1);
  // Paths (namespaces, names) never become labels.
  EXPECT_EQ(CounterSeries(), 3u);
}

TEST_F(RequestMetricsTest, AnAnswerIsPassedOnUnchanged) {
  fake_->AnswerAll({429, "slow down", "3"});
  Result<HttpResponse> r = transport_.Request("PATCH", "/x", "{}", "application/merge-patch+json");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->body, "slow down");
  EXPECT_EQ(r->retry_after, "3");
  EXPECT_EQ(Count({{"code", "429"}, {"method", "PATCH"}, {"host", "10.0.0.1:6443"}}), 1);
}

TEST_F(RequestMetricsTest, AnExchangeWithoutAnswerCountsAsErrorCode) {
  fake_->FailAll(Status::Unavailable("GET /x to https://10.0.0.1:6443: Connection refused"));
  Result<HttpResponse> r = transport_.Request("GET", "/x", "", "");
  EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
  fake_->FailAll(Status::TooLarge("response larger than 64 bytes"));
  EXPECT_FALSE(transport_.Request("GET", "/x", "", "").ok());
  EXPECT_EQ(Count({{"code", "<error>"}, {"method", "GET"}, {"host", "10.0.0.1:6443"}}), 2);
  EXPECT_EQ(Duration({{"verb", "GET"}, {"host", "10.0.0.1:6443"}}).count, 2u);
}

TEST_F(RequestMetricsTest, DurationIsObservedFromSendToAnswerInClientGoBuckets) {
  fake_->Takes(milliseconds(300), milliseconds(60000));
  ASSERT_TRUE(transport_.Request("DELETE", "/x", "", "").ok());
  fake_->Takes(milliseconds(3), milliseconds(60000));
  ASSERT_TRUE(transport_.Request("DELETE", "/y", "", "").ok());

  Histogram h = Duration({{"verb", "DELETE"}, {"host", "10.0.0.1:6443"}});
  EXPECT_EQ(h.count, 2u);
  EXPECT_NEAR(h.sum, 0.303, 1e-9);
  const std::vector<double> client_go = {0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60};
  for (double bound : client_go) EXPECT_EQ(h.buckets.count(bound), 1u) << bound;
  EXPECT_EQ(h.buckets[0.005], 1u);
  EXPECT_EQ(h.buckets[0.25], 1u);
  EXPECT_EQ(h.buckets[0.5], 2u);
}

TEST_F(RequestMetricsTest, AStreamIsCountedOnceAtItsStatusWithTheTimeToIt) {
  fake_->Takes(milliseconds(40), milliseconds(60000));
  std::atomic<bool> stop{false};
  ASSERT_TRUE(StreamOnce(stop).ok());
  fake_->ScriptAll({.error = Status::Unavailable("connection reset mid-body"), .chunks = {"{}\n"}});
  EXPECT_FALSE(StreamOnce(stop).ok());  // broke after its answer: still one 200

  EXPECT_EQ(Count({{"code", "200"}, {"method", "GET"}, {"host", "10.0.0.1:6443"}}), 2);
  EXPECT_EQ(Count({{"code", "<error>"}, {"method", "GET"}, {"host", "10.0.0.1:6443"}}), -1);
  Histogram h = Duration({{"verb", "GET"}, {"host", "10.0.0.1:6443"}});
  EXPECT_EQ(h.count, 2u);
  EXPECT_NEAR(h.sum, 0.080, 1e-9);  // the minute of body is not latency
}

TEST_F(RequestMetricsTest, AStreamThatGetsNoAnswerCountsAsErrorCode) {
  fake_->ScriptAll({.error = Status::Unavailable("connect timed out"), .status = 0});
  std::atomic<bool> stop{false};
  EXPECT_FALSE(StreamOnce(stop).ok());
  EXPECT_EQ(Count({{"code", "<error>"}, {"method", "GET"}, {"host", "10.0.0.1:6443"}}), 1);
}

TEST_F(RequestMetricsTest, AStreamStoppedBeforeAnyAnswerRecordsNothing) {
  std::atomic<bool> stop{true};
  EXPECT_TRUE(StreamOnce(stop).ok());
  EXPECT_EQ(CounterSeries(), 0u);
}

TEST(ApiHostLabelTest, SpellsHostAndPortAsGoUrlHostDoes) {
  EXPECT_EQ(ApiHostLabel("10.96.0.1", 443), "10.96.0.1:443");
  EXPECT_EQ(ApiHostLabel("kubernetes.default.svc", 443), "kubernetes.default.svc:443");
  EXPECT_EQ(ApiHostLabel("fd00::1", 6443), "[fd00::1]:6443");
}

}  // namespace
}  // namespace bg::kube
