#!/usr/bin/env bash
# `make run`: a local control plane with backup-guard serving its webhooks, in the foreground.
# Builds the tools, starts the control plane, generates the serving certificate, installs the CRDs and
# registers the webhooks, then runs `backup-guard serve` until Ctrl-C / SIGTERM, which stops
# everything it started.
#
# Usage: run-local.sh [--port N] [--metrics-port N] [--failure-policy Fail|Ignore] [-- SERVE-ARGS...]
# Environment: BACKUP_GUARD_BIN (default <repo>/build/backup-guard), BG_STATE_DIR (default
# /tmp/backup-guard-cp, so `tests/e2e/controlplane.sh env` finds the plane from another shell).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
log() { echo "run-local: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

port= metrics_port= failure_policy=Fail serve_args=()
while (($#)); do
  case $1 in
    --port) port=${2:?}; shift ;;
    --metrics-port) metrics_port=${2:?}; shift ;;
    --failure-policy) failure_policy=${2:?}; shift ;;
    --) shift; serve_args=("$@"); break ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

bin=${BACKUP_GUARD_BIN:-$root/build/backup-guard}
[ -x "$bin" ] || die "backup-guard binary not found at $bin (run: make build, or set BACKUP_GUARD_BIN)"
export BG_STATE_DIR=${BG_STATE_DIR:-/tmp/backup-guard-cp}

server_pid=
# true while the pid exists and is not a zombie (exited, not reaped yet)
running() { local st; st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) && [ "${st%% *}" != Z ]; }
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$server_pid" ] && running "$server_pid"; then
    log "stopping backup-guard (pid $server_pid)"
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do running "$server_pid" || break; sleep 0.1; done
    if running "$server_pid"; then
      log "backup-guard did not exit 10 s after TERM; sending KILL"
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
  fi
  log "stopping the control plane"
  "$here/controlplane.sh" down || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bindir=$("$here/build-tools.sh" --print-dir kube-apiserver kube-controller-manager kubectl etcd)
export BG_BIN_DIR=$bindir KUBECTL=$bindir/kubectl
# The engine's own CRDs, at BG_ENGINE_VERSION (default v1.10.0; tests/engine/versions.txt).
export BG_ENGINE_VERSION=${BG_ENGINE_VERSION:-v1.10.0}
export BG_ENGINE_CRDS=${BG_ENGINE_CRDS:-$("$root/tests/engine/engine-crds.sh" "$BG_ENGINE_VERSION")}
kc_line=$("$here/controlplane.sh" up --crds "$BG_ENGINE_CRDS" | tail -n 1)
kubeconfig=${kc_line#KUBECONFIG=}
[ -f "$kubeconfig" ] || die "controlplane.sh up did not print a kubeconfig"

if [ -z "$port" ] || [ -z "$metrics_port" ]; then
  read -r p1 p2 < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
  port=${port:-$p1} metrics_port=${metrics_port:-$p2}
fi

certs=$BG_STATE_DIR/certs
mkdir -p "$certs"
"$bin" certs generate --out "$certs" --dns localhost --ip 127.0.0.1 >&2
"$here/register.sh" --kubeconfig "$kubeconfig" --url "https://127.0.0.1:$port" \
  --ca-file "$certs/ca.crt" --failure-policy "$failure_policy"

cat >&2 <<EOF

run-local: backup-guard is starting on https://127.0.0.1:$port (metrics http://127.0.0.1:$metrics_port)
Try, in another shell:
  export KUBECONFIG=$kubeconfig
  alias kubectl=$bindir/kubectl
  kubectl -n longhorn-system apply -f - <<'YAML'
  apiVersion: longhorn.io/v1beta2
  kind: BackupTarget
  metadata: {name: default}
  spec: {backupTargetURL: "s3://bucket@us-east-1/"}
  YAML
  kubectl -n longhorn-system apply -f - <<'YAML'
  apiVersion: longhorn.io/v1beta2
  kind: SystemBackup
  metadata: {name: sb-1}
  spec: {}
  YAML
  kubectl -n longhorn-system get systembackup sb-1 -o yaml   # finalizer, policy and owner reference
  kubectl -n longhorn-system get backuptargets,systembackups,backups
  curl -s --cacert $certs/ca.crt https://127.0.0.1:$port/readyz
Press Ctrl-C to stop backup-guard and the control plane.

EOF
echo "KUBECONFIG=$kubeconfig"

"$bin" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" \
  --tls-cert-file "$certs/tls.crt" --tls-key-file "$certs/tls.key" \
  --kubeconfig "$kubeconfig" --namespace longhorn-system ${serve_args[@]+"${serve_args[@]}"} &
server_pid=$!
rc=0
wait "$server_pid" || rc=$?
server_pid=
log "backup-guard exited with status $rc"
exit "$rc"
