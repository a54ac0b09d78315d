// Session tickets over real OpenSSL handshakes, client and server in memory (a BIO pair), with
// the key rotation driven by an injected clock.
#include "webhook/session_tickets.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstring>
#include <memory>

#include "certs/identity.h"
#include "tests/testing/tls_identity.h"

namespace bg::webhook {
namespace {

using Clock = SessionTickets::Clock;

struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
  void operator()(SSL_SESSION* session) const { SSL_SESSION_free(session); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;
using CtxPtr = std::unique_ptr<SSL_CTX, SslFree>;
using SessionPtr = std::unique_ptr<SSL_SESSION, SslFree>;

struct Outcome {
  bool completed = false;
  bool reused = false;
  SessionPtr session;  // the client's session after the handshake, with its new ticket
};

// One handshake between `client_ctx` and `server_ctx`, offering `resume` when given; then the
// client reads what the server sent after it (TLS 1.3 sends its ticket there).
Outcome Connect(SSL_CTX* server_ctx, SSL_CTX* client_ctx, SSL_SESSION* resume) {
  SslPtr server(SSL_new(server_ctx));
  SslPtr client(SSL_new(client_ctx));
  BIO* server_bio = nullptr;
  BIO* client_bio = nullptr;
  BIO_new_bio_pair(&server_bio, 0, &client_bio, 0);
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_bio(client.get(), client_bio, client_bio);
  SSL_set_accept_state(server.get());
  SSL_set_connect_state(client.get());
  if (resume != nullptr) SSL_set_session(client.get(), resume);
  Outcome outcome;
  bool client_done = false;
  bool server_done = false;
  for (int round = 0; round < 20 && !(client_done && server_done); ++round) {
    for (auto [ssl, done] : {std::pair{client.get(), &client_done}, {server.get(), &server_done}}) {
      if (*done) continue;
      ERR_clear_error();
      const int r = SSL_do_handshake(ssl);
      if (r == 1) {
        *done = true;
        continue;
      }
      const int err = SSL_get_error(ssl, r);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return outcome;
    }
  }
  if (!client_done || !server_done) return outcome;
  char byte = 0;
  ERR_clear_error();
  EXPECT_LE(SSL_read(client.get(), &byte, 1), 0) << "the server sent no data, only its ticket";
  outcome.completed = true;
  outcome.reused = SSL_session_reused(client.get()) == 1;
  outcome.session.reset(SSL_get1_session(client.get()));
  // A connection freed without a close_notify marks its session not resumable.
  SSL_shutdown(client.get());
  SSL_shutdown(server.get());
  return outcome;
}

// The key name a ticket was issued under: its first 16 bytes.
SessionTickets::KeyName TicketKeyName(const SSL_SESSION* session) {
  const unsigned char* ticket = nullptr;
  std::size_t length = 0;
  SSL_SESSION_get0_ticket(session, &ticket, &length);
  SessionTickets::KeyName name{};
  if (length >= name.size()) std::memcpy(name.data(), ticket, name.size());
  return name;
}

class SessionTicketsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto serving = testing::MakeLocalhostServing();
    ASSERT_TRUE(serving.ok()) << serving.status().message();
    store_.Set(serving->identity);
    client_.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_session_cache_mode(client_.get(), SSL_SESS_CACHE_CLIENT);
  }

  // A server context with `tickets` installed, as the webhook server builds it.
  CtxPtr ServerContext(SessionTickets& tickets) {
    CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    store_.InstallOn(ctx.get());
    tickets.InstallOn(ctx.get());
    return ctx;
  }

