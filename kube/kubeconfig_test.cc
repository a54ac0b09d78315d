#include "kube/kubeconfig.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "kube/testutil.h"

namespace bg::kube {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
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
  EXPECT_THAT(ParseError(text, "missing"), Not(HasSubstr("current-context")));
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
  EXPECT_THAT(ParseError("current-context: x\n"),
              AllOf(HasSubstr("current-context"), HasSubstr("context \"x\" not found")));
  EXPECT_THAT(
      ParseError("current-context: x\ncontexts:\n- name: x\n  context:\n    cluster: c\n"),
      AllOf(HasSubstr("contexts[0].context.cluster: "), HasSubstr("cluster \"c\" not found")));
  EXPECT_THAT(ParseError("current-context: x\ncontexts:\n- name: x\n  context:\n    user: u\n"),
              HasSubstr("no cluster is set"));
  std::string no_user = KindKubeconfig();
  no_user.replace(no_user.find("- name: kind-kind\n  user:"), 17, "- name: someone-else");
  EXPECT_THAT(ParseError(no_user), AllOf(HasSubstr("contexts[0].context.user: "),
                                         HasSubstr("user \"kind-kind\" not found")));
  EXPECT_THAT(ParseError("current-context: x\ncontexts: 5\n"),
              HasSubstr("contexts: must be a list"));
  EXPECT_THAT(ParseError("current-context: x\nusers:\n- user: {}\n"),
              HasSubstr("users[0].name: must be a non-empty string"));
}

TEST(KubeconfigTest, ErrorsNameTheFieldAtFaultByItsPath) {
  const std::string text = R"(current-context: b
clusters:
- name: c
  cluster:
    server: https://h
contexts:
- name: a
  context: {cluster: c}
- name: b
  context:
    cluster: [not, a, string]
)";
  EXPECT_EQ(ParseError(text),
            "kubeconfig test.yaml: contexts[1].context.cluster: must be a string");
}

TEST(KubeconfigTest, BadYamlIsAClearErrorWithTheFileAndLine) {
  EXPECT_THAT(ParseError("apiVersion: v1\nclusters:\n- name: c\n  cluster: {server: https://h\n"),
              AllOf(HasSubstr("kubeconfig test.yaml: yaml: line "), HasSubstr("column")));
  EXPECT_THAT(ParseError("apiVersion: v1\nclusters: [\n"),
              HasSubstr("kubeconfig test.yaml: yaml: "));
  EXPECT_THAT(ParseError("current-context: a\ncurrent-context: b\n"),
              AllOf(HasSubstr("line 2"), HasSubstr("duplicate mapping key \"current-context\"")));
  // Found by fuzz_kubeconfig: a kind with a byte that is not UTF-8 made the error message throw.
  EXPECT_THAT(ParseError("apiVersion: v1\nkind: Confi\x94\n"),
              HasSubstr("yaml: invalid UTF-8 at byte 26"));
  EXPECT_THAT(ParseError("a: \xC0\x80\n"), HasSubstr("invalid UTF-8 at byte 3"));  // overlong
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "[";
  EXPECT_THAT(ParseError("a: " + deep + std::string(100, ']') + "\n"), HasSubstr("nested deeper"));
}

TEST(KubeconfigTest, AliasesWorkAndCannotExpandWithoutBound) {
  // kubectl's YAML reader follows anchors and aliases; a document of aliases of aliases that
  // would expand to billions of nodes is refused instead.
  Result<ClusterConfig> r = Parse(R"(current-context: x
clusters:
- name: c
  cluster: &cluster
    server: https://h:6443
- name: d
  cluster: *cluster
contexts:
- name: x
  context: {cluster: d}
)");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->port, 6443);
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    const char prev = static_cast<char>(c - 1);
    bomb += std::string(1, c) + ": &" + c + " [*" + prev + ", *" + prev + ", *" + prev + ", *" +
            prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev +
            ", *" + prev + "]\n";
  }
  EXPECT_THAT(ParseError(bomb), HasSubstr("too large"));
}

