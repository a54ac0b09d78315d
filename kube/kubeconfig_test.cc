#include "kube/kubeconfig.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "kube/testutil.h"

namespace bg::kube {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testutil::TempDir;

constexpr char kCaPem[] = "-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n";
constexpr char kCertPem[] = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n";
constexpr char kKeyPem[] = "-----BEGIN EC PRIVATE KEY-----\nMHckey\n-----END EC PRIVATE KEY-----\n";

std::string Base64(const std::string& in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i + 1 == in.size()) {
    const uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    out += {kAlphabet[(v >> 18) & 63], kAlphabet[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    const uint32_t v =
        (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += {kAlphabet[(v >> 18) & 63], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], '='};
  }
  return out;
}

// What `kind create cluster` writes (kubectl's layout), with real base64 data.
std::string KindKubeconfig() {
  return "apiVersion: v1\n"
         "clusters:\n"
         "- cluster:\n"
         "    certificate-authority-data: " +
         Base64(kCaPem) +
         "\n"
         "    server: https://127.0.0.1:39243\n"
         "  name: kind-kind\n"
         "contexts:\n"
         "- context:\n"
         "    cluster: kind-kind\n"
         "    user: kind-kind\n"
         "  name: kind-kind\n"
         "current-context: kind-kind\n"
         "kind: Config\n"
         "preferences: {}\n"
         "users:\n"
         "- name: kind-kind\n"
         "  user:\n"
         "    client-certificate-data: " +
         Base64(kCertPem) +
         "\n"
         "    client-key-data: " +
         Base64(kKeyPem) + "\n";
}

Result<ClusterConfig> Parse(const std::string& text, const std::string& base_dir = "/base",
                            std::string_view context = "") {
  return ParseKubeconfig(text, base_dir, context, "kubeconfig test.yaml");
}

std::string ParseError(const std::string& text, std::string_view context = "") {
  Result<ClusterConfig> r = Parse(text, "/base", context);
  EXPECT_FALSE(r.ok());
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  return r.status().message();
}

TEST(KubeconfigTest, KubectlStyleWithClientCertificateData) {
  Result<ClusterConfig> r = Parse(KindKubeconfig());
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ClusterConfig& c = r.value();
  EXPECT_EQ(c.host, "127.0.0.1");
  EXPECT_EQ(c.port, 39243);
  EXPECT_EQ(c.base_path, "");
  EXPECT_EQ(c.ca_pem, kCaPem);
  EXPECT_EQ(c.client_cert_pem, kCertPem);
  EXPECT_EQ(c.client_key_pem, kKeyPem);
  EXPECT_EQ(c.bearer_token, "");
  EXPECT_FALSE(c.insecure_skip_tls_verify);
  EXPECT_EQ(c.source, "kubeconfig test.yaml (context kind-kind)");
}

TEST(KubeconfigTest, TokenAndRelativeCaFileResolvedAgainstTheKubeconfigDirectory) {
  TempDir dir;
  dir.WriteFile("pki/ca.crt", kCaPem);
  const std::string path = dir.WriteFile("conf/admin.conf", R"(# kubeadm style, with comments
apiVersion: v1
kind: Config
current-context: admin@cluster
clusters:
  - name: cluster
    cluster:
      server: "https://api.example.internal"   # default port
      certificate-authority: ../pki/ca.crt
contexts:
  - name: admin@cluster
    context: {"cluster": "cluster", "user": "admin", "namespace": "longhorn-system"}
users:
  - name: admin
    user:
      token: 'abc.def'
)");
  Result<ClusterConfig> r = LoadKubeconfig(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->host, "api.example.internal");
  EXPECT_EQ(r->port, 443);
  EXPECT_EQ(r->ca_pem, kCaPem);
  EXPECT_EQ(r->bearer_token, "abc.def");
  EXPECT_EQ(r->default_namespace, "longhorn-system");
  EXPECT_THAT(r->source, HasSubstr(path));
}

TEST(KubeconfigTest, ClientCertificateFilesAndTokenFile) {
  TempDir dir;
  dir.WriteFile("client.crt", kCertPem);
  dir.WriteFile("client.key", kKeyPem);
  const std::string token = dir.WriteFile("token", "tok\n");
  const std::string path = dir.WriteFile("config", R"(apiVersion: v1
clusters:
- cluster:
    server: https://10.0.0.1:6443
    insecure-skip-tls-verify: true
  name: c
contexts:
- context:
    cluster: c
    user: u
  name: ctx
current-context: ctx
users:
- name: u
  user:
    client-certificate: client.crt
    client-key: )" + dir.path() + R"(/client.key
    tokenFile: token
)");
  Result<ClusterConfig> r = LoadKubeconfig(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->insecure_skip_tls_verify);
  EXPECT_EQ(r->ca_pem, "");
  EXPECT_EQ(r->client_cert_pem, kCertPem);
  EXPECT_EQ(r->client_key_pem, kKeyPem);
  EXPECT_EQ(r->bearer_token_file, token);
}

TEST(KubeconfigTest, JsonKubeconfig) {
  const std::string text = R"({
  "apiVersion": "v1",
  "kind": "Config",
  "clusters": [{"name": "c", "cluster": {"server": "https://[::1]:6443/k8s/clusters/c-1/",
                                         "certificate-authority-data": ")" +
                           Base64(kCaPem) + R"("}}],
  "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
  "users": [{"name": "u", "user": {"token": "t"}}],
  "current-context": "x"
})";
  Result<ClusterConfig> r = Parse(text);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->host, "::1");
  EXPECT_EQ(r->port, 6443);
  EXPECT_EQ(r->base_path, "/k8s/clusters/c-1");
  EXPECT_EQ(r->ca_pem, kCaPem);
  EXPECT_EQ(r->bearer_token, "t");
}

