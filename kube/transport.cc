#include "kube/transport.h"

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>

#include <climits>
#include <condition_variable>
#include <csignal>
#include <thread>
#include <utility>

#include "common/log.h"
#include "common/nonblocking.h"

namespace bg::kube {
namespace {

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

// The CA certificates a server must chain to when the cluster config names any.
struct PinnedAnchors {
  std::vector<X509Ptr> certs;
};

std::string OpenSslError() {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

Result<BioPtr> MemoryBio(const std::string& pem, const char* what) {
  if (pem.size() > static_cast<size_t>(INT_MAX)) {
    return Status::InvalidArgument(std::string(what) + " is too large");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Status::Internal(std::string(what) + ": " + OpenSslError());
  return bio;
}

// Every certificate of a PEM bundle, in order. A bundle without any is an error.
Result<std::vector<X509Ptr>> ParseCertificates(const std::string& pem, const char* what) {
  Result<BioPtr> bio = MemoryBio(pem, what);
  if (!bio.ok()) return bio.status();
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  while (X509* cert = PEM_read_bio_X509(bio.value().get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  // Reading stops with "no start line" at the end of the data; any other error is real.
  const unsigned long err = ERR_peek_last_error();
  if (err != 0 &&
      !(ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE)) {
    return Status::InvalidArgument(std::string(what) +
                                   ": malformed PEM certificate: " + OpenSslError());
  }
  ERR_clear_error();
  if (certs.empty()) {
    return Status::InvalidArgument(std::string(what) + ": no PEM certificate found");
  }
  return certs;
}

// Never prompts for a passphrase (OpenSSL's default would read the terminal).
int RefusePassphrase(char*, int, int, void*) { return 0; }

Result<PkeyPtr> ParsePrivateKey(const std::string& pem) {
  Result<BioPtr> bio = MemoryBio(pem, "client key");
  if (!bio.ok()) return bio.status();
  ERR_clear_error();
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.value().get(), nullptr, &RefusePassphrase, nullptr));
  if (!key) {
    return Status::InvalidArgument(
        "client key: not a PEM private key (encrypted keys are not "
        "supported): " +
        OpenSslError());
  }
  return key;
}

// A CA directory for httplib that holds no certificates (see NewClient).
constexpr char kNoSystemCaDir[] = "/nonexistent/backup-guard/no-system-cas";

int PinnedAnchorsIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Verification callback: OpenSSL has built and checked the chain (against a store that httplib
// also fills with the system trust store); the anchor it ended at must be one of the cluster's CAs.
int VerifyPinnedAnchor(int preverify_ok, X509_STORE_CTX* store_ctx) {
  if (preverify_ok != 1) return preverify_ok;
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(store_ctx);
  const int depth = X509_STORE_CTX_get_error_depth(store_ctx);
  if (chain == nullptr || depth != sk_X509_num(chain) - 1) return 1;  // not the anchor yet
  auto* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const auto* pinned = ssl == nullptr ? nullptr
                                      : static_cast<const PinnedAnchors*>(SSL_CTX_get_ex_data(
                                            SSL_get_SSL_CTX(ssl), PinnedAnchorsIndex()));
  X509* anchor = X509_STORE_CTX_get_current_cert(store_ctx);
  if (pinned != nullptr && anchor != nullptr) {
    for (const X509Ptr& ca : pinned->certs) {
      if (X509_cmp(ca.get(), anchor) == 0) return 1;
    }
  }
  X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_CERT_UNTRUSTED);
  return 0;
}

std::string FormatServer(const ClusterConfig& config) {
  const bool ipv6 = config.host.find(':') != std::string::npos;
  return "https://" + (ipv6 ? "[" + config.host + "]" : config.host) + ":" +
         std::to_string(config.port) + config.base_path;
}

// A request target must already be encoded: no spaces, no control characters.
bool IsValidTarget(const std::string& target) {
  if (target.empty() || target[0] != '/') return false;
  for (char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F) return false;
  }
  return true;
}

bool IsValidMethod(std::string_view method) {
  if (method.empty()) return false;
  for (char c : method) {
    if (c < 'A' || c > 'Z') return false;
  }
  return true;
}

// Blocks SIGPIPE in the calling thread for its lifetime and discards one that arrived meanwhile.
// OpenSSL writes with plain write(2), without MSG_NOSIGNAL, so a write to a connection that the
// peer closed, or that a stream's watchdog shut down (httplib then sends TLS close_notify on it),
// raises SIGPIPE, which ends a process that does not ignore it. Threads started inside the scope
// inherit the blocked mask; a signal still pending on a thread when it exits is discarded.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &previous_) == 0;
  }
  ~SigpipeGuard() {
    if (!blocked_) return;
    sigset_t pending;
    sigemptyset(&pending);
    if (!was_pending_ && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
      const timespec no_wait{0, 0};
      sigtimedwait(&pipe_, nullptr, &no_wait);
    }
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_;
  sigset_t previous_;
  bool was_pending_ = false;
  bool blocked_ = false;
};

// The parts of a request that every exchange shares: method, target and the standard headers.
httplib::Request NewRequest(std::string_view method, const std::string& target,
                            const std::string& user_agent, const std::string& token) {
  httplib::Request req;
  req.method = std::string(method);
  req.path = target;
  req.headers.emplace("Accept", "application/json");
  req.headers.emplace("User-Agent", user_agent);
  if (!token.empty()) req.headers.emplace("Authorization", "Bearer " + token);
  return req;
}

}  // namespace

Status ApiTransport::Stream(std::string_view, const std::string&, const std::atomic<bool>&,
                            const std::function<bool(int)>&,
                            const std::function<bool(std::string_view)>&) {
  return Status::Unavailable("streaming not supported");
}

struct HttpsTransport::TlsMaterial {
  PinnedAnchors anchors;              // empty: use the system trust store
  X509Ptr client_cert;                // null: no client certificate
  std::vector<X509Ptr> client_chain;  // intermediates sent after client_cert
  PkeyPtr client_key;
};

Result<std::unique_ptr<HttpsTransport>> HttpsTransport::Create(const ClusterConfig& config,
                                                               const TransportOptions& options) {
  if (config.host.empty()) return Status::InvalidArgument("cluster config has no host");
  if (config.port < 1 || config.port > 65535) {
    return Status::InvalidArgument("cluster config has an invalid port");
  }
  auto tls = std::make_unique<TlsMaterial>();
  if (!config.ca_pem.empty()) {
    if (config.insecure_skip_tls_verify) {
      return Status::InvalidArgument("insecure-skip-tls-verify cannot be combined with a CA");
    }
    Result<std::vector<X509Ptr>> cas = ParseCertificates(config.ca_pem, "certificate authority");
    if (!cas.ok()) return cas.status();
    tls->anchors.certs = std::move(cas).value();
  }
  if (config.client_cert_pem.empty() != config.client_key_pem.empty()) {
    return Status::InvalidArgument(
        "a client certificate needs a client key, and a key needs a "
        "certificate");
  }
  if (!config.client_cert_pem.empty()) {
    Result<std::vector<X509Ptr>> chain =
        ParseCertificates(config.client_cert_pem, "client certificate");
    if (!chain.ok()) return chain.status();
    Result<PkeyPtr> key = ParsePrivateKey(config.client_key_pem);
    if (!key.ok()) return key.status();
    std::vector<X509Ptr> certs = std::move(chain).value();
    tls->client_cert = std::move(certs.front());
    for (size_t i = 1; i < certs.size(); ++i) tls->client_chain.push_back(std::move(certs[i]));
    tls->client_key = std::move(key).value();
    if (X509_check_private_key(tls->client_cert.get(), tls->client_key.get()) != 1) {
      ERR_clear_error();
      return Status::InvalidArgument("the client key does not match the client certificate");
    }
  }
  return std::unique_ptr<HttpsTransport>(new HttpsTransport(config, options, std::move(tls)));
}

HttpsTransport::HttpsTransport(const ClusterConfig& config, const TransportOptions& options,
                               std::unique_ptr<TlsMaterial> tls)
    : config_(config),
      options_(options),
      tls_(std::move(tls)),
      server_(FormatServer(config)),
      token_(config.bearer_token, config.bearer_token_file, options.clock, options.token_refresh),
      exec_(config.exec
                ? std::make_unique<ExecCredentialSource>(*config.exec, config, options.clock)
                : nullptr) {}

HttpsTransport::~HttpsTransport() {
  SigpipeGuard no_sigpipe;  // closing pooled connections writes TLS close_notify
  idle_.clear();
}

std::unique_ptr<httplib::SSLClient> HttpsTransport::NewClient() const {
  // httplib takes its own references to the certificate and key.
  auto client = std::make_unique<httplib::SSLClient>(
      config_.host, config_.port, tls_->client_cert.get(), tls_->client_key.get());
  if (!client->is_valid()) return nullptr;
  SSL_CTX* ctx = client->ssl_context();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  for (const X509Ptr& cert : tls_->client_chain) SSL_CTX_add1_chain_cert(ctx, cert.get());
  if (config_.insecure_skip_tls_verify) {
    client->enable_server_certificate_verification(false);
  } else {
    client->enable_server_certificate_verification(true);
    if (!tls_->anchors.certs.empty()) {
      X509_STORE* store = X509_STORE_new();
      if (store == nullptr) return nullptr;
      for (const X509Ptr& ca : tls_->anchors.certs) X509_STORE_add_cert(store, ca.get());
      // Like Go's RootCAs: a configured intermediate is a valid anchor on its own.
      X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
      client->set_ca_cert_store(store);  // the SSL_CTX owns it from here
      // Without a CA path httplib adds the system trust store to `store` on first connect: ~140
      // certificates parsed per connection (about 0.9 MB and a few ms of CPU each), all of them
      // refused by the pin below anyway. A directory lookup in a directory that holds none costs
      // nothing (OpenSSL only looks there by subject hash, and the pin refuses whatever it finds).
      client->set_ca_cert_path("", kNoSystemCaDir);
      SSL_CTX_set_ex_data(ctx, PinnedAnchorsIndex(), const_cast<PinnedAnchors*>(&tls_->anchors));
      // httplib verifies with SSL_VERIFY_NONE and checks the result afterwards; the callback runs
      // either way and turns an unpinned anchor into a verification failure.
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, &VerifyPinnedAnchor);
    }
  }
  client->set_connection_timeout(options_.connect_timeout);
  client->set_read_timeout(options_.read_timeout);
  client->set_write_timeout(options_.write_timeout);
  client->set_keep_alive(true);
  // Without it, a request whose headers and body go out as two TLS records waits for the server's
  // delayed ACK of the first (Nagle): about 40 ms per PATCH, DELETE or POST on Linux.
  client->set_tcp_nodelay(true);
  client->set_follow_location(false);
  return client;
}

