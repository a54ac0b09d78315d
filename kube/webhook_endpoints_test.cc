#include "kube/webhook_endpoints.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "common/base64.h"
#include "kube/testutil.h"
#include "tests/testing/fake_kube_api.h"

namespace bg::kube {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using testutil::TestCa;

constexpr std::chrono::milliseconds kTimeout{2000};

// An HTTPS server on 127.0.0.1 and a free port serving `served`.
class TlsServer {
 public:
  explicit TlsServer(const testutil::CertAndKey& served) {
    testutil::X509Ptr cert = testutil::ParseCert(served.cert_pem);
    testutil::PkeyPtr key = testutil::ParseKey(served.key_pem);
    server_ = std::make_unique<httplib::SSLServer>(cert.get(), key.get());
    if (!server_->is_valid()) std::abort();
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) std::abort();
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~TlsServer() {
    server_->stop();
    thread_.join();
  }
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;
  int port() const { return port_; }

 private:
  std::unique_ptr<httplib::SSLServer> server_;
  int port_ = 0;
  std::thread thread_;
};

// A port on 127.0.0.1 that nothing listens on: bound, then closed.
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

json Configuration(const std::string& kind, const json& client_config,
                   const json& groups = json::array({"longhorn.io"})) {
  return {{"kind", kind},
          {"metadata", {{"name", "cfg"}}},
          {"webhooks", json::array({{{"name", "hook.example.com"},
                                     {"failurePolicy", "Fail"},
                                     {"clientConfig", client_config},
                                     {"rules", json::array({{{"apiGroups", groups},
                                                             {"apiVersions", {"v1beta2"}},
                                                             {"resources", {"backups"}},
                                                             {"operations", {"DELETE"}}}})}}})}};
}

TEST(WebhooksOf, ReadsUrlServiceAndCaBundle) {
  const std::string pem = TestCa("ca").cert_pem();
  auto url = WebhooksOf(
      Configuration("ValidatingWebhookConfiguration",
                    {{"url", "https://127.0.0.1:1/x"}, {"caBundle", Base64Encode(pem)}}));
  ASSERT_EQ(url.size(), 1u);
  EXPECT_EQ(url[0].configuration_kind, "ValidatingWebhookConfiguration");
  EXPECT_EQ(url[0].configuration, "cfg");
  EXPECT_EQ(url[0].name, "hook.example.com");
  EXPECT_EQ(url[0].url, "https://127.0.0.1:1/x");
  EXPECT_EQ(url[0].ca_bundle_pem, pem);

  auto svc = WebhooksOf(Configuration(
      "MutatingWebhookConfiguration",
      {{"service", {{"namespace", "longhorn-system"}, {"name", "hook"}, {"path", "/m"}}}}));
  ASSERT_EQ(svc.size(), 1u);
  EXPECT_EQ(svc[0].service_name, "hook");
  EXPECT_EQ(svc[0].service_port, 443);
  EXPECT_TRUE(svc[0].ca_bundle_pem.empty());

  auto bad = WebhooksOf(Configuration("ValidatingWebhookConfiguration",
                                      {{"url", "https://h/"}, {"caBundle", "!!not base64!!"}}));
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_THAT(bad[0].ca_bundle_error, HasSubstr("not base64"));
}

TEST(WebhooksOf, MalformedInputGivesNoWebhooksAndNoException) {
  EXPECT_TRUE(WebhooksOf(json::array()).empty());
  EXPECT_TRUE(WebhooksOf({{"webhooks", "x"}}).empty());
  auto odd = WebhooksOf({{"webhooks", json::array({1, {{"clientConfig", 5}}})}});
  ASSERT_EQ(odd.size(), 1u);
  EXPECT_TRUE(odd[0].url.empty());
}

TEST(ConcernsLonghorn, ByApiGroupOrServiceNamespace) {
  auto longhorn = WebhooksOf(Configuration("V", {{"url", "https://a/"}}))[0];
  auto wildcard = WebhooksOf(Configuration("V", {{"url", "https://a/"}}, {"*"}))[0];
  auto other = WebhooksOf(Configuration("V", {{"url", "https://a/"}}, {"apps"}))[0];
  auto in_ns = WebhooksOf(Configuration(
      "V", {{"service", {{"namespace", "longhorn-system"}, {"name", "s"}}}}, {"apps"}))[0];
  EXPECT_TRUE(ConcernsLonghorn(longhorn, "longhorn-system"));
  EXPECT_TRUE(ConcernsLonghorn(wildcard, "longhorn-system"));
  EXPECT_FALSE(ConcernsLonghorn(other, "longhorn-system"));
  EXPECT_TRUE(ConcernsLonghorn(in_ns, "longhorn-system"));
  EXPECT_FALSE(ConcernsLonghorn(in_ns, "elsewhere"));
}

TEST(ProbeTls, CaBundleThatIssuedTheCertificateVerifies) {
  TestCa ca("webhook ca");
  TlsServer server(ca.IssueServer("127.0.0.1"));
  TlsProbe p = ProbeTls("127.0.0.1", server.port(), "127.0.0.1", ca.cert_pem(), kTimeout);
  EXPECT_TRUE(p.connected);
  EXPECT_TRUE(p.handshake) << p.error;
  EXPECT_TRUE(p.ca_verifies) << p.ca_error;
}

TEST(ProbeTls, CaBundleOfAnotherCaDoesNotVerify) {
  TestCa ca("webhook ca");
  TlsServer server(ca.IssueServer("127.0.0.1"));
  TlsProbe p =
      ProbeTls("127.0.0.1", server.port(), "127.0.0.1", TestCa("other").cert_pem(), kTimeout);
  EXPECT_TRUE(p.handshake) << p.error;
  EXPECT_FALSE(p.ca_verifies);
  EXPECT_THAT(p.ca_error, HasSubstr("unable to get local issuer certificate"));
}

TEST(ProbeTls, CertificateForAnotherNameDoesNotVerify) {
  TestCa ca("webhook ca");
  TlsServer server(ca.IssueServer("127.0.0.1"));
  TlsProbe p =
      ProbeTls("127.0.0.1", server.port(), "hook.longhorn-system.svc", ca.cert_pem(), kTimeout);
  EXPECT_TRUE(p.handshake) << p.error;
  EXPECT_FALSE(p.ca_verifies);
  EXPECT_THAT(p.ca_error, HasSubstr("hook.longhorn-system.svc"));
}

TEST(ProbeTls, ClosedPortIsNotConnected) {
  TlsProbe p = ProbeTls("127.0.0.1", ClosedPort(), "127.0.0.1", "", kTimeout);
  EXPECT_FALSE(p.connected);
  EXPECT_FALSE(p.handshake);
  EXPECT_THAT(p.error, HasSubstr("Connection refused"));
}

TEST(ProbeTls, PlainTextServerFailsTheHandshake) {
  httplib::Server plain;
  const int port = plain.bind_to_any_port("127.0.0.1");
  std::thread t([&] { plain.listen_after_bind(); });
  while (!plain.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  TlsProbe p = ProbeTls("127.0.0.1", port, "127.0.0.1", "", kTimeout);
  plain.stop();
  t.join();
  EXPECT_TRUE(p.connected);
  EXPECT_FALSE(p.handshake);
  EXPECT_THAT(p.error, HasSubstr("TLS handshake"));
}

// A prober that records what it was asked and answers `answer`.
struct FakeProber {
  TlsProbe answer;
  std::string host, server_name;
  int port = 0;
  int calls = 0;
  TlsProber Fn() {
    return [this](const std::string& h, int p, const std::string& name, const std::string&) {
      ++calls;
      host = h;
      port = p;
      server_name = name;
      return answer;
    };
  }
};

TEST(CheckWebhookEndpoint, UrlThatRefusesIsStale) {
  testing::FakeKubeApi api;
  FakeProber prober;
  prober.answer.error = "connect to 127.0.0.1:9: Connection refused";
  auto w = WebhooksOf(Configuration("V", {{"url", "https://127.0.0.1:9/validate"}}))[0];
  EndpointReport r = CheckWebhookEndpoint(w, api, prober.Fn());
  EXPECT_EQ(prober.host, "127.0.0.1");
  EXPECT_EQ(prober.port, 9);
  EXPECT_EQ(prober.server_name, "127.0.0.1");
  EXPECT_TRUE(r.stale);
  EXPECT_THAT(r.problem, HasSubstr("does not answer"));
  EXPECT_EQ(ToJson(r)["tls"]["connected"], false);
}

TEST(CheckWebhookEndpoint, UrlWithoutPortUses443) {
  testing::FakeKubeApi api;
  FakeProber prober;
  prober.answer.connected = prober.answer.handshake = prober.answer.ca_verifies = true;
  auto w = WebhooksOf(Configuration("V", {{"url", "https://hook.example.com/x"}}))[0];
  EndpointReport r = CheckWebhookEndpoint(w, api, prober.Fn());
  EXPECT_EQ(prober.host, "hook.example.com");
  EXPECT_EQ(prober.port, 443);
  EXPECT_FALSE(r.stale);
  EXPECT_FALSE(r.ca_mismatch);
  EXPECT_TRUE(r.problem.empty());
}

TEST(CheckWebhookEndpoint, CaBundleThatDoesNotVerifyIsAMismatchNotStale) {
  testing::FakeKubeApi api;
  FakeProber prober;
  prober.answer.connected = prober.answer.handshake = true;
  prober.answer.ca_error = "certificate signature failure";
  auto w = WebhooksOf(Configuration("V", {{"url", "https://127.0.0.1:8443/"}}))[0];
  EndpointReport r = CheckWebhookEndpoint(w, api, prober.Fn());
  EXPECT_FALSE(r.stale);
  EXPECT_TRUE(r.ca_mismatch);
  EXPECT_THAT(r.problem, HasSubstr("caBundle does not verify"));
}

json ServiceRef() {
  return {{"service", {{"namespace", "longhorn-system"}, {"name", "hook"}, {"port", 443}}}};
}

void SeedService(testing::FakeKubeApi& api) {
  api.Seed(
      kServices,
      {{"metadata", {{"name", "hook"}, {"namespace", "longhorn-system"}}},
       {"spec",
        {{"ports", json::array({{{"name", "https"}, {"port", 443}, {"targetPort", 9443}}})}}}});
}

void SeedSlice(testing::FakeKubeApi& api, const std::string& name, const std::string& ip,
               bool ready) {
  api.Seed(
      kEndpointSlices,
      {{"metadata",
        {{"name", name},
         {"namespace", "longhorn-system"},
         {"labels", {{"kubernetes.io/service-name", "hook"}}}}},
       {"ports", json::array({{{"name", "https"}, {"port", 9443}}})},
       {"endpoints", json::array({{{"addresses", {ip}}, {"conditions", {{"ready", ready}}}}})}});
}

TEST(CheckWebhookEndpoint, MissingServiceIsStale) {
  testing::FakeKubeApi api;
  FakeProber prober;
  auto w = WebhooksOf(Configuration("V", ServiceRef()))[0];
  EndpointReport r = CheckWebhookEndpoint(w, api, prober.Fn());
  EXPECT_TRUE(r.stale);
  EXPECT_THAT(r.problem, HasSubstr("does not exist"));
  EXPECT_EQ(prober.calls, 0);
}

TEST(CheckWebhookEndpoint, ServiceWithNoReadyEndpointIsStale) {
  testing::FakeKubeApi api;
  SeedService(api);
  SeedSlice(api, "hook-1", "10.0.0.7", /*ready=*/false);
  FakeProber prober;
  auto w = WebhooksOf(Configuration("V", ServiceRef()))[0];
  EndpointReport r = CheckWebhookEndpoint(w, api, prober.Fn());
  EXPECT_TRUE(r.service_found);
  EXPECT_TRUE(r.stale);
  EXPECT_THAT(r.problem, HasSubstr("no ready endpoint"));
  EXPECT_THAT(r.not_ready_addresses, ::testing::ElementsAre("10.0.0.7:9443"));
  EXPECT_EQ(prober.calls, 0);
}

TEST(CheckWebhookEndpoint, ServiceWithReadyEndpointIsProbedAsTheApiServerWould) {
  testing::FakeKubeApi api;
  SeedService(api);
  SeedSlice(api, "hook-1", "10.0.0.8", /*ready=*/true);
  FakeProber prober;
  prober.answer.error = "connect to 10.0.0.8:9443: timed out";  // a pod address out of reach
  auto w = WebhooksOf(Configuration("V", ServiceRef()))[0];
  EndpointReport r = CheckWebhookEndpoint(w, api, prober.Fn());
  EXPECT_EQ(prober.host, "10.0.0.8");
  EXPECT_EQ(prober.port, 9443);
  EXPECT_EQ(prober.server_name, "hook.longhorn-system.svc");
  EXPECT_FALSE(r.stale);  // unreachable from here is no evidence that the webhook is dead
  EXPECT_TRUE(r.problem.empty());
  EXPECT_THAT(r.ready_addresses, ::testing::ElementsAre("10.0.0.8:9443"));
}

TEST(CheckWebhookEndpoint, ApiFailureIsReportedNotStale) {
  testing::FakeKubeApi api;
  api.FailNext("get", 1, Status::Unavailable("connection reset"));
  FakeProber prober;
  auto w = WebhooksOf(Configuration("V", ServiceRef()))[0];
  EndpointReport r = CheckWebhookEndpoint(w, api, prober.Fn());
  EXPECT_FALSE(r.stale);
  EXPECT_THAT(r.problem, HasSubstr("cannot read its Service"));
}

}  // namespace
}  // namespace bg::kube