TEST(KubeconfigTest, QuotedScalarsStayStrings) {
  std::string text = KindKubeconfig();
  text.insert(text.find("    server:"), "    insecure-skip-tls-verify: \"maybe\"\n");
  EXPECT_THAT(ParseError(text),
              HasSubstr("clusters[0].cluster.insecure-skip-tls-verify: must be true or false"));
  // A token that looks like a number, quoted, is a string; unquoted it is a number and refused.
  const std::string base =
      "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
      "clusters:\n- name: c\n  cluster: {server: https://h}\nusers:\n- name: u\n  user:\n";
  Result<ClusterConfig> quoted = Parse(base + "    token: \"12345\"\n");
  ASSERT_TRUE(quoted.ok()) << quoted.status().message();
  EXPECT_EQ(quoted->bearer_token, "12345");
  EXPECT_THAT(ParseError(base + "    token: 12345\n"),
              HasSubstr("users[0].user.token: must be a string"));
}

TEST(KubeconfigTest, WrongFieldTypesAreErrors) {
  std::string text = KindKubeconfig();
  text.replace(text.find("server: https://127.0.0.1:39243"), 31, "server: [1, 2]");
  EXPECT_THAT(ParseError(text), HasSubstr("clusters[0].cluster.server: must be a string"));
  std::string bad_bool = KindKubeconfig();
  bad_bool.insert(bad_bool.find("    server:"), "    insecure-skip-tls-verify: maybe\n");
  EXPECT_THAT(ParseError(bad_bool), HasSubstr("must be true or false"));
}

std::string WithUser(const std::string& user_body) {
  return "current-context: x\n"
         "contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n"
         "clusters:\n- name: c\n  cluster:\n    server: https://h\n"
         "users:\n- name: u\n  user:\n" +
         user_body;
}

TEST(KubeconfigTest, UnsupportedAuthenticationIsRefused) {
  EXPECT_THAT(ParseError(WithUser("    auth-provider:\n      name: gcp\n")),
              AllOf(HasSubstr("users[0].user.auth-provider"), HasSubstr("exec plugin")));
  EXPECT_THAT(ParseError(WithUser("    username: a\n    password: b\n")),
              HasSubstr("basic authentication"));
  EXPECT_THAT(ParseError(WithUser("    client-certificate-data: " + Base64(kCertPem) + "\n")),
              HasSubstr("needs a client key"));
  EXPECT_THAT(ParseError(WithUser("    client-key-data: '%%%'\n")), HasSubstr("invalid base64"));
  EXPECT_THAT(ParseError(WithUser("    tokenFile: /nonexistent/token\n")),
              AllOf(HasSubstr("users[0].user.tokenFile"), HasSubstr("/nonexistent/token")));
}

