#include "kube/webhook_endpoints.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common/longhorn.h"
#include "kube/kubeconfig.h"

namespace bg::kube {

using nlohmann::json;

namespace {

std::string Str(const json& obj, std::initializer_list<std::string_view> path) {
  return longhorn::StringAt(obj, path);
}

bool IsIpAddress(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Splits "https://host[:port][/path]" (host may be "[v6]"); false when it is not an https URL.
bool SplitUrl(const std::string& url, std::string* host, int* port) {
  constexpr std::string_view kScheme = "https://";
  if (url.rfind(kScheme, 0) != 0) return false;
  std::string rest = url.substr(kScheme.size());
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const size_t at = rest.rfind('@'); at != std::string::npos) rest = rest.substr(at + 1);
  std::string port_text;
  if (!rest.empty() && rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string::npos) return false;
    *host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') port_text = rest.substr(close + 2);
  } else {
    const size_t colon = rest.rfind(':');
    *host = rest.substr(0, colon);
    if (colon != std::string::npos) port_text = rest.substr(colon + 1);
  }
  *port = 443;
  if (!port_text.empty()) {
    char* end = nullptr;
    const long p = std::strtol(port_text.c_str(), &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535) return false;
    *port = static_cast<int>(p);
  }
  return !host->empty();
}

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "the connection closed";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

// A connected socket to host:port within `timeout`, or -1 with *error set.
int Connect(const std::string& host, int port, std::chrono::milliseconds timeout,
            std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    *error = "cannot resolve " + host + ": " + gai_strerror(rc);
    return -1;
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, freeaddrinfo);
  *error = "no address for " + host;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int err = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        const int ready = poll(&p, 1, static_cast<int>(timeout.count()));
        socklen_t len = sizeof(err);
        if (ready == 0) {
          err = ETIMEDOUT;
        } else if (ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
          err = errno;
        }
      }
    }
    if (err == 0) {
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      timeval tv{};
      tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
      tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      return fd;
    }
    *error = "connect to " + host + ":" + service + ": " + std::strerror(err);
    close(fd);
  }
  return -1;
}

// Whether `ca_bundle_pem` verifies the served chain for `server_name`; the reason when not.
bool VerifyServedChain(SSL* ssl, const std::string& server_name, const std::string& ca_bundle_pem,
                       std::string* error) {
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) {
    *error = "the endpoint served no certificate";
    return false;
  }
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  if (ca_bundle_pem.empty()) {
    X509_STORE_set_default_paths(store.get());
  } else {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(ca_bundle_pem.data(), static_cast<int>(ca_bundle_pem.size())), BIO_free);
    int added = 0;
    while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      if (X509_STORE_add_cert(store.get(), cert) == 1) ++added;
      X509_free(cert);
    }
    ERR_clear_error();  // the end of the PEM data reads as an error
    if (added == 0) {
      *error = "the caBundle holds no PEM certificate";
      return false;
    }
  }
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      X509_STORE_CTX_free);
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, SSL_get_peer_cert_chain(ssl)) != 1) {
    *error = "cannot verify: " + OpenSslError();
    return false;
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (IsIpAddress(server_name)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), server_name.size());
  }
  if (X509_verify_cert(ctx.get()) == 1) return true;
  *error = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
  if (!server_name.empty()) *error += " (for " + server_name + ")";
  ERR_clear_error();
  return false;
}