TEST(KubeconfigTest, ExplicitContextOverridesCurrentContext) {
  std::string text = KindKubeconfig() +
                     "- name: other\n"
                     "  user:\n"
                     "    token: other-token\n";
  // Add a second context pointing at the same cluster with another user.
  const std::string contexts_marker = "contexts:\n";
  text.insert(text.find(contexts_marker) + contexts_marker.size(),
              "- context:\n    cluster: kind-kind\n    user: other\n  name: second\n");
  Result<ClusterConfig> r = Parse(text, "/base", "second");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->bearer_token, "other-token");
  EXPECT_EQ(r->client_cert_pem, "");
  EXPECT_THAT(ParseError(text, "missing"), HasSubstr("context \"missing\" not found"));
}

TEST(KubeconfigTest, DataFieldsWinOverFiles) {
  std::string text = KindKubeconfig();
  text.insert(text.find("    server:"), "    certificate-authority: /nonexistent/ca.crt\n");
  Result<ClusterConfig> r = Parse(text);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->ca_pem, kCaPem);
}

TEST(KubeconfigTest, ContextWithoutUserMeansNoCredentials) {
  Result<ClusterConfig> r = Parse(R"(clusters:
- name: c
  cluster:
    server: https://h:1
contexts:
- name: x
  context:
    cluster: c
current-context: x
)");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->client_cert_pem, "");
  EXPECT_EQ(r->bearer_token, "");
}

TEST(KubeconfigTest, MissingPiecesAreClearErrors) {
  EXPECT_THAT(ParseError(""), HasSubstr("empty"));
  EXPECT_THAT(ParseError("- a\n"), HasSubstr("not a kubeconfig mapping"));
  EXPECT_THAT(ParseError("kind: Pod\n"), HasSubstr("want Config"));
  EXPECT_THAT(ParseError("apiVersion: v1\nkind: Config\n"), HasSubstr("no current-context"));
  EXPECT_THAT(ParseError("current-context: x\n"), HasSubstr("context \"x\" not found"));
  EXPECT_THAT(ParseError("current-context: x\ncontexts:\n- name: x\n  context:\n    cluster: c\n"),
              HasSubstr("cluster \"c\" not found"));
  EXPECT_THAT(ParseError("current-context: x\ncontexts:\n- name: x\n  context:\n    user: u\n"),
              HasSubstr("no cluster is set"));
  std::string no_user = KindKubeconfig();
  no_user.replace(no_user.find("- name: kind-kind\n  user:"), 17, "- name: someone-else");
  EXPECT_THAT(ParseError(no_user), HasSubstr("user \"kind-kind\" not found"));
  EXPECT_THAT(ParseError("current-context: x\ncontexts: 5\n"),
              HasSubstr("contexts must be a list"));
}

