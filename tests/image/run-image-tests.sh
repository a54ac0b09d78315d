#!/usr/bin/env bash
# Packs a backup-guard binary into the OCI image (tools/image/build_image.py) and tests the image:
# crane reads the layout and the tarball back, the config is checked, and the binary runs from the
# image's root filesystem under chroot as the image's user. Needs root (chroot) and Go (crane).
#
# Usage: run-image-tests.sh --binary PATH --out DIR [PYTEST_ARGS...]
#   --binary  the executable to ship (stripped into DIR/input first)
#   --out     DIR/image receives layout/ and backup-guard-<version>.tar; DIR/image/digest the digest
# The image's inputs come from git: SOURCE_DATE_EPOCH (default: the commit time), the revision
# (the commit, "-dirty" with local changes), the version (CMakeLists.txt's project VERSION), and
# IMAGE_SOURCE (default: the origin remote's URL). The digest is printed last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
log() { echo "image: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

binary= out=
while (($#)); do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift ;;
    --out) out=${2:?--out needs a folder}; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
  shift
done
[ -n "$binary" ] && [ -n "$out" ] || die "--binary and --out are required (see --help)"
[ -x "$binary" ] || die "$binary is not an executable (build it first)"
[ "$(id -u)" = 0 ] || die "the image tests run the binary under chroot, which needs root"

cd "$root"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
revision=$(git describe --always --dirty --abbrev=40)
version=$(sed -n 's/^project(backup_guard VERSION \([^ )]*\).*/\1/p' CMakeLists.txt)
[ -n "$version" ] || die "no project VERSION in CMakeLists.txt"
source_url=${IMAGE_SOURCE:-$(git config --get remote.origin.url || true)}
case $source_url in
  git@*:*) source_url=https://${source_url#git@}; source_url=${source_url/://} ;;
  https://*|http://*) ;;
  *) log "no origin remote URL; org.opencontainers.image.source is 'unknown' (set IMAGE_SOURCE)"
     source_url=unknown ;;
esac
source_url=${source_url%.git}

mkdir -p "$out/input"
strip -o "$out/input/backup-guard" "$binary"
rm -rf "$out/image"
mkdir -p "$out/image"
start=$SECONDS
digest=$(python3 tools/image/build_image.py oci --binary "$out/input/backup-guard" --out "$out/image" \
  --version "$version" --revision "$revision" --source "$source_url" --epoch "$SOURCE_DATE_EPOCH")
echo "$digest" >"$out/image/digest"
log "built in $((SECONDS - start))s: $out/image/layout and $out/image/backup-guard-$version.tar"

crane=$(tools/image/ensure-crane.sh)
venv=$(tools/ensure-venv.sh)
BG_IMAGE_DIR=$out/image BG_IMAGE_BINARY=$out/input/backup-guard BG_IMAGE_VERSION=$version \
  BG_IMAGE_REVISION=$revision BG_IMAGE_SOURCE=$source_url BG_IMAGE_EPOCH=$SOURCE_DATE_EPOCH \
  BG_CRANE=$crane "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here" "$@"
log "digest $digest"
echo "$digest"