std::unique_ptr<httplib::SSLClient> HttpsTransport::Acquire(bool* reused) {
  *reused = false;
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!idle_.empty()) {
      std::unique_ptr<httplib::SSLClient> client = std::move(idle_.back());
      idle_.pop_back();
      *reused = true;
      return client;
    }
  }
  return NewClient();
}

void HttpsTransport::Release(std::unique_ptr<httplib::SSLClient> client) {
  std::lock_guard<std::mutex> lock(pool_mu_);
  if (idle_.size() < options_.max_idle_connections) {
    idle_.push_back(std::move(client));
    return;
  }
  // Over the limit: `client` closes its connection when it goes out of scope.
}

std::vector<size_t> HttpsTransport::IdleTrustStoreSizesForTesting() {
  std::lock_guard<std::mutex> lock(pool_mu_);
  std::vector<size_t> sizes;
  for (const auto& client : idle_) {
    X509_STORE* store = SSL_CTX_get_cert_store(client->ssl_context());
    sizes.push_back(store == nullptr ? 0 : sk_X509_OBJECT_num(X509_STORE_get0_objects(store)));
  }
  return sizes;
}

Status HttpsTransport::CheckRequest(std::string_view method,
                                    const std::string& path_and_query) const {
  if (!IsValidMethod(method)) return Status::InvalidArgument("invalid HTTP method");
  if (!IsValidTarget(path_and_query)) {
    return Status::InvalidArgument("request path must start with '/' and be URL-encoded");
  }
  return Status::Ok();
}

