#include "kube/exec_credential.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kube/file_util.h"
#include "kube/testutil.h"

namespace bg::kube {
namespace {

using nlohmann::json;
using ::testing::AllOf;
using ::testing::HasSubstr;
using testutil::TempDir;

constexpr char kV1[] = "client.authentication.k8s.io/v1";
constexpr char kV1beta1[] = "client.authentication.k8s.io/v1beta1";

ExecConfig Exec(const std::string& command, const std::string& api_version = kV1) {
  ExecConfig exec;
  exec.api_version = api_version;
  exec.command = command;
  exec.interactive_mode = ExecInteractiveMode::kNever;
  exec.where = "kubeconfig test: users[0].user.exec";
  return exec;
}

std::string Credential(const std::string& token, const std::string& expiry = "",
                       const std::string& api_version = kV1) {
  json status = {{"token", token}};
  if (!expiry.empty()) status["expirationTimestamp"] = expiry;
  return json{{"apiVersion", api_version}, {"kind", "ExecCredential"}, {"status", status}}.dump();
}

std::string Rfc3339In(std::chrono::seconds from_now) {
  const std::time_t t =
      std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() + from_now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A shell script in `dir` made executable.
std::string Script(const TempDir& dir, const std::string& name, const std::string& body) {
  const std::string path = dir.WriteFile(name, "#!/bin/sh\n" + body);
  ::chmod(path.c_str(), 0755);
  return path;
}

TEST(ExecInfoTest, CarriesApiVersionInteractiveAndTheClusterWhenAskedFor) {
  ExecConfig exec = Exec("x", kV1beta1);
  ClusterConfig cluster;
  cluster.host = "::1";
  cluster.port = 6443;
  cluster.base_path = "/k8s";
  cluster.ca_pem = "PEM";
  json info = json::parse(ExecInfoJson(exec, cluster, false));
  EXPECT_EQ(info, json::parse(R"({"apiVersion":"client.authentication.k8s.io/v1beta1",
                                  "kind":"ExecCredential","spec":{"interactive":false}})"));
  exec.provide_cluster_info = true;
  info = json::parse(ExecInfoJson(exec, cluster, true));
  EXPECT_EQ(info["spec"]["interactive"], true);
  EXPECT_EQ(info["spec"]["cluster"]["server"], "https://[::1]:6443/k8s");
  EXPECT_EQ(info["spec"]["cluster"]["certificate-authority-data"], "UEVN");
}

TEST(ExecCredentialParseTest, TokenAndExpiry) {
  Result<ExecCredential> c = ParseExecCredential(Credential("t", "2030-01-02T03:04:05Z"), kV1);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->token, "t");
  ASSERT_TRUE(c->expiry.has_value());
  EXPECT_EQ(std::chrono::system_clock::to_time_t(*c->expiry), 1893553445);
  Result<ExecCredential> forever = ParseExecCredential(Credential("t"), kV1);
  ASSERT_TRUE(forever.ok());
  EXPECT_FALSE(forever->expiry.has_value());
}

TEST(ExecCredentialParseTest, MalformedAnswersAreErrors) {
  EXPECT_THAT(ParseExecCredential("token", kV1).status().message(), HasSubstr("JSON"));
  EXPECT_THAT(ParseExecCredential(Credential("t", "", kV1beta1), kV1).status().message(),
              HasSubstr("answered apiVersion \"client.authentication.k8s.io/v1beta1\""));
  EXPECT_THAT(ParseExecCredential(R"({"apiVersion":"client.authentication.k8s.io/v1",
                                      "kind":"Pod","status":{"token":"t"}})",
                                  kV1)
                  .status()
                  .message(),
              HasSubstr("kind \"Pod\""));
  EXPECT_THAT(ParseExecCredential(R"({"apiVersion":"client.authentication.k8s.io/v1",
                                      "kind":"ExecCredential"})",
                                  kV1)
                  .status()
                  .message(),
              HasSubstr("no status"));
  EXPECT_THAT(ParseExecCredential(Credential(""), kV1).status().message(),
              HasSubstr("no status.token"));
  EXPECT_THAT(ParseExecCredential(R"({"apiVersion":"client.authentication.k8s.io/v1",
                                      "kind":"ExecCredential","status":{
                                      "clientCertificateData":"c","clientKeyData":"k"}})",
                                  kV1)
                  .status()
                  .message(),
              HasSubstr("only tokens"));
  EXPECT_THAT(ParseExecCredential(Credential("t", "tomorrow"), kV1).status().message(),
              HasSubstr("expirationTimestamp"));
}

