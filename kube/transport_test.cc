#include "kube/transport.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kube/file_util.h"
#include "kube/testutil.h"

namespace bg::kube {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using testutil::CertAndKey;
using testutil::TestCa;

std::string PeerCommonName(const httplib::Request& req) {
  if (req.ssl == nullptr) return "";
  X509* peer = SSL_get1_peer_certificate(req.ssl);
  if (peer == nullptr) return "";
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
  X509_free(peer);
  return cn;
}

// An HTTPS server on 127.0.0.1 and a free port that echoes what it received as JSON.
// With a client CA it requires client certificates signed by that CA.
class EchoServer {
 public:
  EchoServer(const CertAndKey& server, const std::string& client_ca_pem = "") {
    testutil::X509Ptr cert = testutil::ParseCert(server.cert_pem);
    testutil::PkeyPtr key = testutil::ParseKey(server.key_pem);
    X509_STORE* client_cas = nullptr;
    if (!client_ca_pem.empty()) {
      client_cas = X509_STORE_new();
      X509_STORE_add_cert(client_cas, testutil::ParseCert(client_ca_pem).get());
    }
    // The server takes its own references to cert and key, and owns client_cas.
    server_ = std::make_unique<httplib::SSLServer>(cert.get(), key.get(), client_cas);
    if (!server_->is_valid()) std::abort();
    server_->set_tcp_nodelay(true);  // as kube-apiserver (Go's default)
    auto echo = [](const httplib::Request& req, httplib::Response& res) {
      json j = {{"method", req.method},
                {"target", req.target},
                {"authorization", req.get_header_value("Authorization")},
                {"accept", req.get_header_value("Accept")},
                {"content_type", req.get_header_value("Content-Type")},
                {"user_agent", req.get_header_value("User-Agent")},
                {"body", req.body},
                {"client_cn", PeerCommonName(req)}};
      res.set_content(j.dump(), "application/json");
    };
    server_->Get("/echo.*", echo);
    server_->Post("/echo.*", echo);
    server_->Get("/prefix/echo.*", echo);
    // 401 for a token with "stale" in it, like an API server for an expired token.
    server_->Get("/fresh-only", [echo](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("Authorization").find("stale") != std::string::npos) {
        res.status = 401;
        res.set_content(R"({"kind":"Status","code":401})", "application/json");
        return;
      }
      echo(req, res);
    });
    server_->Get("/status/503", [](const httplib::Request&, httplib::Response& res) {
      res.status = 503;
      res.set_content(R"({"kind":"Status","message":"overloaded"})", "application/json");
    });
    server_->Get("/dated", [](const httplib::Request&, httplib::Response& res) {
      res.set_header("Date", "Thu, 01 Jan 2026 00:00:10 GMT");
      res.set_content("{}", "application/json");
    });
    server_->Get("/big", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(100000, 'x'), "text/plain");
    });
    server_->Get("/slow", [](const httplib::Request&, httplib::Response& res) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      res.set_content("late", "text/plain");
    });
    // Streams: "one\n", then "two\n" once the client has acknowledged the first piece (or after
    // ten seconds), then the end.
    server_->Get("/stream/steps", [this](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("application/json", [this](size_t, httplib::DataSink& sink) {
        sink.write("one\n", 4);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!acknowledged_.load() && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        second_sent_after_ack_ = acknowledged_.load();
        sink.write("two\n", 4);
        sink.done();
        return true;
      });
    });
    // "first\n", then nothing until the server shuts down, like an idle watch.
    server_->Get("/stream/hold", [this](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("application/json", [this](size_t, httplib::DataSink& sink) {
        sink.write("first\n", 6);
        holding_ = true;
        while (!released_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        holding_ = false;
        return false;
      });
    });
    // Part of a body, then the connection closes without the chunked encoding's end.
    server_->Get("/stream/cut", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("application/json", [](size_t, httplib::DataSink& sink) {
        sink.write("partial", 7);
        return false;
      });
    });
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) std::abort();
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    // stop() is a no-op until the accept loop runs, so a test that ends quickly would hang in
    // the destructor without this wait.
    while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  ~EchoServer() {
    released_ = true;
    server_->stop();
    thread_.join();
  }

  int port() const { return port_; }
  void Acknowledge() { acknowledged_ = true; }
  bool second_sent_after_ack() const { return second_sent_after_ack_.load(); }
  bool holding() const { return holding_.load(); }

 private:
  std::atomic<bool> acknowledged_{false};
  std::atomic<bool> second_sent_after_ack_{false};
  std::atomic<bool> holding_{false};
  std::atomic<bool> released_{false};
  std::unique_ptr<httplib::SSLServer> server_;
  int port_ = 0;
  std::thread thread_;
};

