#!/usr/bin/env bash
# The processor at scale (issue 14, suspect 3): builds bench/processor_scale/processor_scale.cc
# against the tree it is in and prints a Markdown table; see the source for what each column is.
#   bench/processor_scale/run.sh [N ...]      default: 50000
# Builds in build-bench/ (Release), as run-bench.sh does. Not part of `make test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BENCH_BUILD_DIR:-$root/build-bench}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target processor_scale -j "${JOBS:-2}" >/dev/null
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(50000)
echo "| Backups | BackupVolumes | one Backup as listed | cache memory | list and sync | relist after a 410 | event to release (median / max of 20) |"
echo "|---|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do "$build/processor_scale" "$n"; done