std::string JoinPort(const std::string& ip, int port) {
  return (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

// The port a Service port maps to in its EndpointSlices: the slice's port of the same name.
// Absent (a slice with no ports, or no name match) answers the Service port's numeric targetPort,
// else the Service port itself.
int SlicePort(const json& slice, const std::string& port_name, int fallback) {
  auto ports = slice.find("ports");
  if (ports == slice.end() || !ports->is_array()) return fallback;
  for (const json& p : *ports) {
    if (!p.is_object()) continue;
    const std::string name = p.value("name", std::string());
    auto number = p.find("port");
    if (name == port_name && number != p.end() && number->is_number_integer()) {
      return number->get<int>();
    }
  }
  return fallback;
}

void ResolveService(const WebhookTarget& w, KubeApi& api, EndpointReport* out) {
  auto service = api.Get(kServices, w.service_namespace, w.service_name);
  if (!service.ok()) {
    if (service.status().IsNotFound()) {
      out->stale = true;
      out->problem =
          "its Service " + w.service_namespace + "/" + w.service_name + " does not exist";
    } else {
      out->problem = "cannot read its Service: " + service.status().message();
    }
    return;
  }
  out->service_found = true;
  // The Service port the webhook names: its name and where it maps to.
  std::string port_name;
  int target = w.service_port;
  bool port_found = false;
  if (auto ports = service->find("spec"); ports != service->end() && ports->is_object()) {
    for (const json& p : ports->value("ports", json::array())) {
      if (!p.is_object() || p.value("port", 0) != w.service_port) continue;
      port_found = true;
      port_name = p.value("name", std::string());
      if (auto t = p.find("targetPort"); t != p.end() && t->is_number_integer()) {
        target = t->get<int>();
      }
    }
  }
  if (!port_found) {
    out->stale = true;
    out->problem = "its Service " + w.service_namespace + "/" + w.service_name + " has no port " +
                   std::to_string(w.service_port);
    return;
  }
  auto slices = api.List(kEndpointSlices, w.service_namespace,
                         "kubernetes.io/service-name=" + w.service_name);
  if (!slices.ok()) {
    out->problem = "cannot list its EndpointSlices: " + slices.status().message();
    return;
  }
  for (const json& slice : slices->value("items", json::array())) {
    if (!slice.is_object()) continue;
    const int port = SlicePort(slice, port_name, target);
    for (const json& e : slice.value("endpoints", json::array())) {
      if (!e.is_object()) continue;
      // A missing `ready` condition means ready (discovery.k8s.io/v1 EndpointConditions).
      bool ready = true;
      if (auto c = e.find("conditions"); c != e.end() && c->is_object()) {
        if (auto r = c->find("ready"); r != c->end() && r->is_boolean()) ready = r->get<bool>();
      }
      for (const json& a : e.value("addresses", json::array())) {
        if (!a.is_string()) continue;
        (ready ? out->ready_addresses : out->not_ready_addresses)
            .push_back(JoinPort(a.get<std::string>(), port));
      }
    }
  }
  if (out->ready_addresses.empty()) {
    out->stale = true;
    out->problem =
        "its Service " + w.service_namespace + "/" + w.service_name + " has no ready endpoint";
  }
}

}  // namespace

std::vector<WebhookTarget> WebhooksOf(const json& configuration) {
  std::vector<WebhookTarget> out;
  if (!configuration.is_object()) return out;
  const std::string kind = Str(configuration, {"kind"});
  const std::string name = Str(configuration, {"metadata", "name"});
  auto hooks = configuration.find("webhooks");
  if (hooks == configuration.end() || !hooks->is_array()) return out;
  for (const json& h : *hooks) {
    if (!h.is_object()) continue;
    WebhookTarget w;
    w.configuration_kind = kind;
    w.configuration = name;
    w.name = Str(h, {"name"});
    w.failure_policy = Str(h, {"failurePolicy"});
    w.url = Str(h, {"clientConfig", "url"});
    w.service_namespace = Str(h, {"clientConfig", "service", "namespace"});
    w.service_name = Str(h, {"clientConfig", "service", "name"});
    w.service_path = Str(h, {"clientConfig", "service", "path"});
    if (auto cc = h.find("clientConfig"); cc != h.end() && cc->is_object()) {
      if (auto s = cc->find("service"); s != cc->end() && s->is_object()) {
        if (auto p = s->find("port"); p != s->end() && p->is_number_integer()) {
          w.service_port = p->get<int>();
        }
      }
    }
    const std::string bundle = Str(h, {"clientConfig", "caBundle"});
    if (!bundle.empty()) {
      auto pem = DecodeBase64(bundle);
      if (pem.ok()) {
        w.ca_bundle_pem = *pem;
      } else {
        w.ca_bundle_error = "caBundle is not base64: " + pem.status().message();
      }
    }
    if (auto rules = h.find("rules"); rules != h.end() && rules->is_array()) w.rules = *rules;
    out.push_back(std::move(w));
  }
  return out;
}

bool ConcernsLonghorn(const WebhookTarget& webhook, std::string_view engine_namespace) {
  if (!webhook.service_name.empty() && webhook.service_namespace == engine_namespace) return true;
  for (const json& rule : webhook.rules) {
    if (!rule.is_object()) continue;
    for (const json& group : rule.value("apiGroups", json::array())) {
      if (group.is_string() && (group == longhorn::kGroup || group == "*")) return true;
    }
  }
  return false;
}

TlsProbe ProbeTls(const std::string& host, int port, const std::string& server_name,
                  const std::string& ca_bundle_pem, std::chrono::milliseconds timeout) {
  TlsProbe out;
  FdCloser fd{Connect(host, port, timeout, &out.error)};
  if (fd.fd < 0) return out;
  out.connected = true;
  out.error.clear();
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  if (!ctx) {
    out.error = "TLS: " + OpenSslError();
    return out;
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);  // verified below, with the caBundle
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  if (!ssl || SSL_set_fd(ssl.get(), fd.fd) != 1) {
    out.error = "TLS: " + OpenSslError();
    return out;
  }
  if (!server_name.empty() && !IsIpAddress(server_name)) {
    SSL_set_tlsext_host_name(ssl.get(), server_name.c_str());
  }
  if (SSL_connect(ssl.get()) != 1) {
    out.error = "TLS handshake with " + JoinPort(host, port) + " failed: " + OpenSslError();
    return out;
  }
  out.handshake = true;
  out.ca_verifies = VerifyServedChain(ssl.get(), server_name, ca_bundle_pem, &out.ca_error);
  // No close_notify: the peer may already be gone, and writing to it would raise SIGPIPE.
  return out;
}

EndpointReport CheckWebhookEndpoint(const WebhookTarget& w, KubeApi& api, const TlsProber& prober) {
  EndpointReport out;
  std::string host;
  int port = 0;
  if (!w.url.empty()) {
    out.endpoint = w.url;
    out.url_mode = true;
    if (!SplitUrl(w.url, &host, &port)) {
      out.stale = true;
      out.problem = "its URL is not https://host[:port]/path";
      return out;
    }
    out.server_name = host;
  } else {
    out.endpoint = "service " + w.service_namespace + "/" + w.service_name + ":" +
                   std::to_string(w.service_port) + w.service_path;
    ResolveService(w, api, &out);
    if (out.ready_addresses.empty()) return out;
    const std::string& first = out.ready_addresses.front();
    const size_t colon = first.rfind(':');
    host = first.substr(0, colon);
    if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
    port = std::atoi(first.c_str() + colon + 1);
    // The API server calls a service webhook as <name>.<namespace>.svc.
    out.server_name = w.service_name + "." + w.service_namespace + ".svc";
  }
  out.probed_address = JoinPort(host, port);
  out.probe = prober(host, port, out.server_name, w.ca_bundle_pem);
  out.probed = true;
  if (!out.probe.handshake) {
    if (!w.url.empty()) {
      out.stale = true;
      out.problem = "its URL does not answer: " + out.probe.error;
    }
    return out;  // a pod address may be out of reach from here: not evidence of a dead webhook
  }
  if (!w.ca_bundle_error.empty()) {
    out.ca_mismatch = true;
    out.problem = w.ca_bundle_error;
  } else if (!out.probe.ca_verifies) {
    out.ca_mismatch = true;
    out.problem = "its caBundle does not verify the certificate served at " + out.probed_address +
                  ": " + out.probe.ca_error;
  }
  return out;
}

json ToJson(const WebhookTarget& w) {
  json out = {{"configuration", w.configuration},
              {"kind", w.configuration_kind},
              {"webhook", w.name},
              {"failurePolicy", w.failure_policy.empty() ? "Fail" : w.failure_policy},
              {"caBundle", !w.ca_bundle_pem.empty()}};
  if (!w.url.empty()) {
    out["url"] = w.url;
  } else {
    out["service"] = {{"namespace", w.service_namespace},
                      {"name", w.service_name},
                      {"port", w.service_port},
                      {"path", w.service_path}};
  }
  return out;
}

json ToJson(const EndpointReport& r) {
  json out = {{"endpoint", r.endpoint}, {"stale", r.stale}, {"caMismatch", r.ca_mismatch}};
  if (!r.url_mode) {
    out["serviceFound"] = r.service_found;
    out["readyAddresses"] = r.ready_addresses;
    out["notReadyAddresses"] = r.not_ready_addresses;
  }
  if (r.probed) {
    out["tls"] = {{"address", r.probed_address},
                  {"serverName", r.server_name},
                  {"connected", r.probe.connected},
                  {"handshake", r.probe.handshake},
                  {"error", r.probe.error}};
    if (r.probe.handshake) {
      out["tls"]["caBundleVerifies"] = r.probe.ca_verifies;
      out["tls"]["caError"] = r.probe.ca_error;
    }
  }
  if (!r.problem.empty()) out["problem"] = r.problem;
  return out;
}

}  // namespace bg::kube
