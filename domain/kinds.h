// The storage engine's kinds that backup-guard knows, as one table (SPEC.md "Resources").
// Everything that depends on "which kinds, and how they relate" reads it: the processor's
// informers (watched), the uninstall's fixed order, the cascade graph (children and how each is
// found), the fields the release rules read (the uninstall's compact snapshot keeps these), the
// API client's plural-to-Kind mapping, and the chart's RBAC lists (checked against it by
// cmd/manifests_test.cc). Adding a kind is one row here naming its rule (domain/rules.h).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/rules.h"
#include "kube/api.h"

namespace bg::domain {

// How a parent finds its children of one kind.
enum class ChildLink {
  kTargetLabel,  // label backup-target=<parent name>
  kVolumeLabel,  // label backup-volume=<parent's volume name>
  kTargetOwner,  // an owner reference to the BackupTarget (or none at all, for `default`)
};

struct ChildKind {
  std::string_view plural;
  ChildLink link;
};

struct KindInfo {
  std::string_view plural;
  std::string_view kind;
  bool watched;  // the processor keeps an informer of it
  // Place in the uninstall's fixed order (0 first); nullopt: not deleted by the uninstall.
  std::optional<int> uninstall_rank;
  // Deleted by a parent's cascade (and so granted delete in the server's Role).
  bool cascaded;
  std::vector<ChildKind> children;
  // Its release rule (domain/rules.h); null: only the uninstall grace applies (PlanOther).
  RuleFn rule;
};

// Every kind backup-guard knows, in the processor's order.
const std::vector<KindInfo>& Kinds();

// The row of `plural`, or null.
const KindInfo* FindKind(std::string_view plural);

// longhorn.io/v1beta2 `plural`, with the Kind of the table (empty for a kind the table does not
// know: the API client then restores it from list responses).
kube::ResourceRef Resource(std::string_view plural);
// The Kind of `plural`, or "" when the table does not know it.
std::string KindOf(std::string_view plural);

// The kinds the processor watches.
const std::vector<std::string>& WatchedResources();
// The kinds the uninstall deletes first, in order; every other served kind follows.
const std::vector<std::string>& UninstallOrder();
// The kinds of `parent`'s children, in the table's order (none for a kind it does not know).
std::vector<std::string_view> ChildrenOf(std::string_view parent);
// True when `child` is among ChildrenOf(parent).
bool IsChildOf(std::string_view child, std::string_view parent);
// True when some parent's cascade deletes objects of `plural`.
bool IsCascaded(std::string_view plural);

// The fields of an object that the release rules read: the uninstall's compact snapshot keeps
// these and nothing else (see kinds.cc for the two it does not keep yet).
struct RuleFields {
  std::vector<std::string_view> metadata;
  std::vector<std::string_view> annotations;
  std::vector<std::string_view> spec;
  std::vector<std::string_view> status;
};
const RuleFields& FieldsRulesRead();

}  // namespace bg::domain
