#include "kube/rest_api.h"

#include <algorithm>
#include <random>
#include <string_view>
#include <thread>
#include <utility>

#include "common/log.h"

namespace bg::kube {
namespace {

using nlohmann::json;

// Enough of an error body to see the API server's reason, not enough to flood a log line.
constexpr size_t kBodyExcerptBytes = 300;
// A watch refused with a non-200 status carries a Status object of a few hundred bytes; more than
// this is not read.
constexpr size_t kWatchErrorBodyBytes = size_t{64} * 1024;

// The start of `text`, without trailing white space (plain-text error bodies end in a newline).
std::string Excerpt(std::string_view text) {
  text = text.substr(0, kBodyExcerptBytes);
  const size_t end = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(0, end == std::string_view::npos ? 0 : end + 1));
}

// `s` with `what` in front of its message, same code.
Status WithContext(const Status& s, const std::string& what) {
  std::string m = what + ": " + s.message();
  switch (s.code()) {
    case Status::Code::kOk:
      return s;
    case Status::Code::kInvalidArgument:
      return Status::InvalidArgument(std::move(m));
    case Status::Code::kNotFound:
      return Status::NotFound(std::move(m));
    case Status::Code::kConflict:
      return Status::Conflict(std::move(m));
    case Status::Code::kUnavailable:
      return Status::Unavailable(std::move(m));
    case Status::Code::kInternal:
      return Status::Internal(std::move(m));
    case Status::Code::kGone:
      return Status::Gone(std::move(m));
    case Status::Code::kPermissionDenied:
      return Status::PermissionDenied(std::move(m));
    case Status::Code::kTooLarge:
      return Status::TooLarge(std::move(m));
  }
  return Status::Internal(std::move(m));
}

// A watch event that cannot be read. Resuming from the last version read would bring the same
// event back for ever (the cache would freeze), so it is Gone: the caller lists again, which
// yields a version past it.
Status Unreadable(const std::string& message) {
  return Status::Gone(message + " (cannot resume past it: list again)");
}

// Names the API server cannot hold; "." and ".." would also change the path's meaning.
bool IsAddressableName(const std::string& name) {
  return !name.empty() && name != "." && name != "..";
}

std::string ObjectName(const json& obj) {
  if (!obj.is_object()) return "";
  auto meta = obj.find("metadata");
  if (meta == obj.end() || !meta->is_object()) return "";
  auto name = meta->find("name");
  return name != meta->end() && name->is_string() ? name->get<std::string>() : "";
}

std::string ApiVersionOf(const ResourceRef& r) {
  return r.group.empty() ? r.version : r.group + "/" + r.version;
}

// The body of a write: `obj` with kind and apiVersion, which the API server requires and list
// items lack, filled in from `r`.
Result<std::string> WriteBody(const ResourceRef& r, const json& obj) {
  if (!obj.is_object()) return Status::InvalidArgument("object to write is not a JSON object");
  json body = obj;
  if (!body.contains("apiVersion")) body["apiVersion"] = ApiVersionOf(r);
  if (!body.contains("kind") && !r.kind.empty()) body["kind"] = r.kind;
  return body.dump();
}

// "backups ns/name", "backups in ns" or "customresourcedefinitions name", for messages.
std::string Describe(const ResourceRef& r, const std::string& ns, const std::string& name) {
  if (name.empty()) return ns.empty() ? r.resource : r.resource + " in " + ns;
  return r.resource + " " + (ns.empty() ? name : ns + "/" + name);
}

json ParseOrDiscard(std::string_view text) {
  try {
    return json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  } catch (const json::exception&) {
    return json(json::value_t::discarded);
  }
}

// List items carry no kind or apiVersion; the list names them ("BackupList" and its apiVersion).
struct ItemType {
  std::string kind;
  std::string api_version;
};

ItemType ItemTypeOf(const json& list, const ResourceRef& r) {
  ItemType type{r.kind, ApiVersionOf(r)};
  if (auto k = list.find("kind"); k != list.end() && k->is_string()) {
    const std::string list_kind = k->get<std::string>();
    if (list_kind.size() > 4 && list_kind.ends_with("List")) {
      type.kind = list_kind.substr(0, list_kind.size() - 4);
    }
  }
  if (auto v = list.find("apiVersion"); v != list.end() && v->is_string()) {
    type.api_version = v->get<std::string>();
  }
  return type;
}

void StampItemType(json& item, const ItemType& type) {
  if (!item.is_object()) return;
  if (!type.kind.empty() && !item.contains("kind")) item["kind"] = type.kind;
  if (!item.contains("apiVersion")) item["apiVersion"] = type.api_version;
}

// A page's path: `base` ends in '?' or '&'; a limit of 0 asks for everything at once.
std::string PagePath(const std::string& base, int64_t limit, const std::string& token) {
  std::string path = base;
  if (limit > 0) path += "limit=" + std::to_string(limit) + "&";
  if (!token.empty()) path += "continue=" + UrlEncode(token) + "&";
  path.pop_back();  // the trailing '&' or '?'
  return path;
}

// The continue token of a list page; empty on the last page.
std::string ContinueToken(const json& page) {
  if (auto meta = page.find("metadata"); meta != page.end() && meta->is_object()) {
    if (auto c = meta->find("continue"); c != meta->end() && c->is_string()) {
      return c->get<std::string>();
    }
  }
  return {};
}

// Whether a request may be sent again when its outcome is unknown (see the header).
bool ReplaySafe(std::string_view method) {
  return method == "GET" || method == "PATCH" || method == "DELETE";
}

// The seconds of a Retry-After header in its seconds form; nothing for an HTTP date or garbage.
std::optional<int64_t> RetryAfterSeconds(std::string_view header) {
  const size_t begin = header.find_first_not_of(' ');
  const size_t end = header.find_last_not_of(' ');
  if (begin == std::string_view::npos) return std::nullopt;
  header = header.substr(begin, end - begin + 1);
  if (header.empty() || header.size() > 9) return std::nullopt;
  int64_t seconds = 0;
  for (const char c : header) {
    if (c < '0' || c > '9') return std::nullopt;
    seconds = seconds * 10 + (c - '0');
  }
  return seconds;
}

// The Retry-After of an answer: its header, else the Status' details.retryAfterSeconds (which
// the API server sets on 429 answers too).
std::optional<int64_t> RetryAfterOf(const HttpResponse& response) {
  if (auto header = RetryAfterSeconds(response.retry_after)) return header;
  const json status = ParseOrDiscard(response.body);
  if (!status.is_object()) return std::nullopt;
  auto details = status.find("details");
  if (details == status.end() || !details->is_object()) return std::nullopt;
  auto seconds = details->find("retryAfterSeconds");
  if (seconds == details->end() || !seconds->is_number_integer()) return std::nullopt;
  const int64_t v = seconds->get<int64_t>();
  return v >= 0 ? std::optional<int64_t>(v) : std::nullopt;
}

std::string StatusMessageOf(const std::string& body) {
  const json status = ParseOrDiscard(body);
  if (!status.is_object()) return body;
  auto message = status.find("message");
  return message != status.end() && message->is_string() ? message->get<std::string>() : body;
}

// The text between the first `"` after `at` and the next `"` (a webhook's name).
std::string QuotedAfter(std::string_view message, size_t at, size_t* end) {
  const size_t open = message.find('"', at);
  if (open == std::string_view::npos) return "";
  const size_t close = message.find('"', open + 1);
  if (close == std::string_view::npos) return "";
  *end = close + 1;
  return std::string(message.substr(open + 1, close - open - 1));
}

}  // namespace

