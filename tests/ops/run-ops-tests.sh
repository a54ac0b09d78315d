#!/usr/bin/env bash
# Runs the operations tests (tests/ops) against a real control plane, and always tears down what it
# started:
#
#   1. installs Prometheus and promtool (Debian package prometheus) when missing: needs root; the
#      package's system service is not started (the tests run their own Prometheus)
#   2. builds (or reuses) the control-plane tools                     tests/e2e/build-tools.sh
#   3. builds the backup-guard binary only when it is missing         ninja backup-guard
#   4. starts etcd, kube-apiserver, kube-controller-manager with the CRDs   controlplane.sh up
#   5. pytest tests/ops: self-managed rotation under load, file-mode reload under load, Prometheus,
#      every dashboard and alert query on a real Prometheus
#
# Usage: run-ops-tests.sh [PYTEST-ARGS...]
# Environment: BACKUP_GUARD_BIN (default <repo>/build/backup-guard), BG_STATE_DIR (default: a fresh
# /tmp/backup-guard-ops.XXXXXX, removed after a green run and kept for its logs after a red one),
# BACKUP_GUARD_CACHE (tools and venv cache).
# Anything that cannot be installed, built or started is a failure (exit 1); nothing is skipped.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
e2e=$root/tests/e2e
log() { echo "run-ops-tests: $*" >&2; }

case ${1:-} in
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

# Everything talks to 127.0.0.1 (API server, backup-guard, Prometheus), never through a proxy.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

start=$SECONDS

# 1. Prometheus and promtool from Debian.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    log "ERROR: prometheus/promtool are missing and this is not root; install them: apt-get install prometheus"
    exit 1
  fi
  log "installing Prometheus (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the package's init script from starting the system service during the install.
  policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
  fi
  rc=0
  { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >/dev/null; } || rc=$?
  ((own_policy)) && rm -f "$policy"
  ((rc == 0)) || { log "ERROR: apt-get install prometheus failed ($rc)"; exit 1; }
  command -v prometheus >/dev/null && command -v promtool >/dev/null \
    || { log "ERROR: the prometheus package did not provide prometheus and promtool"; exit 1; }
fi

# 2. Control-plane tools (cached) and the virtualenv.
bindir=$("$e2e/build-tools.sh" --print-dir kube-apiserver kube-controller-manager kubectl etcd) \
  || { log "ERROR: building the control-plane tools failed"; exit 1; }
export BG_BIN_DIR=$bindir KUBECTL=$bindir/kubectl
venv=$("$root/tools/ensure-venv.sh") || { log "ERROR: the Python virtualenv could not be made"; exit 1; }

# 3. The server binary: only built when missing (make test builds it first).
export BACKUP_GUARD_BIN=${BACKUP_GUARD_BIN:-$root/build/backup-guard}
if [ ! -x "$BACKUP_GUARD_BIN" ]; then
  if [ "$BACKUP_GUARD_BIN" != "$root/build/backup-guard" ]; then
    log "ERROR: BACKUP_GUARD_BIN=$BACKUP_GUARD_BIN is not an executable"
    exit 1
  fi
  log "building build/backup-guard"
  [ -f "$root/build/build.ninja" ] || cmake -S "$root" -B "$root/build" -G Ninja >/dev/null
  ninja -C "$root/build" -j 2 backup-guard >&2 || { log "ERROR: building backup-guard failed"; exit 1; }
fi

# 4. State and clean-up.
own_state=0
if [ -z "${BG_STATE_DIR:-}" ]; then
  BG_STATE_DIR=$(mktemp -d /tmp/backup-guard-ops.XXXXXX)
  own_state=1
fi
export BG_STATE_DIR OPS_STATE_DIR=$BG_STATE_DIR/ops OPS_REGISTER_SH=$e2e/register.sh
mkdir -p "$OPS_STATE_DIR/pids"
status=1

# Processes the tests started (servers, Prometheus) record their pid; the tests stop them, and this
# stops any the tests could not (pytest killed): by pid, only while it still runs that program.
stop_leftovers() {
  local f pid prog
  for f in "$OPS_STATE_DIR"/pids/*.pid; do
    [ -e "$f" ] || continue
    read -r pid prog <"$f" || continue
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$prog"; then
      log "stopping leftover $prog (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      sleep 1
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # An early exit (error, signal) keeps its code; reaching the end keeps the tests' verdict.
  ((rc == 0)) || status=$rc
  stop_leftovers
  "$e2e/controlplane.sh" down || true
  if ((status == 0 && own_state)); then
    rm -rf "$BG_STATE_DIR"
  else
    log "logs and state kept in $BG_STATE_DIR (servers and Prometheus: $OPS_STATE_DIR)"
  fi
  log "finished in $((SECONDS - start))s with status $status"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 5. Control plane, then the tests.
export BG_ENGINE_CRDS=${BG_ENGINE_CRDS:-$("$root/tests/engine/engine-crds.sh" v1.10.0)}
kc_line=$("$e2e/controlplane.sh" up --crds "$BG_ENGINE_CRDS" | tail -n 1) \
  || { log "ERROR: the control plane did not start (see controlplane's messages above)"; exit 1; }
export OPS_KUBECONFIG=${kc_line#KUBECONFIG=}
[ -f "$OPS_KUBECONFIG" ] || { log "ERROR: controlplane.sh up did not print a kubeconfig"; exit 1; }

log "pytest tests/ops"
rc=0
(cd "$root" && "$venv/bin/python" -m pytest -p no:cacheprovider -v -rfE --durations=5 tests/ops "$@") || rc=$?
if ((rc == 5)); then
  log "ERROR: pytest collected no tests"
  status=1
elif ((rc != 0)); then
  log "FAILED (pytest exit $rc)"
  status=1
else
  log "passed"
  status=0
fi
