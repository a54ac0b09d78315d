#include "webhook/tls_listener.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "common/nonblocking.h"
#include "common/worker_pool.h"

namespace bg::webhook {
namespace {

using Clock = std::chrono::steady_clock;

// How often deadlines are checked. A deadline may pass by up to this much before it is acted on.
constexpr std::chrono::milliseconds kDeadlineScanInterval{250};
// While exiting, how often the loop looks again for the end of the answers in progress (a
// worker that re-armed its connection just before the exit does not wake it).
constexpr std::chrono::milliseconds kExitPollInterval{5};
// After "Connection: close" or an error answer, the write side is shut and what the client still
// sends is read and dropped for this long, so the kernel does not answer its unread bytes with a
// reset that could destroy our answer before the client reads it (a "lingering close").
constexpr std::chrono::milliseconds kLingerTime{2000};
constexpr std::size_t kMaxLingerBytes = std::size_t{16} * 1024 * 1024;
// When accept() runs out of descriptors, accepting pauses this long instead of spinning.
constexpr std::chrono::milliseconds kAcceptPause{100};
// One TLS record's worth of plaintext per read.
constexpr std::size_t kReadChunk = std::size_t{16} * 1024;
// An idle connection's input buffer is given back when it grew past this.
constexpr std::size_t kKeepBufferCapacity = std::size_t{64} * 1024;

constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";

void CloseFd(int fd) {
  if (fd >= 0) ::close(fd);
}

}  // namespace

const char* CloseReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kClient:
      return "client";
    case CloseReason::kHandshakeFailed:
      return "handshake_failed";
    case CloseReason::kHandshakeTimeout:
      return "handshake_timeout";
    case CloseReason::kRequestTimeout:
      return "request_timeout";
    case CloseReason::kIdleTimeout:
      return "idle_timeout";
    case CloseReason::kBadRequest:
      return "bad_request";
    case CloseReason::kConnectionLimit:
      return "connection_limit";
    case CloseReason::kMaxRequests:
      return "max_requests";
    case CloseReason::kWriteFailed:
      return "write_failed";
    case CloseReason::kShutdown:
      return "shutdown";
    case CloseReason::kEvicted:
      return "evicted";
    case CloseReason::kBodyBudget:
      return "body_budget";
  }
  return "unknown";
}

struct TlsListener::Connection {
  enum class Phase { kHandshake, kIdle, kReading, kDispatched, kLingering };

  Connection(int fd_in, SSL* ssl_in, http1::Limits limits)
      : fd(fd_in), ssl(ssl_in), parser(limits) {}
  ~Connection() {
    if (ssl != nullptr) SSL_free(ssl);
    CloseFd(fd);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  int fd;
  SSL* ssl;
  Phase phase = Phase::kHandshake;
  Clock::time_point deadline;
  std::string in;
  http1::RequestParser parser;
  std::size_t served = 0;
  std::size_t lingered = 0;
  bool continue_sent = false;
  bool tls_broken = false;  // a fatal TLS error: no close_notify may follow
  bool closed = false;      // closed; freed once the current round of events is handled
  // Where the connection sits in the loop's list of its phase (idle or handshaking), if any.
  std::list<Connection*>::iterator queued;
  bool in_queue = false;
  std::size_t body_charge = 0;  // bytes charged to the body budget for the current request

  // Handed to the worker with the connection.
  http1::Request request;
  int error_status = 0;
  std::string error_message;
  // Set by the worker.
  bool close_after = false;
  CloseReason close_reason = CloseReason::kClient;
};

// The event thread: owns every connection that is not with a worker.
class TlsListener::Loop {
 public:
  // Takes `listen_fd`, a listening socket, and closes it when it stops accepting.
  Loop(const TlsListenerOptions& options, SSL_CTX* ctx, Handler handler, ErrorHandler on_error,
       ListenerObserver* observer, int listen_fd, std::shared_ptr<Counters> counters)
      : options_(options),
        ctx_(ctx),
        handler_(std::move(handler)),
        on_error_(std::move(on_error)),
        observer_(observer),
        listen_fd_(listen_fd),
        counters_(std::move(counters)),
        workers_(std::max<std::size_t>(1, options.workers)) {}
  ~Loop() {
    workers_.Join();  // before the connections they may still be answering go
    CloseFd(listen_fd_);
    CloseFd(epoll_fd_);
    CloseFd(wake_fd_);
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  Status Init() {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || wake_fd_ < 0) {
      return Status::Internal(std::string("cannot create the event loop: ") + std::strerror(errno));
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &wake_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    ev.data.ptr = &listen_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    return Status::Ok();
  }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  // From any thread.
  void Finished(Connection* connection) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished_.push_back(connection);
    }
    Wake();
  }
  void RequestStopAccepting() {
    stop_accepting_ = true;
    Wake();
  }
  // From any thread. The loop starts no request from now on and closes every connection that
  // has none in progress; it exits once no answer is in progress, or at `deadline`. Deciding
  // this on the event thread, which alone dispatches, leaves no moment in which a request on a
  // kept-alive connection can start after the last check for answers in progress.
  void RequestExit(Clock::time_point deadline) {
    exit_deadline_ns_ = deadline.time_since_epoch().count();
    exit_ = true;
    Wake();
  }
  // Whether the event thread still holds connections a worker is using (after exit).
  bool left_dispatched() const { return left_dispatched_; }
  // Leaves workers stuck in a handler to the exiting process (with this loop: they use it).
  void AbandonWorkers() { workers_.Detach(); }

