// An RFC 6902 JSON Patch applier for tests, written from the RFCs and independent of the JSON
// library's own patch(), so that it can check the patches webhook::MakePatch produces: applying
// them must turn the request object into the mutated one.
//
//  - JSON Pointer (RFC 6901): "" is the whole document, every other pointer starts with '/';
//    "~1" stands for '/' and "~0" for '~', and any other '~' is an error. An array index is "0"
//    or a number without leading zeros; "-" (the element after the last) is valid only as the
//    target of "add", "move" and "copy".
//  - Operations run in order on a copy of the document; the first failure fails the whole patch
//    and names the operation. Members other than op, path, from and value are ignored.
//  - "test" compares with JSON equality: numbers by value (1 equals 1.0), objects regardless of
//    member order.
//
// Thread-safety: pure functions.
#pragma once

#include <charconv>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace bg::testing {

// The unescaped reference tokens of `pointer`.
inline Result<std::vector<std::string>> ParseJsonPointer(std::string_view pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty()) return tokens;
  if (pointer.front() != '/') {
    return Status::InvalidArgument("JSON Pointer \"" + std::string(pointer) +
                                   "\" must be empty or start with '/'");
  }
  std::string token;
  for (size_t i = 1; i < pointer.size(); ++i) {
    const char c = pointer[i];
    if (c == '/') {
      tokens.push_back(std::move(token));
      token.clear();
    } else if (c == '~') {
      const char next = i + 1 < pointer.size() ? pointer[i + 1] : '\0';
      if (next != '0' && next != '1') {
        return Status::InvalidArgument("JSON Pointer \"" + std::string(pointer) +
                                       "\": '~' must be followed by 0 or 1");
      }
      token.push_back(next == '0' ? '~' : '/');
      ++i;
    } else {
      token.push_back(c);
    }
  }
  tokens.push_back(std::move(token));
  return tokens;
}

namespace json_patch_internal {

using nlohmann::json;
using Tokens = std::vector<std::string>;

inline std::string Describe(const Tokens& tokens, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    out.push_back('/');
    for (char c : tokens[i]) {
      if (c == '~') {
        out += "~0";
      } else if (c == '/') {
        out += "~1";
      } else {
        out.push_back(c);
      }
    }
  }
  return "\"" + out + "\"";
}

// The array index `token` names in an array of `size` elements. "-" is `size` when `allow_end`;
// the range is the caller's to check.
inline Result<size_t> ArrayIndex(const std::string& token, size_t size, bool allow_end) {
  if (token == "-") {
    if (allow_end) return size;
    return Status::InvalidArgument("\"-\" names no existing array element");
  }
  const bool digits_only =
      !token.empty() && token.find_first_not_of("0123456789") == std::string::npos;
  if (!digits_only || (token.size() > 1 && token[0] == '0')) {
    return Status::InvalidArgument("\"" + token + "\" is not an array index");
  }
  size_t index = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), index);
  if (ec != std::errc() || end != token.data() + token.size()) {
    return Status::InvalidArgument("array index \"" + token + "\" is out of range");
  }
  return index;
}

// Messages quote values, which may hold any string the test built.
inline std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

// The value the first `count` tokens lead to; every step must exist. `Json` is json or const json.
template <typename Json>
Result<Json*> Locate(Json& doc, const Tokens& tokens, size_t count) {
  Json* node = &doc;
  for (size_t i = 0; i < count; ++i) {
    const std::string& token = tokens[i];
    if (node->is_object()) {
      auto it = node->find(token);
      if (it == node->end()) {
        return Status::InvalidArgument("path " + Describe(tokens, i + 1) + " does not exist");
      }
      node = &*it;
    } else if (node->is_array()) {
      Result<size_t> index = ArrayIndex(token, node->size(), /*allow_end=*/false);
      if (!index.ok()) {
        return Status::InvalidArgument("path " + Describe(tokens, i + 1) + ": " +
                                       index.status().message());
      }
      if (*index >= node->size()) {
        return Status::InvalidArgument("path " + Describe(tokens, i + 1) +
                                       ": index past the end of the array");
      }
      node = &(*node)[*index];
    } else {
      return Status::InvalidArgument("path " + Describe(tokens, i + 1) +
                                     ": cannot descend into a " + node->type_name());
    }
  }
  return node;
}

inline Status Add(json& doc, const Tokens& path, json value) {
  if (path.empty()) {
    doc = std::move(value);
    return Status::Ok();
  }
  Result<json*> parent = Locate(doc, path, path.size() - 1);
  if (!parent.ok()) return parent.status();
  json& target = **parent;
  const std::string& last = path.back();
  if (target.is_object()) {
    target[last] = std::move(value);
    return Status::Ok();
  }
  if (target.is_array()) {
    Result<size_t> index = ArrayIndex(last, target.size(), /*allow_end=*/true);
    if (!index.ok()) {
      return Status::InvalidArgument("path " + Describe(path, path.size()) + ": " +
                                     index.status().message());
    }
    if (*index > target.size()) {
      return Status::InvalidArgument("path " + Describe(path, path.size()) +
                                     ": index past the end of the array");
    }
    target.insert(target.begin() + static_cast<std::ptrdiff_t>(*index), std::move(value));
    return Status::Ok();
  }
  return Status::InvalidArgument("path " + Describe(path, path.size()) + ": the parent is a " +
                                 target.type_name());
}

