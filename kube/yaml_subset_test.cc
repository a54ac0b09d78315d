#include "kube/yaml_subset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace bg::kube {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json ParseOk(std::string_view text) {
  Result<json> r = ParseYaml(text);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? r.value() : json();
}

std::string ParseError(std::string_view text) {
  Result<json> r = ParseYaml(text);
  EXPECT_FALSE(r.ok()) << "parsed as " << (r.ok() ? r.value().dump() : "");
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  return r.status().message();
}

TEST(YamlSubsetTest, KubectlKubeconfigShape) {
  const char* text = R"(apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTg==
    server: https://127.0.0.1:6443
  name: kind-kind
contexts:
- context:
    cluster: kind-kind
    user: kind-kind
  name: kind-kind
current-context: kind-kind
kind: Config
preferences: {}
users:
- name: kind-kind
  user:
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
)";
  json expected = {
      {"apiVersion", "v1"},
      {"clusters",
       {{{"cluster",
          {{"certificate-authority-data", "LS0tLS1CRUdJTg=="},
           {"server", "https://127.0.0.1:6443"}}},
         {"name", "kind-kind"}}}},
      {"contexts",
       {{{"context", {{"cluster", "kind-kind"}, {"user", "kind-kind"}}}, {"name", "kind-kind"}}}},
      {"current-context", "kind-kind"},
      {"kind", "Config"},
      {"preferences", json::object()},
      {"users",
       {{{"name", "kind-kind"},
         {"user", {{"client-certificate-data", "Y2VydA=="}, {"client-key-data", "a2V5"}}}}}},
  };
  EXPECT_EQ(ParseOk(text), expected);
}

TEST(YamlSubsetTest, IndentedSequencesAndNestedMappings) {
  const char* text = R"(
top:
  list:
    - a
    - b
  nested:
    deeper:
      value: 1
other: x
)";
  EXPECT_EQ(ParseOk(text),
            json({{"top", {{"list", {"a", "b"}}, {"nested", {{"deeper", {{"value", 1}}}}}}},
                  {"other", "x"}}));
}

TEST(YamlSubsetTest, CompactNestedSequencesAndEmptyItems) {
  EXPECT_EQ(ParseOk("- - a\n  - b\n- c\n-\n-   k: v\n    k2: v2\n"),
            json::parse(R"([["a","b"],"c",null,{"k":"v","k2":"v2"}])"));
}

TEST(YamlSubsetTest, ItemValueOnFollowingLines) {
  EXPECT_EQ(ParseOk("-\n  name: x\n-\n  - y\n"), json::parse(R"([{"name":"x"},["y"]])"));
}

TEST(YamlSubsetTest, EmptyValuesAreNull) {
  EXPECT_EQ(ParseOk("a:\nb: ~\nc: null\nd:   # comment\n"),
            json({{"a", nullptr}, {"b", nullptr}, {"c", nullptr}, {"d", nullptr}}));
}

TEST(YamlSubsetTest, CoreSchemaScalars) {
  json j = ParseOk(R"(
t: true
f: False
i: 42
n: -17
p: +3
h: 0x1F
o: 0o17
fl: 1.5
e: 2e3
dot: .5
inf: -.inf
nan: .nan
big: 18446744073709551615
s: hello world
v: v1.2.3
ver: 1.2.3
ip: 127.0.0.1
url: https://example.com:6443/path#frag
colon: a:b
hash: a#b
yes: yes
)");
  EXPECT_EQ(j["t"], true);
  EXPECT_EQ(j["f"], false);
  EXPECT_EQ(j["i"], 42);
  EXPECT_EQ(j["n"], -17);
  EXPECT_EQ(j["p"], 3);
  EXPECT_EQ(j["h"], 31);
  EXPECT_EQ(j["o"], 15);
  EXPECT_EQ(j["fl"], 1.5);
  EXPECT_EQ(j["e"], 2000.0);
  EXPECT_EQ(j["dot"], 0.5);
  EXPECT_TRUE(std::isinf(j["inf"].get<double>()));
  EXPECT_LT(j["inf"].get<double>(), 0);
  EXPECT_TRUE(std::isnan(j["nan"].get<double>()));
  EXPECT_EQ(j["big"].get<uint64_t>(), 18446744073709551615ULL);
  EXPECT_EQ(j["s"], "hello world");
  EXPECT_EQ(j["v"], "v1.2.3");
  EXPECT_EQ(j["ver"], "1.2.3");
  EXPECT_EQ(j["ip"], "127.0.0.1");
  EXPECT_EQ(j["url"], "https://example.com:6443/path#frag");
  EXPECT_EQ(j["colon"], "a:b");
  EXPECT_EQ(j["hash"], "a#b");
  EXPECT_EQ(j["yes"], "yes");  // YAML 1.2: only true/false are booleans.
}

TEST(YamlSubsetTest, CommentsEverywhere) {
  const char* text = R"(# leading comment
a: 1 # trailing
# between
b:
  # inside
  - x # item comment
  # more
  - y
)";
  EXPECT_EQ(ParseOk(text), json({{"a", 1}, {"b", {"x", "y"}}}));
}