TEST(KubeconfigTest, YamlErrorsCarryTheFileAndLine) {
  EXPECT_THAT(ParseError("apiVersion: v1\nclusters:\n\t- name: c\n"),
              AllOf(HasSubstr("kubeconfig test.yaml"), HasSubstr("line 3"), HasSubstr("tab")));
  EXPECT_THAT(ParseError("apiVersion: v1\nusers: &u []\n"),
              AllOf(HasSubstr("line 2"), HasSubstr("anchors")));
}

TEST(KubeconfigTest, WrongFieldTypesAreErrors) {
  std::string text = KindKubeconfig();
  text.replace(text.find("server: https://127.0.0.1:39243"), 31, "server: [1, 2]");
  EXPECT_THAT(ParseError(text),
              AllOf(HasSubstr("cluster \"kind-kind\""), HasSubstr("server must be a string")));
  std::string bad_bool = KindKubeconfig();
  bad_bool.insert(bad_bool.find("    server:"), "    insecure-skip-tls-verify: maybe\n");
  EXPECT_THAT(ParseError(bad_bool), HasSubstr("must be true or false"));
}

TEST(KubeconfigTest, UnsupportedAuthenticationIsRefused) {
  auto with_user = [](const std::string& user_body) {
    return "current-context: x\n"
           "contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n"
           "clusters:\n- name: c\n  cluster:\n    server: https://h\n"
           "users:\n- name: u\n  user:\n" +
           user_body;
  };
  EXPECT_THAT(ParseError(with_user("    exec:\n      command: aws\n")),
              AllOf(HasSubstr("user \"u\""), HasSubstr("exec credential plugins")));
  EXPECT_THAT(ParseError(with_user("    auth-provider:\n      name: gcp\n")),
              HasSubstr("auth-provider"));
  EXPECT_THAT(ParseError(with_user("    username: a\n    password: b\n")),
              HasSubstr("basic authentication"));
  EXPECT_THAT(ParseError(with_user("    client-certificate-data: " + Base64(kCertPem) + "\n")),
              HasSubstr("needs a client key"));
  EXPECT_THAT(ParseError(with_user("    client-key-data: '%%%'\n")), HasSubstr("invalid base64"));
  EXPECT_THAT(ParseError(with_user("    tokenFile: /nonexistent/token\n")),
              AllOf(HasSubstr("tokenFile"), HasSubstr("/nonexistent/token")));
}

TEST(KubeconfigTest, UnsupportedClusterSettingsAreRefused) {
  auto with_cluster = [](const std::string& cluster_body) {
    return "current-context: x\n"
           "contexts:\n- name: x\n  context:\n    cluster: c\n"
           "clusters:\n- name: c\n  cluster:\n" +
           cluster_body;
  };
  EXPECT_THAT(ParseError(with_cluster("    server: http://h:8080\n")),
              HasSubstr("plain http servers are not supported"));
  EXPECT_THAT(ParseError(with_cluster("    insecure-skip-tls-verify: true\n")),
              HasSubstr("server is missing"));
  EXPECT_THAT(ParseError(with_cluster("    server: https://h\n    tls-server-name: x\n")),
              HasSubstr("tls-server-name is not supported"));
  EXPECT_THAT(ParseError(with_cluster("    server: https://h\n    proxy-url: http://p\n")),
              HasSubstr("proxy-url is not supported"));
  EXPECT_THAT(ParseError(with_cluster("    server: https://h\n    insecure-skip-tls-verify: true\n"
                                      "    certificate-authority-data: " +
                                      Base64(kCaPem) + "\n")),
              HasSubstr("cannot be combined"));
  EXPECT_THAT(ParseError(with_cluster("    server: https://h\n"
                                      "    certificate-authority: missing/ca.crt\n")),
              AllOf(HasSubstr("certificate-authority"), HasSubstr("/base/missing/ca.crt")));
}

TEST(KubeconfigTest, MissingFileNamesThePath) {
  Result<ClusterConfig> r = LoadKubeconfig("/nonexistent/dir/config");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/dir/config"));
}