RestKubeApiOptions::Retry CommandRetry() {
  RestKubeApiOptions::Retry retry;
  retry.max_attempts = 6;
  return retry;
}

std::optional<WebhookError> WebhookErrorOf(std::string_view message) {
  // k8s.io/apiserver/pkg/admission/plugin/webhook/errors: ToStatusErr ("admission webhook %q
  // denied the request: %s") and the failure of a call ("failed calling webhook %q: %v").
  static constexpr std::string_view kDenied = "admission webhook \"";
  static constexpr std::string_view kDeniedTail = " denied the request";
  static constexpr std::string_view kFailed = "failed calling webhook \"";
  WebhookError e;
  size_t end = 0;
  if (size_t at = message.find(kDenied); at != std::string_view::npos) {
    e.webhook = QuotedAfter(message, at + kDenied.size() - 1, &end);
    if (e.webhook.empty() || message.substr(end, kDeniedTail.size()) != kDeniedTail) {
      return std::nullopt;
    }
    e.denied = true;
    std::string_view rest = message.substr(end + kDeniedTail.size());
    if (rest.starts_with(": ")) rest.remove_prefix(2);
    e.reason = std::string(rest);
    return e;
  }
  if (size_t at = message.find(kFailed); at != std::string_view::npos) {
    e.webhook = QuotedAfter(message, at + kFailed.size() - 1, &end);
    if (e.webhook.empty()) return std::nullopt;
    std::string_view rest = message.substr(end);
    if (rest.starts_with(": ")) rest.remove_prefix(2);
    e.reason = std::string(rest);
    return e;
  }
  return std::nullopt;
}

