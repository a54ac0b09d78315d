#!/usr/bin/env bash
# Runs the end-to-end tests against a real control plane, and always tears it down.
#
#   1. builds (or reuses) the control-plane tools            build-tools.sh
#   2. starts etcd, kube-apiserver, kube-controller-manager   controlplane.sh up
#   3. installs the CRDs and the namespace                    register.sh --crds-only
#   4. phase 1: pytest -m no_webhook (control-plane smoke; no backup-guard needed)
#   5. generates the serving certificate with `$BACKUP_GUARD_BIN certs generate`, registers the
#      webhooks (failurePolicy Fail) for https://127.0.0.1:<free port>
#   6. phase 2: pytest -m "not no_webhook and not engine_upgrade"; the `backup_guard` fixture starts
#      the server on that port
#
# Usage: run-e2e.sh [--smoke] [--openssl-certs] [PYTEST-ARGS...]
#   --smoke          stop after phase 1 (needs no backup-guard binary)
#   --openssl-certs  make the serving certificate with openssl instead of the binary (debugging)
# Environment: BACKUP_GUARD_BIN (default <repo>/build/backup-guard), BG_STATE_DIR (default: a fresh
# /tmp/backup-guard-e2e.XXXXXX, removed after a green run and kept for its logs after a red one),
# BACKUP_GUARD_CACHE (tools and venv cache), BG_ENGINE_VERSION (the engine's CRDs the plane starts
# with, default v1.10.0; tests/engine/versions.txt).
#   BG_PYTEST_MARK=EXPR  narrows both phases to the tests that also match the marker expression EXPR
#       (phase 1: -m "no_webhook and (EXPR)", phase 2: -m "not no_webhook and (EXPR)"). A phase that
#       collects nothing is then not an error, but the run fails when neither phase collected a
#       test. Without it, phase 2 leaves out the tests marked engine_upgrade (they need a plane
#       started on the oldest pinned engine's CRDs); with it, EXPR alone decides
#       (tests/e2e/run-engine-versions.sh selects them explicitly on v1.7.2).
# A control plane that cannot be built or started, or a missing binary, is a failure (exit 1).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
log() { echo "run-e2e: $*" >&2; }

smoke=0 openssl_certs=0 pytest_args=()
while (($#)); do
  case $1 in
    --smoke) smoke=1 ;;
    --openssl-certs) openssl_certs=1 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) pytest_args+=("$1") ;;
  esac
  shift
done

export BACKUP_GUARD_BIN=${BACKUP_GUARD_BIN:-$root/build/backup-guard}
own_state=0
if [ -z "${BG_STATE_DIR:-}" ]; then
  BG_STATE_DIR=$(mktemp -d /tmp/backup-guard-e2e.XXXXXX)
  own_state=1
fi
export BG_STATE_DIR
status=1

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  ((rc == 0)) || status=$rc  # a failure exit wins; a normal end keeps the verdict
  "$here/controlplane.sh" down || true
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
bindir=$("$here/build-tools.sh" --print-dir kube-apiserver kube-controller-manager kubectl etcd)
export BG_BIN_DIR=$bindir KUBECTL=$bindir/kubectl

venv=$("$root/tools/ensure-venv.sh")
py=$venv/bin/python

# The engine's own CRDs, at BG_ENGINE_VERSION (default v1.10.0; tests/engine/versions.txt).
export BG_ENGINE_VERSION=${BG_ENGINE_VERSION:-v1.10.0}
export BG_ENGINE_CRDS=${BG_ENGINE_CRDS:-$("$root/tests/engine/engine-crds.sh" "$BG_ENGINE_VERSION")}
kc_line=$("$here/controlplane.sh" up --crds "$BG_ENGINE_CRDS" | tail -n 1)
export BG_KUBECONFIG=${kc_line#KUBECONFIG=}
[ -f "$BG_KUBECONFIG" ] || { log "controlplane.sh up did not print a kubeconfig"; exit 1; }
export BG_LOG_DIR=$BG_STATE_DIR/logs

"$here/register.sh" --kubeconfig "$BG_KUBECONFIG" --crds-only

pytest() { # phase-name marker-expression
  log "phase $1: pytest -m '$2'"
  (cd "$root" && "$py" -m pytest -p no:cacheprovider -m "$2" tests/e2e ${pytest_args[@]+"${pytest_args[@]}"})
}

mark=${BG_PYTEST_MARK:-}
if [ -n "$mark" ]; then
  phase1_expr="no_webhook and ($mark)"
  phase2_expr="not no_webhook and ($mark)"
else
  phase1_expr="no_webhook"
  phase2_expr="not no_webhook and not engine_upgrade"
fi
# The caller narrowed the selection (-k, a path, a marker expression, ...): a phase may then collect
# nothing. pytest's exit status 5 means "no tests collected".
narrowed=0
if ((${#pytest_args[@]})) || [ -n "$mark" ]; then narrowed=1; fi
collected=0  # phases that ran at least one test

failed=0
rc=0
pytest 1 "$phase1_expr" || rc=$?
if ((rc == 5)); then
  log "phase 1 collected no tests"
  ((narrowed)) || failed=1
else
  collected=$((collected + 1))
  ((rc == 0)) || failed=1
fi

if ((!smoke)); then
  certs=$BG_STATE_DIR/certs
  mkdir -p "$certs"
  if ((openssl_certs)); then
    log "making the serving certificate with openssl (--openssl-certs)"
    (
      cd "$certs"
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
        -days 2 -subj /CN=backup-guard-e2e-ca 2>/dev/null
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls.key -out tls.csr \
        -subj /CN=localhost 2>/dev/null
      openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days 2 \
        -extfile <(echo "subjectAltName=DNS:localhost,IP:127.0.0.1") 2>/dev/null
    )
  else
    if [ ! -x "$BACKUP_GUARD_BIN" ]; then
      log "ERROR: backup-guard binary not found at $BACKUP_GUARD_BIN (build it, or set BACKUP_GUARD_BIN)"
      exit 1
    fi
    "$BACKUP_GUARD_BIN" certs generate --out "$certs" --dns localhost --ip 127.0.0.1 >&2
  fi
  export BG_CERT_DIR=$certs
  read -r BG_WEBHOOK_PORT BG_METRICS_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
  export BG_WEBHOOK_PORT BG_METRICS_PORT
  "$here/register.sh" --kubeconfig "$BG_KUBECONFIG" --url "https://127.0.0.1:$BG_WEBHOOK_PORT" \
    --ca-file "$certs/ca.crt" --failure-policy Fail --timeout-seconds 10
  rc=0
  pytest 2 "$phase2_expr" || rc=$?
  if ((rc == 5)); then
    log "phase 2 collected no tests"
    ((narrowed)) || failed=1
  else
    collected=$((collected + 1))
    ((rc == 0)) || failed=1
  fi
fi

if [ -n "$mark" ] && ((collected == 0)); then
  log "ERROR: no test matches BG_PYTEST_MARK='$mark' ${pytest_args[*]-}"
  failed=1
fi

if ((failed)); then
  log "FAILED after $((SECONDS - start))s"
  status=1
else
  log "passed in $((SECONDS - start))s"
  status=0
fi
