// The event-driven listener over real TLS on loopback, with a trivial handler: connection
// handling only (routing and admission are tested in server_test.cc).
#include "webhook/tls_listener.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "certs/identity.h"
#include "common/nonblocking.h"
#include "tests/testing/eventually.h"
#include "tests/testing/tls_identity.h"

namespace bg::webhook {
namespace {

class RecordingObserver final : public ListenerObserver {
 public:
  void ConnectionOpened() override {
    std::lock_guard<std::mutex> lock(mu_);
    ++opened_;
  }
  void ConnectionClosed(CloseReason reason) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++closed_[reason];
  }
  int closed(CloseReason reason) {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_[reason];
  }
  // Waits (bounded) until `reason` was counted `n` times.
  bool WaitClosed(CloseReason reason, int n) {
    for (int i = 0; i < 1000; ++i) {
      if (closed(reason) >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

 private:
  std::mutex mu_;
  int opened_ = 0;
  std::map<CloseReason, int> closed_;
};

int ConnectTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{10, 0};  // a test never waits longer than this for the server
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// A blocking TLS client connection (no certificate checks: the listener is under test here).
class TlsClient {
 public:
  explicit TlsClient(int port) : ctx_(SSL_CTX_new(TLS_client_method())) {
    fd_ = ConnectTcp(port);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    connected_ = fd_ >= 0 && SSL_connect(ssl_) == 1;
  }
  ~TlsClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    if (fd_ >= 0) close(fd_);
  }
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  bool connected() const { return connected_; }
  bool Send(const std::string& bytes) {
    return SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) ==
           static_cast<int>(bytes.size());
  }
  // Reads one response (headers and a Content-Length body); empty when the connection ends first.
  std::string ReadResponse() {
    for (;;) {
      const std::size_t head_end = pending_.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        std::size_t length = 0;
        const std::size_t cl = pending_.find("Content-Length: ");
        if (cl != std::string::npos && cl < head_end) {
          length = std::stoul(pending_.substr(cl + 16, pending_.find("\r\n", cl) - cl - 16));
        }
        if (pending_.size() >= head_end + 4 + length) {
          std::string response = pending_.substr(0, head_end + 4 + length);
          pending_.erase(0, response.size());
          return response;
        }
      }
      char buffer[4096];
      const int n = SSL_read(ssl_, buffer, sizeof(buffer));
      if (n <= 0) return {};
      pending_.append(buffer, static_cast<std::size_t>(n));
    }
  }
  // True when the server closed the connection (EOF or reset) before sending anything else.
  bool ClosedByServer() {
    char c;
    return SSL_read(ssl_, &c, 1) <= 0;
  }

