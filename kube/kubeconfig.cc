#include "kube/kubeconfig.h"

#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "kube/file_util.h"
#include "kube/yaml_subset.h"

namespace bg::kube {
namespace {

using nlohmann::json;

// Certificates, keys and tokens are a few KiB; a CA bundle may hold a few hundred certificates.
constexpr size_t kMaxCredentialFileBytes = size_t{1024} * 1024;

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string_view TrimSpace(std::string_view s) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::optional<int> ParsePort(std::string_view s) {
  int port = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), port);
  if (ec != std::errc() || end != s.data() + s.size() || port < 1 || port > 65535) {
    return std::nullopt;
  }
  return port;
}

// Reads fields of one kubeconfig section ("cluster \"kind\"") and words errors after it.
class Section {
 public:
  Section(std::string source, std::string what, const json* obj)
      : source_(std::move(source)), what_(std::move(what)), obj_(obj) {}

  Status Error(const std::string& message) const {
    return Status::InvalidArgument(source_ + ": " + what_ + ": " + message);
  }

  // The field `key`, or null when it is absent or null.
  const json* Field(const char* key) const {
    if (obj_ == nullptr) return nullptr;
    auto it = obj_->find(key);
    if (it == obj_->end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool Has(const char* key) const { return Field(key) != nullptr; }

  // Copies a string field into `out` (left unchanged when absent).
  Status GetString(const char* key, std::string* out) const {
    const json* field = Field(key);
    if (field == nullptr) return Status::Ok();
    const json& v = *field;
    if (!v.is_string()) return Error(std::string("field ") + key + " must be a string");
    *out = v.get<std::string>();
    return Status::Ok();
  }

  Status GetBool(const char* key, bool* out) const {
    const json* field = Field(key);
    if (field == nullptr) return Status::Ok();
    const json& v = *field;
    if (v.is_boolean()) {
      *out = v.get<bool>();
      return Status::Ok();
    }
    if (v.is_string() && (v == "true" || v == "false")) {
      *out = v == "true";
      return Status::Ok();
    }
    return Error(std::string("field ") + key + " must be true or false");
  }

  // Reads the PEM (or token) material of `data_key` (base64) or else of `file_key` (a path).
  Status GetMaterial(const char* data_key, const char* file_key, const std::string& base_dir,
                     std::string* out) const {
    std::string data;
    if (Status s = GetString(data_key, &data); !s.ok()) return s;
    if (!data.empty()) {
      Result<std::string> decoded = DecodeBase64(data);
      if (!decoded.ok()) {
        return Error(std::string("field ") + data_key + ": " + decoded.status().message());
      }
      *out = std::move(decoded).value();
      return Status::Ok();
    }
    std::string path;
    if (Status s = GetString(file_key, &path); !s.ok()) return s;
    if (path.empty()) return Status::Ok();
    Result<std::string> content =
        ReadFileToString(ResolvePath(base_dir, path), kMaxCredentialFileBytes);
    if (!content.ok()) {
      return Error(std::string("field ") + file_key + ": " + content.status().message());
    }
    *out = std::move(content).value();
    return Status::Ok();
  }

 private:
  std::string source_;
  std::string what_;
  const json* obj_;  // null: an empty section
};

// Finds the entry named `name` in the list `list_key` ("clusters") and returns its `item_key`
// ("cluster") object; null when the entry has no body. Missing entry: *found = false.
Status FindNamed(const json& doc, const std::string& source, const char* list_key,
                 const char* item_key, const std::string& name, const json** item, bool* found) {
  *found = false;
  *item = nullptr;
  auto list_it = doc.find(list_key);
  if (list_it == doc.end() || list_it->is_null()) return Status::Ok();
  const json& list = *list_it;
  if (!list.is_array()) {
    return Status::InvalidArgument(source + ": " + list_key + " must be a list");
  }
  for (const json& entry : list) {
    if (!entry.is_object()) {
      return Status::InvalidArgument(source + ": every entry of " + list_key +
                                     " must be a mapping");
    }
    auto n = entry.find("name");
    if (n == entry.end() || !n->is_string() || n->get<std::string>() != name) continue;
    *found = true;
    auto body = entry.find(item_key);
    if (body == entry.end() || body->is_null()) return Status::Ok();
    if (!body->is_object()) {
      return Status::InvalidArgument(source + ": " + list_key + " entry " + Quote(name) + ": " +
                                     item_key + " must be a mapping");
    }
    *item = &*body;
    return Status::Ok();
  }
  return Status::Ok();
}

Status ReadCluster(const Section& cluster, const std::string& base_dir, ClusterConfig* config) {
  std::string server;
  if (Status s = cluster.GetString("server", &server); !s.ok()) return s;
  if (server.empty()) return cluster.Error("field server is missing");
  if (Status s = ParseServerUrl(server, config); !s.ok()) {
    return cluster.Error("field server: " + s.message());
  }
  for (const char* refused : {"tls-server-name", "proxy-url"}) {
    if (cluster.Has(refused)) return cluster.Error(std::string(refused) + " is not supported");
  }
  if (Status s = cluster.GetBool("insecure-skip-tls-verify", &config->insecure_skip_tls_verify);
      !s.ok()) {
    return s;
  }
  if (Status s = cluster.GetMaterial("certificate-authority-data", "certificate-authority",
                                     base_dir, &config->ca_pem);
      !s.ok()) {
    return s;
  }
  if (config->insecure_skip_tls_verify && !config->ca_pem.empty()) {
    // kubectl refuses this too: it is either a mistake or a silent downgrade.
    return cluster.Error(
        "insecure-skip-tls-verify cannot be combined with a certificate authority");
  }
  return Status::Ok();
}

Status ReadUser(const Section& user, const std::string& base_dir, ClusterConfig* config) {
  if (user.Has("exec")) {
    return user.Error(
        "exec credential plugins are not supported; use a client certificate or "
        "a token");
  }
  if (user.Has("auth-provider")) {
    return user.Error(
        "auth-provider plugins are not supported; use a client certificate or a "
        "token");
  }
  if (user.Has("username") || user.Has("password")) {
    return user.Error(
        "basic authentication is not supported; use a client certificate or a "
        "token");
  }
  if (Status s = user.GetMaterial("client-certificate-data", "client-certificate", base_dir,
                                  &config->client_cert_pem);
      !s.ok()) {
    return s;
  }
  if (Status s =
          user.GetMaterial("client-key-data", "client-key", base_dir, &config->client_key_pem);
      !s.ok()) {
    return s;
  }
  if (config->client_cert_pem.empty() != config->client_key_pem.empty()) {
    return user.Error("a client certificate needs a client key, and a key needs a certificate");
  }
  if (Status s = user.GetString("token", &config->bearer_token); !s.ok()) return s;
  std::string token_file;
  if (Status s = user.GetString("tokenFile", &token_file); !s.ok()) return s;
  if (!token_file.empty()) {
    config->bearer_token_file = ResolvePath(base_dir, token_file);
    Result<std::string> token =
        ReadFileToString(config->bearer_token_file, kMaxCredentialFileBytes);
    if (!token.ok()) return user.Error("field tokenFile: " + token.status().message());
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> DecodeBase64(std::string_view text) {
  auto value_of = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  size_t padding = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const int v = value_of(c);
    if (v < 0 || padding > 0) {
      return Status::InvalidArgument("invalid base64 at offset " + std::to_string(i));
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // 6 leftover bits cannot come from whole bytes; more than two '=' is never valid.
  if (bits >= 6 || padding > 2) return Status::InvalidArgument("invalid base64: truncated input");
  return out;
}

Status ParseServerUrl(std::string_view url, ClusterConfig* config) {
  std::string_view rest = url;
  if (const size_t scheme_end = rest.find("://"); scheme_end != std::string_view::npos) {
    std::string scheme(rest.substr(0, scheme_end));
    for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (scheme == "http") {
      return Status::InvalidArgument("plain http servers are not supported; use https");
    }
    if (scheme != "https") return Status::InvalidArgument("unsupported scheme " + Quote(scheme));
    rest.remove_prefix(scheme_end + 3);
  }
  const size_t authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view path =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return Status::InvalidArgument("user information in the server URL is not supported");
  }
  if (path.find_first_of("?#") != std::string_view::npos) {
    return Status::InvalidArgument("a query or fragment in the server URL is not supported");
  }
  std::string_view host = authority;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return Status::InvalidArgument("unclosed '[' in host");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Status::InvalidArgument("unexpected text after ']'");
      port_text = after.substr(1);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port_text = authority.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Status::InvalidArgument("an IPv6 host must be written in brackets");
    }
  }
  if (host.empty()) return Status::InvalidArgument("the server URL has no host");
  int port = 443;
  if (!port_text.empty()) {
    std::optional<int> parsed = ParsePort(port_text);
    if (!parsed) return Status::InvalidArgument("invalid port " + Quote(port_text));
    port = *parsed;
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  config->host = std::string(host);
  config->port = port;
  config->base_path = std::string(path);
  return Status::Ok();
}

Result<ClusterConfig> ParseKubeconfig(std::string_view text, const std::string& base_dir,
                                      std::string_view context, std::string_view source_name) {
  const std::string source(source_name);
  Result<json> parsed = ParseYaml(text);
  if (!parsed.ok()) return Status::InvalidArgument(source + ": " + parsed.status().message());
  const json& doc = parsed.value();
  if (doc.is_null()) return Status::InvalidArgument(source + ": the file is empty");
  if (!doc.is_object()) return Status::InvalidArgument(source + ": not a kubeconfig mapping");
  if (auto kind = doc.find("kind"); kind != doc.end() && *kind != "Config" && !kind->is_null()) {
    return Status::InvalidArgument(source + ": kind is " + kind->dump() + ", want Config");
  }

  std::string context_name(context);
  if (context_name.empty()) {
    Section top(source, "current-context", &doc);
    if (Status s = top.GetString("current-context", &context_name); !s.ok()) return s;
    if (context_name.empty()) {
      return Status::InvalidArgument(source + ": no current-context is set");
    }
  }

  const json* context_obj = nullptr;
  bool found = false;
  if (Status s = FindNamed(doc, source, "contexts", "context", context_name, &context_obj, &found);
      !s.ok()) {
    return s;
  }
  if (!found)
    return Status::InvalidArgument(source + ": context " + Quote(context_name) + " not found");
  const Section ctx(source, "context " + Quote(context_name), context_obj);
  std::string cluster_name, user_name;
  ClusterConfig config;
  if (Status s = ctx.GetString("cluster", &cluster_name); !s.ok()) return s;
  if (Status s = ctx.GetString("user", &user_name); !s.ok()) return s;
  if (Status s = ctx.GetString("namespace", &config.default_namespace); !s.ok()) return s;
  if (cluster_name.empty()) return ctx.Error("no cluster is set");

  const json* cluster_obj = nullptr;
  if (Status s = FindNamed(doc, source, "clusters", "cluster", cluster_name, &cluster_obj, &found);
      !s.ok()) {
    return s;
  }
  if (!found) return ctx.Error("cluster " + Quote(cluster_name) + " not found");
  if (Status s = ReadCluster(Section(source, "cluster " + Quote(cluster_name), cluster_obj),
                             base_dir, &config);
      !s.ok()) {
    return s;
  }

  if (!user_name.empty()) {
    const json* user_obj = nullptr;
    if (Status s = FindNamed(doc, source, "users", "user", user_name, &user_obj, &found); !s.ok()) {
      return s;
    }
    if (!found) return ctx.Error("user " + Quote(user_name) + " not found");
    if (Status s =
            ReadUser(Section(source, "user " + Quote(user_name), user_obj), base_dir, &config);
        !s.ok()) {
      return s;
    }
  }
  config.source = source + " (context " + context_name + ")";
  return config;
}

Result<ClusterConfig> LoadKubeconfig(const std::string& path, std::string_view context) {
  Result<std::string> text = ReadFileToString(path, kMaxKubeconfigBytes);
  if (!text.ok()) {
    return Status::InvalidArgument("kubeconfig: " + text.status().message());
  }
  return ParseKubeconfig(text.value(), DirName(path), context, "kubeconfig " + path);
}

Result<ClusterConfig> InClusterConfig(const std::string& service_account_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return Status::InvalidArgument(
        "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set; not running "
        "in a pod?");
  }
  ClusterConfig config;
  config.host = TrimSpace(host);
  if (config.host.size() > 2 && config.host.front() == '[' && config.host.back() == ']') {
    config.host = config.host.substr(1, config.host.size() - 2);
  }
  std::optional<int> parsed_port = ParsePort(TrimSpace(port));
  if (!parsed_port) {
    return Status::InvalidArgument("in-cluster: invalid KUBERNETES_SERVICE_PORT " + Quote(port));
  }
  config.port = *parsed_port;

  const std::string token_path = ResolvePath(service_account_dir, "token");
  Result<std::string> token = ReadFileToString(token_path, kMaxCredentialFileBytes);
  if (!token.ok()) return Status::InvalidArgument("in-cluster: " + token.status().message());
  if (TrimSpace(token.value()).empty()) {
    return Status::InvalidArgument("in-cluster: " + token_path + " is empty");
  }
  config.bearer_token_file = token_path;

  Result<std::string> ca =
      ReadFileToString(ResolvePath(service_account_dir, "ca.crt"), kMaxCredentialFileBytes);
  if (!ca.ok()) return Status::InvalidArgument("in-cluster: " + ca.status().message());
  config.ca_pem = std::move(ca).value();

  Result<std::string> ns =
      ReadFileToString(ResolvePath(service_account_dir, "namespace"), kMaxCredentialFileBytes);
  if (ns.ok()) config.default_namespace = TrimSpace(ns.value());
  config.source = "in-cluster";
  return config;
}

}  // namespace bg::kube
