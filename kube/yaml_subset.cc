#include "kube/yaml_subset.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bg::kube {
namespace {

using nlohmann::json;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// True at the end of `s` or before a space or tab: what must follow ':' of a key and '-' of an
// item.
bool AtSeparator(std::string_view s, size_t pos) { return pos >= s.size() || IsBlank(s[pos]); }

bool IsSequenceEntry(std::string_view s, size_t col) {
  return col < s.size() && s[col] == '-' && AtSeparator(s, col + 1);
}

// "---" or "..." in column 0, alone or followed by a blank.
bool IsDocumentStart(std::string_view s) { return s.substr(0, 3) == "---" && AtSeparator(s, 3); }
bool IsDocumentEnd(std::string_view s) { return s.substr(0, 3) == "..." && AtSeparator(s, 3); }
bool IsDocumentMarker(std::string_view s) { return IsDocumentStart(s) || IsDocumentEnd(s); }

// True when only blanks, optionally followed by a comment, remain from `pos`.
bool RestIsEmptyOrComment(std::string_view s, size_t pos) {
  while (pos < s.size() && IsBlank(s[pos])) ++pos;
  return pos >= s.size() || s[pos] == '#';
}

bool IsWhitespaceOnly(std::string_view s) {
  for (char c : s) {
    if (!IsBlank(c)) return false;
  }
  return true;
}

size_t CountLeadingSpaces(std::string_view s) {
  size_t n = 0;
  while (n < s.size() && s[n] == ' ') ++n;
  return n;
}

std::string_view TrimTrailingBlanks(std::string_view s) {
  while (!s.empty() && IsBlank(s.back())) s.remove_suffix(1);
  return s;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Returns the byte offset of the first invalid UTF-8 sequence, or nullopt when `s` is valid.
std::optional<size_t> FindInvalidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > s.size()) return i;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    const bool overlong =
        (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::nullopt;
}

bool AllOf(std::string_view s, bool (*pred)(char)) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!pred(c)) return false;
  }
  return true;
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsOctalDigit(char c) { return c >= '0' && c <= '7'; }
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool IsCoreFloat(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_digits = 0;
  while (i < s.size() && IsDigit(s[i])) ++i, ++int_digits;
  size_t frac_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && IsDigit(s[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && IsDigit(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

json ResolvePlainScalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;

  std::string_view digits = s;
  bool negative = false;
  if (digits[0] == '-' || digits[0] == '+') {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  auto parse_unsigned = [&](std::string_view text, int base) -> std::optional<json> {
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    if (!negative) {
      if (value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return json(static_cast<int64_t>(value));
      }
      return json(value);
    }
    const uint64_t min_magnitude = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1;
    if (value > min_magnitude) return std::nullopt;
    if (value == min_magnitude) return json(std::numeric_limits<int64_t>::min());
    return json(-static_cast<int64_t>(value));
  };
  if (AllOf(digits, IsDigit)) {
    if (auto v = parse_unsigned(digits, 10)) return *v;
    // Too large for 64 bits: YAML still calls it a number.
    return std::strtod(s.c_str(), nullptr);
  }
  if (s.size() > 2 && s[0] == '0' && s[1] == 'x' &&
      AllOf(std::string_view(s).substr(2), IsHexDigit)) {
    if (auto v = parse_unsigned(std::string_view(s).substr(2), 16)) return *v;
    return s;
  }
  if (s.size() > 2 && s[0] == '0' && s[1] == 'o' &&
      AllOf(std::string_view(s).substr(2), IsOctalDigit)) {
    if (auto v = parse_unsigned(std::string_view(s).substr(2), 8)) return *v;
    return s;
  }
  if (IsCoreFloat(s)) return std::strtod(s.c_str(), nullptr);
  if (digits == ".inf" || digits == ".Inf" || digits == ".INF") {
    return negative ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::infinity();
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
  return s;
}

struct Line {
  std::string_view text;  // without the line break
  int number;             // 1-based
  size_t offset;          // of the line's first byte in the whole input
};

// A recursive-descent reader over lines. The cursor is (line_, col_). Every Parse* function
// returns false after recording the first error in error_; on success a node parser leaves line_
// on the first line it did not consume.
class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {
    size_t start = 0;
    int number = 1;
    while (start <= text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string_view::npos) end = text.size();
      std::string_view line = text.substr(start, end - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      lines_.push_back(Line{line, number++, start});
      if (end == text.size()) break;
      start = end + 1;
    }
  }

  Result<json> ParseDocument() {
    json root;
    if (!ParseDocumentInto(&root)) return error_;
    return root;
  }

 private:
  bool Fail(int line_number, const std::string& message) {
    if (error_.ok()) {
      error_ =
          Status::InvalidArgument("yaml: line " + std::to_string(line_number) + ": " + message);
    }
    return false;
  }
  bool Fail(const std::string& message) {
    return Fail(line_ < lines_.size() ? lines_[line_].number : lines_.back().number, message);
  }

  std::string_view Current() const { return lines_[line_].text; }

  // Moves line_ to the next line with content. Fails on a tab used for indentation.
  bool SkipToContent() {
    while (line_ < lines_.size()) {
      std::string_view s = Current();
      const size_t spaces = CountLeadingSpaces(s);
      size_t pos = spaces;
      while (pos < s.size() && IsBlank(s[pos])) ++pos;
      if (pos == s.size() || s[pos] == '#') {
        ++line_;
        continue;
      }
      if (pos != spaces) return Fail("tab character used for indentation (indent with spaces)");
      col_ = spaces;
      return true;
    }
    return true;
  }

  // True when no content is left for the current node: end of input or a document marker.
  bool AtEnd() const { return line_ >= lines_.size() || IsDocumentMarker(Current()); }

  bool ParseDocumentInto(json* root) {
    if (auto bad = FindInvalidUtf8(text_)) {
      return Fail(LineOfOffset(*bad), "invalid UTF-8");
    }
    // A byte order mark may open the stream.
    if (lines_[0].text.substr(0, 3) == "\xEF\xBB\xBF") {
      lines_[0].text.remove_prefix(3);
      lines_[0].offset += 3;
    }
    bool saw_start = false;
    while (line_ < lines_.size()) {
      std::string_view s = Current();
      // Blank lines, comments and (before "---") %YAML / %TAG directives, which the subset has
      // no use for.
      if (RestIsEmptyOrComment(s, 0) || (!saw_start && s[0] == '%')) {
        ++line_;
      } else if (IsDocumentStart(s)) {
        if (saw_start) return Fail("more than one YAML document is not supported");
        if (!RestIsEmptyOrComment(s, 3)) {
          return Fail("content on the '---' line is not supported; start it on the next line");
        }
        saw_start = true;
        ++line_;
      } else {
        break;
      }
    }
    if (!SkipToContent()) return false;
    if (line_ >= lines_.size()) {
      *root = nullptr;
      return true;
    }
    if (IsDocumentEnd(Current())) {
      *root = nullptr;
    } else {
      const char first = Current()[col_];
      if (first == '{' || first == '[') {
        return ParseJsonDocument(root);
      }
      if (!ParseBlockNode(-1, 0, root)) return false;
      if (!SkipToContent()) return false;
    }
    if (line_ >= lines_.size()) return true;
    if (!IsDocumentMarker(Current())) {
      return Fail("unexpected content; check the indentation of this line");
    }
    // Only document markers may follow: further documents must be empty.
    while (line_ < lines_.size()) {
      if (!IsDocumentMarker(Current()) || !RestIsEmptyOrComment(Current(), 3)) {
        return Fail("more than one YAML document is not supported");
      }
      ++line_;
      if (!SkipToContent()) return false;
    }
    return true;
  }

  int LineOfOffset(size_t offset) const {
    int number = lines_.front().number;
    for (const Line& l : lines_) {
      if (l.offset > offset) break;
      number = l.number;
    }
    return number;
  }

  bool ParseJsonDocument(json* root) {
    const size_t start = lines_[line_].offset + col_;
    std::string_view rest = text_.substr(start);
    try {
      *root = json::parse(rest.begin(), rest.end());
    } catch (const json::parse_error& e) {
      const size_t at = e.byte == 0 ? 0 : e.byte - 1;
      // Drop the library's "[json.exception...] parse error at line L, column C: " prefix: its
      // position is relative to the JSON text, and ours is already in front.
      std::string detail = e.what();
      if (size_t p = detail.find("syntax error"); p != std::string::npos) detail.erase(0, p);
      return Fail(LineOfOffset(start + std::min(at, rest.size())),
                  "invalid JSON document: " + detail);
    } catch (const json::exception& e) {
      return Fail(std::string("invalid JSON document: ") + e.what());
    }
    line_ = lines_.size();
    return true;
  }

  // Parses the node that starts at (line_, col_) and belongs to a parent indented `parent_indent`.
  bool ParseBlockNode(int parent_indent, int depth, json* out) {
    if (depth > kMaxYamlDepth) {
      return Fail("nesting deeper than " + std::to_string(kMaxYamlDepth) + " levels");
    }
    std::string_view s = Current();
    const int indent = static_cast<int>(col_);
    if (IsSequenceEntry(s, col_)) return ParseSequence(indent, depth, out);
    // Indicators that cannot open a plain key; ParseInlineValue explains the unsupported ones.
    const bool indicator =
        std::string_view("{[&*!|>@`,]}").find(s[col_]) != std::string_view::npos ||
        (s[col_] == '?' && AtSeparator(s, col_ + 1));
    if (!indicator && FindKeyColon(s, col_)) {
      return ParseMapping(indent, depth, out);
    }
    return ParseInlineValue(parent_indent, out);
  }

  // The position of the ':' that ends a mapping key starting at `col`, if the line holds one.
  static std::optional<size_t> FindKeyColon(std::string_view s, size_t col) {
    size_t pos = col;
    if (s[col] == '"' || s[col] == '\'') {
      const char quote = s[col];
      pos = col + 1;
      bool closed = false;
      while (pos < s.size()) {
        if (quote == '"' && s[pos] == '\\') {
          pos += 2;
          continue;
        }
        if (s[pos] == quote) {
          if (quote == '\'' && pos + 1 < s.size() && s[pos + 1] == '\'') {
            pos += 2;
            continue;
          }
          closed = true;
          ++pos;
          break;
        }
        ++pos;
      }
      if (!closed) return std::nullopt;
      while (pos < s.size() && IsBlank(s[pos])) ++pos;
      if (pos < s.size() && s[pos] == ':' && AtSeparator(s, pos + 1)) return pos;
      return std::nullopt;
    }
    for (; pos < s.size(); ++pos) {
      if (s[pos] == '#' && pos > col && IsBlank(s[pos - 1])) return std::nullopt;
      if (s[pos] == ':' && AtSeparator(s, pos + 1)) return pos;
    }
    return std::nullopt;
  }

  bool ParseMapping(int indent, int depth, json* out) {
    *out = json::object();
    while (true) {
      std::string_view s = Current();
      if (IsSequenceEntry(s, col_)) return Fail("expected a mapping key, found a sequence item");
      const int key_line = lines_[line_].number;
      std::string key;
      if (!ParseKey(&key)) return false;
      json value;
      if (!ParseMappingValue(indent, depth, &value)) return false;
      if (out->contains(key)) return Fail(key_line, "duplicate mapping key \"" + key + "\"");
      (*out)[key] = std::move(value);

      if (!SkipToContent()) return false;
      if (AtEnd()) return true;
      const int next_indent = static_cast<int>(col_);
      if (next_indent < indent) return true;
      if (next_indent > indent) return Fail("unexpected indentation");
    }
  }

  // Reads the key at (line_, col_) and moves col_ past its ':'.
  bool ParseKey(std::string* key) {
    std::string_view s = Current();
    const std::optional<size_t> colon = FindKeyColon(s, col_);
    if (!colon) return Fail("expected a mapping key ('key: value')");
    if (s[col_] == '"' || s[col_] == '\'') {
      const size_t key_line = line_;
      if (!(s[col_] == '"' ? ParseDoubleQuoted(key) : ParseSingleQuoted(key))) return false;
      if (line_ != key_line) return Fail("multi-line keys are not supported");
    } else {
      *key = std::string(TrimTrailingBlanks(s.substr(col_, *colon - col_)));
      if (key->empty()) return Fail("empty mapping key");
    }
    col_ = *colon + 1;
    return true;
  }

  // Parses the value after "key:" (col_ is just past the colon) of a mapping indented `indent`.
  bool ParseMappingValue(int indent, int depth, json* out) {
    std::string_view s = Current();
    while (col_ < s.size() && IsBlank(s[col_])) ++col_;
    if (!RestIsEmptyOrComment(s, col_)) {
      if (IsSequenceEntry(s, col_)) {
        return Fail("a block sequence cannot start on the line of its key");
      }
      return ParseInlineValue(indent, out);
    }
    ++line_;
    if (!SkipToContent()) return false;
    if (AtEnd()) {
      *out = nullptr;
      return true;
    }
    const int next_indent = static_cast<int>(col_);
    if (next_indent > indent) return ParseBlockNode(indent, depth + 1, out);
    // kubectl writes "clusters:\n- cluster: ..." with the items at the key's own indentation.
    if (next_indent == indent && IsSequenceEntry(Current(), col_)) {
      return ParseSequence(indent, depth + 1, out);
    }
    *out = nullptr;
    return true;
  }

  bool ParseSequence(int indent, int depth, json* out) {
    *out = json::array();
    while (true) {
      std::string_view s = Current();
      col_ = static_cast<size_t>(indent) + 1;
      while (col_ < s.size() && IsBlank(s[col_])) ++col_;
      json item;
      if (RestIsEmptyOrComment(s, col_)) {
        ++line_;
        if (!SkipToContent()) return false;
        if (!AtEnd() && static_cast<int>(col_) > indent) {
          if (!ParseBlockNode(indent, depth + 1, &item)) return false;
        }
      } else {
        // A compact item ("- name: x", "- - a"): the node's indentation is its own column.
        if (!ParseBlockNode(indent, depth + 1, &item)) return false;
      }
      out->push_back(std::move(item));

      if (!SkipToContent()) return false;
      if (AtEnd()) return true;
      const int next_indent = static_cast<int>(col_);
      if (next_indent < indent) return true;
      if (next_indent > indent) return Fail("unexpected indentation");
      // Same indentation but not an item: the next key of the enclosing mapping.
      if (!IsSequenceEntry(Current(), col_)) return true;
    }
  }

  // A scalar or flow collection starting at (line_, col_), owned by a parent indented
  // `parent_indent`.
  bool ParseInlineValue(int parent_indent, json* out) {
    std::string_view s = Current();
    const char c = s[col_];
    const bool separated = AtSeparator(s, col_ + 1);
    switch (c) {
      case '"':
      case '\'': {
        std::string value;
        if (!(c == '"' ? ParseDoubleQuoted(&value) : ParseSingleQuoted(&value))) return false;
        if (!ExpectLineEnd("after a quoted scalar")) return false;
        *out = std::move(value);
        return true;
      }
      case '{':
      case '[':
        return ParseFlow(out);
      case '&':
        return Fail("anchors (&) are not supported");
      case '*':
        return Fail("aliases (*) are not supported");
      case '!':
        return Fail("tags (!) are not supported");
      case '|':
      case '>':
        return Fail("block scalars (| and >) are not supported; use a quoted string");
      case '@':
      case '`':
      case ',':
      case ']':
      case '}':
        return Fail(std::string("a plain scalar cannot start with '") + c + "'");
      case '?':
        if (separated) return Fail("complex mapping keys (?) are not supported");
        break;
      case '-':
        if (separated) return Fail("a block sequence is not allowed here");
        break;
      default:
        break;
    }
    return ParsePlain(parent_indent, out);
  }

  // Requires that only blanks and a comment remain on the line, then moves to the next line.
  bool ExpectLineEnd(const char* where) {
    std::string_view s = Current();
    size_t pos = col_;
    while (pos < s.size() && IsBlank(s[pos])) ++pos;
    if (pos < s.size() && !(s[pos] == '#' && pos > col_)) {
      return Fail(std::string("unexpected characters ") + where);
    }
    ++line_;
    return true;
  }

  // {} and [] with optional blanks inside, or a one-line JSON value, then an optional comment.
  bool ParseFlow(json* out) {
    std::string_view s = Current();
    const char open = s[col_];
    const char close = open == '{' ? '}' : ']';
    size_t pos = col_ + 1;
    while (pos < s.size() && IsBlank(s[pos])) ++pos;
    if (pos < s.size() && s[pos] == close) {
      *out = open == '{' ? json::object() : json::array();
      col_ = pos + 1;
      return ExpectLineEnd("after a flow collection");
    }
    std::string_view rest = TrimTrailingBlanks(s.substr(col_));
    // Try the whole rest as JSON, then without a trailing comment.
    for (size_t cut = rest.size();;) {
      json value = json::parse(rest.substr(0, cut), nullptr, /*allow_exceptions=*/false);
      if (!value.is_discarded()) {
        *out = std::move(value);
        ++line_;
        return true;
      }
      const size_t hash = rest.rfind(" #", cut == 0 ? 0 : cut - 1);
      if (hash == std::string_view::npos || hash == 0) break;
      cut = hash;
    }
    return Fail("flow collections are supported only as {}, [] or one-line JSON");
  }

  // Reads the plain text of one line from `pos` up to a comment; fails on ": " inside it.
  bool ReadPlainSegment(std::string_view s, size_t pos, std::string_view* segment) {
    size_t end = pos;
    for (; end < s.size(); ++end) {
      if (s[end] == '#' && end > pos && IsBlank(s[end - 1])) break;
      if (s[end] == ':' && AtSeparator(s, end + 1)) {
        return Fail("mapping values are not allowed here (quote the value if it contains ': ')");
      }
    }
    *segment = TrimTrailingBlanks(s.substr(pos, end - pos));
    return true;
  }

  bool ParsePlain(int parent_indent, json* out) {
    std::string_view segment;
    if (!ReadPlainSegment(Current(), col_, &segment)) return false;
    std::string value(segment);
    ++line_;
    // Continuation lines are indented deeper than the parent; they fold into one line, with each
    // empty line kept as a line break.
    size_t pending_breaks = 0;
    size_t probe = line_;
    while (probe < lines_.size()) {
      std::string_view s = lines_[probe].text;
      if (IsDocumentMarker(s)) break;
      size_t pos = CountLeadingSpaces(s);
      const int indent = static_cast<int>(pos);
      while (pos < s.size() && IsBlank(s[pos])) ++pos;
      if (pos == s.size()) {
        ++pending_breaks;
        ++probe;
        continue;
      }
      if (s[pos] == '#' || indent <= parent_indent) break;
      line_ = probe;
      if (!ReadPlainSegment(s, pos, &segment)) return false;
      if (pending_breaks == 0) {
        value.push_back(' ');
      } else {
        value.append(pending_breaks, '\n');
      }
      value.append(segment);
      pending_breaks = 0;
      line_ = ++probe;
    }
    *out = ResolvePlainScalar(value);
    return true;
  }

  // Folds a line break inside a quoted scalar: trailing blanks of the line were already dropped;
  // one break becomes a space, n > 1 breaks become n - 1 newlines. Leaves col_ at the first
  // non-blank of the continuation line. `start_line` is where the scalar opened, for errors.
  bool FoldQuotedLineBreak(int start_line, bool escaped_break, std::string* out) {
    size_t empty_lines = 0;
    ++line_;
    while (line_ < lines_.size() && IsWhitespaceOnly(Current())) {
      ++empty_lines;
      ++line_;
    }
    if (line_ >= lines_.size()) return Fail(start_line, "unterminated quoted scalar");
    if (!escaped_break) {
      if (empty_lines == 0) {
        out->push_back(' ');
      } else {
        out->append(empty_lines, '\n');
      }
    } else {
      out->append(empty_lines, '\n');
    }
    std::string_view s = Current();
    col_ = 0;
    while (col_ < s.size() && IsBlank(s[col_])) ++col_;
    return true;
  }

  static int HexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Reads `digits` hex digits at `pos`.
  static std::optional<uint32_t> ReadHex(std::string_view s, size_t pos, size_t digits) {
    if (pos + digits > s.size()) return std::nullopt;
    uint32_t v = 0;
    for (size_t i = 0; i < digits; ++i) {
      const int h = HexValue(s[pos + i]);
      if (h < 0) return std::nullopt;
      v = (v << 4) | static_cast<uint32_t>(h);
    }
    return v;
  }

  // Parses a double-quoted scalar whose opening quote is at (line_, col_); leaves col_ just past
  // the closing quote.
  bool ParseDoubleQuoted(std::string* out) {
    const int start_line = lines_[line_].number;
    out->clear();
    size_t pos = col_ + 1;
    size_t keep = 0;  // out->size() without trailing blanks that a line break would drop
    while (true) {
      std::string_view s = Current();
      bool escaped_break = false;
      while (pos < s.size()) {
        const char c = s[pos];
        if (c == '"') {
          col_ = pos + 1;
          return true;
        }
        if (c != '\\') {
          out->push_back(c);
          if (!IsBlank(c)) keep = out->size();
          ++pos;
          continue;
        }
        if (pos + 1 >= s.size()) {
          escaped_break = true;
          break;
        }
        const char e = s[pos + 1];
        pos += 2;
        switch (e) {
          case '0':
            out->push_back('\0');
            break;
          case 'a':
            out->push_back('\a');
            break;
          case 'b':
            out->push_back('\b');
            break;
          case 't':
          case '\t':
            out->push_back('\t');
            break;
          case 'n':
            out->push_back('\n');
            break;
          case 'v':
            out->push_back('\v');
            break;
          case 'f':
            out->push_back('\f');
            break;
          case 'r':
            out->push_back('\r');
            break;
          case 'e':
            out->push_back('\x1b');
            break;
          case ' ':
            out->push_back(' ');
            break;
          case '"':
            out->push_back('"');
            break;
          case '/':
            out->push_back('/');
            break;
          case '\\':
            out->push_back('\\');
            break;
          case 'N':
            AppendUtf8(0x85, out);
            break;
          case '_':
            AppendUtf8(0xA0, out);
            break;
          case 'L':
            AppendUtf8(0x2028, out);
            break;
          case 'P':
            AppendUtf8(0x2029, out);
            break;
          case 'x':
          case 'u':
          case 'U': {
            const size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            std::optional<uint32_t> cp = ReadHex(s, pos, digits);
            if (!cp) return Fail(std::string("invalid \\") + e + " escape");
            pos += digits;
            // A UTF-16 surrogate pair written as two \u escapes (as JSON does).
            if (*cp >= 0xD800 && *cp <= 0xDBFF && e == 'u' && s.substr(pos, 2) == "\\u") {
              std::optional<uint32_t> low = ReadHex(s, pos + 2, 4);
              if (low && *low >= 0xDC00 && *low <= 0xDFFF) {
                cp = 0x10000 + ((*cp - 0xD800) << 10) + (*low - 0xDC00);
                pos += 6;
              }
            }
            if (*cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) {
              return Fail("escape is not a valid Unicode code point");
            }
            AppendUtf8(*cp, out);
            break;
          }
          default:
            return Fail(std::string("invalid escape sequence \\") + e);
        }
        keep = out->size();
      }
      if (!escaped_break) out->resize(keep);
      if (!FoldQuotedLineBreak(start_line, escaped_break, out)) return false;
      keep = out->size();
      pos = col_;
    }
  }

  // Parses a single-quoted scalar ('' is a quote) at (line_, col_); leaves col_ past its end.
  bool ParseSingleQuoted(std::string* out) {
    const int start_line = lines_[line_].number;
    out->clear();
    size_t pos = col_ + 1;
    size_t keep = 0;
    while (true) {
      std::string_view s = Current();
      while (pos < s.size()) {
        const char c = s[pos];
        if (c == '\'') {
          if (pos + 1 < s.size() && s[pos + 1] == '\'') {
            out->push_back('\'');
            keep = out->size();
            pos += 2;
            continue;
          }
          col_ = pos + 1;
          return true;
        }
        out->push_back(c);
        if (!IsBlank(c)) keep = out->size();
        ++pos;
      }
      out->resize(keep);
      if (!FoldQuotedLineBreak(start_line, /*escaped_break=*/false, out)) return false;
      keep = out->size();
      pos = col_;
    }
  }

  std::string_view text_;
  std::vector<Line> lines_;
  size_t line_ = 0;
  size_t col_ = 0;
  Status error_;
};

}  // namespace

Result<nlohmann::json> ParseYaml(std::string_view text) {
  Parser parser(text);
  return parser.ParseDocument();
}

}  // namespace bg::kube
