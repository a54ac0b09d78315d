#include "webhook/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

namespace bg::webhook {

namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double BootTimeSeconds(const std::string& proc) {
  std::istringstream in(ReadAll(proc + "/stat"));
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double btime = 0;
      in >> btime;
      return btime;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

double CountEntries(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return 0;
  double n = 0;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

}  // namespace

bool ParseProcStat(const std::string& stat, long ticks_per_second, long page_size,
                   double boot_time_seconds, ProcessSample* out) {
  // "pid (comm) state ppid ..." where comm may hold anything: the fields start after the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos || ticks_per_second <= 0) return false;
  std::istringstream in(stat.substr(close + 1));
  std::vector<std::string> fields;  // fields[0] is field 3 (state) of proc(5)
  for (std::string f; in >> f;) fields.push_back(f);
  if (fields.size() < 22) return false;
  auto number = [&](int field) { return std::strtod(fields[field - 3].c_str(), nullptr); };
  const double ticks = static_cast<double>(ticks_per_second);
  out->cpu_seconds = (number(14) + number(15)) / ticks;  // utime + stime
  out->start_time_seconds = boot_time_seconds + number(22) / ticks;
  out->virtual_bytes = number(23);
  out->resident_bytes = number(24) * static_cast<double>(page_size);
  return true;
}

bool ReadProcessSample(ProcessSample* out, const std::string& proc) {
  const std::string stat = ReadAll(proc + "/self/stat");
  if (!ParseProcStat(stat, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), BootTimeSeconds(proc),
                     out)) {
    return false;
  }
  out->open_fds = CountEntries(proc + "/self/fd");
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) out->max_fds = static_cast<double>(limit.rlim_cur);
  return true;
}

ProcessMetrics::ProcessMetrics(prometheus::Registry& registry) {
  cpu_ = &prometheus::BuildCounter()
              .Name("process_cpu_seconds_total")
              .Help("Total user and system CPU time spent in seconds.")
              .Register(registry)
              .Add({});
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
  };
  resident_ = gauge("process_resident_memory_bytes", "Resident memory size in bytes.");
  virtual_ = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.");
  open_fds_ = gauge("process_open_fds", "Number of open file descriptors.");
  max_fds_ = gauge("process_max_fds", "Maximum number of open file descriptors.");
  start_time_ =
      gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.");
  Update();
}

void ProcessMetrics::Update() {
  ProcessSample s;
  if (!ReadProcessSample(&s)) return;
  std::lock_guard<std::mutex> lock(mu_);
  // A counter only goes up: add what was used since the last reading.
  if (s.cpu_seconds > cpu_seconds_reported_) {
    cpu_->Increment(s.cpu_seconds - cpu_seconds_reported_);
    cpu_seconds_reported_ = s.cpu_seconds;
  }
  resident_->Set(s.resident_bytes);
  virtual_->Set(s.virtual_bytes);
  open_fds_->Set(s.open_fds);
  max_fds_->Set(s.max_fds);
  start_time_->Set(s.start_time_seconds);
}

}  // namespace bg::webhook
