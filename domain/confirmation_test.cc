#include "domain/confirmation.h"

#include <gtest/gtest.h>

namespace bg::domain {
namespace {

TEST(ParseGoBoolTest, AcceptsExactlyWhatGoStrconvParseBoolAccepts) {
  for (const char* yes : {"1", "t", "T", "TRUE", "true", "True"}) EXPECT_EQ(ParseGoBool(yes), true);
  for (const char* no : {"0", "f", "F", "FALSE", "false", "False"}) {
    EXPECT_EQ(ParseGoBool(no), false);
  }
  for (const char* neither : {"", "yes", "y", "on", "tRUE", "TrUe", " true", "true ", "2", "-1"}) {
    EXPECT_FALSE(ParseGoBool(neither).has_value()) << '"' << neither << '"';
  }
}

TEST(ConfirmationFlagTest, TrueOnlyForAStringValueThatParsesAsTrue) {
  EXPECT_TRUE(ConfirmationFlagTrue({{"value", "True"}}));
  EXPECT_TRUE(ConfirmationFlagTrue({{"value", "1"}}));
  EXPECT_FALSE(ConfirmationFlagTrue({{"value", "false"}}));
  EXPECT_FALSE(ConfirmationFlagTrue({{"value", true}})) << "the engine's value is a string";
  EXPECT_FALSE(ConfirmationFlagTrue(nlohmann::json::object()));
  EXPECT_FALSE(ConfirmationFlagTrue(nullptr));
}

}  // namespace
}  // namespace bg::domain