TEST(YamlSubsetTest, QuotedScalarsStayStrings) {
  json j = ParseOk(R"(a: "true"
b: '42'
c: "null"
d: 'it''s'
e: "tab\there \"q\" \\ \u00e9 \U0001F600 \x41"
f: ""
g: ''
"quoted key": 1
'single key': 2
"colon: key": 3
h: "has # hash" # comment
)");
  EXPECT_EQ(j["a"], "true");
  EXPECT_EQ(j["b"], "42");
  EXPECT_EQ(j["c"], "null");
  EXPECT_EQ(j["d"], "it's");
  EXPECT_EQ(j["e"], "tab\there \"q\" \\ \xC3\xA9 \xF0\x9F\x98\x80 A");
  EXPECT_EQ(j["f"], "");
  EXPECT_EQ(j["g"], "");
  EXPECT_EQ(j["quoted key"], 1);
  EXPECT_EQ(j["single key"], 2);
  EXPECT_EQ(j["colon: key"], 3);
  EXPECT_EQ(j["h"], "has # hash");
}

TEST(YamlSubsetTest, JsonSurrogatePairEscape) {
  EXPECT_EQ(ParseOk(R"(a: "\ud83d\ude00")")["a"], "\xF0\x9F\x98\x80");
}

TEST(YamlSubsetTest, MultiLineQuotedScalarsFold) {
  json j = ParseOk("a: \"one\n  two  \n\n  three\"\nb: 'x\n  y'\nc: \"joined\\\n   here\"\n");
  EXPECT_EQ(j["a"], "one two\nthree");
  EXPECT_EQ(j["b"], "x y");
  EXPECT_EQ(j["c"], "joinedhere");
}

TEST(YamlSubsetTest, MultiLinePlainScalarFolds) {
  json k = ParseOk("a: one\n  two\n\n  three\nb: c\n");
  EXPECT_EQ(k["a"], "one two\nthree");
  EXPECT_EQ(k["b"], "c");
}

TEST(YamlSubsetTest, EmptyFlowCollectionsAndOneLineJson) {
  json j = ParseOk("a: {}\nb: []\nc: { }\nd: [1, \"x\", {\"k\": null}]\ne: {\"k\": [true]} # c\n");
  EXPECT_EQ(j["a"], json::object());
  EXPECT_EQ(j["b"], json::array());
  EXPECT_EQ(j["c"], json::object());
  EXPECT_EQ(j["d"], json::parse(R"([1,"x",{"k":null}])"));
  EXPECT_EQ(j["e"], json::parse(R"({"k":[true]})"));
}

TEST(YamlSubsetTest, JsonDocument) {
  const char* text = R"({
  "kind": "Config",
  "clusters": [{"name": "c", "cluster": {"server": "https://h"}}]
})";
  EXPECT_EQ(ParseOk(text), json::parse(text));
  EXPECT_EQ(ParseOk("# comment first\n[1, 2]\n"), json::parse("[1,2]"));
}

TEST(YamlSubsetTest, DocumentMarkersAndDirectives) {
  EXPECT_EQ(ParseOk("%YAML 1.2\n---\na: 1\n...\n"), json({{"a", 1}}));
  EXPECT_EQ(ParseOk("---\na: 1\n---\n"), json({{"a", 1}}));
  EXPECT_EQ(ParseOk("\xEF\xBB\xBF"
                    "a: 1\n"),
            json({{"a", 1}}));
}

TEST(YamlSubsetTest, CrLfLineEndings) {
  EXPECT_EQ(ParseOk("a: 1\r\nb:\r\n- x\r\n"), json({{"a", 1}, {"b", {"x"}}}));
}

TEST(YamlSubsetTest, EmptyDocumentIsNull) {
  EXPECT_TRUE(ParseOk("").is_null());
  EXPECT_TRUE(ParseOk("\n# only a comment\n\n").is_null());
  EXPECT_TRUE(ParseOk("---\n").is_null());
}

TEST(YamlSubsetTest, TopLevelScalar) {
  EXPECT_EQ(ParseOk("hello\n  world\n"), "hello world");
  EXPECT_EQ(ParseOk("\"quoted\"\n"), "quoted");
}

TEST(YamlSubsetTest, TabIndentationIsAnErrorWithLine) {
  EXPECT_THAT(ParseError("a:\n\tb: 1\n"),
              AllOf(HasSubstr("line 2"), HasSubstr("tab character used for indentation")));
}

TEST(YamlSubsetTest, TabsInsideLinesAreFine) {
  EXPECT_EQ(ParseOk("a:\tb\t# c\n"), json({{"a", "b"}}));
}