 private:
  SSL_CTX* ctx_;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
};

class TlsListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto serving = testing::MakeLocalhostServing();
    ASSERT_TRUE(serving.ok()) << serving.status().message();
    store_.Set(serving->identity);
    ctx_ = SSL_CTX_new(TLS_server_method());
    store_.InstallOn(ctx_);
    options_.host = "127.0.0.1";
    options_.handshake_timeout = std::chrono::milliseconds(1000);
    options_.request_timeout = std::chrono::milliseconds(1000);
    options_.idle_timeout = std::chrono::milliseconds(3000);
    options_.workers = 4;
  }
  void TearDown() override {
    OpenGate();
    if (listener_) listener_->Stop(std::chrono::seconds(5));
    listener_.reset();
    SSL_CTX_free(ctx_);
  }

  void StartListener() {
    listener_ = std::make_unique<TlsListener>(
        options_, ctx_,
        [this](const http1::Request& request, const SSL*, http1::Response& response) {
          requests_.fetch_add(1);
          if (MustNotBlock()) on_event_thread_.fetch_add(1);
          if (request.path == "/held" || request.path == "/waits") {
            if (MustNotBlock()) would_block_.fetch_add(1);
            ThrowIfMustNotBlock();  // about to wait: never on the event thread
          }
          if (request.path == "/spin") {  // CPU work until released: allowed anywhere
            while (!spin_released_.load()) std::this_thread::yield();
          }
          if (request.path == "/big") {
            big_on_event_thread_ = MustNotBlock();
            response.body.assign(kBigBody, 'x');
            return;
          }
          if (request.path == "/held") {
            std::unique_lock<std::mutex> lock(gate_mu_);
            gate_cv_.wait(lock, [this] { return gate_open_; });
          }
          response.body = request.method + " " + request.path + " " + request.body;
        },
        [](int status, const std::string& message, http1::Response& response) {
          response.status = status;
          response.body = message;
        },
        &observer_);
    ASSERT_TRUE(listener_->Start().ok());
  }

  certs::CertificateStore store_;
  SSL_CTX* ctx_ = nullptr;
  TlsListenerOptions options_;
  RecordingObserver observer_;
  std::atomic<int> requests_{0};
  // Handler calls made on the event thread (MustNotBlock() true), and those that threw WouldBlock.
  std::atomic<int> on_event_thread_{0};
  std::atomic<int> would_block_{0};
  std::atomic<bool> big_on_event_thread_{false};
  std::atomic<bool> spin_released_{false};
  // More than loopback's socket buffers take at once: the answer to /big.
  static constexpr std::size_t kBigBody = std::size_t{16} * 1024 * 1024;
  std::unique_ptr<TlsListener> listener_;
  // Sends GET `path` on `client` and expects its answer.
  static void ExpectAnswer(TlsClient& client, const std::string& path) {
    ASSERT_TRUE(client.Send("GET " + path + " HTTP/1.1\r\n\r\n"));
    EXPECT_NE(client.ReadResponse().find("GET " + path), std::string::npos);
  }
  // A request for /held waits until OpenGate().
  void OpenGate() {
    {
      std::lock_guard<std::mutex> lock(gate_mu_);
      gate_open_ = true;
    }
    gate_cv_.notify_all();
  }
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool gate_open_ = false;
};

TEST_F(TlsListenerTest, ThousandIdleConnectionsDoNotKeepANewCallerWaiting) {
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur < 2100 && limit.rlim_max >= 2100) {
    limit.rlim_cur = limit.rlim_max;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
  }
  ASSERT_GE(limit.rlim_cur, 2100u) << "both ends of 1,000 connections live in this process";
  options_.handshake_timeout = std::chrono::seconds(30);  // they all stay for the whole test
  StartListener();
  std::vector<int> idle;
  for (int i = 0; i < 1000; ++i) {
    const int fd = ConnectTcp(listener_->port());
    ASSERT_GE(fd, 0) << "connection " << i;
    idle.push_back(fd);
  }
  for (int round = 0; round < 5; ++round) {
    TlsClient client(listener_->port());
    ASSERT_TRUE(client.connected()) << "round " << round;
    ASSERT_TRUE(client.Send("GET /healthz HTTP/1.1\r\n\r\n"));
    EXPECT_NE(client.ReadResponse().find("200 OK"), std::string::npos) << "round " << round;
  }
  EXPECT_GE(listener_->open_connections(), 1000u);
  for (int fd : idle) close(fd);
}