class HttpsTransportTest : public ::testing::Test {
 protected:
  HttpsTransportTest()
      : server_ca_("test server CA"),
        client_ca_("test client CA"),
        server_cert_(server_ca_.IssueServer()),
        client_cert_(client_ca_.IssueClient("backup-guard-test")) {}

  ClusterConfig ConfigFor(const EchoServer& server) const {
    ClusterConfig config;
    config.host = "127.0.0.1";
    config.port = server.port();
    config.ca_pem = server_ca_.cert_pem();
    return config;
  }

  static std::unique_ptr<HttpsTransport> MustCreate(const ClusterConfig& config,
                                                    const TransportOptions& options = {}) {
    Result<std::unique_ptr<HttpsTransport>> t = HttpsTransport::Create(config, options);
    EXPECT_TRUE(t.ok()) << t.status().message();
    return t.ok() ? std::move(t).value() : nullptr;
  }

  static json Echo(ApiTransport& transport, const std::string& path = "/echo") {
    Result<HttpResponse> r = transport.Request("GET", path, "", "");
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (!r.ok()) return json();
    EXPECT_EQ(r->status, 200);
    return json::parse(r->body);
  }

  TestCa server_ca_;
  TestCa client_ca_;
  CertAndKey server_cert_;
  CertAndKey client_cert_;
};

TEST_F(HttpsTransportTest, ConnectsWithClientCertificateAndVerifiedServer) {
  EchoServer server(server_cert_, client_ca_.cert_pem());
  ClusterConfig config = ConfigFor(server);
  config.client_cert_pem = client_cert_.cert_pem;
  config.client_key_pem = client_cert_.key_pem;
  auto transport = MustCreate(config);
  ASSERT_NE(transport, nullptr);

  json echo = Echo(*transport, "/echo?labelSelector=a%3Db");
  EXPECT_EQ(echo["client_cn"], "backup-guard-test");
  EXPECT_EQ(echo["target"], "/echo?labelSelector=a%3Db");
  EXPECT_EQ(echo["accept"], "application/json");
  EXPECT_EQ(echo["user_agent"], "backup-guard");
  EXPECT_EQ(echo["authorization"], "");
  // A second request reuses the pooled client.
  EXPECT_EQ(Echo(*transport)["client_cn"], "backup-guard-test");
}

// The Date header reaches the caller (kube/server_clock.h reads the API server's clock from it).
TEST_F(HttpsTransportTest, TheAnswersDateHeaderIsPassedOn) {
  EchoServer server(server_cert_, "");
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  Result<HttpResponse> r = transport->Request("GET", "/dated", "", "");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->date, "Thu, 01 Jan 2026 00:00:10 GMT");
}

