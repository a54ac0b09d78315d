#!/usr/bin/env bash
# Runs clang-tidy over the project's sources with the build's compile database, in parallel.
set -uo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Only files the build compiles: clang-tidy needs their flags from compile_commands.json. (The
# fuzz targets are built by clang in build-fuzz/ and checked there by fuzz/run-fuzz.sh's build.)
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cc' | grep -v '_test\.cc$' |
  while read -r f; do grep -q "\"file\": \"$root/$f\"" "$build/compile_commands.json" && echo "$f"; done)
findings=$(printf '%s\n' "${files[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy -p "$build" --quiet 2>/dev/null \
  | grep -E "(warning|error):" -A3)
if [ -n "$findings" ]; then
  printf '%s\n' "$findings"
  echo "clang-tidy: findings above" >&2
  exit 1
fi
echo "clang-tidy: clean (${#files[@]} files)"