TEST(Rfc3339Test, Forms) {
  auto seconds = [](std::string_view text) {
    Result<std::chrono::system_clock::time_point> t = ParseRfc3339(text);
    EXPECT_TRUE(t.ok()) << text;
    return t.ok() ? std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch())
                        .count()
                  : -1;
  };
  EXPECT_EQ(seconds("1970-01-01T00:00:10Z"), 10000);
  EXPECT_EQ(seconds("1970-01-01T00:00:10.25Z"), 10250);
  EXPECT_EQ(seconds("1970-01-01T01:00:10+01:00"), 10000);
  EXPECT_EQ(seconds("1969-12-31T23:00:10-01:00"), 10000);
  for (const char* bad : {"", "1970-01-01", "1970-01-01T00:00:10", "1970-13-01T00:00:00Z",
                          "1970-01-01T00:00:10Zjunk", "1970-01-01T00:00:10.Z"}) {
    EXPECT_FALSE(ParseRfc3339(bad).ok()) << bad;
  }
}

TEST(ExecInteractiveTest, ModesAsKubectl) {
  EXPECT_FALSE(ExecInteractive(ExecInteractiveMode::kNever, true).value());
  EXPECT_TRUE(ExecInteractive(ExecInteractiveMode::kIfAvailable, true).value());
  EXPECT_FALSE(ExecInteractive(ExecInteractiveMode::kIfAvailable, false).value());
  EXPECT_TRUE(ExecInteractive(ExecInteractiveMode::kAlways, true).value());
  Result<bool> no_terminal = ExecInteractive(ExecInteractiveMode::kAlways, false);
  ASSERT_FALSE(no_terminal.ok());
  EXPECT_THAT(no_terminal.status().message(), HasSubstr("not a terminal"));
}

TEST(RunExecPluginTest, PassesArgsEnvAndExecInfoAndNoStdinWhenNotInteractive) {
  TempDir dir;
  const std::string script = Script(dir, "plugin", R"(
printf '%s\n' "$@" > "$OUT_DIR/args"
printf '%s' "$KUBERNETES_EXEC_INFO" > "$OUT_DIR/info"
printf '%s' "$FROM_KUBECONFIG" > "$OUT_DIR/env"
cat > "$OUT_DIR/stdin"
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"abc"}}'
)");
  ExecConfig exec = Exec(script);
  exec.args = {"--one", "two words"};
  exec.env = {{"OUT_DIR", dir.path()}, {"FROM_KUBECONFIG", "first"}, {"FROM_KUBECONFIG", "last"}};
  Result<std::string> out =
      RunExecPlugin(exec, R"({"spec":{"interactive":false}})", false, std::chrono::seconds(20));
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(ParseExecCredential(out.value(), kV1)->token, "abc");
  EXPECT_EQ(ReadFileToString(dir.path() + "/args", 1024).value(), "--one\ntwo words\n");
  EXPECT_EQ(ReadFileToString(dir.path() + "/info", 1024).value(),
            R"({"spec":{"interactive":false}})");
  EXPECT_EQ(ReadFileToString(dir.path() + "/env", 1024).value(), "last");
  EXPECT_EQ(ReadFileToString(dir.path() + "/stdin", 1024).value(), "");  // /dev/null
}