TEST_F(HttpsTransportTest, ServerRefusesAClientWithoutCertificate) {
  EchoServer server(server_cert_, client_ca_.cert_pem());
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  Result<HttpResponse> r = transport->Request("GET", "/echo", "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
}

TEST_F(HttpsTransportTest, WrongCaFailsCleanly) {
  EchoServer server(server_cert_);
  ClusterConfig config = ConfigFor(server);
  config.ca_pem = TestCa("some other CA").cert_pem();
  auto transport = MustCreate(config);
  ASSERT_NE(transport, nullptr);
  Result<HttpResponse> r = transport->Request("GET", "/echo", "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("SSLServerVerification"));
  EXPECT_THAT(r.status().message(), HasSubstr("GET /echo"));
}

TEST_F(HttpsTransportTest, ServerCertificateMustMatchTheHost) {
  EchoServer server(server_ca_.IssueServer("127.0.0.2"));
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  Result<HttpResponse> r = transport->Request("GET", "/echo", "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("not valid for 127.0.0.1"));
}

// With a configured CA, a server that only the system trust store vouches for is refused.
// SSL_CERT_FILE stands in for the system store: OpenSSL reads it as its default CA file.
TEST_F(HttpsTransportTest, ConfiguredCaIsTheOnlyTrustAnchor) {
  EchoServer server(server_cert_);
  testutil::TempDir dir;
  const std::string system_store = dir.WriteFile("system-ca.pem", server_ca_.cert_pem());
  const char* previous = std::getenv("SSL_CERT_FILE");
  const std::optional<std::string> saved =
      previous != nullptr ? std::optional<std::string>(previous) : std::nullopt;
  setenv("SSL_CERT_FILE", system_store.c_str(), 1);

  ClusterConfig system_trust = ConfigFor(server);
  system_trust.ca_pem.clear();
  auto control = MustCreate(system_trust);
  ASSERT_NE(control, nullptr);
  Result<HttpResponse> trusted = control->Request("GET", "/echo", "", "");
  EXPECT_TRUE(trusted.ok()) << trusted.status().message();

  ClusterConfig pinned = ConfigFor(server);
  pinned.ca_pem = TestCa("cluster CA").cert_pem();
  auto transport = MustCreate(pinned);
  ASSERT_NE(transport, nullptr);
  Result<HttpResponse> refused = transport->Request("GET", "/echo", "", "");

  if (saved) {
    setenv("SSL_CERT_FILE", saved->c_str(), 1);
  } else {
    unsetenv("SSL_CERT_FILE");
  }
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("SSLServerVerification"));
}

// httplib would add the system trust store (~140 certificates, about 0.9 MB per connection) to a
// connection's store on its first handshake; with a configured CA only that CA is loaded.
TEST_F(HttpsTransportTest, AConfiguredCaKeepsTheSystemTrustStoreOutOfEveryConnection) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  Echo(*transport);
  const std::vector<size_t> sizes = transport->IdleTrustStoreSizesForTesting();
  ASSERT_EQ(sizes.size(), 1u);
  EXPECT_EQ(sizes[0], 1u) << "the configured CA only";
}

TEST_F(HttpsTransportTest, CaBundleWithSeveralCertificates) {
  EchoServer server(server_cert_);
  ClusterConfig config = ConfigFor(server);
  config.ca_pem = TestCa("unrelated").cert_pem() + server_ca_.cert_pem();
  auto transport = MustCreate(config);
  ASSERT_NE(transport, nullptr);
  EXPECT_EQ(Echo(*transport)["method"], "GET");
}

TEST_F(HttpsTransportTest, InsecureSkipTlsVerifyConnectsWithoutCa) {
  EchoServer server(server_cert_);
  ClusterConfig config = ConfigFor(server);
  config.ca_pem.clear();
  config.insecure_skip_tls_verify = true;
  auto transport = MustCreate(config);
  ASSERT_NE(transport, nullptr);
  EXPECT_EQ(Echo(*transport)["method"], "GET");
}

TEST_F(HttpsTransportTest, SendsBearerToken) {
  EchoServer server(server_cert_);
  ClusterConfig config = ConfigFor(server);
  config.bearer_token = "s3cret";
  auto transport = MustCreate(config);
  ASSERT_NE(transport, nullptr);
  EXPECT_EQ(Echo(*transport)["authorization"], "Bearer s3cret");
}

TEST_F(HttpsTransportTest, BearerTokenFileIsReReadAfterTheRefreshPeriod) {
  EchoServer server(server_cert_);
  testutil::TempDir dir;
  const std::string token_path = dir.WriteFile("token", "first\n");
  ClusterConfig config = ConfigFor(server);
  config.bearer_token_file = token_path;
  ManualClock clock;
  TransportOptions options;
  options.clock = &clock;
  auto transport = MustCreate(config, options);
  ASSERT_NE(transport, nullptr);
  EXPECT_EQ(Echo(*transport)["authorization"], "Bearer first");

  dir.WriteFile("token", "second\n");
  EXPECT_EQ(Echo(*transport)["authorization"], "Bearer first");
  clock.Advance(kTokenFileRefresh);
  EXPECT_EQ(Echo(*transport)["authorization"], "Bearer second");
}

// An exec plugin (v1) that prints "stale-1" on its first run and "fresh-N" after; it counts its
// runs in `dir`/runs.
ClusterConfig WithCountingPlugin(ClusterConfig config, const testutil::TempDir& dir) {
  const std::string script = dir.WriteFile("plugin", R"(#!/bin/sh
n=$(( $(cat "$RUNS" 2>/dev/null || echo 0) + 1 ))
echo $n > "$RUNS"
prefix=fresh
[ $n = 1 ] && prefix=stale
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"'$prefix-$n'"}}'
)");
  ::chmod(script.c_str(), 0755);
  ExecConfig exec;
  exec.api_version = "client.authentication.k8s.io/v1";
  exec.command = script;
  exec.env = {{"RUNS", dir.path() + "/runs"}};
  exec.interactive_mode = ExecInteractiveMode::kNever;
  config.exec = exec;
  return config;
}

