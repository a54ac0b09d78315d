// Integration tests: the real server on port 0, called over real TLS by verifying clients.
#include "webhook/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "certs/generate.h"
#include "common/nonblocking.h"
#include "tests/testing/tls_identity.h"

namespace bg::webhook {
namespace {

using nlohmann::json;

json Review(const std::string& uid, const std::string& version = "admission.k8s.io/v1") {
  return {{"apiVersion", version},
          {"kind", "AdmissionReview"},
          {"request",
           {{"uid", uid},
            {"kind", {{"group", "longhorn.io"}, {"version", "v1beta2"}, {"kind", "SystemBackup"}}},
            {"resource",
             {{"group", "longhorn.io"}, {"version", "v1beta2"}, {"resource", "systembackups"}}},
            {"name", "secret-object-name"},
            {"namespace", "secret-namespace"},
            {"operation", "CREATE"},
            {"object", {{"metadata", {{"name", "secret-object-name"}}}}}}}};
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto serving = testing::MakeLocalhostServing();
    ASSERT_TRUE(serving.ok()) << serving.status().message();
    ca_pem_ = serving->ca_pem;
    store_.Set(serving->identity);

    mutation_.Register("longhorn.io", "systembackups", Operation::kCreate,
                       [](const AdmissionRequest& r) {
                         json modified = r.object;
                         modified["metadata"]["finalizers"] = json::array({"longhorn.io"});
                         return Patched(r.object, modified);
                       });
    validation_.Register(
        "longhorn.io", "systembackups", Operation::kCreate,
        [](const AdmissionRequest&) -> AdmissionResponse { throw std::runtime_error("boom"); });
    // A handler that reads the cluster: on a thread that must not wait it throws before reading.
    validation_.Register("longhorn.io", "backups", Operation::kDelete,
                         [this](const AdmissionRequest&) -> AdmissionResponse {
                           if (MustNotBlock()) tried_on_event_thread_.fetch_add(1);
                           ThrowIfMustNotBlock();
                           answered_by_worker_.fetch_add(1);
                           return Allowed();
                         });
    ServerOptions options;
    options.listen_host = "127.0.0.1";
    options.listen_port = 0;
    options.metrics_host = "127.0.0.1";
    options.metrics_port = 0;
    options.health_probe_host = "127.0.0.1";
    options.health_probe_port = 0;
    options.handshake_timeout = std::chrono::seconds(1);
    options.request_timeout = std::chrono::seconds(1);
    options.keep_alive_timeout = std::chrono::seconds(1);
    options.shutdown_grace = std::chrono::seconds(5);
    server_ = std::make_unique<Server>(options, mutation_, validation_, metrics_, store_, [this] {
      return lookups_ready_.load() ? Status::Ok()
                                   : Status::Unavailable("cluster lookups not ready");
    });
    ASSERT_TRUE(server_->Start().ok());
    for (int i = 0; i < 200 && !server_->Ready(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ASSERT_TRUE(server_->Ready());
  }

  void TearDown() override { server_.reset(); }

  // A client that verifies the chain and the SAN against the host it dials.
  std::unique_ptr<httplib::SSLClient> Client(const std::string& host = "127.0.0.1") {
    auto client = std::make_unique<httplib::SSLClient>(host, server_->port());
    BIO* bio = BIO_new_mem_buf(ca_pem_.data(), static_cast<int>(ca_pem_.size()));
    X509* ca = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    X509_STORE* store = X509_STORE_new();
    X509_STORE_add_cert(store, ca);
    X509_free(ca);
    client->set_ca_cert_store(store);
    client->enable_server_certificate_verification(true);
    client->set_read_timeout(std::chrono::seconds(10));
    return client;
  }

  httplib::Result Post(const std::string& path, const std::string& body,
                       const std::string& content_type = "application/json") {
    return Client()->Post(path.c_str(), body, content_type.c_str());
  }

  void ExpectStillAnswers() {
    auto res = Post(kMutationPath, Review("still-alive").dump());
    ASSERT_TRUE(res) << "server stopped answering";
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(json::parse(res->body)["response"]["uid"], "still-alive");
  }

  std::string ca_pem_;
  certs::CertificateStore store_;
  Registry mutation_;
  Registry validation_;
  std::atomic<int> tried_on_event_thread_{0};
  std::atomic<int> answered_by_worker_{0};
  Metrics metrics_{"test"};
  std::atomic<bool> lookups_ready_{true};
  std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, MutationAnswerEchoesUidAndCarriesBase64JsonPatch) {
  auto res = Post(kMutationPath, Review("uid-1").dump());
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json out = json::parse(res->body);
  EXPECT_EQ(out["apiVersion"], "admission.k8s.io/v1");
  EXPECT_EQ(out["kind"], "AdmissionReview");
  EXPECT_EQ(out["response"]["uid"], "uid-1");
  EXPECT_EQ(out["response"]["allowed"], true);
  EXPECT_EQ(out["response"]["patchType"], "JSONPatch");
  EXPECT_FALSE(out["response"]["patch"].get<std::string>().empty());
}

TEST_F(ServerTest, V1beta1IsAnsweredInV1beta1) {
  auto res = Post(kMutationPath, Review("uid-b", "admission.k8s.io/v1beta1").dump());
  ASSERT_TRUE(res);
  EXPECT_EQ(json::parse(res->body)["apiVersion"], "admission.k8s.io/v1beta1");
}

TEST_F(ServerTest, ServingCertificateVerifiesByIpSanAndByDnsSan) {
  EXPECT_TRUE(Client("127.0.0.1")->Get("/healthz"));
  EXPECT_TRUE(Client("localhost")->Get("/healthz"));
}

TEST_F(ServerTest, ClientDialingANameOutsideTheSansIsRefused) {
  // 127.0.0.2 reaches the same loopback listener only if bound to it; dial a name instead.
  auto client = Client("127.0.0.1");
  client->set_ca_cert_store(X509_STORE_new());  // trusts nothing
  EXPECT_FALSE(client->Get("/healthz"));
}

TEST_F(ServerTest, Tls11IsRefusedAndTls12IsAccepted) {
  auto handshake = [&](int max_version) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(ctx, 0);  // let the client offer old versions; the server decides
    SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, max_version);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    const bool ok = SSL_connect(ssl) == 1;
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    return ok;
  };
  EXPECT_FALSE(handshake(TLS1_1_VERSION));
  EXPECT_FALSE(handshake(TLS1_VERSION));
  EXPECT_TRUE(handshake(TLS1_2_VERSION));
  ExpectStillAnswers();
}

TEST_F(ServerTest, EmptyBodyIs400AndServerCarriesOn) {
  auto res = Post(kMutationPath, "");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("empty body"), std::string::npos);
  ExpectStillAnswers();
}

