#!/usr/bin/env bash
# Profiles backup-guard's admission path with callgrind (perf has no hardware counters on this
# machine: `perf stat -e instructions true` reports <not supported>), on a short vegeta run.
#
# Usage: bench/profile.sh BACKUP_GUARD VEGETA CERT_DIR OUT_DIR [keepalive|newconn] [rate] [seconds]
#   rate 0 (the default): two connections sending back to back, so that under valgrind's slowdown no
#   extra connections (and handshakes) are opened in keep-alive mode.
# Writes OUT_DIR/callgrind-<mode>.out and OUT_DIR/callgrind-<mode>.txt (callgrind_annotate, top
# functions by inclusive and by self cost). Runs under valgrind are ~50x slower: keep the rate low.
set -euo pipefail
bg=$1 vegeta=$2 certs=$3 out=$4 mode=${5:-keepalive} rate=${6:-0} seconds=${7:-10}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cg=$out/callgrind-$mode.out
valgrind --tool=callgrind --callgrind-out-file="$cg" --dump-instr=no --collect-jumps=no \
  "$bg" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
  --tls-cert-file "$certs/tls.crt" --tls-key-file "$certs/tls.key" --log-level warn \
  >"$out/callgrind-$mode.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sk --noproxy '*' -o /dev/null "https://127.0.0.1:$port/healthz" && break
  sleep 0.2
done
targets=$(mktemp)
for ep in mutation:systembackup-create validation:backup-delete; do
  printf 'POST https://127.0.0.1:%s/v1/webhook/%s\nContent-Type: application/json\n@%s/bodies/%s.json\n\n' \
    "$port" "${ep%%:*}" "$here" "${ep#*:}" >>"$targets"
done
keep=true
rate_args="-rate $rate/s"
[ "$rate" = 0 ] && rate_args="-rate 0 -max-workers 2 -workers 2"
[ "$mode" = newconn ] && keep=false
"$vegeta" attack -targets "$targets" -root-certs "$certs/ca.crt" -http2=false -keepalive=$keep \
  $rate_args -duration "${seconds}s" -timeout 30s | "$vegeta" report >"$out/callgrind-$mode.vegeta.txt"
kill -TERM $pid
wait $pid || true
trap - EXIT
rm -f "$targets"
{
  echo "## inclusive"
  callgrind_annotate --inclusive=yes "$cg" 2>/dev/null | head -60 || true
  echo
  echo "## self"
  callgrind_annotate --inclusive=no "$cg" 2>/dev/null | head -60 || true
} >"$out/callgrind-$mode.txt"
echo "$out/callgrind-$mode.txt"
