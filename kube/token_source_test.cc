#include "kube/token_source.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "kube/testutil.h"

namespace bg::kube {
namespace {

TEST(TokenSourceTest, StaticTokenOnly) {
  TokenSource source(" static \n", "");
  EXPECT_EQ(source.Token(), "static");
  EXPECT_EQ(TokenSource("", "").Token(), "");
}

TEST(TokenSourceTest, TokenFileIsReReadAfterTheRefreshPeriod) {
  testutil::TempDir dir;
  const std::string path = dir.WriteFile("token", "one\n");
  ManualClock clock;
  TokenSource source("", path, &clock, std::chrono::seconds(60));
  EXPECT_EQ(source.Token(), "one");
  dir.WriteFile("token", "two\n");
  clock.Advance(std::chrono::seconds(59));
  EXPECT_EQ(source.Token(), "one");
  clock.Advance(std::chrono::seconds(1));
  EXPECT_EQ(source.Token(), "two");
}

TEST(TokenSourceTest, KeepsTheLastGoodTokenWhenTheFileDisappears) {
  testutil::TempDir dir;
  const std::string path = dir.WriteFile("token", "good");
  ManualClock clock;
  TokenSource source("static", path, &clock, std::chrono::seconds(1));
  EXPECT_EQ(source.Token(), "good");
  std::filesystem::remove(path);
  clock.Advance(std::chrono::seconds(5));
  EXPECT_EQ(source.Token(), "good");
  dir.WriteFile("token", "");  // an empty file is not a token either
  clock.Advance(std::chrono::seconds(5));
  EXPECT_EQ(source.Token(), "good");
  dir.WriteFile("token", "fresh");
  clock.Advance(std::chrono::seconds(5));
  EXPECT_EQ(source.Token(), "fresh");
}

TEST(TokenSourceTest, FallsBackToTheStaticTokenUntilTheFileIsReadable) {
  testutil::TempDir dir;
  const std::string path = dir.path() + "/token";
  ManualClock clock;
  TokenSource source("static", path, &clock, std::chrono::seconds(1));
  EXPECT_EQ(source.Token(), "static");
  dir.WriteFile("token", "from-file");
  EXPECT_EQ(source.Token(), "static");  // not re-read before the period
  clock.Advance(std::chrono::seconds(1));
  EXPECT_EQ(source.Token(), "from-file");
}

}  // namespace
}  // namespace bg::kube
