#include "webhook/server.h"

#include <httplib.h>
#include <openssl/ssl.h>
#include <sys/resource.h>

#include <chrono>
#include <cstring>

#include "common/log.h"
#include "common/nonblocking.h"
#include "webhook/codec.h"

namespace bg::webhook {
namespace {

using Clock = Server::Clock;

// How long shutdown waits for the plain listeners' keep-alive connections (a scraper's) to end
// by themselves before leaving them to process exit.
constexpr std::chrono::milliseconds kPlainIdleWait{1500};

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

bool ConfigureTls(SSL_CTX& ctx, certs::CertificateStore& certificates, SessionTickets& tickets,
                  const std::string& client_ca_file) {
  SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(&ctx, kTls12Ciphers);
  SSL_CTX_set_options(
      &ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_alpn_select_cb(&ctx, SelectAlpn, nullptr);
  certificates.InstallOn(&ctx);
  tickets.InstallOn(&ctx);
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

void SetBody(http1::Response& response, int status, std::string body, const char* content_type) {
  response.status = status;
  response.body = std::move(body);
  response.content_type = content_type;
}

// The soft limit on open descriptors is raised to the hard limit, as Go's runtime does: each
// connection is a descriptor, and the default soft limit (often 1,024) would cap them long
// before memory does.
void RaiseDescriptorLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

void Server::SslCtxFree::operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }

class Server::ConnectionMetrics final : public ListenerObserver {
 public:
  explicit ConnectionMetrics(Metrics& metrics) : metrics_(metrics) {}
  void ConnectionOpened() override { metrics_.connections_open().Increment(); }
  void ConnectionClosed(CloseReason reason) override {
    metrics_.RecordConnectionClosed(CloseReasonName(reason));
  }

 private:
  Metrics& metrics_;
};

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

void Server::Route(const http1::Request& request, const SSL* ssl, http1::Response& response) {
  const bool admission_path = request.path == kMutationPath || request.path == kValidationPath;
  const bool probe_path = request.path == "/healthz" || request.path == "/readyz";
  if (!admission_path && !probe_path) {
    return SetBody(response, 404, "no such path: " + request.path + "\n", "text/plain");
  }
  if ((admission_path && request.method != "POST") || (probe_path && request.method != "GET")) {
    return SetBody(response, 405,
                   "method not allowed: " + request.method + " " + request.path + "\n",
                   "text/plain");
  }
  if (request.path == kMutationPath)
    return Admission("mutation", mutation_, request, ssl, response);
  if (request.path == kValidationPath) {
    return Admission("validation", validation_, request, ssl, response);
  }
  if (request.path == "/healthz") return SetBody(response, 200, "ok", "text/plain");
  Readyz(response);
}

void Server::Admission(const char* webhook, const Registry& registry, const http1::Request& request,
                       const SSL* ssl, http1::Response& response) {
  const auto start = Clock::now();
  // In flight until this returns or a handler on the listener's event thread throws WouldBlock
  // (a worker then answers the request from the start and counts it).
  struct InFlight {
    std::atomic<int>& count;
    prometheus::Gauge& gauge;
    InFlight(std::atomic<int>& c, prometheus::Gauge& g) : count(c), gauge(g) {
      count.fetch_add(1);
      gauge.Increment();
    }
    ~InFlight() {
      gauge.Decrement();
      count.fetch_sub(1);
    }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
  } in_flight(in_flight_, metrics_.in_flight());
  std::string kind, operation, uid, api_version = "admission.k8s.io/v1";
  int http_status = 200;
  AdmissionResponse answer;
  const std::string content_type(request.Header("content-type"));
  if (!ClientAuthorized(ssl)) {
    http_status = 401;
    answer = Errored(401, "a client certificate signed by the configured client CA is required");
  } else if (!IsJsonContentType(content_type)) {
    http_status = 415;
    answer = Errored(
        415, "unsupported Content-Type \"" + content_type + "\": expected application/json");
  } else {
    auto decoded = DecodeReview(request.body);
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
      } catch (const WouldBlock&) {
        throw;  // on the listener's event thread, a read that would wait: nothing is recorded
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
    log::Warn(
        "admission request rejected",
        {{"webhook", webhook}, {"status", http_status}, {"uid", uid}, {"reason", answer.message}});
  }
  SetBody(response, http_status, EncodeReview(api_version, uid, answer), "application/json");
  if (draining_.load()) response.close = true;
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const int code = http_status != 200 ? http_status : (answer.allowed ? 200 : answer.code);
  metrics_.RecordAdmission(webhook, kind, operation, answer.allowed && http_status == 200, code,
                           seconds);
}

void Server::Readyz(http1::Response& response) const {
  std::string why;
  if (shutting_down_ || draining_) {
    why = "shutting down";
  } else if (!listener_answers_) {
    why = "TLS listener not answering yet";
  } else if (Status deps = dependencies_ready_(); !deps.ok()) {
    why = deps.message();
  }
  if (why.empty()) return SetBody(response, 200, "ok", "text/plain");
  SetBody(response, 503, why, "text/plain");
}

// Requests the parser refused never reach a route; the answer still says what is wrong.
void Server::RefusedRequest(int status, const std::string& message, http1::Response& response) {
  if (status == 413) metrics_.RecordAdmission("unknown", "", "", false, 413, 0);
  log::Warn("HTTP request refused", {{"status", status}, {"reason", message}});
  SetBody(response, status, message + "\n", "text/plain");
}

void Server::InstallMetricsRoutes() {
  httplib::Server& plain = *metrics_listener_.server;
  plain.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.Serialize(), "text/plain; version=0.0.4; charset=utf-8");
  });
  plain.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain");
  });
}

