// The admission server: a TLS listener for AdmissionReview calls, /healthz and /readyz, a plain
// HTTP listener for /metrics, and optionally a plain HTTP listener for /healthz and /readyz alone
// (the health probe port), which kubelet probes can use without sharing the webhook port's
// connection cap with every other client. It alone decodes, enforces limits, echoes the uid and
// encodes; handlers (the registries) never see HTTP.
//
// The TLS side is an event-driven listener (webhook/tls_listener.h): idle, handshaking and slow
// connections cost no thread, and only complete requests reach a worker.
//
// Lifecycle: Start() binds both listeners and returns once they accept; Shutdown() stops accepting,
// waits (bounded) for requests in flight and returns. Neither may be called concurrently with
// itself. Handlers run on the listener's worker threads, many at once.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "certs/identity.h"
#include "common/status.h"
#include "webhook/metrics.h"
#include "webhook/registry.h"
#include "webhook/session_tickets.h"
#include "webhook/tls_listener.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace bg::webhook {

inline constexpr char kMutationPath[] = "/v1/webhook/mutation";
inline constexpr char kValidationPath[] = "/v1/webhook/validation";

struct ServerOptions {
  std::string listen_host;   // empty: every address, IPv6 and IPv4
  int listen_port = 9443;    // 0 picks a free port
  std::string metrics_host;  // empty: every address, IPv6 and IPv4
  int metrics_port = 8080;
  // The health probe listener (plain HTTP /healthz and /readyz); port -1 means none.
  std::string health_probe_host;  // empty: every address, IPv6 and IPv4
  int health_probe_port = -1;     // 0 picks a free port
  std::size_t max_body_bytes = 7 * 1024 * 1024;
  // A TLS handshake, and a whole request once its first byte is in, must finish within these, so
  // a slow client (slowloris) is dropped however it trickles.
  std::chrono::seconds handshake_timeout{10};
  std::chrono::seconds request_timeout{10};
  std::chrono::seconds write_timeout{10};
  // Longer than the idle timeout of kube-apiserver's webhook client (Go's default transport, 90 s),
  // so that the client, not the server, closes an idle connection: a server-side close can race
  // with a request the client is sending, and the API server does not retry a POST. Idle
  // connections cost no thread.
  std::chrono::seconds keep_alive_timeout{120};
  // kube-apiserver reuses a connection for many calls; closing after a handful costs a handshake.
  std::size_t keep_alive_max_requests = 10000;
  // Open TLS connections at most, the slots idle ones may not take, and the bytes of request
  // bodies buffered across all connections (see TlsListenerOptions).
  std::size_t max_connections = 10000;
  std::size_t connection_reserve = 1000;
  std::size_t body_budget_bytes = std::size_t{64} * 1024 * 1024;
  // Threads running handlers (which may wait on the Kubernetes API); connections take none.
  std::size_t worker_threads = 64;
  // The last request of each round of the listener's event thread is answered there unless its
  // handler would wait on the API (TlsListenerOptions::answer_last_request_inline; the lookups
  // and the transport throw bg::WouldBlock there, and a worker answers instead).
  bool answer_last_request_inline = true;
  // SIGTERM: how long requests in flight may take to finish before the process exits anyway.
  std::chrono::seconds shutdown_grace{20};
  // When set, webhook calls must present a client certificate signed by this CA (the API server's
  // admission-control kubeconfig). Health endpoints stay open for kubelet probes.
  std::string client_ca_file;
};

class Server {
 public:
  using Clock = std::chrono::steady_clock;

  // Everything passed by reference must outlive the server. `dependencies_ready` reports whether
  // what the handlers rely on (cluster lookups, certificates) can answer; a non-OK status makes
  // /readyz answer 503 with its message.
  Server(ServerOptions options, const Registry& mutation, const Registry& validation,
         Metrics& metrics, certs::CertificateStore& certificates,
         std::function<Status()> dependencies_ready);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  Status Start();
  // First step of a graceful stop: /readyz answers 503 and every answer carries
  // "Connection: close", so callers stop reusing connections while the listener still serves.
  void BeginDrain();
  void Shutdown();

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  int health_probe_port() const { return probes_ ? probes_->port : -1; }
  bool Ready() const;

 private:
  class ConnectionMetrics;
  // A plain HTTP listener (cpp-httplib) on its own thread.
  struct PlainListener {
    std::unique_ptr<httplib::Server> server;
    std::thread thread;
    std::atomic<bool> running{false};
    int port = 0;
  };

  Status StartPlain(PlainListener& listener, const std::string& what, const std::string& host,
                    int port);
  void StopPlain(PlainListener& listener, Clock::time_point idle_deadline);

  void InstallMetricsRoutes();
  void InstallProbeRoutes();
  void Route(const http1::Request& request, const SSL* ssl, http1::Response& response);
  void Admission(const char* webhook, const Registry& registry, const http1::Request& request,
                 const SSL* ssl, http1::Response& response);
  void Readyz(http1::Response& response) const;
  void RefusedRequest(int status, const std::string& message, http1::Response& response);
  bool ClientAuthorized(const SSL* ssl) const;
  void ProbeOwnListener();

  ServerOptions options_;
  const Registry& mutation_;
  const Registry& validation_;
  Metrics& metrics_;
  certs::CertificateStore& certificates_;
  std::function<Status()> dependencies_ready_;

  struct SslCtxFree {
    void operator()(SSL_CTX* ctx) const;
  };
  // Declared before the context, which uses it in its callbacks.
  SessionTickets tickets_;
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx_;
  std::unique_ptr<ConnectionMetrics> connection_metrics_;
  std::unique_ptr<TlsListener> tls_;
  PlainListener metrics_listener_;
  std::unique_ptr<PlainListener> probes_;
  std::thread probe_thread_;
  int port_ = 0;
  int metrics_port_ = 0;
  std::atomic<bool> listener_answers_{false};
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
};

}  // namespace bg::webhook
