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

TEST(FlagsTest, HostPort) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(ParseHostPort("0.0.0.0:9443", &host, &port).ok());
  EXPECT_EQ(host, "0.0.0.0");
  EXPECT_EQ(port, 9443);
  ASSERT_TRUE(ParseHostPort("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  ASSERT_TRUE(ParseHostPort(":8080", &host, &port).ok());
  EXPECT_EQ(host, "0.0.0.0");
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

}  // namespace
}  // namespace bg::cmd