inline Result<json> Remove(json& doc, const Tokens& path) {
  if (path.empty()) return Status::InvalidArgument("cannot remove the whole document");
  Result<json*> parent = Locate(doc, path, path.size() - 1);
  if (!parent.ok()) return parent.status();
  json& target = **parent;
  const std::string& last = path.back();
  if (target.is_object()) {
    auto it = target.find(last);
    if (it == target.end()) {
      return Status::InvalidArgument("path " + Describe(path, path.size()) + " does not exist");
    }
    json removed = std::move(*it);
    target.erase(it);
    return removed;
  }
  if (target.is_array()) {
    Result<size_t> index = ArrayIndex(last, target.size(), /*allow_end=*/false);
    if (!index.ok()) {
      return Status::InvalidArgument("path " + Describe(path, path.size()) + ": " +
                                     index.status().message());
    }
    if (*index >= target.size()) {
      return Status::InvalidArgument("path " + Describe(path, path.size()) +
                                     ": index past the end of the array");
    }
    json removed = std::move(target[*index]);
    target.erase(target.begin() + static_cast<std::ptrdiff_t>(*index));
    return removed;
  }
  return Status::InvalidArgument("path " + Describe(path, path.size()) + ": the parent is a " +
                                 target.type_name());
}

inline bool IsProperPrefix(const Tokens& prefix, const Tokens& path) {
  if (prefix.size() >= path.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (prefix[i] != path[i]) return false;
  }
  return true;
}

// The string member `key` of operation `op`, parsed as a JSON Pointer.
inline Result<Tokens> PointerMember(const json& op, const char* key) {
  auto it = op.find(key);
  if (it == op.end()) return Status::InvalidArgument(std::string("missing member \"") + key + "\"");
  if (!it->is_string()) {
    return Status::InvalidArgument(std::string("member \"") + key + "\" must be a string");
  }
  return ParseJsonPointer(it->get<std::string>());
}

inline Status ApplyOperation(json& doc, const json& op) {
  if (!op.is_object()) return Status::InvalidArgument("an operation must be a JSON object");
  auto name_it = op.find("op");
  if (name_it == op.end() || !name_it->is_string()) {
    return Status::InvalidArgument("missing string member \"op\"");
  }
  const std::string name = name_it->get<std::string>();
  Result<Tokens> path = PointerMember(op, "path");
  if (!path.ok()) return path.status();

  const bool needs_value = name == "add" || name == "replace" || name == "test";
  const bool needs_from = name == "move" || name == "copy";
  if (!needs_value && !needs_from && name != "remove") {
    return Status::InvalidArgument("unknown op \"" + name + "\"");
  }
  auto value_it = op.find("value");
  if (needs_value && value_it == op.end()) {
    return Status::InvalidArgument("op \"" + name + "\" needs a \"value\" member");
  }
  Tokens from;
  if (needs_from) {
    Result<Tokens> parsed = PointerMember(op, "from");
    if (!parsed.ok()) return parsed.status();
    from = std::move(parsed).value();
  }

  if (name == "add") return Add(doc, *path, *value_it);
  if (name == "remove") {
    Result<json> removed = Remove(doc, *path);
    return removed.ok() ? Status::Ok() : removed.status();
  }
  if (name == "replace") {
    Result<json*> target = Locate(doc, *path, path->size());
    if (!target.ok()) return target.status();
    **target = *value_it;
    return Status::Ok();
  }
  if (name == "test") {
    Result<json*> target = Locate(doc, *path, path->size());
    if (!target.ok()) return target.status();
    if (**target != *value_it) {
      return Status::InvalidArgument("test failed: " + Describe(*path, path->size()) + " is " +
                                     Dump(**target) + ", not " + Dump(*value_it));
    }
    return Status::Ok();
  }
  // move and copy: "from" must exist.
  Result<json*> source = Locate(doc, from, from.size());
  if (!source.ok()) return Status::InvalidArgument("from: " + source.status().message());
  if (name == "copy") return Add(doc, *path, **source);
  if (from == *path) return Status::Ok();
  if (IsProperPrefix(from, *path)) {
    return Status::InvalidArgument("cannot move " + Describe(from, from.size()) +
                                   " into its own child " + Describe(*path, path->size()));
  }
  Result<json> moved = Remove(doc, from);
  if (!moved.ok()) return moved.status();
  return Add(doc, *path, std::move(moved).value());
}

}  // namespace json_patch_internal

// The value `pointer` names in `document`.
inline Result<nlohmann::json> ResolveJsonPointer(const nlohmann::json& document,
                                                 std::string_view pointer) {
  Result<std::vector<std::string>> tokens = ParseJsonPointer(pointer);
  if (!tokens.ok()) return tokens.status();
  Result<const nlohmann::json*> node =
      json_patch_internal::Locate(document, *tokens, tokens->size());
  if (!node.ok()) return node.status();
  return **node;
}

// `document` with `patch` (an array of operations) applied.
inline Result<nlohmann::json> ApplyJsonPatch(const nlohmann::json& document,
                                             const nlohmann::json& patch) {
  if (!patch.is_array()) return Status::InvalidArgument("a JSON Patch must be a JSON array");
  nlohmann::json doc = document;
  for (size_t i = 0; i < patch.size(); ++i) {
    Status s = json_patch_internal::ApplyOperation(doc, patch[i]);
    if (!s.ok()) {
      return Status::InvalidArgument("operation " + std::to_string(i) + " (" +
                                     json_patch_internal::Dump(patch[i]) + "): " + s.message());
    }
  }
  return doc;
}

}  // namespace bg::testing
