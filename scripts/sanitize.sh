#!/usr/bin/env bash
# Sanitizer builds of ember (CPU only, clang 14) and their test runs (docs/reliability.md):
#
#   scripts/sanitize.sh [asan|tsan|all]      (default: all)
#
#   asan: build-asan/ (-DEMBER_SANITIZE=address,undefined, the fuzzers too), then the whole
#         CPU ctest suite twice: with EMBER_CPU_ALLOC=system (each tensor its own malloc, so
#         ASan sees every tensor's bounds) and with ember's pool (the default), leaks checked.
#   tsan: build-tsan/ (-DEMBER_SANITIZE=thread), then the tests whose code runs threads
#         (EMBER_TSAN_TESTS below), suppressions in scripts/sanitizers/tsan.supp.
#
# Environment: EMBER_ASAN_DIR, EMBER_TSAN_DIR (build folders), EMBER_JOBS (ninja and ctest
# jobs, default 2). Any sanitizer report fails its test, and the script. Prints wall times.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

what="${1:-all}"
case "$what" in asan | tsan | all) ;; *)
  echo "usage: $0 [asan|tsan|all]" >&2
  exit 2 ;;
esac

export CC="${CC:-clang-14}" CXX="${CXX:-clang++-14}" EMBER_CUDA=OFF EMBER_WERROR=ON
ember_install_dependencies "${EMBER_RELIABILITY_PACKAGES[@]}" >/dev/null
asan_dir="${EMBER_ASAN_DIR:-$EMBER_ROOT/build-asan}"
tsan_dir="${EMBER_TSAN_DIR:-$EMBER_ROOT/build-tsan}"
jobs="${EMBER_JOBS:-2}"

# The tests whose code under test runs several threads: the DataLoader's workers, the
# pinned and caching pools, deferred checks, ImageFolder's decoding threads, the plan
# caches' locking pattern (LruCache), the Trainer (which drives the DataLoader) and the
# image fuzz corpus (ImageFolder again).
EMBER_TSAN_TESTS='^(DataLoader|PinnedPool|CachingAllocator|HostMemory|HostSync|DeferredChecks'
EMBER_TSAN_TESTS+='|PendingValue|ImageFolder|LruCache|TrainerFit|FuzzCorpus)\.'
tsan_targets="ember_api_tests ember_internal_tests"
# EMBER_TSAN_SCOPE=internal (CI): only ember_internal_tests is built under TSan, and only
# its threaded suites run: the DataLoader's workers, the pinned and caching pools, the
# plan caches' locking, the loaders. The full set above is for runs by hand.
if [ "${EMBER_TSAN_SCOPE:-all}" = internal ]; then
  EMBER_TSAN_TESTS='^(DataLoader|PinnedPool|CachingAllocator|LruCache|FuzzCorpus)\.'
  tsan_targets="ember_internal_tests"
fi

now() { date +%s; }
elapsed() { echo "$(( $(now) - $1 )) s"; }

# sanitizer_build DIR SANITIZERS TARGETS [CMAKE_ARGS...]: configure once (no samples or
# benchmarks), then build TARGETS ("" for everything: the library, the tool, the tests).
sanitizer_build() {
  local dir="$1" sanitizers="$2" targets="$3"
  shift 3
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    ember_configure "$dir" -DEMBER_SANITIZE="$sanitizers" -DEMBER_BUILD_SAMPLES=OFF \
      -DEMBER_BUILD_BENCHMARKS=OFF -DEMBER_BUILD_TESTS=ON "$@"
  fi
  # shellcheck disable=SC2086  # TARGETS is a list
  ninja -C "$dir" -j"$jobs" $targets
}

# LeakSanitizer on (ASan's default on Linux, said here so it stays so); an impossible
# allocation returns null as malloc does, so ember's OutOfMemoryError path is tested
# (HostMemory.ImpossibleAllocationThrowsCpuOutOfMemory) instead of ASan stopping; UBSan
# findings stop the test with a stack.
ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:strict_string_checks=1"
ASAN_OPTIONS+=":detect_stack_use_after_return=1"
export ASAN_OPTIONS+=":check_initialization_order=1:strict_init_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
TSAN_OPTIONS="halt_on_error=1:allocator_may_return_null=1:second_deadlock_stack=1"
export TSAN_OPTIONS+=":suppressions=$EMBER_ROOT/scripts/sanitizers/tsan.supp"
# OpenBLAS's own threads are not instrumented: TSan would report the buffers it hands
# between them. One BLAS thread keeps TSan's view to ember's threads (and the runs short).
export OPENBLAS_NUM_THREADS=1

status=0
if [ "$what" = asan ] || [ "$what" = all ]; then
  t0=$(now)
  sanitizer_build "$asan_dir" address,undefined "" -DEMBER_BUILD_FUZZERS=ON
  echo "sanitize: ASan+UBSan build: $(elapsed "$t0")"
  for alloc in system pool; do
    t0=$(now)
    # Less the header checks (each header compiled alone: nothing runs) and the GPU
    # machine's rehearsal (packs the build tree): neither runs ember's code.
    if (cd "$asan_dir" && EMBER_CPU_ALLOC="$alloc" ctest -j"$jobs" --output-on-failure \
          --timeout 900 -LE '^(header|gpu-check)$'); then
      echo "sanitize: ASan+UBSan, EMBER_CPU_ALLOC=$alloc: every test passed ($(elapsed "$t0"))"
    else
      echo "sanitize: ASan+UBSan, EMBER_CPU_ALLOC=$alloc: FAILED ($(elapsed "$t0"))" >&2
      status=1
    fi
  done
fi
if [ "$what" = tsan ] || [ "$what" = all ]; then
  t0=$(now)
  # The two test binaries are all the threaded tests need.
  sanitizer_build "$tsan_dir" thread "$tsan_targets"
  echo "sanitize: TSan build: $(elapsed "$t0")"
  t0=$(now)
  if (cd "$tsan_dir" && ctest -j"$jobs" --output-on-failure --timeout 900 \
        -R "$EMBER_TSAN_TESTS"); then
    echo "sanitize: TSan over the threaded tests: every test passed ($(elapsed "$t0"))"
  else
    echo "sanitize: TSan over the threaded tests: FAILED ($(elapsed "$t0"))" >&2
    status=1
  fi
fi
exit "$status"