TEST_F(HttpsTransportTest, ExecPluginTokenIsSentAndReRunOnceOnA401) {
  EchoServer server(server_cert_);
  testutil::TempDir dir;
  auto transport = MustCreate(WithCountingPlugin(ConfigFor(server), dir));
  ASSERT_NE(transport, nullptr);
  // The first token is refused; the request goes again, once, with the plugin's next token.
  EXPECT_EQ(Echo(*transport, "/fresh-only")["authorization"], "Bearer fresh-2");
  EXPECT_EQ(Echo(*transport, "/fresh-only")["authorization"], "Bearer fresh-2");  // cached
  EXPECT_EQ(ReadFileToString(dir.path() + "/runs", 64).value(), "2\n");
}

TEST_F(HttpsTransportTest, StreamRefusedWith401DropsTheExecToken) {
  EchoServer server(server_cert_);
  testutil::TempDir dir;
  auto transport = MustCreate(WithCountingPlugin(ConfigFor(server), dir));
  ASSERT_NE(transport, nullptr);
  std::atomic<bool> stop{false};
  int status = 0;
  ASSERT_TRUE(transport
                  ->Stream(
                      "GET", "/fresh-only", stop,
                      [&](int s) {
                        status = s;
                        return true;
                      },
                      [](std::string_view) { return true; })
                  .ok());
  EXPECT_EQ(status, 401);
  EXPECT_EQ(Echo(*transport, "/fresh-only")["authorization"], "Bearer fresh-2");
}

TEST_F(HttpsTransportTest, FailingExecPluginFailsTheRequest) {
  EchoServer server(server_cert_);
  ClusterConfig config = ConfigFor(server);
  ExecConfig exec;
  exec.api_version = "client.authentication.k8s.io/v1";
  exec.command = "/bin/false";
  exec.interactive_mode = ExecInteractiveMode::kNever;
  exec.where = "kubeconfig k: users[0].user.exec";
  config.exec = exec;
  auto transport = MustCreate(config);
  ASSERT_NE(transport, nullptr);
  Result<HttpResponse> r = transport->Request("GET", "/echo", "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("users[0].user.exec: exec plugin /bin/false"));
}

TEST_F(HttpsTransportTest, PostSendsBodyAndContentType) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  Result<HttpResponse> r =
      transport->Request("POST", "/echo", R"({"a":1})", "application/merge-patch+json");
  ASSERT_TRUE(r.ok()) << r.status().message();
  json echo = json::parse(r->body);
  EXPECT_EQ(echo["method"], "POST");
  EXPECT_EQ(echo["body"], R"({"a":1})");
  EXPECT_EQ(echo["content_type"], "application/merge-patch+json");
}

