// Command-line flags: --name=value, --name value, repeatable flags, aliases, and --help.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace bg::cmd {

// One flag of a command, as `--help` shows it.
struct FlagSpec {
  std::string name;      // without dashes
  std::string fallback;  // the default, as shown ("" when none)
  std::string help;
  bool boolean = false;                   // takes no value (`--x` is `--x=true`)
  std::vector<std::string> aliases = {};  // other accepted names (controller-runtime's)
  // A boolean flag that also takes one of these words as `--name=WORD` (kubectl's
  // `--dry-run=server`); Get answers the word.
  std::vector<std::string> words = {};
};

class Flags {
 public:
  // `known` lists the accepted names (without dashes); `booleans` those that take no value.
  Flags(std::vector<std::string> known, std::vector<std::string> booleans = {});
  // `usage` is the first line of --help ("backup-guard serve [flags]").
  Flags(std::string usage, std::vector<FlagSpec> specs);

  // `--help` or `-h` anywhere prints Help() to stdout and exits 0, so every command that parses
  // its flags before doing anything explains itself. An unknown flag is an error naming it.
  Status Parse(int argc, char** argv, int first);
  std::string Help() const;

  std::string Get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> GetAll(const std::string& name) const;
  bool Has(const std::string& name) const;
  bool Bool(const std::string& name) const;
  // Lets the boolean flag `name` also take one of `words` (see FlagSpec::words). Call before Parse.
  void AcceptWords(const std::string& name, std::vector<std::string> words);
  // Accepts `-c` as the short form of `--name`, in kubectl's spellings: `-c v`, `-c=v` and `-cv`
  // (as `-o json` is `--output json`). Call before Parse.
  void Shorthand(char c, const std::string& name);

 private:
  const FlagSpec* Find(const std::string& name) const;

  std::string usage_;
  std::vector<FlagSpec> specs_;
  std::map<char, std::string> shorthands_;
  std::map<std::string, std::vector<std::string>> values_;
};

// Splits "host:port", "[v6]:port" or ":port" (an empty host: every address, IPv6 and IPv4).
Status ParseHostPort(const std::string& text, std::string* host, int* port);

// Parses a byte size: a whole number with an optional binary suffix ("65536", "64Mi", "1Gi"; Ki,
// Mi, Gi as in Kubernetes quantities).
Status ParseByteSize(const std::string& text, std::size_t* bytes);

// Parses a Go duration ("90s", "1h30m", "250ms", "1.5h", "0") or a bare number of seconds.
Status ParseDurationSeconds(const std::string& text, double* seconds);

}  // namespace bg::cmd
