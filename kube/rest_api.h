// RestKubeApi: the KubeApi (kube/api.h) over the Kubernetes REST API, through an ApiTransport.
//
//  - Paths: the core group is /api/v1, other groups /apis/{group}/{version}; a non-empty namespace
//    addresses /namespaces/{ns}/{resource}[/{name}], an empty one the cluster-scoped (or
//    all-namespaces) collection. Names and query values are URL-encoded.
//  - List pages through the collection (limit/continue) and answers one List object: every
//    page's items, each with the kind and apiVersion that list responses leave out, under the
//    first page's metadata (its resourceVersion is the snapshot that all pages come from).
//  - Create POSTs, Update PUTs to the object's name, MergePatch PATCHes with
//    application/merge-patch+json, Delete sends DeleteOptions with background propagation and,
//    given a uid, a uid precondition.
//  - Errors map from the HTTP status as KubeApi documents, with the API server's Status message
//    in the text. A Conflict goes back to the caller, who re-reads and decides (the same request
//    would conflict again), and a 404 is NotFound, which the caller may count as done.
//  - Retries (RestKubeApiOptions::retry; off by default, so that admission lookups answer within
//    the API server's few seconds): a bounded number of attempts with capped, jittered exponential
//    backoff, on 429 (after Retry-After, seconds form, or the Status' retryAfterSeconds), and, for
//    requests whose replay is safe, on 5xx and on a failed exchange (timeout, connection). Replay
//    is safe for GET, merge PATCH and DELETE: a merge patch is idempotent, and a replayed finalizer
//    release (resourceVersion) or DELETE (uid) that had already landed answers Conflict or
//    NotFound, which callers read as "changed, read again" or "gone". POST and PUT are replayed
//    only after a 429, which says the API server did not process them: a create or update whose
//    outcome is unknown goes back to the caller, who must read before writing again. A 5xx saying
//    an admission webhook could not be called is not retried here (the API server has already
//    waited the webhook's timeout; see WebhookErrorOf).
//  - Watch streams newline-delimited events and hands each one over as soon as its line is
//    complete; see Watch below.
//  - Every request but a watch first takes a token from a client-side RateLimiter, so that a
//    burst of work (an uninstall of thousands of objects) cannot flood the API server.
//
// Thread-safety: all methods may be called from many threads at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kube/api.h"
#include "kube/clock.h"
#include "kube/rate_limiter.h"
#include "kube/server_clock.h"
#include "kube/transport.h"

namespace bg::kube {

struct RestKubeApiOptions {
  // client-go's defaults (5 QPS, burst 10) suit one controller among many; this process is the
  // only writer of its kinds and an uninstall deletes thousands of objects, so it may go faster
  // while staying far below what one API server serves. qps <= 0 turns limiting off.
  double qps = 50;
  int burst = 100;
  // Items per List page. Pages bound the API server's work per request and the size of one
  // response (500 is client-go's pager default).
  int64_t list_page_size = 500;
  // Watches ask the server to end the stream after this long plus up to `watch_timeout_jitter`,
  // so that the watches of many replicas do not all restart at the same moment.
  std::chrono::seconds watch_timeout{300};
  std::chrono::seconds watch_timeout_jitter{60};
  // One watch event (one object) larger than this ends the watch with Gone (list again). Objects
  // are limited to about 1.5 MiB by etcd; this only bounds a misbehaving stream.
  size_t max_watch_event_bytes = size_t{16} * 1024 * 1024;
  const Clock* clock = nullptr;  // measures the rate limiter; null: Clock::Real()
  struct Retry {
    int max_attempts = 1;  // 1: no retry
    std::chrono::milliseconds initial_backoff{250};
    std::chrono::milliseconds max_backoff{8000};
    // A Retry-After longer than this is cut to it, so one answer cannot park a caller for long.
    std::chrono::seconds max_retry_after{60};
  } retry;
  // Waits between attempts; null: std::this_thread::sleep_for. For tests.
  std::function<void(std::chrono::milliseconds)> sleep;
  // Fencing for a client that writes only under a Lease (LeaderElector::LeadershipDeadline):
  // when set, every write (any method but GET) and each of its retries asks it for a deadline
  // on `clock`. Nothing, or a deadline already passed: the write is not sent (Unavailable).
  // Otherwise the request carries `timeout=<ms left>ms`, so the API server gives it up at the
  // deadline instead of applying it after another replica has taken the Lease.
  std::function<std::optional<Clock::TimePoint>()> write_deadline;
  // Every write (POST, PUT, PATCH, DELETE) carries `dryRun=All` (in the query, and for a DELETE
  // also in its DeleteOptions body, which the API server reads instead of the query when a body is
  // sent): the API server runs it through
  // validation and every admission webhook, answers as it would, and persists nothing
  // (`uninstall --dry-run=server`). Reads are unaffected.
  bool dry_run_all = false;
  // When set, the Date header of every answer (retries included; watches excepted) is recorded
  // in it, so that the caller can read ages on the API server's clock. Must outlive the client.
  ServerClock* server_clock = nullptr;
};

// The retry policy of a command that is not inside an admission request (`uninstall`): 6 attempts
// with backoff from 250 ms doubling to 8 s, about 16 s in all before a call gives up.
RestKubeApiOptions::Retry CommandRetry();

// An API server's answer to a write that an admission webhook refused ("admission webhook "NAME"
// denied the request: REASON") or could not be called for under failurePolicy Fail ("failed
// calling webhook "NAME": ..."), read from a Status message.
struct WebhookError {
  std::string webhook;
  std::string reason;
  bool denied = false;  // true: denied; false: the call failed
};
std::optional<WebhookError> WebhookErrorOf(std::string_view message);

// Percent-encodes everything but RFC 3986 unreserved characters, for a path segment or a query
// value.
std::string UrlEncode(std::string_view s);

// The HTTP status and the API server's reason that StatusFromHttp wrote into `s`, for logs that
// report them as fields; nothing for a Status that StatusFromHttp did not make (a failed
// exchange, a malformed body).
struct HttpFailure {
  int status = 0;
  std::string reason;
};
std::optional<HttpFailure> HttpFailureOf(const Status& s);

// The request path of a collection (`name` empty) or of one object.
std::string ResourcePath(const ResourceRef& r, const std::string& ns, const std::string& name = "");

// The Status for a non-2xx answer `http_status` whose body is `body`: the mapping of kube/api.h,
// with `what` and the API server's Status message (else the start of the body) in the text.
// A 404 is NotFound only when its Status names the object (details.name); a 404 for a resource
// type the API server does not serve is Unavailable.
Status StatusFromHttp(int http_status, const std::string& body, const std::string& what);

class RestKubeApi final : public KubeApi {
 public:
  // `transport` must not be null.
  explicit RestKubeApi(std::shared_ptr<ApiTransport> transport, RestKubeApiOptions options = {});

