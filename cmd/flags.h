// Minimal command-line flags: --name=value, --name value, and repeatable flags.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace bg::cmd {

class Flags {
 public:
  // `known` lists the accepted names (without dashes); `booleans` those that take no value.
  Flags(std::vector<std::string> known, std::vector<std::string> booleans = {});

  Status Parse(int argc, char** argv, int first);

  std::string Get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> GetAll(const std::string& name) const;
  bool Has(const std::string& name) const;
  bool Bool(const std::string& name) const;

 private:
  std::vector<std::string> known_;
  std::vector<std::string> booleans_;
  std::map<std::string, std::vector<std::string>> values_;
};

// Splits "host:port", "[v6]:port" or ":port" (host defaults to 0.0.0.0).
Status ParseHostPort(const std::string& text, std::string* host, int* port);

// Parses "90s", "5m", "1h", "250ms" or a bare number of seconds.
Status ParseDurationSeconds(const std::string& text, double* seconds);

}  // namespace bg::cmd