// Nagle's algorithm would hold a body's TLS record back until the server's delayed ACK of the
// headers' record (about 40 ms on Linux, once the connection has left quick-ACK mode): every
// request with a body would take 40 ms or more on a keep-alive connection. TCP_NODELAY is on.
TEST_F(HttpsTransportTest, RequestsWithABodyDoNotWaitForDelayedAcks) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  const std::string body(2000, 'x');
  for (int i = 0; i < 10; ++i) {  // warm up: the connection is set up and leaves quick-ACK mode
    ASSERT_TRUE(transport->Request("POST", "/echo", body, "application/json").ok());
  }
  std::vector<double> ms;
  for (int i = 0; i < 21; ++i) {
    const auto start = std::chrono::steady_clock::now();
    Result<HttpResponse> r = transport->Request("POST", "/echo", body, "application/json");
    ASSERT_TRUE(r.ok()) << r.status().message();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
  EXPECT_LT(ms[ms.size() / 2], 20.0) << "median request time in ms; delayed ACKs take ~40";
}

TEST_F(HttpsTransportTest, BasePathPrefixesEveryRequest) {
  EchoServer server(server_cert_);
  ClusterConfig config = ConfigFor(server);
  config.base_path = "/prefix";
  auto transport = MustCreate(config);
  ASSERT_NE(transport, nullptr);
  EXPECT_EQ(Echo(*transport, "/echo")["target"], "/prefix/echo");
}

TEST_F(HttpsTransportTest, HttpErrorStatusIsAValue) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  Result<HttpResponse> r = transport->Request("GET", "/status/503", "", "");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->status, 503);
  EXPECT_THAT(r->body, HasSubstr("overloaded"));
}

TEST_F(HttpsTransportTest, ResponseOverTheLimitIsTooLarge) {
  EchoServer server(server_cert_);
  TransportOptions options;
  options.max_response_bytes = 1000;
  auto transport = MustCreate(ConfigFor(server), options);
  ASSERT_NE(transport, nullptr);
  Result<HttpResponse> r = transport->Request("GET", "/big", "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kTooLarge);
  // The transport still works afterwards.
  EXPECT_EQ(Echo(*transport)["method"], "GET");
}

TEST_F(HttpsTransportTest, ReadTimeoutIsUnavailable) {
  EchoServer server(server_cert_);
  TransportOptions options;
  options.read_timeout = std::chrono::milliseconds(100);
  auto transport = MustCreate(ConfigFor(server), options);
  ASSERT_NE(transport, nullptr);
  Result<HttpResponse> r = transport->Request("GET", "/slow", "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("Read"));
}

TEST_F(HttpsTransportTest, UnreachableServerIsUnavailable) {
  int port = 0;
  {
    EchoServer server(server_cert_);  // find a port that was free, then free it again
    port = server.port();
  }
  ClusterConfig config;
  config.host = "127.0.0.1";
  config.port = port;
  config.ca_pem = server_ca_.cert_pem();
  auto transport = MustCreate(config);
  ASSERT_NE(transport, nullptr);
  Result<HttpResponse> r = transport->Request("GET", "/echo", "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("Connection"));
}

TEST_F(HttpsTransportTest, ConcurrentRequestsFromManyThreads) {
  EchoServer server(server_cert_, client_ca_.cert_pem());
  ClusterConfig config = ConfigFor(server);
  config.client_cert_pem = client_cert_.cert_pem;
  config.client_key_pem = client_cert_.key_pem;
  TransportOptions options;
  options.max_idle_connections = 2;
  auto transport = MustCreate(config, options);
  ASSERT_NE(transport, nullptr);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        Result<HttpResponse> r = transport->Request("GET", "/echo", "", "");
        if (r.ok() && r->status == 200) ++ok;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 60);
}

TEST_F(HttpsTransportTest, RequestTargetMustBeEncoded) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  for (const char* bad : {"", "echo", "/a b", "/a\r\nX-Injected: 1", "/\x80"}) {
    Result<HttpResponse> r = transport->Request("GET", bad, "", "");
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  }
  EXPECT_FALSE(transport->Request("get", "/echo", "", "").ok());
}

// ---- streams ----

struct StreamCapture {
  int status = 0;
  std::vector<std::string> chunks;
  std::string body() const {
    std::string out;
    for (const std::string& c : chunks) out += c;
    return out;
  }
};

TEST_F(HttpsTransportTest, StreamHandsOverChunksWhileTheBodyIsStillComing) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  StreamCapture got;
  std::atomic<bool> stop{false};
  Status s = transport->Stream(
      "GET", "/stream/steps", stop,
      [&](int status) {
        got.status = status;
        return true;
      },
      [&](std::string_view chunk) {
        got.chunks.emplace_back(chunk);
        if (got.body() == "one\n") server.Acknowledge();
        return true;
      });
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body(), "one\ntwo\n");
  EXPECT_TRUE(server.second_sent_after_ack()) << "the first piece arrived only after the end";
}

