#!/usr/bin/env bash
# Benchmarks (issue 6): admission latency/throughput against a controller-runtime peer, and
# uninstall at scale against the real control plane. Prints tables and writes bench/RESULTS.md.
# Never fails on time: only a build or set-up failure is an error.
#
# Usage: bench/run-bench.sh [--only admission|apiserver|uninstall] [--quick] [--scale]
#   --quick   short rows (5 s) and sizes 1000,3000 only: a smoke run, not for the README figures
#   --scale   the uninstall at 50,000 Backups (58,500 objects, the same mix), uninstall against the
#             floor in one run, floor concurrency 32 (no tuning); about 30 minutes on 2 cores
#
# Environment:
#   BENCH_DURATION      seconds per admission row (default 15)
#   BENCH_SAT_WORKERS   saturation rows, vegeta workers (= connections) each (default 16,128)
#   BENCH_API_RATES     apiserver rows, writes per second in all, 0 = saturation (default 100,0)
#   BENCH_API_CLIENTS   apiserver: concurrent writers (default 8)
#   BENCH_SIZES         uninstall sizes, in Backups (default 1000,3000,10000)
#   BENCH_FLOOR_CONC    floor concurrency candidates, tuned on the middle size (default 8,32,128)
#   BENCH_MAX_LOAD      wait for the 1-minute load average to drop below this first (default 1.5)
#   BENCH_WAIT          how long to wait for that, seconds (default 600); then run anyway and say so
#   BENCH_BUILD_DIR     backup-guard Release build dir (default build-bench)
#   BACKUP_GUARD_CACHE  cache for the Go tools (default ~/.cache/backup-guard)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${BACKUP_GUARD_CACHE:-$HOME/.cache/backup-guard}
bindir=$cache/bench-bin
out=$here/out
build=${BENCH_BUILD_DIR:-$root/build-bench}
vegeta_version=v12.13.0
only=
quick=0
scale=0
while (($#)); do
  case $1 in
    --only) only=${2:?--only needs admission, apiserver or uninstall}; shift ;;
    --quick) quick=1 ;;
    --scale) scale=1 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-bench: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "run-bench: $*" >&2; }

# --- what the benchmarks need ------------------------------------------------------------------
need_pkgs=()
command -v taskset >/dev/null || need_pkgs+=(util-linux)
[ -x /usr/bin/time ] || need_pkgs+=(time)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v ninja >/dev/null || need_pkgs+=(ninja-build)
command -v valgrind >/dev/null || need_pkgs+=(valgrind)
[ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light) # the admission floor: a fixed answer over TLS
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
[ -x "$root/tools/ensure-deps.sh" ] && "$root/tools/ensure-deps.sh" >/dev/null
command -v go >/dev/null || { log "go is not installed"; exit 1; }
export GOFLAGS="${GOFLAGS:-} -buildvcs=false" GOTOOLCHAIN=${GOTOOLCHAIN:-local}

# --- builds --------------------------------------------------------------------------------------
# Release build in its own directory (the default build/ is the developers'). -Wno-restrict: GCC 12
# at -O3 reports a false -Wrestrict inside std::string (operator+) that -Werror turns into an error.
log "building backup-guard (Release) in $build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS=-Wno-restrict \
  -DBG_VENV="$cache/venv" >/dev/null
ninja -C "$build" -j "${JOBS:-2}" backup-guard >/dev/null
bg=$build/backup-guard

mkdir -p "$bindir" "$out"
log "building the peer and the scale client"
(cd "$here/peer" && CGO_ENABLED=0 go build -trimpath -o "$bindir/bench-peer" .)
(cd "$here/scale" && CGO_ENABLED=0 go build -trimpath -o "$bindir/bench-scale" .)
if [ ! -x "$bindir/vegeta-$vegeta_version" ]; then
  log "building vegeta $vegeta_version from the Go module proxy"
  GOBIN=$bindir CGO_ENABLED=0 go install "github.com/tsenart/vegeta/v12@$vegeta_version"
  mv "$bindir/vegeta" "$bindir/vegeta-$vegeta_version"
fi

# --- a quiet machine first -----------------------------------------------------------------------
max_load=${BENCH_MAX_LOAD:-1.5}
wait_s=${BENCH_WAIT:-600}
deadline=$((SECONDS + wait_s))
while :; do
  load=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v l="$load" -v m="$max_load" 'BEGIN { exit !(l < m) }'; then
    log "load average $load < $max_load: starting"
    break
  fi
  if ((SECONDS >= deadline)); then
    log "load average still $load after ${wait_s}s: running anyway (noted in RESULTS.md)"
    break
  fi
  log "load average $load >= $max_load: waiting (up to $((deadline - SECONDS))s more)"
  sleep 30
done

duration=${BENCH_DURATION:-15}
sizes=${BENCH_SIZES:-1000,3000,10000}
if ((quick)); then duration=5; sizes=${BENCH_SIZES:-1000,3000}; fi
floor_conc=${BENCH_FLOOR_CONC:-8,32,128}
if ((scale)); then sizes=${BENCH_SIZES:-50000}; floor_conc=${BENCH_FLOOR_CONC:-32}; fi

if [ -z "$only" ] || [ "$only" = admission ]; then
  log "admission benchmark (${duration}s per row)"
  python3 "$here/admission.py" --backup-guard "$bg" --peer "$bindir/bench-peer" \
    --vegeta "$bindir/vegeta-$vegeta_version" --out "$out" --duration "$duration" \
    --sat-workers "${BENCH_SAT_WORKERS:-16,128}" --floor-nginx /usr/sbin/nginx
fi
if [ -z "$only" ] || [ "$only" = apiserver ]; then
  log "the latency the API server sees (${duration}s per row)"
  python3 "$here/apiserver.py" --backup-guard "$bg" --peer "$bindir/bench-peer" \
    --scale "$bindir/bench-scale" --out "$out" --duration "$duration" \
    --rates "${BENCH_API_RATES:-100,0}" --clients "${BENCH_API_CLIENTS:-8}"
fi
if [ -z "$only" ] || [ "$only" = uninstall ]; then
  log "uninstall at scale (sizes $sizes)"
  python3 "$here/uninstall.py" --backup-guard "$bg" --scale "$bindir/bench-scale" --out "$out" \
    --sizes "$sizes" --floor-concurrency "$floor_conc"
fi
python3 "$here/report.py" --out "$out" --results "$here/RESULTS.md" --notes "$here/notes.md" \
  --backup-guard "$bg" --vegeta "$bindir/vegeta-$vegeta_version"
log "wrote $here/RESULTS.md"