 private:
  using Phase = Connection::Phase;

  void Wake() {
    const std::uint64_t one = 1;
    ssize_t ignored = write(wake_fd_, &one, sizeof(one));
    (void)ignored;
  }

  void Run() {
    std::vector<epoll_event> events(256);
    auto next_scan = Clock::now() + kDeadlineScanInterval;
    for (;;) {
      const bool exiting = exit_.load();
      if (exiting) {
        CloseAllButDispatched();
        if (counters_->dispatched.load() == 0 || Clock::now() >= ExitDeadline()) break;
      }
      const int n = epoll_wait(
          epoll_fd_, events.data(), static_cast<int>(events.size()),
          static_cast<int>((exiting ? kExitPollInterval : kDeadlineScanInterval).count()));
      TakeBackRearmed();
      for (int i = 0; i < n; ++i) {
        last_of_round_ = i == n - 1;
        void* tag = events[i].data.ptr;
        if (tag == &wake_fd_) {
          std::uint64_t count = 0;
          ssize_t ignored = read(wake_fd_, &count, sizeof(count));
          (void)ignored;
          HandleFinished();
        } else if (tag == &listen_fd_) {
          Accept();
        } else if (auto* c = static_cast<Connection*>(tag); !c->closed) {
          if (exiting) {
            Close(c, CloseReason::kShutdown);  // never dispatched here: workers re-arm none now
          } else {
            Drive(c);
          }
        }
      }
      if ((stop_accepting_.load() || exiting) && listen_fd_ >= 0) {
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
        CloseFd(listen_fd_);
        listen_fd_ = -1;
      }
      const auto now = Clock::now();
      if (now >= next_scan) {
        ExpireDeadlines(now);
        ResumeAccepting(now);
        next_scan = now + kDeadlineScanInterval;
      }
      closed_.clear();  // no event of this round can name them any more
    }
    TakeBackRearmed();
    HandleFinished();
    CloseAllButDispatched();
    closed_.clear();
    CloseFd(listen_fd_);  // when the exit came before the stop-accepting request was seen
    listen_fd_ = -1;
  }

  Clock::time_point ExitDeadline() const {
    return Clock::time_point(Clock::duration(exit_deadline_ns_.load()));
  }

  // On exit: closes every connection no worker is answering on. One still dispatched is left to
  // its worker (and, past the grace, to the exiting process).
  void CloseAllButDispatched() {
    std::vector<Connection*> open;
    for (auto& [fd, connection] : connections_) open.push_back(connection.get());
    left_dispatched_ = false;
    for (Connection* c : open) {
      if (c->phase == Phase::kDispatched) {
        left_dispatched_ = true;
        continue;
      }
      Close(c, CloseReason::kShutdown);
    }
  }

  void Arm(Connection* c, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events | EPOLLONESHOT;
    ev.data.ptr = c;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
  }

