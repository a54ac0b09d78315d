#!/usr/bin/env bash
# A real, local Kubernetes control plane for the e2e tests and `make run`: etcd, kube-apiserver and
# kube-controller-manager (garbage collector, namespace and service-account controllers), all on
# 127.0.0.1 with free ports, no kubelet, no containers.
#
# kube-apiserver presents a client certificate to admission webhooks (its admission-control
# kubeconfig, user "*"): pki/webhook-client.crt, issued by pki/webhook-client-ca.crt, a CA of its
# own that signs nothing else. A webhook server started with --client-ca-file
# pki/webhook-client-ca.crt therefore accepts the API server and no other client; servers that do
# not ask for a client certificate never see it.
#
# Usage: controlplane.sh up [--crds FILE]... | down | env | status
#   up      start everything (a fresh etcd every time), wait until /readyz is ok and the controller
#           manager works; the last line on stdout is KUBECONFIG=<admin kubeconfig>.
#           --crds FILE applies CRDs (waiting until Established) before the controller manager
#           starts, so its garbage collector watches them at once; CRDs created later are only
#           picked up at its next discovery sync (every 30 s, fixed in kube-controller-manager).
#   down    stop every process `up` started (TERM, then KILL) and keep the state dir for its logs
#   env     print KUBECONFIG=<path> for a plane that is already running (exit 1 if none)
#   status  print the components and their pids
#
# Environment:
#   BG_STATE_DIR        state dir (pki, kubeconfigs, etcd data, logs, pids); default /tmp/backup-guard-cp
#   BG_BIN_DIR          directory with the tools; default: built/cached by build-tools.sh
#   BG_CP_TIMEOUT       seconds to wait for each component (default 120)
#   BG_ETCD_QUOTA_BYTES etcd's --quota-backend-bytes (default 8 GiB, etcd's largest advised: the
#                       uninstall benchmark at 100,000 Backups writes several 100,000s of revisions)
# Progress and errors go to stderr; only the KUBECONFIG line goes to stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
state=${BG_STATE_DIR:-/tmp/backup-guard-cp}
timeout=${BG_CP_TIMEOUT:-120}
components=(kube-controller-manager kube-apiserver etcd) # stop order
service_cidr=10.0.0.0/24

log() { echo "controlplane: $*" >&2; }

# Processes must reach webhooks and each other on loopback directly, never through a proxy.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

pid_of() { cat "$state/pids/$1" 2>/dev/null || true; }
# A pid is ours while it exists, is not a zombie (an exited child not reaped yet), and still runs
# the component's binary (guards against a recycled pid from a stale pid file).
pid_runs() { # pid component
  local st cmd
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "${st%% *}" != Z ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$2"* ]]
}
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && pid_runs "$p" "$1"; }

show_log() { # component [lines]
  local f=$state/logs/$1.log
  if [ -s "$f" ]; then
    echo "----- last ${2:-40} lines of $f -----" >&2
    tail -n "${2:-40}" "$f" >&2
    echo "----- end of $1 log -----" >&2
  else
    log "($1 wrote no log at $f)"
  fi
}

stop_one() {
  local name=$1 p i
  p=$(pid_of "$name")
  [ -n "$p" ] || return 0
  if pid_runs "$p" "$name"; then
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do # up to 10 s
      pid_runs "$p" "$name" || break
      sleep 0.1
    done
    if pid_runs "$p" "$name"; then
      log "$name (pid $p) ignored TERM, sending KILL"
      kill -KILL "$p" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        pid_runs "$p" "$name" || break
        sleep 0.1
      done
    fi
    log "stopped $name (pid $p)"
  fi
  rm -f "$state/pids/$name"
}

down() {
  local c
  for c in "${components[@]}"; do stop_one "$c"; done
  rm -f "$state/env"
}

die() { # message [component-whose-log-to-show]
  log "ERROR: $1"
  [ -z "${2:-}" ] || show_log "$2"
  exit 1
}

