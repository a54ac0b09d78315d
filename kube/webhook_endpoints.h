// Webhook endpoints: where a Mutating/ValidatingWebhookConfiguration sends its calls, whether that
// endpoint answers, and whether the configuration's caBundle verifies the certificate it serves.
//
// `backup-guard diagnose` reports every webhook that concerns the storage engine with these
// checks; `backup-guard uninstall --remove-stale-webhooks` removes the stale ones (SPEC.md
// "Uninstall": a Service with no ready endpoint, or a URL that does not answer). Both read the
// same verdict, EndpointReport::stale, so what diagnose calls stale is what uninstall removes.
//
// Thread-safety: the functions keep no state; ProbeTls may run on many threads at once.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "kube/api.h"

namespace bg::kube {

inline const ResourceRef kMutatingWebhookConfigurations{"admissionregistration.k8s.io", "v1",
                                                        "mutatingwebhookconfigurations",
                                                        "MutatingWebhookConfiguration"};
inline const ResourceRef kValidatingWebhookConfigurations{"admissionregistration.k8s.io", "v1",
                                                          "validatingwebhookconfigurations",
                                                          "ValidatingWebhookConfiguration"};
inline const ResourceRef kServices{"", "v1", "services", "Service"};
inline const ResourceRef kEndpointSlices{"discovery.k8s.io", "v1", "endpointslices",
                                         "EndpointSlice"};

// One entry of a configuration's `webhooks`.
struct WebhookTarget {
  std::string configuration_kind;  // MutatingWebhookConfiguration or ValidatingWebhookConfiguration
  std::string configuration;       // the configuration's name
  std::string name;                // webhooks[].name
  std::string failure_policy;      // as written; the API server's default is Fail
  // Exactly one of url and service_name is set (the API server validates that).
  std::string url;
  std::string service_namespace;
  std::string service_name;
  std::string service_path;
  int service_port = 443;       // the API server's default
  std::string ca_bundle_pem;    // clientConfig.caBundle decoded; empty when absent
  std::string ca_bundle_error;  // set when caBundle is not valid base64
  nlohmann::json rules = nlohmann::json::array();
};

// The webhooks of a Mutating/ValidatingWebhookConfiguration object (its `kind` says which).
// Untrusted input: malformed entries give empty fields, never an exception.
std::vector<WebhookTarget> WebhooksOf(const nlohmann::json& configuration);

// True when the webhook intercepts longhorn.io objects (a rule whose apiGroups holds
// "longhorn.io" or "*") or calls a Service in `engine_namespace`.
bool ConcernsLonghorn(const WebhookTarget& webhook, std::string_view engine_namespace);

// What a TLS client learns from one endpoint.
struct TlsProbe {
  bool connected = false;    // a TCP connection was made
  bool handshake = false;    // the TLS handshake completed (any certificate accepted)
  std::string error;         // why not, when either is false
  bool ca_verifies = false;  // after a handshake: the caBundle verifies the served chain and name
  std::string ca_error;      // why not
};

// Connects to host:port, completes a TLS handshake with SNI `server_name` accepting any
// certificate, then verifies the served chain against `ca_bundle_pem` (the system roots when it is
// empty, as the API server does) and `server_name` (a DNS name or an IP address), as the API server
// verifies a webhook. Each of connect and handshake is bounded by `timeout`.
TlsProbe ProbeTls(const std::string& host, int port, const std::string& server_name,
                  const std::string& ca_bundle_pem, std::chrono::milliseconds timeout);

// ProbeTls with its timeout bound, or a fake in tests.
using TlsProber =
    std::function<TlsProbe(const std::string& host, int port, const std::string& server_name,
                           const std::string& ca_bundle_pem)>;

struct EndpointReport {
  std::string endpoint;   // "https://host:port/path" or "service NS/NAME:PORT/PATH"
  bool url_mode = false;  // the webhook names a URL (else a Service)
  // Service mode.
  bool service_found = false;
  std::vector<std::string> ready_addresses;      // "ip:port" of ready endpoints
  std::vector<std::string> not_ready_addresses;  // listed but not ready
  // The address probed ("" when none could be): the URL's host, else the first ready endpoint.
  std::string probed_address;
  std::string server_name;  // the name the certificate must carry
  bool probed = false;
  TlsProbe probe;
  // The endpoint does not answer: for a URL, no TLS connection could be made; for a Service, it is
  // missing or has no ready endpoint. (A ready pod that cannot be reached from where the check
  // runs, as pod addresses often cannot from outside the cluster, is not counted stale.)
  bool stale = false;
  // The caBundle does not verify what a reachable endpoint serves.
  bool ca_mismatch = false;
  std::string problem;  // one sentence when stale or ca_mismatch, else ""
};

// Resolves the webhook's endpoint (reading the Service and its EndpointSlices for a service
// reference) and probes it. API failures other than NotFound are reported in `problem` and make
// the endpoint neither stale nor verified.
EndpointReport CheckWebhookEndpoint(const WebhookTarget& webhook, KubeApi& api,
                                    const TlsProber& prober);

nlohmann::json ToJson(const WebhookTarget& webhook);
nlohmann::json ToJson(const EndpointReport& report);

}  // namespace bg::kube