namespace {

bool NamesAnObject(const json& status) {
  if (!status.is_object()) return false;
  auto details = status.find("details");
  if (details == status.end() || !details->is_object()) return false;
  auto name = details->find("name");
  return name != details->end() && name->is_string() && !name->get<std::string>().empty();
}

}  // namespace

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    const bool unreserved = (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') ||
                            (u >= '0' && u <= '9') || u == '-' || u == '.' || u == '_' || u == '~';
    if (unreserved) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    }
  }
  return out;
}

std::optional<HttpFailure> HttpFailureOf(const Status& s) {
  // StatusFromHttp writes "<what>: HTTP <status>[: <reason>]".
  static constexpr std::string_view kMarker = ": HTTP ";
  const std::string& m = s.message();
  const size_t at = m.find(kMarker);
  if (s.ok() || at == std::string::npos) return std::nullopt;
  size_t end = at + kMarker.size();
  int status = 0;
  while (end < m.size() && m[end] >= '0' && m[end] <= '9' && status < 1000) {
    status = status * 10 + (m[end++] - '0');
  }
  if (status < 100 || status > 999) return std::nullopt;
  HttpFailure failure{status, ""};
  if (m.compare(end, 2, ": ") == 0) failure.reason = m.substr(end + 2);
  return failure;
}

std::string ResourcePath(const ResourceRef& r, const std::string& ns, const std::string& name) {
  std::string path = r.group.empty() ? "/api/" + UrlEncode(r.version)
                                     : "/apis/" + UrlEncode(r.group) + "/" + UrlEncode(r.version);
  if (!ns.empty()) path += "/namespaces/" + UrlEncode(ns);
  path += "/" + UrlEncode(r.resource);
  if (!name.empty()) path += "/" + UrlEncode(name);
  return path;
}

Status StatusFromHttp(int http_status, const std::string& body, const std::string& what) {
  std::string reason;
  json status = ParseOrDiscard(body);
  if (status.is_object()) {
    auto message = status.find("message");
    if (message != status.end() && message->is_string()) reason = message->get<std::string>();
  }
  if (reason.empty()) reason = Excerpt(body);
  std::string m = what + ": HTTP " + std::to_string(http_status);
  if (!reason.empty()) m += ": " + reason;
  switch (http_status) {
    case 400:
    case 422:
      return Status::InvalidArgument(std::move(m));
    case 403:
      return Status::PermissionDenied(std::move(m));
    case 404:
      // Absence only when the answer names the object: kube-apiserver says "the server could not
      // find the requested resource" with no details.name for a resource type it does not serve
      // (yet: its CRD handler starting, an HA peer behind; kubernetes issue #115241), and that
      // is an error, never a sign that an object is gone (SPEC.md, "Finalizer processor").
      if (NamesAnObject(status)) return Status::NotFound(std::move(m));
      return Status::Unavailable(m + " (no object named: the resource type is not served)");
    case 409:
      return Status::Conflict(std::move(m));
    case 410:
      return Status::Gone(std::move(m));
    default:
      return Status::Unavailable(std::move(m));
  }
}

