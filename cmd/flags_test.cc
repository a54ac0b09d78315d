#include "cmd/flags.h"

#include <gtest/gtest.h>

namespace bg::cmd {
namespace {

TEST(FlagsTest, ParsesBothFormsAndRepeats) {
  Flags flags({"out", "dns"}, {"force"});
  const char* argv[] = {"bg", "x", "--out", "/tmp/a", "--dns=a", "--dns", "b", "--force"};
  ASSERT_TRUE(flags.Parse(8, const_cast<char**>(argv), 2).ok());
  EXPECT_EQ(flags.Get("out"), "/tmp/a");
  EXPECT_EQ(flags.GetAll("dns"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(flags.Bool("force"));
}

TEST(FlagsTest, UnknownFlagAndMissingValueAreErrors) {
  Flags flags({"out"});
  const char* a1[] = {"bg", "x", "--nope", "1"};
  EXPECT_FALSE(flags.Parse(4, const_cast<char**>(a1), 2).ok());
  const char* a2[] = {"bg", "x", "--out"};
  EXPECT_FALSE(Flags({"out"}).Parse(3, const_cast<char**>(a2), 2).ok());
}

TEST(FlagsTest, AShorthandTakesKubectlsThreeSpellings) {
  for (const char* spelled : {"-o json", "-o=json", "-ojson", "--output json", "--output=json"}) {
    std::vector<std::string> words = {"bg", "x"};
    std::string text = spelled;
    if (auto space = text.find(' '); space != std::string::npos) {
      words.push_back(text.substr(0, space));
      words.push_back(text.substr(space + 1));
    } else {
      words.push_back(text);
    }
    std::vector<char*> argv;
    for (std::string& w : words) argv.push_back(w.data());
    Flags flags("bg x [flags]", {{"output", "table", "table or json"}});
    flags.Shorthand('o', "output");
    ASSERT_TRUE(flags.Parse(static_cast<int>(argv.size()), argv.data(), 2).ok()) << spelled;
    EXPECT_EQ(flags.Get("output"), "json") << spelled;
  }
  // A short flag that was not declared is not taken for anything.
  const char* unknown[] = {"bg", "x", "-x"};
  Flags flags("bg x [flags]", {{"output", "table", "table or json"}});
  flags.Shorthand('o', "output");
  EXPECT_EQ(flags.Parse(3, const_cast<char**>(unknown), 2).message(), "unexpected argument: -x");
  // `-o` with nothing after it needs a value, as `--output` does.
  const char* bare[] = {"bg", "x", "-o"};
  EXPECT_EQ(flags.Parse(3, const_cast<char**>(bare), 2).message(), "flag --output needs a value");
}

TEST(FlagsTest, ABooleanFlagTakesTheWordsItAccepts) {
  const char* bare[] = {"bg", "x", "--dry-run"};
  Flags a({}, {"dry-run"});
  a.AcceptWords("dry-run", {"none", "client", "server"});
  ASSERT_TRUE(a.Parse(3, const_cast<char**>(bare), 2).ok());
  EXPECT_EQ(a.Get("dry-run"), "true");
  const char* server[] = {"bg", "x", "--dry-run=server"};
  Flags b({}, {"dry-run"});
  b.AcceptWords("dry-run", {"none", "client", "server"});
  ASSERT_TRUE(b.Parse(3, const_cast<char**>(server), 2).ok());
  EXPECT_EQ(b.Get("dry-run"), "server");
  EXPECT_FALSE(b.Bool("dry-run"));
  const char* other[] = {"bg", "x", "--dry-run=serverside"};
  Flags c({}, {"dry-run"});
  c.AcceptWords("dry-run", {"none", "client", "server"});
  const Status s = c.Parse(3, const_cast<char**>(other), 2);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "--dry-run takes true or false, none, client, server, got serverside");
  // Without AcceptWords a boolean flag still takes only true or false.
  Flags d({}, {"dry-run"});
  EXPECT_FALSE(d.Parse(3, const_cast<char**>(server), 2).ok());
}

TEST(FlagsTest, HostPort) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(ParseHostPort("0.0.0.0:9443", &host, &port).ok());
  EXPECT_EQ(host, "0.0.0.0");
  EXPECT_EQ(port, 9443);
  ASSERT_TRUE(ParseHostPort("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  ASSERT_TRUE(ParseHostPort(":8080", &host, &port).ok());
  EXPECT_EQ(host, "") << "every address, IPv6 and IPv4, as Go's :8080";
  EXPECT_FALSE(ParseHostPort("host", &host, &port).ok());
  EXPECT_FALSE(ParseHostPort("h:99999", &host, &port).ok());
}

TEST(FlagsTest, Durations) {
  double s = 0;
  ASSERT_TRUE(ParseDurationSeconds("90s", &s).ok());
  EXPECT_EQ(s, 90);
  ASSERT_TRUE(ParseDurationSeconds("5m", &s).ok());
  EXPECT_EQ(s, 300);
  ASSERT_TRUE(ParseDurationSeconds("250ms", &s).ok());
  EXPECT_DOUBLE_EQ(s, 0.25);
  EXPECT_FALSE(ParseDurationSeconds("5 days", &s).ok());
}

TEST(FlagsTest, DurationsTakeGosForm) {
  double s = 0;
  ASSERT_TRUE(ParseDurationSeconds("1h30m", &s).ok());
  EXPECT_EQ(s, 5400);
  ASSERT_TRUE(ParseDurationSeconds("2m3.5s", &s).ok());
  EXPECT_DOUBLE_EQ(s, 123.5);
  ASSERT_TRUE(ParseDurationSeconds("1.5h", &s).ok());
  EXPECT_EQ(s, 5400);
  ASSERT_TRUE(ParseDurationSeconds("720h", &s).ok());
  EXPECT_EQ(s, 720 * 3600);
  ASSERT_TRUE(ParseDurationSeconds("1500us", &s).ok());
  EXPECT_DOUBLE_EQ(s, 0.0015);
  ASSERT_TRUE(ParseDurationSeconds("0", &s).ok());
  EXPECT_EQ(s, 0);
  ASSERT_TRUE(ParseDurationSeconds("20", &s).ok()) << "a bare number stays seconds";
  EXPECT_EQ(s, 20);
  for (const char* bad : {"", "-5s", "1h-30m", "h", "5x", "1e3s", "inf", "1h 30m", "s5"}) {
    EXPECT_FALSE(ParseDurationSeconds(bad, &s).ok()) << '"' << bad << '"';
  }
}

TEST(FlagsTest, AliasesFillTheCanonicalName) {
  Flags flags("x", {{"metrics-listen", ":8080", "metrics", false, {"metrics-bind-address"}}});
  const char* argv[] = {"backup-guard", "serve", "--metrics-bind-address=:9090"};
  ASSERT_TRUE(flags.Parse(3, const_cast<char**>(argv), 2).ok());
  EXPECT_EQ(flags.Get("metrics-listen"), ":9090");
}

TEST(FlagsTest, UnknownFlagIsNamed) {
  Flags flags("x", {{"namespace", "longhorn-system", "ns"}});
  const char* argv[] = {"backup-guard", "serve", "--namspace", "x"};
  Status s = flags.Parse(4, const_cast<char**>(argv), 2);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "unknown flag: --namspace");
}

TEST(FlagsTest, HelpListsEveryFlagWithItsDefault) {
  Flags flags("backup-guard serve [flags]",
              {{"listen", ":9443", "TLS listener"}, {"leader-elect", "true", "elect", true}});
  const std::string help = flags.Help();
  EXPECT_NE(help.find("usage: backup-guard serve [flags]"), std::string::npos) << help;
  EXPECT_NE(help.find("--listen VALUE"), std::string::npos) << help;
  EXPECT_NE(help.find("TLS listener (default :9443)"), std::string::npos) << help;
  EXPECT_NE(help.find("--leader-elect\n"), std::string::npos) << help;
  EXPECT_NE(help.find("-h, --help"), std::string::npos) << help;
}

TEST(ParseByteSizeTest, AcceptsBytesAndBinarySuffixesAndRefusesTheRest) {
  std::size_t bytes = 0;
  ASSERT_TRUE(ParseByteSize("65536", &bytes).ok());
  EXPECT_EQ(bytes, 65536u);
  ASSERT_TRUE(ParseByteSize("64Mi", &bytes).ok());
  EXPECT_EQ(bytes, std::size_t{64} << 20);
  ASSERT_TRUE(ParseByteSize("1Gi", &bytes).ok());
  EXPECT_EQ(bytes, std::size_t{1} << 30);
  for (const char* bad : {"", "Mi", "64M", "64 Mi", "-1", "1.5Gi", "64MiB"}) {
    EXPECT_FALSE(ParseByteSize(bad, &bytes).ok()) << bad;
  }
}

}  // namespace
}  // namespace bg::cmd