  void Accept() {
    for (;;) {
      if (listen_fd_ < 0) return;
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          log::Warn("cannot accept a connection; pausing accept",
                    {{"error", std::strerror(errno)}, {"open", counters_->open.load()}});
          epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
          accept_paused_until_ = Clock::now() + kAcceptPause;
        }
        return;
      }
      if (observer_ != nullptr) observer_->ConnectionOpened();
      if (counters_->open.load() >= options_.max_connections && !MakeRoom()) {
        CloseFd(fd);
        if (observer_ != nullptr) {
          observer_->ConnectionClosed(CloseReason::kConnectionLimit);
        }
        continue;
      }
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      SSL* ssl = SSL_new(ctx_);
      if (ssl == nullptr) {
        CloseFd(fd);
        if (observer_ != nullptr) {
          observer_->ConnectionClosed(CloseReason::kHandshakeFailed);
        }
        continue;
      }
      SSL_set_fd(ssl, fd);
      SSL_set_accept_state(ssl);
      // Idle connections keep no 16 KiB record buffers; retried writes may pass a moved buffer.
      SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
      auto connection = std::make_unique<Connection>(fd, ssl, options_.limits);
      connection->deadline = Clock::now() + options_.handshake_timeout;
      Connection* c = connection.get();
      connections_.emplace(fd, std::move(connection));
      counters_->open.fetch_add(1);
      Enqueue(c);
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLONESHOT;
      ev.data.ptr = c;
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    }
  }

  void ResumeAccepting(Clock::time_point now) {
    if (!accept_paused_until_ || now < *accept_paused_until_ || listen_fd_ < 0) return;
    accept_paused_until_.reset();
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &listen_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  }

  void Drive(Connection* c) {
    if (c->phase == Phase::kHandshake) {
      ERR_clear_error();
      const int r = SSL_do_handshake(c->ssl);
      if (r != 1) {
        const int err = SSL_get_error(c->ssl, r);
        if (err == SSL_ERROR_WANT_READ) return Arm(c, EPOLLIN);
        if (err == SSL_ERROR_WANT_WRITE) return Arm(c, EPOLLOUT);
        c->tls_broken = true;
        return Close(c, CloseReason::kHandshakeFailed);
      }
      SetPhase(c, Phase::kIdle);
      c->deadline = Clock::now() + options_.idle_timeout;
    }
    if (c->phase == Phase::kLingering) return Linger(c);
    ReadRequest(c);
  }

  // Parses what has arrived and reads more until a request is complete or the socket is empty.
  void ReadRequest(Connection* c) {
    char buffer[kReadChunk];
    for (;;) {
      if (!c->in.empty() || c->parser.Started()) {
        const auto progress = c->parser.Consume(c->in);
        if (c->phase == Phase::kIdle && c->parser.Started()) {
          SetPhase(c, Phase::kReading);
          c->deadline = Clock::now() + options_.request_timeout;
        }
        if (progress != http1::RequestParser::Progress::kError && !ChargeBody(c)) {
          c->error_status = 503;
          c->error_message = "too many request bodies in progress: the server's body buffer (" +
                             std::to_string(options_.body_budget_bytes) +
                             " bytes) is taken; retry later";
          return Dispatch(c);
        }
        if (progress == http1::RequestParser::Progress::kComplete) {
          c->request = c->parser.Take();
          return Dispatch(c);
        }
        if (progress == http1::RequestParser::Progress::kError) {
          c->error_status = c->parser.error_status();
          c->error_message = c->parser.error_message();
          return Dispatch(c);
        }
        if (c->parser.ExpectsContinue() && !c->continue_sent) {
          c->continue_sent = true;
          ERR_clear_error();
          if (SSL_write(c->ssl, kContinue, sizeof(kContinue) - 1) <= 0) {
            c->tls_broken = true;
            return Close(c, CloseReason::kWriteFailed);
          }
        }
      }
      ERR_clear_error();
      const int n = SSL_read(c->ssl, buffer, sizeof(buffer));
      if (n > 0) {
        c->in.append(buffer, static_cast<std::size_t>(n));
        continue;
      }
      const int err = SSL_get_error(c->ssl, n);
      if (err == SSL_ERROR_WANT_READ) return Arm(c, EPOLLIN);
      if (err == SSL_ERROR_WANT_WRITE) return Arm(c, EPOLLOUT);
      if (err != SSL_ERROR_ZERO_RETURN) c->tls_broken = true;
      return Close(c, CloseReason::kClient);
    }
  }

  void Dispatch(Connection* c) {
    SetPhase(c, Phase::kDispatched);
    c->continue_sent = false;
    counters_->dispatched.fetch_add(1);
    if (options_.answer_last_request_inline && last_of_round_ && AnswerHere(c)) return;
    workers_.Submit([this, c] {
      Write(c, Answer(c));
      Answered(c);
    });
  }

  // On the event thread, for the request of the round's last event (after it, nothing is waiting
  // for this thread but epoll): computes the answer here, where waking a worker would cost more
  // than the answer, and writes what the socket takes at once. Requests of the round's other
  // events went to workers, which answer them meanwhile. False, with nothing changed, when the
  // handler was about to wait on the network (common/nonblocking.h): a worker then answers the
  // request from the start. An answer the socket does not take whole is finished by a worker.
  bool AnswerHere(Connection* c) {
    std::string bytes;
    try {
      NonBlockingScope scope;
      bytes = Answer(c);
    } catch (const WouldBlock&) {
      return false;
    }
    int want = 0;
    const std::size_t written = WriteNow(c, bytes, 0, &want);
    if (want != 0) {
      workers_.Submit([this, c, rest = bytes.substr(written)] {
        Write(c, rest);
        Answered(c);
      });
      return true;
    }
    Answered(c);
    return true;
  }

  // After an answer was written, on the thread that wrote it: the connection waits for its next
  // request, or goes back to the event thread.
  void Answered(Connection* c) {
    if (!RearmIdle(c)) Finished(c);
  }

  // On the thread that answered (a worker, or the event thread), after a kept-alive answer with
  // nothing left to parse: it re-arms the connection for its next request itself, and the event
  // thread takes it back (idle queue, deadline) at the start of its next round, which its next
  // event starts anyway. This saves the event thread one wake-up per request, the hand-back that
  // was the largest single cost of the keep-alive tail (bench/notes.md). False when the event
  // thread must see the connection now: to close or linger, or to parse bytes already read.
  bool RearmIdle(Connection* c) {
    if (c->close_after || !c->in.empty() || c->parser.Started() || SSL_has_pending(c->ssl) == 1 ||
        exit_.load()) {
      return false;  // after exit: the hand-back wakes the loop, which closes the connection
    }
    {
      // Under the lock, so that the event thread, which takes `rearmed_` after every
      // epoll_wait, sees the connection before any event the arming below lets through.
      std::lock_guard<std::mutex> lock(mu_);
      rearmed_.push_back(c);
      Arm(c, EPOLLIN);
    }
    counters_->dispatched.fetch_sub(1);  // the last touch: Stop() may now free everything
    return true;
  }

  // On the event thread: connections their workers re-armed become idle here.
  void TakeBackRearmed() {
    std::vector<Connection*> rearmed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (rearmed_.empty()) return;
      rearmed.swap(rearmed_);
    }
    const auto deadline = Clock::now() + options_.idle_timeout;
    for (Connection* c : rearmed) {
      if (c->in.capacity() > kKeepBufferCapacity) c->in.shrink_to_fit();
      SetPhase(c, Phase::kIdle);
      c->deadline = deadline;
    }
  }

  // Runs the handler (or the error handler) and answers the bytes to write. Throws only
  // WouldBlock (from a handler on the event thread), before it changes anything.
  std::string Answer(Connection* c) {
    http1::Response response;
    if (c->error_status != 0) {
      response.status = c->error_status;
      on_error_(c->error_status, c->error_message, response);
      response.close = true;
      c->close_reason =
          c->error_status == 503 ? CloseReason::kBodyBudget : CloseReason::kBadRequest;
    } else {
      try {
        handler_(c->request, c->ssl, response);
      } catch (const WouldBlock&) {
        throw;
      } catch (...) {
        response = http1::Response();
        response.status = 500;
        response.body = "internal error\n";
      }
      c->served += 1;
      c->close_reason = CloseReason::kShutdown;  // the handler chose to close (draining)
      if (!c->request.keep_alive) {
        response.close = true;
        c->close_reason = CloseReason::kClient;
      } else if (c->served >= options_.max_requests_per_connection) {
        response.close = true;
        c->close_reason = CloseReason::kMaxRequests;
      }
    }
    c->request = http1::Request();
    // The body is gone: its share goes back before the answer, so that whatever the client sends
    // once it has the answer finds the budget free again.
    ReleaseBody(c);
    c->close_after = response.close;
    return http1::Serialize(response);
  }

  // Writes what the socket takes without waiting, from `written` on; the bytes written in all.
  // `*want` is the SSL error that stopped it short (want-write or want-read), 0 when it wrote
  // everything or the write failed (then the connection is marked broken).
  std::size_t WriteNow(Connection* c, const std::string& bytes, std::size_t written, int* want) {
    *want = 0;
    while (written < bytes.size()) {
      ERR_clear_error();
      const int n =
          SSL_write(c->ssl, bytes.data() + written,
                    static_cast<int>(std::min<std::size_t>(bytes.size() - written, 1 << 30)));
      if (n > 0) {
        written += static_cast<std::size_t>(n);
        continue;
      }
      const int err = SSL_get_error(c->ssl, n);
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        *want = err;
      } else {
        FailWrite(c);
      }
      break;
    }
    return written;
  }

  void FailWrite(Connection* c) {
    c->tls_broken = true;
    c->close_after = true;
    c->close_reason = CloseReason::kWriteFailed;
  }

  // On a worker: writes `bytes`, waiting for the socket up to the write timeout. (After the event
  // thread's WriteNow, OpenSSL's retry of a want-write is the same bytes at a moved address:
  // allowed.)
  void Write(Connection* c, const std::string& bytes) {
    const auto deadline = Clock::now() + options_.write_timeout;
    std::size_t written = 0;
    int want = 0;
    while ((written = WriteNow(c, bytes, written, &want)) < bytes.size() && want != 0) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        FailWrite(c);
        return;
      }
      pollfd p{c->fd, static_cast<short>(want == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), 0};
      poll(&p, 1, static_cast<int>(left));
    }
  }

  void HandleFinished() {
    std::vector<Connection*> finished;
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished.swap(finished_);
    }
    for (Connection* c : finished) {
      counters_->dispatched.fetch_sub(1);
      c->error_status = 0;
      c->error_message.clear();
      if (c->close_after) {
        if (c->close_reason == CloseReason::kWriteFailed || c->tls_broken) {
          Close(c, c->close_reason);
        } else {
          StartLingering(c);
        }
        continue;
      }
      if (c->in.capacity() > kKeepBufferCapacity && c->in.size() < kKeepBufferCapacity) {
        c->in.shrink_to_fit();
      }
      SetPhase(c, Phase::kIdle);
      c->deadline = Clock::now() + options_.idle_timeout;
      if (exit_.load()) continue;
      ReadRequest(c);  // a pipelined request, or bytes OpenSSL already holds
    }
  }

  void StartLingering(Connection* c) {
    ERR_clear_error();
    SSL_shutdown(c->ssl);  // our close_notify
    ::shutdown(c->fd, SHUT_WR);
    SetPhase(c, Phase::kLingering);
    c->deadline = Clock::now() + kLingerTime;
    c->in.clear();
    c->parser = http1::RequestParser(options_.limits);  // drops a refused body now
    Linger(c);
  }

  void Linger(Connection* c) {
    char buffer[kReadChunk];
    for (;;) {
      ERR_clear_error();
      const int n = SSL_read(c->ssl, buffer, sizeof(buffer));
      if (n > 0) {
        c->lingered += static_cast<std::size_t>(n);
        if (c->lingered > kMaxLingerBytes) return Close(c, c->close_reason);
        continue;
      }
      const int err = SSL_get_error(c->ssl, n);
      if (err == SSL_ERROR_WANT_READ) return Arm(c, EPOLLIN);
      c->tls_broken = err != SSL_ERROR_ZERO_RETURN;
      return Close(c, c->close_reason);
    }
  }

  void ExpireDeadlines(Clock::time_point now) {
    std::vector<std::pair<Connection*, CloseReason>> expired;
    for (auto& [fd, connection] : connections_) {
      Connection* c = connection.get();
      if (c->phase == Phase::kDispatched || now < c->deadline) continue;
      CloseReason reason = CloseReason::kIdleTimeout;
      if (c->phase == Phase::kHandshake) reason = CloseReason::kHandshakeTimeout;
      if (c->phase == Phase::kReading) reason = CloseReason::kRequestTimeout;
      if (c->phase == Phase::kLingering) reason = c->close_reason;
      expired.emplace_back(c, reason);
    }
    for (auto& [c, reason] : expired) {
      c->tls_broken = true;  // a peer that does not read may not take a close_notify either
      Close(c, reason);
    }
  }

  void Close(Connection* c, CloseReason reason) {
    if (!c->tls_broken && c->phase != Phase::kHandshake && c->phase != Phase::kLingering) {
      ERR_clear_error();
      SSL_shutdown(c->ssl);
    }
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
    Dequeue(c);
    ReleaseBody(c);
    c->closed = true;
    // The TLS state and the descriptor are freed after this round of events, which may still
    // name the connection (an eviction closes one that is not the connection being driven).
    auto it = connections_.find(c->fd);
    closed_.push_back(std::move(it->second));
    connections_.erase(it);
    counters_->open.fetch_sub(1);
    if (observer_ != nullptr) observer_->ConnectionClosed(reason);
  }

  // Idle connections join `idle_` and handshaking ones `handshaking_` at the back; the front is
  // the oldest, the first to go when room is needed.
  std::list<Connection*>& QueueOf(Phase phase) {
    return phase == Phase::kIdle ? idle_ : handshaking_;
  }
  void Enqueue(Connection* c) {
    if (c->phase != Phase::kIdle && c->phase != Phase::kHandshake) return;
    auto& queue = QueueOf(c->phase);
    c->queued = queue.insert(queue.end(), c);
    c->in_queue = true;
  }
  void Dequeue(Connection* c) {
    if (!c->in_queue) return;
    QueueOf(c->phase).erase(c->queued);
    c->in_queue = false;
  }
  void SetPhase(Connection* c, Phase phase) {
    Dequeue(c);
    c->phase = phase;
    Enqueue(c);
    if (phase != Phase::kIdle) return;
    // Idle connections leave the reserve to handshakes and requests under way.
    const auto& o = options_;
    const std::size_t idle_share =
        o.max_connections > o.connection_reserve ? o.max_connections - o.connection_reserve : 1;
    while (idle_.size() > idle_share && idle_.front() != c)
      Close(idle_.front(), CloseReason::kEvicted);
  }

  // At the cap: closes the oldest idle connection, else the oldest handshaking one. False when
  // every connection is busy with a request.
  bool MakeRoom() {
    auto& queue = !idle_.empty() ? idle_ : handshaking_;
    if (queue.empty()) return false;
    Connection* victim = queue.front();
    victim->tls_broken = true;  // no close_notify: an idle or half-open peer may not read it
    Close(victim, CloseReason::kEvicted);
    return true;
  }

  // Charges what the current request has promised to the body budget; false when it does not fit.
  // Only the event thread charges, so the check and the addition cannot be overtaken by another
  // charge; a release by a worker in between only leaves more room.
  bool ChargeBody(Connection* c) {
    const std::size_t promised = c->parser.BodyBytesPromised();
    if (promised <= c->body_charge) return true;
    const std::size_t budget = options_.body_budget_bytes;
    const std::size_t limit = promised > kSmallBodyBytes ? budget - budget / 4 : budget;
    const std::size_t more = promised - c->body_charge;
    if (counters_->body_bytes.load() + more > limit) return false;
    counters_->body_bytes.fetch_add(more);
    c->body_charge = promised;
    return true;
  }
  // On the event thread, or on the worker that holds the connection.
  void ReleaseBody(Connection* c) {
    counters_->body_bytes.fetch_sub(c->body_charge);
    c->body_charge = 0;
  }

  const TlsListenerOptions options_;
  SSL_CTX* const ctx_;
  const Handler handler_;
  const ErrorHandler on_error_;
  ListenerObserver* const observer_;
  int listen_fd_;  // -1 once closed
  const std::shared_ptr<Counters> counters_;
  WorkerPool workers_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::unordered_map<int, std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Connection>> closed_;
  std::list<Connection*> idle_;
  std::list<Connection*> handshaking_;
  std::optional<Clock::time_point> accept_paused_until_;
  std::mutex mu_;
  std::vector<Connection*> finished_;
  std::vector<Connection*> rearmed_;
  std::atomic<bool> stop_accepting_{false};
  std::atomic<bool> exit_{false};
  std::atomic<Clock::rep> exit_deadline_ns_{0};  // ExitDeadline(), set before exit_
  bool left_dispatched_ = false;
  bool last_of_round_ = false;  // handling the last event epoll_wait gave (event thread only)
};

