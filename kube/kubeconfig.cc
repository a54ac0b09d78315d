#include "kube/kubeconfig.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "kube/file_util.h"

namespace bg::kube {
namespace {

using nlohmann::json;

// Certificates, keys and tokens are a few KiB; a CA bundle may hold a few hundred certificates.
constexpr size_t kMaxCredentialFileBytes = size_t{1024} * 1024;

// Real kubeconfigs nest about six levels; deeper input is refused before it can exhaust the stack.
constexpr int kMaxYamlDepth = 64;
// YAML aliases share nodes, so a small document can stand for an enormous tree ("billion
// laughs"). The JSON copy is bounded: a few hundred thousand nodes or bytes is far beyond any
// kubeconfig and still cheap.
constexpr size_t kMaxYamlNodes = size_t{256} * 1024;
constexpr size_t kMaxYamlScalarBytes = size_t{16} * 1024 * 1024;

constexpr char kExecV1[] = "client.authentication.k8s.io/v1";
constexpr char kExecV1beta1[] = "client.authentication.k8s.io/v1beta1";

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

// ---------------------------------------------------------------- YAML to JSON

// A plain (unquoted, untagged) scalar resolved as YAML 1.2's core schema does, which is what
// kubectl's YAML-to-JSON step yields for the fields a kubeconfig has.
json ResolvePlainScalar(const std::string& text) {
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") {
    return nullptr;
  }
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  const char* digits = (*begin == '-' || *begin == '+') ? begin + 1 : begin;
  if (digits != end && std::isdigit(static_cast<unsigned char>(*digits))) {
    int64_t integer = 0;
    auto [int_end, int_ec] = std::from_chars(*begin == '+' ? begin + 1 : begin, end, integer);
    if (int_ec == std::errc() && int_end == end) return integer;
    double number = 0;
    auto [float_end, float_ec] =
        std::from_chars(*begin == '+' ? begin + 1 : begin, end, number, std::chars_format::general);
    if (float_ec == std::errc() && float_end == end) return number;
  }
  return text;
}

std::string YamlError(const YAML::Mark& mark, const std::string& message) {
  if (mark.is_null()) return "yaml: " + message;
  return "yaml: line " + std::to_string(mark.line + 1) + " column " +
         std::to_string(mark.column + 1) + ": " + message;
}

class YamlToJson {
 public:
  Result<json> Convert(const YAML::Node& node, int depth) {
    if (depth > kMaxYamlDepth) {
      return Status::InvalidArgument(
          YamlError(node.Mark(), "nested deeper than " + std::to_string(kMaxYamlDepth)));
    }
    if (++nodes_ > kMaxYamlNodes) {
      return Status::InvalidArgument(YamlError(node.Mark(), "the document is too large"));
    }
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return json(nullptr);
      case YAML::NodeType::Scalar: {
        const std::string& text = node.Scalar();
        scalar_bytes_ += text.size();
        if (scalar_bytes_ > kMaxYamlScalarBytes) {
          return Status::InvalidArgument(YamlError(node.Mark(), "the document is too large"));
        }
        // "?" is a plain scalar; quoted ones ("!") and explicit tags stay strings.
        return node.Tag() == "?" ? ResolvePlainScalar(text) : json(text);
      }
      case YAML::NodeType::Sequence: {
        json out = json::array();
        for (const YAML::Node& item : node) {
          Result<json> value = Convert(item, depth + 1);
          if (!value.ok()) return value.status();
          out.push_back(std::move(value).value());
        }
        return out;
      }
      case YAML::NodeType::Map: {
        json out = json::object();
        for (const auto& pair : node) {
          if (!pair.first.IsScalar()) {
            return Status::InvalidArgument(
                YamlError(pair.first.Mark(), "a mapping key must be a scalar"));
          }
          const std::string& key = pair.first.Scalar();
          if (out.contains(key)) {
            return Status::InvalidArgument(
                YamlError(pair.first.Mark(), "duplicate mapping key " + Quote(key)));
          }
          Result<json> value = Convert(pair.second, depth + 1);
          if (!value.ok()) return value.status();
          out[key] = std::move(value).value();
        }
        return out;
      }
    }
    return json(nullptr);
  }

