#include "cmd/flags.h"

#include <algorithm>
#include <cstdlib>

namespace bg::cmd {

Flags::Flags(std::vector<std::string> known, std::vector<std::string> booleans)
    : known_(std::move(known)), booleans_(std::move(booleans)) {}

Status Flags::Parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) return Status::InvalidArgument("unexpected argument: " + arg);
    arg = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    const bool is_bool = std::count(booleans_.begin(), booleans_.end(), arg) > 0;
    if (!is_bool && std::count(known_.begin(), known_.end(), arg) == 0) {
      return Status::InvalidArgument("unknown flag: --" + arg);
    }
    if (is_bool) {
      if (!has_value) value = "true";
      if (value != "true" && value != "false") {
        return Status::InvalidArgument("--" + arg + " takes true or false, got " + value);
      }
    } else if (!has_value) {
      if (i + 1 >= argc) return Status::InvalidArgument("flag --" + arg + " needs a value");
      value = argv[++i];
    }
    values_[arg].push_back(value);
  }
  return Status::Ok();
}

std::string Flags::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.back();
}

std::vector<std::string> Flags::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

bool Flags::Has(const std::string& name) const { return values_.count(name) > 0; }

bool Flags::Bool(const std::string& name) const { return Get(name, "false") == "true"; }

Status ParseHostPort(const std::string& text, std::string* host, int* port) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return Status::InvalidArgument("expected host:port, got " + text);
  std::string h = text.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  const std::string p = text.substr(colon + 1);
  char* end = nullptr;
  const long n = std::strtol(p.c_str(), &end, 10);
  if (p.empty() || *end != '\0' || n < 0 || n > 65535) {
    return Status::InvalidArgument("bad port in " + text);
  }
  *host = h.empty() ? "0.0.0.0" : h;
  *port = static_cast<int>(n);
  return Status::Ok();
}

Status ParseDurationSeconds(const std::string& text, double* seconds) {
  char* end = nullptr;
  const double n = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || n < 0) return Status::InvalidArgument("bad duration: " + text);
  const std::string unit(end);
  if (unit.empty() || unit == "s")
    *seconds = n;
  else if (unit == "ms")
    *seconds = n / 1000;
  else if (unit == "m")
    *seconds = n * 60;
  else if (unit == "h")
    *seconds = n * 3600;
  else
    return Status::InvalidArgument("bad duration unit in " + text + " (use ms, s, m or h)");
  return Status::Ok();
}

}  // namespace bg::cmd