TEST_F(ServerTest, MalformedJsonIs400AndServerCarriesOn) {
  auto res = Post(kValidationPath, "{not json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("malformed JSON"), std::string::npos);
  ExpectStillAnswers();
}

TEST_F(ServerTest, BodyOver7MiBIs413AndServerCarriesOn) {
  std::string big = Review("big").dump();
  big.insert(big.size() - 1, ",\"pad\":\"" + std::string(7 * 1024 * 1024, 'x') + "\"");
  auto res = Post(kMutationPath, big);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_NE(res->body.find("exceeds the limit"), std::string::npos) << res->body;
  ExpectStillAnswers();
}

TEST_F(ServerTest, NonJsonContentTypeIs415AndServerCarriesOn) {
  auto res = Post(kMutationPath, Review("ct").dump(), "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 415);
  EXPECT_NE(res->body.find("Content-Type"), std::string::npos);
  ExpectStillAnswers();
}

TEST_F(ServerTest, WrongApiVersionKindUidRequestAndShapeAre400) {
  std::vector<json> bad;
  json r = Review("x");
  r["apiVersion"] = "admission.k8s.io/v9";
  bad.push_back(r);
  r = Review("x");
  r["kind"] = "Pod";
  bad.push_back(r);
  r = Review("x");
  r["request"].erase("uid");
  bad.push_back(r);
  r = Review("x");
  r.erase("request");
  bad.push_back(r);
  r = Review("x");
  r["request"]["object"] = json::array({1});
  bad.push_back(r);
  for (const json& body : bad) {
    auto res = Post(kMutationPath, body.dump());
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << body.dump();
    EXPECT_FALSE(
        json::parse(res->body)["response"]["status"]["message"].get<std::string>().empty());
  }
  ExpectStillAnswers();
}

TEST_F(ServerTest, ExceptionInHandlerIs500ThatEchoesUid) {
  auto res = Post(kValidationPath, Review("uid-throw").dump());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  json out = json::parse(res->body);
  EXPECT_EQ(out["response"]["uid"], "uid-throw");
  EXPECT_EQ(out["response"]["allowed"], false);
  EXPECT_NE(out["response"]["status"]["message"].get<std::string>().find("boom"),
            std::string::npos);
  ExpectStillAnswers();
}

TEST_F(ServerTest, KeepAliveConnectionServesManyRequests) {
  // One TLS connection, many requests: a raw socket makes reuse observable.
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  ASSERT_EQ(SSL_connect(ssl), 1);
  const std::string body = Review("ka").dump();
  const std::string request =
      "POST /v1/webhook/mutation HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  constexpr int kRequests = 100;  // well past cpp-httplib's default of 5 per connection
  int answered = 0;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_EQ(SSL_write(ssl, request.data(), static_cast<int>(request.size())),
              static_cast<int>(request.size()));
    std::string got;
    char buf[4096];
    while (true) {
      const auto header_end = got.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        const auto cl = got.find("Content-Length: ");
        ASSERT_NE(cl, std::string::npos);
        const size_t len = std::stoul(got.substr(cl + 16));
        if (got.size() >= header_end + 4 + len) break;
      }
      const int n = SSL_read(ssl, buf, sizeof(buf));
      ASSERT_GT(n, 0) << "connection closed after " << answered << " requests";
      got.append(buf, static_cast<size_t>(n));
    }
    EXPECT_EQ(got.find("Connection: close"), std::string::npos);
    ++answered;
  }
  EXPECT_EQ(answered, kRequests);
  SSL_free(ssl);
  close(fd);
  SSL_CTX_free(ctx);
}

