#include "webhook/server.h"

#include <httplib.h>
#include <openssl/ssl.h>

#include <chrono>
#include <cstring>

#include "common/log.h"
#include "webhook/codec.h"

namespace bg::webhook {
namespace {

using Clock = std::chrono::steady_clock;

// After the last request in flight has finished, how long shutdown waits for idle keep-alive
// connections to close by themselves before leaving them to process exit.
constexpr std::chrono::milliseconds kIdleConnectionWait{1500};

// TLS 1.2 suites: ECDHE with AEAD ciphers only. TLS 1.3 suites are all AEAD.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// ALPN: offer http/1.1 only; a client asking solely for h2 gets no ALPN and speaks HTTP/1.1.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  unsigned char selected_len = 0;
  if (SSL_select_next_proto(&selected, &selected_len, kHttp11, sizeof(kHttp11), in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    *outlen = selected_len;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

bool ConfigureTls(SSL_CTX& ctx, certs::CertificateStore& certificates,
                  const std::string& client_ca_file) {
  SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(&ctx, kTls12Ciphers);
  SSL_CTX_set_options(
      &ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_alpn_select_cb(&ctx, SelectAlpn, nullptr);
  certificates.InstallOn(&ctx);
  if (!client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(&ctx, client_ca_file.c_str(), nullptr) != 1) return false;
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(client_ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(&ctx, names);
    // Ask for a certificate and reject an invalid one in the handshake; a missing one is refused
    // per request on the webhook paths, so probes without certificates still work.
    SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, nullptr);
  }
  return true;
}

void WriteReview(httplib::Response& res, int http_status, const std::string& body) {
  res.status = http_status;
  res.set_content(body, "application/json");
}

}  // namespace

Server::Server(ServerOptions options, const Registry& mutation, const Registry& validation,
               Metrics& metrics, certs::CertificateStore& certificates,
               std::function<Status()> dependencies_ready)
    : options_(std::move(options)),
      mutation_(mutation),
      validation_(validation),
      metrics_(metrics),
      certificates_(certificates),
      dependencies_ready_(std::move(dependencies_ready)) {}

Server::~Server() { Shutdown(); }

bool Server::Ready() const {
  return listener_answers_.load() && !shutting_down_.load() && !draining_.load() &&
         dependencies_ready_().ok();
}

void Server::InstallRoutes() {
  auto admission = [this](const char* webhook, const Registry& registry) {
    return [this, webhook, &registry](const httplib::Request& req, httplib::Response& res) {
      const auto start = Clock::now();
      in_flight_.fetch_add(1);
      metrics_.in_flight().Increment();
      std::string kind, operation, uid, api_version = "admission.k8s.io/v1";
      int http_status = 200;
      AdmissionResponse answer;
      const std::string content_type = req.get_header_value("Content-Type");
      if (!ClientAuthorized(req.ssl)) {
        http_status = 401;
        answer =
            Errored(401, "a client certificate signed by the configured client CA is required");
      } else if (!IsJsonContentType(content_type)) {
        http_status = 415;
        answer = Errored(
            415, "unsupported Content-Type \"" + content_type + "\": expected application/json");
      } else {
        auto decoded = DecodeReview(req.body);
        if (auto* err = std::get_if<DecodeError>(&decoded)) {
          http_status = err->http_status;
          uid = err->uid;
          api_version = err->api_version;
          answer = Errored(err->http_status, err->message);
        } else {
          auto& review = std::get<DecodedReview>(decoded);
          api_version = review.api_version;
          uid = review.request.uid;
          kind = review.request.kind;
          operation = OperationName(review.request.operation);
          try {
            answer = registry.Handle(review.request);
          } catch (const std::exception& e) {
            http_status = 500;
            answer = Errored(500, std::string("internal error while answering: ") + e.what());
          } catch (...) {
            http_status = 500;
            answer = Errored(500, "internal error while answering");
          }
        }
      }
      if (http_status != 200) {
        log::Warn("admission request rejected", {{"webhook", webhook},
                                                 {"status", http_status},
                                                 {"uid", uid},
                                                 {"reason", answer.message}});
      }
      WriteReview(res, http_status, EncodeReview(api_version, uid, answer));
      if (draining_.load()) res.set_header("Connection", "close");
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      const int code = http_status != 200 ? http_status : (answer.allowed ? 200 : answer.code);
      metrics_.RecordAdmission(webhook, kind, operation, answer.allowed && http_status == 200, code,
                               seconds);
      metrics_.in_flight().Decrement();
      in_flight_.fetch_sub(1);
    };
  };
  tls_->Post(kMutationPath, admission("mutation", mutation_));
  tls_->Post(kValidationPath, admission("validation", validation_));
  tls_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain");
  });
  tls_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    std::string why;
    if (shutting_down_ || draining_) {
      why = "shutting down";
    } else if (!listener_answers_) {
      why = "TLS listener not answering yet";
    } else if (Status deps = dependencies_ready_(); !deps.ok()) {
      why = deps.message();
    }
    if (why.empty()) {
      res.set_content("ok", "text/plain");
      return;
    }
    res.status = 503;
    res.set_content(why, "text/plain");
  });
  // Requests the router does not know, and errors httplib raises itself (such as 413 for a
  // body over the limit), still get a message that says what is wrong.
  tls_->set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // our own answers already say what is wrong
    std::string message;
    switch (res.status) {
      case 413:
        message = "request body exceeds the limit of " + std::to_string(options_.max_body_bytes) +
                  " bytes";
        break;
      case 404:
        message = "no such path: " + req.path;
        break;
      case 405:
        message = "method not allowed: " + req.method + " " + req.path;
        break;
      default:
        message = "bad request";
        break;
    }
    if (res.status == 413) metrics_.RecordAdmission("unknown", "", "", false, 413, 0);
    res.set_content(message + "\n", "text/plain");
  });
  tls_->set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, const std::exception_ptr&) {
        res.status = 500;
        res.set_content("internal error\n", "text/plain");
      });
  plain_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.Serialize(), "text/plain; version=0.0.4; charset=utf-8");
  });
  plain_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain");
  });
}

