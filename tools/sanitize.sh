#!/usr/bin/env bash
# Builds the whole project under sanitizers, each in a build directory of its own, and runs the
# test suite (ctest, including the Python wire tests against the sanitized binary) in each.
#
#   tools/sanitize.sh [asan|tsan|all]     default: all
#
#   asan  build-asan/: AddressSanitizer + UndefinedBehaviorSanitizer (leaks detected, every UB
#         report fatal: -fno-sanitize-recover=undefined)
#   tsan  build-tsan/: ThreadSanitizer
#
# Both use the root CMakeLists.txt as is, with the sanitizer flags in CMAKE_CXX_FLAGS, a Debug
# build at -O1 (usable stack traces, tolerable speed) and the compiler the normal build uses.
# Sanitizer reports go to files (log_path) so that those of child processes, such as the server
# the Python tests start, are not lost; any report fails the run and is printed at the end.
# Environment: JOBS (default 2) for the build and ctest; CTEST_ARGS, e.g. "-R webhook".
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${JOBS:-2}
mode=${1:-all}
case $mode in
  asan) variants=(asan) ;;
  tsan) variants=(tsan) ;;
  all) variants=(asan tsan) ;;
  -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "sanitize: unknown mode $mode (asan, tsan or all)" >&2; exit 2 ;;
esac

"$root/tools/ensure-deps.sh"
venv=$("$root/tools/ensure-venv.sh")

# ThreadSanitizer's runtime maps its shadow memory at fixed addresses; kernels with more mmap
# randomisation than it expects (vm.mmap_rnd_bits 32 on recent distributions, with older runtimes)
# make it fail at start with "unexpected memory mapping". Detect that with a probe and then run
# everything with ASLR off for these processes (setarch -R), or as a last resort lower the
# randomisation (root only, and said out loud).
tsan_prefix=()
probe_tsan() {
  local dir
  dir=$(mktemp -d)
  printf '#include <thread>\nint main(){int x=0;std::thread t([&]{x=1;});t.join();return x-1;}\n' \
    >"$dir/probe.cc"
  c++ -fsanitize=thread -g "$dir/probe.cc" -o "$dir/probe" -pthread
  if "$dir/probe" >/dev/null 2>&1; then
    :
  elif setarch "$(uname -m)" -R "$dir/probe" >/dev/null 2>&1; then
    echo "sanitize: ThreadSanitizer needs ASLR off on this kernel; running under setarch -R"
    tsan_prefix=(setarch "$(uname -m)" -R)
  elif [ "$(id -u)" = 0 ] && sysctl -w vm.mmap_rnd_bits=28 >/dev/null 2>&1 &&
    "$dir/probe" >/dev/null 2>&1; then
    echo "sanitize: ThreadSanitizer needed vm.mmap_rnd_bits=28 (was higher); it is now set so" >&2
  else
    echo "sanitize: ThreadSanitizer cannot start on this kernel (see vm.mmap_rnd_bits)" >&2
    "$dir/probe" || true
    rm -rf "$dir"
    return 1
  fi
  rm -rf "$dir"
}

# With the suppressions in force, a program with a real data race in code compiled here must still
# get a report; otherwise the suppressions would hide this project's own races.
probe_tsan_still_reports() {
  local dir out rc=0
  dir=$(mktemp -d)
  printf '%s\n' '#include <thread>' 'int shared = 0;' \
    'int main() { std::thread t([] { shared = 1; }); shared = 2; t.join(); return 0; }' \
    >"$dir/racy.cc"
  c++ -fsanitize=thread -g "$dir/racy.cc" -o "$dir/racy" -pthread
  out=$(TSAN_OPTIONS="suppressions=$root/tools/tsan-suppressions.txt:exitcode=66" \
    "${tsan_prefix[@]}" "$dir/racy" 2>&1) || rc=$?
  rm -rf "$dir"
  if [ "$rc" -ne 66 ] || ! grep -q "WARNING: ThreadSanitizer: data race" <<<"$out"; then
    echo "sanitize: tsan: a racy probe was not reported with tools/tsan-suppressions.txt" \
      "(exit $rc); the suppressions hide too much" >&2
    echo "$out" >&2
    return 1
  fi
  echo "sanitize: tsan: the racy probe is still reported with the suppressions in force"
}

