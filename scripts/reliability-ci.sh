#!/usr/bin/env bash
# CI's reliability stage (docs/reliability.md): the ASan+UBSan build and the whole CPU
# suite under it twice (system allocator, then ember's pool), the TSan build and the
# threaded tests (those of ember_internal_tests: EMBER_TSAN_SCOPE), then every fuzz target
# for EMBER_FUZZ_SECONDS (default 30) from the committed corpus. Fails on any sanitizer report, failed test or fuzz finding; the
# findings are left in build-asan/fuzz/findings/<target>/. Prints each step's wall time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${EMBER_FUZZ_SECONDS:-30}"
# Within CI's time: TSan over ember_internal_tests' threaded suites (scripts/sanitize.sh).
export EMBER_TSAN_SCOPE="${EMBER_TSAN_SCOPE:-internal}"
start=$(date +%s)
status=0
"$root/scripts/sanitize.sh" all || status=1
t0=$(date +%s)
"$root/scripts/fuzz.sh" all "$seconds" || status=1
echo "reliability: fuzzing $(( $(date +%s) - t0 )) s; the whole stage $(( $(date +%s) - start )) s"
exit "$status"