RestKubeApi::RestKubeApi(std::shared_ptr<ApiTransport> transport, RestKubeApiOptions options)
    : transport_(std::move(transport)),
      options_(std::move(options)),
      limiter_(options_.qps, options_.burst, options_.clock) {}

std::optional<std::chrono::milliseconds> RestKubeApi::RetryDelay(
    std::string_view method, const Result<HttpResponse>& response, int attempt) {
  const RestKubeApiOptions::Retry& retry = options_.retry;
  if (attempt >= retry.max_attempts) return std::nullopt;
  const bool replay_safe = ReplaySafe(method);
  if (response.ok()) {
    const int status = response->status;
    if (status != 429 && (status < 500 || !replay_safe)) return std::nullopt;
    if (status >= 500 && WebhookErrorOf(StatusMessageOf(response->body))) return std::nullopt;
    if (status == 429 || status == 503) {
      if (std::optional<int64_t> seconds = RetryAfterOf(*response)) {
        return std::chrono::milliseconds(
            std::min<int64_t>(*seconds, retry.max_retry_after.count()) * 1000);
      }
    }
  } else if (!replay_safe || response.status().code() != Status::Code::kUnavailable) {
    return std::nullopt;  // TooLarge, InvalidArgument: the same request fails the same way
  }
  // Exponential from initial_backoff, capped, with "equal jitter" (half fixed, half random) so
  // that many workers failing together do not come back together.
  int64_t backoff = retry.initial_backoff.count();
  for (int i = 1; i < attempt && backoff < retry.max_backoff.count(); ++i) backoff *= 2;
  backoff = std::min<int64_t>(backoff, retry.max_backoff.count());
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<int64_t> jitter(0, std::max<int64_t>(0, backoff / 2));
  return std::chrono::milliseconds(backoff - backoff / 2 + jitter(rng));
}

Result<HttpResponse> RestKubeApi::Exchange(std::string_view method, const std::string& path,
                                           const std::string& body, std::string_view content_type,
                                           const std::string& what) {
  for (int attempt = 1;; ++attempt) {
    limiter_.Acquire();
    std::string target = path;
    if (method != "GET" && options_.write_deadline) {
      const std::optional<Clock::TimePoint> deadline = options_.write_deadline();
      const Clock* clock = options_.clock != nullptr ? options_.clock : Clock::Real();
      const long long left_ms =
          deadline ? std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - clock->Now())
                         .count()
                   : 0;
      if (left_ms < 1) {
        return Status::Unavailable(what +
                                   ": not sent: the leadership it was made under has lapsed");
      }
      target += (target.find('?') == std::string::npos ? "?" : "&");
      target += "timeout=" + std::to_string(left_ms) + "ms";
    }
    Result<HttpResponse> response = transport_->Request(method, target, body, content_type);
    if (options_.server_clock != nullptr && response.ok()) {
      options_.server_clock->Observe(response->date);
    }
    const std::optional<std::chrono::milliseconds> wait = RetryDelay(method, response, attempt);
    if (!wait) return response;
    log::Info("retrying a Kubernetes API request",
              {{"request", what},
               {"attempt", attempt + 1},
               {"wait_ms", wait->count()},
               {"after", response.ok() ? "HTTP " + std::to_string(response->status)
                                       : response.status().message()}});
    if (options_.sleep) {
      options_.sleep(*wait);
    } else {
      std::this_thread::sleep_for(*wait);
    }
  }
}

