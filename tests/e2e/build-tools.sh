#!/usr/bin/env bash
# Builds the control-plane tools the e2e tests and `make run` need, from pinned Go modules:
#   kube-apiserver, kube-controller-manager, kubectl  (tests/e2e/tools/kube: k8s.io/kubernetes)
#   etcd                                              (tests/e2e/tools/etcd: go.etcd.io/etcd/server/v3)
#   helm                                              (tests/e2e/tools/helm: helm.sh/helm/v3)
#
# Each binary is built once into $BACKUP_GUARD_CACHE/bin/<name>-<version> (default cache:
# ~/.cache/backup-guard) and reused while the pinned version is unchanged; $BACKUP_GUARD_CACHE/bin/<name>
# is a symlink to the current one. The Go module and build caches stay in their default places.
#
# Usage: build-tools.sh [--print-dir | --print-path NAME] [NAME...]
#   no NAME       build all five tools
#   --print-dir   print the bin directory on stdout (after building)
#   --print-path  print the path of one tool on stdout (after building it)
# Progress goes to stderr. Exits non-zero if any build fails.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tools=$here/tools
cache=${BACKUP_GUARD_CACHE:-$HOME/.cache/backup-guard}
bindir=$cache/bin
all=(kube-apiserver kube-controller-manager kubectl etcd helm)

log() { echo "build-tools: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

print_dir=0
print_path=
names=()
while (($#)); do
  case $1 in
    --print-dir) print_dir=1 ;;
    --print-path) print_path=${2:?--print-path needs a tool name}; names+=("$2"); shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) names+=("$1") ;;
  esac
  shift
done
((${#names[@]})) || names=("${all[@]}")

command -v go >/dev/null || die "go is not installed (needed to build the control-plane tools)"

# The pinned version of a module as written in a wrapper go.mod (single source of truth).
modver() { # file module
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1"
}
kube_version=$(modver "$tools/kube/go.mod" k8s.io/kubernetes)
etcd_version=$(modver "$tools/etcd/go.mod" go.etcd.io/etcd/server/v3)
helm_version=$(modver "$tools/helm/go.mod" helm.sh/helm/v3)
[ -n "$kube_version" ] && [ -n "$etcd_version" ] && [ -n "$helm_version" ] \
  || die "could not read pinned versions from $tools/*/go.mod"

version_of() {
  case $1 in
    kube-apiserver|kube-controller-manager|kubectl) echo "$kube_version" ;;
    etcd) echo "$etcd_version" ;;
    helm) echo "$helm_version" ;;
    *) die "unknown tool '$1' (known: ${all[*]})" ;;
  esac
}

export CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

build() { # name version
  local name=$1 version=$2 dir pkg ldflags out=$bindir/$1-$2
  local minor=${kube_version#v1.}; minor=${minor%%.*}
  case $name in
    kube-*|kubectl)
      dir=$tools/kube pkg=k8s.io/kubernetes/cmd/$name
      ldflags="-s -w"
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
      done ;;
    etcd)
      dir=$tools/etcd pkg=. ldflags="-s -w" ;;
    helm)
      dir=$tools/helm pkg=helm.sh/helm/v3/cmd/helm
      ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean" ;;
  esac
  log "building $name $version (first build takes minutes)..."
  local start=$SECONDS
  if ! (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp.$$" "$pkg"); then
    rm -f "$out.tmp.$$"
    die "building $name $version failed"
  fi
  mv -f "$out.tmp.$$" "$out"
  log "built $name $version in $((SECONDS - start))s -> $out"
}

mkdir -p "$bindir"
# Serialise concurrent invocations (e.g. run-e2e.sh and run-local.sh started together).
exec 9>"$bindir/.lock"
if command -v flock >/dev/null; then
  flock 9
fi

for name in "${names[@]}"; do
  version=$(version_of "$name")
  if [ -x "$bindir/$name-$version" ] && [ -s "$bindir/$name-$version" ]; then
    log "$name $version is cached ($bindir/$name-$version)"
  else
    build "$name" "$version"
  fi
  ln -sfn "$name-$version" "$bindir/$name"
done

if [ -n "$print_path" ]; then
  echo "$bindir/$print_path"
elif ((print_dir)); then
  echo "$bindir"
fi