namespace {

// A non-blocking listening socket on the first address of `host` (nullptr: every address) in
// `family`, or -1 with `error` set. An IPv6 socket for "::" also takes IPv4 (IPV6_V6ONLY off).
int BindListening(const char* host, int family, const std::string& port, std::string* error) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host, port.c_str(), &hints, &found); rc != 0) {
    *error = gai_strerror(rc);
    return -1;
  }
  int listening = -1;
  for (addrinfo* ai = found; ai != nullptr && listening < 0; ai = ai->ai_next) {
    const int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      *error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    const int zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6 &&
        IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr)) {
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    }
    // The kernel's accept queue, not the 5 of a default listen(): a burst of new connections
    // (an API server scaling out its connection pool) waits in it instead of being dropped.
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
      *error = std::strerror(errno);
      close(fd);
      continue;
    }
    listening = fd;
  }
  freeaddrinfo(found);
  return listening;
}

}  // namespace

TlsListener::TlsListener(TlsListenerOptions options, SSL_CTX* ctx, Handler handler,
                         ErrorHandler on_error, ListenerObserver* observer)
    : options_(std::move(options)),
      ctx_(ctx),
      handler_(std::move(handler)),
      on_error_(std::move(on_error)),
      observer_(observer),
      counters_(std::make_shared<Counters>()) {}