// The same answers as the TLS listener's /healthz and /readyz.
void Server::InstallProbeRoutes() {
  httplib::Server& plain = *probes_->server;
  plain.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain");
  });
  plain.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    http1::Response answer;
    Readyz(answer);
    res.status = answer.status;
    res.set_content(answer.body, answer.content_type);
  });
}

Status Server::StartPlain(PlainListener& listener, const std::string& what, const std::string& host,
                          int port) {
  // /metrics is scraped a few times a minute and probes come every few seconds; a small pool of
  // the plain HTTP server suffices.
  constexpr std::size_t kPlainWorkers = 4;
  httplib::Server& plain = *listener.server;
  plain.new_task_queue = [] { return new httplib::ThreadPool(kPlainWorkers); };
  plain.set_tcp_nodelay(true);
  plain.set_read_timeout(options_.request_timeout);
  plain.set_write_timeout(options_.write_timeout);
  plain.set_keep_alive_timeout(5);  // seconds; scrapers and kubelet reconnect cheaply
  plain.set_payload_max_length(options_.max_body_bytes);
  // An empty host is every address of both families (see TlsListener::Start).
  plain.set_socket_options([](socket_t sock) {
    const int one = 1;
    const int zero = 0;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(sock, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));  // no-op on IPv4 sockets
  });
  auto bind = [&](const std::string& h) {
    return port == 0 ? plain.bind_to_any_port(h) : (plain.bind_to_port(h, port) ? port : -1);
  };
  listener.port = bind(host.empty() ? "::" : host);
  if (listener.port <= 0 && host.empty()) listener.port = bind("0.0.0.0");
  if (listener.port <= 0) {
    return Status::Unavailable("cannot listen on " + host + ":" + std::to_string(port) + " for " +
                               what + ": " + std::strerror(errno));
  }
  listener.running = true;
  listener.thread = std::thread([&listener] {
    listener.server->listen_after_bind();
    listener.running = false;
  });
  return Status::Ok();
}

void Server::StopPlain(PlainListener& listener, Clock::time_point idle_deadline) {
  while (listener.running.load() && Clock::now() < idle_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!listener.thread.joinable()) return;
  if (!listener.running.load()) {
    listener.thread.join();
    return;
  }
  listener.thread.detach();
  (void)listener.server.release();  // still used by the detached thread until the process exits
}

