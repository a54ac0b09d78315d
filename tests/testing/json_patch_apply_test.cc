#include "tests/testing/json_patch_apply.h"

#include <gtest/gtest.h>

namespace bg::testing {
namespace {

using nlohmann::json;

json Apply(const json& doc, const json& patch) {
  Result<json> out = ApplyJsonPatch(doc, patch);
  EXPECT_TRUE(out.ok()) << out.status().message();
  return out.ok() ? out.value() : json();
}

void ExpectFails(const json& doc, const json& patch) {
  Result<json> out = ApplyJsonPatch(doc, patch);
  EXPECT_FALSE(out.ok()) << "applied to " << out->dump();
}

// RFC 6902 appendix A, one test per example.

TEST(JsonPatchApplyTest, AddsAnObjectMember) {
  EXPECT_EQ(Apply(R"({"foo":"bar"})"_json, R"([{"op":"add","path":"/baz","value":"qux"}])"_json),
            R"({"baz":"qux","foo":"bar"})"_json);
}

TEST(JsonPatchApplyTest, AddsAnArrayElementBeforeTheIndex) {
  EXPECT_EQ(Apply(R"({"foo":["bar","baz"]})"_json,
                  R"([{"op":"add","path":"/foo/1","value":"qux"}])"_json),
            R"({"foo":["bar","qux","baz"]})"_json);
}

TEST(JsonPatchApplyTest, RemovesAnObjectMember) {
  EXPECT_EQ(Apply(R"({"baz":"qux","foo":"bar"})"_json, R"([{"op":"remove","path":"/baz"}])"_json),
            R"({"foo":"bar"})"_json);
}

TEST(JsonPatchApplyTest, RemovesAnArrayElement) {
  EXPECT_EQ(
      Apply(R"({"foo":["bar","qux","baz"]})"_json, R"([{"op":"remove","path":"/foo/1"}])"_json),
      R"({"foo":["bar","baz"]})"_json);
}

TEST(JsonPatchApplyTest, ReplacesAValue) {
  EXPECT_EQ(Apply(R"({"baz":"qux","foo":"bar"})"_json,
                  R"([{"op":"replace","path":"/baz","value":"boo"}])"_json),
            R"({"baz":"boo","foo":"bar"})"_json);
}

TEST(JsonPatchApplyTest, MovesAValue) {
  EXPECT_EQ(Apply(R"({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}})"_json,
                  R"([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}])"_json),
            R"({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}})"_json);
}

TEST(JsonPatchApplyTest, MovesAnArrayElement) {
  EXPECT_EQ(Apply(R"({"foo":["all","grass","cows","eat"]})"_json,
                  R"([{"op":"move","from":"/foo/1","path":"/foo/3"}])"_json),
            R"({"foo":["all","cows","eat","grass"]})"_json);
}

TEST(JsonPatchApplyTest, TestSucceedsOnEqualValues) {
  const json doc = R"({"baz":"qux","foo":["a",2,"c"]})"_json;
  EXPECT_EQ(Apply(doc, R"([{"op":"test","path":"/baz","value":"qux"},
                           {"op":"test","path":"/foo/1","value":2}])"_json),
            doc);
}

TEST(JsonPatchApplyTest, TestFailsOnADifferentValue) {
  ExpectFails(R"({"baz":"qux"})"_json, R"([{"op":"test","path":"/baz","value":"bar"}])"_json);
}

TEST(JsonPatchApplyTest, AddsANestedMemberObject) {
  EXPECT_EQ(Apply(R"({"foo":"bar"})"_json,
                  R"([{"op":"add","path":"/child","value":{"grandchild":{}}}])"_json),
            R"({"foo":"bar","child":{"grandchild":{}}})"_json);
}

TEST(JsonPatchApplyTest, IgnoresUnrecognizedMembers) {
  EXPECT_EQ(Apply(R"({"foo":"bar"})"_json,
                  R"([{"op":"add","path":"/baz","value":"qux","xyz":123}])"_json),
            R"({"foo":"bar","baz":"qux"})"_json);
}

TEST(JsonPatchApplyTest, AddingUnderANonexistentTargetFails) {
  ExpectFails(R"({"foo":"bar"})"_json, R"([{"op":"add","path":"/baz/bat","value":"qux"}])"_json);
}

TEST(JsonPatchApplyTest, UnescapesTildeOneBeforeTildeZero) {
  const json doc = R"({"/":9,"~1":10})"_json;
  EXPECT_EQ(Apply(doc, R"([{"op":"test","path":"/~01","value":10}])"_json), doc);
}

TEST(JsonPatchApplyTest, StringsAndNumbersAreNeverEqual) {
  ExpectFails(R"({"/":9,"~1":10})"_json, R"([{"op":"test","path":"/~01","value":"10"}])"_json);
}

TEST(JsonPatchApplyTest, AppendsAnArrayValueWithDash) {
  EXPECT_EQ(Apply(R"({"foo":["bar"]})"_json,
                  R"([{"op":"add","path":"/foo/-","value":["abc","def"]}])"_json),
            R"({"foo":["bar",["abc","def"]]})"_json);
}

// RFC 6901 section 5: every pointer of the example document.
TEST(JsonPatchApplyTest, ResolvesEveryPointerOfRfc6901) {
  const json doc = R"({"foo":["bar","baz"],"":0,"a/b":1,"c%d":2,"e^f":3,"g|h":4,"i\\j":5,
                       "k\"l":6," ":7,"m~n":8})"_json;
  const std::vector<std::pair<std::string, json>> cases = {
      {"", doc},         {"/foo", R"(["bar","baz"])"_json},
      {"/foo/0", "bar"}, {"/", 0},
      {"/a~1b", 1},      {"/c%d", 2},
      {"/e^f", 3},       {"/g|h", 4},
      {"/i\\j", 5},      {"/k\"l", 6},
      {"/ ", 7},         {"/m~0n", 8},
  };
  for (const auto& [pointer, want] : cases) {
    Result<json> got = ResolveJsonPointer(doc, pointer);
    ASSERT_TRUE(got.ok()) << pointer << ": " << got.status().message();
    EXPECT_EQ(*got, want) << pointer;
  }
}