TEST_F(ServerTest, SilentClientIsDroppedAndDoesNotHoldTheServer) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ExpectStillAnswers();  // others are served while it sits there
  timeval tv{15, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char c;
  EXPECT_EQ(recv(fd, &c, 1, 0), 0) << "the server should close a connection that never speaks";
  close(fd);
}

TEST_F(ServerTest, ReadyzFollowsLookupsAndHealthzIsAlwaysOk) {
  auto client = Client();
  EXPECT_EQ(client->Get("/readyz")->status, 200);
  lookups_ready_ = false;
  auto res = client->Get("/readyz");
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("lookups"), std::string::npos);
  EXPECT_EQ(client->Get("/healthz")->status, 200);
}

TEST_F(ServerTest, HealthProbePortAnswersHealthzAndReadyzInPlainHttp) {
  ASSERT_GT(server_->health_probe_port(), 0);
  httplib::Client probes("127.0.0.1", server_->health_probe_port());
  EXPECT_EQ(probes.Get("/healthz")->status, 200);
  EXPECT_EQ(probes.Get("/readyz")->status, 200);
  EXPECT_EQ(probes.Get("/metrics")->status, 404);  // probes only
  lookups_ready_ = false;
  auto res = probes.Get("/readyz");
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("lookups"), std::string::npos);
  lookups_ready_ = true;
  server_->BeginDrain();
  EXPECT_EQ(probes.Get("/readyz")->status, 503);
  EXPECT_EQ(probes.Get("/healthz")->status, 200);
}

TEST(ServerOptionsTest, HealthProbePortIsOffUnlessAsked) {
  EXPECT_EQ(ServerOptions().health_probe_port, -1);
}

