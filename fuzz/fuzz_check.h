// Property checks for the fuzz targets: a failed check prints what was expected and aborts, which
// libFuzzer reports as a crash and saves the input.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace bg::fuzz {

[[noreturn]] inline void FailCheck(const char* condition, const std::string& detail,
                                   const char* file, int line) {
  std::fprintf(stderr, "\n==fuzz== property violated at %s:%d: %s\n==fuzz== %s\n", file, line,
               condition, detail.c_str());
  std::abort();
}

}  // namespace bg::fuzz

// `detail` is evaluated only when `condition` is false.
#define BG_FUZZ_CHECK(condition, detail)                                               \
  do {                                                                                 \
    if (!(condition)) ::bg::fuzz::FailCheck(#condition, (detail), __FILE__, __LINE__); \
  } while (false)

#define BG_FUZZ_FAIL(detail) ::bg::fuzz::FailCheck("(unconditional)", (detail), __FILE__, __LINE__)