Result<json> RestKubeApi::Call(std::string_view method, const std::string& path,
                               const std::string& body, std::string_view content_type,
                               const std::string& what) {
  Result<HttpResponse> response = Exchange(method, path, body, content_type, what);
  if (!response.ok()) return WithContext(response.status(), what);
  if (response->status < 200 || response->status >= 300) {
    return StatusFromHttp(response->status, response->body, what);
  }
  json parsed = ParseOrDiscard(response->body);
  if (!parsed.is_object()) {
    return Status::Unavailable(what + ": malformed response: " + Excerpt(response->body));
  }
  return parsed;
}

Result<json> RestKubeApi::Get(const ResourceRef& r, const std::string& ns,
                              const std::string& name) {
  const std::string what = "get " + Describe(r, ns, name);
  // An unnamed object does not exist (and the path would address the whole collection).
  if (!IsAddressableName(name)) return Status::NotFound(what + ": no such name");
  return Call("GET", ResourcePath(r, ns, name), "", "", what);
}

Result<json> RestKubeApi::List(const ResourceRef& r, const std::string& ns,
                               const std::string& label_selector) {
  const std::string what = "list " + Describe(r, ns, "");
  std::string base = ResourcePath(r, ns) + "?";
  if (!label_selector.empty()) base += "labelSelector=" + UrlEncode(label_selector) + "&";

  // Paginated first; when a continue token expires mid-way (410), the pages already read no
  // longer form one snapshot, so the whole list is read again in one unpaginated request, as
  // client-go's pager does.
  for (const bool paginate : {options_.list_page_size > 0, false}) {
    json list;
    json items = json::array();
    std::string token;
    bool expired = false;
    do {
      const std::string path = PagePath(base, paginate ? options_.list_page_size : 0, token);
      Result<json> page = Call("GET", path, "", "", what);
      if (!page.ok()) {
        if (!token.empty() && page.status().code() == Status::Code::kGone) {
          log::Warn("list continue token expired; listing again without pages",
                    {{"resource", r.resource}, {"namespace", ns}});
          expired = true;
          break;
        }
        return page.status();
      }
      json& body = page.value();
      auto page_items = body.find("items");
      if (page_items != body.end() && !page_items->is_null()) {
        if (!page_items->is_array()) {
          return Status::Unavailable(what + ": malformed response: items is not an array");
        }
        for (json& item : *page_items) items.push_back(std::move(item));
      }
      std::string next = ContinueToken(body);
      if (!next.empty() && next == token) {
        return Status::Unavailable(what + ": the server repeated a continue token");
      }
      if (list.is_null()) {
        body.erase("items");
        list = std::move(body);
      }
      token = std::move(next);
    } while (paginate && !token.empty());
    if (expired) continue;

    // The first page's metadata describes the snapshot; what is left of paging goes.
    if (list.contains("metadata") && list["metadata"].is_object()) {
      list["metadata"].erase("continue");
      list["metadata"].erase("remainingItemCount");
    }
    const ItemType type = ItemTypeOf(list, r);
    for (json& item : items) StampItemType(item, type);
    list["items"] = std::move(items);
    return list;
  }
  return Status::Internal(what + ": unreachable");  // the unpaginated pass always returns
}

Status RestKubeApi::ListPages(const ResourceRef& r, const std::string& ns,
                              const std::string& label_selector, const PageFn& on_page) {
  const std::string what = "list " + Describe(r, ns, "");
  std::string base = ResourcePath(r, ns) + "?";
  if (!label_selector.empty()) base += "labelSelector=" + UrlEncode(label_selector) + "&";
  std::string token;
  do {
    Result<json> page = Call("GET", PagePath(base, options_.list_page_size, token), "", "", what);
    if (!page.ok()) return page.status();  // an expired token is Gone: the caller starts again
    json& body = page.value();
    const ItemType type = ItemTypeOf(body, r);
    std::vector<json> items;
    if (auto page_items = body.find("items"); page_items != body.end() && !page_items->is_null()) {
      if (!page_items->is_array()) {
        return Status::Unavailable(what + ": malformed response: items is not an array");
      }
      items.reserve(page_items->size());
      for (json& item : *page_items) {
        StampItemType(item, type);
        items.push_back(std::move(item));
      }
    }
    std::string next = ContinueToken(body);
    if (!next.empty() && next == token) {
      return Status::Unavailable(what + ": the server repeated a continue token");
    }
    body = json();  // the page's text and DOM go before the caller keeps what it needs
    on_page(items);
    token = std::move(next);
  } while (options_.list_page_size > 0 && !token.empty());
  return Status::Ok();
}