Status Server::Start() {
  RaiseDescriptorLimit();
  ctx_.reset(SSL_CTX_new(TLS_server_method()));
  if (!ctx_ || !ConfigureTls(*ctx_, certificates_, tickets_, options_.client_ca_file)) {
    return Status::InvalidArgument(
        "cannot create the TLS context" +
        (options_.client_ca_file.empty()
             ? std::string()
             : " (is --client-ca-file " + options_.client_ca_file + " a PEM CA?)"));
  }
  TlsListenerOptions listener;
  listener.host = options_.listen_host;
  listener.port = options_.listen_port;
  listener.limits.max_body_bytes = options_.max_body_bytes;
  listener.handshake_timeout = options_.handshake_timeout;
  listener.request_timeout = options_.request_timeout;
  listener.idle_timeout = options_.keep_alive_timeout;
  listener.write_timeout = options_.write_timeout;
  listener.max_requests_per_connection = options_.keep_alive_max_requests;
  listener.max_connections = options_.max_connections;
  listener.connection_reserve = options_.connection_reserve;
  listener.body_budget_bytes = options_.body_budget_bytes;
  listener.workers = options_.worker_threads;
  listener.answer_last_request_inline = options_.answer_last_request_inline;
  connection_metrics_ = std::make_unique<ConnectionMetrics>(metrics_);
  tls_ = std::make_unique<TlsListener>(
      listener, ctx_.get(),
      [this](const http1::Request& request, const SSL* ssl, http1::Response& response) {
        Route(request, ssl, response);
      },
      [this](int status, const std::string& message, http1::Response& response) {
        RefusedRequest(status, message, response);
      },
      connection_metrics_.get());
  if (Status s = tls_->Start(); !s.ok()) return s;
  port_ = tls_->port();

  metrics_listener_.server = std::make_unique<httplib::Server>();
  InstallMetricsRoutes();
  if (Status s =
          StartPlain(metrics_listener_, "metrics", options_.metrics_host, options_.metrics_port);
      !s.ok()) {
    return s;
  }
  metrics_port_ = metrics_listener_.port;
  if (options_.health_probe_port >= 0) {
    probes_ = std::make_unique<PlainListener>();
    probes_->server = std::make_unique<httplib::Server>();
    InstallProbeRoutes();
    if (Status s = StartPlain(*probes_, "health probes", options_.health_probe_host,
                              options_.health_probe_port);
        !s.ok()) {
      return s;
    }
  }
  probe_thread_ = std::thread([this] { ProbeOwnListener(); });
  log::Info("listening", {{"admission", options_.listen_host + ":" + std::to_string(port_)},
                          {"metrics", options_.metrics_host + ":" + std::to_string(metrics_port_)},
                          {"health_probes", probes_ ? options_.health_probe_host + ":" +
                                                          std::to_string(probes_->port)
                                                    : std::string("off")}});
  return Status::Ok();
}

bool Server::ClientAuthorized(const SSL* ssl) const {
  if (options_.client_ca_file.empty()) return true;
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
  if (shutting_down_.exchange(true)) return;
  if (!tls_) {
    if (probe_thread_.joinable()) probe_thread_.join();
    return;
  }
  log::Info("shutting down: no new connections, finishing requests in flight",
            {{"in_flight", in_flight_.load()}});
  tls_->StopAccepting();
  if (metrics_listener_.server) metrics_listener_.server->stop();
  if (probes_ && probes_->server) probes_->server->stop();
  // Answers being computed or written finish within the grace; then every connection, idle
  // keep-alive ones included, is closed.
  tls_->Stop(options_.shutdown_grace);
  if (probe_thread_.joinable()) probe_thread_.join();
  const auto idle_deadline = Clock::now() + kPlainIdleWait;
  StopPlain(metrics_listener_, idle_deadline);
  if (probes_) StopPlain(*probes_, idle_deadline);
}

}  // namespace bg::webhook