TEST(RunExecPluginTest, FailuresNameTheCommand) {
  TempDir dir;
  Result<std::string> failed = RunExecPlugin(Exec(Script(dir, "fail", "echo oops >&2; exit 3\n")),
                                             "{}", false, std::chrono::seconds(20));
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(), AllOf(HasSubstr("fail"), HasSubstr("status 3")));

  ExecConfig missing = Exec("backup-guard-no-such-plugin");
  missing.install_hint = "install it from example.com";
  Result<std::string> not_found = RunExecPlugin(missing, "{}", false, std::chrono::seconds(20));
  ASSERT_FALSE(not_found.ok());
  EXPECT_THAT(not_found.status().message(),
              AllOf(HasSubstr("backup-guard-no-such-plugin"), HasSubstr("example.com")));

  const auto start = std::chrono::steady_clock::now();
  Result<std::string> slow = RunExecPlugin(Exec(Script(dir, "slow", "exec sleep 30\n")), "{}",
                                           false, std::chrono::milliseconds(300));
  ASSERT_FALSE(slow.ok());
  EXPECT_THAT(slow.status().message(), HasSubstr("no answer within"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

// A runner that answers from a list and records what it was given.
struct FakePlugin {
  std::vector<std::string> answers;
  std::vector<std::string> infos = {};
  ExecCredentialSource::Runner Runner() {
    return [this](const ExecConfig&, const std::string& info, bool) -> Result<std::string> {
      infos.push_back(info);
      if (infos.size() > answers.size()) return Status::Unavailable("no more answers");
      return answers[infos.size() - 1];
    };
  }
};

TEST(ExecCredentialSourceTest, TokenIsCachedUntilItsExpirationTimestamp) {
  ManualClock clock;
  FakePlugin plugin{{Credential("first", Rfc3339In(std::chrono::minutes(10))),
                     Credential("second", Rfc3339In(std::chrono::minutes(10)))}};
  ExecCredentialSource source(Exec("p"), ClusterConfig(), &clock, plugin.Runner(), false);
  EXPECT_EQ(source.Token().value(), "first");
  clock.Advance(std::chrono::minutes(9));
  EXPECT_EQ(source.Token().value(), "first");
  EXPECT_EQ(source.runs(), 1);
  clock.Advance(std::chrono::minutes(2));
  EXPECT_EQ(source.Token().value(), "second");
  EXPECT_EQ(source.runs(), 2);
  EXPECT_EQ(json::parse(plugin.infos[0])["spec"]["interactive"], false);
}

TEST(ExecCredentialSourceTest, TokenWithoutExpiryIsKeptUntilTheServerRefusesIt) {
  ManualClock clock;
  FakePlugin plugin{{Credential("first"), Credential("second")}};
  ExecCredentialSource source(Exec("p"), ClusterConfig(), &clock, plugin.Runner(), false);
  EXPECT_EQ(source.Token().value(), "first");
  clock.Advance(std::chrono::hours(24 * 30));
  EXPECT_EQ(source.Token().value(), "first");
  source.Unauthorized("some-older-token");  // a request that started before a refresh
  EXPECT_EQ(source.Token().value(), "first");
  source.Unauthorized("first");
  EXPECT_EQ(source.Token().value(), "second");
  EXPECT_EQ(source.runs(), 2);
}

TEST(ExecCredentialSourceTest, FailuresNameTheKubeconfigEntry) {
  FakePlugin plugin{{"not json"}};
  ExecCredentialSource source(Exec("p"), ClusterConfig(), nullptr, plugin.Runner(), false);
  Result<std::string> token = source.Token();
  ASSERT_FALSE(token.ok());
  EXPECT_THAT(token.status().message(),
              AllOf(HasSubstr("kubeconfig test: users[0].user.exec: "), HasSubstr("JSON")));
  // Nothing was cached: the next request runs the plugin again.
  EXPECT_FALSE(source.Token().ok());
  EXPECT_EQ(source.runs(), 2);
}

TEST(ExecCredentialSourceTest, AlwaysInteractiveWithoutATerminalIsAnErrorAndRunsNothing) {
  FakePlugin plugin{{Credential("t")}};
  ExecConfig exec = Exec("p");
  exec.interactive_mode = ExecInteractiveMode::kAlways;
  ExecCredentialSource source(exec, ClusterConfig(), nullptr, plugin.Runner(), false);
  EXPECT_THAT(source.Token().status().message(), HasSubstr("not a terminal"));
  EXPECT_EQ(source.runs(), 0);
  ExecCredentialSource with_terminal(exec, ClusterConfig(), nullptr, plugin.Runner(), true);
  EXPECT_EQ(with_terminal.Token().value(), "t");
  EXPECT_EQ(json::parse(plugin.infos.back())["spec"]["interactive"], true);
}

}  // namespace
}  // namespace bg::kube