Result<json> RestKubeApi::Create(const ResourceRef& r, const std::string& ns, const json& obj) {
  const std::string what = "create " + Describe(r, ns, ObjectName(obj));
  Result<std::string> body = WriteBody(r, obj);
  if (!body.ok()) return WithContext(body.status(), what);
  return Call("POST", WritePath(ResourcePath(r, ns)), body.value(), "application/json", what);
}

Result<json> RestKubeApi::Update(const ResourceRef& r, const std::string& ns, const json& obj) {
  const std::string name = ObjectName(obj);
  const std::string what = "update " + Describe(r, ns, name);
  if (!IsAddressableName(name)) return Status::InvalidArgument(what + ": object has no name");
  Result<std::string> body = WriteBody(r, obj);
  if (!body.ok()) return WithContext(body.status(), what);
  return Call("PUT", WritePath(ResourcePath(r, ns, name)), body.value(), "application/json", what);
}

Result<json> RestKubeApi::MergePatch(const ResourceRef& r, const std::string& ns,
                                     const std::string& name, const json& patch) {
  const std::string what = "patch " + Describe(r, ns, name);
  if (!IsAddressableName(name)) return Status::InvalidArgument(what + ": no object name");
  if (!patch.is_object()) return Status::InvalidArgument(what + ": patch is not a JSON object");
  return Call("PATCH", WritePath(ResourcePath(r, ns, name)), patch.dump(),
              "application/merge-patch+json", what);
}

Status RestKubeApi::Delete(const ResourceRef& r, const std::string& ns, const std::string& name,
                           const std::string& uid) {
  Result<json> deleted = DeleteReturningObject(r, ns, name, uid);
  return deleted.ok() ? Status::Ok() : deleted.status();
}

Result<json> RestKubeApi::DeleteReturningObject(const ResourceRef& r, const std::string& ns,
                                                const std::string& name, const std::string& uid) {
  return DeleteUnchanged(r, ns, name, uid, "");
}

Result<json> RestKubeApi::DeleteUnchanged(const ResourceRef& r, const std::string& ns,
                                          const std::string& name, const std::string& uid,
                                          const std::string& resource_version) {
  const std::string what = "delete " + Describe(r, ns, name);
  // Without a name the request would delete the whole collection.
  if (!IsAddressableName(name)) return Status::InvalidArgument(what + ": no object name");
  json options = {
      {"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", "Background"}};
  if (!uid.empty()) options["preconditions"]["uid"] = uid;
  if (!resource_version.empty()) options["preconditions"]["resourceVersion"] = resource_version;
  // With a body, the API server reads DeleteOptions from it alone and ignores the query's dryRun.
  if (options_.dry_run_all) options["dryRun"] = {"All"};
  Result<HttpResponse> response = Exchange("DELETE", WritePath(ResourcePath(r, ns, name)),
                                           options.dump(), "application/json", what);
  if (!response.ok()) return WithContext(response.status(), what);
  // 200 (the object, now being deleted, or a Status) and 202 (deletion accepted) both succeed.
  if (response->status < 200 || response->status >= 300) {
    return StatusFromHttp(response->status, response->body, what);
  }
  json object = ParseOrDiscard(response->body);
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object() ||
      object.value("kind", "") == "Status") {
    return json::object();
  }
  return object;
}

std::string RestKubeApi::WritePath(std::string path) const {
  if (!options_.dry_run_all) return path;
  path += path.find('?') == std::string::npos ? "?dryRun=All" : "&dryRun=All";
  return path;
}

