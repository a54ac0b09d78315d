#!/usr/bin/env bash
# Builds crane (github.com/google/go-containerregistry/cmd/crane), pinned in tools/image/crane/go.mod,
# into $BACKUP_GUARD_CACHE/bin/crane-<version> (default cache: ~/.cache/backup-guard) once, and prints
# its path. The image tests read the layout and tarball back with it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${BACKUP_GUARD_CACHE:-$HOME/.cache/backup-guard}
bindir=$cache/bin
module=github.com/google/go-containerregistry
version=$(awk -v m="$module" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' \
  "$here/crane/go.mod")
[ -n "$version" ] || { echo "ensure-crane: no $module version in $here/crane/go.mod" >&2; exit 1; }
out=$bindir/crane-$version
if [ ! -x "$out" ]; then
  command -v go >/dev/null || { echo "ensure-crane: go is not installed (needed to build crane)" >&2; exit 1; }
  mkdir -p "$bindir"
  echo "ensure-crane: building crane $version" >&2
  (cd "$here/crane" && CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
    go build -trimpath -ldflags "-s -w" -o "$out.tmp.$$" "$module/cmd/crane") \
    || { rm -f "$out.tmp.$$"; echo "ensure-crane: building crane $version failed" >&2; exit 1; }
  mv -f "$out.tmp.$$" "$out"
fi
ln -sfn "crane-$version" "$bindir/crane"
echo "$out"