TEST(YamlSubsetTest, UnsupportedConstructsNameTheLine) {
  EXPECT_THAT(ParseError("a: 1\nb: &anchor x\n"), AllOf(HasSubstr("line 2"), HasSubstr("anchors")));
  EXPECT_THAT(ParseError("a: *alias\n"), AllOf(HasSubstr("line 1"), HasSubstr("aliases")));
  EXPECT_THAT(ParseError("a: !!str 1\n"), HasSubstr("tags"));
  EXPECT_THAT(ParseError("a: |\n  text\n"), HasSubstr("block scalars"));
  EXPECT_THAT(ParseError("a: >-\n  text\n"), HasSubstr("block scalars"));
  EXPECT_THAT(ParseError("? complex\n: value\n"), HasSubstr("complex mapping keys"));
  EXPECT_THAT(ParseError("a: [x, y]\n"), HasSubstr("flow collections"));
  EXPECT_THAT(ParseError("a: {x: 1}\n"), HasSubstr("flow collections"));
}

TEST(YamlSubsetTest, MultipleDocumentsAreRefused) {
  EXPECT_THAT(ParseError("a: 1\n---\nb: 2\n"),
              AllOf(HasSubstr("line 3"), HasSubstr("more than one YAML document")));
  EXPECT_THAT(ParseError("a: 1\n...\nb: 2\n"), HasSubstr("more than one YAML document"));
  EXPECT_THAT(ParseError("---\n---\na: 1\n"), HasSubstr("more than one YAML document"));
}

TEST(YamlSubsetTest, BadIndentationIsAnError) {
  EXPECT_THAT(ParseError("a:\n    b: 1\n  c: 2\n"),
              AllOf(HasSubstr("line 3"), HasSubstr("indentation")));
  EXPECT_THAT(ParseError("  a: 1\nb: 2\n"), AllOf(HasSubstr("line 2"), HasSubstr("indentation")));
  EXPECT_THAT(ParseError("a: 1\n  b: 2\n"),
              AllOf(HasSubstr("line 2"), HasSubstr("mapping values")));
}

TEST(YamlSubsetTest, MixingMappingAndSequenceIsAnError) {
  EXPECT_THAT(ParseError("a: 1\n- b\n"), HasSubstr("sequence item"));
  EXPECT_THAT(ParseError("- a\nb: 1\n"), HasSubstr("line 2"));
  EXPECT_THAT(ParseError("a: - b\n"), HasSubstr("block sequence"));
}

TEST(YamlSubsetTest, DuplicateKeysAreAnError) {
  EXPECT_THAT(ParseError("a: 1\nb: 2\na: 3\n"),
              AllOf(HasSubstr("line 3"), HasSubstr("duplicate mapping key \"a\"")));
}

TEST(YamlSubsetTest, UnterminatedQuotesAreAnError) {
  EXPECT_THAT(ParseError("a: 1\nb: \"open\n"),
              AllOf(HasSubstr("line 2"), HasSubstr("unterminated")));
  EXPECT_THAT(ParseError("a: 'open\n\n"), HasSubstr("unterminated"));
}

TEST(YamlSubsetTest, BadEscapesAreAnError) {
  EXPECT_THAT(ParseError(R"(a: "\q")"), HasSubstr("invalid escape"));
  EXPECT_THAT(ParseError(R"(a: "\u12")"), HasSubstr("invalid \\u escape"));
  EXPECT_THAT(ParseError(R"(a: "\ud800")"), HasSubstr("not a valid Unicode"));
}

TEST(YamlSubsetTest, TextAfterQuotedScalarIsAnError) {
  EXPECT_THAT(ParseError("a: \"x\" y\n"), HasSubstr("unexpected characters"));
}

TEST(YamlSubsetTest, InvalidUtf8IsAnError) {
  EXPECT_THAT(ParseError("a: 1\nb: \xC3\x28\n"), AllOf(HasSubstr("line 2"), HasSubstr("UTF-8")));
}

TEST(YamlSubsetTest, MalformedJsonDocumentIsAnError) {
  EXPECT_THAT(ParseError("{\n  \"a\": 1,\n  \"b\": \n}\n"), HasSubstr("invalid JSON"));
}

TEST(YamlSubsetTest, DeepNestingIsRefusedNotACrash) {
  std::string deep;
  for (int i = 0; i < 10000; ++i) deep += "- ";
  deep += "x\n";
  EXPECT_THAT(ParseError(deep), HasSubstr("nesting deeper"));

  std::string deep_map;
  for (int i = 0; i < 200; ++i) deep_map += std::string(static_cast<size_t>(i) * 2, ' ') + "k:\n";
  EXPECT_THAT(ParseError(deep_map), HasSubstr("nesting deeper"));
}

TEST(YamlSubsetTest, GarbageNeverCrashes) {
  // Every prefix of a realistic document either parses or returns an error.
  const std::string text =
      "a:\n  - b: \"c\\\"d\"\n    e: 'f''g'\n  - [1, 2]\n  - {}\nh: |\n  x\ni: \"\\u00\"\n";
  for (size_t n = 0; n <= text.size(); ++n) {
    Result<json> r = ParseYaml(text.substr(0, n));
    (void)r;
  }
  for (const char* s : {":", "-", "- -", "'", "\"", "\"\\", "? ", "#", "a:\n-", "- a:\n  -", "[",
                        "{", "...", "---", "a: b: c", ": x", "\t", "\xFF"}) {
    Result<json> r = ParseYaml(s);
    (void)r;
  }
}

}  // namespace
}  // namespace bg::kube