# Free loopback ports below the kernel's ephemeral range. A port from that range (what binding
# port 0 gives) can be taken by a client's outgoing connection while its server is down: the fault
# tests restart kube-apiserver on the same port while clients keep reconnecting to it, and once
# the restarted server failed with "bind: address already in use".
free_ports() { # n
  python3 - "$1" <<'EOF'
import random, socket, sys
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
low = min(low, 32768)
socks = []
for _ in range(int(sys.argv[1])):
    for _ in range(500):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", random.randint(min(20000, low - 1000), low - 1)))
        except OSError:
            s.close()
            continue
        socks.append(s)
        break
    else:
        sys.exit("no free port below the ephemeral range")
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

start() { # name binary args...
  local name=$1 bin=$2
  shift 2
  : >"$state/logs/$name.log"
  # stdin/stdout/stderr detached so that `$(controlplane.sh up)` does not wait for the children.
  "$bin" "$@" </dev/null >>"$state/logs/$name.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$state/pids/$name"
  # Until the forked shell has exec'd the binary, /proc/PID/cmdline is still this script's, and
  # `alive` would read a slow start on a loaded machine as an exit: wait (up to 10 s) for the exec.
  local i
  for ((i = 0; i < 200; i++)); do
    pid_runs "$pid" "$name" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  log "started $name (pid $pid, log $state/logs/$name.log)"
}

wait_for() { # name description command...
  local name=$1 what=$2 deadline=$((SECONDS + timeout))
  shift 2
  until "$@" >/dev/null 2>&1; do
    alive "$name" || die "$name exited while waiting for $what" "$name"
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what" "$name"
    sleep 0.5
  done
}

gen_pki() {
  local d=$state/pki
  mkdir -p "$d"
  (
    cd "$d"
    exec 2>openssl.log
    ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
    ca() { # name CN
      ec "$1.key"
      openssl req -x509 -new -key "$1.key" -out "$1.crt" -days 3650 -subj "/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    }
    leaf() { # name subject ca extensions
      ec "$1.key"
      openssl req -new -key "$1.key" -out "$1.csr" -subj "$2"
      printf '%s\n' "$4" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial -out "$1.crt" \
        -days 3650 -extfile "$1.ext"
      rm -f "$1.csr" "$1.ext"
    }
    ca server-ca backup-guard-e2e-server-ca
    ca client-ca backup-guard-e2e-client-ca
    leaf apiserver /CN=kube-apiserver server-ca \
      "$(printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' \
        'extendedKeyUsage=serverAuth' \
        "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:${service_cidr%.*}.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc")"
    local client='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'
    leaf admin "/O=system:masters/CN=admin" client-ca "$client"
    leaf kube-controller-manager /CN=system:kube-controller-manager client-ca "$client"
    # What kube-apiserver presents to admission webhooks.
    ca webhook-client-ca backup-guard-e2e-webhook-client-ca
    leaf webhook-client /CN=kube-apiserver-webhook-client webhook-client-ca "$client"
    # Service-account token signing key pair.
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
  ) || die "generating certificates with openssl failed: $(tail -n 5 "$d/openssl.log" 2>/dev/null)"
}

write_kubeconfig() { # file user
  local p=$state/pki
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: backup-guard-e2e
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority: $p/server-ca.crt
users:
- name: $2
  user:
    client-certificate: $p/$2.crt
    client-key: $p/$2.key
contexts:
- name: $2@backup-guard-e2e
  context:
    cluster: backup-guard-e2e
    user: $2
    namespace: default
current-context: $2@backup-guard-e2e
EOF
}

# The API server's admission-control configuration: both webhook admission plugins read the
# credentials for webhook calls from one kubeconfig. Users are looked up by the webhook's
# host:port (service webhooks: <svc>.<ns>.svc:<port>), then "*.<domain>" patterns, then "*"; the
# e2e webhooks get free ports, so "*" it is.
write_admission_config() {
  local p=$state/pki
  cat >"$state/webhook-client.kubeconfig" <<EOF
apiVersion: v1
kind: Config
users:
- name: "*"
  user:
    client-certificate: $p/webhook-client.crt
    client-key: $p/webhook-client.key
EOF
  cat >"$state/admission-config.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $state/webhook-client.kubeconfig
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $state/webhook-client.kubeconfig
EOF
}

up() {
  command -v openssl >/dev/null || die "openssl is not installed"
  command -v python3 >/dev/null || die "python3 is not installed (used to pick free ports)"
  local bindir=${BG_BIN_DIR:-}
  if [ -z "$bindir" ]; then
    bindir=$("$here/build-tools.sh" --print-dir kube-apiserver kube-controller-manager kubectl etcd) \
      || die "building the control-plane tools failed (see above)"
  fi
  local c
  for c in etcd kube-apiserver kube-controller-manager kubectl; do
    [ -x "$bindir/$c" ] || die "$bindir/$c is missing; run tests/e2e/build-tools.sh"
  done
  kubectl=$bindir/kubectl

  # A plane that is already up in this state dir is stopped first: every `up` starts from scratch.
  if [ -d "$state/pids" ] && ls "$state/pids" | grep -q .; then
    log "stopping the previous control plane in $state"
    down
  fi
  rm -rf "$state/etcd" "$state/pki" "$state/logs" "$state/pids" "$state"/*.kubeconfig "$state/env" \
    "$state/admission-config.yaml"
  mkdir -p "$state/logs" "$state/pids" "$state/etcd"
  chmod 700 "$state/etcd"

  # From here on, a failure tears down whatever was started.
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "start-up failed; stopping what was started"; down; fi' EXIT
  trap 'exit 130' INT TERM

  local etcd_port etcd_peer_port
  local ports
  ports=$(free_ports 3) || die "could not pick free ports"
  read -r etcd_port etcd_peer_port apiserver_port <<<"$ports"
  gen_pki
  write_kubeconfig "$state/admin.kubeconfig" admin
  write_kubeconfig "$state/kube-controller-manager.kubeconfig" kube-controller-manager
  write_admission_config
  local kc=$state/admin.kubeconfig

  local started=$SECONDS
  start etcd "$bindir/etcd" \
    --name=e2e \
    --data-dir="$state/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="e2e=http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster-state=new \
    --unsafe-no-fsync=true \
    --quota-backend-bytes="${BG_ETCD_QUOTA_BYTES:-8589934592}" \
    --log-level=warn
  wait_for etcd "etcd on 127.0.0.1:$etcd_port" curl -fsS --noproxy '*' "http://127.0.0.1:$etcd_port/health"

  local p=$state/pki
  start kube-apiserver "$bindir/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$apiserver_port" \
    --tls-cert-file="$p/apiserver.crt" \
    --tls-private-key-file="$p/apiserver.key" \
    --cert-dir="$p" \
    --client-ca-file="$p/client-ca.crt" \
    --admission-control-config-file="$state/admission-config.yaml" \
    --authorization-mode=RBAC \
    --service-account-issuer="https://127.0.0.1:$apiserver_port" \
    --service-account-key-file="$p/sa.pub" \
    --service-account-signing-key-file="$p/sa.key" \
    --service-cluster-ip-range="$service_cidr" \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --profiling=false \
    --v=1
  wait_for kube-apiserver "kube-apiserver /readyz on 127.0.0.1:$apiserver_port" \
    "$kubectl" --kubeconfig="$kc" --request-timeout=5s get --raw /readyz

  local f names
  for f in ${crd_files[@]+"${crd_files[@]}"}; do
    "$kubectl" --kubeconfig="$kc" apply -f "$f" >"$state/logs/crds.log" 2>&1 \
      || die "applying CRDs from $f failed" crds
    names=$("$kubectl" --kubeconfig="$kc" get -f "$f" -o name 2>>"$state/logs/crds.log")
    # shellcheck disable=SC2086
    "$kubectl" --kubeconfig="$kc" wait --for=condition=Established --timeout="${timeout}s" $names \
      >>"$state/logs/crds.log" 2>&1 || die "CRDs from $f did not become Established" crds
    log "applied CRDs from $f"
  done

  start kube-controller-manager "$bindir/kube-controller-manager" \
    --kubeconfig="$state/kube-controller-manager.kubeconfig" \
    --controllers=garbage-collector-controller,namespace-controller,serviceaccount-token-controller,serviceaccount-controller \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$p/sa.key" \
    --root-ca-file="$p/server-ca.crt" \
    --leader-elect=false \
    --bind-address=127.0.0.1 \
    --secure-port=0 \
    --profiling=false \
    --v=1
  # The service-account controller creates "default" in every namespace: proof that the
  # controller manager is connected and its controllers run.
  wait_for kube-controller-manager "kube-controller-manager (service account default/default)" \
    "$kubectl" --kubeconfig="$kc" --request-timeout=5s get serviceaccount default -n default

  cat >"$state/env" <<EOF
KUBECONFIG=$kc
APISERVER=https://127.0.0.1:$apiserver_port
ETCD=http://127.0.0.1:$etcd_port
WEBHOOK_CLIENT_CA=$p/webhook-client-ca.crt
EOF
  trap - EXIT INT TERM
  log "control plane is ready in $((SECONDS - started))s (apiserver https://127.0.0.1:$apiserver_port, state $state)"
  echo "KUBECONFIG=$kc"
}

env_cmd() {
  if [ -f "$state/env" ] && alive kube-apiserver && alive etcd; then
    grep '^KUBECONFIG=' "$state/env"
  else
    log "no control plane is running in $state (run: $0 up)"
    exit 1
  fi
}

status() {
  local c rc=0
  for c in etcd kube-apiserver kube-controller-manager; do
    if alive "$c"; then echo "$c running (pid $(pid_of "$c"))"; else echo "$c not running"; rc=1; fi
  done
  return $rc
}

crd_files=()
case ${1:-} in
  up)
    shift
    while (($#)); do
      case $1 in
        --crds) [ -r "${2:-}" ] || die "--crds needs a readable file"; crd_files+=("$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"); shift 2 ;;
        *) die "unknown argument to up: $1" ;;
      esac
    done
    up ;;
  down) down ;;
  env) env_cmd ;;
  status) status ;;
  *) echo "usage: $0 up [--crds FILE]... | down | env | status" >&2; exit 2 ;;
esac