Status Server::Start() {
  tls_ = std::make_unique<httplib::SSLServer>(
      [this](SSL_CTX& ctx) { return ConfigureTls(ctx, certificates_, options_.client_ca_file); });
  plain_ = std::make_unique<httplib::Server>();
  if (!tls_->is_valid()) {
    return Status::InvalidArgument(
        "cannot create the TLS context" +
        (options_.client_ca_file.empty()
             ? std::string()
             : " (is --client-ca-file " + options_.client_ca_file + " a PEM CA?)"));
  }

  const std::size_t workers = options_.worker_threads;
  for (httplib::Server* s : {static_cast<httplib::Server*>(tls_.get()), plain_.get()}) {
    s->new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
    s->set_tcp_nodelay(true);
    s->set_read_timeout(options_.read_timeout);
    s->set_write_timeout(options_.write_timeout);
    s->set_keep_alive_timeout(options_.keep_alive_timeout.count());
    s->set_keep_alive_max_count(options_.keep_alive_max_requests);
    s->set_payload_max_length(options_.max_body_bytes);
  }
  InstallRoutes();

  auto bind = [](httplib::Server& s, const std::string& host, int port) {
    return port == 0 ? s.bind_to_any_port(host) : (s.bind_to_port(host, port) ? port : -1);
  };
  port_ = bind(*tls_, options_.listen_host, options_.listen_port);
  if (port_ <= 0) {
    return Status::Unavailable("cannot listen on " + options_.listen_host + ":" +
                               std::to_string(options_.listen_port) + ": " + std::strerror(errno));
  }
  metrics_port_ = bind(*plain_, options_.metrics_host, options_.metrics_port);
  if (metrics_port_ <= 0) {
    return Status::Unavailable("cannot listen on " + options_.metrics_host + ":" +
                               std::to_string(options_.metrics_port) + ": " + std::strerror(errno));
  }
  listeners_running_ = 2;
  tls_thread_ = std::thread([this] {
    tls_->listen_after_bind();
    listeners_running_.fetch_sub(1);
  });
  plain_thread_ = std::thread([this] {
    plain_->listen_after_bind();
    listeners_running_.fetch_sub(1);
  });
  probe_thread_ = std::thread([this] { ProbeOwnListener(); });
  log::Info("listening",
            {{"admission", options_.listen_host + ":" + std::to_string(port_)},
             {"metrics", options_.metrics_host + ":" + std::to_string(metrics_port_)}});
  return Status::Ok();
}

bool Server::ClientAuthorized(const void* ssl_ptr) const {
  if (options_.client_ca_file.empty()) return true;
  const SSL* ssl = static_cast<const SSL*>(ssl_ptr);
  if (ssl == nullptr) return false;
  X509* peer = SSL_get0_peer_certificate(ssl);
  return peer != nullptr && SSL_get_verify_result(ssl) == X509_V_OK;
}

// /readyz is true only once a real TLS handshake and request against our own listener succeed.
void Server::ProbeOwnListener() {
  const std::string host = options_.listen_host == "0.0.0.0" || options_.listen_host.empty()
                               ? "127.0.0.1"
                           : options_.listen_host == "::" ? "::1"
                                                          : options_.listen_host;
  while (!shutting_down_.load()) {
    httplib::SSLClient client(host, port_);
    client.enable_server_certificate_verification(false);  // we test that it answers, not trust
    client.set_connection_timeout(std::chrono::seconds(1));
    client.set_read_timeout(std::chrono::seconds(2));
    auto res = client.Get("/healthz");
    if (res && res->status == 200) {
      listener_answers_ = true;
      log::Info("TLS listener answers", {{"port", port_}});
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void Server::BeginDrain() {
  if (!draining_.exchange(true))
    log::Info("draining: not ready, closing connections after each answer");
}

void Server::Shutdown() {
  if (!tls_ || shutting_down_.exchange(true)) return;
  log::Info("shutting down: no new connections, finishing requests in flight",
            {{"in_flight", in_flight_.load()}});
  tls_->stop();
  plain_->stop();
  const auto deadline = Clock::now() + options_.shutdown_grace;
  while (in_flight_.load() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (in_flight_.load() > 0) {
    log::Warn("shutdown grace elapsed with requests in flight", {{"in_flight", in_flight_.load()}});
  }
  if (probe_thread_.joinable()) probe_thread_.join();
  // The listener threads end once their idle keep-alive connections time out. No request rides on
  // those, so wait only briefly; past that, the exiting process closes them.
  const auto idle_deadline = std::min(deadline, Clock::now() + kIdleConnectionWait);
  while (listeners_running_.load() > 0 && Clock::now() < idle_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (listeners_running_.load() == 0) {
    if (tls_thread_.joinable()) tls_thread_.join();
    if (plain_thread_.joinable()) plain_thread_.join();
    return;
  }
  log::Warn("idle keep-alive connections still open at exit");
  if (tls_thread_.joinable()) tls_thread_.detach();
  if (plain_thread_.joinable()) plain_thread_.detach();
  (void)tls_.release();  // still used by the detached threads until the process exits
  (void)plain_.release();
}

}  // namespace bg::webhook