TEST_F(TlsListenerTest, SlowlorisIsClosedAtTheRequestDeadlineWhileOthersAreServed) {
  StartListener();
  TlsClient slow(listener_->port());
  ASSERT_TRUE(slow.connected());
  const std::string head = "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
  bool closed = false;
  // One byte every 100 ms: each read comes well inside any per-read timeout, the whole request
  // never does within the 1 s request deadline.
  for (std::size_t i = 0; i < head.size() && !closed; ++i) {
    closed = !slow.Send(head.substr(i, 1));
    TlsClient other(listener_->port());
    ASSERT_TRUE(other.Send("GET /healthz HTTP/1.1\r\n\r\n"));
    EXPECT_NE(other.ReadResponse().find("200 OK"), std::string::npos);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(observer_.WaitClosed(CloseReason::kRequestTimeout, 1));
  EXPECT_TRUE(slow.ClosedByServer());
}

TEST_F(TlsListenerTest, ConnectionThatNeverHandshakesIsClosedAtTheHandshakeDeadline) {
  StartListener();
  const int fd = ConnectTcp(listener_->port());
  ASSERT_GE(fd, 0);
  char c;
  EXPECT_EQ(recv(fd, &c, 1, 0), 0);
  close(fd);
  EXPECT_TRUE(observer_.WaitClosed(CloseReason::kHandshakeTimeout, 1));
}

TEST_F(TlsListenerTest, KeptAliveConnectionIsClosedAfterTheIdleTimeout) {
  options_.idle_timeout = std::chrono::milliseconds(500);
  StartListener();
  TlsClient client(listener_->port());
  ASSERT_TRUE(client.Send("GET /healthz HTTP/1.1\r\n\r\n"));
  ASSERT_FALSE(client.ReadResponse().empty());
  EXPECT_TRUE(client.ClosedByServer());
  EXPECT_TRUE(observer_.WaitClosed(CloseReason::kIdleTimeout, 1));
}

TEST_F(TlsListenerTest, AtTheCapTheOldestIdleConnectionMakesRoomForANewOne) {
  options_.max_connections = 3;
  options_.connection_reserve = 0;
  StartListener();
  TlsClient oldest(listener_->port());
  ASSERT_TRUE(oldest.connected());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // handshakes finish in order
  TlsClient middle(listener_->port());
  ASSERT_TRUE(middle.connected());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  TlsClient used(listener_->port());
  ASSERT_TRUE(used.connected());
  ASSERT_TRUE(oldest.Send("GET /healthz HTTP/1.1\r\n\r\n"));  // used last: now the newest idle
  ASSERT_NE(oldest.ReadResponse().find("200 OK"), std::string::npos);
  TlsClient fresh(listener_->port());
  ASSERT_TRUE(fresh.connected());
  ASSERT_TRUE(fresh.Send("GET /healthz HTTP/1.1\r\n\r\n"));
  EXPECT_NE(fresh.ReadResponse().find("200 OK"), std::string::npos);
  EXPECT_TRUE(observer_.WaitClosed(CloseReason::kEvicted, 1));
  EXPECT_TRUE(middle.ClosedByServer());  // idle the longest
  ASSERT_TRUE(oldest.Send("GET /healthz HTTP/1.1\r\n\r\n"));
  EXPECT_NE(oldest.ReadResponse().find("200 OK"), std::string::npos);
  EXPECT_EQ(observer_.closed(CloseReason::kConnectionLimit), 0);
}

TEST_F(TlsListenerTest, BareConnectsAtTheCapCannotKeepAHandshakeOut) {
  options_.max_connections = 20;
  options_.handshake_timeout = std::chrono::seconds(30);  // they would hold their slots long
  StartListener();
  std::vector<int> bare;
  for (int i = 0; i < 20; ++i) {
    const int fd = ConnectTcp(listener_->port());
    ASSERT_GE(fd, 0);
    bare.push_back(fd);
  }
  for (int round = 0; round < 3; ++round) {
    TlsClient client(listener_->port());
    ASSERT_TRUE(client.connected()) << "round " << round;
    ASSERT_TRUE(client.Send("GET /healthz HTTP/1.1\r\n\r\n"));
    EXPECT_NE(client.ReadResponse().find("200 OK"), std::string::npos) << "round " << round;
  }
  EXPECT_TRUE(
      observer_.WaitClosed(CloseReason::kEvicted, 1));  // the later rounds reuse a freed slot
  EXPECT_EQ(observer_.closed(CloseReason::kConnectionLimit), 0);
  for (int fd : bare) close(fd);
}

TEST_F(TlsListenerTest, IdleConnectionsLeaveTheReserveFree) {
  options_.max_connections = 10;
  options_.connection_reserve = 4;
  StartListener();
  std::vector<std::unique_ptr<TlsClient>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(std::make_unique<TlsClient>(listener_->port()));
    ASSERT_TRUE(clients.back()->connected());
    ASSERT_TRUE(clients.back()->Send("GET /healthz HTTP/1.1\r\n\r\n"));
    ASSERT_NE(clients.back()->ReadResponse().find("200 OK"), std::string::npos);
  }
  // Six idle at most: the two that were idle the longest went.
  EXPECT_TRUE(observer_.WaitClosed(CloseReason::kEvicted, 2));
  EXPECT_TRUE(clients[0]->ClosedByServer());
  EXPECT_TRUE(clients[1]->ClosedByServer());
  EXPECT_LE(listener_->open_connections(), 6u);
}