  RestKubeApi(const RestKubeApi&) = delete;
  RestKubeApi& operator=(const RestKubeApi&) = delete;

  Result<nlohmann::json> Get(const ResourceRef& r, const std::string& ns,
                             const std::string& name) override;
  Result<nlohmann::json> List(const ResourceRef& r, const std::string& ns,
                              const std::string& label_selector) override;
  // Sets kind and apiVersion from `r` when `obj` lacks them.
  Result<nlohmann::json> Create(const ResourceRef& r, const std::string& ns,
                                const nlohmann::json& obj) override;
  // Sets kind and apiVersion from `r` when `obj` lacks them; `obj` must have metadata.name.
  Result<nlohmann::json> Update(const ResourceRef& r, const std::string& ns,
                                const nlohmann::json& obj) override;
  Result<nlohmann::json> MergePatch(const ResourceRef& r, const std::string& ns,
                                    const std::string& name, const nlohmann::json& patch) override;
  Status Delete(const ResourceRef& r, const std::string& ns, const std::string& name,
                const std::string& uid = "") override;
  // The object of a 200 answer (not a Status), else an empty object.
  Result<nlohmann::json> DeleteReturningObject(const ResourceRef& r, const std::string& ns,
                                               const std::string& name,
                                               const std::string& uid = "") override;
  // DELETE with DeleteOptions.preconditions {uid, resourceVersion} (each only when non-empty).
  Result<nlohmann::json> DeleteUnchanged(const ResourceRef& r, const std::string& ns,
                                         const std::string& name, const std::string& uid,
                                         const std::string& resource_version) override;
  // Pages of list_page_size items (one request when it is 0), each handed over as it arrives.
  Status ListPages(const ResourceRef& r, const std::string& ns, const std::string& label_selector,
                   const PageFn& on_page) override;

  // GET ...?watch=true&allowWatchBookmarks=true&resourceVersion=RV&timeoutSeconds=N, streamed.
  // Each complete line is one event, handed to `on_event` at once (BOOKMARK events included).
  //  - non-200 answer: the mapped Status (410 is Gone);
  //  - ERROR event: Gone when its Status has code 410, else Unavailable with its message;
  //  - a line that is not an event (not JSON, no type, no object), longer than
  //    max_watch_event_bytes, or cut short at the end of the stream: Gone. The event is not
  //    skipped silently, and resuming from the last version seen would read the same event again
  //    for ever, so the caller must list again (the list's version is past it);
  //  - the server ending the stream, `on_event` returning false, `stop` set: Ok.
  // An empty `resource_version` starts from the current state (the server sends it as ADDED).
  Status Watch(const ResourceRef& r, const std::string& ns, const std::string& resource_version,
               const std::function<bool(const WatchEvent&)>& on_event,
               const std::atomic<bool>& stop) override;

 private:
  // A rate-limited, non-streaming request; `what` names it in errors. 2xx answers are parsed
  // as a JSON object; anything else is the mapped Status.
  Result<nlohmann::json> Call(std::string_view method, const std::string& path,
                              const std::string& body, std::string_view content_type,
                              const std::string& what);
  // One rate-limited exchange, retried as the class comment says.
  Result<HttpResponse> Exchange(std::string_view method, const std::string& path,
                                const std::string& body, std::string_view content_type,
                                const std::string& what);
  // How long to wait before attempt `attempt + 1` after `response`, or nothing: do not retry.
  std::optional<std::chrono::milliseconds> RetryDelay(std::string_view method,
                                                      const Result<HttpResponse>& response,
                                                      int attempt);
  std::chrono::seconds WatchTimeout();
  // `path` with `dryRun=All` appended when options_.dry_run_all (writes only).
  std::string WritePath(std::string path) const;

  const std::shared_ptr<ApiTransport> transport_;
  const RestKubeApiOptions options_;
  RateLimiter limiter_;
};

}  // namespace bg::kube
