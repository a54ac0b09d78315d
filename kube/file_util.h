// Small file helpers for the kube layer (kubeconfig files, certificates, token files).
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>

#include "common/status.h"

namespace bg::kube {

// Reads a whole file. A missing file is Status::NotFound, a file larger than `max_bytes` is
// Status::TooLarge, any other failure Status::Unavailable; the message names the path.
Result<std::string> ReadFileToString(const std::string& path, size_t max_bytes);

// Joins a relative `path` to `base_dir`; absolute paths and an empty base_dir leave it unchanged.
std::string ResolvePath(const std::string& base_dir, const std::string& path);

// The directory part of `path` ("." when it has none).
std::string DirName(const std::string& path);

}  // namespace bg::kube