TEST(ServerUrlTest, Forms) {
  struct Case {
    const char* url;
    const char* host;
    int port;
    const char* base_path;
  };
  for (const Case& c :
       {Case{"https://127.0.0.1:6443", "127.0.0.1", 6443, ""},
        Case{"https://host", "host", 443, ""}, Case{"https://host/", "host", 443, ""},
        Case{"HTTPS://Host:8443/a/b/", "Host", 8443, "/a/b"},
        Case{"https://[fd00::1]", "fd00::1", 443, ""}, Case{"https://[::1]:6443", "::1", 6443, ""},
        Case{"kubernetes.default.svc:443", "kubernetes.default.svc", 443, ""}}) {
    ClusterConfig config;
    Status s = ParseServerUrl(c.url, &config);
    ASSERT_TRUE(s.ok()) << c.url << ": " << s.message();
    EXPECT_EQ(config.host, c.host) << c.url;
    EXPECT_EQ(config.port, c.port) << c.url;
    EXPECT_EQ(config.base_path, c.base_path) << c.url;
  }
  for (const char* bad : {"https://", "https://:6443", "https://h:0", "https://h:65536",
                          "https://h:x", "https://user@h", "https://h/p?q=1", "ftp://h",
                          "https://[::1", "https://::1:6443", "http://h"}) {
    ClusterConfig config;
    EXPECT_FALSE(ParseServerUrl(bad, &config).ok()) << bad;
  }
}

TEST(Base64Test, DecodesStandardBase64) {
  for (const std::string& s :
       {std::string(""), std::string("f"), std::string("fo"), std::string("foo"),
        std::string("foob"), std::string(kCaPem), std::string("\0\xff\x10", 3)}) {
    Result<std::string> d = DecodeBase64(Base64(s));
    ASSERT_TRUE(d.ok()) << d.status().message();
    EXPECT_EQ(d.value(), s);
  }
  EXPECT_EQ(DecodeBase64("Zm9v\nYmFy\r\n").value(), "foobar");
  EXPECT_EQ(DecodeBase64("Zm8").value(), "fo");  // padding is optional
  EXPECT_FALSE(DecodeBase64("Zm9v!").ok());
  EXPECT_FALSE(DecodeBase64("Z").ok());
  EXPECT_FALSE(DecodeBase64("Zg==Zg==").ok());
  EXPECT_FALSE(DecodeBase64("Zg===").ok());
}

// Sets or clears an environment variable for one test and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) saved_ = old;
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (saved_) {
      setenv(name_, saved_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

TEST(InClusterConfigTest, ReadsEnvironmentAndServiceAccount) {
  TempDir sa;
  const std::string token = sa.WriteFile("token", "jwt.token.value\n");
  sa.WriteFile("ca.crt", kCaPem);
  sa.WriteFile("namespace", "longhorn-system\n");
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  Result<ClusterConfig> r = InClusterConfig(sa.path());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->host, "10.96.0.1");
  EXPECT_EQ(r->port, 443);
  EXPECT_EQ(r->ca_pem, kCaPem);
  EXPECT_EQ(r->bearer_token_file, token);
  EXPECT_EQ(r->bearer_token, "");
  EXPECT_EQ(r->default_namespace, "longhorn-system");
  EXPECT_EQ(r->source, "in-cluster");
}

TEST(InClusterConfigTest, Ipv6ServiceHost) {
  TempDir sa;
  sa.WriteFile("token", "t");
  sa.WriteFile("ca.crt", kCaPem);
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "fd00:10:96::1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "6443");
  Result<ClusterConfig> r = InClusterConfig(sa.path());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->host, "fd00:10:96::1");
  EXPECT_EQ(r->port, 6443);
  EXPECT_EQ(r->default_namespace, "");
}

TEST(InClusterConfigTest, OutsideAPodIsAnError) {
  TempDir sa;
  ScopedEnv host("KUBERNETES_SERVICE_HOST", nullptr);
  ScopedEnv port("KUBERNETES_SERVICE_PORT", nullptr);
  Result<ClusterConfig> r = InClusterConfig(sa.path());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("KUBERNETES_SERVICE_HOST"));
}

TEST(InClusterConfigTest, MissingServiceAccountFilesAreErrors) {
  TempDir sa;
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  Result<ClusterConfig> r = InClusterConfig(sa.path());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(sa.path() + "/token"));

  sa.WriteFile("token", "  \n");
  r = InClusterConfig(sa.path());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("is empty"));

  sa.WriteFile("token", "t");
  r = InClusterConfig(sa.path());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("ca.crt"));
}

TEST(InClusterConfigTest, BadPortIsAnError) {
  TempDir sa;
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "https");
  Result<ClusterConfig> r = InClusterConfig(sa.path());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("KUBERNETES_SERVICE_PORT"));
}

}  // namespace
}  // namespace bg::kube