 private:
  size_t nodes_ = 0;
  size_t scalar_bytes_ = 0;
};

// The offset of the first byte that is not part of valid UTF-8, or npos. YAML text is Unicode
// (kubectl refuses anything else), and every string read here may end up in a JSON message.
size_t InvalidUtf8At(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t len = 0;
    uint32_t min = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      len = 2, min = 0x80, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, min = 0x800, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, min = 0x10000, cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > text.size()) return i;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

// One YAML document as JSON (JSON is YAML, so JSON kubeconfigs read the same way). An empty
// document is null. Errors name the line and column.
Result<json> ParseYamlDocument(std::string_view text) {
  if (const size_t bad = InvalidUtf8At(text); bad != std::string_view::npos) {
    return Status::InvalidArgument("yaml: invalid UTF-8 at byte " + std::to_string(bad));
  }
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    return YamlToJson().Convert(root, 0);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(YamlError(e.mark, e.msg));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("yaml: ") + e.what());
  }
}

// ---------------------------------------------------------------- kubeconfig fields

// Reads the fields of one mapping in a kubeconfig ("users[0].user") and words errors after it:
// "<source>: users[0].user.token: must be a string".
class Section {
 public:
  Section(std::string source, std::string path, std::string base_dir, const json* obj)
      : source_(std::move(source)),
        path_(std::move(path)),
        base_dir_(std::move(base_dir)),
        obj_(obj) {}

  const std::string& source() const { return source_; }
  const std::string& path() const { return path_; }
  const std::string& base_dir() const { return base_dir_; }

  // The error of the field `key` ("" for the section itself).
  Status Error(std::string_view key, const std::string& message) const {
    std::string where = path_;
    if (!key.empty()) where += "." + std::string(key);
    return Status::InvalidArgument(source_ + ": " + where + ": " + message);
  }

