#include "webhook/process_metrics.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <ctime>

namespace bg::webhook {
namespace {

TEST(ProcessMetricsTest, ParsesProcStatWithSpacesAndParenthesesInTheCommand) {
  // Fields as proc(5) numbers them: 14 utime, 15 stime, 22 starttime, 23 vsize, 24 rss.
  const std::string stat =
      "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 9 0 "
      "1000 123456789 2048 18446744073709551615";
  ProcessSample s;
  ASSERT_TRUE(ParseProcStat(stat, 100, 4096, 1700000000, &s));
  EXPECT_DOUBLE_EQ(s.cpu_seconds, 4.0);
  EXPECT_DOUBLE_EQ(s.start_time_seconds, 1700000010);
  EXPECT_DOUBLE_EQ(s.virtual_bytes, 123456789);
  EXPECT_DOUBLE_EQ(s.resident_bytes, 2048.0 * 4096);
  EXPECT_FALSE(ParseProcStat("garbage", 100, 4096, 0, &s));
  EXPECT_FALSE(ParseProcStat("1 (x) S 1 2", 100, 4096, 0, &s));
}

TEST(ProcessMetricsTest, ReadsThisProcess) {
  ProcessSample s;
  ASSERT_TRUE(ReadProcessSample(&s));
  EXPECT_GT(s.resident_bytes, 0);
  EXPECT_GE(s.open_fds, 3);  // stdin, stdout, stderr at least
  EXPECT_GE(s.max_fds, s.open_fds);
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_GT(s.start_time_seconds, now - 24 * 3600);
  EXPECT_LE(s.start_time_seconds, now + 1);
}

TEST(ProcessMetricsTest, ExportsTheStandardFamilies) {
  prometheus::Registry registry;
  ProcessMetrics metrics(registry);
  metrics.Update();
  const std::string text = prometheus::TextSerializer().Serialize(registry.Collect());
  for (const char* family : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                             "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                             "process_start_time_seconds"}) {
    EXPECT_NE(text.find(std::string("\n") + family + " "), std::string::npos) << family << text;
  }
}

}  // namespace
}  // namespace bg::webhook