TEST_F(TlsListenerTest, ConnectionsPastTheLimitAreClosedAtOnceWhenNoneIsIdle) {
  options_.max_connections = 2;
  options_.connection_reserve = 0;
  StartListener();
  TlsClient a(listener_->port());
  TlsClient b(listener_->port());
  ASSERT_TRUE(a.connected() && b.connected());
  // Both in the middle of a request: neither may be evicted.
  ASSERT_TRUE(a.Send("GET /healthz HTTP/1.1\r\n"));
  ASSERT_TRUE(b.Send("GET /healthz HTTP/1.1\r\n"));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  TlsClient c(listener_->port());
  EXPECT_FALSE(c.connected());
  EXPECT_TRUE(observer_.WaitClosed(CloseReason::kConnectionLimit, 1));
  ASSERT_TRUE(a.Send("\r\n"));
  EXPECT_NE(a.ReadResponse().find("200 OK"), std::string::npos);
}

TEST_F(TlsListenerTest, BodiesPastTheBudgetGet503WhileSmallBodiesStillPass) {
  options_.body_budget_bytes = 4 * 1024 * 1024;  // large bodies may take 3 MiB of it
  options_.request_timeout = std::chrono::seconds(10);
  StartListener();
  const std::string mib_head = "POST /big HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n";
  std::vector<std::unique_ptr<TlsClient>> slow;
  for (int i = 0; i < 3; ++i) {
    slow.push_back(std::make_unique<TlsClient>(listener_->port()));
    ASSERT_TRUE(slow.back()->Send(mib_head + "x"));  // announced, barely started
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(listener_->buffered_body_bytes(), std::size_t{3} * 1048576);
  TlsClient refused(listener_->port());
  ASSERT_TRUE(refused.Send(mib_head));
  const std::string answer = refused.ReadResponse();
  EXPECT_NE(answer.find("503 Service Unavailable"), std::string::npos) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(observer_.WaitClosed(CloseReason::kBodyBudget, 1));
  // A small body draws on the quarter large ones may not take.
  TlsClient small(listener_->port());
  ASSERT_TRUE(small.Send("POST /small HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"));
  EXPECT_NE(small.ReadResponse().find("POST /small hello"), std::string::npos);
  // A finished body gives its share back.
  ASSERT_TRUE(slow[0]->Send(std::string(1048575, 'x')));
  EXPECT_NE(slow[0]->ReadResponse().find("200 OK"), std::string::npos);
  for (int i = 0; i < 500 && listener_->buffered_body_bytes() > 2 * 1048576; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  TlsClient next(listener_->port());
  ASSERT_TRUE(next.Send(mib_head + std::string(1048576, 'y')));
  EXPECT_NE(next.ReadResponse().find("200 OK"), std::string::npos);
}

// A kept-alive connection goes back to waiting from its worker; the event thread must still give
// its body's share back before it reads the next request, here on the other of two connections
// that take turns with a budget that fits one body at a time.
TEST_F(TlsListenerTest, KeptAliveConnectionsTakingTurnsEachGetTheWholeBodyBudget) {
  options_.body_budget_bytes = 64 * 1024;
  StartListener();
  TlsClient first(listener_->port());
  TlsClient second(listener_->port());
  const std::string body(options_.body_budget_bytes, 'b');
  const std::string request =
      "POST /n HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  for (int i = 0; i < 20; ++i) {
    TlsClient& client = i % 2 == 0 ? first : second;
    ASSERT_TRUE(client.Send(request));
    EXPECT_NE(client.ReadResponse().find("200 OK"), std::string::npos) << "request " << i;
  }
  EXPECT_EQ(observer_.closed(CloseReason::kBodyBudget), 0);
  // The last worker counts its request done just after it has written the answer.
  EXPECT_TRUE(testing::Eventually([&] { return listener_->requests_in_progress() == 0u; }))
      << listener_->requests_in_progress();
}

TEST_F(TlsListenerTest, PipelinedRequestsAreAnsweredInOrder) {
  StartListener();
  TlsClient client(listener_->port());
  ASSERT_TRUE(
      client.Send("POST /one HTTP/1.1\r\nContent-Length: 1\r\n\r\nAGET /two HTTP/1.1\r\n\r\n"
                  "POST /three HTTP/1.1\r\nContent-Length: 1\r\n\r\nC"));
  EXPECT_NE(client.ReadResponse().find("POST /one A"), std::string::npos);
  EXPECT_NE(client.ReadResponse().find("GET /two "), std::string::npos);
  EXPECT_NE(client.ReadResponse().find("POST /three C"), std::string::npos);
}

TEST_F(TlsListenerTest, ChunkedBodyReachesTheHandlerDecoded) {
  StartListener();
  TlsClient client(listener_->port());
  ASSERT_TRUE(client.Send("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"));
  ASSERT_TRUE(client.Send("3\r\ncde\r\n0\r\n\r\n"));
  EXPECT_NE(client.ReadResponse().find("POST /c abcde"), std::string::npos);
}

TEST_F(TlsListenerTest, ExpectContinueGetsA100ThenTheAnswer) {
  StartListener();
  TlsClient client(listener_->port());
  ASSERT_TRUE(client.Send("POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"));
  EXPECT_NE(client.ReadResponse().find("100 Continue"), std::string::npos);
  ASSERT_TRUE(client.Send("hi"));
  EXPECT_NE(client.ReadResponse().find("POST /e hi"), std::string::npos);
}

TEST_F(TlsListenerTest, OversizedBodyIsAnswered413AndTheClientCanFinishSendingIt) {
  options_.limits.max_body_bytes = 1024;
  StartListener();
  TlsClient client(listener_->port());
  ASSERT_TRUE(client.Send("POST /big HTTP/1.1\r\nContent-Length: 200000\r\n\r\n"));
  // The client keeps sending the body it announced; the lingering close reads and drops it, so the
  // answer is not destroyed by a reset.
  const std::string chunk(20000, 'x');
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(client.Send(chunk)) << "chunk " << i;
  const std::string response = client.ReadResponse();
  EXPECT_NE(response.find("413 Content Too Large"), std::string::npos) << response;
  EXPECT_NE(response.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(client.ClosedByServer());
  EXPECT_EQ(requests_.load(), 0);
}

TEST_F(TlsListenerTest, Http10RequestIsAnsweredAndClosed) {
  StartListener();
  TlsClient client(listener_->port());
  ASSERT_TRUE(client.Send("GET /old HTTP/1.0\r\n\r\n"));
  EXPECT_NE(client.ReadResponse().find("Connection: close"), std::string::npos);
  EXPECT_TRUE(client.ClosedByServer());
}

TEST_F(TlsListenerTest, AnswersAreNeverCompressed) {
  StartListener();
  TlsClient client(listener_->port());
  ASSERT_TRUE(
      client.Send("POST /z HTTP/1.1\r\nAccept-Encoding: gzip, br\r\nContent-Length: 1\r\n\r\nz"));
  const std::string response = client.ReadResponse();
  EXPECT_NE(response.find("POST /z z"), std::string::npos);
  EXPECT_EQ(response.find("Content-Encoding"), std::string::npos);
}

TEST_F(TlsListenerTest, StopClosesIdleKeepAliveConnectionsAndRefusesNewOnes) {
  StartListener();
  const int port = listener_->port();
  TlsClient client(port);
  ASSERT_TRUE(client.Send("GET /healthz HTTP/1.1\r\n\r\n"));
  ASSERT_FALSE(client.ReadResponse().empty());
  listener_->Stop(std::chrono::seconds(1));
  EXPECT_TRUE(client.ClosedByServer());
  EXPECT_EQ(ConnectTcp(port), -1);
  EXPECT_EQ(observer_.closed(CloseReason::kShutdown), 1);
}

// Stop decides on the event thread, which alone starts requests: a kept-alive connection cannot
// start one after the last look at the answers in progress (it was then left dispatched and its
// loop and connection abandoned at exit), and the answer in flight is finished, not abandoned.
TEST_F(TlsListenerTest, StopClosesIdleConnectionsAtOnceAndFinishesTheAnswerInFlight) {
  StartListener();
  TlsClient idle(listener_->port());
  ASSERT_TRUE(idle.Send("GET /a HTTP/1.1\r\n\r\n"));
  ASSERT_FALSE(idle.ReadResponse().empty());
  TlsClient held(listener_->port());
  ASSERT_TRUE(held.Send("GET /held HTTP/1.1\r\n\r\n"));
  // The held request is in its handler, and the first one's count is gone (it drops just after
  // its answer is on the wire).
  ASSERT_TRUE(testing::Eventually(
      [&] { return requests_.load() == 2 && listener_->requests_in_progress() == 1; }));

  std::thread stopper([&] { listener_->Stop(std::chrono::seconds(20)); });
  // The idle connection goes while the held answer is still being computed.
  EXPECT_TRUE(observer_.WaitClosed(CloseReason::kShutdown, 1));
  EXPECT_TRUE(idle.ClosedByServer());
  EXPECT_EQ(listener_->requests_in_progress(), 1U);

  OpenGate();
  EXPECT_NE(held.ReadResponse().find("GET /held"), std::string::npos);
  stopper.join();
  EXPECT_EQ(listener_->requests_in_progress(), 0U);
  // Both connections were closed by the listener; none was left to the exiting process.
  EXPECT_EQ(observer_.closed(CloseReason::kShutdown), 2);
}

TEST_F(TlsListenerTest, AnswersAreComputedOnWorkersUnlessAskedOtherwise) {
  StartListener();
  TlsClient client(listener_->port());
  ASSERT_TRUE(client.connected());
  for (int i = 0; i < 3; ++i) {
    ExpectAnswer(client, "/fast");
  }
  EXPECT_EQ(on_event_thread_.load(), 0);
}

TEST_F(TlsListenerTest, ARequestAloneIsAnsweredOnTheEventThread) {
  options_.answer_last_request_inline = true;
  StartListener();
  TlsClient client(listener_->port());
  ASSERT_TRUE(client.connected());
  for (int i = 0; i < 3; ++i) {
    ExpectAnswer(client, "/fast");
  }
  EXPECT_EQ(requests_.load(), 3);
  EXPECT_EQ(on_event_thread_.load(), 3);
  // The count drops after the answer is on the wire, so the client may read it first.
  EXPECT_TRUE(testing::Eventually([&] { return listener_->requests_in_progress() == 0U; }));
}

TEST_F(TlsListenerTest, OfTwoRequestsInOneRoundTheLastIsAnsweredOnTheEventThread) {
  options_.answer_last_request_inline = true;
  StartListener();
  TlsClient spinning(listener_->port());
  TlsClient first(listener_->port());
  TlsClient second(listener_->port());
  ASSERT_TRUE(spinning.connected() && first.connected() && second.connected());
  // The event thread computes /spin; meanwhile both requests reach their sockets, so that its
  // next round has two events.
  ASSERT_TRUE(spinning.Send("GET /spin HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(testing::Eventually([&] { return requests_.load() == 1; }));
  ASSERT_TRUE(first.Send("GET /fast HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(second.Send("GET /fast HTTP/1.1\r\n\r\n"));
  spin_released_ = true;
  EXPECT_NE(spinning.ReadResponse().find("GET /spin"), std::string::npos);
  EXPECT_NE(first.ReadResponse().find("GET /fast"), std::string::npos);
  EXPECT_NE(second.ReadResponse().find("GET /fast"), std::string::npos);
  EXPECT_EQ(requests_.load(), 3);
  EXPECT_EQ(on_event_thread_.load(), 2);  // /spin, and the last of the round; a worker the other
}

TEST_F(TlsListenerTest, ARequestWhoseHandlerWouldWaitIsAnsweredOnceByAWorker) {
  options_.answer_last_request_inline = true;
  StartListener();
  TlsClient client(listener_->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("POST /waits HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"));
  const std::string answer = client.ReadResponse();
  EXPECT_NE(answer.find("POST /waits body"), std::string::npos) << answer;
  // Tried on the event thread (it threw before waiting), then run again from the start on a
  // worker: two calls, one answer; the connection goes on as before.
  EXPECT_EQ(would_block_.load(), 1);
  EXPECT_EQ(requests_.load(), 2);
  ExpectAnswer(client, "/fast");
  EXPECT_EQ(requests_.load(), 3);
}

TEST_F(TlsListenerTest, AHandlerWaitingOnAWorkerLeavesTheEventThreadFree) {
  options_.answer_last_request_inline = true;
  StartListener();
  TlsClient held(listener_->port());
  ASSERT_TRUE(held.connected());
  ASSERT_TRUE(held.Send("GET /held HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(testing::Eventually([&] { return listener_->requests_in_progress() == 1; }));
  // While a worker waits in the held handler, another client is accepted, handshakes and is
  // answered on the event thread.
  TlsClient other(listener_->port());
  ASSERT_TRUE(other.connected());
  ExpectAnswer(other, "/fast");
  // The fast request leaves the count just after its answer is on the wire; the held one stays.
  EXPECT_TRUE(testing::Eventually([&] { return listener_->requests_in_progress() == 1U; }));
  OpenGate();
  EXPECT_NE(held.ReadResponse().find("GET /held"), std::string::npos);
}

TEST_F(TlsListenerTest, AnAnswerTheSocketDoesNotTakeAtOnceIsFinishedByAWorker) {
  options_.answer_last_request_inline = true;
  StartListener();
  TlsClient big(listener_->port());
  ASSERT_TRUE(big.connected());
  ASSERT_TRUE(big.Send("GET /big HTTP/1.1\r\n\r\n"));
  // The client reads nothing yet: the socket fills, and the rest of the answer waits on a
  // worker, not on the event thread, which answers another client meanwhile.
  ASSERT_TRUE(testing::Eventually([&] { return requests_.load() == 1; }));
  TlsClient other(listener_->port());
  ASSERT_TRUE(other.connected());
  ExpectAnswer(other, "/fast");
  // The big answer is still being written (the fast one leaves the count just after its answer).
  EXPECT_TRUE(testing::Eventually([&] { return listener_->requests_in_progress() == 1U; }));
  const std::string answer = big.ReadResponse();
  ASSERT_GE(answer.size(), kBigBody);
  EXPECT_EQ(answer.substr(answer.size() - kBigBody), std::string(kBigBody, 'x'));
  EXPECT_TRUE(big_on_event_thread_.load());
  ASSERT_TRUE(testing::Eventually([&] { return listener_->requests_in_progress() == 0; }));
  ASSERT_TRUE(big.Send("GET /fast HTTP/1.1\r\n\r\n"));  // kept alive after the worker's write
  EXPECT_NE(big.ReadResponse().find("GET /fast"), std::string::npos);
}

TEST_F(TlsListenerTest, ABusyPortIsAnErrorNamingIt) {
  StartListener();
  TlsListenerOptions same = options_;
  same.port = listener_->port();
  TlsListener second(
      same, ctx_, [](const http1::Request&, const SSL*, http1::Response&) {},
      [](int, const std::string&, http1::Response&) {}, nullptr);
  Status s = second.Start();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(std::to_string(same.port)), std::string::npos) << s.message();
}

}  // namespace
}  // namespace bg::webhook