run_variant() {
  local variant=$1
  local build=$root/build-$variant flags prefix=() t0=$SECONDS
  local reports=$build/sanitizer-reports
  case $variant in
    asan)
      flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1"
      export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:log_path=$reports/asan"
      export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$reports/ubsan"
      # LeakSanitizer runs inside ASan and takes log_path from ASAN_OPTIONS.
      ;;
    tsan)
      probe_tsan || return 1
      prefix=("${tsan_prefix[@]}")
      flags="-fsanitize=thread -fno-omit-frame-pointer -O1"
      # Suppressions (each one explained in the file) apply only to uninstrumented libraries;
      # probe_tsan_still_reports shows that a race in this project's code is still caught with them.
      export TSAN_OPTIONS="halt_on_error=1:abort_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$root/tools/tsan-suppressions.txt:log_path=$reports/tsan"
      probe_tsan_still_reports || return 1
      ;;
  esac
  # GCC 12 reports maybe-uninitialized inside libstdc++'s <regex> (std::function moved in the NFA
  # builder) once the code is instrumented at -O1: a false report of the compiler's flow analysis
  # under sanitizer instrumentation, not of this code. The normal build keeps the warning as an error.
  flags="$flags -Wno-maybe-uninitialized"
  echo "sanitize: $variant: configuring and building $build (-j$jobs)"
  rm -rf "$reports"
  mkdir -p "$reports"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="${flags% -O1*}" -DCMAKE_SHARED_LINKER_FLAGS="${flags% -O1*}" \
    -DBG_VENV="$venv" >"$build/sanitize-configure.log" 2>&1 || {
    cat "$build/sanitize-configure.log" >&2
    return 1
  }
  # The build runs the test binaries (gtest discovery), so it needs the same environment.
  if ! "${prefix[@]}" ninja -C "$build" -j "$jobs" >"$build/sanitize-build.log" 2>&1; then
    tail -60 "$build/sanitize-build.log" >&2
    echo "sanitize: $variant: the build failed (log $build/sanitize-build.log)" >&2
    return 1
  fi
  local built=$((SECONDS - t0)) status=0
  echo "sanitize: $variant: built in ${built}s; running ctest (log $build/sanitize-ctest.log)"
  # shellcheck disable=SC2086
  (cd "$build" && "${prefix[@]}" ctest -j "$jobs" --output-on-failure --timeout 600 \
    ${CTEST_ARGS:-}) >"$build/sanitize-ctest.log" 2>&1 || status=$?
  grep -E '^[0-9]+% tests passed|tests failed|^\s+[0-9]+ - ' "$build/sanitize-ctest.log" || true
  local found
  found=$(find "$reports" -type f -size +0 | sort)
  if [ -n "$found" ]; then
    echo "sanitize: $variant: sanitizer reports:" >&2
    local f
    for f in $found; do
      echo "---- $f" >&2
      head -120 "$f" >&2
    done
    status=1
  fi
  echo "sanitize: $variant: $( ((status == 0)) && echo passed || echo FAILED) in $((SECONDS - t0))s" \
    "(build ${built}s, tests $((SECONDS - t0 - built))s)"
  if ((status != 0)); then
    echo "sanitize: $variant: failing tests and their output are in $build/sanitize-ctest.log" >&2
  fi
  return "$status"
}

failed=()
for v in "${variants[@]}"; do
  run_variant "$v" || failed+=("$v")
done
if ((${#failed[@]})); then
  echo "sanitize: failed: ${failed[*]}" >&2
  exit 1
fi
echo "sanitize: all passed (${variants[*]})"
