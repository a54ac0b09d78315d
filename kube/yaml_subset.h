// A small YAML reader for the block-style documents that kubectl, kubeadm and kind write
// (kubeconfig files), turning them into nlohmann::json.
//
// Supported:
//   - block mappings and block sequences, including the kubectl form where a sequence sits at the
//     same indentation as its key ("clusters:\n- cluster: ...") and compact items ("- name: x");
//   - plain scalars (also spanning several lines), single-quoted and double-quoted scalars with
//     YAML escapes and line folding;
//   - comments, a leading "---", a trailing "...", %-directives before "---";
//   - empty flow collections ({} and []) and flow collections written as one-line JSON;
//   - a whole document written as JSON (JSON is YAML).
// Plain scalars resolve with the YAML 1.2 core schema: null/~, true/false, integers (also 0x, 0o),
// floats (also .inf, .nan); everything else, and every quoted scalar, is a string. Mapping keys are
// always strings.
//
// Not supported, each reported as an error with its line number (never a crash): anchors and
// aliases, tags, block scalars (| and >), complex keys (?), multi-line keys, flow collections that
// are not JSON, more than one document with content, tab characters used for indentation,
// duplicate keys, invalid UTF-8, nesting deeper than kMaxYamlDepth.
//
// Thread-safety: ParseYaml is a pure function; call it from any thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "common/status.h"

namespace bg::kube {

// Deeper nesting is refused: real kubeconfigs nest about six levels, and the limit keeps hostile
// input from exhausting the stack.
inline constexpr int kMaxYamlDepth = 64;

// Parses one YAML document. An empty document (nothing but comments and blank lines) is null.
// Errors are Status::InvalidArgument with a message like "yaml: line 7: tab character used for
// indentation".
Result<nlohmann::json> ParseYaml(std::string_view text);

}  // namespace bg::kube
