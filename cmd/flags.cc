#include "cmd/flags.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace bg::cmd {

Flags::Flags(std::vector<std::string> known, std::vector<std::string> booleans) {
  for (std::string& name : known) specs_.push_back(FlagSpec{std::move(name), "", "", false});
  for (std::string& name : booleans) specs_.push_back(FlagSpec{std::move(name), "false", "", true});
}

Flags::Flags(std::string usage, std::vector<FlagSpec> specs)
    : usage_(std::move(usage)), specs_(std::move(specs)) {}

const FlagSpec* Flags::Find(const std::string& name) const {
  for (const FlagSpec& spec : specs_) {
    if (spec.name == name) return &spec;
    if (std::count(spec.aliases.begin(), spec.aliases.end(), name) > 0) return &spec;
  }
  return nullptr;
}

std::string Flags::Help() const {
  std::string out =
      (usage_.empty() ? std::string("usage: backup-guard <command> [flags]") : "usage: " + usage_) +
      "\n\nflags:\n";
  for (const FlagSpec& spec : specs_) {
    std::string line = "  --" + spec.name + (spec.boolean ? "" : " VALUE");
    for (const std::string& alias : spec.aliases) line += ", --" + alias;
    out += line + "\n";
    std::string detail = spec.help;
    if (!spec.fallback.empty())
      detail += (detail.empty() ? "" : " ") + ("(default " + spec.fallback + ")");
    if (!detail.empty()) out += "        " + detail + "\n";
  }
  out += "  -h, --help\n        print this help and exit\n";
  return out;
}

Status Flags::Parse(int argc, char** argv, int first) {
  if (usage_.empty()) {  // the command's own words: "backup-guard uninstall [flags]"
    usage_ = "backup-guard";
    for (int i = 1; i < first && i < argc; ++i) usage_ += std::string(" ") + argv[i];
    usage_ += " [flags]";
  }
  for (int i = first; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::fputs(Help().c_str(), stdout);
      std::exit(0);
    }
  }
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.size() >= 2 && arg[0] == '-' && arg[1] != '-' && shorthands_.count(arg[1]) != 0) {
      // -c, -c=v and -cv are --name, --name=v and --name=v.
      const std::string rest = arg.substr(2);
      const std::string name = shorthands_.at(arg[1]);
      arg =
          rest.empty() ? "--" + name : "--" + name + "=" + (rest[0] == '=' ? rest.substr(1) : rest);
    }
    std::string value;
    bool has_value = false;
    if (arg.rfind("--", 0) != 0) return Status::InvalidArgument("unexpected argument: " + arg);
    arg = arg.substr(2);
    if (auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    const FlagSpec* spec = Find(arg);
    if (spec == nullptr) return Status::InvalidArgument("unknown flag: --" + arg);
    if (spec->boolean) {
      if (!has_value) value = "true";
      const bool word =
          std::find(spec->words.begin(), spec->words.end(), value) != spec->words.end();
      if (value != "true" && value != "false" && !word) {
        std::string accepted = "true or false";
        for (const std::string& w : spec->words) accepted += ", " + w;
        return Status::InvalidArgument("--" + arg + " takes " + accepted + ", got " + value);
      }
    } else if (!has_value) {
      if (i + 1 >= argc) return Status::InvalidArgument("flag --" + arg + " needs a value");
      value = argv[++i];
    }
    values_[spec->name].push_back(value);
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

void Flags::AcceptWords(const std::string& name, std::vector<std::string> words) {
  for (FlagSpec& spec : specs_) {
    if (spec.name == name && spec.boolean) {
      spec.words = std::move(words);
      return;
    }
  }
}

void Flags::Shorthand(char c, const std::string& name) { shorthands_[c] = name; }

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
  *host = h;  // empty: every address of both families
  *port = static_cast<int>(n);
  return Status::Ok();
}

Status ParseByteSize(const std::string& text, std::size_t* bytes) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits])) != 0) {
    ++digits;
  }
  const std::string suffix = text.substr(digits);
  int shift = -1;
  if (suffix.empty()) shift = 0;
  if (suffix == "Ki") shift = 10;
  if (suffix == "Mi") shift = 20;
  if (suffix == "Gi") shift = 30;
  if (digits == 0 || digits > 12 || shift < 0) {
    return Status::InvalidArgument("bad size " + text +
                                   ": expected a whole number of bytes, or with Ki, Mi or Gi");
  }
  *bytes = static_cast<std::size_t>(std::stoull(text.substr(0, digits))) << shift;
  return Status::Ok();
}

Status ParseDurationSeconds(const std::string& text, double* seconds) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("bad duration " + text + ": " + why +
                                   " (Go's form, e.g. 90s, 1h30m, 250ms)");
  };
  if (text.empty()) return bad("empty");
  if (text[0] == '-') return bad("negative");
  // A decimal number at `at` ("1", "1.5", ".5"; no sign, exponent, inf or nan), or -1.
  auto number = [&](std::size_t at, double* value) -> long {
    std::size_t end = at;
    while (end < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[end])) != 0 || text[end] == '.')) {
      ++end;
    }
    const std::string digits = text.substr(at, end - at);
    if (digits.empty() || digits == "." || std::count(digits.begin(), digits.end(), '.') > 1) {
      return -1;
    }
    *value = std::strtod(digits.c_str(), nullptr);
    return static_cast<long>(end);
  };
  double n = 0;
  // A bare number is seconds, as before durations took Go's form.
  if (number(0, &n) == static_cast<long>(text.size())) {
    *seconds = n;
    return Status::Ok();
  }
  static const std::pair<const char*, double> kUnits[] = {
      {"ns", 1e-9}, {"us", 1e-6}, {"\u00b5s", 1e-6}, {"ms", 1e-3},
      {"s", 1},     {"m", 60},    {"h", 3600}};
  double total = 0;
  std::size_t at = 0;
  while (at < text.size()) {
    const long after = number(at, &n);
    if (after < 0) return bad("expected a number at " + text.substr(at));
    at = static_cast<std::size_t>(after);
    double scale = 0;
    std::size_t unit_length = 0;
    for (const auto& [unit, factor] : kUnits) {
      const std::size_t length = std::strlen(unit);
      // The longest unit that matches here ("ms" before "m").
      if (text.compare(at, length, unit) == 0 && length > unit_length) {
        scale = factor;
        unit_length = length;
      }
    }
    if (unit_length == 0) return bad("missing or unknown unit (ns, us, ms, s, m, h)");
    total += n * scale;
    at += unit_length;
  }
  *seconds = total;
  return Status::Ok();
}

}  // namespace bg::cmd