TEST(KubeconfigTest, ExecPluginIsRead) {
  Result<ClusterConfig> r = Parse(WithUser(R"(    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: bin/get-token
      args: [--cluster, prod]
      env:
      - name: AWS_PROFILE
        value: admin
      interactiveMode: Never
      provideClusterInfo: true
      installHint: install get-token from example.com
)"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(r->exec.has_value());
  EXPECT_EQ(r->exec->api_version, "client.authentication.k8s.io/v1");
  EXPECT_EQ(r->exec->command, "/base/bin/get-token");  // a path: resolved like any file
  EXPECT_EQ(r->exec->args, (std::vector<std::string>{"--cluster", "prod"}));
  ASSERT_EQ(r->exec->env.size(), 1u);
  EXPECT_EQ(r->exec->env[0].first, "AWS_PROFILE");
  EXPECT_EQ(r->exec->env[0].second, "admin");
  EXPECT_EQ(r->exec->interactive_mode, ExecInteractiveMode::kNever);
  EXPECT_TRUE(r->exec->provide_cluster_info);
  EXPECT_EQ(r->exec->install_hint, "install get-token from example.com");
  EXPECT_EQ(r->exec->where, "kubeconfig test.yaml: users[0].user.exec");

  // A bare command name is looked up in $PATH; v1beta1 defaults to IfAvailable.
  Result<ClusterConfig> beta =
      Parse(WithUser("    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n"
                     "      command: aws\n"));
  ASSERT_TRUE(beta.ok()) << beta.status().message();
  EXPECT_EQ(beta->exec->command, "aws");
  EXPECT_EQ(beta->exec->interactive_mode, ExecInteractiveMode::kIfAvailable);
}

TEST(KubeconfigTest, StaticTokenWinsOverExecPlugin) {
  Result<ClusterConfig> r = Parse(
      WithUser("    token: static\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
               "      command: aws\n      interactiveMode: Never\n"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->bearer_token, "static");
  EXPECT_FALSE(r->exec.has_value());
}

TEST(KubeconfigTest, BadExecEntriesNameTheField) {
  auto exec = [](const std::string& body) { return ParseError(WithUser("    exec:\n" + body)); };
  EXPECT_THAT(exec("      command: aws\n"), HasSubstr("users[0].user.exec.apiVersion: is missing"));
  EXPECT_THAT(exec("      apiVersion: client.authentication.k8s.io/v1alpha1\n      command: a\n"),
              HasSubstr("no longer supported"));
  EXPECT_THAT(exec("      apiVersion: v1\n      command: a\n"),
              HasSubstr("users[0].user.exec.apiVersion: \"v1\" is not"));
  EXPECT_THAT(
      exec("      apiVersion: client.authentication.k8s.io/v1\n      interactiveMode: Never\n"),
      HasSubstr("users[0].user.exec.command: is missing"));
  EXPECT_THAT(exec("      apiVersion: client.authentication.k8s.io/v1\n      command: a\n"),
              HasSubstr("users[0].user.exec.interactiveMode: is missing"));
  EXPECT_THAT(exec("      apiVersion: client.authentication.k8s.io/v1\n      command: a\n"
                   "      interactiveMode: Sometimes\n"),
              HasSubstr("\"Sometimes\" is not one of Never, IfAvailable and Always"));
  EXPECT_THAT(exec("      apiVersion: client.authentication.k8s.io/v1beta1\n      command: a\n"
                   "      args: [1, 2]\n"),
              HasSubstr("users[0].user.exec.args[0]: must be a string"));
  EXPECT_THAT(exec("      apiVersion: client.authentication.k8s.io/v1beta1\n      command: a\n"
                   "      env: [{value: x}]\n"),
              HasSubstr("users[0].user.exec.env[0].name: must be a variable name"));
  EXPECT_THAT(ParseError(WithUser("    exec: aws\n")),
              HasSubstr("users[0].user.exec: must be a mapping"));
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
              HasSubstr("server: is missing"));
  EXPECT_THAT(ParseError(with_cluster("    server: https://h\n    tls-server-name: x\n")),
              HasSubstr("tls-server-name: is not supported"));
  EXPECT_THAT(ParseError(with_cluster("    server: https://h\n    proxy-url: http://p\n")),
              HasSubstr("proxy-url: is not supported"));
  EXPECT_THAT(ParseError(with_cluster("    server: https://h\n    insecure-skip-tls-verify: true\n"
                                      "    certificate-authority-data: " +
                                      Base64(kCaPem) + "\n")),
              HasSubstr("cannot be combined"));
  EXPECT_THAT(ParseError(with_cluster("    server: https://h\n"
                                      "    certificate-authority: missing/ca.crt\n")),
              AllOf(HasSubstr("certificate-authority"), HasSubstr("/base/missing/ca.crt")));
}

// Two files as `KUBECONFIG=a:b` names them.
struct TwoFiles {
  TempDir dir;
  std::string first;
  std::string second;
};

TEST(MergedKubeconfigTest, FirstFileToDefineANameWinsAndSetsCurrentContext) {
  TwoFiles f;
  f.first = f.dir.WriteFile("a/config", R"(current-context: one
clusters:
- name: shared
  cluster: {server: https://first:1}
contexts:
- name: one
  context: {cluster: shared, user: u}
users:
- name: u
  user: {tokenFile: token}
)");
  f.dir.WriteFile("a/token", "token-of-a\n");
  f.second = f.dir.WriteFile("b/config", R"(current-context: two
clusters:
- name: shared
  cluster: {server: https://second:2}
- name: own
  cluster: {server: https://own:3, certificate-authority: ca.crt}
contexts:
- name: one
  context: {cluster: own}
- name: two
  context: {cluster: own, user: u, namespace: ns-b}
users:
- name: u
  user: {token: token-of-b}
)");
  f.dir.WriteFile("b/ca.crt", kCaPem);

  Result<ClusterConfig> current = LoadMergedKubeconfig({f.first, f.second});
  ASSERT_TRUE(current.ok()) << current.status().message();
  EXPECT_EQ(current->host, "first");  // context "one" and cluster "shared" of the first file
  EXPECT_EQ(current->bearer_token_file, f.dir.path() + "/a/token");
  EXPECT_EQ(current->source, "kubeconfig " + f.first + " (context one)");

  // A context only the second file has; its cluster resolves its CA file against b/, and its
  // user "u" is the first file's (the first definition of a name wins).
  Result<ClusterConfig> two = LoadMergedKubeconfig({f.first, f.second}, "two");
  ASSERT_TRUE(two.ok()) << two.status().message();
  EXPECT_EQ(two->host, "own");
  EXPECT_EQ(two->ca_pem, kCaPem);
  EXPECT_EQ(two->default_namespace, "ns-b");
  EXPECT_EQ(two->bearer_token, "");
  EXPECT_EQ(two->bearer_token_file, f.dir.path() + "/a/token");

  // The other order: the second file's definitions and current-context win.
  Result<ClusterConfig> reversed = LoadMergedKubeconfig({f.second, f.first});
  ASSERT_TRUE(reversed.ok()) << reversed.status().message();
  EXPECT_EQ(reversed->host, "own");
  EXPECT_EQ(reversed->bearer_token, "token-of-b");
}

TEST(MergedKubeconfigTest, MissingFilesAreSkippedAndNoneIsNotFound) {
  TempDir dir;
  const std::string only = dir.WriteFile("config", KindKubeconfig());
  Result<ClusterConfig> r = LoadMergedKubeconfig({dir.path() + "/missing", "", only, only});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->port, 39243);
  Result<ClusterConfig> none = LoadMergedKubeconfig({dir.path() + "/a", dir.path() + "/b"});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Status::Code::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr(dir.path() + "/a"));
}

TEST(MergedKubeconfigTest, AnErrorNamesTheFileThatHoldsIt) {
  TempDir dir;
  const std::string good = dir.WriteFile("good", KindKubeconfig());
  const std::string bad = dir.WriteFile("bad", "users: {}\n");
  Result<ClusterConfig> r = LoadMergedKubeconfig({good, bad});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "kubeconfig " + bad + ": users: must be a list");
}

TEST(MergedKubeconfigTest, SplitKubeconfigList) {
  EXPECT_EQ(SplitKubeconfigList("a:b::/c/d:"), (std::vector<std::string>{"a", "b", "/c/d"}));
  EXPECT_TRUE(SplitKubeconfigList("").empty());
}

TEST(LoadClusterConfigTest, PrecedenceIsFlagThenEnvThenInClusterThenHome) {
  TempDir dir;
  auto config_for = [&](const std::string& name, const std::string& server) {
    return dir.WriteFile(name,
                         "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c}\n"
                         "- name: y\n  context: {cluster: c, namespace: from-y}\n"
                         "clusters:\n- name: c\n  cluster: {server: " +
                             server + "}\n");
  };
  const std::string flag = config_for("flag", "https://flag");
  const std::string env = config_for("env", "https://env");
  config_for("home/.kube/config", "https://home");
  dir.WriteFile("sa/token", "sa-token");
  dir.WriteFile("sa/ca.crt", kCaPem);
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");

  KubeconfigLoadingRules rules;
  rules.explicit_path = flag;
  rules.kubeconfig_env = env;
  rules.home = dir.path() + "/home";
  rules.service_account_dir = dir.path() + "/sa";
  EXPECT_EQ(LoadClusterConfig(rules)->host, "flag");
  rules.explicit_path = "";
  EXPECT_EQ(LoadClusterConfig(rules)->host, "env");
  rules.kubeconfig_env = "";
  EXPECT_EQ(LoadClusterConfig(rules)->host, "home");

  setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  EXPECT_EQ(LoadClusterConfig(rules)->source, "in-cluster");
  // Asking for a context means a kubeconfig: in-cluster has none.
  rules.context = "y";
  Result<ClusterConfig> with_context = LoadClusterConfig(rules);
  ASSERT_TRUE(with_context.ok()) << with_context.status().message();
  EXPECT_EQ(with_context->host, "home");
  EXPECT_EQ(with_context->default_namespace, "from-y");
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");

  rules.context = "";
  rules.home = dir.path() + "/nohome";
  Result<ClusterConfig> nothing = LoadClusterConfig(rules);
  ASSERT_FALSE(nothing.ok());
  EXPECT_EQ(nothing.status().code(), Status::Code::kNotFound);

  rules.kubeconfig_env = dir.path() + "/missing1:" + dir.path() + "/missing2";
  Result<ClusterConfig> env_missing = LoadClusterConfig(rules);
  ASSERT_FALSE(env_missing.ok());
  EXPECT_EQ(env_missing.status().code(), Status::Code::kInvalidArgument);
  EXPECT_THAT(env_missing.status().message(), HasSubstr("$KUBECONFIG"));
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