TEST_F(ServerTest, MetricsCountRequestsWithoutObjectNames) {
  ASSERT_TRUE(Post(kMutationPath, Review("m1").dump()));
  ASSERT_TRUE(Post(kMutationPath, "{bad"));
  httplib::Client plain("127.0.0.1", server_->metrics_port());
  auto res = plain.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  const std::string& text = res->body;
  EXPECT_NE(text.find("backup_guard_admission_requests_total{"), std::string::npos);
  EXPECT_NE(text.find("code=\"400\""), std::string::npos);
  EXPECT_NE(text.find("backup_guard_admission_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(text.find("backup_guard_admission_requests_in_flight"), std::string::npos);
  EXPECT_NE(text.find("backup_guard_build_info{version=\"test\"} 1"), std::string::npos);
  EXPECT_EQ(text.find("secret-object-name"), std::string::npos);
  EXPECT_EQ(text.find("secret-namespace"), std::string::npos);
}

// A request that came alone (the last event of its round) is tried on the listener's event thread;
// its handler, about to read the cluster, throws WouldBlock there, and a worker answers it from the
// start. The client sees one answer and the metrics one request, with nothing left in flight.
TEST_F(ServerTest, AHandlerThatWouldWaitIsAnsweredOnceByAWorkerAndCountedOnce) {
  json review = Review("uid-reads");
  review["request"]["kind"]["kind"] = "Backup";
  review["request"]["resource"]["resource"] = "backups";
  review["request"]["operation"] = "DELETE";
  review["request"]["oldObject"] = review["request"]["object"];
  review["request"].erase("object");
  auto res = Post(kValidationPath, review.dump());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  json out = json::parse(res->body);
  EXPECT_EQ(out["response"]["uid"], "uid-reads");
  EXPECT_EQ(out["response"]["allowed"], true);
  EXPECT_EQ(tried_on_event_thread_.load(), 1);
  EXPECT_EQ(answered_by_worker_.load(), 1);

  httplib::Client plain("127.0.0.1", server_->metrics_port());
  auto metrics = plain.Get("/metrics");
  ASSERT_TRUE(metrics);
  std::istringstream lines(metrics->body);
  int counted = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("backup_guard_admission_requests_total{", 0) == 0 &&
        line.find("kind=\"Backup\"") != std::string::npos) {
      EXPECT_EQ(line.substr(line.rfind(' ') + 1), "1") << line;
      ++counted;
    }
    if (line.rfind("backup_guard_admission_requests_in_flight ", 0) == 0) {
      EXPECT_EQ(line.substr(line.rfind(' ') + 1), "0") << line;
    }
  }
  EXPECT_EQ(counted, 1) << metrics->body;
}

TEST_F(ServerTest, DrainKeepsAnsweringButTurnsNotReadyAndClosesConnections) {
  server_->BeginDrain();
  auto client = Client();
  auto ready = client->Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  auto res = Post(kMutationPath, Review("draining").dump());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Connection"), "close");
}

TEST_F(ServerTest, ShutdownStopsAcceptingAndFinishes) {
  const int port = server_->port();
  server_->Shutdown();
  httplib::SSLClient client("127.0.0.1", port);
  client.enable_server_certificate_verification(false);
  client.set_connection_timeout(std::chrono::seconds(1));
  EXPECT_FALSE(client.Get("/healthz"));
}

}  // namespace
}  // namespace bg::webhook