TEST_F(HttpsTransportTest, StreamSendsTheStandardHeaders) {
  EchoServer server(server_cert_);
  ClusterConfig config = ConfigFor(server);
  config.bearer_token = "s3cret";
  config.base_path = "/prefix";
  auto transport = MustCreate(config);
  ASSERT_NE(transport, nullptr);
  StreamCapture got;
  std::atomic<bool> stop{false};
  ASSERT_TRUE(transport
                  ->Stream(
                      "GET", "/echo?watch=true", stop,
                      [&](int status) {
                        got.status = status;
                        return true;
                      },
                      [&](std::string_view chunk) {
                        got.chunks.emplace_back(chunk);
                        return true;
                      })
                  .ok());
  json echo = json::parse(got.body());
  EXPECT_EQ(echo["target"], "/prefix/echo?watch=true");
  EXPECT_EQ(echo["authorization"], "Bearer s3cret");
  EXPECT_EQ(echo["accept"], "application/json");
}

TEST_F(HttpsTransportTest, StreamOfAnErrorStatusStillDeliversTheBody) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  StreamCapture got;
  std::atomic<bool> stop{false};
  Status s = transport->Stream(
      "GET", "/status/503", stop,
      [&](int status) {
        got.status = status;
        return true;
      },
      [&](std::string_view chunk) {
        got.chunks.emplace_back(chunk);
        return true;
      });
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(got.status, 503);
  EXPECT_THAT(got.body(), HasSubstr("overloaded"));
}

TEST_F(HttpsTransportTest, StreamEndsWhenACallbackReturnsFalse) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  std::atomic<bool> stop{false};
  int chunks = 0;
  Status s = transport->Stream(
      "GET", "/stream/hold", stop, [](int) { return true; },
      [&](std::string_view) {
        ++chunks;
        return false;
      });
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(chunks, 1);
  // The status callback can refuse the body too.
  s = transport->Stream(
      "GET", "/stream/hold", stop, [](int) { return false; },
      [&](std::string_view) {
        ++chunks;
        return true;
      });
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(chunks, 1);
}

// The stream is idle (the server holds it open and sends nothing) when stop is set; only the
// watchdog can end it. The server keeps holding until it shuts down, so the stream cannot have
// ended on the server's side.
TEST_F(HttpsTransportTest, StopEndsAnIdleStream) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<bool> got_first{false};
  std::thread stopper([&] {
    while (!got_first.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the read block
    stop = true;
  });
  const auto start = std::chrono::steady_clock::now();
  Status s = transport->Stream(
      "GET", "/stream/hold", stop, [](int) { return true; },
      [&](std::string_view) {
        got_first = true;
        return true;
      });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  stopper.join();
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(server.holding());
  // Generous: the watchdog polls every few tens of milliseconds; the read timeout is minutes.
  EXPECT_LT(elapsed, std::chrono::seconds(10));
}

TEST_F(HttpsTransportTest, StreamWithStopAlreadySetSendsNothing) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  std::atomic<bool> stop{true};
  bool called = false;
  Status s = transport->Stream(
      "GET", "/echo", stop,
      [&](int) {
        called = true;
        return true;
      },
      [](std::string_view) { return true; });
  EXPECT_TRUE(s.ok());
  EXPECT_FALSE(called);
}

TEST_F(HttpsTransportTest, StreamBrokenMidBodyIsUnavailable) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  std::atomic<bool> stop{false};
  std::string body;
  Status s = transport->Stream(
      "GET", "/stream/cut", stop, [](int) { return true; },
      [&](std::string_view chunk) {
        body += chunk;
        return true;
      });
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.message();
  EXPECT_THAT(s.message(), HasSubstr("GET /stream/cut"));
}

