#!/usr/bin/env bash
# Runs the fault-injection tests (tests/faults) against a real control plane of their own, and
# always tears down what it started:
#
#   1. builds (or reuses) the control-plane tools                     tests/e2e/build-tools.sh
#   2. the Python virtualenv                                          tools/ensure-venv.sh
#   3. builds the backup-guard binary only when it is missing         ninja backup-guard
#   4. starts etcd, kube-apiserver, kube-controller-manager with the CRDs in a fresh
#      /tmp/backup-guard-faults.XXXXXX                                controlplane.sh up
#   5. pytest tests/faults: API-server faults during processing (apiserver restarted, etcd
#      paused, apiserver unreachable 30 s), two replicas restarted under admission load behind a
#      load balancer, hostile clients (idle/slowloris connections, 10,000 bad bodies)
#
# Usage: run-fault-tests.sh [PYTEST-ARGS...]      e.g. -k hostile
# Environment: BACKUP_GUARD_BIN (default <repo>/build/backup-guard), BACKUP_GUARD_CACHE,
# FAULTS_KEEP_STATE=1 (keep the state dir after a green run too).
# The state dir (every log, figures.json) is removed after a green run and kept after a red one.
# Anything that cannot be built or started is a failure; a skipped test is a failure too.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
e2e=$root/tests/e2e
log() { echo "run-fault-tests: $*" >&2; }

case ${1:-} in
  -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

# Everything talks to 127.0.0.1, never through a proxy.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

start=$SECONDS
status=1
state=
faults_state=

stop_leftovers() {
  local f pid prog
  [ -n "$faults_state" ] || return 0
  for f in "$faults_state"/pids/*.pid; do
    [ -e "$f" ] || continue
    read -r pid prog <"$f" || continue
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$prog"; then
      log "stopping leftover $prog (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      sleep 1
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  ((rc == 0)) || status=$rc
  stop_leftovers
  if [ -n "$state" ]; then
    # A process stopped with SIGSTOP by a test that was interrupted must be able to take TERM.
    for c in etcd kube-apiserver; do
      p=$(cat "$state/pids/$c" 2>/dev/null || true)
      [ -z "$p" ] || kill -CONT "$p" 2>/dev/null || true
    done
    BG_STATE_DIR=$state "$e2e/controlplane.sh" down || true
    if ((status == 0)) && [ "${FAULTS_KEEP_STATE:-0}" != 1 ]; then
      rm -rf "$state"
    else
      log "logs and state kept in $state (servers, load balancer, figures: $faults_state)"
    fi
  fi
  log "finished in $((SECONDS - start))s with status $status"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1-2. Tools (cached) and the virtualenv.
bindir=$("$e2e/build-tools.sh" --print-dir kube-apiserver kube-controller-manager kubectl etcd) \
  || { log "ERROR: building the control-plane tools failed"; exit 1; }
export BG_BIN_DIR=$bindir KUBECTL=$bindir/kubectl
venv=$("$root/tools/ensure-venv.sh") || { log "ERROR: the Python virtualenv could not be made"; exit 1; }

# 3. The server binary: built only when missing (make test builds it first).
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

# 4. A control plane of our own.
state=$(mktemp -d /tmp/backup-guard-faults.XXXXXX)
faults_state=$state/faults
mkdir -p "$faults_state/pids"
export BG_STATE_DIR=$state FAULTS_STATE_DIR=$faults_state FAULTS_REGISTER_SH=$e2e/register.sh
export BG_ENGINE_CRDS=${BG_ENGINE_CRDS:-$("$root/tests/engine/engine-crds.sh" v1.10.0)}
kc_line=$("$e2e/controlplane.sh" up --crds "$BG_ENGINE_CRDS" | tail -n 1) \
  || { log "ERROR: the control plane did not start (see controlplane's messages above)"; exit 1; }
export FAULTS_KUBECONFIG=${kc_line#KUBECONFIG=}
[ -f "$FAULTS_KUBECONFIG" ] || { log "ERROR: controlplane.sh up did not print a kubeconfig"; exit 1; }

# 5. The tests.
log "pytest tests/faults"
rc=0
(cd "$root" && "$venv/bin/python" -m pytest -p no:cacheprovider -v -rfEs --durations=0 \
  --junitxml="$faults_state/junit.xml" tests/faults "$@") || rc=$?
skipped=$("$venv/bin/python" - "$faults_state/junit.xml" 2>/dev/null <<'EOF' || echo error
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
print(sum(int(s.get("skipped", 0)) for s in suites))
EOF
)
if ((rc == 5)); then
  log "ERROR: pytest collected no tests"
  status=1
elif ((rc != 0)); then
  log "FAILED (pytest exit $rc)"
  status=1
elif [ "$skipped" != 0 ]; then
  log "ERROR: $skipped test(s) skipped; nothing may be skipped"
  status=1
else
  log "passed"
  status=0
fi