  // The field `key`, or null when it is absent or null.
  const json* Field(const char* key) const {
    if (obj_ == nullptr) return nullptr;
    auto it = obj_->find(key);
    if (it == obj_->end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool Has(const char* key) const { return Field(key) != nullptr; }

  // The mapping `key` as a section of its own (empty when absent).
  Result<Section> Child(const char* key) const {
    const json* field = Field(key);
    if (field != nullptr && !field->is_object()) return Error(key, "must be a mapping");
    return Section(source_, path_ + "." + key, base_dir_, field);
  }

  // Copies a string field into `out` (left unchanged when absent).
  Status GetString(const char* key, std::string* out) const {
    const json* field = Field(key);
    if (field == nullptr) return Status::Ok();
    if (!field->is_string()) return Error(key, "must be a string");
    *out = field->get<std::string>();
    return Status::Ok();
  }

  Status GetBool(const char* key, bool* out) const {
    const json* field = Field(key);
    if (field == nullptr) return Status::Ok();
    if (field->is_boolean()) {
      *out = field->get<bool>();
      return Status::Ok();
    }
    if (field->is_string() && (*field == "true" || *field == "false")) {
      *out = *field == "true";
      return Status::Ok();
    }
    return Error(key, "must be true or false");
  }

  // A list of strings.
  Status GetStrings(const char* key, std::vector<std::string>* out) const {
    const json* field = Field(key);
    if (field == nullptr) return Status::Ok();
    if (!field->is_array()) return Error(key, "must be a list of strings");
    for (size_t i = 0; i < field->size(); ++i) {
      if (!(*field)[i].is_string()) {
        return Error(std::string(key) + "[" + std::to_string(i) + "]", "must be a string");
      }
      out->push_back((*field)[i].get<std::string>());
    }
    return Status::Ok();
  }

  // Reads the PEM (or token) material of `data_key` (base64) or else of `file_key` (a path).
  Status GetMaterial(const char* data_key, const char* file_key, std::string* out) const {
    std::string data;
    if (Status s = GetString(data_key, &data); !s.ok()) return s;
    if (!data.empty()) {
      Result<std::string> decoded = DecodeBase64(data);
      if (!decoded.ok()) return Error(data_key, decoded.status().message());
      *out = std::move(decoded).value();
      return Status::Ok();
    }
    std::string path;
    if (Status s = GetString(file_key, &path); !s.ok()) return s;
    if (path.empty()) return Status::Ok();
    Result<std::string> content =
        ReadFileToString(ResolvePath(base_dir_, path), kMaxCredentialFileBytes);
    if (!content.ok()) return Error(file_key, content.status().message());
    *out = std::move(content).value();
    return Status::Ok();
  }

 private:
  std::string source_;
  std::string path_;
  std::string base_dir_;
  const json* obj_;  // null: an empty section
};

// One named entry of a kubeconfig list, with the file it came from.
struct NamedEntry {
  const json* body = nullptr;  // the "cluster"/"user"/"context" mapping; null when absent
  std::string source;
  std::string path;  // "clusters[2].cluster"
  std::string base_dir;

  Section AsSection() const { return Section(source, path, base_dir, body); }
};

// kubeconfig files merged as kubectl merges them (client-go's clientcmd loading rules): every
// name keeps its first definition, and the first current-context wins.
class MergedKubeconfig {
 public:
  // Adds one file's text. `source` names it in errors ("kubeconfig /path").
  Status Add(std::string_view text, const std::string& base_dir, const std::string& source) {
    Result<json> parsed = ParseYamlDocument(text);
    if (!parsed.ok()) return Status::InvalidArgument(source + ": " + parsed.status().message());
    auto doc = std::make_unique<json>(std::move(parsed).value());
    if (doc->is_null()) {
      // kubectl accepts empty files in $KUBECONFIG; one alone is reported when nothing resolves.
      empty_sources_.push_back(source);
      return Status::Ok();
    }
    if (!doc->is_object()) return Status::InvalidArgument(source + ": not a kubeconfig mapping");
    if (auto kind = doc->find("kind");
        kind != doc->end() && !kind->is_null() && *kind != "Config") {
      return Status::InvalidArgument(source + ": kind: is " +
                                     kind->dump(-1, ' ', false, json::error_handler_t::replace) +
                                     ", want Config");
    }
    if (auto current = doc->find("current-context"); current != doc->end() && !current->is_null()) {
      if (!current->is_string()) {
        return Status::InvalidArgument(source + ": current-context: must be a string");
      }
      if (current_context_.empty()) {
        current_context_ = current->get<std::string>();
        current_context_source_ = source;
      }
    }
    for (const auto& [list_key, item_key, map] :
         {std::tuple<const char*, const char*, std::map<std::string, NamedEntry>*>{
              "clusters", "cluster", &clusters_},
          {"users", "user", &users_},
          {"contexts", "context", &contexts_}}) {
      if (Status s = AddList(*doc, list_key, item_key, base_dir, source, map); !s.ok()) return s;
    }
    sources_.push_back(source);
    docs_.push_back(std::move(doc));
    return Status::Ok();
  }

  // Resolves `context` (default: the current context) to a cluster and a user.
  Result<ClusterConfig> Resolve(std::string_view context) const {
    std::string context_name(context);
    if (context_name.empty()) {
      context_name = current_context_;
      if (context_name.empty()) {
        if (docs_.empty() && !empty_sources_.empty()) {
          return Status::InvalidArgument(AllSources(empty_sources_) + ": the file is empty");
        }
        return Status::InvalidArgument(AllSources(sources_) +
                                       ": no current-context is set (use --context)");
      }
    }
    auto ctx_it = contexts_.find(context_name);
    if (ctx_it == contexts_.end()) {
      const std::string where =
          context.empty() ? current_context_source_ + ": current-context" : AllSources(sources_);
      return Status::InvalidArgument(where + ": context " + Quote(context_name) + " not found");
    }
    const Section ctx = ctx_it->second.AsSection();
    std::string cluster_name, user_name;
    ClusterConfig config;
    if (Status s = ctx.GetString("cluster", &cluster_name); !s.ok()) return s;
    if (Status s = ctx.GetString("user", &user_name); !s.ok()) return s;
    if (Status s = ctx.GetString("namespace", &config.default_namespace); !s.ok()) return s;
    if (cluster_name.empty()) return ctx.Error("cluster", "no cluster is set");

    auto cluster_it = clusters_.find(cluster_name);
    if (cluster_it == clusters_.end()) {
      return ctx.Error("cluster", "cluster " + Quote(cluster_name) + " not found");
    }
    if (Status s = ReadCluster(cluster_it->second.AsSection(), &config); !s.ok()) return s;

    if (!user_name.empty()) {
      auto user_it = users_.find(user_name);
      if (user_it == users_.end()) {
        return ctx.Error("user", "user " + Quote(user_name) + " not found");
      }
      if (Status s = ReadUser(user_it->second.AsSection(), &config); !s.ok()) return s;
    }
    config.source = ctx.source() + " (context " + context_name + ")";
    return config;
  }

 private:
  static std::string AllSources(const std::vector<std::string>& sources) {
    std::string out;
    for (const std::string& s : sources) out += (out.empty() ? "" : ", ") + s;
    return out.empty() ? "kubeconfig" : out;
  }

  static Status AddList(const json& doc, const char* list_key, const char* item_key,
                        const std::string& base_dir, const std::string& source,
                        std::map<std::string, NamedEntry>* into) {
    auto list_it = doc.find(list_key);
    if (list_it == doc.end() || list_it->is_null()) return Status::Ok();
    if (!list_it->is_array()) {
      return Status::InvalidArgument(source + ": " + list_key + ": must be a list");
    }
    // Names this file defines: within one file, too, the first definition wins.
    for (size_t i = 0; i < list_it->size(); ++i) {
      const json& entry = (*list_it)[i];
      const std::string path = std::string(list_key) + "[" + std::to_string(i) + "]";
      if (!entry.is_object()) {
        return Status::InvalidArgument(source + ": " + path + ": must be a mapping");
      }
      auto name = entry.find("name");
      if (name == entry.end() || !name->is_string() || name->get<std::string>().empty()) {
        return Status::InvalidArgument(source + ": " + path + ".name: must be a non-empty string");
      }
      auto body = entry.find(item_key);
      const json* body_ptr = nullptr;
      if (body != entry.end() && !body->is_null()) {
        if (!body->is_object()) {
          return Status::InvalidArgument(source + ": " + path + "." + item_key +
                                         ": must be a mapping");
        }
        body_ptr = &*body;
      }
      into->try_emplace(name->get<std::string>(),
                        NamedEntry{body_ptr, source, path + "." + item_key, base_dir});
    }
    return Status::Ok();
  }

  static Status ReadCluster(const Section& cluster, ClusterConfig* config) {
    std::string server;
    if (Status s = cluster.GetString("server", &server); !s.ok()) return s;
    if (server.empty()) return cluster.Error("server", "is missing");
    if (Status s = ParseServerUrl(server, config); !s.ok()) {
      return cluster.Error("server", s.message());
    }
    for (const char* refused : {"tls-server-name", "proxy-url"}) {
      if (cluster.Has(refused)) return cluster.Error(refused, "is not supported");
    }
    if (Status s = cluster.GetBool("insecure-skip-tls-verify", &config->insecure_skip_tls_verify);
        !s.ok()) {
      return s;
    }
    if (Status s = cluster.GetMaterial("certificate-authority-data", "certificate-authority",
                                       &config->ca_pem);
        !s.ok()) {
      return s;
    }
    if (config->insecure_skip_tls_verify && !config->ca_pem.empty()) {
      // kubectl refuses this too: it is either a mistake or a silent downgrade.
      return cluster.Error("insecure-skip-tls-verify",
                           "cannot be combined with a certificate authority");
    }
    return Status::Ok();
  }

  static Status ReadExec(const Section& exec, ExecConfig* out) {
    out->where = exec.source() + ": " + exec.path();
    if (Status s = exec.GetString("apiVersion", &out->api_version); !s.ok()) return s;
    if (out->api_version.empty()) return exec.Error("apiVersion", "is missing");
    if (out->api_version == "client.authentication.k8s.io/v1alpha1") {
      return exec.Error("apiVersion",
                        "v1alpha1 is no longer supported; use " + std::string(kExecV1));
    }
    if (out->api_version != kExecV1 && out->api_version != kExecV1beta1) {
      return exec.Error("apiVersion",
                        Quote(out->api_version) + " is not " + kExecV1 + " or " + kExecV1beta1);
    }
    if (Status s = exec.GetString("command", &out->command); !s.ok()) return s;
    if (out->command.empty()) return exec.Error("command", "is missing");
    // Only a command written as a path is resolved; a bare name is looked up in $PATH.
    if (out->command.find('/') != std::string::npos) {
      out->command = ResolvePath(exec.base_dir(), out->command);
    }
    if (Status s = exec.GetStrings("args", &out->args); !s.ok()) return s;
    if (const json* env = exec.Field("env"); env != nullptr) {
      if (!env->is_array()) return exec.Error("env", "must be a list");
      for (size_t i = 0; i < env->size(); ++i) {
        const Section var(exec.source(), exec.path() + ".env[" + std::to_string(i) + "]",
                          exec.base_dir(), (*env)[i].is_object() ? &(*env)[i] : nullptr);
        if (!(*env)[i].is_object()) return var.Error("", "must be a mapping");
        std::string name, value;
        if (Status s = var.GetString("name", &name); !s.ok()) return s;
        if (Status s = var.GetString("value", &value); !s.ok()) return s;
        if (name.empty() || name.find('=') != std::string::npos) {
          return var.Error("name", "must be a variable name");
        }
        out->env.emplace_back(std::move(name), std::move(value));
      }
    }
    std::string mode;
    if (Status s = exec.GetString("interactiveMode", &mode); !s.ok()) return s;
    if (mode.empty()) {
      // Required from v1 on; v1beta1 plugins predate it and behave as IfAvailable (client-go).
      if (out->api_version == kExecV1) return exec.Error("interactiveMode", "is missing");
      mode = "IfAvailable";
    }
    if (mode == "Never") {
      out->interactive_mode = ExecInteractiveMode::kNever;
    } else if (mode == "IfAvailable") {
      out->interactive_mode = ExecInteractiveMode::kIfAvailable;
    } else if (mode == "Always") {
      out->interactive_mode = ExecInteractiveMode::kAlways;
    } else {
      return exec.Error("interactiveMode",
                        Quote(mode) + " is not one of Never, IfAvailable and Always");
    }
    if (Status s = exec.GetBool("provideClusterInfo", &out->provide_cluster_info); !s.ok()) {
      return s;
    }
    return exec.GetString("installHint", &out->install_hint);
  }

  static Status ReadUser(const Section& user, ClusterConfig* config) {
    if (user.Has("auth-provider")) {
      return user.Error("auth-provider",
                        "auth-provider plugins are not supported (kubectl dropped them too); use "
                        "an exec plugin such as gke-gcloud-auth-plugin or kubelogin");
    }
    if (user.Has("username") || user.Has("password")) {
      return user.Error(user.Has("username") ? "username" : "password",
                        "basic authentication is not supported; use a client certificate, a "
                        "token or an exec plugin");
    }
    if (Status s = user.GetMaterial("client-certificate-data", "client-certificate",
                                    &config->client_cert_pem);
        !s.ok()) {
      return s;
    }
    if (Status s = user.GetMaterial("client-key-data", "client-key", &config->client_key_pem);
        !s.ok()) {
      return s;
    }
    if (config->client_cert_pem.empty() != config->client_key_pem.empty()) {
      return user.Error(config->client_cert_pem.empty() ? "client-key" : "client-certificate",
                        "a client certificate needs a client key, and a key needs a certificate");
    }
    if (Status s = user.GetString("token", &config->bearer_token); !s.ok()) return s;
    std::string token_file;
    if (Status s = user.GetString("tokenFile", &token_file); !s.ok()) return s;
    if (!token_file.empty()) {
      config->bearer_token_file = ResolvePath(user.base_dir(), token_file);
      Result<std::string> token =
          ReadFileToString(config->bearer_token_file, kMaxCredentialFileBytes);
      if (!token.ok()) return user.Error("tokenFile", token.status().message());
    }
    Result<Section> exec = user.Child("exec");
    if (!exec.ok()) return exec.status();
    if (user.Has("exec")) {
      ExecConfig exec_config;
      if (Status s = ReadExec(exec.value(), &exec_config); !s.ok()) return s;
      // As in client-go, a static token is sent as it is and the plugin is never run.
      if (config->bearer_token.empty() && config->bearer_token_file.empty()) {
        config->exec = std::move(exec_config);
      }
    }
    return Status::Ok();
  }

  std::vector<std::unique_ptr<json>> docs_;  // the entries point into these
  std::vector<std::string> sources_;
  std::vector<std::string> empty_sources_;
  std::string current_context_;
  std::string current_context_source_;
  std::map<std::string, NamedEntry> clusters_;
  std::map<std::string, NamedEntry> users_;
  std::map<std::string, NamedEntry> contexts_;
};

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
  MergedKubeconfig merged;
  if (Status s = merged.Add(text, base_dir, std::string(source_name)); !s.ok()) return s;
  return merged.Resolve(context);
}

Result<ClusterConfig> LoadKubeconfig(const std::string& path, std::string_view context) {
  Result<std::string> text = ReadFileToString(path, kMaxKubeconfigBytes);
  if (!text.ok()) {
    return Status::InvalidArgument("kubeconfig: " + text.status().message());
  }
  return ParseKubeconfig(text.value(), DirName(path), context, "kubeconfig " + path);
}

Result<ClusterConfig> LoadMergedKubeconfig(const std::vector<std::string>& paths,
                                           std::string_view context) {
  MergedKubeconfig merged;
  std::set<std::string> seen;
  bool any = false;
  for (const std::string& path : paths) {
    if (path.empty() || !seen.insert(path).second) continue;
    Result<std::string> text = ReadFileToString(path, kMaxKubeconfigBytes);
    if (!text.ok()) {
      if (text.status().code() == Status::Code::kNotFound) continue;
      return Status::InvalidArgument("kubeconfig: " + text.status().message());
    }
    any = true;
    if (Status s = merged.Add(text.value(), DirName(path), "kubeconfig " + path); !s.ok()) {
      return s;
    }
  }
  if (!any) {
    std::string list;
    for (const std::string& path : paths) list += (list.empty() ? "" : ", ") + path;
    return Status::NotFound("kubeconfig: none of these files exists: " + list);
  }
  return merged.Resolve(context);
}

std::vector<std::string> SplitKubeconfigList(std::string_view value) {
  std::vector<std::string> paths;
  size_t start = 0;
  while (start <= value.size()) {
    const size_t colon = value.find(':', start);
    const size_t end = colon == std::string_view::npos ? value.size() : colon;
    if (end > start) paths.emplace_back(value.substr(start, end - start));
    start = end + 1;
  }
  return paths;
}

KubeconfigLoadingRules LoadingRulesFromEnvironment(std::string explicit_path, std::string context) {
  KubeconfigLoadingRules rules;
  rules.explicit_path = std::move(explicit_path);
  rules.context = std::move(context);
  if (const char* env = std::getenv("KUBECONFIG"); env != nullptr) rules.kubeconfig_env = env;
  if (const char* home = std::getenv("HOME"); home != nullptr) rules.home = home;
  return rules;
}

Result<ClusterConfig> LoadClusterConfig(const KubeconfigLoadingRules& rules) {
  if (!rules.explicit_path.empty()) {
    return LoadKubeconfig(rules.explicit_path, rules.context);
  }
  if (!rules.kubeconfig_env.empty()) {
    Result<ClusterConfig> merged =
        LoadMergedKubeconfig(SplitKubeconfigList(rules.kubeconfig_env), rules.context);
    if (!merged.ok() && merged.status().code() == Status::Code::kNotFound) {
      // $KUBECONFIG says where the cluster is; that none of its files exists is an error.
      return Status::InvalidArgument("$KUBECONFIG: " + merged.status().message());
    }
    return merged;
  }
  const char* service_host = std::getenv("KUBERNETES_SERVICE_HOST");
  if (rules.context.empty() && service_host != nullptr && *service_host != '\0') {
    return InClusterConfig(rules.service_account_dir);
  }
  if (!rules.home.empty()) {
    const std::string home_config = ResolvePath(rules.home, ".kube/config");
    Result<ClusterConfig> config = LoadMergedKubeconfig({home_config}, rules.context);
    if (config.ok() || config.status().code() != Status::Code::kNotFound) return config;
  }
  return Status::NotFound(
      "no cluster: no --kubeconfig, no $KUBECONFIG, not in a pod (KUBERNETES_SERVICE_HOST) and no "
      "~/.kube/config");
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
