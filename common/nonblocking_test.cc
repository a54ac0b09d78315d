#include "common/nonblocking.h"

#include <gtest/gtest.h>

#include <exception>
#include <thread>

namespace bg {
namespace {

TEST(NonBlockingTest, OnlyTheThreadInsideAScopeMustNotBlock) {
  EXPECT_FALSE(MustNotBlock());
  EXPECT_NO_THROW(ThrowIfMustNotBlock());
  {
    NonBlockingScope scope;
    EXPECT_TRUE(MustNotBlock());
    EXPECT_THROW(ThrowIfMustNotBlock(), WouldBlock);
    bool other_thread_must_not_block = true;
    std::thread([&] { other_thread_must_not_block = MustNotBlock(); }).join();
    EXPECT_FALSE(other_thread_must_not_block);
  }
  EXPECT_FALSE(MustNotBlock());
  EXPECT_NO_THROW(ThrowIfMustNotBlock());
}

TEST(NonBlockingTest, NestedScopesRestoreWhatWasThere) {
  {
    NonBlockingScope outer;
    {
      NonBlockingScope inner;
      EXPECT_TRUE(MustNotBlock());
    }
    EXPECT_TRUE(MustNotBlock());
  }
  EXPECT_FALSE(MustNotBlock());
}

TEST(NonBlockingTest, WouldBlockPassesHandlersThatCatchStandardExceptions) {
  NonBlockingScope scope;
  bool caught_as_standard = false;
  try {
    try {
      ThrowIfMustNotBlock();
    } catch (const std::exception&) {
      caught_as_standard = true;
    }
  } catch (const WouldBlock&) {
  }
  EXPECT_FALSE(caught_as_standard);
}

}  // namespace
}  // namespace bg
