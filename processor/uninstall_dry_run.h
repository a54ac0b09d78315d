// `backup-guard uninstall --dry-run=server` (processor/uninstall.h): every write the uninstall
// would make to the objects of a snapshot, sent with dryRun=All, so that every admission webhook
// (the engine's included) answers and nothing is stored.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "kube/api.h"
#include "processor/uninstall.h"
#include "processor/uninstall_snapshot.h"

namespace bg::processor {

// Sends each planned write to the objects of `snap` (each BackupTarget's annotation and emptied
// URL, each delete-custom-resource-only label, each DELETE, each finalizer release) through `dry`,
// whose writes carry dryRun=All, on options.workers threads, in `order`'s kinds. Prints the
// refusals on `out` grouped by webhook and reason (and writes webhook/blocker events to
// options.events); 0 when the API server would admit every write, 1 otherwise. The objects are not
// being deleted (nothing is), so a finalizer release is checked as an update of a live object.
// `ref_of` and `kind_of` name a plural's API resource and Kind as the uninstall discovered them.
int ServerDryRun(kube::KubeApi& dry, const std::vector<std::string>& order, UninstallSnapshot& snap,
                 const UninstallOptions& options,
                 const std::function<kube::ResourceRef(const std::string&)>& ref_of,
                 const std::function<std::string(const std::string&)>& kind_of, std::ostream& out);

}  // namespace bg::processor
