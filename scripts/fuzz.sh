#!/usr/bin/env bash
# Runs ember's libFuzzer targets (tests/fuzz/, docs/reliability.md):
#
#   scripts/fuzz.sh TARGET SECONDS [--grow-corpus]
#   scripts/fuzz.sh all SECONDS [--grow-corpus]
#
# TARGET: safetensors, checkpoint, idx, image_decode or image_folder. Builds the target
# in the ASan+UBSan folder (EMBER_ASAN_DIR, default build-asan/, configured as
# scripts/sanitize.sh does) if needed, then fuzzes for SECONDS on a temporary copy of
# tests/fuzz/corpus/TARGET and tests/fuzz/regressions/TARGET: the committed corpus is never
# written, unless --grow-corpus merges the new coverage back into it (libFuzzer's -merge=1,
# which keeps only inputs that add coverage). Prints executions/s and the total. A finding
# (a crash, a sanitizer report, a broken check of fuzz_checks.h, a leak, an input slower
# than 25 s or over 2 GB of RSS) fails the script and leaves the input in
# <build>/fuzz/findings/TARGET/; replay it with <build>/fuzz/fuzz_TARGET <file>.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

targets=(safetensors checkpoint idx image_decode image_folder)
if [ $# -lt 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 TARGET|all SECONDS [--grow-corpus]   (TARGET: ${targets[*]})" >&2
  exit 2
fi
which="$1" seconds="$2" grow=0
[ "${3:-}" = --grow-corpus ] && grow=1
if [ "$which" = all ]; then
  run=("${targets[@]}")
elif [[ " ${targets[*]} " == *" $which "* ]]; then
  run=("$which")
else
  echo "fuzz: no target '$which'; the targets are: ${targets[*]}" >&2
  exit 2
fi

export CC="${CC:-clang-14}" CXX="${CXX:-clang++-14}" EMBER_CUDA=OFF EMBER_WERROR=ON
ember_install_dependencies "${EMBER_RELIABILITY_PACKAGES[@]}" >/dev/null
build="${EMBER_ASAN_DIR:-$EMBER_ROOT/build-asan}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  ember_configure "$build" -DEMBER_SANITIZE=address,undefined -DEMBER_BUILD_FUZZERS=ON \
    -DEMBER_BUILD_SAMPLES=OFF -DEMBER_BUILD_BENCHMARKS=OFF -DEMBER_BUILD_TESTS=ON
fi
ninja -C "$build" -j"${EMBER_JOBS:-2}" "${run[@]/#/fuzz_}"

export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OPENBLAS_NUM_THREADS=1
status=0
for t in "${run[@]}"; do
  work="$(mktemp -d "${TMPDIR:-/tmp}/ember_fuzz_${t}_XXXXXX")"
  findings="$build/fuzz/findings/$t"
  mkdir -p "$work/corpus" "$findings"
  cp "$EMBER_ROOT/tests/fuzz/corpus/$t/"* "$work/corpus/"
  if [ -d "$EMBER_ROOT/tests/fuzz/regressions/$t" ]; then
    cp "$EMBER_ROOT/tests/fuzz/regressions/$t/"* "$work/corpus/" 2>/dev/null || true
  fi
  log="$work/fuzz.log"
  start=$(date +%s)
  # -max_len: the seeds are small; larger inputs only slow the search. TMPDIR: the
  # target's scratch files go under $work, removed below even when the target aborted.
  if TMPDIR="$work" "$build/fuzz/fuzz_$t" "$work/corpus" -max_total_time="$seconds" -print_final_stats=1 \
       -artifact_prefix="$findings/" -timeout=25 -rss_limit_mb=2048 -max_len=16384 \
       >"$log" 2>&1; then
    result=ok
  else
    result=FINDING
    status=1
  fi
  wall=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  printf 'fuzz %-13s %4s s  %10s executions  %7s exec/s  %-10s %s\n' \
    "$t" "$wall" "${execs:-?}" "${rate:-?}" "${cov:-}" "$result"
  if [ "$result" = FINDING ]; then
    cp "$log" "$findings/fuzz.log"
    echo "fuzz: $t: finding(s) in $findings (log: $findings/fuzz.log):" >&2
    ls "$findings" >&2
    grep -m5 -E "ERROR|runtime error|FuzzFailure|what\(\)" "$log" >&2 || tail -20 "$log" >&2
  fi
  if [ "$grow" = 1 ]; then
    "$build/fuzz/fuzz_$t" -merge=1 "$EMBER_ROOT/tests/fuzz/corpus/$t" "$work/corpus" \
      >/dev/null 2>&1 && echo "fuzz: $t: new coverage merged into tests/fuzz/corpus/$t"
  fi
  rm -rf "$work"
done
exit "$status"