TEST_F(HttpsTransportTest, QuietStreamTimesOutAfterTheStreamReadTimeout) {
  EchoServer server(server_cert_);
  TransportOptions options;
  options.stream_read_timeout = std::chrono::milliseconds(200);
  auto transport = MustCreate(ConfigFor(server), options);
  ASSERT_NE(transport, nullptr);
  std::atomic<bool> stop{false};
  Status s = transport->Stream(
      "GET", "/stream/hold", stop, [](int) { return true; }, [](std::string_view) { return true; });
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("Read"));
}

TEST_F(HttpsTransportTest, StreamToAnUnreachableServerIsUnavailable) {
  int port = 0;
  {
    EchoServer server(server_cert_);
    port = server.port();
  }
  ClusterConfig config;
  config.host = "127.0.0.1";
  config.port = port;
  config.ca_pem = server_ca_.cert_pem();
  auto transport = MustCreate(config);
  ASSERT_NE(transport, nullptr);
  std::atomic<bool> stop{false};
  Status s = transport->Stream(
      "GET", "/echo", stop, [](int) { return true; }, [](std::string_view) { return true; });
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
}

TEST_F(HttpsTransportTest, StreamTargetMustBeEncoded) {
  EchoServer server(server_cert_);
  auto transport = MustCreate(ConfigFor(server));
  ASSERT_NE(transport, nullptr);
  std::atomic<bool> stop{false};
  auto yes = [](int) { return true; };
  auto chunk = [](std::string_view) { return true; };
  EXPECT_EQ(transport->Stream("GET", "/a b", stop, yes, chunk).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(transport->Stream("get", "/echo", stop, yes, chunk).code(),
            Status::Code::kInvalidArgument);
}

TEST(ApiTransportTest, DefaultStreamIsUnsupported) {
  class PlainTransport final : public ApiTransport {
   public:
    Result<HttpResponse> Request(std::string_view, const std::string&, const std::string&,
                                 std::string_view) override {
      return HttpResponse{200, ""};
    }
  } transport;
  std::atomic<bool> stop{false};
  Status s = transport.Stream(
      "GET", "/x", stop, [](int) { return true; }, [](std::string_view) { return true; });
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("streaming not supported"));
}

TEST(HttpsTransportCreateTest, RefusesBadMaterial) {
  TestCa ca("ca");
  CertAndKey client = ca.IssueClient("c");
  CertAndKey other = ca.IssueClient("other");
  ClusterConfig config;
  config.host = "127.0.0.1";
  config.port = 6443;

  ClusterConfig garbage_ca = config;
  garbage_ca.ca_pem = "not a certificate";
  Result<std::unique_ptr<HttpsTransport>> r = HttpsTransport::Create(garbage_ca);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("certificate authority"));

  ClusterConfig truncated_ca = config;
  truncated_ca.ca_pem = ca.cert_pem().substr(0, ca.cert_pem().size() / 2);
  EXPECT_FALSE(HttpsTransport::Create(truncated_ca).ok());

  ClusterConfig mismatched = config;
  mismatched.client_cert_pem = client.cert_pem;
  mismatched.client_key_pem = other.key_pem;
  r = HttpsTransport::Create(mismatched);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("does not match"));

  ClusterConfig cert_only = config;
  cert_only.client_cert_pem = client.cert_pem;
  EXPECT_FALSE(HttpsTransport::Create(cert_only).ok());

  ClusterConfig encrypted = config;
  encrypted.client_cert_pem = client.cert_pem;
  encrypted.client_key_pem = testutil::EncryptKey(client.key_pem, "passphrase");
  r = HttpsTransport::Create(encrypted);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("encrypted keys are not supported"));

  ClusterConfig no_host;
  EXPECT_FALSE(HttpsTransport::Create(no_host).ok());

  ClusterConfig insecure_with_ca = config;
  insecure_with_ca.ca_pem = ca.cert_pem();
  insecure_with_ca.insecure_skip_tls_verify = true;
  EXPECT_FALSE(HttpsTransport::Create(insecure_with_ca).ok());
}

}  // namespace
}  // namespace bg::kube