  std::chrono::seconds rotation_{3600};
  Clock::time_point now_ = Clock::now();
  SessionTickets tickets_{rotation_, [this] { return now_; }};
  certs::CertificateStore store_;
  CtxPtr client_;
};

TEST_F(SessionTicketsTest, AClientResumesItsSessionWithTheTicketItWasGiven) {
  CtxPtr server = ServerContext(tickets_);
  Outcome first = Connect(server.get(), client_.get(), nullptr);
  ASSERT_TRUE(first.completed);
  EXPECT_FALSE(first.reused);
  ASSERT_EQ(SSL_SESSION_is_resumable(first.session.get()), 1) << "no ticket was issued";
  EXPECT_EQ(TicketKeyName(first.session.get()), tickets_.current_name());

  Outcome second = Connect(server.get(), client_.get(), first.session.get());
  ASSERT_TRUE(second.completed);
  EXPECT_TRUE(second.reused);
}

TEST_F(SessionTicketsTest, ATls12ClientResumesToo) {
  CtxPtr server = ServerContext(tickets_);
  SSL_CTX_set_max_proto_version(client_.get(), TLS1_2_VERSION);
  Outcome first = Connect(server.get(), client_.get(), nullptr);
  ASSERT_TRUE(first.completed);
  ASSERT_EQ(SSL_SESSION_get_protocol_version(first.session.get()), TLS1_2_VERSION);
  Outcome second = Connect(server.get(), client_.get(), first.session.get());
  ASSERT_TRUE(second.completed);
  EXPECT_TRUE(second.reused);
}

// OpenSSL refuses to resume, with a fatal alert, on a context that verifies client certificates
// unless a session id context is set: with --client-ca-file every resuming client would fail.
TEST_F(SessionTicketsTest, ResumptionWorksWhereClientCertificatesAreAsked) {
  CtxPtr server = ServerContext(tickets_);
  SSL_CTX_set_verify(server.get(), SSL_VERIFY_PEER, nullptr);
  Outcome first = Connect(server.get(), client_.get(), nullptr);
  ASSERT_TRUE(first.completed);
  Outcome second = Connect(server.get(), client_.get(), first.session.get());
  ASSERT_TRUE(second.completed) << "the resuming handshake failed";
  EXPECT_TRUE(second.reused);
}

TEST_F(SessionTicketsTest, TicketKeysRotateAfterTheInterval) {
  CtxPtr server = ServerContext(tickets_);
  Outcome first = Connect(server.get(), client_.get(), nullptr);
  ASSERT_TRUE(first.completed);
  const auto first_key = TicketKeyName(first.session.get());
  EXPECT_EQ(tickets_.keys_made(), 1u);

  now_ += rotation_ - std::chrono::seconds(1);
  Outcome before = Connect(server.get(), client_.get(), nullptr);
  EXPECT_EQ(TicketKeyName(before.session.get()), first_key) << "rotated before its time";

  now_ += std::chrono::seconds(1);
  Outcome fresh = Connect(server.get(), client_.get(), nullptr);
  ASSERT_TRUE(fresh.completed);
  EXPECT_EQ(tickets_.keys_made(), 2u);
  EXPECT_NE(TicketKeyName(fresh.session.get()), first_key);
  EXPECT_EQ(TicketKeyName(fresh.session.get()), tickets_.current_name());
}

TEST_F(SessionTicketsTest, ATicketUnderThePreviousKeyResumesAndIsRenewed) {
  CtxPtr server = ServerContext(tickets_);
  Outcome first = Connect(server.get(), client_.get(), nullptr);
  ASSERT_TRUE(first.completed);
  now_ += rotation_;
  Outcome resumed = Connect(server.get(), client_.get(), first.session.get());
  ASSERT_TRUE(resumed.completed);
  EXPECT_TRUE(resumed.reused);
  EXPECT_NE(TicketKeyName(resumed.session.get()), TicketKeyName(first.session.get()));
  EXPECT_EQ(TicketKeyName(resumed.session.get()), tickets_.current_name());
}

TEST_F(SessionTicketsTest, ATicketTwoRotationsOldMakesAFullHandshake) {
  CtxPtr server = ServerContext(tickets_);
  Outcome first = Connect(server.get(), client_.get(), nullptr);
  ASSERT_TRUE(first.completed);
  now_ += rotation_;
  ASSERT_TRUE(Connect(server.get(), client_.get(), nullptr).completed);  // rotates once
  now_ += rotation_;
  Outcome late = Connect(server.get(), client_.get(), first.session.get());
  ASSERT_TRUE(late.completed) << "an unknown ticket must fall back, not fail";
  EXPECT_FALSE(late.reused);
}

TEST_F(SessionTicketsTest, AfterALongQuietSpellThePreviousKeyIsDroppedToo) {
  CtxPtr server = ServerContext(tickets_);
  Outcome first = Connect(server.get(), client_.get(), nullptr);
  ASSERT_TRUE(first.completed);
  now_ += 2 * rotation_;  // no handshake in between: the first rotation happens only now
  Outcome late = Connect(server.get(), client_.get(), first.session.get());
  ASSERT_TRUE(late.completed);
  EXPECT_FALSE(late.reused);
}

TEST_F(SessionTicketsTest, AnotherProcessesTicketMakesAFullHandshake) {
  SessionTickets other_process(rotation_, [this] { return now_; });
  CtxPtr server = ServerContext(tickets_);
  CtxPtr other = ServerContext(other_process);
  Outcome first = Connect(other.get(), client_.get(), nullptr);
  ASSERT_TRUE(first.completed);
  Outcome here = Connect(server.get(), client_.get(), first.session.get());
  ASSERT_TRUE(here.completed);
  EXPECT_FALSE(here.reused);
}

}  // namespace
}  // namespace bg::webhook
