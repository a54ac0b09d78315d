// The one reading of the Setting `deleting-confirmation-flag` (SPEC.md "Resources"), for the
// BackupTarget validator, the processor, `diagnose` and `backup-guard uninstall`.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "common/status.h"
#include "kube/lookup.h"

namespace bg::domain {

// Parses a boolean as the engine does (Go's strconv.ParseBool): "1", "t", "T", "TRUE", "true",
// "True" are true; "0", "f", "F", "FALSE", "false", "False" are false; anything else (including
// surrounding spaces) is not a boolean.
std::optional<bool> ParseGoBool(std::string_view text);

// True when the Setting `deleting-confirmation-flag` (its top-level `value`) parses as true.
bool ConfirmationFlagTrue(const nlohmann::json& setting);

// True when the Setting exists in `ns` of `lookup` and ConfirmationFlagTrue holds; false when it
// does not exist; the lookup's error when it cannot be read.
Result<bool> ConfirmationFlagSet(kube::ResourceLookup& lookup, std::string_view ns);

// ConfirmationFlagSet as admission reads it (domain/admission_reads.h): a Setting that cannot be
// read is not set.
bool AdmissionConfirmationFlagSet(kube::ResourceLookup& lookup, std::string_view ns);

}  // namespace bg::domain
