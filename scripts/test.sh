#!/usr/bin/env bash
# Builds ember with its tests and runs the whole suite with CTest (CUDA tests skip, and
# are listed as skipped, when there is no GPU); then installs the build into a temporary
# prefix and builds a small user program against it with CMake and with pkg-config; and
# checks that every #include follows the layers (scripts/check-includes.sh).
# Arguments go to ctest. Settings: those of scripts/common.sh, and EMBER_BUILD_DIR (default
# build-test/, or build-test-cpu/ with EMBER_CUDA=OFF).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# First, as it takes seconds; a failure is reported again at the end, after the tests.
includes_ok=1
bash "$EMBER_ROOT/scripts/check-includes.sh" || includes_ok=0

ember_install_dependencies
build_dir="$EMBER_ROOT/build-test"
[ "${EMBER_CUDA:-}" = OFF ] && build_dir="$EMBER_ROOT/build-test-cpu"
build_dir="${EMBER_BUILD_DIR:-$build_dir}"
ember_configure "$build_dir" -DEMBER_BUILD_TESTS=ON -DEMBER_BUILD_SAMPLES=ON \
  -DEMBER_BUILD_BENCHMARKS="${EMBER_BUILD_BENCHMARKS:-ON}"
cmake --build "$build_dir"
(cd "$build_dir" && ctest --output-on-failure -j "$(nproc)" "$@")
bash "$EMBER_ROOT/scripts/consumer-check.sh" "$build_dir"

if [ "$includes_ok" -ne 1 ]; then
  echo "test.sh: built and tested, but scripts/check-includes.sh found includes across the" \
    "layers (listed at the start)" >&2
  exit 1
fi
