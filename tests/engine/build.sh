#!/usr/bin/env bash
# Builds tests/engine/cmd/engine-objects (the engine test-bed's object writer, see README.md) into
# ${BACKUP_GUARD_CACHE:-~/.cache/backup-guard}/engine/bin/engine-objects and prints that path on stdout.
# The binary is rebuilt only when its inputs change: every *.go file of this module, go.mod, go.sum
# and the Go version (their sha256 is kept beside the binary). Progress and errors go to stderr;
# non-zero exit if the build fails. Needs go (modules from the module cache or the Go module proxy).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${BACKUP_GUARD_CACHE:-$HOME/.cache/backup-guard}
bindir=$cache/engine/bin
out=$bindir/engine-objects

log() { echo "engine build: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null || die "go is not installed (needed to build engine-objects)"
export CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly"

inputs() {
  (cd "$here" && { go version; sha256sum go.mod go.sum $(find . -name '*.go' -type f | LC_ALL=C sort); }) \
    | sha256sum | cut -d' ' -f1
}

mkdir -p "$bindir"
# Serialise concurrent builds.
exec 9>"$bindir/.lock"
if command -v flock >/dev/null; then
  flock 9
fi

want=$(inputs)
if [ -x "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$want" ]; then
  echo "$out"
  exit 0
fi

log "building engine-objects..."
start=$SECONDS
if ! (cd "$here" && go build -trimpath -ldflags '-s -w' -o "$out.tmp.$$" ./cmd/engine-objects); then
  rm -f "$out.tmp.$$"
  die "building engine-objects failed"
fi
mv -f "$out.tmp.$$" "$out"
echo "$want" >"$out.inputs"
log "built engine-objects in $((SECONDS - start))s -> $out"
echo "$out"