namespace bg::webhook {
namespace {

// The API server authenticating itself with a client certificate (--client-ca-file).
class ClientCertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto serving = testing::MakeLocalhostServing("server-ca");
    ASSERT_TRUE(serving.ok()) << serving.status().message();
    server_ca_ = serving->ca_pem;
    store_.Set(serving->identity);
    client_ca_ = *certs::GenerateCa("client-ca", std::chrono::hours(1));
    client_ = *certs::GenerateClientCert(client_ca_, "kube-apiserver", std::chrono::hours(1));
    dir_ = ::testing::TempDir() + "/cc-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ + "/client-ca.crt") << client_ca_.cert_pem;
    std::ofstream(dir_ + "/client.crt") << client_.cert_pem;
    std::ofstream(dir_ + "/client.key") << client_.key_pem;
    std::ofstream(dir_ + "/server-ca.crt") << server_ca_;
    ServerOptions options;
    options.listen_host = options.metrics_host = "127.0.0.1";
    options.listen_port = options.metrics_port = 0;
    options.keep_alive_timeout = std::chrono::seconds(1);
    options.client_ca_file = dir_ + "/client-ca.crt";
    server_ = std::make_unique<Server>(options, mutation_, validation_, metrics_, store_,
                                       [] { return Status::Ok(); });
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<httplib::SSLClient> Client(bool with_cert) {
    auto c = with_cert
                 ? std::make_unique<httplib::SSLClient>("127.0.0.1", server_->port(),
                                                        dir_ + "/client.crt", dir_ + "/client.key")
                 : std::make_unique<httplib::SSLClient>("127.0.0.1", server_->port());
    c->set_ca_cert_path((dir_ + "/server-ca.crt").c_str());
    c->enable_server_certificate_verification(true);
    return c;
  }
  std::string server_ca_;
  certs::PemPair client_ca_, client_;
  std::string dir_;
  certs::CertificateStore store_;
  Registry mutation_, validation_;
  Metrics metrics_{"test"};
  std::unique_ptr<Server> server_;
};

TEST_F(ClientCertTest, WebhookCallsWithoutAClientCertificateAre401) {
  auto res = Client(false)->Post(kMutationPath, Review("no-cert").dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_NE(res->body.find("client certificate"), std::string::npos);
}

TEST_F(ClientCertTest, WebhookCallsWithTheApiServersCertificateAreAnswered) {
  auto res = Client(true)->Post(kMutationPath, Review("with-cert").dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(ClientCertTest, ProbesNeedNoClientCertificate) {
  auto res = Client(false)->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  for (int i = 0; i < 100 && !server_->Ready(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(server_->Ready());
}

TEST_F(ClientCertTest, ACertificateFromAnotherCaIsRefusedInTheHandshake) {
  auto other_ca = certs::GenerateCa("other", std::chrono::hours(1));
  auto other = certs::GenerateClientCert(*other_ca, "intruder", std::chrono::hours(1));
  std::ofstream(dir_ + "/other.crt") << other->cert_pem;
  std::ofstream(dir_ + "/other.key") << other->key_pem;
  httplib::SSLClient c("127.0.0.1", server_->port(), dir_ + "/other.crt", dir_ + "/other.key");
  c.set_ca_cert_path((dir_ + "/server-ca.crt").c_str());
  EXPECT_FALSE(c.Post(kMutationPath, Review("intruder").dump(), "application/json"));
}

}  // namespace
}  // namespace bg::webhook

namespace bg::webhook {
namespace {

TEST(ServerStartTest, APortInUseIsAnErrorNotACrash) {
  auto ca = certs::GenerateCa("ca", std::chrono::hours(1));
  auto leaf = certs::GenerateServingCert(*ca, {"localhost"}, {}, std::chrono::hours(1));
  certs::CertificateStore store;
  store.Set(*certs::TlsIdentity::FromPem(leaf->cert_pem, leaf->key_pem));
  Registry mutation, validation;
  Metrics metrics("test");
  // A plain listening socket (no SO_REUSEPORT) holds the port.
  const int squatter = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(bind(squatter, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(squatter, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(squatter, reinterpret_cast<sockaddr*>(&addr), &len);
  const int taken = ntohs(addr.sin_port);
  ServerOptions options;
  options.listen_host = options.metrics_host = "127.0.0.1";
  options.listen_port = 0;
  options.metrics_port = taken;
  {
    Server server(options, mutation, validation, metrics, store, [] { return Status::Ok(); });
    Status s = server.Start();
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find(std::to_string(taken)), std::string::npos) << s.message();
  }  // destruction after a failed start must not crash
  close(squatter);
}

}  // namespace
}  // namespace bg::webhook
