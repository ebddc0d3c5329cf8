#!/usr/bin/env bash
# The whole test suite: installs what it needs, then
#   1. builds with clang as well (warnings are errors in both compilers),
#   2. builds the test build (gcc, AddressSanitizer + UndefinedBehaviorSanitizer),
#   3. runs every ctest test in it: cmocka unit tests, integration tests against a real hdxd
#      with real clients, and kill -9 crash tests,
#   4. builds the libFuzzer harnesses with clang and runs each for HDX_FUZZ_SECONDS
#      (default 30) on a copy of its committed corpus.
# Environment: HDX_FUZZ_SECONDS, HDX_TEST_LABEL (run only one ctest label: unit,
# integration, crash), HDX_SKIP_FUZZ=1.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/install-deps.sh || exit 1

passed=0
failed=0
step() { echo; echo "== $*"; }

step "format (clang-format, .clang-format)"
unformatted=$(for f in $(git ls-files 'src/*.[ch]' 'tests/unit/*.c' 'fuzz/*.c' 2>/dev/null); do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || echo "$f"; done)
if [ -z "$unformatted" ]; then passed=$((passed + 1)); else
  echo "not clang-formatted: $unformatted"; failed=$((failed + 1)); fi

step "clang build (-Werror)"
if CC=clang bash scripts/build.sh build-clang; then passed=$((passed + 1)); else
  echo "clang build failed"; failed=$((failed + 1)); fi

step "sanitizer build (gcc, ASan + UBSan)"
if ! CC=gcc bash scripts/build.sh build-test -DHDX_SANITIZE=ON; then
  echo "sanitizer build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

step "ctest (unit, integration, crash) under ASan + UBSan"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
label_args=()
if [ -n "${HDX_TEST_LABEL:-}" ]; then label_args=(-L "$HDX_TEST_LABEL"); fi
ctest_log=$(mktemp)
(cd build-test && ctest --output-on-failure "${label_args[@]}" 2>&1) | tee "$ctest_log"
n_pass=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' "$ctest_log" || true)
n_fail=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(Failed|Exception|Timeout|Not Run)' "$ctest_log" || true)
rm -f "$ctest_log"
passed=$((passed + n_pass))
failed=$((failed + n_fail))
if [ "$n_pass" -eq 0 ]; then failed=$((failed + 1)); fi

if [ "${HDX_SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz (libFuzzer, ${HDX_FUZZ_SECONDS:-20} s per harness)"
  if CC=clang bash scripts/build.sh build-fuzz -DHDX_FUZZ=ON; then
    for f in build-fuzz/fuzz_*; do
      [ -x "$f" ] || continue
      name=$(basename "$f"); target=${name#fuzz_}
      corpus=$(mktemp -d)
      cp -r "fuzz/$target/corpus/." "$corpus/" 2>/dev/null || true
      dict=(); [ -f "fuzz/$target/$target.dict" ] && dict=(-dict="fuzz/$target/$target.dict")
      if "$f" "$corpus" "${dict[@]}" -max_total_time="${HDX_FUZZ_SECONDS:-20}" -max_len=65536 \
          -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$corpus.log" 2>&1; then
        echo "fuzz $name: ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$corpus.log" | grep -o '[0-9]*$') runs)"
        passed=$((passed + 1))
      else
        echo "fuzz $name: FAILED"; tail -40 "$corpus.log"
        failed=$((failed + 1))
      fi
      rm -rf "$corpus" "$corpus.log"
    done
  else
    echo "fuzz build failed"; failed=$((failed + 1))
  fi
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