Status HttpsTransport::ExchangeError(const std::string& what, const httplib::SSLClient& client,
                                     httplib::Error error) const {
  std::string message = what + " to " + server_ + ": " + httplib::to_string(error);
  if (error == httplib::Error::SSLServerVerification) {
    const long verify = client.get_openssl_verify_result();
    message += verify == X509_V_OK
                   ? " (the server certificate is not valid for " + config_.host + ")"
                   : std::string(" (") + X509_verify_cert_error_string(verify) + ")";
  }
  ERR_clear_error();
  return Status::Unavailable(std::move(message));
}

Result<std::string> HttpsTransport::BearerToken() {
  if (exec_ != nullptr) return exec_->Token();
  return token_.Token();
}

Result<HttpResponse> HttpsTransport::Request(std::string_view method,
                                             const std::string& path_and_query,
                                             const std::string& body,
                                             std::string_view content_type) {
  if (Status valid = CheckRequest(method, path_and_query); !valid.ok()) return valid;
  ThrowIfMustNotBlock();  // every call below waits on the network (or an exec credential plugin)
  Result<std::string> token = BearerToken();
  if (!token.ok()) return token.status();
  Result<HttpResponse> response = Send(method, path_and_query, body, content_type, token.value());
  if (exec_ == nullptr || !response.ok() || response->status != 401) return response;
  exec_->Unauthorized(token.value());
  Result<std::string> renewed = BearerToken();
  if (!renewed.ok()) return renewed.status();
  if (renewed.value() == token.value()) return response;
  return Send(method, path_and_query, body, content_type, renewed.value());
}