TlsListener::~TlsListener() { Stop(std::chrono::milliseconds(0)); }

std::size_t TlsListener::open_connections() const { return counters_->open.load(); }
std::size_t TlsListener::requests_in_progress() const { return counters_->dispatched.load(); }
std::size_t TlsListener::buffered_body_bytes() const { return counters_->body_bytes.load(); }

Status TlsListener::Start() {
  // OpenSSL writes to the socket with write(), which raises SIGPIPE when the peer has gone; a
  // server must see that as a failed write (EPIPE), not die. Go's runtime does the same.
  signal(SIGPIPE, SIG_IGN);
  // An empty host is every address of both families, as Go's ":9443": one IPv6 socket that also
  // takes IPv4 (IPV6_V6ONLY off), or IPv4 alone where the kernel has no IPv6.
  const std::string port = std::to_string(options_.port);
  const std::string where = options_.host + ":" + port;
  std::string error = "no address";
  int listen_fd = -1;
  if (options_.host.empty()) {
    listen_fd = BindListening(nullptr, AF_INET6, port, &error);
    if (listen_fd < 0) listen_fd = BindListening(nullptr, AF_INET, port, &error);
  } else {
    listen_fd = BindListening(options_.host.c_str(), AF_UNSPEC, port, &error);
  }
  if (listen_fd < 0) return Status::Unavailable("cannot listen on " + where + ": " + error);

  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  getsockname(listen_fd, reinterpret_cast<sockaddr*>(&bound), &length);
  port_ = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  auto loop =
      std::make_unique<Loop>(options_, ctx_, handler_, on_error_, observer_, listen_fd, counters_);
  if (Status s = loop->Init(); !s.ok()) return s;
  loop_ = std::move(loop);
  loop_->Start();
  return Status::Ok();
}

void TlsListener::StopAccepting() {
  if (loop_) loop_->RequestStopAccepting();
}

void TlsListener::Stop(std::chrono::milliseconds grace) {
  if (!loop_) return;
  loop_->RequestStopAccepting();
  loop_->RequestExit(Clock::now() + grace);
  loop_->Join();
  if (loop_->left_dispatched() || counters_->dispatched.load() > 0) {
    log::Warn("answers still in progress at exit", {{"requests", counters_->dispatched.load()}});
    loop_->AbandonWorkers();
    // Workers still use the loop and their connections; both are left to the exiting process.
    (void)loop_.release();
    return;
  }
  loop_.reset();
}

}  // namespace bg::webhook
