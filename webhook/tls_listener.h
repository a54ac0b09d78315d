// An event-driven HTTPS/1.1 listener. One event thread accepts connections, runs the TLS
// handshakes and reads requests, all non-blocking, so a connection costs a descriptor and a few
// kilobytes while it is idle, handshaking or trickling in, never a thread. Only a complete request
// goes to a worker, which runs the handler and writes the answer. Thousands of idle or slow
// (slowloris) connections therefore cannot keep new callers waiting, and every phase of a
// connection has its own deadline:
//   handshake       accept → TLS handshake done
//   request         first byte of a request → whole request read (headers and body)
//   idle            between requests on a kept-alive connection
//   write           each answer (in the worker)
//
// The connection cap is shared fairly: idle connections (handshake done, no request under way)
// may fill at most max_connections - connection_reserve slots, the oldest idle one being closed
// when another becomes idle past that; a new connection at the cap takes the place of the oldest
// idle one, else of the oldest still handshaking. Holding slots therefore cannot keep the API
// server out: its connections are recently used, a flood of bare connects ages out first.
//
// Request bodies draw on one byte budget across all connections, counted by what a request has
// promised (its Content-Length, or the chunks announced), while memory only grows as bytes
// arrive. A request whose promise does not fit gets 503 at once. Bodies over kSmallBodyBytes may
// use only three quarters of the budget, so small AdmissionReviews still pass while large uploads
// hold the rest.
//
// Lifecycle: Start() binds and returns once the socket listens; StopAccepting() closes the
// listening socket; Stop() starts no request from then on, closes every connection with no
// answer in progress at once, waits (bounded) for the answers in progress, closes the rest and
// joins the threads. None of them may be called concurrently with itself.
// Thread-safety: the handler runs on many worker threads at once; counters are atomics.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "webhook/http1.h"

namespace bg::webhook {

// Why the listener closed a connection; a metrics label.
enum class CloseReason {
  kClient,            // the client closed it, or asked for "Connection: close"
  kHandshakeFailed,   // TLS refused: protocol version, cipher, client certificate
  kHandshakeTimeout,  // no finished handshake within the handshake timeout
  kRequestTimeout,    // a request started but was not complete within the request timeout
  kIdleTimeout,       // no new request within the idle timeout
  kBadRequest,        // answered a 4xx/5xx for a request the parser refused
  kConnectionLimit,   // accepted while max_connections were open
  kMaxRequests,       // served max_requests_per_connection requests
  kWriteFailed,       // the answer could not be written within the write timeout
  kShutdown,          // the listener stopped
  kEvicted,           // idle or handshaking, closed to make room at the connection cap
  kBodyBudget,        // answered 503: its body did not fit the body budget
};
const char* CloseReasonName(CloseReason reason);

struct TlsListenerOptions {
  std::string host = "0.0.0.0";
  int port = 0;  // 0 picks a free port
  http1::Limits limits;
  std::chrono::milliseconds handshake_timeout{10000};
  // kube-apiserver sends a request at once; 10 s is generous for a 7 MiB body on a slow link.
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds idle_timeout{120000};  // see ServerOptions::keep_alive_timeout
  std::chrono::milliseconds write_timeout{10000};
  std::size_t max_requests_per_connection = 10000;
  // Open connections at most. At the cap a new connection replaces the oldest idle (else the
  // oldest handshaking) one; when every connection is busy it is closed at once, so the answer to
  // too many connections is a fast refusal, not a growing queue.
  std::size_t max_connections = 10000;
  // Slots idle connections may not take, kept for handshakes and requests under way. Must be
  // below max_connections.
  std::size_t connection_reserve = 1000;
  // Bytes of request bodies buffered across all connections at most (see above). The default
  // leaves most of the chart's 256 MiB memory limit to parsing and the rest of the process.
  std::size_t body_budget_bytes = std::size_t{64} * 1024 * 1024;
  // Threads that run handlers. Handlers may wait on the Kubernetes API, so there are more than
  // cores; a worker is taken only by a complete request.
  std::size_t workers = 64;
  // The request of the last event of the event thread's round (a request that came alone, or the
  // last of several, the others going to workers) is answered on the event thread, which saves
  // waking a worker. The handler must then never wait: before waiting (on the network, a lock
  // held for long, a gate) it calls bg::ThrowIfMustNotBlock() (common/nonblocking.h), and the
  // request goes to a worker, which runs the handler again from the start. Off by default: the
  // admission server turns it on, its handlers keep that rule.
  bool answer_last_request_inline = false;
};

// Observes connections for metrics. Called from the listener's threads.
class ListenerObserver {
 public:
  virtual ~ListenerObserver() = default;
  virtual void ConnectionOpened() = 0;
  virtual void ConnectionClosed(CloseReason reason) = 0;
};

// A body larger than this counts as large for the body budget; AdmissionReviews of the engine's
// objects are a few kilobytes.
inline constexpr std::size_t kSmallBodyBytes = std::size_t{256} * 1024;

class TlsListener {
 public:
  // Runs on a worker for each complete request (or on the event thread: see
  // TlsListenerOptions::answer_last_request_inline); `ssl` is the connection's TLS state (for
  // the client certificate), valid during the call.
  using Handler =
      std::function<void(const http1::Request& request, const SSL* ssl, http1::Response& response)>;
  // Builds the answer for a request the parser refused (status and message from the parser).
  using ErrorHandler =
      std::function<void(int status, const std::string& message, http1::Response& response)>;

  // `ctx` is shared with the caller, who may keep configuring callbacks on it; it must outlive
  // the listener. `observer` may be null.
  TlsListener(TlsListenerOptions options, SSL_CTX* ctx, Handler handler, ErrorHandler on_error,
              ListenerObserver* observer);
  ~TlsListener();
  TlsListener(const TlsListener&) = delete;
  TlsListener& operator=(const TlsListener&) = delete;

  Status Start();
  int port() const { return port_; }
  void StopAccepting();
  // Closes idle connections at once, waits up to `grace` for answers being computed or written
  // (their connections close once answered), then closes everything.
  void Stop(std::chrono::milliseconds grace);

  std::size_t open_connections() const;
  std::size_t requests_in_progress() const;
  // Body bytes charged to the body budget now.
  std::size_t buffered_body_bytes() const;

 private:
  struct Connection;
  // The event thread with everything it owns: the listening socket, the connections, the
  // workers. Written by the loop, read here; shared so that a loop abandoned at exit (a handler
  // that does not return) never writes into a destroyed listener.
  struct Counters {
    std::atomic<std::size_t> open{0};
    std::atomic<std::size_t> dispatched{0};
    std::atomic<std::size_t> body_bytes{0};
  };
  class Loop;

  // Kept to build the loop in Start().
  TlsListenerOptions options_;
  SSL_CTX* ctx_;
  Handler handler_;
  ErrorHandler on_error_;
  ListenerObserver* observer_;
  int port_ = 0;
  std::shared_ptr<Counters> counters_;
  std::unique_ptr<Loop> loop_;
};

}  // namespace bg::webhook
