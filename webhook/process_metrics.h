// The process_* families every Prometheus client library exports (client_golang's process
// collector): CPU time, resident and virtual memory, open and maximum descriptors, start time.
// Dashboards and alerts written for any Go controller read them, and this server raises its
// descriptor limit and allows 10,000 connections, so the descriptors matter.
//
// Thread-safety: Update() may run from any thread; calls are serialised inside.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <mutex>
#include <string>

namespace bg::webhook {

// One reading of /proc/self, in the units of the metrics.
struct ProcessSample {
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double open_fds = 0;
  double max_fds = 0;
  double start_time_seconds = 0;  // since the Unix epoch
};

// Reads /proc/self/stat, /proc/stat (boot time), /proc/self/fd and RLIMIT_NOFILE. `proc` is the
// proc mount (tests pass a folder of their own). False when /proc/self/stat cannot be read.
bool ReadProcessSample(ProcessSample* out, const std::string& proc = "/proc");

// Parses the text of /proc/<pid>/stat (the command in parentheses may hold spaces and ')').
bool ParseProcStat(const std::string& stat, long ticks_per_second, long page_size,
                   double boot_time_seconds, ProcessSample* out);

class ProcessMetrics {
 public:
  explicit ProcessMetrics(prometheus::Registry& registry);
  ProcessMetrics(const ProcessMetrics&) = delete;
  ProcessMetrics& operator=(const ProcessMetrics&) = delete;

  // Reads the process now (called before each scrape is serialised).
  void Update();

 private:
  std::mutex mu_;
  double cpu_seconds_reported_ = 0;
  prometheus::Counter* cpu_;
  prometheus::Gauge* resident_;
  prometheus::Gauge* virtual_;
  prometheus::Gauge* open_fds_;
  prometheus::Gauge* max_fds_;
  prometheus::Gauge* start_time_;
};

}  // namespace bg::webhook