TEST(JsonPatchApplyTest, RefusesMalformedPointers) {
  const json doc = R"({"a":{"~":1},"l":[1,2]})"_json;
  for (const char* pointer : {"a", "/a/~", "/a/~2", "/l/01", "/l/-", "/l/2", "/l/+1", "/l/ 1",
                              "/l/1x", "/l/99999999999999999999999", "/missing", "/a/~/x"}) {
    EXPECT_FALSE(ResolveJsonPointer(doc, pointer).ok()) << pointer;
  }
}

TEST(JsonPatchApplyTest, AddsAtTheEndByIndexButNotPastIt) {
  EXPECT_EQ(Apply(R"([1,2])"_json, R"([{"op":"add","path":"/2","value":3}])"_json),
            R"([1,2,3])"_json);
  ExpectFails(R"([1,2])"_json, R"([{"op":"add","path":"/3","value":3}])"_json);
}

TEST(JsonPatchApplyTest, AddReplacesAnExistingMember) {
  EXPECT_EQ(Apply(R"({"a":1})"_json, R"([{"op":"add","path":"/a","value":[2]}])"_json),
            R"({"a":[2]})"_json);
}

TEST(JsonPatchApplyTest, TheEmptyPathAddsOrReplacesTheWholeDocument) {
  EXPECT_EQ(Apply(R"({"a":1})"_json, R"([{"op":"add","path":"","value":[1]}])"_json),
            R"([1])"_json);
  EXPECT_EQ(Apply(R"({"a":1})"_json, R"([{"op":"replace","path":"","value":null}])"_json), json());
  ExpectFails(R"({"a":1})"_json, R"([{"op":"remove","path":""}])"_json);
}

TEST(JsonPatchApplyTest, RemoveAndReplaceNeedAnExistingTarget) {
  ExpectFails(R"({"a":1})"_json, R"([{"op":"remove","path":"/b"}])"_json);
  ExpectFails(R"({"a":1})"_json, R"([{"op":"replace","path":"/b","value":2}])"_json);
  ExpectFails(R"({"a":[1]})"_json, R"([{"op":"remove","path":"/a/-"}])"_json);
  ExpectFails(R"({"a":[1]})"_json, R"([{"op":"replace","path":"/a/1","value":2}])"_json);
}

TEST(JsonPatchApplyTest, CopiesAValue) {
  EXPECT_EQ(Apply(R"({"a":{"b":[1]},"c":[]})"_json,
                  R"([{"op":"copy","from":"/a/b","path":"/c/-"}])"_json),
            R"({"a":{"b":[1]},"c":[[1]]})"_json);
  ExpectFails(R"({"a":1})"_json, R"([{"op":"copy","from":"/x","path":"/b"}])"_json);
}

TEST(JsonPatchApplyTest, MoveIntoItsOwnChildFails) {
  ExpectFails(R"({"a":{"b":{}}})"_json, R"([{"op":"move","from":"/a","path":"/a/b/c"}])"_json);
}

TEST(JsonPatchApplyTest, MoveToItselfChangesNothing) {
  const json doc = R"({"a":{"b":1}})"_json;
  EXPECT_EQ(Apply(doc, R"([{"op":"move","from":"/a","path":"/a"}])"_json), doc);
}

TEST(JsonPatchApplyTest, MoveToASiblingWithACommonPrefixWorks) {
  EXPECT_EQ(Apply(R"({"a":1})"_json, R"([{"op":"move","from":"/a","path":"/ab"}])"_json),
            R"({"ab":1})"_json);
}

TEST(JsonPatchApplyTest, TestComparesNumbersByValueAndObjectsWithoutOrder) {
  const json doc = R"({"n":1,"o":{"x":1,"y":2}})"_json;
  EXPECT_EQ(Apply(doc, R"([{"op":"test","path":"/n","value":1.0},
                           {"op":"test","path":"/o","value":{"y":2,"x":1}}])"_json),
            doc);
}

TEST(JsonPatchApplyTest, RefusesMalformedOperations) {
  const json doc = R"({"a":1})"_json;
  for (const char* patch :
       {R"({"op":"add","path":"/b","value":1})", R"([1])", R"([{"path":"/a"}])",
        R"([{"op":"add","value":1}])", R"([{"op":"add","path":"/b"}])",
        R"([{"op":"move","path":"/b"}])", R"([{"op":"copy","path":"/b","from":1}])",
        R"([{"op":"frobnicate","path":"/a"}])", R"([{"op":"add","path":7,"value":1}])",
        R"([{"op":"test","path":"/a"}])"}) {
    ExpectFails(doc, json::parse(patch));
  }
}

TEST(JsonPatchApplyTest, AFailingOperationFailsTheWholePatch) {
  ExpectFails(R"({"a":1})"_json, R"([{"op":"add","path":"/b","value":2},
                                     {"op":"remove","path":"/zzz"}])"_json);
}

TEST(JsonPatchApplyTest, AddsANullValue) {
  EXPECT_EQ(Apply(R"({})"_json, R"([{"op":"add","path":"/a","value":null}])"_json),
            R"({"a":null})"_json);
}

}  // namespace
}  // namespace bg::testing
