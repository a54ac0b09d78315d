#!/usr/bin/env bash
# Runs the Helm chart tests (tests/chart) against a real control plane, and always tears it down.
#
#   1. installs promtool (Debian package prometheus) when missing: needs root
#   2. builds (or reuses) helm, kubectl and the control-plane tools      tests/e2e/build-tools.sh
#   3. starts etcd, kube-apiserver, kube-controller-manager with the stand-in CRDs for the
#      Prometheus operator and cert-manager kinds (fixtures/standin-crds.yaml)
#   4. pytest tests/chart: lint and render checks, promtool, server-side dry runs of every value
#      set, then helm install / local server under the chart's ServiceAccount / helm uninstall
#
# Usage: run-chart-tests.sh [PYTEST-ARGS...]
# Environment: BACKUP_GUARD_BIN (default <repo>/build/backup-guard), BG_STATE_DIR (default: a fresh
# /tmp/backup-guard-chart.XXXXXX, removed after a green run and kept for its logs after a red one),
# BACKUP_GUARD_CACHE (tools and venv cache).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
e2e=$root/tests/e2e
log() { echo "run-chart-tests: $*" >&2; }

# Everything talks to 127.0.0.1 (API server, local backup-guard), never through a proxy.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

case ${1:-} in
  -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

# promtool comes with Debian's prometheus package; the server itself is not started.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    log "ERROR: promtool is missing and this is not root; install it: apt-get install prometheus"
    exit 1
  fi
  log "installing promtool (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

export BACKUP_GUARD_BIN=${BACKUP_GUARD_BIN:-$root/build/backup-guard}
if [ ! -x "$BACKUP_GUARD_BIN" ]; then
  log "ERROR: backup-guard binary not found at $BACKUP_GUARD_BIN (run make build, or set BACKUP_GUARD_BIN)"
  exit 1
fi

own_state=0
if [ -z "${BG_STATE_DIR:-}" ]; then
  BG_STATE_DIR=$(mktemp -d /tmp/backup-guard-chart.XXXXXX)
  own_state=1
fi
export BG_STATE_DIR
status=1

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  ((rc == 0)) || status=$rc  # a failure exit wins; a normal end keeps the verdict
  "$e2e/controlplane.sh" down || true
  if ((status == 0 && own_state)); then
    rm -rf "$BG_STATE_DIR"
  else
    log "logs and state kept in $BG_STATE_DIR"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
bindir=$("$e2e/build-tools.sh" --print-dir kube-apiserver kube-controller-manager kubectl etcd helm)
export BG_BIN_DIR=$bindir KUBECTL=$bindir/kubectl HELM=$bindir/helm

venv=$("$root/tools/ensure-venv.sh")

kc_line=$("$e2e/controlplane.sh" up --crds "$here/fixtures/standin-crds.yaml" | tail -n 1)
export BG_KUBECONFIG=${kc_line#KUBECONFIG=}
[ -f "$BG_KUBECONFIG" ] || { log "controlplane.sh up did not print a kubeconfig"; exit 1; }

# helm keeps its cache and config in the state dir, not in the user's home.
export HELM_CACHE_HOME=$BG_STATE_DIR/helm/cache HELM_CONFIG_HOME=$BG_STATE_DIR/helm/config \
  HELM_DATA_HOME=$BG_STATE_DIR/helm/data

rc=0
(cd "$root" && "$venv/bin/python" -m pytest -p no:cacheprovider --basetemp="$BG_STATE_DIR/pytest" \
  tests/chart "$@") || rc=$?
if ((rc == 0)); then
  log "passed in $((SECONDS - start))s"
  status=0
else
  log "FAILED after $((SECONDS - start))s"
  status=1
fi