std::chrono::seconds RestKubeApi::WatchTimeout() {
  const int64_t jitter = options_.watch_timeout_jitter.count();
  if (jitter <= 0) return options_.watch_timeout;
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<int64_t> dist(0, jitter - 1);
  return options_.watch_timeout + std::chrono::seconds(dist(rng));
}

Status RestKubeApi::Watch(const ResourceRef& r, const std::string& ns,
                          const std::string& resource_version,
                          const std::function<bool(const WatchEvent&)>& on_event,
                          const std::atomic<bool>& stop) {
  const std::string what = "watch " + Describe(r, ns, "");
  std::string path = ResourcePath(r, ns) + "?watch=true&allowWatchBookmarks=true";
  if (!resource_version.empty()) path += "&resourceVersion=" + UrlEncode(resource_version);
  path += "&timeoutSeconds=" + std::to_string(WatchTimeout().count());

  int http_status = 0;
  std::string error_body;  // the body of a non-200 answer, bounded
  std::string pending;     // the start of a line whose end has not arrived yet
  Status outcome = Status::Ok();
  bool ended = false;  // the stream must end now with `outcome`
  const size_t max_line = options_.max_watch_event_bytes;

  auto end_with = [&](Status s) {
    outcome = std::move(s);
    ended = true;
    return false;
  };
  // One complete line; false ends the stream.
  auto handle_line = [&](std::string_view line) -> bool {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return true;
    json event = ParseOrDiscard(line);
    if (!event.is_object() || !event.contains("type") || !event["type"].is_string() ||
        !event.contains("object") || !event["object"].is_object()) {
      log::Warn("malformed watch event; ending the watch",
                {{"resource", r.resource}, {"namespace", ns}, {"line", Excerpt(line)}});
      return end_with(Unreadable(what + ": malformed event: " + Excerpt(line)));
    }
    WatchEvent e{event["type"].get<std::string>(), std::move(event["object"])};
    if (e.type == "ERROR") {
      std::string message = e.object.value("message", json()).is_string()
                                ? e.object["message"].get<std::string>()
                                : Excerpt(e.object.dump());
      const json code = e.object.value("code", json());
      if (code.is_number_integer() && code.get<int64_t>() == 410) {
        return end_with(Status::Gone(what + ": " + message));
      }
      return end_with(Status::Unavailable(what + ": error event: " + message));
    }
    if (!on_event(e) || stop.load()) return end_with(Status::Ok());
    return true;
  };
  auto on_status = [&](int status) {
    http_status = status;
    return true;
  };
  auto on_chunk = [&](std::string_view chunk) -> bool {
    if (http_status != 200) {
      error_body.append(chunk.substr(0, kWatchErrorBodyBytes - error_body.size()));
      return error_body.size() < kWatchErrorBodyBytes;
    }
    while (!chunk.empty()) {
      const size_t newline = chunk.find('\n');
      const std::string_view piece = chunk.substr(0, newline);
      if (pending.size() + piece.size() > max_line) {
        return end_with(
            Unreadable(what + ": event larger than " + std::to_string(max_line) + " bytes"));
      }
      if (newline == std::string_view::npos) {
        pending.append(piece);
        return true;
      }
      bool more;
      if (pending.empty()) {
        more = handle_line(piece);
      } else {
        pending.append(piece);
        more = handle_line(pending);
        pending.clear();
      }
      if (!more) return false;
      chunk.remove_prefix(newline + 1);
    }
    return true;
  };

  Status streamed = transport_->Stream("GET", path, stop, on_status, on_chunk);
  if (ended) return outcome;
  if (!streamed.ok()) return WithContext(streamed, what);
  if (stop.load() || http_status == 0) return Status::Ok();
  if (http_status != 200) return StatusFromHttp(http_status, error_body, what);
  // The server writes a newline after every event; a last line without one is still an event
  // when it is complete JSON (a truncated one fails to parse and ends with Gone).
  if (!pending.empty()) {
    handle_line(pending);
    if (ended) return outcome;
  }
  return Status::Ok();
}

}  // namespace bg::kube
