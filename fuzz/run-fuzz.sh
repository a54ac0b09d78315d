#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) into build-fuzz/ and runs each for a bounded time.
#
#   fuzz/run-fuzz.sh                 each target 60 s (make fuzz)
#   fuzz/run-fuzz.sh --seconds N     each target N s
#   fuzz/run-fuzz.sh --smoke         each target runs its seeds plus 10 s, from a throwaway corpus
#   fuzz/run-fuzz.sh ... TARGET...   only these targets (fuzz_admission fuzz_kubeconfig
#                                    fuzz_watch_lines fuzz_patch fuzz_http1)
#   fuzz/run-fuzz.sh --merge         minimise what earlier runs found (build-fuzz/corpus/) into the
#                                    committed seeds (fuzz/corpus/), for review and commit
#
# The committed seeds are read, never written: a normal run keeps what it finds in
# build-fuzz/corpus/<target>/ so later runs continue from it; --smoke uses a temporary directory.
# Any crash, leak, timeout or property violation fails the run; the input that caused it is saved
# as build-fuzz/artifacts/<target>-crash-<sha1> (or leak-, timeout-, oom-) and printed with the
# command that replays it.
# Installs clang-14 and libFuzzer (libclang-rt-14-dev) when missing; needs root for that.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
all_targets=(fuzz_admission fuzz_kubeconfig fuzz_watch_lines fuzz_patch fuzz_http1)
seconds=60
smoke=0
merge=0
jobs=${JOBS:-2}
targets=()

while (($#)); do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --smoke) smoke=1; shift ;;
    --merge) merge=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    fuzz_*) targets+=("$1"); shift ;;
    *) echo "run-fuzz: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
((${#targets[@]})) || targets=("${all_targets[@]}")
((smoke)) && seconds=10

# Inputs larger than the seeds reach deeper nesting and longer lines; bounded so each run stays
# fast. The smoke keeps libFuzzer's default of 4 KiB, so that it checks the common paths and does
# not wander into deep-nesting inputs (those are the longer runs' job).
declare -A max_len=([fuzz_admission]=65536 [fuzz_kubeconfig]=16384 [fuzz_watch_lines]=8192
                    [fuzz_patch]=8192 [fuzz_http1]=16384)
if ((smoke)); then
  for t in "${!max_len[@]}"; do max_len[$t]=4096; done
fi

ensure_tools() {
  "$root/tools/ensure-deps.sh"
  local missing=() p
  for p in clang-14 libclang-rt-14-dev llvm-14; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "run-fuzz: installing ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
      echo "run-fuzz: missing packages and not root; install them: ${missing[*]}" >&2
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

build_targets() {
  if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$root/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
  fi
  echo "run-fuzz: building into $build (-j$jobs)"
  ninja -C "$build" -j "$jobs" "${targets[@]}" json_patch_apply_test >"$build/ninja.log" 2>&1 || {
    cat "$build/ninja.log" >&2
    echo "run-fuzz: the build failed" >&2
    exit 1
  }
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1:symbolize=1}
export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-/usr/lib/llvm-14/bin/llvm-symbolizer}

ensure_tools
build_targets
echo "run-fuzz: json_patch_apply_test"
"$build/json_patch_apply_test" --gtest_brief=1 </dev/null >"$build/json_patch_apply_test.log" 2>&1 || {
  cat "$build/json_patch_apply_test.log"
  echo "run-fuzz: the JSON Patch applier's unit test failed" >&2
  exit 1
}

if ((merge)); then
  for t in "${targets[@]}"; do
    [ -d "$build/corpus/$t" ] || continue
    echo "run-fuzz: merging build-fuzz/corpus/$t into fuzz/corpus/$t"
    "$build/$t" -merge=1 -max_len="${max_len[$t]}" "$root/fuzz/corpus/$t" "$build/corpus/$t" \
      </dev/null 2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new files' || true
  done
  exit 0
fi

artifacts=$build/artifacts
mkdir -p "$artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
summary=()
start_all=$SECONDS
for t in "${targets[@]}"; do
  if ((smoke)); then
    work=$scratch/corpus-$t
  else
    work=$build/corpus/$t
  fi
  mkdir -p "$work"
  log=$build/$t.log
  echo "run-fuzz: $t for ${seconds}s (corpus $work + fuzz/corpus/$t, log $log)"
  before=$(ls "$artifacts" | sort)
  t0=$SECONDS
  status=0
  # The first directory receives new inputs; the committed seeds are only read.
  "$build/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len="${max_len[$t]}" -print_final_stats=1 -artifact_prefix="$artifacts/$t-" \
    "$work" "$root/fuzz/corpus/$t" </dev/null >"$log" 2>&1 || status=$?
  execs=$(grep -m1 -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo "?")
  if ((status != 0)); then
    failed+=("$t")
    summary+=("$(printf '%-18s FAILED  %4ss  %9s runs  cov %s' "$t" $((SECONDS - t0)) "$execs" "$cov")")
    echo "run-fuzz: $t FAILED (exit $status); end of $log:" >&2
    grep -vE '^#[0-9]+\s+(NEW|REDUCE|pulse|RELOAD)' "$log" | tail -60 >&2
    for a in $(comm -13 <(echo "$before") <(ls "$artifacts" | sort)); do
      echo "run-fuzz: input saved as $artifacts/$a; replay: $build/$t $artifacts/$a" >&2
    done
  else
    summary+=("$(printf '%-18s ok      %4ss  %9s runs  cov %s' "$t" $((SECONDS - t0)) "$execs" "$cov")")
  fi
done
echo "run-fuzz: summary ($((SECONDS - start_all))s of fuzzing)"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "run-fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
