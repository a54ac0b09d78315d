// ApiTransport: one HTTP exchange with the Kubernetes API server, behind an interface so that tests
// can answer requests without a network. HttpsTransport is the real one (cpp-httplib + OpenSSL).
//
// Thread-safety: implementations are safe to call from many threads at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "kube/clock.h"
#include "kube/exec_credential.h"
#include "kube/kubeconfig.h"
#include "kube/token_source.h"

namespace httplib {
class SSLClient;
enum class Error;
}  // namespace httplib

namespace bg::kube {

struct HttpResponse {
  HttpResponse() = default;
  HttpResponse(int status, std::string body, std::string retry_after = "", std::string date = "")
      : status(status),
        body(std::move(body)),
        retry_after(std::move(retry_after)),
        date(std::move(date)) {}

  int status = 0;
  std::string body;
  // The Retry-After header as sent (an API server answering 429 or 503 says when to come back).
  std::string retry_after;
  // The Date header as sent: the API server's clock when it answered (kube/server_clock.h).
  std::string date;
};

class ApiTransport {
 public:
  virtual ~ApiTransport() = default;

  // Sends `method` to `path_and_query` (like "/api/v1/namespaces?limit=1", already URL-encoded)
  // with `body` of `content_type` (both may be empty). Any HTTP answer, 4xx and 5xx included, is a
  // value; an error Status means no answer arrived: Unavailable for network, TLS and timeout
  // failures, TooLarge for a body over the transport's limit.
  virtual Result<HttpResponse> Request(std::string_view method, const std::string& path_and_query,
                                       const std::string& body, std::string_view content_type) = 0;

  // Sends a body-less `method` to `path_and_query` and hands over the answer as it arrives, for
  // long-lived responses such as watches: `on_status` gets the HTTP status once the headers are
  // in, then `on_chunk` gets each piece of the body (whatever the status) as it is received, in
  // pieces of any size. Either callback returning false ends the exchange; `stop` becoming true
  // ends it within about kStreamStopLatency, even while no data arrives.
  // Returns Ok when the body ended, a callback returned false or `stop` was set; an error Status
  // as Request does when the exchange failed, including a connection that broke mid-body.
  // The default answers Unavailable, for transports that cannot stream.
  virtual Status Stream(std::string_view method, const std::string& path_and_query,
                        const std::atomic<bool>& stop,
                        const std::function<bool(int status)>& on_status,
                        const std::function<bool(std::string_view chunk)>& on_chunk);
};

// How long a streaming exchange may go on after its `stop` flag is set (HttpsTransport: while
// the connection is being set up, up to its connect timeout instead).
inline constexpr std::chrono::milliseconds kStreamStopLatency{100};

struct TransportOptions {
  // Lookups run inside admission requests, which the API server gives only a few seconds in all.
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds read_timeout{5000};
  std::chrono::milliseconds write_timeout{5000};
  // Connections kept open between requests; requests beyond this many at once open extra
  // connections that are closed afterwards.
  size_t max_idle_connections = 4;
  // A list of every Backup in a large cluster is a few MiB; this bounds memory, not correctness.
  size_t max_response_bytes = size_t{64} * 1024 * 1024;
  // Streams (watches) wait this long for the next piece of data before they count as broken. The
  // API server sends a watch bookmark about every minute (allowWatchBookmarks), so a healthy watch
  // never goes this quiet; a dead connection is noticed within this time.
  std::chrono::milliseconds stream_read_timeout{150000};
  std::string user_agent = "backup-guard";
  Clock::Duration token_refresh = kTokenFileRefresh;
  const Clock* clock = nullptr;  // null: Clock::Real(); must outlive the transport
};

// HTTPS to the API server of a ClusterConfig.
//  - The server is verified against config.ca_pem and only against it (the system trust store
//    is used only when ca_pem is empty), including its host name or IP address.
//  - Client certificate authentication uses config.client_cert_pem/client_key_pem; bearer
//    tokens go in "Authorization: Bearer", re-read from the token file as TokenSource does, or
//    from the exec credential plugin of config.exec (ExecCredentialSource). When the API server
//    answers 401 to a plugin's token, the token is dropped and a Request is sent once more with
//    the plugin's new token (a 401 means the server did nothing); a Stream is not resent, its
//    caller's next attempt gets the new token.
//  - Every request sends "Accept: application/json".
// Concurrency: an httplib client is not thread-safe, so each request takes a client of its own
// from a small pool (see TransportOptions::max_idle_connections) and returns it afterwards.
// Each stream (Stream) opens a connection of its own, outside the pool, and closes it at the end:
// a watch holds its connection for minutes and would otherwise starve short requests. While a
// stream runs, a helper thread watches its `stop` flag and shuts the connection down when it is
// set (httplib offers no other way to interrupt a blocked read).
// SIGPIPE: OpenSSL writes without MSG_NOSIGNAL, and closing a connection that the server or a
// stop shut down writes TLS close_notify to it; the signal is blocked in the calling thread for
// the exchange and discarded, so a process need not ignore SIGPIPE to use the transport.
class HttpsTransport final : public ApiTransport {
 public:
  // Parses and checks the certificates and keys of `config`; errors are InvalidArgument.
  static Result<std::unique_ptr<HttpsTransport>> Create(const ClusterConfig& config,
                                                        const TransportOptions& options = {});
  ~HttpsTransport() override;

  HttpsTransport(const HttpsTransport&) = delete;
  HttpsTransport& operator=(const HttpsTransport&) = delete;

  Result<HttpResponse> Request(std::string_view method, const std::string& path_and_query,
                               const std::string& body, std::string_view content_type) override;

  Status Stream(std::string_view method, const std::string& path_and_query,
                const std::atomic<bool>& stop, const std::function<bool(int status)>& on_status,
                const std::function<bool(std::string_view chunk)>& on_chunk) override;

  // "https://host:port" plus the base path, for logs.
  const std::string& server() const { return server_; }

  // For tests: how many certificates and CRLs the trust store of each idle pooled connection holds.
  std::vector<size_t> IdleTrustStoreSizesForTesting();

 private:
  struct TlsMaterial;  // parsed OpenSSL objects, immutable after Create

  HttpsTransport(const ClusterConfig& config, const TransportOptions& options,
                 std::unique_ptr<TlsMaterial> tls);

  Status CheckRequest(std::string_view method, const std::string& path_and_query) const;
  // The bearer token for the next request ("" for none); an error when the exec plugin fails.
  Result<std::string> BearerToken();
  // One exchange of Request with `token`.
  Result<HttpResponse> Send(std::string_view method, const std::string& path_and_query,
                            const std::string& body, std::string_view content_type,
                            const std::string& token);
  // The Unavailable status of an exchange that got no (complete) answer.
  Status ExchangeError(const std::string& what, const httplib::SSLClient& client,
                       httplib::Error error) const;
  std::unique_ptr<httplib::SSLClient> NewClient() const;
  // A client from the pool (`*reused` true) or a new one.
  std::unique_ptr<httplib::SSLClient> Acquire(bool* reused);
  void Release(std::unique_ptr<httplib::SSLClient> client);

  const ClusterConfig config_;
  const TransportOptions options_;
  const std::unique_ptr<TlsMaterial> tls_;
  const std::string server_;
  TokenSource token_;
  const std::unique_ptr<ExecCredentialSource> exec_;  // null without config.exec

  std::mutex pool_mu_;
  std::vector<std::unique_ptr<httplib::SSLClient>> idle_;  // guarded by pool_mu_
};

}  // namespace bg::kube
