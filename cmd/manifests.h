// What the chart and the e2e manifests must say, generated from the handler registries and the
// kinds table: the rules of both webhook configurations, the server Role's longhorn.io resource
// lists and the kinds the uninstall hook's Role must grant first. `backup-guard manifests` prints
// them; cmd/manifests_test.cc fails when the chart or tests/e2e/manifests differ.
#pragma once

#include <string>
#include <vector>

#include "webhook/registry.h"

namespace bg::cmd {

// The `rules:` list of a webhook configuration, as YAML at indentation 0 (one entry per resource,
// in registration order, with apiVersions v1beta2 and scope Namespaced).
std::string WebhookRulesYaml(const std::vector<webhook::RegisteredRule>& rules);

// The webhook rules of the mutating and validating registries `serve` builds.
std::vector<webhook::RegisteredRule> MutatingRules();
std::vector<webhook::RegisteredRule> ValidatingRules();

// The server Role (charts/backup-guard/templates/rbac.yaml): the watched kinds a cascade deletes
// (get, list, watch, patch, delete), the other watched kinds but Settings (get, list, watch,
// patch), in the kinds table's order.
std::vector<std::string> ServerRoleDeletable();
std::vector<std::string> ServerRolePatchable();

// Everything above as one YAML document with comments.
std::string Manifests();

}  // namespace bg::cmd
