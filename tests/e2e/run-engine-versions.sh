#!/usr/bin/env bash
# Runs docs/CONTRACT.md's acceptance scenarios (tests marked `acceptance`) on the engine's CRDs of every
# pinned version (tests/engine/versions.txt) except the one the main e2e run (`make e2e`,
# run-e2e.sh's default BG_ENGINE_VERSION) already covers: one fresh control plane per version,
# started on that version's CRDs, through run-e2e.sh with BG_PYTEST_MARK.
#
#   v1.7.2 (the oldest)  -m acceptance: the three scenarios, and the upgrade across versions
#                        (test_engine_upgrade.py, marker engine_upgrade: v1.7.2 -> v1.8.0 -> v1.9.0
#                        -> v1.10.0 with backup-guard running), selected explicitly here
#   any other            -m "acceptance and not engine_upgrade"
#
# Every acceptance test the selection collects must PASS: a skip, an error, a failure or a test
# that did not run fails that version. Prints a table version -> result, tests passed, time, and
# exits 1 if any version failed.
#
# Usage: run-engine-versions.sh [--all] [--versions "V1 V2 ..."] [PYTEST-ARGS...]
#   --all        also the main version (v1.10.0)
#   --versions   only these (each must be pinned)
#   PYTEST-ARGS  passed on to run-e2e.sh (e.g. -x, -k NAME)
# Environment: as run-e2e.sh (BACKUP_GUARD_BIN, BACKUP_GUARD_CACHE); BG_MAIN_ENGINE_VERSION (the
# version the main run covers, default v1.10.0).
# Each version gets a state dir /tmp/backup-guard-engine-<version>.XXXXXX with run-e2e.sh's logs
# and its console output (console.log); it is removed when the version passed and kept, with its
# path in the table, when it failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
log() { echo "engine-versions: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pinned=$(awk '!/^#/ && NF {print $1}' "$root/tests/engine/versions.txt")
[ -n "$pinned" ] || die "no version pinned in tests/engine/versions.txt"
oldest=$(head -n 1 <<<"$pinned")
main=${BG_MAIN_ENGINE_VERSION:-v1.10.0}
grep -qx -- "$main" <<<"$pinned" || die "BG_MAIN_ENGINE_VERSION=$main is not pinned ($(echo $pinned))"

all=0 versions="" pytest_args=()
while (($#)); do
  case $1 in
    --all) all=1 ;;
    --versions) versions=${2:?--versions needs a list}; shift ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) pytest_args+=("$1") ;;
  esac
  shift
done
if [ -n "$versions" ]; then
  for v in $versions; do
    grep -qx -- "$v" <<<"$pinned" || die "$v is not pinned in tests/engine/versions.txt ($(echo $pinned))"
  done
else
  for v in $pinned; do
    if ((all)) || [ "$v" != "$main" ]; then versions+="$v "; fi
  done
fi

venv=$("$root/tools/ensure-venv.sh")
py=$venv/bin/python

selection() { # version -> marker expression
  if [ "$1" = "$oldest" ]; then echo "acceptance"; else echo "acceptance and not engine_upgrade"; fi
}

# The node ids a selection must pass (collection needs no control plane); a collection error
# stops the run.
expected_tests() { # marker-expression
  local out rc=0
  out=$(cd "$root" && "$py" -m pytest -p no:cacheprovider --collect-only -q -m "$1" tests/e2e \
    ${pytest_args[@]+"${pytest_args[@]}"} 2>&1) || rc=$?
  if ((rc != 0 && rc != 5)); then
    echo "$out" >&2
    die "collecting the tests for -m '$1' failed (pytest exit $rc)"
  fi
  grep '::' <<<"$out" || true
}

trap 'exit 130' INT
trap 'exit 143' TERM
rows=() failed=0 start=$SECONDS
for v in $versions; do
  mark=$(selection "$v")
  expected=$(expected_tests "$mark") || exit 1
  n_expected=$(grep -c . <<<"$expected" || true)
  if ((n_expected == 0)); then  # nothing to run: a failure, without starting a control plane
    log "$v: no acceptance test matches -m '$mark' ${pytest_args[*]-}"
    rows+=("$(printf '%-8s  %-6s  %5s  %5ss  %s' "$v" FAILED 0/0 0 "(no test selected)")")
    failed=1
    continue
  fi
  state=$(mktemp -d "/tmp/backup-guard-engine-$v.XXXXXX")
  log "=== $v: BG_PYTEST_MARK='$mark' ($n_expected tests), state in $state"
  t=$SECONDS rc=0
  # -r...p: the short summary lists every outcome, PASSED lines included (without their output).
  BG_ENGINE_VERSION=$v BG_ENGINE_CRDS= BG_STATE_DIR=$state BG_PYTEST_MARK=$mark \
    "$here/run-e2e.sh" -rfEsxXp ${pytest_args[@]+"${pytest_args[@]}"} 2>&1 | tee "$state/console.log" \
    || rc=$?
  secs=$((SECONDS - t))
  if ((rc == 130 || rc == 143)); then
    log "$v: interrupted; logs and state kept in $state"
    exit "$rc"
  fi
  passed=$(grep -oE '^PASSED [^ ]+' "$state/console.log" | cut -d' ' -f2 | sort -u || true)
  missing=$(comm -23 <(sort -u <<<"$expected") <(printf '%s\n' "$passed") | grep . || true)
  n_passed=$((n_expected - $(grep -c . <<<"$missing" || true)))
  if ((rc == 0)) && [ -z "$missing" ]; then
    result=passed
    rm -rf "$state"
    where=""
  else
    result=FAILED
    failed=1
    where=$state
    [ -z "$missing" ] || log "$v: did not pass: $(echo $missing)"
    ((rc == 0)) || log "$v: run-e2e.sh exited $rc"
  fi
  rows+=("$(printf '%-8s  %-6s  %5s  %5ss  %s' "$v" "$result" "$n_passed/$n_expected" "$secs" "$where")")
done

echo
echo "acceptance scenarios on the engine's CRDs (main version $main: make e2e)"
printf '%-8s  %-6s  %5s  %6s  %s\n' version result tests time "logs (kept when failed)"
printf '%s\n' "${rows[@]}"
echo "total $((SECONDS - start))s"
exit "$failed"