Result<HttpResponse> HttpsTransport::Send(std::string_view method,
                                          const std::string& path_and_query,
                                          const std::string& body, std::string_view content_type,
                                          const std::string& token) {
  const std::string what = std::string(method) + " " + path_and_query;
  httplib::Request req =
      NewRequest(method, config_.base_path + path_and_query, options_.user_agent, token);
  if (!body.empty() || !content_type.empty()) {
    req.body = body;
    req.headers.emplace("Content-Type", std::string(content_type));
  }
  std::string response_body;
  bool too_large = false;
  const size_t limit = options_.max_response_bytes;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (response_body.size() + n > limit) {
      too_large = true;
      return false;
    }
    response_body.append(data, n);
    return true;
  };

  // Declared before the client: a client dropped on error writes TLS close_notify as it goes,
  // and a pooled connection may have been closed by the server.
  SigpipeGuard no_sigpipe;
  bool reused = false;
  std::unique_ptr<httplib::SSLClient> client = Acquire(&reused);
  if (!client) return Status::Internal(what + ": cannot set up a TLS client: " + OpenSslError());
  httplib::Result res = client->send(req);
  if (!res && reused && method == "GET" && !too_large) {
    // A pooled connection the server closed while idle fails on first use. A GET is safe to
    // send again, once, on a fresh connection (as Go's transport does for idempotent requests).
    response_body.clear();
    client = NewClient();
    if (!client) return Status::Internal(what + ": cannot set up a TLS client: " + OpenSslError());
    res = client->send(req);
  }
  if (!res) {
    // The client is dropped, not pooled: its connection is in an unknown state.
    if (too_large) {
      return Status::TooLarge(what + ": response larger than " + std::to_string(limit) + " bytes");
    }
    return ExchangeError(what, *client, res.error());
  }
  HttpResponse response{res->status, std::move(response_body), res->get_header_value("Retry-After"),
                        res->get_header_value("Date")};
  Release(std::move(client));
  return response;
}

Status HttpsTransport::Stream(std::string_view method, const std::string& path_and_query,
                              const std::atomic<bool>& stop,
                              const std::function<bool(int status)>& on_status,
                              const std::function<bool(std::string_view chunk)>& on_chunk) {
  if (Status valid = CheckRequest(method, path_and_query); !valid.ok()) return valid;
  if (stop.load()) return Status::Ok();
  const std::string what = std::string(method) + " " + path_and_query;

  // Declared before the client, and inherited by the watchdog: after the watchdog's shutdown,
  // httplib still writes TLS close_notify to the connection, also when the client is destroyed.
  SigpipeGuard no_sigpipe;
  std::unique_ptr<httplib::SSLClient> client = NewClient();
  if (!client) return Status::Internal(what + ": cannot set up a TLS client: " + OpenSslError());
  client->set_read_timeout(options_.stream_read_timeout);
  client->set_keep_alive(false);

  Result<std::string> token = BearerToken();
  if (!token.ok()) return token.status();
  httplib::Request req =
      NewRequest(method, config_.base_path + path_and_query, options_.user_agent, token.value());
  // Set when the exchange ended because the caller asked for it; httplib reports that as an
  // error (Canceled, or Read after the connection was shut down), which is not one here.
  bool ended_by_caller = false;
  req.response_handler = [&](const httplib::Response& res) {
    if (res.status == 401 && exec_ != nullptr) exec_->Unauthorized(token.value());
    if (stop.load() || !on_status(res.status)) {
      ended_by_caller = true;
      return false;
    }
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (stop.load() || !on_chunk(std::string_view(data, n))) {
      ended_by_caller = true;
      return false;
    }
    return true;
  };

  // The watchdog shuts the connection down once `stop` is set. It keeps doing so until the
  // exchange ends: a shutdown that lands before the request is in flight closes nothing, and the
  // request then opens a new connection.
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (!done) {
      if (stop.load()) {
        lock.unlock();
        client->stop();
        lock.lock();
      }
      cv.wait_for(lock, kStreamStopLatency / 2, [&] { return done; });
    }
  });
  httplib::Result res = client->send(req);
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  watchdog.join();

  if (res) return Status::Ok();
  if (ended_by_caller || stop.load()) {
    ERR_clear_error();
    return Status::Ok();
  }
  return ExchangeError(what, *client, res.error());
}

}  // namespace bg::kube
